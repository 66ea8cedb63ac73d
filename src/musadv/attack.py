"""The adversary (paper Alg. 1): make a classifier say a chosen label while the audio barely changes.

Projected gradient descent on the recording's magnitude spectrum: a step against the gradient
of the cross-entropy of every element's posterior with the target label (summed over elements),
clipping at zero, a Griffin-Lim projection (combine the magnitudes with a phase, inverse STFT,
STFT) so that the magnitudes belong to a real signal, and a least-squares projection onto the
ball of perturbations allowed by a minimum SNR. It stops when the recording's confidence in the
target (mean element posterior, eq. 3-4) reaches a threshold, or after ``max_iter`` iterations.

Two orders are offered:

``'consistent'`` (default)
    The iterate is a waveform. After the gradient step on its magnitudes and the resynthesis
    with its own phase, the SNR bound is enforced on the waveform and the waveform is rounded to
    16 bits (inside the loop), so the file written is exactly the iterate the network judged:
    the decoded outcome equals the in-loop outcome and the written file meets the SNR bound.
``'paper'``
    As the paper and the reference code: resynthesis with the exemplar's phase, then the SNR
    ball on magnitudes. The final magnitudes belong to no signal; the waveform is made from them
    with the exemplar's phase at the end, so the decoded outcome may differ from the in-loop one.

Optional momentum uses FISTA's weights ``(t_{k-1} - 1) / t_k`` on the last move, added to the
gradient step *before* the projections, so every iterate that is judged and returned is
feasible (the reference code extrapolated after the SNR projection and could leave the ball).
Unlike textbook FISTA, the gradient is taken at the current iterate rather than at an
extrapolated point (heavy-ball form): one network pass per iteration then serves both the
stopping rule and the step. On the built-in data both forms needed the same number of
iterations and reached the same success rate.

A robust adversary (``AttackConfig.robust_to``) judges, in the same pass of the network,
transformed copies of each iterate (:mod:`musadv.robust`), steps along the gradient of their
mean loss and stops only when the iterate and every copy reach what it stops at.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

from .audio import quantize_pcm16
from .checks import NO_GRAPH, gradient_problem
from .errors import MusadvError
from .interface import AudioClassifier, DifferentiableClassifier, evaluating, recording_confidence, system_name, unit_phase
from .queries import QueryState, estimate_gradients, tile_grid
from .recording import Recording, edge_samples
from .robust import Draws, differentiable
from .spectral import STFTConfig, complex_abs, istft, l2_norm, stft
from .goals import GOALS, goal_candidates, goal_reached
from .identity import model_name, system_sha256
from .taggers import TAG_THRESHOLD
from .transforms import Transformation

__all__ = ["AttackConfig", "AttackResult", "attack", "attack_many", "continued_trace", "minimize", "snr_db", "project_ball", "choose_targets", "check_policy",
           "GOALS", "goal_reached", "goal_candidates"]

ORDERS = ("consistent", "paper")
GRADIENTS = ("autograd", "queries")
STOPS = ("threshold", "label")
#: Samples per channel that :func:`snr_db` sums at a time.
SNR_CHUNK = 1 << 18
#: The SNR whose ball radius scales the scale-free step when the attack has no SNR limit.
FREE_STEP_SNR_DB = 15.0


@dataclass(frozen=True)
class AttackConfig:
    """Settings of the adversary. The defaults are the paper's Table II settings (SNR 15 dB,
    threshold 0.9, at most 100 iterations) except the step: the scale-free ``step_fraction``
    rather than Table II's ``step=0.1``, whose effect depends on the model's gradient scale.

    Attributes
    ----------
    snr_db : float or None
        Minimum SNR of the adversarial example in dB, ``20 log10(|x| / |x' - x|)`` over the
        whole recording; ``None``: no limit (Table III).
    step : float or None
        The paper's gradient step mu on raw magnitudes, on the paper's cross-entropy (Table II:
        0.1; Fig. 4: 0.01). Its effect depends on the scale of the model's gradient (the demo's
        CDNN needed 100 times the DNN's). ``None`` (default): the scale-free step of
        ``step_fraction``.
    step_fraction : float
        Without ``step``: every gradient step moves the magnitudes by this fraction of the SNR
        ball's radius measured on them, ``||M|| 10^(-snr_db / 20)`` for the recording's
        magnitudes ``M`` (without an SNR limit, the radius at :data:`FREE_STEP_SNR_DB`), in the
        direction of the normalised gradient (as L2 PGD) of the cross-entropy of logits
        standardised over the labels: neither the size nor the direction depends on the scale
        of the model's logits, so the same setting serves any model.
    threshold : float
        Stop when the mean posterior of the target reaches this (Table II: 0.9; Fig. 4: 0.5).
    stop : {'threshold', 'label'}
        ``'threshold'``: stop at ``threshold``; ``'label'``: stop as soon as the model says the
        target (its confidence the largest), the decision boundary that :func:`minimize` seeks.
    max_iter : int
        Most iterations (Table II: 100; Fig. 4: 50).
    patience : int or None
        Also stop when the target's posterior has not risen for this many iterations (the
        iterate has stalled on the ball); ``None``: never (the paper).
    momentum : bool
        Momentum with FISTA's weights (the reference code's acceleration; see the module notes).
    order : {'consistent', 'paper'}
        See the module documentation.
    quantize : bool
        Round the waveform to 16-bit PCM inside the loop (``'consistent'`` order), so that the
        16-bit WAV written is exactly the judged iterate. Turn off to write float WAVs.
    goal : {'label', 'add', 'remove'}
        ``'label'``: make the target the system's label (the paper's adversary; for a tagger,
        its most likely tag). For taggers (``activation='sigmoid'``) only: ``'add'`` the target
        tag (its mean likelihood reaches :data:`TAG_THRESHOLD`) or ``'remove'`` it (below it),
        whatever the other tags do; the attack stops as soon as it has (``threshold`` and
        ``stop`` apply to ``'label'``), and its step follows the tag's binary cross-entropy.
    masking_db : float or None
        Keep the change under the music's own masking: after every step the change's STFT is
        scaled down, critical band by critical band, until its power in each band of each frame
        is this many dB under the original's band threshold
        (:func:`musadv.psychoacoustics.band_masking_threshold`, at the model's rate and framing,
        a full-scale sinusoid at :data:`~musadv.psychoacoustics.DEFAULT_LEVEL_DB` SPL), and each
        step weights the gradient by each bin's share of its band's allowance (see
        ``_masked_step``); the SNR bound still holds (``snr_db=None`` leaves the masking bound
        alone). ``None`` (default): no masking bound. ``'consistent'`` order, scale-free step only.
    robust_to : tuple of Transformation
        Expectation over transformation (:mod:`musadv.robust`): every iteration also judges
        transformed copies of the iterate (``draws`` of each random kind, one of each fixed
        one), follows the gradient of the mean loss over the iterate and its copies, and stops
        only when the iterate and every copy reach what it stops at. ``()`` (default): the
        plain adversary. ``'consistent'`` order only.
    draws : int
        Copies per iteration of each random transformation in ``robust_to``.
    gradient : {'autograd', 'queries'}
        Where each step comes from. ``'autograd'``: the gradient of the network
        (a :class:`~musadv.interface.DifferentiableClassifier`). ``'queries'``: an estimate
        from predictions alone (:mod:`musadv.queries`), for any
        :class:`~musadv.interface.AudioClassifier`; ``'consistent'`` order and the scale-free
        step only. Everything else in the loop is the same.
    max_queries : int or None
        ``'queries'``: stop an attack before it makes more than this many predictions (every
        iterate's judgement counts, and each estimate ``2 query_pairs``); ``None``: only
        ``max_iter`` limits it.
    query_pairs : int
        ``'queries'``: antithetic pairs of candidates per estimated step.
    query_sigma : float
        ``'queries'``: the smoothing scale the estimate starts at, a candidate's change over the
        recording's norm (it grows on saturated confidences, see :mod:`musadv.queries`).
    query_segment_s : float
        ``'queries'``: seconds of frames per tile (a tile is a critical band of a segment); fewer,
        longer tiles make a better estimate from the same queries (see the results page).
    surrogate : DifferentiableClassifier or None
        ``'queries'``: a network whose gradient guides the steps while it lowers the system's
        loss (a transfer prior, :mod:`musadv.queries`); it has the system's analysis settings
        and every target among its labels. The system is judged by its predictions alone.
        ``None`` (default): every step is estimated from queries.
    """

    snr_db: float | None = 15.0
    step: float | None = None
    step_fraction: float = 0.1
    threshold: float = 0.9
    stop: str = "threshold"
    max_iter: int = 100
    patience: int | None = None
    momentum: bool = True
    order: str = "consistent"
    quantize: bool = True
    goal: str = "label"
    masking_db: float | None = None
    robust_to: tuple = ()
    draws: int = 2
    gradient: str = "autograd"
    max_queries: int | None = None
    query_pairs: int = 10
    query_sigma: float = 0.1
    query_segment_s: float = 3.0
    surrogate: DifferentiableClassifier | None = None

    def __post_init__(self):
        if self.goal not in GOALS:
            raise ValueError(f"goal must be one of {GOALS}, not {self.goal!r}")
        if self.stop not in STOPS:
            raise ValueError(f"stop must be one of {STOPS}, not {self.stop!r}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, not {self.order!r}")
        if self.step is not None and not self.step > 0:
            raise ValueError(f"step must be > 0 (or None for the scale-free step), not {self.step}")
        if not self.step_fraction > 0:
            raise ValueError(f"step_fraction must be > 0, not {self.step_fraction}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 (or None), not {self.patience}")
        if self.max_iter < 0:
            raise ValueError(f"max_iter must be >= 0, not {self.max_iter}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], not {self.threshold}")
        if self.masking_db is not None and self.order != "consistent":
            raise ValueError("the masking bound holds on the written change: 'consistent' order only")
        if self.masking_db is not None and self.step is not None:
            raise ValueError("the masking bound takes the scale-free step (step=None): the paper's raw step "
                             "has no size in the bound's units")
        if self.masking_db is not None and not math.isfinite(self.masking_db):
            raise ValueError(f"masking_db must be a finite number of dB (or None), not {self.masking_db}")
        if not all(isinstance(t, Transformation) for t in self.robust_to):
            raise ValueError("robust_to must be a tuple of musadv.transforms.Transformation")
        if len({t.kind for t in self.robust_to}) != len(self.robust_to):
            raise ValueError(f"robust_to names a kind twice: {', '.join(t.kind for t in self.robust_to)}")
        if self.robust_to and self.order != "consistent":
            raise ValueError("a robust adversary judges the copies of what it writes: 'consistent' order only")
        if self.draws < 1:
            raise ValueError(f"draws must be >= 1, not {self.draws}")
        if self.gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, not {self.gradient!r}")
        if self.gradient == "queries":
            if self.order != "consistent":
                raise ValueError("a query-only attack judges what it writes: 'consistent' order only")
            if self.step is not None:
                raise ValueError("a query-only attack takes the scale-free step (step=None): an estimated gradient "
                                 "has no scale of its own")
        if self.surrogate is not None:
            if not isinstance(self.surrogate, DifferentiableClassifier):
                raise ValueError("surrogate must be a DifferentiableClassifier (a network with a gradient)")
            if self.gradient != "queries":
                raise ValueError("a surrogate guides a query-only attack (gradient='queries'); a gradient attack has "
                                 "the system's own gradient")
        if self.max_queries is not None and self.max_queries < 1:
            raise ValueError(f"max_queries must be >= 1 (or None), not {self.max_queries}")
        if self.query_pairs < 1:
            raise ValueError(f"query_pairs must be >= 1, not {self.query_pairs}")
        if not (math.isfinite(self.query_sigma) and self.query_sigma > 0):
            raise ValueError(f"query_sigma must be a finite number > 0, not {self.query_sigma}")
        if not (math.isfinite(self.query_segment_s) and self.query_segment_s > 0):
            raise ValueError(f"query_segment_s must be a finite number of seconds > 0, not {self.query_segment_s}")

    def to_dict(self) -> dict:
        """The settings, JSON-ready (what a run records and compares on resuming)."""
        settings = {f.name: getattr(self, f.name) for f in fields(self)}
        surrogate = None if self.surrogate is None else {"model": model_name(self.surrogate),
                                                           "sha256": system_sha256(self.surrogate)}
        return {**settings, "robust_to": [t.settings() for t in self.robust_to], "surrogate": surrogate}


@dataclass
class AttackResult:
    """Outcome of one attack on one recording (all judged in memory; see :mod:`musadv.runs` for files).

    Attributes
    ----------
    audio : np.ndarray
        The adversarial example as it is to be written, float32: ``(n_channels, n_samples)`` at
        ``sr`` Hz for a :class:`~musadv.recording.Recording`, ``(n_samples,)`` for a mono signal
        at the model's rate (16-bit values if quantised).
    sr : int
        Rate of ``audio`` in Hz.
    target : str
    label_before, label_after : str
        The model's label for the original and the adversarial example (in memory).
    confidence_before, confidence_after : dict
        Mean element posterior of every label.
    reached : bool
        Whether the attack reached what it stops at (``AttackConfig.stop``).
    iterations : int
        Gradient steps taken.
    snr_wave_db : float
        SNR of the example against the original, on the samples of ``audio`` (every channel,
        the whole recording; inf if unchanged).
    snr_trim_db : float
        The same leaving out :data:`~musadv.recording.EDGE_SECONDS` at each edge (the reference
        code's measure; nan for recordings shorter than twice that).
    snr_mag_db : float
        SNR on the magnitudes the model analyses.
    seconds : float
    trace : list of dict
        Per iteration: ``iteration``, ``loss`` (summed cross-entropy), ``target_posterior``,
        ``snr_db`` (waveform; magnitudes in the 'paper' order).
    levels : list of dict
        :func:`minimize` only: every SNR bound it tried, in order, with ``snr_bound_db``,
        ``success`` (the model said the target), ``snr_wave_db`` (of that level's example),
        ``iterations``, ``queries`` and ``seconds``.
    gradient : {'autograd', 'queries'}
        Where its steps came from (``AttackConfig.gradient``).
    queries : int or None
        ``'queries'``: the predictions it made (the original's judgement included); ``None`` for
        ``'autograd'``.
    """

    audio: np.ndarray
    sr: int
    target: str
    label_before: str
    confidence_before: dict
    label_after: str
    confidence_after: dict
    reached: bool
    iterations: int
    snr_wave_db: float
    snr_trim_db: float
    snr_mag_db: float
    seconds: float
    trace: list = field(default_factory=list)
    levels: list = field(default_factory=list)
    goal: str = "label"
    gradient: str = "autograd"
    queries: int | None = None

    @property
    def success(self) -> bool:
        """The attack's goal holds for the example in memory (see :func:`goal_reached`)."""
        return goal_reached(self.goal, self.target, self.label_after, self.confidence_after)


def _distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b||`` a stretch at a time along the last axis (no temporary the size of a file)."""
    total = 0.0
    for start in range(0, a.shape[-1], SNR_CHUNK):
        total += float(torch.sub(a[..., start:start + SNR_CHUNK], b[..., start:start + SNR_CHUNK]).square_().sum())
    return math.sqrt(total)


def snr_db(reference, perturbed, trim: int = 0) -> float:
    """``20 log10(||reference|| / ||perturbed - reference||)`` in dB (inf when equal).

    Parameters
    ----------
    reference, perturbed : array-like
        Same shape ``(..., n_samples)`` (e.g. ``(n_channels, n_samples)``: all channels count).
    trim : int
        Leave out this many samples at each end of the last axis (the reference code's measure
        leaves out 2048 at 22050 Hz: see :func:`musadv.recording.edge_samples`); nan if nothing
        is left.
    """
    ref, per = torch.as_tensor(reference), torch.as_tensor(perturbed)
    if ref.shape != per.shape:
        raise ValueError(f"reference and perturbed differ in shape: {tuple(ref.shape)} and {tuple(per.shape)}")
    if trim:
        if ref.shape[-1] <= 2 * trim:
            return math.nan
        ref, per = ref[..., trim:-trim], per[..., trim:-trim]
    # Summed in float64 a stretch at a time: an hour of stereo would need gigabytes as one float64 copy.
    ref_sq = diff_sq = 0.0
    for start in range(0, ref.shape[-1], SNR_CHUNK):
        r = ref[..., start:start + SNR_CHUNK].double()
        ref_sq += float(r.square().sum())
        diff_sq += float(per[..., start:start + SNR_CHUNK].double().sub_(r).square_().sum())
    if diff_sq == 0:
        return math.inf
    return 10 * math.log10(ref_sq / diff_sq)


def ball_radius(reference: torch.Tensor, snr: float) -> float:
    """Largest perturbation norm that keeps ``snr`` dB: ``||reference|| / 10^(snr/20)``."""
    return l2_norm(reference) / 10 ** (snr / 20)


def project_ball(z: torch.Tensor, center: torch.Tensor, radius: float) -> torch.Tensor:
    """Least-squares projection onto ``{u : ||u - center|| <= radius}`` (paper eq. 10-11).

    ``u = (z + nu * center) / (1 + nu)`` with ``nu = max(0, ||z - center|| / radius - 1)``,
    computed as ``center + (z - center) * radius / ||z - center||``, which is the same point.
    Returns ``z`` itself when it is inside the ball.
    """
    diff = z - center
    dist = l2_norm(diff)
    if dist <= radius:
        return z
    if radius <= 0:
        return center.clone()
    return diff.mul_(radius / dist).add_(center)


def _judge_many(model: DifferentiableClassifier, mags: list, phases: list, targets: list[int], need_grad: bool,
                scale_free: bool = False, goal: str = "label", copies=None) -> list[tuple]:
    """Eq. 3-4 confidences, summed cross-entropy towards each target (and its gradient in ``mags``), for
    several recordings in one pass of the network (:meth:`~DifferentiableClassifier.logits_many`).

    Returns one ``(confidences, loss, gradient or None, the copies' confidences)`` per recording.
    Elements are judged independently (the network is in evaluation mode), so the gradient of the
    summed losses in one recording's magnitudes is that recording's own.

    ``scale_free``: the cross-entropy of each element's logits standardised over the labels
    (zero mean, unit standard deviation), so that a model whose logits are ``c`` times larger
    gives the same direction: the softmax of tiny logits is nearly linear and spreads the
    gradient over every label, that of huge ones saturates. The confidences are the model's own
    (:meth:`~musadv.interface.DifferentiableClassifier.probabilities`: posteriors, or a tagger's
    likelihoods). Goals ``'add'`` and ``'remove'`` take the target tag's binary cross-entropy,
    summed over elements, towards 1 or 0.

    ``copies``: for a robust adversary, ``copies(k, mags_k)`` gives recording ``k``'s
    transformed copies as ``(magnitudes, phase)`` pairs made from ``mags_k`` (so that their
    losses have a gradient in it); they are judged in the same pass, and a recording's loss is
    the mean of its own and its copies'.
    """
    mags = [m.detach().requires_grad_(need_grad) for m in mags]
    with torch.set_grad_enabled(need_grad):
        inputs, heard, owners = list(mags), list(phases), list(range(len(mags)))
        if copies is not None:
            for k, m in enumerate(mags):
                for copy_mags, copy_phase in copies(k, m):
                    inputs.append(copy_mags)
                    heard.append(copy_phase)
                    owners.append(k)
        try:
            all_logits = model.logits_many(inputs, heard)
        except MusadvError:
            raise
        except Exception as exc:  # the user's own network: one line naming it
            raise MusadvError(f"{system_name(model)}: raised {type(exc).__name__} in logits: {exc}") from exc
        losses, confs = [[] for _ in mags], [[] for _ in mags]
        for k, m, logits in zip(owners, inputs, all_logits):
            losses[k].append(_loss(model, m, logits, targets[k], scale_free, goal))
            confs[k].append(recording_confidence(model.probabilities(logits.detach())))
        means = [ls[0] if len(ls) == 1 else torch.stack(ls).mean() for ls in losses]
    grads = [None] * len(mags)
    if need_grad:
        total = torch.stack(means).sum()
        grads = torch.autograd.grad(total, mags, allow_unused=True) if total.requires_grad else [None] * len(mags)
        if any(g is None for g in grads):
            raise MusadvError(f"{system_name(model)}: {NO_GRAPH}; attack it through queries (--black-box)")
    return [(c[0], float(loss.detach()), grad, c[1:]) for c, loss, grad in zip(confs, means, grads)]


def _loss(model, mags: torch.Tensor, logits: torch.Tensor, target: int, scale_free: bool, goal: str) -> torch.Tensor:
    """The adversary's loss of one recording's element logits (see :func:`_judge_many`)."""
    if logits.shape[0] == 0:
        raise MusadvError(f"recording too short for this model ({mags.shape[0]} frames; one element is "
                          f"{model.element_frames})")
    if goal != "label":
        sign = 1.0 if goal == "add" else -1.0
        return -torch.nn.functional.logsigmoid(sign * logits[:, target]).sum()
    if scale_free:
        centred = logits - logits.mean(-1, keepdim=True)
        spread = centred.detach().square().mean(-1, keepdim=True).sqrt().clamp_min(torch.finfo(logits.dtype).tiny)
        return -torch.log_softmax(centred / spread, -1)[:, target].sum()
    return -torch.log_softmax(logits, -1)[:, target].sum()  # summed cross-entropy towards the target


def _transformed_copies(model: DifferentiableClassifier, states: list, specs: list, drawn: list | None = None):
    """The ``copies`` of :func:`_judge_many` for a robust adversary's iterates (expectation over transformation).

    Each copy is made from a recording's magnitudes by the inverse STFT (with the iterate's
    phase, which gives the iterate back), a draw of its transformations in PyTorch
    (:func:`musadv.robust.differentiable`) and the STFT. ``drawn``: each recording's draws
    (a list of :class:`~musadv.robust.Draw`); default this iteration's fresh ones.
    """
    cfg = model.stft

    def copies(k: int, mags: torch.Tensor) -> list[tuple]:
        st, spec = states[k], specs[k]
        z = istft(mags * unit_phase(spec), cfg, length=st.z.shape[-1], prior=st.z.to(mags.device))
        out = []
        for draw in (st.draws.sample() if drawn is None else drawn[k]):
            copy = stft(differentiable(draw, z, cfg.sr), cfg)
            out.append((complex_abs(copy), _phase(model, copy.detach())))
        return out

    return copies


def _judge(model, mags, phase, target: int, need_grad: bool, scale_free: bool = False, goal: str = "label"):
    """:func:`_judge_many` of one recording."""
    return _judge_many(model, [mags], [phase], [target], need_grad, scale_free, goal)[0]


def _confidence_dict(model, conf: torch.Tensor) -> dict:
    return dict(zip(model.labels, map(float, conf)))


def attack(model: AudioClassifier, signal, target: str, config: AttackConfig = AttackConfig(),
           start: np.ndarray | None = None, rng: np.random.Generator | None = None) -> AttackResult:
    """Find an adversarial example for one recording.

    Parameters
    ----------
    model : DifferentiableClassifier
        A network of :mod:`musadv.models` or any wrapped PyTorch module (:mod:`musadv.wrappers`).
    signal : np.ndarray or Recording
        The recording: a mono float signal at ``model.stft.sr`` Hz, or a
        :class:`~musadv.recording.Recording` of a file's own samples (any rate, any channels).
        The adversary changes what the model hears and the change is written back at the
        recording's rate into every channel; every iterate is judged as decoding its file
        would give it (``'consistent'`` order).
    target : str
        The label the model should give.
    config : AttackConfig
    start : np.ndarray, optional
        Samples shaped like the recording to start from instead of the original (e.g. a
        written example that missed its target after decoding, to repair it).
    rng : np.random.Generator, optional
        The draws of a robust adversary's transformations (``config.robust_to``); default a
        generator seeded with 0.

    Returns
    -------
    AttackResult
    """
    return attack_many(model, [signal], [target], config, None if start is None else [start],
                       None if rng is None else [rng])[0]


def attack_many(model: AudioClassifier, signals: list, targets: list[str], config: AttackConfig = AttackConfig(),
                starts: list | None = None, rngs: list | None = None) -> list[AttackResult]:
    """:func:`attack` of several recordings at once: in the ``'consistent'`` order their iterations go
    in lockstep, each judged in one pass of the network over the elements of every recording
    still running (:meth:`~musadv.interface.DifferentiableClassifier.logits_many`), which is what
    makes a GPU pay. Each recording keeps its own ball, step, momentum and stopping, so each
    result is the one :func:`attack` gives it up to float rounding (which the 16-bit rounding
    inside the loop can grow until an example stops an iteration earlier or later).

    Parameters
    ----------
    model : DifferentiableClassifier
    signals : list of np.ndarray or Recording
        As ``signal`` of :func:`attack`; any lengths and rates.
    targets : list of str
        One per recording.
    config : AttackConfig
    starts : list of np.ndarray or None, optional
        As ``start`` of :func:`attack`, one per recording (``None`` for the original).
    rngs : list of np.random.Generator, optional
        As ``rng`` of :func:`attack`, one per recording.

    Returns
    -------
    list of AttackResult
        In the order of ``signals``; ``seconds`` is each one's share of the batch's time.
    """
    if config.gradient == "autograd" and not isinstance(model, DifferentiableClassifier):
        raise MusadvError(f"{system_name(model)}: gives no gradient; attack it through queries (--black-box)")
    if len(targets) != len(signals) or any(v is not None and len(v) != len(signals) for v in (starts, rngs)):
        raise ValueError(f"{len(signals)} recordings need as many targets (and starts and generators), not {len(targets)}")
    if config.goal != "label" and model.activation != "sigmoid":
        raise MusadvError(f"goal {config.goal!r} is for taggers (independent tag likelihoods); this model's "
                          "labels exclude each other: use goal 'label'")
    for target in targets:
        if target not in model.labels:
            raise MusadvError(f"target {target!r} is not one of the model's labels {model.labels}")
    if config.surrogate is not None:
        _check_surrogate(config.surrogate, model, targets)
    t0 = time.perf_counter()
    cfg = model.stft
    states = [_Iterate(model, signal, model.labels.index(target), config, None if starts is None else starts[k],
                       None if rngs is None else rngs[k])
              for k, (signal, target) in enumerate(zip(signals, targets))]
    surrogate = config.surrogate
    with (evaluating(model) if isinstance(model, torch.nn.Module) else nullcontext(),
          evaluating(surrogate) if isinstance(surrogate, torch.nn.Module) else nullcontext()):
        if config.gradient == "queries":
            for st in states:
                st.z = st.space.x
            judged = _query_judge(model, states, [st.spec0 for st in states], [st.mag0 for st in states],
                                  [False] * len(states), config, copies=False)
        else:
            judged = _judge_many(model, [st.mag0 for st in states], [_phase(model, st.spec0) for st in states],
                                 [st.t_idx for st in states], need_grad=False, goal=config.goal)
        for st, (conf0, _, _, _) in zip(states, judged):
            st.conf0 = conf0
        if config.order == "paper":
            for st in states:
                st.w, st.conf, st.iterations, st.trace, st.reached = _paper_order(model, st.space, st.spec0, st.mag0,
                                                                                  st.t_idx, config)
        else:
            _consistent_order(model, states, config)
    seconds = (time.perf_counter() - t0) / len(states)
    results = []
    for st, target in zip(states, targets):
        rec, w = st.space.rec, st.w
        mag_adv = complex_abs(stft(st.space.hear(w), cfg))
        results.append(AttackResult(
            audio=(w[0] if st.mono else w).cpu().numpy().astype(np.float32),
            sr=rec.sr,
            target=target,
            label_before=model.labels[int(st.conf0.argmax())],
            confidence_before=_confidence_dict(model, st.conf0),
            label_after=model.labels[int(st.conf.argmax())],
            confidence_after=_confidence_dict(model, st.conf),
            reached=st.reached,
            iterations=st.iterations,
            snr_wave_db=snr_db(st.space.X, w),
            snr_trim_db=snr_db(st.space.X, w, trim=edge_samples(rec.sr)),
            snr_mag_db=snr_db(st.mag0, mag_adv),
            seconds=seconds,
            trace=st.trace,
            goal=config.goal,
            gradient=config.gradient,
            queries=st.queries if config.gradient == "queries" else None,
        ))
    return results


def continued_trace(trace: list[dict], iterations: int, queries: int | None) -> list[dict]:
    """A later attack's trace going on from an earlier one's: its iterations numbered on from
    ``iterations`` and, through queries, its counts of predictions on from ``queries``."""
    return [{**t, "iteration": t["iteration"] + iterations, **({"queries": t["queries"] + queries} if "queries" in t else {})}
            for t in trace]


#: Above this SNR a change is below the 16-bit rounding of most recordings: the search stops there.
MINIMIZE_CEILING_DB = 100.0


def minimize(model: AudioClassifier, signal, target: str, config: AttackConfig = AttackConfig(),
             resolution_db: float = 0.5, first_step_db: float = 6.0, patience: int = 20) -> AttackResult:
    """The smallest change found that makes the model say ``target``: the highest SNR within ``resolution_db``.

    Each level is an attack that stops as soon as the model says the target (``stop='label'``:
    the decision boundary, not a confidence threshold). First an attack at the floor
    ``config.snr_db``: it stops where its path first crosses the boundary. Then the bound
    rises (by ``first_step_db``, doubling while attacks succeed) until an attack fails, and is
    bisected between the highest success and the lowest failure until they are
    ``resolution_db`` apart. Once a level has failed, every later level lies below it and
    starts where the last failure ended (a warm start: that example is inside the larger ball,
    and its direction is the best found at that size). A start made by shrinking a bigger
    success onto a smaller ball is not used: it keeps a direction that suits the bigger ball,
    and attacks from it stalled where a fresh attack succeeded.

    Parameters
    ----------
    model, signal, target
        As :func:`attack`.
    config : AttackConfig
        ``snr_db`` is the floor (the lowest SNR accepted); ``max_iter`` holds at every level;
        ``threshold`` and ``stop`` are not used. The ``'consistent'`` order only: the search
        trusts each level's in-loop outcome, which the written file reproduces only in that
        order.
    resolution_db : float
        The search stops when the highest success and the lowest failure are this close (dB).
    first_step_db : float
        The first rise of the bound above the floor's example (dB).
    patience : int
        A level fails when the target's posterior has not risen for this many iterations
        (unless ``config.patience`` says otherwise): near the boundary most failing levels
        stall long before ``max_iter``, and the next level goes on from where it stalled.

    Returns
    -------
    AttackResult
        The example at the highest SNR whose attack succeeded (or the floor's failed attack),
        with ``iterations`` and ``seconds`` summed over all levels, ``trace`` every judgement of
        every level in order (numbered on), and ``levels``.
    """
    if config.order != "consistent":
        raise ValueError("minimize searches in the 'consistent' order (its written files are what was judged)")
    if config.snr_db is None:
        raise ValueError("minimize needs a floor snr_db")
    if config.robust_to:
        raise ValueError("minimize seeks where the model's label changes; a robust adversary's success is judged on "
                         "transformed copies too: not both")
    if not resolution_db > 0:
        raise ValueError(f"resolution_db must be > 0, not {resolution_db}")
    levels, trace = [], []
    level_config = lambda snr: replace(config, snr_db=snr, stop="label",  # noqa: E731
                                       patience=patience if config.patience is None else config.patience)

    def level(snr: float, start) -> AttackResult:
        result = attack(model, signal, target, level_config(snr), start=start)
        # Every judgement in order; a level's first judges its start; queries count on over the levels.
        asked = sum(lv["queries"] for lv in levels) if config.gradient == "queries" else 0
        trace.extend(continued_trace(result.trace, len(trace), asked))
        levels.append({"snr_bound_db": snr, "success": result.success, "snr_wave_db": result.snr_wave_db,
                       "iterations": result.iterations, "queries": result.queries, "seconds": result.seconds})
        return result

    best = level(config.snr_db, None)
    # An original the model already labels with the target needs no change (SNR inf).
    if best.success and best.iterations > 0:
        low, high, rise, start = best.snr_wave_db, None, first_step_db, None
        while low < MINIMIZE_CEILING_DB and (high is None or high - low > resolution_db):
            snr = min(low + rise, MINIMIZE_CEILING_DB) if high is None else (low + high) / 2
            result = level(snr, start)
            if result.success:
                best, low, rise = result, max(snr, result.snr_wave_db), 2 * rise
            else:
                high, start = snr, result.audio
    best.iterations = sum(lv["iterations"] for lv in levels)
    if config.gradient == "queries":
        best.queries = sum(lv["queries"] for lv in levels)
    best.seconds = sum(lv["seconds"] for lv in levels)
    best.trace, best.levels = trace, levels
    return best


class _FileSpace:
    """Where the iterates live: the file's samples ``X`` (channels x samples at the file's rate) and
    what the model hears of them, ``x``.

    :meth:`write` turns a candidate heard signal into file samples: its change is brought to
    the file's rate, added to every channel, projected onto the SNR ball around ``X`` and
    rounded to 16 bits; :meth:`hear` gives what decoding those samples gives the model.
    When the file is mono at the model's rate both are the identity on the samples.

    The samples live on ``device`` (the model's); a file at another rate or with several
    channels is resampled and mixed on the CPU, as decoding does.
    """

    def __init__(self, rec: Recording, config: AttackConfig, device: torch.device = torch.device("cpu")):
        self.rec = rec
        self.X = torch.from_numpy(rec.samples).to(device)
        self.x = torch.from_numpy(rec.signal).to(device)
        self.quantize = config.quantize
        self.radius = None
        if config.snr_db is not None:
            self.radius = ball_radius(self.X, config.snr_db)
            if config.quantize:
                # Rounding moves each sample by at most half a step: keep that much room in the ball.
                self.radius = max(0.0, self.radius - 0.5 / 32768 * math.sqrt(self.X.numel()))

    def hear(self, w: torch.Tensor) -> torch.Tensor:
        if self.rec.at_model_rate:
            return w[0]
        return torch.from_numpy(self.rec.hear(w.cpu().numpy())).to(w.device)

    def bound(self, w: torch.Tensor) -> torch.Tensor:
        """File samples ``w`` brought inside the SNR ball (their change scaled down) and rounded to 16 bits.

        A start from a bigger ball (a warm start of :func:`minimize`) keeps the direction of its
        change; a start already inside the ball is left as it is.
        """
        if self.radius is None or l2_norm(w - self.X) <= self.radius:
            return w
        w = project_ball(w.clone(), self.X, self.radius)
        return quantize_pcm16(w) if self.quantize else w

    def write(self, y: torch.Tensor, bounded: bool = True) -> torch.Tensor:
        """File samples for the heard candidate ``y`` (inside the ball if ``bounded``, 16-bit if quantising)."""
        radius = self.radius if bounded else None
        if self.rec.at_model_rate:
            w = (y if radius is None else project_ball(y, self.x, radius))[None]
        else:
            change = torch.from_numpy(self.rec.to_file_rate(torch.sub(y, self.x).cpu().numpy())).to(y.device)
            if radius is not None:
                # The same change enters every channel: its norm over the file is sqrt(C) |change|.
                dist = l2_norm(change) * math.sqrt(self.rec.n_channels)
                if dist > radius:
                    change.mul_(radius / dist)
            w = self.X + change
            # w is this call's own: rounded in place, which spares a file-sized temporary.
            return quantize_pcm16(w, in_place=True) if self.quantize else w
        return quantize_pcm16(w) if self.quantize else w


def _phase(model: DifferentiableClassifier, spec: torch.Tensor) -> torch.Tensor | None:
    """The phase a model on waveforms hears with the magnitudes; None for models on magnitudes."""
    return unit_phase(spec) if model.needs_signal else None


def _stops(config: AttackConfig, conf: torch.Tensor, t_idx: int) -> bool:
    """Whether the attack has reached what it stops at (see ``AttackConfig.stop`` and ``goal``)."""
    if config.goal == "add":
        return float(conf[t_idx]) >= TAG_THRESHOLD
    if config.goal == "remove":
        return float(conf[t_idx]) < TAG_THRESHOLD
    if config.stop == "label":
        return int(conf.argmax()) == t_idx
    return float(conf[t_idx]) >= config.threshold


def _stalled(config: AttackConfig, trace: list[dict]) -> bool:
    """Whether the target's posterior has not moved past its best (risen; fallen to remove a tag) for
    ``config.patience`` iterations."""
    if config.patience is None or len(trace) <= config.patience:
        return False
    sign = -1.0 if config.goal == "remove" else 1.0
    key = "worst_posterior" if config.robust_to else "target_posterior"
    best_before = max(sign * t[key] for t in trace[:-config.patience])
    return max(sign * t[key] for t in trace[-config.patience:]) <= best_before


def _fista_weight(t_prev: float) -> tuple[float, float]:
    t = 0.5 * (1 + math.sqrt(1 + 4 * t_prev * t_prev))
    return t, (t_prev - 1) / t


def _step_size(config: AttackConfig, grad: torch.Tensor, mag0_norm: float) -> float:
    """The multiplier of the gradient: the paper's mu, or ``step_fraction`` of the ball's radius over ``||grad||``."""
    if config.step is not None:
        return config.step
    g = l2_norm(grad)
    if g == 0:
        return 0.0
    snr = FREE_STEP_SNR_DB if config.snr_db is None else config.snr_db
    return config.step_fraction * mag0_norm / 10 ** (snr / 20) / g


def _masked_step(config: AttackConfig, grad: torch.Tensor, allowed: torch.Tensor) -> float:
    """The step under a masking bound: ``grad`` is weighted in place by ``allowed`` and the step moves the
    magnitudes by ``step_fraction`` of ``||allowed||``.

    The plain normalised gradient puts much of its step into bins the gradient favours, often
    high, quiet ones where the music masks little, and the projection then scales it back; that
    projection is inexact (the inverse STFT of a scaled change is not exactly that change), so
    every step that presses on the bound leaks a few bins above the threshold. Weighting each bin
    by the room the bound leaves there spends the step where the music masks most: the change
    ends further under the threshold, with fewer bins above it, though larger in energy (a lower
    SNR). ``allowed ** 2`` would be the steepest step in the bound's own coordinates; it spends
    the change in loud bins the classifier barely heeds.
    """
    grad.mul_(allowed)
    g = l2_norm(grad)
    return 0.0 if g == 0 else config.step_fraction * l2_norm(allowed) / g


def _gradient_step(spec: torch.Tensor, mags: torch.Tensor, grad: torch.Tensor, step: float) -> torch.Tensor:
    """The spectrum with magnitudes ``max(0, mags - step * grad)`` and the phase of ``spec``.

    ``spec`` (whose magnitudes are ``mags``) is scaled in place by ``max(0, 1 - step * grad / mags)``;
    ``grad`` is overwritten. Where ``spec`` is 0 the new magnitudes get phase 0.
    """
    zero, new_mags = None, None
    if float(mags.min()) == 0:  # exact zeros occur only in digital silence
        zero, new_mags = mags == 0, torch.add(mags, grad, alpha=-step).clamp_(min=0)
        mags = mags.clamp_min(torch.finfo(mags.dtype).tiny)
    one = torch.ones((), dtype=grad.dtype, device=grad.device)
    ratio = torch.addcdiv(one, grad, mags, value=-step, out=grad).clamp_(min=0)
    # Scaling the real and imaginary parts as reals avoids promoting ratio to complex.
    parts = torch.view_as_real(spec)
    parts[..., 0].mul_(ratio)
    parts[..., 1].mul_(ratio)
    if zero is not None:
        spec = torch.where(zero, new_mags.to(spec.dtype), spec)
    return spec


class _Iterate:
    """One recording's state in the adversary's loop: its file space, the current file samples ``w``
    and what the model hears of them ``z``, momentum, trace and outcome."""

    def __init__(self, model: DifferentiableClassifier, signal, t_idx: int, config: AttackConfig, start=None,
                 rng: np.random.Generator | None = None):
        cfg = model.stft
        self.mono = not isinstance(signal, Recording)
        rec = Recording(np.asarray(signal, np.float32)[None], cfg.sr, cfg.sr) if self.mono else signal
        if rec.model_sr != cfg.sr:
            raise MusadvError(f"the recording is prepared for {rec.model_sr} Hz; the model analyses {cfg.sr} Hz")
        device = model.device if isinstance(model, DifferentiableClassifier) else torch.device("cpu")
        self.space = space = _FileSpace(rec, config, device)
        self.spec0 = stft(space.x, cfg)
        self.mag0 = complex_abs(self.spec0)
        self.t_idx = t_idx
        self.first = None if start is None else torch.as_tensor(
            np.asarray(start, np.float32).reshape(rec.samples.shape), device=space.X.device)
        self.trace, self.reached, self.iterations, self.queries = [], False, 0, 0
        self.conf0 = self.conf = self.w = None
        self.bound = None if config.masking_db is None else masking_bound(space.x, cfg, config.masking_db)
        rng = np.random.default_rng(0) if rng is None else rng
        self.draws = self.query = None
        if config.robust_to:
            self.draws = Draws(config.robust_to, config.draws, rng, cfg.sr, space.x.shape[-1])
        if config.gradient == "queries":
            self.query = QueryState(tile_grid(self.mag0.shape[0], cfg, config.query_segment_s, device),
                                    config.query_sigma, config.query_sigma, rng, transfer=config.surrogate is not None)

    def affords_step(self, config: AttackConfig) -> bool:
        """Whether the query budget leaves room for this judgement, a step's estimate and the next judgement."""
        if config.gradient != "queries" or config.max_queries is None:
            return True
        # Each waveform judged is judged again in every transformed copy of a robust adversary.
        per_waveform = 1 + (self.draws.per_iteration if self.draws is not None else 0)
        return self.queries + per_waveform * (2 + 2 * config.query_pairs) <= config.max_queries


@dataclass
class MaskingBound:
    """How much change each critical band of each frame may hold to stay under the music's masking.

    Attributes
    ----------
    bands : torch.Tensor
        int64 ``(n_bins,)``: the critical band of each bin (:func:`~musadv.psychoacoustics.critical_bands`).
    band_power : torch.Tensor
        ``(n_frames, n_bands)``: the most a change's STFT power ``sum |C|^2`` over a band's bins
        may be in each frame.
    per_bin : torch.Tensor
        ``(n_frames, n_bins)``: each bin's equal share of its band's allowance, as a magnitude
        (``sqrt(band_power / bins in the band)``): the room the bound leaves in a bin, which
        weights the masked step (``_masked_step``).
    """

    bands: torch.Tensor
    band_power: torch.Tensor
    per_bin: torch.Tensor


def masking_bound(x: torch.Tensor, config: STFTConfig, margin_db: float) -> MaskingBound:
    """The change to ``x`` whose power in every critical band of every frame stays ``margin_db`` under the band's
    masking threshold (:func:`~musadv.psychoacoustics.band_masking_threshold`), in raw STFT units."""
    from .psychoacoustics import DEFAULT_LEVEL_DB, band_masking_threshold, critical_bands, full_scale_power

    threshold = band_masking_threshold(x.cpu().numpy(), config)
    # The inverse of psychoacoustics.band_power_db.
    band_power = torch.from_numpy(full_scale_power(config) * 10.0 ** ((threshold - margin_db - DEFAULT_LEVEL_DB) / 10.0))
    bands = torch.from_numpy(critical_bands(config))
    per_bin = (band_power / torch.bincount(bands)).sqrt()[:, bands]
    return MaskingBound(bands.to(x.device), band_power.float().to(x.device), per_bin.float().to(x.device))


def _under_mask(y: torch.Tensor, x: torch.Tensor, bound: MaskingBound, config: STFTConfig) -> torch.Tensor:
    """``y`` whose change from ``x`` has each critical band of each frame scaled down to at most its allowance
    (every bin of a band by the same factor: the change's shape within the band and its phase kept)."""
    change = stft(y - x, config)
    power = torch.zeros_like(bound.band_power).index_add_(-1, bound.bands, complex_abs(change) ** 2)
    scale = (bound.band_power / power.clamp_min(torch.finfo(power.dtype).tiny)).clamp_(max=1.0).sqrt_()
    # Where the windows barely cover the ends, the change is drawn to none rather than amplified.
    return x + istft(change * scale[..., bound.bands], config, length=x.shape[-1], prior=torch.zeros_like(x))


def _query_judge(model: AudioClassifier, states: list[_Iterate], specs: list, mags: list, wants: list[bool],
                 config: AttackConfig, copies: bool = True) -> list[tuple]:
    """:func:`_judge_many`'s answer from queries alone (:func:`musadv.queries.estimate_gradients`); each
    state counts the predictions made for it. ``copies``: a robust adversary's iterates are judged
    with this iteration's transformed copies (and a surrogate's step is taken on the same copies)."""
    # Decided before the judgement: a transfer step needs no candidates.
    transfer = [want and st.query.transfer for st, want in zip(states, wants)]
    drawn = [st.draws.sample() if copies and st.draws is not None else [] for st in states]
    items = [(spec, m, st.z, st.t_idx, st.query, want and not moved, "recording", d)
             for st, spec, m, want, moved, d in zip(states, specs, mags, wants, transfer, drawn)]
    try:
        judged = estimate_gradients(model, config.goal, items, config.query_pairs)
    except MusadvError:
        raise
    except Exception as exc:  # the user's own system: one line naming it
        raise MusadvError(f"{system_name(model)}: raised {type(exc).__name__} when asked to predict: {exc}") from exc
    guided = [k for k, moved in enumerate(transfer) if moved]
    if guided:
        surrogate = config.surrogate
        guided_specs = [specs[k].to(surrogate.device) for k in guided]
        on_copies = None
        if config.robust_to:
            on_copies = _transformed_copies(surrogate, [states[k] for k in guided], guided_specs,
                                            [drawn[k] for k in guided])
        guides = _judge_many(surrogate, [mags[k].to(surrogate.device) for k in guided],
                             [_phase(surrogate, spec) for spec in guided_specs],
                             [surrogate.labels.index(model.labels[states[k].t_idx]) for k in guided],
                             need_grad=True, scale_free=True, goal=config.goal, copies=on_copies)
        for k, (_, _, grad, _) in zip(guided, guides):
            conf, loss, _, queries, copy_confs = judged[k]
            judged[k] = (conf, loss, grad.to(mags[k].device), queries, copy_confs)
    out = []
    for st, (conf, loss, grad, queries, copy_confs) in zip(states, judged):
        st.queries += queries
        out.append((conf, loss, grad, copy_confs))
    return out


def _check_surrogate(surrogate: DifferentiableClassifier, model: AudioClassifier, targets: list[str]) -> None:
    """Refuse, in one line, a surrogate whose gradient is not in the system's magnitudes or lacks a target."""
    if surrogate.stft != model.stft:
        raise MusadvError(f"surrogate {system_name(surrogate)} analyses {surrogate.stft.to_dict()}, the system "
                          f"{model.stft.to_dict()}: its gradient must be in the same magnitudes")
    missing = sorted(set(targets) - set(surrogate.labels))
    if missing:
        raise MusadvError(f"surrogate {system_name(surrogate)} has no label {', '.join(missing)}")


def _check_gradient(model: DifferentiableClassifier, grad: torch.Tensor) -> None:
    """Refuse, in one line, a first gradient that cannot move the iterate: a silent 0 % success would read as robustness."""
    problem = gradient_problem(grad)
    if problem is not None:
        raise MusadvError(f"{system_name(model)}: {problem} on this recording; attack it through queries (--black-box)")


def _consistent_order(model, states: list[_Iterate], config: AttackConfig) -> None:
    """Iterate on file samples: every judged iterate is what decoding its (16-bit) file gives, inside the SNR ball.

    The recordings go in lockstep, one network pass per iteration for all still running.
    """
    cfg = model.stft
    for st in states:
        st.mag0_norm, st.X_norm = l2_norm(st.mag0), l2_norm(st.space.X)
        st.w = st.space.write(st.space.x) if st.first is None else st.space.bound(st.first)
        st.z = st.space.hear(st.w)
        st.z_prev, st.t_prev, st.running = st.z, 1.0, True
    for it in range(config.max_iter + 1):
        running = [st for st in states if st.running]
        if not running:
            break
        specs = [stft(st.z, cfg) for st in running]
        mags = [complex_abs(spec) for spec in specs]
        wants = [it < config.max_iter and st.affords_step(config) for st in running]
        if config.gradient == "queries":
            judged = _query_judge(model, running, specs, mags, wants, config)
        else:
            judged = _judge_many(model, mags, [_phase(model, spec) for spec in specs], [st.t_idx for st in running],
                                 need_grad=any(wants), scale_free=config.step is None, goal=config.goal,
                                 copies=_transformed_copies(model, running, specs) if config.robust_to else None)
        for st, spec, m, need_grad, (conf, loss, grad, copies) in zip(running, specs, mags, wants, judged):
            st.conf = conf
            dist = _distance(st.w, st.space.X)
            snr = 20 * math.log10(st.X_norm / dist) if dist > 0 else math.inf
            entry = {"iteration": it, "loss": loss, "target_posterior": float(conf[st.t_idx]), "snr_db": snr}
            if config.gradient == "queries":
                entry["queries"] = st.queries  # every prediction so far: this judgement's and its step's candidates
            if config.robust_to:
                # The copy furthest from the goal: what a robust adversary's progress is.
                worst = max if config.goal == "remove" else min
                entry["worst_posterior"] = worst(float(c[st.t_idx]) for c in [conf, *copies])
            st.trace.append(entry)
            if _stops(config, conf, st.t_idx) and all(_stops(config, c, st.t_idx) for c in copies):
                st.reached, st.running = True, False
                continue
            if not need_grad or _stalled(config, st.trace):
                st.running = False
                continue
            if it == 0 and config.gradient == "autograd":
                _check_gradient(model, grad)
            step = _step_size(config, grad, st.mag0_norm) if st.bound is None else _masked_step(config, grad, st.bound.per_bin)
            # The current iterate anchors the resynthesis where the windows barely cover the edges.
            y = istft(_gradient_step(spec, m, grad, step), cfg, length=st.z.shape[-1], prior=st.z)
            if config.momentum:
                t_now, alpha = _fista_weight(st.t_prev)
                y.add_(st.z, alpha=alpha).sub_(st.z_prev, alpha=alpha)  # y + alpha (z - z_prev), no temporary
                st.t_prev = t_now
            if st.bound is not None:
                y = _under_mask(y, st.space.x, st.bound, cfg)
            st.w = None  # free the previous file samples before the next are made: they are no longer needed
            st.w = st.space.write(y)
            st.z_prev, st.z = st.z, st.space.hear(st.w)
        del specs, mags, judged
    for st in states:
        st.iterations = len(st.trace) - 1
        st.z = st.z_prev = None


def _paper_order(model, space: _FileSpace, spec0, mag0, t_idx, config):
    """The paper's order: GL projection with the exemplar's phase (of ``spec0``), then the SNR ball on magnitudes."""
    cfg, x, n, mag0_norm = model.stft, space.x, space.x.shape[-1], l2_norm(mag0)
    phase0 = torch.polar(torch.ones_like(mag0), spec0.angle())
    heard_phase = phase0 if model.needs_signal else None
    radius = None if config.snr_db is None else ball_radius(mag0, config.snr_db)
    Y = mag0.clone()
    Y_prev, t_prev = Y, 1.0
    trace, reached = [], False
    for it in range(config.max_iter + 1):
        need_grad = it < config.max_iter
        conf, loss, grad, _ = _judge(model, Y, heard_phase, t_idx, need_grad=need_grad, scale_free=config.step is None,
                                  goal=config.goal)
        trace.append({"iteration": it, "loss": loss, "target_posterior": float(conf[t_idx]), "snr_db": snr_db(mag0, Y)})
        if _stops(config, conf, t_idx):
            reached = True
            break
        if not need_grad or _stalled(config, trace):
            break
        Z = Y - _step_size(config, grad, mag0_norm) * grad
        if config.momentum:
            t_now, alpha = _fista_weight(t_prev)
            Z = Z + alpha * (Y - Y_prev)
            t_prev = t_now
        Z = torch.clamp(Z, min=0)
        Z = complex_abs(stft(istft(Z * phase0, cfg, length=n, prior=x), cfg))
        Y_prev, Y = Y, (project_ball(Z, mag0, radius) if radius is not None else Z)
    # The in-loop outcome judges magnitudes that no signal has; the written file may differ,
    # and its waveform SNR is not bounded.
    w = space.write(istft(Y * phase0, cfg, length=n, prior=x), bounded=False)
    return w, conf, len(trace) - 1, trace, reached


def check_policy(policy: str, labels: list[str], truth_known: bool) -> None:
    """Refuse, before any work, a policy the run cannot follow: one line saying why.

    Parameters
    ----------
    policy : str
        As :func:`choose_targets`.
    labels : list of str
        The model's labels.
    truth_known : bool
        Whether every recording has a true label (``perfect`` needs it).
    """
    if policy.startswith("label:"):
        name = policy[len("label:"):]
        if name not in labels:
            raise MusadvError(f"target {name!r} is not one of the model's labels: {', '.join(labels)}")
    elif policy == "perfect":
        if not truth_known:
            raise MusadvError("the 'perfect' policy needs the true label (attack a split, not loose files)")
    elif policy not in ("random", "all_wrong", "every_label"):
        raise MusadvError(f"unknown policy {policy!r}; expected random, all_wrong, perfect, every_label or label:NAME")


def choose_targets(policy: str, labels: list[str], true_label: str | None, predicted: str,
                   rng: np.random.Generator) -> list[str]:
    """Targets for one recording under a policy (reference modes and Table II).

    Parameters
    ----------
    policy : str
        ``'random'`` (any label uniformly, the truth included: the system is then right with
        probability 1/K), ``'all_wrong'`` (uniformly among labels other than the truth, or than
        the model's own label when the truth is unknown), ``'perfect'`` (the truth),
        ``'label:NAME'`` (always NAME), ``'every_label'`` (one example per label).
    labels : list of str
        The model's labels.
    true_label : str or None
    predicted : str
        The model's label for the original.
    rng : np.random.Generator

    Returns
    -------
    list of str
    """
    if policy == "random":
        return [labels[rng.integers(len(labels))]]
    if policy == "all_wrong":
        avoid = true_label if true_label is not None else predicted
        others = [lab for lab in labels if lab != avoid]
        return [others[rng.integers(len(others))]]
    if policy == "perfect":
        if true_label is None:
            raise MusadvError("the 'perfect' policy needs the true label (attack a split, not loose files)")
        return [true_label]
    if policy == "every_label":
        return list(labels)
    if policy.startswith("label:"):
        name = policy[len("label:"):]
        if name not in labels:
            raise MusadvError(f"policy {policy!r}: {name!r} is not one of the model's labels {labels}")
        return [name]
    raise MusadvError(f"unknown policy {policy!r}; expected random, all_wrong, perfect, every_label or label:NAME")

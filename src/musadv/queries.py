"""The adversary's step from queries alone: the gradient of its loss estimated from predictions of changed recordings.

A query-only adversary sees a system through :meth:`~musadv.interface.AudioClassifier.predict_many`
and nothing else, so it attacks what has no gradient (a random forest, the MFCC baseline, a
system behind a service) and what hides its gradient (a front end that rounds, a detached
input). Its step is an antithetic NES estimate (Ilyas et al. 2018) of the gradient of a margin
loss on the recording's confidences (:func:`query_loss`), in a space of few dimensions: one
value per *tile*, a critical band (:func:`musadv.psychoacoustics.critical_bands`) by a segment
of frames (:class:`TileGrid`). A candidate adds ``+-sigma u p`` to the iterate's magnitudes
(``u`` standard normal, one draw per tile; ``p`` the :func:`profile`, the square root of the
magnitudes scaled to their norm) with the iterate's phase, and is judged as the waveform its
inverse STFT gives: every query is a real recording. The estimate ``g`` per tile, spread over
the tile's bins as ``p g``, takes the place of the autograd gradient in the adversary's loop;
everything after it, momentum, the masking bound, the SNR ball, the 16-bit rounding, the
stopping rule, is the one loop of :mod:`musadv.attack`. Each estimate is blended with the last
one (:data:`PRIOR_WEIGHT`, Ilyas et al. 2019's time prior).

Saturated confidences (a forest whose windows all vote for one label, or a system that gives a
label only) leave the target's confidence the same in every candidate. Then ``sigma`` doubles
for that recording, up to :data:`MAX_SIGMA`: the gradient of the loss smoothed at a larger
scale, which reaches the nearest change of vote (what a decision-based attack estimates); once
some candidate moves the target's confidence it halves back towards its start.

A *surrogate* (a network the attacker has, on the same analysis and labels) can guide the step:
a transfer prior (Papernot et al. 2016's transfer; Cheng et al. 2019's prior-guided search). Its
gradient, not an estimate, is each step while the system's loss keeps reaching new lows, one
query a step (the iterate's judgement); once :data:`TRANSFER_PATIENCE` judgements in a row bring
no new low, the recording's steps are estimated from queries for the rest of its attack
(:meth:`QueryState.heed`; the step asked in the same call as the last of them still follows the
surrogate). The system is still judged by its predictions alone.

A robust adversary (expectation over transformation, :mod:`musadv.robust`) judges the iterate and
every candidate with the same transformed copies, each copy a query, and estimates the gradient
of the mean over a waveform and its copies of the target's cross-entropy: unlike the margin, it is
bounded below, so a copy far past the goal cannot hide one short of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .interface import AudioClassifier
from .spectral import STFTConfig, complex_abs, istft, l2_norm, stft

__all__ = ["TileGrid", "tile_grid", "query_loss", "QueryState", "estimate_gradients", "LOSS_FLOOR", "MAX_SIGMA",
           "TRANSFER_PATIENCE"]

#: Weight of the last estimate in each new one (Ilyas et al. 2019's time prior): the gradient changes
#: little from one step to the next, the noise of an estimate from few queries does.
PRIOR_WEIGHT = 0.9
#: Added to confidences before their logarithm: a label no window votes for still has a finite loss.
LOSS_FLOOR = 1e-4
#: The largest smoothing scale (a candidate's change over the recording's norm) a recording's estimate
#: may grow to on saturated confidences.
MAX_SIGMA = 2.0
#: Steps along a surrogate's gradient without a new low of the system's loss before a recording's
#: steps are estimated from queries instead: a vote share moves in jumps, so a step that leaves it
#: where it was is not yet a failed transfer.
TRANSFER_PATIENCE = 10


@dataclass(frozen=True)
class TileGrid:
    """Tiles of a recording's STFT: the low-dimensional space the query-only adversary estimates in.

    Attributes
    ----------
    segments : torch.Tensor
        int64 ``(n_frames,)``: each frame's segment (consecutive frames, ``segment_frames`` each).
    bands : torch.Tensor
        int64 ``(n_bins,)``: each bin's critical band.
    n_segments, n_bands : int
    """

    segments: torch.Tensor
    bands: torch.Tensor
    n_segments: int
    n_bands: int

    def expand(self, tiles: torch.Tensor) -> torch.Tensor:
        """Per-tile values ``(..., n_segments, n_bands)`` as per-bin values ``(..., n_frames, n_bins)``."""
        return tiles[..., self.segments, :][..., self.bands]


def tile_grid(n_frames: int, config: STFTConfig, segment_s: float, device=None) -> TileGrid:
    """The tiles of an STFT of ``n_frames`` frames: critical bands by segments of ``segment_s`` seconds
    (at least one frame; the last segment takes what is left)."""
    from .psychoacoustics import critical_bands

    if not segment_s > 0:
        raise ValueError(f"segment_s must be > 0 seconds, not {segment_s}")
    seg_frames = max(1, round(segment_s * config.sr / config.hop))
    n_segments = max(1, math.ceil(n_frames / seg_frames))
    segments = torch.clamp(torch.arange(n_frames, device=device) // seg_frames, max=n_segments - 1)
    bands = torch.from_numpy(critical_bands(config)).to(device)
    return TileGrid(segments, bands, n_segments, int(bands.max()) + 1)


def query_loss(goal: str, confidence: torch.Tensor, target: int) -> torch.Tensor:
    """The loss a query-only adversary lowers, from recording confidences alone.

    Parameters
    ----------
    goal : {'label', 'add', 'remove'}
        As :class:`musadv.attack.AttackConfig`.
    confidence : torch.Tensor
        ``(..., n_labels)`` confidences in [0, 1] (mean posteriors, shares of votes, a tagger's
        likelihoods).
    target : int

    Returns
    -------
    torch.Tensor
        ``(...)``. ``'label'``: the margin ``log(max_other + f) - log(target + f)`` (Carlini and
        Wagner's, on confidences; ``f`` = :data:`LOSS_FLOOR`), negative once the target leads;
        ``'add'``: ``-log(p + f)``; ``'remove'``: ``-log(1 - p + f)`` of the target's confidence ``p``.
    """
    p = confidence[..., target]
    if goal == "add":
        return -torch.log(p + LOSS_FLOOR)
    if goal == "remove":
        return -torch.log(1 - p + LOSS_FLOOR)
    others = confidence.clone()
    others[..., target] = -math.inf
    return torch.log(others.max(-1).values + LOSS_FLOOR) - torch.log(p + LOSS_FLOOR)


@dataclass
class QueryState:
    """One recording's query-only estimator: its tiles, its smoothing scale and its random draws.

    Attributes
    ----------
    grid : TileGrid
    sigma : float
        The current smoothing scale (a candidate's change over the recording's norm).
    sigma0 : float
        Where ``sigma`` starts and returns to.
    rng : np.random.Generator
        The draws of the candidates (an example's own, so runs repeat).
    prior : torch.Tensor or None
        The last estimate per tile ``(n_segments, n_bands)`` (the time prior).
    transfer : bool
        Whether the next step follows a surrogate's gradient rather than an estimate.
    best_loss : float
        The lowest loss judged so far.
    stale : int
        Judgements since ``best_loss`` was last lowered.
    """

    grid: TileGrid
    sigma: float
    sigma0: float
    rng: np.random.Generator
    prior: torch.Tensor | None = None
    transfer: bool = False
    best_loss: float = math.inf
    stale: int = 0

    def heed(self, loss: float) -> None:
        """Take in the loss of the iterate just judged; a transfer that has not lowered it for
        :data:`TRANSFER_PATIENCE` judgements gives way to estimates."""
        if loss < self.best_loss:
            self.best_loss, self.stale = loss, 0
        else:
            self.stale += 1
        if self.transfer and self.stale >= TRANSFER_PATIENCE:
            self.transfer = False


def profile(mags: torch.Tensor) -> torch.Tensor:
    """How a tile's change spreads over its bins: ``sqrt(mags)``, scaled to the norm of ``mags``.

    A change proportional to the magnitudes (a gain) stays in the loud bins, where a network
    that standardises its input heeds it least: following the true gradient in that space
    failed where the plain gradient succeeded on the demo's DNN. A flat change and this one both
    succeeded; this one keeps the change smaller in the quietest bins.
    """
    p = mags.sqrt()
    return p * (l2_norm(mags) / max(l2_norm(p), torch.finfo(p.dtype).tiny))


def candidates(spec: torch.Tensor, mags: torch.Tensor, z: torch.Tensor, state: QueryState, pairs: int,
               config: STFTConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``2 pairs`` changed recordings of the iterate (waveform ``z``, STFT ``spec``, magnitudes ``mags``).

    Candidate ``+-u`` has the magnitudes ``max(0, mags +- sigma u p)`` (``u`` one draw per tile,
    ``p`` the :func:`profile`) with the iterate's phase: a change of about ``sigma`` times the
    recording's norm.

    Returns
    -------
    tuple of torch.Tensor
        The draws ``u`` ``(pairs, n_segments, n_bands)``, the profile ``(n_frames, n_bins)``, the
        candidates' waveforms ``(2 pairs, n_samples)`` (the ``+`` half first) and their
        magnitudes ``(2 pairs, n_frames, n_bins)``.
    """
    from .interface import unit_phase

    g = state.grid
    u = torch.from_numpy(state.rng.standard_normal((pairs, g.n_segments, g.n_bands), dtype=np.float32)).to(spec.device)
    p = profile(mags)
    changed = (mags + g.expand(torch.cat([u, -u]) * state.sigma) * p).clamp_(min=0)
    waves = istft(changed * unit_phase(spec), config, length=z.shape[-1], prior=z)
    return u, p, waves, complex_abs(stft(waves, config))


def estimate_gradients(model: AudioClassifier, goal: str, items: list[tuple], pairs: int) -> list[tuple]:
    """One round of queries for several recordings: each iterate judged, each gradient estimated, in one
    :meth:`~musadv.interface.AudioClassifier.predict_many`.

    Parameters
    ----------
    model : AudioClassifier
    goal : str
    items : list of tuple
        Per recording ``(spec, mags, z, target, state, need_grad, name, draws)``: the iterate's
        STFT, magnitudes and waveform, the target's index, its :class:`QueryState`, whether a step
        is wanted, its name for error messages, and the transformations (a list of
        :class:`musadv.robust.Draw`, empty for the plain adversary) whose copies of the iterate
        and of every candidate are judged beside them (expectation over transformation: the
        same draws for all, so that a pair's difference is the change's and not the draws').
    pairs : int
        Antithetic pairs of candidates per estimate.

    Returns
    -------
    list of tuple
        Per recording ``(confidence, loss, gradient or None, queries, copies)``: the iterate's
        confidences ``(n_labels,)`` and loss (the mean over the iterate and its copies), the
        estimated gradient in the magnitudes ``(n_frames, n_bins)`` (``p g`` for the per-tile
        estimate ``g`` and the :func:`profile` ``p``; zeros when no candidate pair differed),
        the predictions made, and the confidences of the iterate's transformed copies.
    """
    from .robust import differentiable

    cfg = model.stft
    frames, signals, names, owners, draws_of, shapes = [], [], [], [], {}, []
    with torch.no_grad():
        for k, (spec, mags, z, target, state, need_grad, name, draws) in enumerate(items):
            waves, wave_mags = z[None], mags[None]
            if need_grad:
                u, p, cand_waves, cand_mags = candidates(spec, mags, z, state, pairs, cfg)
                draws_of[k] = (u, p)
                waves, wave_mags = torch.cat([waves, cand_waves]), torch.cat([wave_mags, cand_mags])
            for w, m in zip(waves, wave_mags):
                heard = [(w, m, name)]
                for d in draws:
                    copy = differentiable(d, w, cfg.sr)
                    heard.append((copy, complex_abs(stft(copy, cfg)), f"{name} ({d.transformation.kind})"))
                for signal, signal_mags, label in heard:
                    frames.append(signal_mags.cpu().numpy())
                    signals.append(signal.cpu().numpy())
                    names.append(label)
                    owners.append(k)
            shapes.append((len(waves), 1 + len(draws)))
        predictions = model.predict_many(frames, signals, names)
    conf_all = torch.tensor([[p.confidence[lab] for lab in model.labels] for p in predictions], dtype=torch.float64)
    owners_t = torch.tensor(owners)
    out = []
    for k, (spec, mags, z, target, state, need_grad, name, draws) in enumerate(items):
        rows = torch.nonzero(owners_t == k).ravel()
        conf = conf_all[rows].reshape(*shapes[k], -1)  # (waveforms, the waveform and its copies, labels)
        # A mean over copies needs a loss bounded below, or one copy far past the goal hides another short
        # of it: the robust adversary's is the target's cross-entropy (as its gradient form's), the plain one's the margin.
        losses = query_loss("add" if draws and goal == "label" else goal, conf, target).mean(-1)
        loss = float(losses[0])
        state.heed(loss)
        grad = None
        if need_grad:
            diff = (losses[1:pairs + 1] - losses[pairs + 1:]).float().to(mags.device)
            # The target's own confidence is what must move: where no candidate moves it (a forest
            # whose windows never vote for the target nearby), look further.
            moved = conf[1:, :, target].mean(-1)
            if bool((moved == moved[0]).all()):
                state.sigma = min(2 * state.sigma, MAX_SIGMA)
            else:
                state.sigma = max(state.sigma0, state.sigma / 2)
            u, p = draws_of[k]
            g = torch.einsum("p,psb->sb", diff, u) / (2 * pairs)
            g = g / max(l2_norm(g), torch.finfo(g.dtype).tiny)
            if state.prior is not None and PRIOR_WEIGHT > 0:
                g = PRIOR_WEIGHT * state.prior + (1 - PRIOR_WEIGHT) * g
            state.prior = g
            grad = p * state.grid.expand(g)
        out.append((conf[0, 0].float(), loss, grad, len(rows), [c.float() for c in conf[0, 1:]]))
    return out

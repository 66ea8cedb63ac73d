"""What musadv asks of a classifier: the declared interface every command works through.

Two abstract bases, in the spirit of ART's estimators and foolbox's models:

:class:`AudioClassifier`
    Any system that labels recordings: its ``labels``, the STFT settings it analyses with
    (``stft``), whether it needs the waveform as well as the magnitudes (``needs_signal``), and
    :meth:`~AudioClassifier.predict`, the recording-level posteriors. Testing, classifying and
    re-scoring attack runs use only this, so the random forest and the MFCC baseline take part.
:class:`DifferentiableClassifier`
    An :class:`AudioClassifier` that is also a :class:`torch.nn.Module` and gives element logits
    differentiable in the magnitude STFT (:meth:`~DifferentiableClassifier.logits`), the
    quantity the adversary changes. Its recording label follows eq. 3-4 of the paper: the mean
    of the element posteriors (:func:`recording_confidence`), argmax.

:func:`evaluating` is the one way every part of musadv puts a network in evaluation mode.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import AudioError
from .spectral import STFTConfig

__all__ = ["Prediction", "AudioClassifier", "DifferentiableClassifier", "recording_confidence", "evaluating", "frozen",
           "unit_phase", "system_name"]


@dataclass
class Prediction:
    """A recording's label and its confidence per label (mean element posterior, or share of votes)."""

    label: str
    confidence: dict[str, float]
    n_elements: int

    def to_dict(self) -> dict:
        return {"label": self.label, "confidence": self.confidence, "n_elements": self.n_elements}


def recording_confidence(posteriors, groups: torch.Tensor | None = None, n_groups: int | None = None):
    """Eq. 3-4: the mean element posterior of each label, per recording.

    Parameters
    ----------
    posteriors : torch.Tensor or np.ndarray
        Element probabilities ``(n_elements, n_labels)``: posteriors (rows summing to 1) or a
        tagger's likelihoods (each in [0, 1]).
    groups : torch.Tensor, optional
        Recording index of every element (int64, ``(n_elements,)``); without it all elements
        belong to one recording.
    n_groups : int, optional
        Number of recordings (default ``groups.max() + 1``).

    Returns
    -------
    torch.Tensor or np.ndarray
        ``(n_labels,)`` for one recording, ``(n_groups, n_labels)`` with ``groups``; the type
        of ``posteriors``. The paper's sum of posteriors divided by the number of elements: the
        argmax is the same, and the values read as confidences in [0, 1].
    """
    as_numpy = isinstance(posteriors, np.ndarray)
    post = torch.from_numpy(posteriors) if as_numpy else posteriors
    if len(post) == 0:
        raise ValueError("a recording needs at least one element to be classified")
    if groups is None:
        conf = post.mean(0)
    else:
        n = int(groups.max()) + 1 if n_groups is None else n_groups
        sums = torch.zeros(n, post.shape[1], dtype=post.dtype).index_add_(0, groups, post)
        counts = torch.zeros(n, dtype=post.dtype).index_add_(0, groups, torch.ones_like(groups, dtype=post.dtype))
        conf = sums / counts.clamp_min(1)[:, None]
    return conf.numpy() if as_numpy else conf


@contextmanager
def frozen(module: torch.nn.Module):
    """No weight gradients inside the block (the module's mode unchanged); its own flags after it.

    An input gradient taken with the weights frozen takes a network's input-gradient paths
    (the CDNN's FFT convolution, :class:`musadv.models.CDNN`) instead of the training ones.
    """
    # Lazy modules' parameters take shape on the first call; they cannot be touched before.
    params = [p for p in module.parameters() if not torch.nn.parameter.is_lazy(p)]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


@contextmanager
def evaluating(module: torch.nn.Module):
    """Evaluation mode and no weight gradients inside the block; the module's own state after it.

    Dropout is off and batch statistics are frozen, so what a network says about a recording
    does not depend on where it is asked; gradients still flow to the inputs.
    """
    # Each submodule's own mode comes back: ``module.train(was_training)`` would set every
    # submodule to the outer one's, and a pretrained network held by a wrapper still in
    # training mode would leave with its batch norm training on every later batch.
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with frozen(module):
            yield module
    finally:
        for m, mode in modes:
            m.training = mode


def system_name(system: "AudioClassifier") -> str:
    """How messages name a system: the directory it was loaded from, the factory that made it, or its type."""
    return str(system.path) if system.path else system.info.get("factory") or type(system).__name__


def unit_phase(spec: torch.Tensor) -> torch.Tensor:
    """``spec / |spec|`` (1 where ``spec`` is 0): the phase a magnitude change keeps."""
    mags = spec.abs()
    return torch.where(mags > 0, spec / mags.clamp_min(torch.finfo(mags.dtype).tiny), torch.ones_like(spec))


class AudioClassifier(ABC):
    """A system that labels audio recordings.

    Attributes
    ----------
    labels : list of str
        Output labels, in order.
    stft : STFTConfig
        Analysis settings (sampling rate, framing) of the magnitudes it is given.
    needs_signal : bool
        :meth:`predict` needs the waveform (at ``stft.sr`` Hz, mono), not only the magnitudes
        (and, for a :class:`DifferentiableClassifier`, :meth:`~DifferentiableClassifier.logits`
        needs the phase).
    info : dict
        Metadata (the ``model.json`` of a saved model: training data, partition, settings).
    path : Path or None
        Where the system was loaded from.
    activation : {'softmax', 'sigmoid'}
        What the confidences are. ``'softmax'``: a distribution over the labels (a classifier's
        mean posteriors, or shares of votes). ``'sigmoid'``: an independent likelihood per label
        (a tagger, or a genre system made from one); a network's element logits go through a
        sigmoid (:meth:`DifferentiableClassifier.probabilities`). Either way the recording's
        label is the argmax of its confidences.
    uncovered_labels : tuple of str
        Labels of a dataset that the system declares it has no output for (a genre system
        made from a tagger that has no tag for a genre): recordings with these labels are left
        out of its judgements, and counted, instead of being refused.
    """

    labels: list[str]
    stft: STFTConfig
    needs_signal: bool = False
    info: dict
    path: Path | None = None
    activation: str = "softmax"
    uncovered_labels: tuple[str, ...] = ()

    def to(self, device: torch.device | str) -> "AudioClassifier":
        """Move the system's networks to ``device`` (see :func:`musadv.devices.resolve_device`); returns it.

        Networks (:class:`torch.nn.Module`) move with ``Module.to``; a system with no network
        (the MFCC baseline) computes with NumPy on the CPU and stays there.
        """
        return self

    @abstractmethod
    def predict(self, frames: np.ndarray, signal: np.ndarray | None = None, name: str = "recording") -> Prediction:
        """Label one recording.

        Parameters
        ----------
        frames : np.ndarray
            Magnitude frames ``(n_frames, n_bins)`` of the recording, analysed with ``stft``.
        signal : np.ndarray, optional
            The mono waveform at ``stft.sr`` Hz (required when ``needs_signal``).
        name : str
            Names the recording in error messages.

        Raises
        ------
        AudioError
            If the recording is too short to be labelled.
        """

    def predict_many(self, frames: list[np.ndarray], signals: list[np.ndarray | None],
                     names: list[str]) -> list[Prediction]:
        """:meth:`predict` of several recordings: what a query-only adversary asks at once.

        Parameters
        ----------
        frames : list of np.ndarray
            Each recording's magnitude frames ``(n_frames_i, n_bins)``.
        signals : list of np.ndarray or None
            Each one's mono waveform at ``stft.sr`` Hz (required when ``needs_signal``).
        names : list of str
            Name each recording in error messages.

        Returns
        -------
        list of Prediction
            What :meth:`predict` gives each, to within float rounding. Systems override this
            with one pass over all of them (a network over every element, a forest over every
            texture window); by default each is predicted alone.
        """
        return [self.predict(f, s, n) for f, s, n in zip(frames, signals, names)]


#: Most magnitude frames of several recordings that :meth:`DifferentiableClassifier.predict_many`
#: puts through a network in one pass (the chunk of :meth:`DifferentiableClassifier.posteriors`: on a CPU,
#: larger passes were slower).
PREDICT_FRAMES = 1 << 12


class DifferentiableClassifier(AudioClassifier):
    """An :class:`AudioClassifier` that is a :class:`torch.nn.Module` with element logits
    differentiable in the magnitude STFT.

    Attributes
    ----------
    element_frames : int
        Consecutive magnitude frames that make one element (a frame, a patch, a segment).
    """

    element_frames: int = 1

    @property
    def device(self) -> torch.device:
        """Where the network's weights are (``model.to(device)`` moves them): its inputs are brought
        there, what it says comes back to the CPU."""
        for t in itertools.chain(self.parameters(), self.buffers()):
            return t.device
        return torch.device("cpu")

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Element probabilities ``(n_elements, n_labels)`` from logits, by :attr:`~AudioClassifier.activation`."""
        return torch.sigmoid(logits) if self.activation == "sigmoid" else torch.softmax(logits, -1)

    @abstractmethod
    def logits(self, mags: torch.Tensor, phase: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(n_elements, n_labels)`` of a recording's non-overlapping elements.

        Parameters
        ----------
        mags : torch.Tensor
            Magnitudes ``(n_frames, n_bins)``, the quantity the adversary changes; gradients
            flow back to them.
        phase : torch.Tensor, optional
            Unit-modulus complex ``(n_frames, n_bins)`` that, with ``mags``, makes the spectrum
            of the waveform heard; systems on waveforms need it (see :func:`unit_phase`), the
            others ignore it.
        """

    def logits_many(self, mags: list[torch.Tensor], phases: list[torch.Tensor | None]) -> list[torch.Tensor]:
        """:meth:`logits` of several recordings, each ``(n_elements_i, n_labels)``.

        Networks whose elements are independent override this with one pass over the elements
        of all recordings (what makes attacking several recordings at once pay on a GPU); the
        logits are those of :meth:`logits` to within float rounding.
        """
        return [self.logits(m, p) for m, p in zip(mags, phases)]

    def posteriors(self, frames: np.ndarray, signal: np.ndarray | None = None, chunk_frames: int = 4096) -> np.ndarray:
        """Element probabilities ``(n_elements, n_labels)`` of one recording, a chunk of frames at a time.

        Elements do not overlap, so chunks of whole elements give the posteriors of the whole
        recording; systems that hear the waveform (``needs_signal``) override this.
        """
        # A copy (cached arrays are read-only maps), on the model's device.
        mags = torch.from_numpy(np.array(frames, dtype=np.float32)).to(self.device)
        step = max(1, chunk_frames // self.element_frames) * self.element_frames
        n = len(mags) // self.element_frames * self.element_frames
        with evaluating(self), torch.no_grad():
            out = [self.probabilities(self.logits(mags[i : i + step])) for i in range(0, n, step)]
        return torch.cat(out).cpu().numpy() if out else np.zeros((0, len(self.labels)), np.float32)

    def predict(self, frames: np.ndarray, signal: np.ndarray | None = None, name: str = "recording") -> Prediction:
        """Eq. 3-4: the mean element posterior of every label; the label is its argmax."""
        return self._prediction(self.posteriors(frames, signal), frames, name)

    def _prediction(self, post: np.ndarray, frames: np.ndarray | None, name: str) -> Prediction:
        if len(post) == 0:
            # A system on waveforms may be given no frames at all.
            n = "no" if frames is None else len(frames)
            raise AudioError(f"{name}: too short for this model ({n} frames; one element is {self.element_frames})")
        conf = recording_confidence(post)
        return Prediction(self.labels[int(np.argmax(conf))], dict(zip(self.labels, map(float, conf))), len(post))

    def predict_many(self, frames: list[np.ndarray], signals: list[np.ndarray | None],
                     names: list[str]) -> list[Prediction]:
        """:meth:`predict` of several recordings, their elements through the network together
        (:meth:`logits_many`, at most :data:`PREDICT_FRAMES` frames a pass); systems that hear the
        waveform predict each alone."""
        if self.needs_signal:
            return super().predict_many(frames, signals, names)
        groups, group, size = [], [], 0
        for k, f in enumerate(frames):
            if group and size + len(f) > PREDICT_FRAMES:
                groups.append(group)
                group, size = [], 0
            group.append(k)
            size += len(f)
        groups.append(group)
        out: list[Prediction] = []
        with evaluating(self), torch.no_grad():
            for group in groups:
                mags = [torch.from_numpy(np.array(frames[k], dtype=np.float32)).to(self.device) for k in group]
                logits = self.logits_many(mags, [None] * len(mags))
                out += [self._prediction(self.probabilities(l).cpu().numpy(), frames[k], names[k])
                        for k, l in zip(group, logits)]
        return out

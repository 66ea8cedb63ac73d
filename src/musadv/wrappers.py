"""Any PyTorch module as a musadv classifier, so that the adversary attacks models musadv did not train.

:class:`TorchClassifier` owns what lies between the magnitude STFT the adversary changes and
the user's module, as ART's ``PyTorchClassifier`` and foolbox's ``PyTorchModel`` own a model's
preprocessing: the front end, the standardisation and the cutting into elements. The front
ends are plain functions of (magnitudes, phase, settings), differentiable in the magnitudes:

``'magnitude'``
    Elements ``(n_elements, element_frames, n_bins)`` of raw magnitudes (like the paper's DNN
    and CDNN).
``'logmel'``
    ``log(mel_filterbank @ magnitude**2 + log_offset)``: elements ``(n_elements, element_frames, n_mels)``.
``'waveform'``
    The inverse STFT of magnitudes and phase: elements ``(n_elements, element_frames * hop)``
    samples at ``stft.sr`` Hz. With centred framing the waveform heard is exactly the
    recording's, so the adversary's gradient reaches the magnitudes through the inverse STFT.

The recording's label follows eq. 3-4 (mean element posterior) for every front end.
"""

from __future__ import annotations

import librosa
import numpy as np
import torch
from torch import nn

from .errors import MusadvError
from .interface import DifferentiableClassifier, evaluating
from .spectral import STFTConfig, istft

__all__ = ["TorchClassifier", "FRONT_ENDS", "logmel", "waveform_segments", "mel_filterbank"]

FRONT_ENDS = ("magnitude", "logmel", "waveform")
ACTIVATIONS = ("softmax", "sigmoid")


def mel_filterbank(stft: STFTConfig, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None) -> torch.Tensor:
    """Slaney-style mel filterbank ``(n_mels, n_bins)`` for ``stft``'s bins (librosa's), float32."""
    return torch.from_numpy(librosa.filters.mel(sr=stft.sr, n_fft=stft.n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)).float()


def logmel(mags: torch.Tensor, filterbank: torch.Tensor, log_offset: float = 1e-6) -> torch.Tensor:
    """Log-mel energies ``(n_frames, n_mels)`` of magnitudes ``(n_frames, n_bins)``: ``log(fb @ |X|^2 + offset)``."""
    return torch.log(mags.square() @ filterbank.T + log_offset)


def waveform_segments(signal: torch.Tensor, samples: int) -> torch.Tensor:
    """Non-overlapping segments ``(n_segments, samples)`` of a mono signal (a trailing partial one left out)."""
    n = signal.shape[-1] // samples
    return signal[: n * samples].reshape(n, samples)


class TorchClassifier(nn.Module, DifferentiableClassifier):
    """A PyTorch module that maps elements to logits, made a musadv classifier.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a batch of elements (see the front ends in the module notes) to logits
        ``(n_elements, len(labels))``.
    labels : list of str
        The module's output labels, in order.
    stft : STFTConfig
        Analysis settings of the magnitudes (and so the rate, ``stft.sr`` Hz, the module hears).
    front_end : {'magnitude', 'logmel', 'waveform'}
    element_frames : int
        Consecutive STFT frames per element (``'waveform'``: ``element_frames * stft.hop`` samples).
    mean, std : float or array-like, optional
        Standardisation ``(x - mean) / std`` applied to the front end's output (per bin or mel
        band, or one number), as the module was trained; default none.
    n_mels, fmin, fmax, log_offset
        ``'logmel'`` settings (fmin, fmax in Hz).
    activation : {'softmax', 'sigmoid'}
        ``'softmax'``: the module is a classifier; ``'sigmoid'``: a tagger, each logit an
        independent tag likelihood (see :attr:`AudioClassifier.activation`).
    uncovered_labels : sequence of str
        Dataset labels the module has no output for (see :attr:`AudioClassifier.uncovered_labels`).
    info : dict, optional
        Metadata recorded with attack runs (where the weights came from, what data trained them).
    """

    def __init__(self, module: nn.Module, labels, stft: STFTConfig = STFTConfig(), front_end: str = "magnitude",
                 element_frames: int = 1, mean=None, std=None, n_mels: int = 128, fmin: float = 0.0,
                 fmax: float | None = None, log_offset: float = 1e-6, activation: str = "softmax",
                 uncovered_labels=(), info: dict | None = None):
        super().__init__()
        if front_end not in FRONT_ENDS:
            raise MusadvError(f"front_end must be one of {FRONT_ENDS}, not {front_end!r}")
        if activation not in ACTIVATIONS:
            raise MusadvError(f"activation must be one of {ACTIVATIONS}, not {activation!r}")
        if not (isinstance(element_frames, int) and element_frames >= 1):
            raise MusadvError(f"element_frames must be an integer >= 1, not {element_frames!r}")
        if front_end == "waveform" and not stft.center:
            raise MusadvError("the 'waveform' front end needs centred framing (the inverse STFT is then exact)")
        self.module, self.labels, self.stft = module, list(labels), stft
        self.front_end, self.element_frames, self.log_offset = front_end, element_frames, log_offset
        self.needs_signal = front_end == "waveform"
        self.activation, self.uncovered_labels = activation, tuple(uncovered_labels)
        self.info, self.path = dict(info or {}), None
        self.register_buffer("filterbank", mel_filterbank(stft, n_mels, fmin, fmax) if front_end == "logmel" else None)
        self.register_buffer("mean", None if mean is None else torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", None if std is None else torch.as_tensor(std, dtype=torch.float32))

    @property
    def element_samples(self) -> int:
        """Samples per element of the ``'waveform'`` front end."""
        return self.element_frames * self.stft.hop

    def _standardize(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is not None:
            x = x - self.mean
        if self.std is not None:
            x = x / self.std
        return x

    def inputs(self, mags: torch.Tensor, phase: torch.Tensor | None = None) -> torch.Tensor:
        """The module's input for a recording: its elements after the front end and the standardisation.

        Parameters
        ----------
        mags : torch.Tensor
            ``(n_frames, n_bins)`` magnitudes.
        phase : torch.Tensor, optional
            Unit-modulus ``(n_frames, n_bins)``; required by the ``'waveform'`` front end.
        """
        if self.front_end == "waveform":
            if phase is None:
                raise MusadvError("the 'waveform' front end needs the phase with the magnitudes")
            return self.signal_inputs(istft(mags * phase, self.stft))
        x = mags if self.front_end == "magnitude" else logmel(mags, self.filterbank, self.log_offset)
        n = x.shape[0] // self.element_frames
        return self._standardize(x[: n * self.element_frames].reshape(n, self.element_frames, x.shape[-1]))

    def signal_inputs(self, signal: torch.Tensor) -> torch.Tensor:
        """The ``'waveform'`` module's input for a mono signal at ``stft.sr`` Hz: ``(n_elements, element_samples)``."""
        return self._standardize(waveform_segments(signal, self.element_samples))

    def logits(self, mags: torch.Tensor, phase: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(n_elements, n_labels)``, differentiable in ``mags``."""
        return self.module(self.inputs(mags, phase))

    def logits_many(self, mags: list[torch.Tensor], phases: list) -> list[torch.Tensor]:
        """:meth:`logits` of several recordings from one pass of the module over all their elements."""
        inputs = [self.inputs(m, p) for m, p in zip(mags, phases)]
        return list(self.module(torch.cat(inputs)).split([len(x) for x in inputs]))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """The module's logits for inputs made by :meth:`inputs` or :meth:`signal_inputs`."""
        return self.module(inputs)

    def posteriors(self, frames: np.ndarray, signal: np.ndarray | None = None, chunk_frames: int = 4096) -> np.ndarray:
        """Element posteriors ``(n_elements, n_labels)``; the ``'waveform'`` front end hears ``signal`` itself."""
        if self.front_end != "waveform":
            return super().posteriors(frames, signal, chunk_frames)
        if signal is None:
            raise MusadvError("this model hears the waveform: give the signal, not only magnitudes")
        x = self.signal_inputs(torch.from_numpy(np.asarray(signal, np.float32)).to(self.device))
        step = max(1, chunk_frames // self.element_frames)
        with evaluating(self), torch.no_grad():
            out = [self.probabilities(self.module(x[i : i + step])) for i in range(0, len(x), step)]
        return torch.cat(out).cpu().numpy() if out else np.zeros((0, len(self.labels)), np.float32)

"""Differentiable replicas of systems without a gradient, to guide a query-only attack as its surrogate.

A query-only adversary judges a system by its predictions alone; a *surrogate* network proposes
its steps (:mod:`musadv.queries`). For a system whose parts are differentiable except for a few
(Athalye et al. 2018's BPDA), the best surrogate is the system itself with those parts held
fixed: :class:`MFCCReplica` computes the MFCC baseline's mel filterbank, decibels, DCT, texture
means and variances and Mahalanobis distances in PyTorch, so its gradient reaches the magnitude
STFT; only the zero-crossing rate, a count of sign changes, is taken from the waveform as a
constant. A replica is built from the system's parameters (its model file): an attack it guides
is gray-box, which the run records (the surrogate's name and SHA-256).

A smoothed system (:mod:`musadv.smoothing`) has no gradient either: its label is a vote. Its
:class:`SmoothedReplica` is its base's element probabilities averaged over noisy copies of the
magnitudes, the expectation over the noise that Salman et al. (2019) attack a smoothed classifier
through; its gradient is that of the base, averaged over the noise the vote sees.

:func:`as_surrogate` turns what a user names with ``--surrogate`` into a network with a gradient;
:func:`own_surrogate` is the one a feature system carries (what ``musadv judge`` uses by default).
"""

from __future__ import annotations

import librosa
import numpy as np
import scipy.fft
import torch

from .errors import MusadvError
from .features import texture_starts
from .interface import AudioClassifier, DifferentiableClassifier, system_name
from .spectral import istft
from .smoothing import SmoothedClassifier, noisy_magnitudes
from .systems import ForestSystem, MFCCBaseline, zero_crossing_rate

__all__ = ["MFCCReplica", "SmoothedReplica", "as_surrogate", "own_surrogate"]

#: librosa.power_to_db's defaults, which :func:`musadv.systems.mfcc_zcr` uses: a floor of 1e-10 on the
#: power, reference 1, and decibels clipped at 80 dB under the recording's loudest.
_AMIN, _TOP_DB = 1e-10, 80.0


class MFCCReplica(torch.nn.Module, DifferentiableClassifier):
    """The MFCC baseline (:class:`~musadv.systems.MFCCBaseline`) as a network: element logits are the
    negative squared Mahalanobis distances of each texture window to each label's Gaussian.

    The windows' argmax is the baseline's window vote (its classifier takes the smallest
    distance); the recording's confidences are the mean softmax of the windows, close to the
    baseline's shares of votes where the distances are far apart. Elements are the texture
    windows, which overlap: a recording is judged whole (:meth:`posteriors` takes no chunks).

    Parameters
    ----------
    baseline : MFCCBaseline
        The fitted system it replicates (its labels, STFT settings, texture window and Gaussians).
    """

    needs_signal = True  # the zero-crossing rate is counted on the waveform the phase gives

    def __init__(self, baseline: MFCCBaseline):
        torch.nn.Module.__init__(self)
        if not isinstance(baseline, MFCCBaseline):
            raise TypeError(f"baseline must be an MFCCBaseline, not {type(baseline).__name__}")
        self.labels, self.stft = list(baseline.labels), baseline.stft
        self.info, self.path = {**baseline.info, "replica_of": system_name(baseline)}, baseline.path
        self.window, self.hop = baseline.texture.window, baseline.texture.hop
        c = baseline.classifier
        cfg = baseline.stft
        mel = librosa.filters.mel(sr=cfg.sr, n_fft=cfg.n_fft)
        dct = scipy.fft.dct(np.eye(mel.shape[0]), type=2, norm="ortho", axis=0)
        self.n_mfcc = c.means_.shape[1] // 2 - 1
        self.register_buffer("mel", torch.from_numpy(mel.astype(np.float64)))
        self.register_buffer("dct", torch.from_numpy(dct[: self.n_mfcc]))
        self.register_buffer("means", torch.as_tensor(c.means_, dtype=torch.float64))
        self.register_buffer("inv_covs", torch.as_tensor(c.inv_covs_, dtype=torch.float64))
        # The baseline's classes are label indices, perhaps not all of them: a label it never
        # votes for gets no Gaussian, and an infinite distance here.
        self.classes = [int(k) for k in c.classes_]

    @property
    def element_frames(self) -> int:
        return self.window

    def window_features(self, mags: torch.Tensor, zcr: torch.Tensor) -> torch.Tensor:
        """Texture means and variances ``(n_windows, 2 (n_mfcc + 1))`` of the MFCCs of ``mags``
        ``(n_frames, n_bins)`` and the zero-crossing rates ``zcr`` ``(n_frames,)`` (float64)."""
        mel = (mags.double() ** 2) @ self.mel.T
        db = 10.0 * torch.log10(mel.clamp_min(_AMIN))
        db = torch.maximum(db, db.max() - _TOP_DB)
        frames = torch.cat([db @ self.dct.T, zcr.double()[: len(db), None]], dim=1)
        n = len(frames)
        starts = torch.as_tensor(texture_starts(n, self.window, self.hop), device=frames.device)
        w = min(self.window, n)
        windows = frames[starts[:, None] + torch.arange(w, device=frames.device)]
        mean = windows.mean(1)
        return torch.cat([mean, ((windows - mean[:, None]) ** 2).mean(1)], dim=1)

    def window_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Negative squared Mahalanobis distances ``(n_windows, n_labels)`` (float64)."""
        diff = features[:, None, :] - self.means[None]
        d2 = torch.einsum("wki,kij,wkj->wk", diff, self.inv_covs, diff)
        out = torch.full((len(features), len(self.labels)), -torch.inf, dtype=d2.dtype, device=d2.device)
        out[:, self.classes] = -d2
        return out

    def logits(self, mags: torch.Tensor, phase: torch.Tensor | None = None) -> torch.Tensor:
        """Window logits of the recording whose STFT is ``mags * phase``; its zero-crossing rate
        (from the inverse STFT) is held fixed."""
        if phase is None:
            raise MusadvError(f"{system_name(self)}: the MFCC replica needs the phase (the zero-crossing rate)")
        cfg = self.stft
        with torch.no_grad():
            signal = istft(mags.detach() * phase, cfg, length=(len(mags) - 1) * cfg.hop)
        zcr = torch.from_numpy(zero_crossing_rate(signal.cpu().numpy(), cfg)).to(mags.device)
        return self.window_logits(self.window_features(mags, zcr)).float()

    def posteriors(self, frames: np.ndarray, signal: np.ndarray | None = None, chunk_frames: int = 4096) -> np.ndarray:
        """Window probabilities ``(n_windows, n_labels)`` of a whole recording (its waveform gives the zero-crossing rate)."""
        if signal is None:
            raise MusadvError(f"{system_name(self)}: the MFCC replica needs the waveform, not only magnitudes")
        mags = torch.from_numpy(np.array(frames, dtype=np.float32))
        zcr = torch.from_numpy(zero_crossing_rate(np.asarray(signal, np.float32), self.stft))
        with torch.no_grad():
            return self.probabilities(self.window_logits(self.window_features(mags, zcr)).float()).numpy()


class SmoothedReplica(torch.nn.Module, DifferentiableClassifier):
    """A smoothed system as a network: its base's element probabilities averaged over noisy copies.

    Each call draws ``draws`` copies of the magnitudes as the smoothing noise would leave them
    (:func:`musadv.smoothing.noisy_magnitudes`, differentiable in the magnitudes), takes the mean of
    the base's element probabilities over them, and returns it as logits (its logarithm; its logit
    for a base of independent sigmoids). The draws are seeded by the smoothed system's seed and the
    magnitudes' bytes, as the system's own noise is by the waveform's: the same iterate gets the same
    gradient, and a judgement repeats.

    Parameters
    ----------
    smoothed : SmoothedClassifier
        The system replicated (its noise level and seed).
    guide : DifferentiableClassifier
        Its base as a network: the base itself, or the base's own replica.
    draws : int
        Noisy copies per call.
    """

    def __init__(self, smoothed: SmoothedClassifier, guide: DifferentiableClassifier, draws: int = 8):
        torch.nn.Module.__init__(self)
        if not draws >= 1:
            raise ValueError(f"a smoothed replica needs at least one noisy copy per call, got draws={draws}")
        self.smoothed, self.guide, self.draws = smoothed, guide, int(draws)
        self.labels, self.stft, self.element_frames = guide.labels, guide.stft, guide.element_frames
        self.activation, self.needs_signal = guide.activation, guide.needs_signal
        self.info, self.path = {**smoothed.info, "replica_of": system_name(smoothed), "draws": self.draws}, None

    def logits(self, mags: torch.Tensor, phase: torch.Tensor | None = None) -> torch.Tensor:
        generator = self.smoothed.generator(mags.detach().cpu().numpy().ravel(), stream=3)
        if mags.device.type != "cpu":
            generator = torch.Generator(mags.device).manual_seed(generator.initial_seed())
        mean = sum(self.guide.probabilities(self.guide.logits(
            noisy_magnitudes(mags, self.smoothed.sigma, self.stft, generator), phase)) for _ in range(self.draws)) / self.draws
        mean = mean.clamp(1e-12, 1 - 1e-7)
        return torch.logit(mean) if self.activation == "sigmoid" else torch.log(mean)


def own_surrogate(system: AudioClassifier) -> DifferentiableClassifier | None:
    """The network inside a feature system, to guide a query-only attack of it: a forest's DNN (whose
    activations it votes on), the MFCC baseline's :class:`MFCCReplica`, a smoothed system's
    :class:`SmoothedReplica` of its base (or of the base's own); None for any other system."""
    if isinstance(system, SmoothedClassifier):
        guide = system.base if isinstance(system.base, DifferentiableClassifier) else own_surrogate(system.base)
        return None if guide is None else SmoothedReplica(system, guide)
    if isinstance(system, ForestSystem):
        return system.dnn
    if isinstance(system, MFCCBaseline):
        return MFCCReplica(system)
    return None


def as_surrogate(system: AudioClassifier) -> DifferentiableClassifier:
    """What guides a query-only attack of another system: a network as it is, the MFCC baseline as its
    :class:`MFCCReplica`.

    Raises
    ------
    MusadvError
        For a system with neither a gradient nor a replica (a forest: name the network it is built on).
    """
    if isinstance(system, DifferentiableClassifier):
        return system
    if isinstance(system, MFCCBaseline):
        return MFCCReplica(system)
    raise MusadvError(f"{system_name(system)}: a {type(system).__name__} has no gradient and no differentiable "
                      "replica; a surrogate must be a network or the MFCC baseline")

"""Randomized smoothing of any system (Cohen, Rosenfeld and Kolter 2019): a vote over noisy copies, and its certificate.

The smoothed system ``g`` labels a waveform ``x`` with the label the base system gives most often
to ``x + n``, ``n`` Gaussian with standard deviation ``sigma`` in every sample. Because ``g`` is a
fixed function of the waveform, Cohen et al.'s theorem applies: if the base system gives label A
to a share ``p_A > 1/2`` of the noisy copies, no change of L2 norm below ``sigma * Phi^-1(p_A)``
can change ``g``'s label. :func:`certify` is their CERTIFY (a Clopper-Pearson lower bound on
``p_A`` from ``n`` copies, abstaining below 1/2) and :func:`predict` their PREDICT (the top label,
or abstention where a binomial test cannot tell it from the runner-up). The system's own
prediction, what attacks and accuracies read, is the plurality of its copies: every one of those
figures needs a label. Certificates report PREDICT's label and abstentions beside their own.

The noise is named by an SNR, as every change in musadv: ``sigma`` is the level that is ``snr_db``
below a recording of :data:`REFERENCE_RMS`. It is one level for every recording (were it scaled
to each recording, the system would be another function at every input and the theorem would not
hold); each certificate states the SNR of the noise against its own recording, and the radius as
the certified SNR ``20 log10(||x|| / radius)``: no change that much quieter than the recording
can move its label.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import beta, binomtest, norm

from .errors import AudioError, ModelError
from .interface import AudioClassifier, Prediction
from .spectral import STFTConfig, magnitude, window

__all__ = ["REFERENCE_RMS", "noise_sigma", "noisy_magnitudes", "SmoothedClassifier", "Certificate", "certify",
           "predict", "predict_from_votes",
           "load_smoothed_spec", "SMOOTH", "ABSTAIN"]

#: The recording level (RMS, full scale 1) that a smoothed system's SNR is stated against: -20 dBFS,
#: near the level of GTZAN's clips (the median of 50 gtzan-mini clips is -17 dBFS).
REFERENCE_RMS = 0.1
#: What :func:`certify` answers when the vote is not clear.
ABSTAIN = "(abstain)"
SMOOTH = re.compile(r"smooth:(?P<base>.+)@(?P<snr>-?\d+(?:\.\d+)?)(?:x(?P<n>\d+))?")


def noise_sigma(snr_db: float) -> float:
    """The standard deviation per sample of noise ``snr_db`` dB below a recording at :data:`REFERENCE_RMS`."""
    return REFERENCE_RMS * 10 ** (-snr_db / 20)


def noisy_magnitudes(mags: torch.Tensor, sigma: float, stft: STFTConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Magnitudes of the STFT of ``x + n`` drawn from those of ``x`` alone, ``n`` white Gaussian noise of ``sigma``.

    In every bin the noise's STFT is complex Gaussian, circular with variance ``sigma**2 * sum(w**2)``
    (``w`` the window), real at 0 Hz and at Nyquist; so ``|X + N|`` has the law of ``|m + N|`` for the
    magnitude ``m = |X|`` whatever ``X``'s phase (a Rice law), drawn here exactly per bin. What is
    not reproduced is the noise's correlation between neighbouring bins and overlapping frames.

    Parameters
    ----------
    mags : torch.Tensor, shape (..., n_bins)
        Magnitudes analysed with ``stft``.
    sigma : float
        The noise's standard deviation per sample.
    stft : STFTConfig
    generator : torch.Generator, optional

    Returns
    -------
    torch.Tensor
        The shape of ``mags``.
    """
    scale = sigma * float(window(stft).double().square().sum().sqrt())
    real = torch.randn(mags.shape, generator=generator, device=mags.device, dtype=mags.dtype)
    imag = torch.randn(mags.shape, generator=generator, device=mags.device, dtype=mags.dtype)
    per_part = torch.full((mags.shape[-1],), scale / 2 ** 0.5, device=mags.device, dtype=mags.dtype)
    imag_part = per_part.clone()
    # The bins at 0 Hz and Nyquist are real: all the noise's variance is in the real part.
    edges = [0] + ([stft.n_fft // 2] if stft.n_fft % 2 == 0 else [])
    per_part[edges], imag_part[edges] = scale, 0.0
    return torch.hypot(mags + real * per_part, imag * imag_part)


class SmoothedClassifier(AudioClassifier):
    """A base system voting over ``n`` copies of the waveform with Gaussian noise added.

    Parameters
    ----------
    base : AudioClassifier
        The system that votes (any: a network, a forest, a tagger's genre system).
    snr_db : float
        The noise level: ``sigma = REFERENCE_RMS * 10 ** (-snr_db / 20)`` in sample units.
    n : int
        Noisy copies per prediction.
    seed : int
        With the waveform's bytes, seeds the noise: the same waveform gets the same vote (a
        reproducible judgement), any change to it draws new noise.
    batch : int
        Copies analysed and labelled together.
    spec : str, optional
        How messages and judgements name it (default ``smooth:BASE@SNRxN``).

    Attributes
    ----------
    sigma : float
        The noise's standard deviation per sample.
    """

    needs_signal = True

    def __init__(self, base: AudioClassifier, snr_db: float, n: int = 100, seed: int = 0, batch: int = 16,
                 spec: str | None = None):
        if not n >= 1:
            raise ModelError(f"a smoothed system needs at least one noisy copy per prediction, got n={n}")
        self.base, self.snr_db, self.n, self.seed, self.batch = base, float(snr_db), int(n), int(seed), int(batch)
        self.sigma = noise_sigma(self.snr_db)
        self.labels, self.stft = base.labels, base.stft
        self.uncovered_labels = base.uncovered_labels
        self.activation = "softmax"  # shares of votes
        self.path = None
        self.info = {"factory": spec or f"smooth:{base.info.get('factory') or base.path}@{self.snr_db:g}x{self.n}",
                     "smoothing": {"snr_db": self.snr_db, "sigma": self.sigma, "reference_rms": REFERENCE_RMS,
                                   "n": self.n, "seed": self.seed}, "base": base.info,
                     # The base's data is the smoothed system's: commands that default to a model's cache find it.
                     **({"data": base.info["data"]} if "data" in base.info else {})}

    def to(self, device) -> "SmoothedClassifier":
        self.base = self.base.to(device)
        return self

    def generator(self, signal: np.ndarray, stream: int = 0) -> torch.Generator:
        """The noise's generator for this waveform (``stream`` separates the draws of one certificate)."""
        digest = hashlib.blake2b(np.ascontiguousarray(signal, np.float32).tobytes(), digest_size=8).digest()
        seed = np.random.SeedSequence([self.seed, stream, int.from_bytes(digest, "little")]).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(seed))

    def votes(self, signal: np.ndarray, n: int, generator: torch.Generator, name: str = "recording") -> np.ndarray:
        """How many of ``n`` noisy copies of ``signal`` (mono at ``stft.sr`` Hz) the base system gives each label.

        Returns
        -------
        np.ndarray, int64, shape (n_labels,)
        """
        x = torch.from_numpy(np.ascontiguousarray(signal, np.float32))
        counts = np.zeros(len(self.labels), np.int64)
        index = {label: k for k, label in enumerate(self.labels)}
        for start in range(0, n, self.batch):
            b = min(self.batch, n - start)
            noisy = x + self.sigma * torch.randn((b, len(x)), generator=generator)
            frames = magnitude(noisy, self.stft).numpy()
            signals = list(noisy.numpy()) if self.base.needs_signal else [None] * b
            for pred in self.base.predict_many(list(frames), signals, [f"{name} (noisy copy)"] * b):
                counts[index[pred.label]] += 1
        return counts

    def predict(self, frames: np.ndarray, signal: np.ndarray | None = None, name: str = "recording") -> Prediction:
        """The label most of the ``n`` noisy copies get; confidences are the shares of votes.

        ``frames`` are not used: the noise is added to the waveform, which is required.
        """
        if signal is None:
            raise AudioError(f"{name}: a smoothed system adds its noise to the waveform, and was given only magnitudes")
        counts = self.votes(signal, self.n, self.generator(signal), name)
        shares = counts / counts.sum()
        return Prediction(self.labels[int(np.argmax(counts))], dict(zip(self.labels, map(float, shares))), self.n)


def load_smoothed_spec(spec: str) -> SmoothedClassifier:
    """``smooth:MODEL@SNR`` or ``smooth:MODEL@SNRxN``: MODEL (any spec) smoothed at SNR dB with N copies (100)."""
    from .systems import load_system

    match = SMOOTH.fullmatch(spec)
    if match is None:
        raise ModelError(f"{spec}: a smoothed system is smooth:MODEL@SNR or smooth:MODEL@SNRxN (e.g. smooth:models/dnn@30x100)")
    return SmoothedClassifier(load_system(match["base"]), float(match["snr"]), int(match["n"] or 100), spec=spec)


def predict_from_votes(counts: np.ndarray, labels: list[str], alpha: float = 0.001) -> str:
    """Cohen et al.'s PREDICT from votes already drawn: the top label, or :data:`ABSTAIN`.

    The top label is given only where a two-sided binomial test of its votes against the
    runner-up's rejects a tie at level ``alpha``; so it differs from the smoothed system's true
    label with probability at most ``alpha``.

    Parameters
    ----------
    counts : np.ndarray, int, shape (n_labels,)
        Votes of fresh noisy copies per label (:meth:`SmoothedClassifier.votes`).
    labels : list of str
    alpha : float, in (0, 1)
    """
    order = np.argsort(-np.asarray(counts), kind="stable")
    top = int(counts[order[0]])
    second = int(counts[order[1]]) if len(order) > 1 else 0
    return labels[order[0]] if binomtest(top, top + second, 0.5).pvalue <= alpha else ABSTAIN


def predict(system: SmoothedClassifier, signal: np.ndarray, n: int = 100, alpha: float = 0.001,
            name: str = "recording") -> str:
    """Cohen et al.'s PREDICT of ``signal`` (mono at ``system.stft.sr`` Hz): :func:`predict_from_votes` of ``n`` copies."""
    return predict_from_votes(system.votes(signal, n, system.generator(signal, stream=4), name), system.labels, alpha)


@dataclass
class Certificate:
    """Cohen et al.'s CERTIFY of one recording.

    Attributes
    ----------
    label : str
        The certified label, or :data:`ABSTAIN`.
    p_lower : float
        The one-sided (1 - alpha) Clopper-Pearson lower bound on the share of copies given ``label``.
    radius : float
        The certified L2 radius of the waveform (sample units at ``stft.sr``); 0 when abstaining.
    certified_snr_db : float
        ``20 log10(||x|| / radius)``: every change at least this many dB below the recording keeps
        its label; ``inf`` when abstaining.
    noise_snr_db : float
        The SNR of the smoothing noise against this recording, ``20 log10(rms(x) / sigma)``.
    counts : list of int
        Votes of the estimation copies per label.
    predicted : str
        PREDICT's label from the ``n0`` selection copies (:func:`predict_from_votes` at the same
        ``alpha``), or :data:`ABSTAIN`.
    """

    label: str
    p_lower: float
    radius: float
    certified_snr_db: float
    noise_snr_db: float
    counts: list[int]
    predicted: str


def certify(system: SmoothedClassifier, signal: np.ndarray, n0: int = 100, n: int = 1000, alpha: float = 0.001,
            name: str = "recording") -> Certificate:
    """Cohen et al.'s CERTIFY: pick the top label with ``n0`` copies, bound its share with ``n`` fresh ones.

    Parameters
    ----------
    system : SmoothedClassifier
    signal : np.ndarray, shape (n_samples,)
        Mono waveform at ``system.stft.sr`` Hz.
    n0, n : int
        Copies for selecting the label and for estimating its share.
    alpha : float
        The certificate is wrong with probability at most ``alpha``.

    Returns
    -------
    Certificate
    """
    x = np.asarray(signal, np.float64)
    energy, rms = float(np.linalg.norm(x)), float(np.sqrt(np.mean(x * x)))
    noise_snr = 20 * np.log10(rms / system.sigma) if rms > 0 else -np.inf
    selection = system.votes(signal, n0, system.generator(signal, stream=1), name)
    # The selection's copies are a sample of their own: PREDICT's test on them costs nothing more.
    predicted = predict_from_votes(selection, system.labels, alpha)
    top = int(np.argmax(selection))
    counts = system.votes(signal, n, system.generator(signal, stream=2), name)
    n_top = int(counts[top])
    p_lower = float(beta.ppf(alpha, n_top, n - n_top + 1)) if n_top > 0 else 0.0
    if p_lower <= 0.5:
        return Certificate(ABSTAIN, p_lower, 0.0, np.inf, noise_snr, counts.tolist(), predicted)
    radius = system.sigma * float(norm.ppf(p_lower))
    certified = 20 * np.log10(energy / radius) if energy > 0 else -np.inf
    return Certificate(system.labels[top], p_lower, radius, certified, noise_snr, counts.tolist(), predicted)

"""Irrelevant transformations: changes to a recording that leave its music, and so its genre, as it was.

The "method of irrelevant transformations" (the paper's refs. [48], [52], [53]) asks whether a
system's answers follow such changes. Each transformation here is a pure function of a signal,
its rate and its parameters, returning the transformed signal (float32, the input's shape); the
size of the change is measured by the caller (``musadv.attack.snr_db`` against the original).

``eq``
    Minor linear time-invariant filtering: a random smooth gain curve within +-``max_db`` over
    octave bands, applied with zero phase (a real, symmetric frequency response).
``lowpass``
    A Butterworth low-pass (default 4th order at 9 kHz, as the authors' WASPAA 2015 follow-up),
    applied once forwards: the digital Butterworth's magnitude response (bilinear transform,
    -3 dB at the cut-off, ``1 / sqrt(1 + (tan(pi f / sr) / tan(pi fc / sr))^(2 order))``: at
    least ``6 order`` dB per octave beyond), its phase minimum.
``stretch``
    Pitch-preserving time-stretch with Rubber Band (through ``pedalboard``). Chosen over
    librosa's phase vocoder for speed (30 s of a tone at 22.05 kHz: 0.16 s against 3.7 s) and
    because Rubber Band keeps transients crisp where a plain phase vocoder smears them; both
    kept a 440 Hz tone's pitch.
``gain``
    A change of level in dB.

A stretched recording has another length, so its SNR against the original is not defined; the
size of a stretch is its rate.
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

__all__ = ["eq", "eq_curve", "lowpass", "stretch", "gain", "random_eq_gains", "EQ_BANDS_HZ"]

#: Centre frequencies (Hz) of the octave bands whose gains the EQ draws.
EQ_BANDS_HZ = (31.25, 62.5, 125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0)


def _as_2d(y) -> tuple[np.ndarray, bool]:
    y = np.asarray(y, dtype=np.float32)
    if y.ndim not in (1, 2):
        raise ValueError(f"signal must be (n_samples,) or (n_channels, n_samples), not {y.shape}")
    return np.atleast_2d(y), y.ndim == 1


def random_eq_gains(rng: np.random.Generator, max_db: float = 3.0) -> np.ndarray:
    """Gains in dB for :data:`EQ_BANDS_HZ`, uniform in ``[-max_db, max_db]``."""
    if not max_db >= 0:
        raise ValueError(f"max_db must be >= 0, not {max_db}")
    return rng.uniform(-max_db, max_db, len(EQ_BANDS_HZ))


def eq_curve(freqs, gains_db) -> np.ndarray:
    """The EQ's gain in dB at ``freqs`` (Hz): linear in log-frequency between band centres, flat beyond.

    Between two centres the curve never leaves the range of their gains, so it stays within
    +-``max_db`` of :func:`random_eq_gains` everywhere.
    """
    gains_db = np.asarray(gains_db, dtype=float)
    if gains_db.shape != (len(EQ_BANDS_HZ),):
        raise ValueError(f"gains_db must have one gain per band ({len(EQ_BANDS_HZ)}), not shape {gains_db.shape}")
    f = np.maximum(np.asarray(freqs, dtype=float), EQ_BANDS_HZ[0])
    return np.interp(np.log2(f), np.log2(EQ_BANDS_HZ), gains_db)


def eq(y, sr: int, gains_db) -> np.ndarray:
    """Zero-phase EQ of ``y`` by the curve of :func:`eq_curve` (one FFT of the whole signal per channel).

    Parameters
    ----------
    y : np.ndarray
        ``(n_samples,)`` or ``(n_channels, n_samples)`` at ``sr`` Hz.
    sr : int
        Sampling rate in Hz.
    gains_db : array-like
        One gain in dB per band of :data:`EQ_BANDS_HZ` (e.g. from :func:`random_eq_gains`).

    Returns
    -------
    np.ndarray
        Float32, shaped like ``y``.
    """
    x, mono = _as_2d(y)
    n = x.shape[-1]
    freqs = np.fft.rfftfreq(n, 1 / sr)
    response = 10 ** (eq_curve(freqs, gains_db) / 20)
    out = np.fft.irfft(np.fft.rfft(x.astype(np.float64), axis=-1) * response, n=n, axis=-1).astype(np.float32)
    return out[0] if mono else out


def lowpass(y, sr: int, cutoff_hz: float = 9000.0, order: int = 4) -> np.ndarray:
    """Butterworth low-pass of ``order`` at ``cutoff_hz``, applied once forwards (second-order sections).

    Raises
    ------
    ValueError
        If the cut-off is not below the Nyquist frequency ``sr / 2`` or the order is below 1.
    """
    if not 0 < cutoff_hz < sr / 2:
        raise ValueError(f"cutoff_hz must be between 0 and the Nyquist frequency {sr / 2:g} Hz, not {cutoff_hz:g}")
    if order < 1:
        raise ValueError(f"order must be >= 1, not {order}")
    x, mono = _as_2d(y)
    sos = sps.butter(order, cutoff_hz, btype="low", fs=sr, output="sos")
    out = sps.sosfilt(sos, x.astype(np.float64), axis=-1).astype(np.float32)
    return out[0] if mono else out


def stretch(y, sr: int, rate: float) -> np.ndarray:
    """Pitch-preserving time-stretch: ``rate`` > 1 plays faster (the result lasts ``1 / rate`` as long).

    Parameters
    ----------
    y : np.ndarray
        ``(n_samples,)`` or ``(n_channels, n_samples)`` at ``sr`` Hz.
    sr : int
        Sampling rate in Hz.
    rate : float
        Tempo factor, > 0 (e.g. in ``[0.94, 1.06]`` for the 6 % of the paper's ref. [53]).

    Returns
    -------
    np.ndarray
        Float32, ``(round(n_samples / rate),)`` or ``(n_channels, ...)``.
    """
    from pedalboard import time_stretch

    if not rate > 0:
        raise ValueError(f"rate must be > 0, not {rate}")
    x, mono = _as_2d(y)
    out = time_stretch(np.ascontiguousarray(x), float(sr), stretch_factor=float(rate), high_quality=True)
    out = np.asarray(out, dtype=np.float32)
    return out[0] if mono else out


def gain(y, gain_db: float) -> np.ndarray:
    """``y`` scaled by ``gain_db`` dB (float32; clipping is for whoever writes it to decide)."""
    x = np.asarray(y, dtype=np.float32)
    return (x * np.float32(10 ** (gain_db / 20))).astype(np.float32)

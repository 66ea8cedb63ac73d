"""Perceptual quality of an adversarial example against its original: ViSQOL v3, audio mode.

An SNR says how large a change is, not how audible: the same energy is obvious as a click and
hidden under a loud chorus. ViSQOL (Chinen et al., 2020) compares a degraded signal with its
reference through a gammatone spectrogram and maps the similarity to a MOS-LQO between 1 (bad)
and 5 (excellent); its audio mode, meant for music, works at 48 kHz. The implementation is the
pure-Python ``visqol-python`` package, which its authors check against Google's C++ code.
"""

from __future__ import annotations

import numpy as np

from . import audio

__all__ = ["visqol_mos", "VISQOL_SR"]

#: ViSQOL's audio mode analyses 48 kHz signals.
VISQOL_SR = 48000


def visqol_mos(reference: np.ndarray, degraded: np.ndarray, sr: int) -> float:
    """ViSQOL v3 MOS-LQO (audio mode) of ``degraded`` against ``reference``.

    Parameters
    ----------
    reference, degraded : np.ndarray
        The same shape: ``(n_samples,)`` or ``(n_channels, n_samples)`` (channels are averaged,
        as ViSQOL rates one channel) at ``sr`` Hz.
    sr : int
        Sampling rate in Hz; both are resampled to 48 kHz.

    Returns
    -------
    float
        MOS-LQO in [1, 5]; about 4.7 for identical signals.
    """
    from visqol import VisqolApi  # imported here: it loads its SVR model and numerical kernels

    if np.shape(reference) != np.shape(degraded):
        raise ValueError(f"reference {np.shape(reference)} and degraded {np.shape(degraded)} differ in shape")
    ref, deg = (audio.conform(np.atleast_2d(np.asarray(a, np.float32)), sr, VISQOL_SR) for a in (reference, degraded))
    api = VisqolApi()
    api.create(mode="audio")
    return float(api.measure_from_arrays(ref.astype(np.float64), deg.astype(np.float64), sample_rate=VISQOL_SR).moslqo)

"""Labelling whole recordings and files with any system (paper eq. 3-4 for the networks).

A network labels every element (frame or patch) of a recording independently; the confidence
of label k for the recording is the sum over elements of the posterior of k, reported here
normalised (the mean posterior, :func:`musadv.interface.recording_confidence`); the recording's
label is the argmax. Feature systems (:mod:`musadv.systems`) vote over texture windows. Every
system answers through :meth:`musadv.interface.AudioClassifier.predict`.
"""

from __future__ import annotations

import math
import os

import numpy as np

from . import audio
from .cache import analyse_file
from .errors import ModelError
from .interface import AudioClassifier, Prediction, recording_confidence, system_name
from .spectral import magnitude

__all__ = ["recording_confidence", "Prediction", "classify_frames", "classify_samples", "classify_file"]


def classify_frames(system: AudioClassifier, frames: np.ndarray, signal: np.ndarray | None = None,
                       name: str = "recording") -> Prediction:
    """Label one recording from its magnitude frames ``(n_frames, n_bins)`` and, for systems that
    need it (``system.needs_signal``), its mono waveform at ``system.stft.sr`` Hz.

    Raises
    ------
    AudioError
        If the recording is too short for the system.
    ModelError
        If the system's confidences are not all finite (broken weights give NaN for everything).
    """
    pred = system.predict(frames, signal, name)
    if not all(math.isfinite(c) for c in pred.confidence.values()):
        raise ModelError(f"{system_name(system)}: gives confidences that are not finite (NaN or inf) for {name}; is the model broken?")
    return pred


def classify_samples(system: AudioClassifier, samples: np.ndarray, sr: int, name: str = "recording") -> Prediction:
    """Label decoded samples ``(n_channels, n_samples)`` at ``sr`` Hz as their file would be labelled.

    Mixed to mono and resampled to the system's rate as :func:`classify_file` does after
    decoding, so that samples about to be written (rounded to 16 bits) get the label their
    file will get.
    """
    heard = audio.conform(samples, sr, system.stft.sr)
    return classify_frames(system, magnitude(heard, system.stft), heard, name)


def classify_file(system: AudioClassifier, path: str | os.PathLike, offset: float = 0.0,
                  duration: float | None = None) -> Prediction:
    """Decode any audio file (any format, rate, channels, length) and label it with ``system``.

    The file is analysed with the system's own STFT settings (resampled to its rate, mixed to mono).
    """
    signal, frames = analyse_file(path, system.stft, offset, duration)
    return classify_frames(system, frames, signal, str(path))

"""Labelling a whole recording from its elements (paper eq. 3-4).

A network labels every element (frame or patch) of a recording independently; the confidence
of label k for the recording is the sum over elements of the posterior of k, reported here
normalised (the mean posterior); the recording's label is the argmax.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .cache import analyse_file
from .errors import AudioError

__all__ = ["element_posteriors", "recording_confidence", "Prediction", "classify_frames", "classify_recording",
           "classify_file"]


def element_posteriors(model, frames, batch_size: int = 4096) -> np.ndarray:
    """Posteriors of every element of one recording.

    Parameters
    ----------
    model : DNN, CDNN or any model with the element interface (see :mod:`musadv.models`)
    frames : np.ndarray or torch.Tensor
        Magnitude frames ``(n_frames, n_bins)``.
    batch_size : int
        Frames per forward pass (bounds memory for long recordings).

    Returns
    -------
    np.ndarray
        ``(n_elements, n_labels)``, rows summing to 1.
    """
    frames = torch.from_numpy(np.array(frames, dtype=np.float32))  # copies: cached arrays are read-only maps
    elements = model.elements(frames)
    step = max(1, batch_size // model.element_frames)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = [torch.softmax(model(elements[i : i + step]), dim=-1) for i in range(0, len(elements), step)]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, len(model.labels)), np.float32)


def recording_confidence(posteriors: np.ndarray) -> np.ndarray:
    """Eq. 3-4: the sum of element posteriors per label, normalised by the number of elements."""
    if len(posteriors) == 0:
        raise ValueError("a recording needs at least one element to be classified")
    return posteriors.sum(axis=0) / len(posteriors)


@dataclass
class Prediction:
    """A recording's label and its confidence per label (mean element posterior)."""

    label: str
    confidence: dict[str, float]
    n_elements: int

    def to_dict(self) -> dict:
        return {"label": self.label, "confidence": self.confidence, "n_elements": self.n_elements}


def classify_frames(model, frames, name: str = "recording") -> Prediction:
    """Label one recording from its magnitude frames (eq. 3-4).

    Raises
    ------
    AudioError
        If the recording is shorter than one element of the model.
    """
    post = element_posteriors(model, frames)
    if len(post) == 0:
        raise AudioError(
            f"{name}: too short for this model ({len(frames)} frames; one element is {model.element_frames})"
        )
    conf = recording_confidence(post)
    return Prediction(model.labels[int(np.argmax(conf))], dict(zip(model.labels, map(float, conf))), len(post))


def classify_recording(system, frames, signal=None, name: str = "recording") -> Prediction:
    """Label one recording with any system: a network (eq. 3-4) or a feature system
    (:mod:`musadv.systems`, which has its own ``classify(frames, signal)``; the MFCC baseline
    needs the waveform ``signal``)."""
    if hasattr(system, "classify"):
        return system.classify(frames, signal)
    return classify_frames(system, frames, name)


def classify_file(model, path: str | os.PathLike, offset: float = 0.0, duration: float | None = None) -> Prediction:
    """Decode any audio file (any format, rate, channels, length) and label it with ``model``.

    The file is analysed with the model's own STFT settings (resampled to its rate, mixed to mono).
    ``model`` is a network or any system of :mod:`musadv.systems`.
    """
    signal, frames = analyse_file(path, model.stft, offset, duration)
    return classify_recording(model, frames, signal, str(path))

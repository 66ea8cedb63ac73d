"""A recording as its file holds it and as a model hears it.

Models analyse one channel at their own rate (22050 Hz); a researcher's file may be stereo at
44.1 kHz, or telephone audio at 8 kHz. A :class:`Recording` keeps the file's own samples,
derives what the model hears through the same path that classifies any file
(:func:`musadv.audio.conform`), and carries a change found at the model's rate back to the
file's rate and channels, so that an adversarial example is written at the original's quality.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from . import audio

__all__ = ["Recording", "EDGE_SECONDS", "edge_samples"]

#: The reference code measures the waveform SNR leaving out 2048 samples at 22050 Hz at each
#: edge; musadv reports that measure at every rate as this many seconds.
EDGE_SECONDS = 2048 / 22050


def edge_samples(sr: int) -> int:
    """Samples left out at each edge by the edge-trimmed SNR at ``sr`` Hz (2048 at 22050 Hz)."""
    return int(round(EDGE_SECONDS * sr))


@dataclass
class Recording:
    """The samples of one recording at its file's rate, and the rate of the model that hears it.

    Parameters
    ----------
    samples : np.ndarray, float32
        ``(n_channels, n_samples)`` at ``sr`` Hz, as :func:`musadv.audio.decode` returns them.
    sr : int
        The samples' rate in Hz.
    model_sr : int
        The rate in Hz the model analyses (``model.stft.sr``).
    """

    samples: np.ndarray
    sr: int
    model_sr: int
    _signal: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.samples = np.ascontiguousarray(np.atleast_2d(self.samples), dtype=np.float32)
        if self.samples.ndim != 2:
            raise ValueError("samples must have shape (n_channels, n_samples)")

    @classmethod
    def from_file(cls, path: str | os.PathLike, model_sr: int, offset: float = 0.0, duration: float | None = None,
                  model_rate: bool = False) -> "Recording":
        """Decode a file (``offset`` and ``duration`` in seconds).

        ``model_rate``: keep only what the model hears (mono at ``model_sr``) as the recording,
        so that changes are written at the model's rate.
        """
        y, sr = audio.decode(path, offset, duration)
        rec = cls(y, sr, model_sr)
        return cls(rec.signal, model_sr, model_sr) if model_rate else rec

    @property
    def n_channels(self) -> int:
        return self.samples.shape[0]

    @property
    def at_model_rate(self) -> bool:
        """Whether the file's samples are exactly what the model hears (one channel, the model's rate)."""
        return self.n_channels == 1 and self.sr == self.model_sr

    @property
    def signal(self) -> np.ndarray:
        """What the model hears: mono, at ``model_sr`` Hz, float32 ``(n,)``."""
        if self._signal is None:
            self._signal = self.hear(self.samples)
        return self._signal

    def hear(self, samples: np.ndarray) -> np.ndarray:
        """What the model hears of ``samples`` shaped like :attr:`samples` (as decoding their file gives)."""
        if self.at_model_rate:
            return samples[0]
        return audio.conform(samples, self.sr, self.model_sr)

    def to_file_rate(self, change: np.ndarray) -> np.ndarray:
        """A mono change ``(n,)`` at the model's rate brought to the file's rate: ``(n_samples,)``.

        Resampled with the same filter as decoding; fitted to the file's length (the
        resampler's length rounds), so it can be added to every channel.
        """
        up = audio.resample(np.asarray(change, np.float32), self.model_sr, self.sr)
        n = self.samples.shape[1]
        if up.shape[0] >= n:
            return up[:n]
        return np.pad(up, (0, n - up.shape[0]))

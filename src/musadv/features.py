"""Texture features: frame-level features aggregated over texture windows (paper section 4-5).

Both feature systems of the paper summarise frame features over windows of about 5 s hopped by
50 %: the DNN system by the mean and standard deviation of hidden-layer activations, the
baseline by the mean and variance of MFCCs and the zero-crossing rate.

:class:`TextureFeatures` is that summary as a scikit-learn transformer whose samples are
recordings: a recording's frame features in, its texture windows out, so that a system is a
:class:`~sklearn.pipeline.Pipeline` from recordings to labels (see :mod:`musadv.systems`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .interface import evaluating
from .spectral import STFTConfig

__all__ = ["TEXTURE_WINDOW", "TEXTURE_HOP", "window_frames", "texture_starts", "texture_stats", "dnn_activations", "LAYER_CHOICES",
           "TextureFeatures", "SPREADS"]

LAYER_CHOICES = ("1", "2", "3", "all")
SPREADS = ("std", "var")

#: The reference code's texture window and hop in STFT frames (4.6 s and 2.3 s at 22050 Hz, hop 512).
TEXTURE_WINDOW, TEXTURE_HOP = 200, 100


def window_frames(seconds: float, config: STFTConfig) -> int:
    """Number of STFT frames spanning ``seconds`` (5 s at 22050 Hz, hop 512: 215 frames)."""
    return max(1, int(round(seconds * config.sr / config.hop)))


def texture_starts(n_frames: int, win: int, hop: int) -> np.ndarray:
    """First frame of every texture window of ``win`` frames, ``hop`` frames apart.

    Windows lie entirely inside the recording; a recording shorter than one window gets a
    single window over all its frames, so every recording has at least one feature vector.
    """
    if n_frames <= win:
        return np.zeros(1, dtype=int)
    return np.arange(0, n_frames - win + 1, hop)


def texture_stats(frames: np.ndarray, win: int, hop: int, spread: str = "std") -> np.ndarray:
    """Mean and spread of each feature dimension over texture windows.

    Parameters
    ----------
    frames : np.ndarray
        Frame features ``(n_frames, n_dims)``.
    win, hop : int
        Window length and hop in frames.
    spread : {'std', 'var'}
        Standard deviation (DNN system) or variance (MFCC baseline), both population (ddof 0).

    Returns
    -------
    np.ndarray
        ``(n_windows, 2 * n_dims)``: means, then spreads.
    """
    frames = np.asarray(frames, dtype=np.float64)
    n = len(frames)
    starts = texture_starts(n, win, hop)
    w = min(win, n)
    # Windowed sums from cumulative sums taken only where windows start and end: the stretches
    # between those points are summed in one pass (reduceat), whatever the number of windows,
    # without a cumulative sum over every frame (a query-only attack classifies thousands of copies).
    points = np.unique(np.concatenate([[0], starts, starts + w]))
    cuts = points[points < n]
    at = np.append(cuts, n)
    zero = np.zeros((1, frames.shape[1]))
    c1 = np.vstack([zero, np.cumsum(np.add.reduceat(frames, cuts, axis=0), axis=0)])
    c2 = np.vstack([zero, np.cumsum(np.add.reduceat(frames * frames, cuts, axis=0), axis=0)])
    first, last = np.searchsorted(at, starts), np.searchsorted(at, starts + w)
    s1 = c1[last] - c1[first]
    s2 = c2[last] - c2[first]
    mean = s1 / w
    var = np.maximum(s2 / w - mean * mean, 0.0)
    return np.hstack([mean, np.sqrt(var) if spread == "std" else var]).astype(np.float32)


def dnn_activations(model, frames, layers: str = "all", batch_size: int = 8192) -> np.ndarray:
    """Hidden-layer activations of a DNN for every frame of a recording.

    Parameters
    ----------
    model : DNN
    frames : array ``(n_frames, n_bins)``
        Raw magnitude frames.
    layers : {'1', '2', '3', 'all'}
        Which hidden layer (1-based), or all concatenated.

    Returns
    -------
    np.ndarray
        ``(n_frames, n_units)`` float32.
    """
    if layers not in LAYER_CHOICES:
        raise ValueError(f"layers must be one of {LAYER_CHOICES}, not {layers!r}")
    x = torch.from_numpy(np.array(frames, dtype=np.float32)).to(model.device)
    out = []
    with evaluating(model), torch.no_grad():
        for i in range(0, len(x), batch_size):
            acts = model.activations(model.elements(x[i : i + batch_size]))
            chosen = acts if layers == "all" else [acts[int(layers) - 1]]
            out.append(torch.cat(chosen, dim=1))
    return torch.cat(out).cpu().numpy()


class TextureFeatures(TransformerMixin, BaseEstimator):
    """Texture statistics of recordings: each recording's frame features in, its windows out.

    A sample is a recording, so a :class:`~sklearn.pipeline.Pipeline` of this and
    :class:`musadv.systems.WindowVote` is fitted on recordings and their labels, as the paper's
    systems are trained. Stateless but for the check that every recording has the same
    frame features.

    Parameters
    ----------
    window, hop : int
        Texture window length and hop in frames (reference: 200 and 100).
    spread : {'std', 'var'}
        See :func:`texture_stats`.

    Attributes
    ----------
    n_features_in_ : int
        Frame features per frame seen in ``fit``.
    """

    def __init__(self, window: int = TEXTURE_WINDOW, hop: int = TEXTURE_HOP, spread: str = "std"):
        self.window, self.hop, self.spread = window, hop, spread

    def _check_params(self) -> None:
        for name, value in (("window", self.window), ("hop", self.hop)):
            if not (isinstance(value, (int, np.integer)) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1 frame, not {value!r}")
        if self.spread not in SPREADS:
            raise ValueError(f"spread must be one of {SPREADS}, not {self.spread!r}")

    def _windows(self, recordings: Iterable, n_features: int | None) -> tuple[list[np.ndarray], int | None]:
        out = []
        for i, frames in enumerate(recordings):
            frames = np.asarray(frames)
            if frames.ndim != 2 or len(frames) == 0:
                raise ValueError(f"recording {i}: frame features must be (n_frames >= 1, n_features), not {frames.shape}")
            if n_features is None:
                n_features = frames.shape[1]
            elif frames.shape[1] != n_features:
                raise ValueError(f"recording {i} has {frames.shape[1]} frame features, the others {n_features}")
            out.append(texture_stats(frames, self.window, self.hop, self.spread))
        return out, n_features

    def fit(self, X: Iterable, y=None) -> "TextureFeatures":
        """Check the settings and the frame features of ``X``, a sequence of ``(n_frames, n_features)`` arrays."""
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Iterable, y=None) -> list[np.ndarray]:
        """:meth:`fit` and :meth:`transform` in one pass, so ``X`` may be a generator of recordings
        (a training set's frame features need not be in memory at once, only their windows)."""
        self._check_params()
        windows, self.n_features_in_ = self._windows(X, None)
        return windows

    def transform(self, X: Iterable) -> list[np.ndarray]:
        """Texture windows ``(n_windows_i, 2 * n_features)`` of every recording of ``X`` (a list)."""
        check_is_fitted(self, "n_features_in_")
        return self._windows(X, self.n_features_in_)[0]

"""musadv.features: texture windows and their statistics, checked by hand."""

import numpy as np
import pytest
import torch

from musadv.features import dnn_activations, texture_starts, texture_stats, window_frames
from musadv.models import DNN
from musadv.spectral import STFTConfig


def test_window_lengths_in_seconds():
    assert window_frames(5.0, STFTConfig()) == 215  # 5 s * 22050 Hz / 512
    assert window_frames(2.5, STFTConfig()) == 108


def test_windows_on_a_hand_computed_case():
    assert list(texture_starts(10, 4, 2)) == [0, 2, 4, 6]
    assert list(texture_starts(3, 4, 2)) == [0]  # shorter than a window: one window of everything
    frames = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 2.0], [7.0, 4.0], [9.0, 4.0]])
    got = texture_stats(frames, win=2, hop=2, spread="std")
    # windows: rows 0-1 and rows 2-3
    np.testing.assert_allclose(got, [[2.0, 1.0, 1.0, 1.0], [6.0, 3.0, 1.0, 1.0]])
    var = texture_stats(frames, win=4, hop=1, spread="var")
    np.testing.assert_allclose(var[0], np.r_[frames[:4].mean(0), frames[:4].var(0)])
    np.testing.assert_allclose(var[1], np.r_[frames[1:].mean(0), frames[1:].var(0)], rtol=1e-6)


def test_dnn_activations_choose_layers():
    torch.manual_seed(0)
    m = DNN(["a", "b"], hidden=7)
    frames = np.random.rand(30, 513).astype(np.float32)
    every = dnn_activations(m, frames, "all")
    assert every.shape == (30, 21)
    np.testing.assert_allclose(dnn_activations(m, frames, "2"), every[:, 7:14], rtol=1e-6)
    with pytest.raises(ValueError):
        dnn_activations(m, frames, "4")

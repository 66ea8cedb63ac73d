"""musadv.classify: eq. 3-4, a recording's confidence is the mean of its elements' posteriors."""

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from musadv import synth
from musadv.classify import classify_file, classify_frames, recording_confidence
from musadv.errors import AudioError
from musadv.interface import DifferentiableClassifier
from musadv.models import CDNN
from musadv.spectral import STFTConfig


class TablePosteriors(nn.Module, DifferentiableClassifier):
    """A stand-in network whose posterior for a frame is looked up from a table by the frame's first value."""

    element_frames = 1
    labels = ["jazz", "rock"]
    stft = STFTConfig()

    def __init__(self, table):
        super().__init__()
        self.table = torch.tensor(table, dtype=torch.float32)
        self.info = {}

    def logits(self, mags, phase=None):
        return torch.log(self.table[mags[:, 0].long()])


def test_confidence_is_the_sum_of_posteriors_normalised_not_a_vote():
    table = [[0.6, 0.4], [0.6, 0.4], [0.0001, 0.9999]]
    frames = np.zeros((3, 513), np.float32)
    frames[:, 0] = [0, 1, 2]
    post = TablePosteriors(table).posteriors(frames)
    np.testing.assert_allclose(post, table, atol=1e-6)
    conf = recording_confidence(post)
    np.testing.assert_allclose(conf, [(0.6 + 0.6 + 0.0001) / 3, (0.4 + 0.4 + 0.9999) / 3], atol=1e-6)
    pred = classify_frames(TablePosteriors(table), frames)
    # Two of three elements say jazz, but the summed posterior says rock (eq. 4 is an argmax of sums).
    assert pred.label == "rock" and pred.n_elements == 3
    assert pred.confidence["rock"] == pytest.approx(0.59997, abs=1e-4)


def test_any_file_format_rate_and_channel_count(trained_dnn, tmp_path):
    y = synth.render("techno", seed=99, duration=3.0, sr=44100)
    sf.write(tmp_path / "x.flac", np.stack([y, 0.5 * y], axis=1), 44100)
    pred = classify_file(trained_dnn, tmp_path / "x.flac")
    assert set(pred.confidence) == set(trained_dnn.labels)
    assert sum(pred.confidence.values()) == pytest.approx(1.0, abs=1e-5)
    assert pred.n_elements == 1 + 3 * 22050 // 512


def test_recording_shorter_than_one_element_is_named(tmp_path):
    model = CDNN(["a", "b"], patch=100, filters=2)
    sf.write(tmp_path / "short.wav", synth.render("rock", 1, duration=1.0), 22050)
    with pytest.raises(AudioError, match="short.wav: too short for this model"):
        classify_file(model, tmp_path / "short.wav")

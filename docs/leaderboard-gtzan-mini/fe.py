"""The leaderboard's masked-gradient model: the study's DNN-500 behind a front end that rounds its input.

Copy this file into the study folder and judge it as ``fe:rounded``: the labels are the DNN-500's, and the
gradient of every output with respect to the magnitudes is zero, so a gradient adversary alone would read it
as perfectly robust. The judge must flag it and measure it with queries.
"""

import torch

from musadv.interface import DifferentiableClassifier
from musadv.systems import load_system

#: Magnitude step of the rounding (the study's magnitudes are of order 1e-3 to 1).
STEP = 1e-3


class Rounded(torch.nn.Module, DifferentiableClassifier):
    """A network behind a front end that rounds its input magnitudes to ``STEP``."""

    def __init__(self, net):
        super().__init__()
        self.net, self.labels, self.stft, self.element_frames = net, net.labels, net.stft, net.element_frames
        self.info, self.path = {"factory": "fe:rounded"}, None

    def logits(self, mags, phase=None):
        return self.net.logits(torch.round(mags / STEP) * STEP)


def rounded():
    """The study's ``models/dnn`` (relative to the working directory) behind the rounding front end."""
    return Rounded(load_system("models/dnn"))

"""musadv.interface: evaluation mode is entered and left without changing what a wrapped network is."""

import numpy as np
import torch
from torch import nn

from musadv.interface import evaluating
from musadv.spectral import STFTConfig
from musadv.wrappers import TorchClassifier


class BatchNormNet(nn.Module):
    """A pretrained-looking module: batch norm with running statistics far from a batch's own."""

    def __init__(self, n_bins: int, n_labels: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(n_bins)
        self.out = nn.Linear(n_bins, n_labels)
        with torch.no_grad():
            self.norm.running_mean.fill_(3.0)
            self.norm.running_var.fill_(0.25)

    def forward(self, x):
        return self.out(self.norm(x[:, 0]))


def _wrapped():
    torch.manual_seed(0)
    net = BatchNormNet(STFTConfig().n_bins, 3).eval()  # as a researcher loads pretrained weights
    return net, TorchClassifier(net, ["a", "b", "c"])  # the wrapper itself is built in training mode


def test_a_wrapped_batch_norm_network_predicts_the_same_before_and_after_a_first_predict():
    net, model = _wrapped()
    frames = np.random.default_rng(0).random((40, STFTConfig().n_bins), dtype=np.float32)
    x = torch.from_numpy(frames[:, None])
    with torch.no_grad():
        before = net(x).clone()
    first = model.predict(frames)
    with torch.no_grad():
        after = net(x)
    assert not net.training and not net.norm.training
    assert torch.equal(before, after)
    assert torch.equal(net.norm.running_mean, torch.full_like(net.norm.running_mean, 3.0))
    assert model.predict(frames).confidence == first.confidence


def test_evaluating_restores_every_submodule_to_its_own_mode():
    net, model = _wrapped()
    assert model.training and not net.training
    with evaluating(model):
        assert not model.training and not net.training and not net.norm.training
    assert model.training and not net.training and not net.norm.training
    net.norm.train()
    with evaluating(model):
        assert not net.norm.training
    assert net.norm.training and not net.out.training

"""Alg. 2 (musadv.training with adversarial='fgsm'): the sign step, and training on it for both networks."""

import pytest
import torch
from torch import nn

from musadv.evaluate import evaluate_model
from musadv.training import TrainConfig, fgsm, train

QUIET = dict(progress=False, log=lambda m: None)


class Tiny(nn.Module):
    """Logits = W x on 2-bin 'frames': gradients that can be worked out by hand."""

    labels = ["a", "b"]

    def __init__(self):
        super().__init__()
        self.output = nn.Linear(2, 2, bias=False)
        self.output.weight.data = torch.tensor([[1.0, -2.0], [-1.0, 3.0]])

    def forward(self, x):
        return self.output(x.reshape(len(x), -1))


def test_fgsm_is_one_sign_step_towards_a_wrong_label_clipped_at_zero():
    model = Tiny()
    x = torch.tensor([[[0.1, 0.5]], [[2.0, 2.0]]])
    y = torch.tensor([0, 1])
    x_adv, targets = fgsm(model, x, y, step=0.25)
    assert targets.tolist() == [1, 0]  # with two labels the only wrong one
    # By hand: d CE(target)/dx = W^T (softmax - onehot(target)); its sign for each element:
    for i in range(2):
        p = torch.softmax(model(x[i : i + 1]), -1)[0]
        onehot = torch.nn.functional.one_hot(targets[i], 2).float()
        grad = model.output.weight.T @ (p - onehot)
        expected = torch.clamp(x[i, 0] - 0.25 * grad.sign(), min=0)
        torch.testing.assert_close(x_adv[i, 0], expected)
    # Towards label 1 the gradient is (2 p0, -5 p0): x[0, 0, 0] = 0.1 moves by -0.25 and is
    # clipped to 0, so magnitudes stay non-negative.
    assert x_adv[0, 0, 0] == 0.0 and x_adv[0, 0, 1] == pytest.approx(0.75) and (x_adv >= 0).all()
    # The step raises the wrong label's posterior.
    assert torch.softmax(model(x_adv), -1)[0, 1] > torch.softmax(model(x), -1)[0, 1]


def test_fgsm_on_standardised_inputs_takes_the_same_step_on_the_magnitudes():
    from musadv.models import DNN

    torch.manual_seed(0)
    model = DNN(["a", "b", "c"], hidden=20)
    model.standardize.fit(torch.rand(513).numpy() + 0.5, torch.rand(513).numpy() + 0.5)
    x = torch.rand(6, 1, 513) * 2  # some bins below the step: clipping at 0 matters
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    raw, t_raw = fgsm(model, x, y, 0.25, generator=torch.Generator().manual_seed(1))
    z = (x - model.standardize.mean) / model.standardize.std
    std_adv, t_std = fgsm(model, z, y, 0.25, generator=torch.Generator().manual_seed(1), standardized=True)
    assert torch.equal(t_raw, t_std)
    torch.testing.assert_close(std_adv, (raw - model.standardize.mean) / model.standardize.std)


@pytest.mark.parametrize("arch,cfg", [
    ({"arch": "dnn", "hidden": 50}, TrainConfig(max_epochs=20, batch_size=256, lr=0.02, adversarial="fgsm", adv_step=0.25)),
    ({"arch": "cdnn", "patch": 50, "filters": 8, "kernel1": [4, 64]},
     TrainConfig(max_epochs=6, batch_size=8, lr=0.003, adversarial="fgsm", adv_step=0.25, adv_fraction=0.5)),
], ids=["dnn-joined", "cdnn-half-replaced"])
def test_adversarial_training_runs_for_both_architectures(learn_cache, tmp_path, arch, cfg):
    model = train(learn_cache, arch, tmp_path / "m", cfg, **QUIET)
    assert model.info["training"]["train"]["adversarial"] == "fgsm"
    assert evaluate_model(model, learn_cache, "test")["normalised_accuracy"] > 1 / 6 + 0.2

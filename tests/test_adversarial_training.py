"""musadv.adversarial_training: Alg. 2's sign step, PGD and TRADES, and training on each for both networks."""

import copy

import pytest
import torch
from torch import nn

from musadv.evaluate import evaluate_model
from musadv.adversarial_training import batch_loss, fgsm, pgd, project_to_ball, snr_ball_radius
from musadv.errors import MusadvError
from musadv.training import ElementData, TrainConfig, train

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


SMALL_CDNN = {"arch": "cdnn", "patch": 50, "filters": 8, "kernel1": [4, 64]}


@pytest.mark.parametrize("kind", ["fgsm", "fgsm_reference"])
def test_alg2_takes_the_cdnn_input_gradient_through_its_fft_path_and_leaves_the_weights_training(monkeypatch, kind):
    from musadv import adversarial_training, models

    torch.manual_seed(0)
    model = models.CDNN(["a", "b", "c"], patch=50, filters=4, kernel1=(4, 64))
    model.standardize.fit(torch.rand(513).numpy() + 0.5, torch.rand(513).numpy() + 0.5)
    model.train()
    calls, fast = [], models.conv_input_gradient
    monkeypatch.setattr(models, "conv_input_gradient", lambda *a: calls.append(1) or fast(*a))
    z, y = torch.randn(4, 50, 513), torch.tensor([0, 1, 2, 0])
    if kind == "fgsm":
        adversarial_training.fgsm(model, z, y, 0.25, standardized=True)
    else:
        adversarial_training.fgsm_reference(model, z, y, 0.25)
    # The weights held still for the input gradient (the training path's backward of so wide a kernel is several
    # times slower), and train after it, in the mode Alg. 2 trains in.
    assert calls and model.training
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("arch,cfg", [
    ({"arch": "dnn", "hidden": 50}, TrainConfig(max_epochs=20, batch_size=256, lr=0.02, adversarial="fgsm", adv_step=0.25)),
    (SMALL_CDNN, TrainConfig(max_epochs=6, batch_size=8, lr=0.003, adversarial="fgsm", adv_step=0.25, adv_fraction=0.5)),
    ({"arch": "dnn", "hidden": 50}, TrainConfig(max_epochs=12, batch_size=256, lr=0.02, adversarial="pgd", adv_steps=3)),
    (SMALL_CDNN, TrainConfig(max_epochs=4, batch_size=8, lr=0.003, adversarial="trades", adv_steps=2, trades_beta=1.0)),
], ids=["dnn-fgsm-joined", "cdnn-fgsm-half-replaced", "dnn-pgd-joined", "cdnn-trades"])
def test_adversarial_training_runs_for_both_architectures(learn_cache, tmp_path, arch, cfg):
    model = train(learn_cache, arch, tmp_path / "m", cfg, **QUIET)
    assert model.info["training"]["train"]["adversarial"] == cfg.adversarial
    assert evaluate_model(model, learn_cache, "test")["normalised_accuracy"] > 1 / 6 + 0.2


@pytest.fixture(scope="module")
def test_elements(trained_dnn, learn_cache):
    """150 standardised frames of the test split and their labels, as training sees a batch."""
    data = ElementData(learn_cache, "test", 1, trained_dnn.labels)
    data.standardize_(trained_dnn.standardize.mean, trained_dnn.standardize.std)
    return data.batch(torch.arange(0, len(data), len(data) // 150)[:150])


def _magnitudes(model, z):
    return z * model.standardize.std + model.standardize.mean


def test_pgd_examples_lie_inside_their_snr_ball_and_stay_magnitudes(trained_dnn, test_elements):
    z, y = test_elements
    z_adv = pgd(trained_dnn, z, y, snr_db=20.0, steps=5, generator=torch.Generator().manual_seed(0))
    x, x_adv = _magnitudes(trained_dnn, z).clamp_min(0), _magnitudes(trained_dnn, z_adv)
    change = torch.linalg.vector_norm((x_adv - x).flatten(1), dim=1)
    snr = 20 * torch.log10(torch.linalg.vector_norm(x.flatten(1), dim=1) / change)
    assert snr.min() >= 20.0 - 1e-3
    # 2.5 radii of steps reach the edge: the attack uses its budget rather than staying near the start.
    assert snr.median() < 20.05
    assert x_adv.min() >= -1e-5


def test_pgd_raises_the_loss_far_above_random_changes_of_the_same_size(trained_dnn, test_elements):
    z, y = test_elements
    x = _magnitudes(trained_dnn, z).clamp_min(0)
    z_adv = pgd(trained_dnn, z, y, snr_db=30.0, steps=5, generator=torch.Generator().manual_seed(0))
    change = _magnitudes(trained_dnn, z_adv) - x
    size = torch.linalg.vector_norm(change.flatten(1), dim=1)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    noise *= (size / torch.linalg.vector_norm(noise.flatten(1), dim=1)).view(-1, 1, 1)
    x_random = project_to_ball(x, x + noise, snr_ball_radius(x, 30.0))
    loss = lambda xx: torch.nn.functional.cross_entropy(trained_dnn(xx), y, reduction="none")
    with torch.no_grad():
        attacked, randomised, clean = loss(_magnitudes(trained_dnn, z_adv)), loss(x_random), loss(x)
    assert (attacked > randomised).float().mean() >= 0.95
    assert attacked.mean() > 10 * randomised.mean()
    # Random changes of that size barely move the loss: the gain is the attack's, not the budget's.
    assert abs(randomised.mean() - clean.mean()) < 0.5 * (attacked.mean() - clean.mean())


def test_trades_with_beta_zero_is_plain_training(learn_cache, tmp_path):
    arch = {"arch": "dnn", "hidden": 50, "layers": 3, "dropout": 0.0}
    plain = train(learn_cache, arch, tmp_path / "plain", TrainConfig(max_epochs=3, batch_size=256, lr=0.02), **QUIET)
    trades = train(learn_cache, arch, tmp_path / "trades",
                   TrainConfig(max_epochs=3, batch_size=256, lr=0.02, adversarial="trades", trades_beta=0.0, adv_steps=2), **QUIET)
    for name, weights in plain.state_dict().items():
        assert torch.equal(weights, trades.state_dict()[name]), name
    assert [h["train_loss"] for h in trades.info["training"]["history"]] == [h["train_loss"] for h in plain.info["training"]["history"]]


def test_trades_gradient_is_finite_when_the_clean_posteriors_underflow(trained_dnn, test_elements):
    # A confident network's clean posterior of some label underflows to exactly 0 (a logit gap of about 100):
    # the divergence must not turn 0 * log 0 into a NaN gradient that poisons every weight.
    z, y = test_elements
    model = copy.deepcopy(trained_dnn).train()
    with torch.no_grad():
        model.output.weight *= 1000
        assert (torch.softmax(model(z[:32], standardized=True), -1) == 0).any()
    loss, _ = batch_loss(model, z[:32], y[:32], TrainConfig(adversarial="trades", adv_steps=2, trades_beta=6.0),
                         torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters()), "a non-finite gradient"


def test_trades_with_a_positive_beta_trains_differently(learn_cache, tmp_path):
    arch = {"arch": "dnn", "hidden": 50, "layers": 3, "dropout": 0.0}
    plain = train(learn_cache, arch, tmp_path / "plain", TrainConfig(max_epochs=1, batch_size=256, lr=0.02), **QUIET)
    trades = train(learn_cache, arch, tmp_path / "trades",
                   TrainConfig(max_epochs=1, batch_size=256, lr=0.02, adversarial="trades", trades_beta=6.0, adv_steps=2), **QUIET)
    assert not torch.equal(plain.output.weight, trades.output.weight)


@pytest.mark.parametrize("settings,message", [
    (dict(adversarial="trades", adv_fraction=0.5), "adv_fraction does not apply to trades"),
    (dict(adversarial="pgd", adv_steps=0), "adv_steps must be at least 1"),
    (dict(adversarial="trades", trades_beta=-1.0), "trades_beta must be non-negative"),
    (dict(adversarial="pgd", adv_fraction=1.5), "adv_fraction must be in"),
    (dict(adversarial="madry"), "unknown adversarial training 'madry'"),
])
def test_settings_an_adversarial_training_cannot_run_are_refused_before_training(learn_cache, tmp_path, settings, message):
    with pytest.raises(MusadvError, match=message):
        train(learn_cache, {"arch": "dnn", "hidden": 50}, tmp_path / "m", TrainConfig(max_epochs=1, **settings), **QUIET)
    assert not (tmp_path / "m").exists()


def test_pgd_attacks_the_network_with_dropout_off_and_leaves_it_training(test_elements):
    from musadv.models import DNN

    z, y = test_elements
    torch.manual_seed(0)
    model = DNN(["a", "b", "c", "d", "e", "f"], hidden=20, dropout=0.5)
    model.standardize.fit(torch.rand(513).numpy() + 0.5, torch.rand(513).numpy() + 0.5)
    model.train()
    torch.manual_seed(1)
    first = pgd(model, z[:20], y[:20], 30.0, 3, generator=torch.Generator().manual_seed(0))
    # Another global random state: with dropout on, the masks (and so the steps) would differ.
    torch.manual_seed(2)
    second = pgd(model, z[:20], y[:20], 30.0, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first, second)
    assert model.training and model.drop.training


def test_training_on_noisy_batches_follows_the_noise_level(learn_cache, tmp_path):
    arch = {"arch": "dnn", "hidden": 50, "layers": 3, "dropout": 0.0}
    cfg = dict(max_epochs=2, batch_size=256, lr=0.02)
    plain = train(learn_cache, arch, tmp_path / "plain", TrainConfig(**cfg), **QUIET)
    faint = train(learn_cache, arch, tmp_path / "faint", TrainConfig(**cfg, noise_snr_db=160.0), **QUIET)
    loud = train(learn_cache, arch, tmp_path / "loud", TrainConfig(**cfg, noise_snr_db=0.0), **QUIET)
    assert faint.info["training"]["train"]["noise_snr_db"] == 160.0
    torch.testing.assert_close(faint.output.weight, plain.output.weight, rtol=0, atol=1e-4)
    assert (loud.output.weight - plain.output.weight).abs().max() > 1e-2

"""musadv.models: the paper's DNN and CDNN, standardisation as a fixed first layer, safe model files."""

import json

import numpy as np
import pytest
import torch

from musadv.models import CDNN, DNN, ModelError, check_compatible, load_model, save_model
from musadv.spectral import REFERENCE, STFTConfig

LABELS = ["a", "b", "c"]


def test_dnn_is_three_relu_layers_on_standardised_raw_magnitudes():
    torch.manual_seed(0)
    m = DNN(LABELS, hidden=500)
    assert [tuple(l.weight.shape) for l in m.hidden_layers] == [(500, 513), (500, 500), (500, 500)]
    assert m.output.weight.shape == (3, 500) and m.element_frames == 1
    mean, std = np.random.rand(513), np.random.rand(513) + 0.5
    m.standardize.fit(mean, std)
    # The statistics are buffers, not parameters: training never moves them.
    assert "standardize.mean" in m.state_dict() and "standardize.mean" not in dict(m.named_parameters())
    before = m.standardize.mean.clone(), m.standardize.std.clone()
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    m(torch.rand(5, 1, 513)).sum().backward()
    opt.step()
    assert torch.equal(m.standardize.mean, before[0]) and torch.equal(m.standardize.std, before[1])
    opt.zero_grad()
    x = torch.rand(7, 1, 513)
    h = (x.reshape(7, 513) - torch.tensor(mean, dtype=torch.float32)) / torch.tensor(std, dtype=torch.float32)
    for layer in m.hidden_layers:
        h = torch.relu(layer(h))
    torch.testing.assert_close(m(x), m.output(h))


@pytest.mark.parametrize("model", [DNN(LABELS, hidden=20), CDNN(LABELS, patch=40)], ids=["dnn", "cdnn"])
def test_standardised_inputs_skip_the_first_layer_with_identical_outputs(model):
    """The trainer standardises its data once and says so; the outputs are bit for bit the same."""
    model.standardize.fit(np.random.rand(513) * 3, np.random.rand(513) + 0.5)
    x = torch.rand(4, model.element_frames, 513) * 5
    z = (x - model.standardize.mean) / model.standardize.std
    torch.testing.assert_close(model(z, standardized=True), model(x), rtol=0, atol=0)


def test_cdnn_has_the_reference_architecture():
    m = CDNN(LABELS)
    conv1, conv2 = m.features[0], m.features[3]
    assert conv1.weight.shape == (32, 1, 4, 400) and conv2.weight.shape == (32, 32, 8, 8)
    assert m.features[2].kernel_size == (4, 4) and m.features[2].stride == (2, 2)
    # 100 x 513 -> conv 97 x 114 -> pool 47 x 56 -> conv 40 x 49 -> pool 19 x 23
    assert m.fc.in_features == 32 * 19 * 23 and m.fc.out_features == 50
    assert m(torch.rand(2, 100, 513)).shape == (2, 3) and m.element_frames == 100


def test_the_attack_gets_the_cdnn_input_gradient_pytorch_would_give_and_training_still_learns_the_first_layer():
    torch.manual_seed(0)
    m = CDNN(LABELS)
    m.standardize.fit(np.random.default_rng(0).random(513) + 0.5, np.random.default_rng(1).random(513) + 0.5)
    plain = torch.nn.Conv2d(1, 32, (4, 400))
    plain.load_state_dict(m.features[0].state_dict())
    mags = torch.rand(250, 513) * 3

    def input_gradient(first_conv):
        m.features[0] = first_conv
        x = mags.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(m.logits(x), torch.full((2,), 1), reduction="sum").backward()
        return x.grad

    fast_layer = m.features[0]
    m.requires_grad_(False)  # as the attack holds it (musadv.interface.evaluating)
    fast, reference = input_gradient(fast_layer), input_gradient(plain.requires_grad_(False))
    assert fast.abs().max() > 0
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-6 * float(reference.abs().max()))
    m.features[0] = fast_layer.requires_grad_(True)
    m.logits(mags).sum().backward()
    assert fast_layer.weight.grad is not None and fast_layer.weight.grad.abs().sum() > 0


def test_a_patch_too_small_for_the_kernels_is_a_clear_error():
    with pytest.raises(ModelError, match="too small"):
        CDNN(LABELS, patch=20)


def test_elements_are_frames_or_non_overlapping_patches_and_pass_gradients():
    frames = torch.rand(250, 513, requires_grad=True)
    assert DNN(LABELS).elements(frames).shape == (250, 1, 513)
    cd = CDNN(LABELS, patch=100, filters=4)
    el = cd.elements(frames)
    assert el.shape == (2, 100, 513)
    torch.testing.assert_close(el[1], frames[100:200])
    cd(el).sum().backward()
    assert frames.grad[:200].abs().sum() > 0 and frames.grad[200:].abs().sum() == 0


def test_saved_model_reloads_to_identical_posteriors_without_pickle(tmp_path):
    torch.manual_seed(1)
    for m in (DNN(LABELS, dropout=0.5), CDNN(LABELS, patch=40, filters=4, kernel1=(4, 40))):
        m.standardize.fit(np.random.rand(513), np.random.rand(513) + 0.1)
        path = save_model(m, tmp_path / m.arch, {"note": "x"})
        assert sorted(p.name for p in path.iterdir()) == ["model.json", "model.safetensors"]
        meta = json.loads((path / "model.json").read_text())
        assert meta["labels"] == LABELS and meta["stft"]["n_fft"] == 1024 and meta["note"] == "x"
        back = load_model(path)
        x = torch.rand(5, m.element_frames, 513)
        m.eval()
        torch.testing.assert_close(back(x), m(x), rtol=0, atol=0)
        # safetensors begins with an 8-byte header length and a JSON header, never a pickle opcode.
        head = (path / "model.safetensors").read_bytes()[:9]
        assert head[8:9] == b"{"


def test_broken_model_directories_give_one_line_errors(tmp_path):
    with pytest.raises(ModelError, match="no model.json"):
        load_model(tmp_path)
    m = DNN(LABELS)
    save_model(m, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["config"]["hidden"] = 60
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="do not fit") as info:
        load_model(tmp_path / "m")
    assert "\n" not in str(info.value)


def test_a_model_refuses_data_analysed_differently_or_with_other_labels():
    m = DNN(LABELS)
    check_compatible(m, STFTConfig(), ["a", "b"])
    with pytest.raises(ModelError, match="trained on"):
        check_compatible(m, REFERENCE, None, "cache")
    with pytest.raises(ModelError, match="not among"):
        check_compatible(m, STFTConfig(), ["a", "z"], "cache")

"""musadv.wrappers: a researcher's own PyTorch models, trained without musadv's trainer, are tested,
classified and attacked through ``package.module:factory`` exactly as musadv's own networks."""

import importlib
import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from musadv import cli
from musadv.attack import AttackConfig, attack
from musadv.errors import MusadvError
from musadv.interface import unit_phase
from musadv.models import ModelError
from musadv.spectral import STFTConfig, stft
from musadv.systems import load_system
from musadv.wrappers import TorchClassifier, logmel, mel_filterbank

from .conftest import fit_cross_entropy, run_musadv

# The researcher's own file: two models and the factories musadv calls. Nothing in it but the
# wrapper comes from musadv.
MODELS_PY = textwrap.dedent('''
    import json
    from pathlib import Path

    import torch
    from safetensors.torch import load_file
    from torch import nn

    from musadv.wrappers import TorchClassifier

    HERE = Path(__file__).parent
    # Waveform elements of 115 frames (58880 samples, 2.7 s at 22050 Hz): about SampleCNN's 59049-sample input.
    N_MELS, MEL_FRAMES, WAVE_FRAMES = 40, 16, 115


    class MelCNN(nn.Module):
        """A small CNN on log-mel patches (n, frames, mels)."""

        def __init__(self, n_labels):
            super().__init__()
            self.net = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 8)),
                nn.Flatten(), nn.Linear(64, n_labels))

        def forward(self, x):
            return self.net(x.unsqueeze(1))


    class WaveCNN(nn.Module):
        """A small 1-D CNN on waveform segments (n, samples)."""

        def __init__(self, n_labels):
            super().__init__()
            self.net = nn.Sequential(
                nn.Conv1d(1, 16, 64, stride=16), nn.ReLU(), nn.MaxPool1d(4),
                nn.Conv1d(16, 16, 8, stride=2), nn.ReLU(), nn.AdaptiveMaxPool1d(1),
                nn.Flatten(), nn.Linear(16, n_labels))

        def forward(self, x):
            return self.net(x.unsqueeze(1))


    def labels():
        return json.loads((HERE / "labels.json").read_text())


    def mel_model():
        return TorchClassifier(MelCNN(len(labels())), labels(), front_end="logmel", element_frames=MEL_FRAMES,
                               n_mels=N_MELS, mean=torch.zeros(N_MELS), std=torch.ones(N_MELS))


    def wave_model():
        return TorchClassifier(WaveCNN(len(labels())), labels(), front_end="waveform", element_frames=WAVE_FRAMES,
                               std=torch.ones(()))


    def mel_cnn():
        model = mel_model()
        model.load_state_dict(load_file(HERE / "mel.safetensors"))
        return model


    def wave_cnn():
        model = wave_model()
        model.load_state_dict(load_file(HERE / "wave.safetensors"))
        return model


    def not_a_model():
        return nn.Linear(3, 2)
''')


def _train(model, inputs, targets, epochs, seed=0):
    """The researcher's own loop (:func:`fit_cross_entropy`) on a wrapped module."""
    return fit_cross_entropy(model, model, inputs, targets, epochs, seed=seed)


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch):
    """Factories put the current directory on sys.path; each test gets the path back as it was."""
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture(scope="module")
def byo(learn_cache, tmp_path_factory):
    """The researcher's folder: models.py, labels.json and the weights of both trained models."""
    folder = tmp_path_factory.mktemp("byo")
    (folder / "models.py").write_text(MODELS_PY)
    (folder / "labels.json").write_text(json.dumps(learn_cache.labels))
    sys.path.insert(0, str(folder))
    try:
        mine = importlib.import_module("models")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("models", None)
    train = learn_cache.split("train")
    index = {lab: i for i, lab in enumerate(learn_cache.labels)}

    torch.manual_seed(0)  # the modules' initial weights: the same whatever ran before
    mel = mine.mel_model()
    per_rec = [mel.inputs(torch.from_numpy(np.array(learn_cache.frames(e)))) for e in train]
    x = torch.cat(per_rec)
    y = torch.cat([torch.full((len(p),), index[e.label]) for p, e in zip(per_rec, train)])
    mel.mean.copy_(x.mean((0, 1)))
    mel.std.copy_(x.std((0, 1)))
    x = (x - mel.mean) / mel.std  # inputs() standardised with zeros and ones: now with the training statistics
    save_file(_train(mel, x, y, epochs=30).state_dict(), folder / "mel.safetensors")

    torch.manual_seed(0)
    wave = mine.wave_model()
    per_rec = [wave.signal_inputs(torch.from_numpy(learn_cache.signal(e))) for e in train]
    x = torch.cat(per_rec)
    y = torch.cat([torch.full((len(p),), index[e.label]) for p, e in zip(per_rec, train)])
    wave.std.copy_(x.std())
    save_file(_train(wave, x / wave.std, y, epochs=30).state_dict(), folder / "wave.safetensors")
    return folder


# Both at 15 dB, random targets. Over six initial weights (seeds 0-5) the log-mel CNN reached 20 to
# 23 of 24 (22 with seed 0, which the fixture uses) and the waveform CNN 23 or 24; on 0.37 s
# elements the waveform CNN resists (benchmarks/bench_waveform.py).
@pytest.mark.parametrize("factory", ["models:mel_cnn", "models:wave_cnn"])
def test_own_models_are_tested_and_attacked_from_the_command_line(factory, byo, learn_cache, tmp_path, monkeypatch,
                                                                  capsys):
    monkeypatch.chdir(byo)  # the factory's module is found in the current directory, as for a script
    snr = 15
    cli.main(["test", factory, "--cache", str(learn_cache.path), "--out", str(tmp_path / "test")])
    fom = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert fom["normalised_accuracy"] >= 0.6 and fom["binomial_p"] < 1e-3, fom["normalised_accuracy"]

    out = tmp_path / "attack"
    cli.main(["attack", factory, "--split", "test", "--cache", str(learn_cache.path), "--policy", "random",
              "--snr", str(snr), "--out", str(out), "--quiet", "--no-report"])
    m = json.loads((out / "metrics.json").read_text())
    run = json.loads((out / "run.json").read_text())
    assert run["model"] == factory and len(run["model_sha256"]) == 64
    assert m["n_examples"] == len(learn_cache.split("test"))
    # Success is judged on the written files, decoded and classified again by the factory's model.
    assert m["success_rate"] >= 0.9, m["failed"]
    assert m["snr_wave_db"]["min"] >= snr - 1e-6
    capsys.readouterr()
    first = json.loads(sorted((out / "examples").glob("*.json"))[0].read_text())
    cli.main(["classify", factory, str(out / first["wav"]), "--json"])
    assert json.loads(capsys.readouterr().out)["label"] == first["decoded_label"]

    curve_dir = tmp_path / "curve"
    cli.main(["robustness", factory, "--cache", str(learn_cache.path), "--limit", "4", "--snr", f"40,{snr}",
              "--out", str(curve_dir), "--quiet"])
    curve = json.loads((curve_dir / "metrics.json").read_text())
    assert json.loads((curve_dir / "robustness.json").read_text())["system"] == factory
    assert [row["snr_db"] for row in curve["curve"]] == [40.0, float(snr)] and (curve_dir / "curve.png").exists()
    assert curve["curve"][-1]["success_rate"] >= 0.75


def test_the_waveform_front_end_hears_the_recording_itself(byo, learn_cache, monkeypatch):
    """The inverse STFT of the recording's magnitudes and phase is the recording: the module gets
    the same input from the attacked magnitudes as from the waveform."""
    monkeypatch.chdir(byo)
    model = load_system("models:wave_cnn")
    e = learn_cache.split("test")[0]
    y = torch.from_numpy(learn_cache.signal(e))
    spec = stft(y, model.stft)
    from_mags = model.inputs(spec.abs(), unit_phase(spec))
    from_signal = model.signal_inputs(y)
    assert from_mags.shape == from_signal.shape and from_mags.shape[1] == 115 * 512
    assert float((from_mags - from_signal).abs().max()) < 1e-4 * float(from_signal.abs().max())
    # The magnitudes' gradient reaches through the inverse STFT.
    mags = spec.abs().requires_grad_(True)
    model.logits(mags, unit_phase(spec))[:, 0].sum().backward()
    assert float(mags.grad.abs().sum()) > 0


def test_log_mel_front_end_is_the_log_of_mel_energies():
    config = STFTConfig()
    mags = torch.rand(7, config.n_bins)
    fb = mel_filterbank(config, n_mels=20)
    direct = torch.log(torch.einsum("mb,fb->fm", fb, mags ** 2) + 1e-6)
    torch.testing.assert_close(logmel(mags, fb), direct)
    model = TorchClassifier(torch.nn.Flatten(), ["a"] * 60, config, "logmel", element_frames=3, n_mels=20)
    assert model.inputs(mags).shape == (2, 3, 20)  # 7 frames: two elements of 3, one frame left out


def test_attack_takes_the_gradient_through_the_mel_front_end(byo, learn_cache, monkeypatch):
    monkeypatch.chdir(byo)
    model = load_system("models:mel_cnn")
    e = learn_cache.split("test")[1]
    y = learn_cache.signal(e)
    before = model.predict(learn_cache.frames(e)).label
    target = next(lab for lab in model.labels if lab != before)
    r = attack(model, y, target, AttackConfig(snr_db=15))
    assert r.label_before == before and r.label_after == target and r.snr_wave_db >= 15 - 1e-6


def test_factories_that_do_not_give_a_classifier_are_refused_in_one_line(byo, monkeypatch):
    monkeypatch.chdir(byo)
    with pytest.raises(ModelError, match="returned a Linear, not a musadv AudioClassifier"):
        load_system("models:not_a_model")
    with pytest.raises(ModelError, match="has no function nothing"):
        load_system("models:nothing")
    with pytest.raises(ModelError, match="cannot import no_such_module"):
        load_system("no_such_module:f")
    done = run_musadv("test", "no/such/dir", "--out", "x")
    assert done.returncode == 1
    assert "no/such/dir: no such model directory" in done.stderr


def test_feature_systems_are_not_attacked_but_say_why(learn_cache, tmp_path):
    from musadv.systems import train_baseline

    system = train_baseline(learn_cache, window=86, hop=43, progress=False)
    with pytest.raises(MusadvError, match="gives no gradient"):
        attack(system, learn_cache.signal(learn_cache.split("test")[0]), learn_cache.labels[0])

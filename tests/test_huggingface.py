"""musadv.huggingface: a researcher's own Hugging Face audio classifiers (a HuBERT-style and an AST), fine-tuned
here with their own loop and saved with save_pretrained, are read offline through ``hf:DIR`` and hear what
their feature extractors would give them; every command tests, attacks, classifies and curves them."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from transformers import (ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, HubertConfig,  # noqa: E402
                          HubertForSequenceClassification, Wav2Vec2FeatureExtractor)

from musadv import cli, partitions, synth  # noqa: E402
from musadv.cache import prepare  # noqa: E402
from musadv.classify import classify_file  # noqa: E402
from musadv.huggingface import ast_fbank, ast_filterbank, chunk_bounds  # noqa: E402
from musadv.interface import unit_phase  # noqa: E402
from musadv.spectral import STFTConfig, stft  # noqa: E402
from musadv.systems import load_system  # noqa: E402

from .conftest import fit_cross_entropy, run_musadv  # noqa: E402

SR = 16000
CHUNK_S = 2  # the HuBERT's chunk: three per 6 s recording
AST_FRAMES = 200  # the AST's max_length: 2.015 s


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory):
    """The built-in data at 16 kHz: 6 styles x 12 clips of 6 s, 6/2/4 split."""
    base = tmp_path_factory.mktemp("hf")
    ds = synth.generate(base / "data", n_per_style=12, duration=6.0, seed=1)
    part = partitions.stratified(ds, (0.5, 1 / 6, 1 / 3), seed=0)
    return prepare(part, base / "cache", STFTConfig(sr=SR), jobs=1, progress=False)


def _tiny_hubert(labels):
    # HuBERT's SpecAugment masks draw from NumPy's global generator, which no seed of the fine-tuning reaches: with
    # it on, the fine-tuned model (and whether the attack test passes) changed from run to run.
    config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          mask_time_prob=0.0,
                          conv_dim=(32,) * 7, classifier_proj_size=32, num_conv_pos_embeddings=16,
                          num_conv_pos_embedding_groups=4, num_labels=len(labels),
                          id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)})
    return HubertForSequenceClassification(config), Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True)


def _tiny_ast(labels):
    config = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       num_mel_bins=64, max_length=AST_FRAMES, frequency_stride=16, time_stride=16,
                       num_labels=len(labels), id2label=dict(enumerate(labels)),
                       label2id={lab: i for i, lab in enumerate(labels)})
    return ASTForAudioClassification(config), ASTFeatureExtractor(sampling_rate=SR, num_mel_bins=64,
                                                                  max_length=AST_FRAMES)


def _fine_tune(system, cache, epochs=25, lr=3e-3, seed=0):
    """The researcher's own loop (:func:`fit_cross_entropy`) on every whole chunk of the training recordings."""
    index = {lab: i for i, lab in enumerate(system.labels)}
    xs, ys = [], []
    for e in cache.split("train"):
        signal = torch.from_numpy(cache.signal(e))
        for a, b in chunk_bounds(len(signal), system.chunk_samples):
            if b - a == system.chunk_samples:
                xs.append(system.features(signal[a:b]))
                ys.append(index[e.label])
    fit_cross_entropy(system.model, system, torch.stack(xs), torch.tensor(ys), epochs, batch=16, lr=lr, seed=seed)


@pytest.fixture(scope="module")
def checkpoints(hf_cache, tmp_path_factory):
    """``hf:`` specs of a tiny HuBERT and a tiny AST fine-tuned on the built-in data, each saved with
    save_pretrained beside its feature extractor."""
    specs = {}
    for kind, make, suffix in (("hubert", _tiny_hubert, f"@{CHUNK_S}"), ("ast", _tiny_ast, "")):
        folder = tmp_path_factory.mktemp(kind)
        torch.manual_seed(0)
        model, extractor = make(hf_cache.labels)
        model.save_pretrained(folder)
        extractor.save_pretrained(folder)
        spec = f"hf:{folder}{suffix}"
        system = load_system(spec)
        _fine_tune(system, hf_cache)
        system.model.save_pretrained(folder)
        specs[kind] = spec
    return specs


def _clips(seconds=2.5, seed=0):
    """A tone with noise, a chord and near-silence: what the filterbank must agree on."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return {
        "tone+noise": 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t)),
        "chord": sum(0.2 * np.sin(2 * np.pi * f * t + p) for f, p in ((220, 0), (277, 1), (330, 2))),
        "quiet": 1e-4 * rng.standard_normal(len(t)),
    }


@pytest.mark.parametrize("clip", ["tone+noise", "chord", "quiet"])
def test_the_differentiable_ast_filterbank_is_the_feature_extractors(clip):
    extractor = ASTFeatureExtractor(sampling_rate=SR, num_mel_bins=64, max_length=AST_FRAMES)
    x = _clips()[clip].astype(np.float32)
    want = extractor(x, sampling_rate=SR, return_tensors="np")["input_values"][0]
    filters, window = ast_filterbank(64, SR)
    got = ast_fbank(torch.from_numpy(x), filters.float(), window.float())[:AST_FRAMES]
    got = (got - extractor.mean) / (2 * extractor.std)
    assert got.shape == want.shape == (AST_FRAMES, 64)
    assert float(np.abs(got.numpy() - want).max()) <= 1e-3 * float(want.max() - want.min())


def test_the_ast_system_pads_a_short_chunk_as_the_extractor_does(checkpoints):
    system = load_system(checkpoints["ast"])
    x = _clips(seconds=1.2)["chord"].astype(np.float32)
    extractor = ASTFeatureExtractor.from_pretrained(checkpoints["ast"][3:])
    want = extractor(x, sampling_rate=SR, return_tensors="np")["input_values"][0]
    got = system.features(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= 1e-3 * float(want.max() - want.min())


def test_a_waveform_model_hears_the_extractors_normalised_samples(checkpoints):
    system = load_system(checkpoints["hubert"])
    x = (0.3 + _clips()["tone+noise"]).astype(np.float32)  # an offset, so the mean matters
    want = Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True)(x, sampling_rate=SR, return_tensors="np")
    got = system.features(torch.from_numpy(x)).numpy()
    assert float(np.abs(got - want["input_values"][0]).max()) < 1e-4


def test_labels_rate_and_chunk_come_from_the_checkpoint(checkpoints, hf_cache):
    hubert, ast = load_system(checkpoints["hubert"]), load_system(checkpoints["ast"])
    assert hubert.labels == ast.labels == hf_cache.labels
    assert hubert.stft.sr == ast.stft.sr == SR
    assert hubert.chunk_samples == CHUNK_S * SR
    assert ast.chunk_samples == 400 + 160 * (AST_FRAMES - 1)


def test_chunks_cover_the_recording_and_a_short_tail_is_left_out():
    assert chunk_bounds(25, 10) == [(0, 10), (10, 20), (20, 25)]
    assert chunk_bounds(24, 10) == [(0, 10), (10, 20)]
    assert chunk_bounds(3, 10) == [(0, 3)]


def test_a_recording_is_labelled_by_the_mean_of_its_chunk_posteriors(checkpoints, hf_cache):
    """Eq. 3-4 over chunks: 162 hops (5.18 s) at 2 s chunks is two whole chunks and a 1.18 s tail."""
    system = load_system(checkpoints["hubert"])
    x = hf_cache.signal(hf_cache.split("test")[0])[: 162 * system.stft.hop]
    pred = system.predict(None, x)
    with torch.no_grad():
        alone = [torch.softmax(system(system.features(torch.from_numpy(x[a:b]))[None]), -1)[0]
                 for a, b in ((0, 2 * SR), (2 * SR, 4 * SR), (4 * SR, len(x)))]
    mean = torch.stack(alone).mean(0)
    assert pred.n_elements == 3
    assert np.allclose([pred.confidence[lab] for lab in system.labels], mean.numpy(), atol=1e-5)


@pytest.mark.parametrize("kind", ["hubert", "ast"])
def test_the_attacked_magnitudes_reach_the_model_through_the_inverse_stft(kind, checkpoints, hf_cache):
    system = load_system(checkpoints[kind])
    y = torch.from_numpy(hf_cache.signal(hf_cache.split("test")[0]))
    spec = stft(y, system.stft)
    mags = spec.abs().requires_grad_(True)
    from_mags = system.logits(mags, unit_phase(spec))
    from_signal = system.posteriors(None, y.numpy())  # how a recording is labelled
    assert from_mags.shape == from_signal.shape == (3, len(system.labels))
    assert float((torch.softmax(from_mags.detach(), -1) - torch.from_numpy(from_signal)).abs().max()) < 1e-4
    from_mags[:, 0].sum().backward()
    assert float(mags.grad.abs().sum()) > 0


@pytest.mark.parametrize("kind", ["hubert", "ast"])
def test_fine_tuned_models_are_tested_attacked_classified_and_curved(kind, checkpoints, hf_cache, tmp_path, capsys):
    spec, snr = checkpoints[kind], 15
    cli.main(["test", spec, "--cache", str(hf_cache.path), "--out", str(tmp_path / "test")])
    fom = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert fom["normalised_accuracy"] >= 0.6 and fom["binomial_p"] < 1e-3, fom["normalised_accuracy"]

    out = tmp_path / "attack"
    cli.main(["attack", spec, "--split", "test", "--cache", str(hf_cache.path), "--limit", "12", "--policy", "random",
              "--snr", str(snr), "--out", str(out), "--quiet", "--no-report", "--device", "cpu"])
    m = json.loads((out / "metrics.json").read_text())
    assert json.loads((out / "run.json").read_text())["model"] == spec
    assert m["n_examples"] == 12
    assert m["success_rate"] >= 0.9, m["failed"]  # judged on the written files, decoded and classified again
    assert m["snr_wave_db"]["min"] >= snr - 1e-6
    capsys.readouterr()
    first = json.loads(sorted((out / "examples").glob("*.json"))[0].read_text())
    cli.main(["classify", spec, str(out / first["wav"]), "--json", "--device", "cpu"])
    assert json.loads(capsys.readouterr().out)["label"] == first["decoded_label"]

    curve_dir = tmp_path / "curve"
    cli.main(["robustness", spec, "--cache", str(hf_cache.path), "--limit", "4", "--snr", f"40,{snr}",
              "--out", str(curve_dir), "--quiet"])
    curve = json.loads((curve_dir / "metrics.json").read_text())
    assert [row["snr_db"] for row in curve["curve"]] == [40.0, float(snr)] and (curve_dir / "curve.png").exists()
    assert curve["curve"][-1]["success_rate"] >= 0.75


def test_a_folder_that_is_no_checkpoint_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    done = run_musadv("classify", f"hf:{tmp_path / 'empty'}", str(tmp_path / "x.wav"))
    assert done.returncode == 1
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "cannot be loaded as a Hugging Face audio classifier" in err[0]


def test_a_pickled_checkpoint_is_refused(checkpoints, tmp_path, capsys):
    """A pytorch_model.bin is a pickle: loading it could run code, so only safetensors are read."""
    model = load_system(checkpoints["hubert"]).model
    folder = tmp_path / "pickled"
    model.save_pretrained(folder)
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=SR)
    extractor.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    capsys.readouterr()
    done = run_musadv("classify", f"hf:{folder}", str(tmp_path / "x.wav"))
    assert done.returncode == 1
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and str(folder) in err[0]


def test_without_transformers_the_error_says_what_to_install(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name, *a))
    done = run_musadv("classify", f"hf:{tmp_path}", str(tmp_path / "x.wav"))
    assert done.returncode == 1
    assert "musadv[hf]" in done.stderr


@pytest.mark.parametrize("kind", ["hubert", "ast"])
def test_several_recordings_are_judged_in_one_pass_as_each_alone(kind, checkpoints, hf_cache):
    """attack --batch: the whole chunks of every recording go through the model together."""
    system = load_system(checkpoints[kind])
    ys = [torch.from_numpy(hf_cache.signal(e)) for e in hf_cache.split("test")[:3]]
    ys[1] = ys[1][: int(5.2 * SR)]  # other chunks: two whole and a 1.2 s tail
    specs = [stft(y, system.stft) for y in ys]
    with torch.no_grad():
        many = system.logits_many([s.abs() for s in specs], [unit_phase(s) for s in specs])
        alone = [system.logits(s.abs(), unit_phase(s)) for s in specs]
    assert [len(m) for m in many] == [len(a) for a in alone] == [3, 3, 3]
    for m, a in zip(many, alone):
        assert float((m - a).abs().max()) < 1e-4


def test_a_model_whose_features_musadv_cannot_differentiate_is_refused_in_one_line(tmp_path, capsys):
    """Whisper's feature extractor computes its log-mel in NumPy: no gradient would reach the audio."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForAudioClassification

    config = WhisperConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_labels=3)
    WhisperForAudioClassification(config).save_pretrained(tmp_path / "whisper")
    WhisperFeatureExtractor().save_pretrained(tmp_path / "whisper")
    capsys.readouterr()
    done = run_musadv("classify", f"hf:{tmp_path / 'whisper'}", str(tmp_path / "x.wav"))
    assert done.returncode == 1
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "WhisperFeatureExtractor is not one musadv can differentiate" in err[0]


def test_a_fine_tuned_model_is_judged(checkpoints, hf_cache, tmp_path):
    plan = {"budgets_db": [20], "policies": ["all_wrong"], "max_iter": 10, "max_queries": 42, "controls": False}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    spec = checkpoints["hubert"]
    # Three test recordings it gets right (labelled by their folders): the first three of the split may all be
    # of a style the tiny model misses, and nothing would be left to attack.
    system = load_system(spec)
    right = [hf_cache.source(e) for e in hf_cache.split("test") if classify_file(system, hf_cache.source(e)).label == e.label]
    assert len(right) >= 3
    cli.main(["judge", spec, *map(str, right[:3]), "--plan", str(tmp_path / "plan.json"), "--out", str(tmp_path / "j"),
              "--quiet"])
    e = json.loads((tmp_path / "j" / "evaluation.json").read_text())
    assert e["model"]["name"] == spec and e["gradient_check"]["problems"] == []
    robust = e["robust"][0]
    assert robust["fooled_by_gradient"] >= 1 and robust["normalised_accuracy"] < e["clean"]["normalised_accuracy"]

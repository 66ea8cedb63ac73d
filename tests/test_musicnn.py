"""musadv.musicnn and musadv.taggers: musicnn's published taggers, rebuilt in PyTorch, say what the authors'
TensorFlow code says; they classify any file, are attacked (a label, an added tag, a removed tag) and, made
genre systems by a tag map, are tested and attacked on real GTZAN clips like any system."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musadv import audio, cli
from musadv import musicnn as mn
from musadv.attack import AttackConfig, attack
from musadv.errors import MusadvError
from musadv.models import ModelError
from musadv.spectral import magnitude
from musadv.systems import load_system
from musadv.taggers import GTZAN_MSD, TAG_THRESHOLD
from musadv.tfcheckpoint import read_checkpoint
from musadv.transforms import mp3_available

from .conftest import GTZAN_MINI, run_musadv

DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "musicnn_reference.json").read_text())
CLIPS = {"synth": DATA / "musicnn-synth.wav", "gtzan:metal/metal.00000.wav": GTZAN_MINI / "metal" / "metal.00000.wav"}


def _taggram(model, path):
    y, _ = audio.load(path, sr=model.stft.sr)
    return model.posteriors(magnitude(y, model.stft))


@pytest.mark.parametrize("name", sorted(mn.MODELS))
@pytest.mark.parametrize("clip", sorted(CLIPS))
def test_tag_likelihoods_match_the_original_tensorflow_package(name, clip):
    """scripts/musicnn_reference.py ran musicnn 0.1.0's own extractor (TensorFlow) on these clips."""
    ref = REFERENCE["clips"][clip][name]
    model = load_system(f"musicnn:{name}")
    assert model.labels == ref["tags"]
    taggram = _taggram(model, CLIPS[clip])
    assert taggram.shape == np.shape(ref["taggram"])  # the package's patches: 3 s, no overlap, the tail dropped
    assert np.abs(taggram - np.array(ref["taggram"])).max() <= 1e-3


@pytest.mark.parametrize("name, tensor, axes", [("MSD_musicnn", "conv2d_6/kernel", (0, 3, 2, 1)),
                                                ("MTT_vgg", "3CNN/kernel", (0, 1, 3, 2))])
def test_one_transposed_weight_tensor_is_caught_by_the_reference(name, tensor, axes, monkeypatch):
    tensors = read_checkpoint(f"{mn.weights_dir() / name}/")
    tensors[tensor] = np.ascontiguousarray(tensors[tensor].transpose(axes))  # same shape, inputs and outputs swapped
    monkeypatch.setattr(mn, "read_checkpoint", lambda prefix: tensors)
    clip = "gtzan:metal/metal.00000.wav"
    taggram = _taggram(mn.load_musicnn(name), CLIPS[clip])
    assert np.abs(taggram - np.array(REFERENCE["clips"][clip][name]["taggram"])).max() > 1e-3


def test_the_evaluation_shortcut_of_a_front_end_block_is_the_block_itself():
    """Max over frequency before ReLU and batch norm: the same values, also for negative batch-norm scales."""
    torch.manual_seed(0)
    net = mn.Musicnn().eval()
    conv, norm = net.timbral[0], net.timbral_norm[0]
    with torch.no_grad():
        norm.weight.copy_(torch.randn(norm.weight.shape))  # about half negative
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
    x = torch.randn(3, 1, 50, mn.N_MELS)
    direct = norm(torch.relu(conv(x))).amax(-1)
    assert (norm.weight < 0).sum() > 50
    assert torch.allclose(net._block(conv, norm, x), direct, atol=1e-6)


def test_without_the_package_one_line_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(mn.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps musicnn==0\.1\.0") as info:
        load_system("musicnn:MSD_musicnn")
    assert "\n" not in str(info.value)


def _cli(*args):
    cli.main(list(map(str, args)))


def test_classify_prints_tags_of_a_stereo_44k_mp3_and_a_four_minute_8k_wav(tmp_path, capsys):
    y, sr = audio.load(GTZAN_MINI / "jazz" / "jazz.00000.wav", sr=None)
    long = tmp_path / "long-8k.wav"
    y8 = audio.conform(y[None], sr, 8000)[: 8000 * 30]
    sf.write(long, np.tile(y8, 8), 8000, subtype="PCM_16")  # 240 s
    files = [long]
    if mp3_available():
        stereo = audio.conform(np.stack([y, 0.8 * y]), sr, 44100)
        sf.write(tmp_path / "stereo-44k.mp3", stereo.T, 44100)
        files.append(tmp_path / "stereo-44k.mp3")
    _cli("classify", "musicnn:MSD_musicnn", *files)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(files)
    for line in lines:
        assert "(tags: " in line and "... 40 more)" in line  # the 10 most likely of 50
    _cli("classify", "musicnn:MSD_musicnn", long, "--json")
    pred = json.loads(capsys.readouterr().out)
    assert pred["n_elements"] == (1 + 240 * 16000 // 256) // mn.PATCH_FRAMES  # every whole 3 s patch
    assert pred["label"] == max(pred["confidence"], key=pred["confidence"].get)


def test_a_tagger_gains_and_loses_a_tag_at_15_db():
    """On 10 GTZAN excerpts (one per genre): add the most likely absent tag, remove the most likely present one
    (or the top tag, when none reaches 0.5), judged on the written 16-bit signal."""
    model = load_system("musicnn:MSD_musicnn")
    added = removed = 0
    for genre in sorted(p.name for p in GTZAN_MINI.iterdir()):
        y, _ = audio.load(GTZAN_MINI / genre / f"{genre}.00001.wav", sr=model.stft.sr, duration=6.0)
        conf = model.predict(magnitude(y, model.stft)).confidence
        ranked = sorted(conf, key=conf.get, reverse=True)
        absent = next(t for t in ranked if conf[t] < TAG_THRESHOLD)
        result = attack(model, y, absent, AttackConfig(snr_db=15, goal="add", max_iter=30))
        added += result.success and result.confidence_after[absent] >= TAG_THRESHOLD
        if conf[ranked[0]] >= TAG_THRESHOLD:
            present = ranked[0]
            result = attack(model, y, present, AttackConfig(snr_db=15, goal="remove", max_iter=30))
            removed += result.success and result.confidence_after[present] < TAG_THRESHOLD
        else:
            removed += 1  # nothing on to remove: the goal holds already
        assert result.snr_wave_db >= 15 - 1e-6
    assert added >= 9 and removed >= 9


def test_goals_for_tags_are_refused_for_a_classifier(trained_dnn):
    with pytest.raises(MusadvError, match="for taggers"):
        attack(trained_dnn, np.zeros(22050, np.float32), trained_dnn.labels[0], AttackConfig(goal="add"))


@pytest.fixture(scope="module")
def gtzan_covered(tmp_path_factory):
    """A 6 s cache of GTZAN excerpts as musicnn analyses them: two clips of each MSD-covered genre and one of
    each uncovered genre, every one in the test split."""
    root = tmp_path_factory.mktemp("gtzan")
    for genre, tag in GTZAN_MSD.items():
        (root / "data" / genre).mkdir(parents=True)
        for i in (0, 1) if tag else (0,):
            (root / "data" / genre / f"{genre}.0000{i}.wav").symlink_to(GTZAN_MINI / genre / f"{genre}.0000{i}.wav")
    _cli("prepare", root / "data", "--fractions", "0,0,1", "--like", "musicnn:MSD_musicnn", "--duration", 6,
         "--out", root / "cache", "--jobs", 1, "--quiet")
    return root / "cache"


def test_a_genre_system_from_msd_tags_is_tested_on_the_genres_it_covers(gtzan_covered, tmp_path, capsys):
    model = load_system("musicnn:MSD_musicnn:gtzan")
    assert model.labels == [g for g, t in GTZAN_MSD.items() if t]
    assert set(model.uncovered_labels) == {"classical", "disco", "reggae"}
    _cli("test", "musicnn:MSD_musicnn:gtzan", "--cache", gtzan_covered, "--out", tmp_path / "test")
    fom = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert fom["n"] == 14 and fom["left_out"]["recordings"] == 3
    assert "left out: 3 recordings" in capsys.readouterr().out
    predictions = (tmp_path / "test" / "predictions.csv").read_text()
    assert "classical" not in predictions.split("\n", 1)[1]


def test_a_tag_map_that_names_a_missing_tag_or_leaves_a_label_out_is_refused(gtzan_covered, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"blues": "blues", "polka": "oompah"}))
    with pytest.raises(ModelError, match=r"tags \['oompah'\]"):
        load_system(f"musicnn:MSD_musicnn:{bad}")
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"blues": "blues", "jazz": "jazz"}))  # says nothing of the other genres
    done = run_musadv("test", f"musicnn:MSD_musicnn:{partial}", "--cache", gtzan_covered, "--out", tmp_path / "t")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_random_targets_on_gtzan_excerpts_are_reached_at_15_db_on_the_written_files(gtzan_covered, tmp_path):
    out = tmp_path / "attack"
    _cli("attack", "musicnn:MSD_musicnn:gtzan", "--split", "test", "--cache", gtzan_covered, "--policy", "random",
         "--snr", 15, "--max-iter", 30, "--out", out, "--quiet", "--no-report", "--jobs", 1)
    m = json.loads((out / "metrics.json").read_text())
    run = json.loads((out / "run.json").read_text())
    assert run["model"] == "musicnn:MSD_musicnn:gtzan" and len(run["recordings"]) == 14  # uncovered genres left out
    assert m["n_examples"] == 14 and m["success_rate"] >= 0.9, m["failed"]
    assert m["snr_wave_db"]["min"] >= 15 - 1e-6
    assert not math.isnan(m["normalised_accuracy_before"])


def test_horse_tests_and_survival_of_a_genre_system_report_the_tags_each_change_turns_on_and_off(gtzan_covered,
                                                                                                 tmp_path):
    _cli("horse", "musicnn:MSD_musicnn:gtzan", "--cache", gtzan_covered, "--transform", "gain", "--trials", 2,
         "--limit", 4, "--out", tmp_path / "horse", "--quiet", "--jobs", 1)
    horse = json.loads((tmp_path / "horse" / "horse.json").read_text())["results"]
    assert horse["tags"]["n"] == 8  # every draw of every recording
    rows = (tmp_path / "horse" / "horse.csv").read_text().splitlines()
    assert "tags_gained" in rows[0] and len(rows) == 9
    run = tmp_path / "attack"
    _cli("attack", "musicnn:MSD_musicnn:gtzan", "--split", "test", "--cache", gtzan_covered, "--policy", "all_wrong",
         "--limit", 2, "--max-iter", 30, "--out", run, "--quiet", "--no-report", "--jobs", 1)
    _cli("survive", run, "--transform", "lowpass", "--quiet", "--jobs", 1)
    survival = json.loads((run / "survive-lowpass" / "survive.json").read_text())["results"]
    assert survival["tags"]["n"] == 2
    # The example's likelihoods before the change are those its attack run judged on the written file.
    for r in map(json.loads, (p.read_text() for p in (run / "survive-lowpass" / "examples").glob("*.json"))):
        assert r["likelihoods_before"][r["target"]] == pytest.approx(
            json.loads((run / "examples" / f"{r['example']}.json").read_text())["decoded_confidence"][r["target"]],
            abs=1e-6)


def test_robustness_and_rescore_take_a_genre_system_too(gtzan_covered, tmp_path):
    curve_dir = tmp_path / "curve"
    _cli("robustness", "musicnn:MSD_musicnn:gtzan", "--cache", gtzan_covered, "--limit", 2, "--snr", "40,20",
         "--max-iter", 20, "--out", curve_dir, "--quiet", "--jobs", 1)
    curve = json.loads((curve_dir / "metrics.json").read_text())
    assert [row["snr_db"] for row in curve["curve"]] == [40.0, 20.0] and curve["curve"][0]["n"] == 2
    run = tmp_path / "attack"
    _cli("attack", "musicnn:MSD_musicnn:gtzan", "--split", "test", "--cache", gtzan_covered, "--policy", "all_wrong",
         "--limit", 2, "--max-iter", 20, "--out", run, "--quiet", "--no-report", "--jobs", 1)
    # Another tagger's genre system judges the same files: its own labels, MSD's adversaries.
    _cli("rescore", run, "musicnn:MTT_musicnn:gtzan", "--out", tmp_path / "rescore")
    rows = (tmp_path / "rescore" / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("example,file,true,goal,target")


def test_a_genre_system_from_tags_is_judged_on_the_genres_it_covers(gtzan_covered, tmp_path):
    plan = {"budgets_db": [30], "policies": ["all_wrong"], "max_iter": 5, "max_queries": 21, "controls": False}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    _cli("judge", "musicnn:MSD_musicnn:gtzan", "--cache", gtzan_covered, "--limit", 3, "--plan", tmp_path / "plan.json",
         "--out", tmp_path / "j", "--quiet")
    e = json.loads((tmp_path / "j" / "evaluation.json").read_text())
    assert e["model"]["name"] == "musicnn:MSD_musicnn:gtzan" and e["model"]["kind"] == "TorchClassifier"
    # Recordings of genres without a tag are left out of the judgement, not counted as wrong.
    assert len(e["data"]["recordings"]) == 3 and not any(r.startswith(("classical", "disco", "reggae"))
                                                         for r in e["data"]["recordings"])
    assert e["robust"][0]["snr_db"] == 30.0 and e["clean"]["n"] == 3

"""musadv.cli: every command has --help; the built-in data goes through partition and prepare; errors are one line."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from musadv.cli import cli

from .conftest import run_musadv

COMMANDS = ["make-data", "partition", "prepare", "train", "classify", "test", "attack", "train-forest",
            "train-baseline", "rescore", "robustness", "horse", "survive", "report", "demo", "experiment", "experiment table1", "experiment table3", "experiment musicnn"]


_run = run_musadv


@pytest.mark.parametrize("command", [[]] + [c.split() for c in COMMANDS])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(args=[*command, "--help"], prog_name="musadv")
    assert info.value.code == 0
    assert "Usage: musadv" in capsys.readouterr().out


def test_builtin_data_partition_and_prepare(tmp_path):
    data, part, out = tmp_path / "data", tmp_path / "p.json", tmp_path / "cache"
    assert _run("make-data", data, "--clips", 3, "--duration", 2).returncode == 0
    r = _run("partition", data, "--method", "artist", "--artists", data / "artists.csv",
             "--fractions", "0.34,0.33,0.33", "--out", part)
    assert r.returncode == 0, r.stderr
    r = _run("prepare", data, "--partition", part, "--out", out, "--jobs", 2, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "18 recordings cached" in r.stdout
    index = json.loads((out / "index.json").read_text())
    assert len(index["entries"]) == 18
    kf = _run("partition", data, "--method", "kfold", "-k", 3, "--out", tmp_path / "k.json")
    assert kf.returncode == 0 and (tmp_path / "k-fold2.json").exists()


def test_input_errors_are_one_line_without_traceback(tmp_path):
    r = _run("partition", tmp_path, "--out", tmp_path / "p.json")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error:")
    assert "Traceback" not in r.stderr
    r = _run("prepare", "--out", tmp_path / "c")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_prepare_reports_skipped_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.wav").write_bytes(b"RIFF....WAVE")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "empty.au").write_bytes(b"")
    r = _run("prepare", tmp_path, "--fractions", "1,0,0", "--out", tmp_path / "c", "--quiet")
    assert r.returncode == 1
    assert "2 of 2 recordings could not be cached" in r.stderr and "broken.wav" in r.stderr and "Traceback" not in r.stderr


def test_train_test_and_classify_from_the_command_line(learn_cache, tmp_path):
    model = tmp_path / "dnn"
    r = _run("train", learn_cache.path, "--arch", "dnn", "--units", 50, "--epochs", 3, "--batch-size", 256,
             "--out", model, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "epoch   2" in r.stderr and (model / "model.safetensors").exists()
    r = _run("train", learn_cache.path, "--epochs", 3, "--out", model, "--quiet")
    assert r.returncode == 1 and "--resume" in r.stderr and "Traceback" not in r.stderr
    r = _run("train", learn_cache.path, "--units", 16, "--epochs", 3, "--lr", "1e10", "--out", tmp_path / "diverged", "--quiet")
    assert r.returncode == 1 and "training diverged in epoch 0" in r.stderr.splitlines()[-1], r.stderr
    r = _run("test", model, "--split", "test")
    assert r.returncode == 0, r.stderr
    assert "normalised accuracy" in r.stdout and (model / "test-test" / "metrics.json").exists()
    good = learn_cache.source(learn_cache.split("test")[0])
    (tmp_path / "bad.wav").write_bytes(b"garbage")
    r = _run("classify", model, good, tmp_path / "bad.wav", "--json")
    assert r.returncode == 1
    lines = [json.loads(l) for l in r.stdout.splitlines()]
    assert lines[0]["label"] in learn_cache.labels and abs(sum(lines[0]["confidence"].values()) - 1) < 1e-4
    assert "bad.wav" in lines[1]["error"] and "Traceback" not in r.stderr


def test_attack_a_file_and_a_split_from_the_command_line(trained_dnn, learn_cache, tmp_path):
    song = learn_cache.source(learn_cache.split("test")[0])
    r = _run("attack", trained_dnn.path, song, "--target", "techno", "--out", tmp_path / "one", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "1 examples, success" in r.stdout and len(list((tmp_path / "one" / "examples").glob("*.wav"))) == 1
    r = _run("attack", trained_dnn.path, "--split", "test", "--limit", 3, "--policy", "all_wrong",
             "--max-iter", 10, "--out", tmp_path / "split", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "normalised accuracy" in r.stdout
    r = _run("attack", trained_dnn.path, song, "--out", tmp_path / "x")
    assert r.returncode == 2 and "--target" in r.stderr
    r = _run("attack", trained_dnn.path, song, "--target", "techno", "--minimize", "--out", tmp_path / "min", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "minimal perturbations: median SNR" in r.stdout
    r = _run("attack", trained_dnn.path, song, "--target", "techno", "--minimize", "--order", "paper", "--out", tmp_path / "p")
    assert r.returncode == 2 and "--minimize" in r.stderr


def test_a_stereo_44k_ogg_comes_back_stereo_at_44k_and_classify_gives_the_target(trained_dnn, tmp_path):
    """With default options the example keeps the user's rate and channels; the SNR is against the user's file."""
    from musadv import audio, synth

    y = synth.render("rock", seed=11, duration=3.0, sr=44100)
    import soundfile as sf

    sf.write(tmp_path / "song.ogg", np.stack([y, 0.7 * y], 1), 44100, format="OGG", subtype="VORBIS")
    before = _run("classify", trained_dnn.path, tmp_path / "song.ogg", "--json")
    target = next(lab for lab in trained_dnn.labels if lab != json.loads(before.stdout)["label"])
    # Bytes, not text: text mode would turn a progress bar's carriage returns into newlines.
    r = subprocess.run([sys.executable, "-m", "musadv.cli", "attack", str(trained_dnn.path), str(tmp_path / "song.ogg"),
                        "--target", target, "--out", str(tmp_path / "run")], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert b"\r" not in r.stderr  # no progress-bar redraws when the output is not a terminal
    wav = next((tmp_path / "run" / "examples").glob("*.wav"))
    info = sf.info(wav)
    assert (info.samplerate, info.channels) == (44100, 2)
    c = _run("classify", trained_dnn.path, wav, "--json")
    assert json.loads(c.stdout)["label"] == target
    row = next(csv.DictReader(open(tmp_path / "run" / "results.csv")))
    original, _ = audio.decode(tmp_path / "song.ogg")
    written, _ = audio.decode(wav)
    assert float(row["snr_wave_db"]) == pytest.approx(20 * np.log10(np.linalg.norm(original) / np.linalg.norm(written - original)), abs=1e-3)
    assert float(row["snr_wave_db"]) >= 15.0 and row["success"] == row["success_in_memory"] == "1"


def test_robustness_from_the_command_line(trained_dnn, tmp_path):
    out = tmp_path / "curve"
    r = _run("robustness", trained_dnn.path, "--limit", 2, "--snr", "30,15", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "SNR  adversary  white  shaped  random-phase" in r.stdout
    assert (out / "curve.csv").exists() and "Robustness" in (out / "report.html").read_text()
    r = _run("robustness", trained_dnn.path, "--snr", "30,x", "--out", tmp_path / "bad")
    assert r.returncode == 2 and "--snr" in r.stderr


def test_horse_and_survive_from_the_command_line(trained_dnn, learn_cache, tmp_path):
    out = tmp_path / "horse"
    r = _run("horse", trained_dnn.path, "--transform", "gain", "--max-db", "3", "--trials", 3, "--limit", 2, "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "random level change within +-3 dB" in r.stdout and "normalised accuracy  clean" in r.stdout
    settings = json.loads((out / "horse.json").read_text())
    assert settings["transformation"] == {"kind": "gain", "max_db": 3.0} and settings["results"]["n_recordings"] == 2
    assert "Horse test" in (out / "report.html").read_text()
    r = _run("horse", trained_dnn.path, "--transform", "stretch", "--max-rate-change", 2, "--out", tmp_path / "bad")
    assert r.returncode == 2 and "max_rate_change" in r.stderr
    from musadv.attack import AttackConfig
    from musadv.runs import recordings_from_split, run_attacks

    run = tmp_path / "run"
    run_attacks(trained_dnn, recordings_from_split(learn_cache, "test", limit=2), "all_wrong", run, AttackConfig(snr_db=15.0),
                progress=False)
    r = _run("survive", run, "--transform", "lowpass", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "order-4 Butterworth low-pass at 9000 Hz" in r.stdout and "keep the target" in r.stdout
    assert "Survival" in (run / "survive-lowpass" / "report.html").read_text()


def _one_line_error(r, *words):
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith("error:") and r.stderr.strip().count("\n") == 0, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_a_run_with_inputs_that_fail_exits_1_and_says_how_many(trained_dnn, learn_cache, tmp_path):
    good = learn_cache.source(learn_cache.split("test")[0])
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio")
    out = tmp_path / "run"
    r = _run("attack", trained_dnn.path, good, tmp_path / "empty.wav", tmp_path / "text.wav", "--target", "techno",
             "--max-iter", 3, "--out", out, "--quiet", "--no-report")
    assert r.returncode == 1
    assert "1 examples" in r.stdout
    assert r.stderr.strip() == f"2 of 3 recordings could not be attacked: see {out / 'errors.csv'}"
    with open(out / "errors.csv") as fh:
        assert sorted(Path(e["file"]).name for e in csv.DictReader(fh)) == ["empty.wav", "text.wav"]
    assert json.loads((out / "metrics.json").read_text())["n_skipped"] == 2
    r = _run("attack", trained_dnn.path, tmp_path / "empty.wav", "--target", "techno", "--out", tmp_path / "none", "--quiet")
    assert r.returncode == 1 and "1 of 1 recordings could not be attacked" in r.stderr


def test_a_forest_attacked_through_queries_guided_by_its_network_from_the_command_line(trained_dnn, forest, learn_cache,
                                                                                         tmp_path):
    r = _run("attack", forest, "--split", "test", "--cache", learn_cache.path, "--limit", 2, "--policy", "all_wrong",
             "--stop", "label", "--black-box", "--surrogate", trained_dnn.path, "--out", tmp_path / "bb", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "queries per example: median" in r.stdout
    page = (tmp_path / "bb" / "report.html").read_text()
    assert "Each step from queries alone" in page and f"surrogate {Path(trained_dnn.path).resolve()}" in page
    median = json.loads((tmp_path / "bb" / "metrics.json").read_text())["queries"]["median"]
    assert f"{int(median)} queries per example (median" in page
    settings = json.loads((tmp_path / "bb" / "run.json").read_text())
    assert settings["attack"]["gradient"] == "queries"
    assert settings["attack"]["surrogate"]["model"] == str(Path(trained_dnn.path).resolve())
    traces = list(csv.DictReader(open(tmp_path / "bb" / "traces.csv")))
    assert traces and all(int(t["queries"]) >= 2 for t in traces)
    # Resuming with another surrogate would mix two attacks in one run.
    r = _run("attack", forest, "--split", "test", "--cache", learn_cache.path, "--limit", 2, "--policy", "all_wrong",
             "--stop", "label", "--black-box", "--out", tmp_path / "bb", "--quiet")
    _one_line_error(r, "attack setting surrogate")
    r = _run("attack", forest, "--split", "test", "--cache", learn_cache.path, "--surrogate", trained_dnn.path,
             "--out", tmp_path / "x")
    assert r.returncode == 2 and "--surrogate guides an attack through queries: give --black-box" in r.stderr
    r = _run("attack", forest, "--split", "test", "--cache", learn_cache.path, "--black-box", "--surrogate", forest,
             "--out", tmp_path / "x")
    _one_line_error(r, "has no gradient and no differentiable replica")
    assert not (tmp_path / "x").exists()


def test_settings_are_checked_before_any_work(trained_dnn, learn_cache, tmp_path):
    good = learn_cache.source(learn_cache.split("test")[0])
    r = _run("attack", trained_dnn.path, good, "--target", "polka", "--out", tmp_path / "polka")
    _one_line_error(r, "'polka' is not one of the model's labels")
    assert not (tmp_path / "polka").exists()
    for option in ("--snr", "--threshold", "--step-fraction"):
        for value in ("nan", "inf"):
            r = _run("attack", trained_dnn.path, good, "--target", "techno", option, value, "--out", tmp_path / "nan")
            assert r.returncode == 2 and "not a finite number" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "nan").exists()


def test_broken_model_files_are_refused_in_one_line(trained_dnn, learn_cache, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    good = learn_cache.source(learn_cache.split("test")[0])
    corrupt = tmp_path / "corrupt"
    shutil.copytree(trained_dnn.path, corrupt)
    (corrupt / "model.safetensors").write_bytes((corrupt / "model.safetensors").read_bytes()[:200])
    _one_line_error(_run("classify", corrupt, good), str(corrupt / "model.safetensors"), "cannot be read")
    nan = tmp_path / "nan"
    shutil.copytree(trained_dnn.path, nan)
    state = load_file(nan / "model.safetensors")
    name = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 2)
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, nan / "model.safetensors")
    _one_line_error(_run("attack", nan, good, "--target", "techno", "--out", tmp_path / "r"), "NaN or infinity", name)


def test_a_factory_that_raises_says_so_first_then_shows_its_traceback(tmp_path):
    (tmp_path / "broken_factory.py").write_text("def make():\n    raise RuntimeError('no weights here')\n")
    r = subprocess.run([sys.executable, "-m", "musadv.cli", "classify", "broken_factory:make", str(tmp_path / "x.wav")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1
    first, *rest = r.stderr.splitlines()
    assert first == "error: broken_factory:make: the factory raised RuntimeError: no weights here"
    assert "Traceback" in rest[0] and "raise RuntimeError" in r.stderr


def test_system_errors_are_one_line_naming_the_path(trained_dnn, learn_cache, tmp_path, monkeypatch, capsys):
    import errno

    from musadv import io
    from musadv.cli import main

    good = learn_cache.source(learn_cache.split("test")[0])
    (tmp_path / "file").write_text("")
    _one_line_error(_run("attack", trained_dnn.path, good, "--target", "techno", "--out", tmp_path / "file" / "run"),
                    str(tmp_path / "file"), "Not a directory")

    def fail(code):
        def write(self, data):
            raise OSError(code, os.strerror(code))
        return write

    import os

    for code, words in ((errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")):
        monkeypatch.setattr(io.Path, "write_bytes", fail(code))
        with pytest.raises(SystemExit) as info:
            main(["attack", str(trained_dnn.path), str(good), "--target", "techno", "--out", str(tmp_path / "full"),
                  "--quiet"])
        monkeypatch.undo()
        err = capsys.readouterr().err
        assert info.value.code == 1 and err.count("\n") == 1, err
        assert err.startswith(f"error: {tmp_path / 'full'}") and words in err, err


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, where this machine lets the tests mount one (root, with the capability)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_stops_the_run_in_one_line_a_rerun_with_room_finishes_it_and_read_only_is_one_line(trained_dnn, small_disk):
    out = small_disk / "run"
    args = ("attack", trained_dnn.path, "--split", "test", "--limit", 8, "--policy", "all_wrong", "--max-iter", 3,
            "--out", out, "--quiet", "--no-report")
    r = _run(*args)
    _one_line_error(r, "No space left on device", str(small_disk))
    kept = len(list((out / "examples").glob("*.json")))
    assert kept < 8
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    r = _run(*args)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "metrics.json").read_text())["n_examples"] == 8
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    _one_line_error(_run(*args), "Read-only file system", str(out))

"""musadv.robustness: accuracy under the adversary and under noise controls at each SNR, measured on what is written."""

import csv
import json

import numpy as np
import pytest

from musadv import audio, synth
from musadv.attack import AttackConfig, snr_db
from musadv.classify import classify_file
from musadv.errors import MusadvError
from musadv.robustness import CURVE_FIELDS, at_snr, random_phase, robustness_curve, shaped_noise, white_noise
from musadv.runs import recordings_from_split
from musadv.spectral import STFTConfig, magnitude
from musadv.systems import train_baseline


def _stereo_44k():
    y = synth.render("jazz", seed=4, duration=3.0, sr=44100)
    return audio.quantize_pcm16(np.stack([y, 0.6 * y]))


@pytest.mark.parametrize("level", [60.0, 30.0, 10.0])
def test_every_control_is_at_the_snr_it_claims_after_16_bit_rounding(level):
    x = _stereo_44k()
    rng = np.random.default_rng(0)
    change = np.zeros_like(x)
    change[:, 20000:30000] = 0.01 * rng.standard_normal((2, 10000))
    for noise in (white_noise(x, rng), shaped_noise(x, rng), random_phase(change, 44100, rng)):
        noisy = at_snr(x, noise, level)
        np.testing.assert_array_equal(noisy, audio.quantize_pcm16(noisy))  # as a 16-bit file holds it
        assert snr_db(x, noisy) == pytest.approx(level, abs=0.1)


def test_shaped_noise_has_the_recordings_spectrum_and_no_more_of_its_waveform():
    x = _stereo_44k()
    noise = shaped_noise(x, np.random.default_rng(1))
    np.testing.assert_allclose(np.abs(np.fft.rfft(noise)), np.abs(np.fft.rfft(x)), rtol=1e-3, atol=1e-3)
    # Random phase: over draws the noise is uncorrelated with the recording's waveform.
    draws = [np.corrcoef(shaped_noise(x, np.random.default_rng(s))[0], x[0])[0, 1] for s in range(20)]
    assert abs(np.mean(draws)) < 0.1


def test_random_phase_keeps_where_the_perturbations_energy_is_but_not_the_perturbation():
    sr = 22050
    t = np.arange(3 * sr) / sr
    change = (0.01 * np.sin(2 * np.pi * 8000 * t) * (t > 1) * (t < 2)).astype(np.float32)[None]
    control = random_phase(change, sr, np.random.default_rng(2))
    mags = magnitude(control[0], STFTConfig(sr=sr))
    freqs = np.arange(mags.shape[1]) * sr / 1024
    by_freq, by_time = (mags ** 2).sum(0), (mags ** 2).sum(1)
    assert by_freq[np.abs(freqs - 8000) < 300].sum() > 0.9 * by_freq.sum()  # same band
    frames_in = (np.arange(mags.shape[0]) * 512 / sr > 0.9) & (np.arange(mags.shape[0]) * 512 / sr < 2.1)
    assert by_time[frames_in].sum() > 0.9 * by_time.sum()  # same time span
    assert abs(np.corrcoef(control[0], change[0])[0, 1]) < 0.3  # not the perturbation itself


def test_silent_noise_cannot_be_scaled():
    with pytest.raises(ValueError, match="silent"):
        at_snr(np.ones((1, 100), np.float32), np.zeros((1, 100), np.float32), 20.0)


LEVELS = (45.0, 30.0, 15.0)


@pytest.fixture(scope="module")
def curve_run(trained_dnn, learn_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("curve")
    jobs = recordings_from_split(learn_cache, "test", limit=4)
    metrics = robustness_curve(trained_dnn, jobs, out, LEVELS, "all_wrong", progress=False)
    return out, jobs, metrics


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_the_curve_is_measured_on_the_written_examples(curve_run, trained_dnn):
    out, jobs, m = curve_run
    curve = _rows(out / "curve.csv")
    assert list(curve[0]) == CURVE_FIELDS and [float(r["snr_db"]) for r in curve] == list(LEVELS)
    assert (out / "curve.png").stat().st_size > 0
    results = _rows(out / "results.csv")
    assert len(results) == len(jobs) * len(LEVELS)
    for row in results:
        level = float(row["snr_db"])
        original, _ = audio.load(out / "originals" / (row["wav"].split("/")[1].rsplit("--", 1)[0] + ".wav"))
        adv, _ = audio.load(out / row["wav"])
        assert snr_db(original, adv) >= level - 0.01  # the example keeps its level's bound
        assert classify_file(trained_dnn, out / row["wav"]).label == row["label"]
        for kind in ("white_noise", "shaped_noise", "random_phase"):
            assert float(row[f"{kind}_snr_db"]) == pytest.approx(level, abs=0.1)
    low = [r for r in results if float(r["snr_db"]) == 15.0]
    assert m["curve"][-1]["success_rate"] == np.mean([r["label"] == r["target"] for r in low]) >= 0.75
    # all_wrong: a reached target is a wrong label; the accuracy under attack follows from the labels on disk.
    from musadv.evaluate import figures_of_merit

    expected = figures_of_merit([r["true"] for r in low], [r["label"] for r in low], trained_dnn.labels)
    assert m["curve"][-1]["adversary_accuracy"] == pytest.approx(expected["normalised_accuracy"])
    assert m["clean_accuracy"] > m["curve"][-1]["adversary_accuracy"]


def test_a_curve_resumes_and_refuses_other_settings(curve_run, trained_dnn):
    out, jobs, m = curve_run
    stamps = {p: p.stat().st_mtime_ns for p in (out / "recordings").glob("*.json")}
    again = robustness_curve(trained_dnn, jobs, out, LEVELS, "all_wrong", progress=False)
    assert again["curve"] == m["curve"]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    with pytest.raises(MusadvError, match="levels"):
        robustness_curve(trained_dnn, jobs, out, (40.0, 20.0), "all_wrong", progress=False)
    with pytest.raises(MusadvError, match="attack"):
        robustness_curve(trained_dnn, jobs, out, LEVELS, "all_wrong", AttackConfig(max_iter=3), progress=False)


def test_a_system_without_gradient_is_judged_on_a_networks_examples(curve_run, learn_cache, tmp_path):
    out, jobs, m = curve_run
    baseline = train_baseline(learn_cache, window=86, hop=43, progress=False)
    with pytest.raises(MusadvError, match="gives no gradient"):
        robustness_curve(baseline, jobs, tmp_path / "refused", LEVELS, progress=False)
    t = robustness_curve(baseline, jobs, tmp_path / "transfer", LEVELS, "all_wrong", examples_from=out, progress=False)
    ours = {(r["file"], r["snr_db"]): r for r in _rows(out / "results.csv")}
    for row in _rows(tmp_path / "transfer" / "results.csv"):
        theirs = ours[(row["file"], row["snr_db"])]
        assert row["target"] == theirs["target"] and row["wav"] == theirs["wav"]  # the network's examples
        assert classify_file(baseline, out / row["wav"]).label == row["label"]
    assert not (tmp_path / "transfer" / "examples").exists()
    assert t["clean_accuracy"] is not None and len(t["curve"]) == len(LEVELS)
    settings = json.loads((tmp_path / "transfer" / "robustness.json").read_text())
    assert settings["examples_from"] == str(out.resolve())


def test_the_perceptual_adversarys_curve_gives_the_noise_to_mask_ratio_of_its_written_examples(trained_dnn, tmp_path):
    from musadv import cli
    from musadv.psychoacoustics import noise_to_mask

    out = tmp_path / "masked"
    cli.main(["robustness", str(trained_dnn.path), "--snr", "30,15", "--masking", "3", "--max-iter", "20", "--limit", "2",
              "--out", str(out), "--quiet", "--jobs", "1"])
    results = _rows(out / "results.csv")
    assert len(results) == 4
    by_level = {}
    for row in results:
        original, sr = audio.decode(out / "originals" / (row["wav"].split("/")[1].rsplit("--", 1)[0] + ".wav"))
        written, _ = audio.decode(out / row["wav"])
        measured = noise_to_mask(original, written, sr)
        if row["nmr_db"]:
            assert float(row["nmr_db"]) == pytest.approx(measured["nmr_db"], abs=1e-9) and float(row["nmr_db"]) <= -2.0
        else:  # an unchanged example
            assert measured["nmr_db"] == -np.inf
        by_level.setdefault(float(row["snr_db"]), []).append(measured["nmr_db"])
    curve = {float(r["snr_db"]): r for r in _rows(out / "curve.csv")}
    for level, values in by_level.items():
        median = float(np.median(values))
        assert (curve[level]["adversary_nmr_db_median"] == "") if median == -np.inf else (
            float(curve[level]["adversary_nmr_db_median"]) == pytest.approx(median))
    assert "adversary's median NMR (dB)" in (out / "report.html").read_text()

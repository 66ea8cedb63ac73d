"""musadv.experiments: the reduced demo writes summary.json and the report, reproducibly and resumably."""

import csv
import json

import numpy as np
import pytest

from musadv.experiments import run_demo

SYSTEMS = {"dnn", "cdnn", "dnn_forest", "mfcc_baseline"}
ATTACK_KEYS = {"normalised_accuracy", "success_rate", "snr_db_mean", "snr_db_std", "snr_db_min"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, quick=True, progress=False, log=lambda m: None)


def test_quick_demo_writes_the_summary_contract_and_the_report(demo):
    out, summary = demo
    saved = json.loads((out / "summary.json").read_text())
    assert set(saved["systems"]) == SYSTEMS
    for name, s in saved["systems"].items():
        # Each system's figure is that of its own test run, recounted from the labels it wrote.
        rows = list(csv.DictReader(open(out / "models" / name / "test-test" / "predictions.csv")))
        recall = [np.mean([r["predicted"] == r["true"] for r in rows if r["true"] == lab]) for lab in {r["true"] for r in rows}]
        assert s["normalised_accuracy"] == pytest.approx(float(np.mean(recall)))
    for policy in ("random", "all_wrong"):
        assert ATTACK_KEYS <= set(saved["attacks"][policy])
    assert saved["attacks"]["random"]["success_rate"] >= 0.8  # judged on the decoded files
    assert saved["attacks"]["all_wrong"]["normalised_accuracy"] <= 0.3
    assert {"prepare", "train-dnn", "attack-random"} <= set(saved["seconds"])
    # Every system has a robustness curve (the feature systems on the DNN's examples) and a
    # median minimal SNR; the networks' from their minimal-perturbation runs.
    assert set(saved["robustness"]) == set(saved["median_minimal_snr_db"]) == SYSTEMS
    for name, curve in saved["robustness"].items():
        assert [row["snr_db"] for row in curve["curve"]] == [40.0, 20.0]
        assert (out / "robustness" / name / "curve.csv").exists() and (out / "robustness" / name / "curve.png").exists()
    assert saved["robustness"]["dnn_forest"]["transfer_from"] == "dnn"
    for name in ("dnn", "cdnn"):
        minimal = json.loads((out / "attacks" / f"{name}_minimal" / "metrics.json").read_text())["minimal"]
        assert saved["median_minimal_snr_db"][name]["median_snr_db"] == minimal["median_snr_db"]
    html = (out / "report.html").read_text()
    assert "<audio" in html and "Systems on the test split" in html
    assert html.count("<h2>Robustness: ") == 4
    for name in ("dnn", "cdnn"):  # the models stay usable by musadv classify and attack
        assert (out / "models" / name / "model.safetensors").exists()


def test_a_second_run_reuses_finished_stages_and_gives_the_same_numbers(demo):
    out, first = demo
    logs = []
    again = run_demo(out, quick=True, progress=False, log=logs.append, report=False)
    assert len(logs) >= 5 and all("earlier run" in line for line in logs)
    assert again["systems"] == first["systems"] and again["attacks"] == first["attacks"]
    assert again["robustness"] == first["robustness"]


def test_table3_quick_produces_all_four_rows(tmp_path):
    from musadv.experiments import run_table3

    rows = run_table3(tmp_path, quick=True, progress=False, log=lambda m: None)
    assert [r[0] for r in rows] == ["DNN", "DNN+ADV", "CDNN", "CDNN+ADV"]
    assert "examples that led to a misclassification" in (tmp_path / "table3.md").read_text()
    for r, folder in zip(rows, ("dnn", "dnn-adv", "cdnn", "cdnn-adv")):
        # Our columns are the attack runs' own figures; the SNR averages only the misclassified examples.
        results = list(csv.DictReader(open(tmp_path / "attacks" / folder / "results.csv")))
        metrics = json.loads((tmp_path / "attacks" / folder / "metrics.json").read_text())
        assert r[1] == f"{metrics['normalised_accuracy_before']:.2f}" and r[2] == f"{metrics['normalised_accuracy']:.2f}"
        wrong = [float(x["snr_wave_db"]) for x in results if x["decoded_label"] != x["true"] and x["snr_wave_db"]]
        assert r[3] == f"{np.mean(wrong):.1f} ± {np.std(wrong):.1f}"


def test_the_same_seed_gives_the_same_numbers_in_a_fresh_directory(demo, tmp_path):
    _, first = demo
    second = run_demo(tmp_path, quick=True, progress=False, log=lambda m: None, report=False)
    assert second["systems"] == first["systems"]
    for name, a in first["attacks"].items():  # everything but the timings
        b = second["attacks"][name]
        for key in ("normalised_accuracy", "success_rate", "snr_db_mean", "snr_db_min", "mean_iterations"):
            assert a.get(key) == b.get(key), (name, key)
    assert second["robustness"] == first["robustness"]
    assert second["median_minimal_snr_db"] == first["median_minimal_snr_db"]

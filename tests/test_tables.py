"""musadv.tables: the paper's Table III, our figures read from the attack runs they came from; Table III extended,
read from the judgements of each defence."""

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from musadv.attack import AttackConfig
from musadv.errors import MusadvError
from musadv.studies import DemoSettings
from musadv.judge import Plan, read_evaluation
from musadv.tables import DefenceSettings, defence_table, paired_larger_change, run_table3, run_table3_extended

from .conftest import ROOT, load_file

#: Its contract, not its figures: the least data, training and steps that give four systems their rows.
SMALL = replace(DemoSettings.for_data(True, True), clips=4, clip_seconds=4.0, dnn_epochs=10, cdnn_epochs=2,
                attack=AttackConfig(snr_db=15.0, max_iter=15), cdnn_attack_limit=3)


def test_table3_quick_produces_all_four_rows(tmp_path):
    rows = run_table3(tmp_path, quick=True, progress=False, log=lambda m: None, settings=SMALL)
    assert [r[0] for r in rows] == ["DNN", "DNN+ADV", "CDNN", "CDNN+ADV"]
    assert "examples that led to a misclassification" in (tmp_path / "table3.md").read_text()
    for r, folder in zip(rows, ("dnn", "dnn-adv", "cdnn", "cdnn-adv")):
        # Our columns are the attack runs' own figures; the SNR averages only the misclassified examples.
        results = list(csv.DictReader(open(tmp_path / "attacks" / folder / "results.csv")))
        metrics = json.loads((tmp_path / "attacks" / folder / "metrics.json").read_text())
        assert r[1] == f"{metrics['normalised_accuracy_before']:.2f}" and r[2] == f"{metrics['normalised_accuracy']:.2f}"
        wrong = [float(x["snr_wave_db"]) for x in results if x["decoded_label"] != x["true"] and x["snr_wave_db"]]
        assert r[3] == f"{np.mean(wrong):.1f} ± {np.std(wrong):.1f}"
    # Its stages keep their settings: a rerun into the folder with other training or attacks is refused, not mixed.
    for other in (replace(SMALL, dnn_epochs=11), replace(SMALL, attack=AttackConfig(snr_db=15.0, max_iter=16))):
        with pytest.raises(MusadvError, match="other settings"):
            run_table3(tmp_path, quick=True, progress=False, log=lambda m: None, settings=other)


def test_table3_extended_trains_judges_and_certifies_every_defence_and_reads_its_rows_from_the_judgements(tmp_path):
    settings = replace(SMALL, clips=8, dnn_units=32, dnn_epochs=20)
    plan = Plan("tiny", (30.0,), ("all_wrong",), max_iter=30, max_queries=40, controls=False, minimize=True)
    defences = DefenceSettings(archs=("dnn",), adv_snr_db=25.0, adv_steps=2, adv_epochs=6, smoothing_snr_db=20.0,
                               smoothing_copies=4, certify_n0=8, certify_n=30)
    summary = run_table3_extended(tmp_path, quick=True, progress=False, log=lambda m: None, plan=plan, settings=settings,
                                  defences=defences, report=False)
    names = ["dnn", "dnn_fgsm", "dnn_pgd", "dnn_trades", "dnn_smoothed"]
    assert list(summary["systems"]) == names
    # Each network trained as the settings say, and recorded so.
    trained = {name: json.loads((tmp_path / "models" / name / "model.json").read_text())["training"]["train"]
               for name in ("dnn_fgsm", "dnn_pgd", "dnn_trades", "dnn_noise")}
    assert (trained["dnn_pgd"]["adversarial"], trained["dnn_pgd"]["adv_snr_db"], trained["dnn_pgd"]["adv_steps"]) == ("pgd", 25.0, 2)
    assert trained["dnn_trades"]["adversarial"] == "trades" and trained["dnn_noise"]["noise_snr_db"] == 20.0
    # PGD and TRADES train for their own epochs; Alg. 2 and the noisy base for the plain network's.
    assert [trained[n]["max_epochs"] for n in ("dnn_fgsm", "dnn_pgd", "dnn_trades", "dnn_noise")] == [20, 6, 6, 20]
    rows = list(csv.DictReader(open(tmp_path / "table3-extended.csv")))
    assert [r["system"] for r in rows] == names
    base = read_evaluation(tmp_path / "judgements" / "dnn")
    recordings = base["data"]["recordings"]
    for r in rows:
        e = read_evaluation(tmp_path / "judgements" / r["system"])
        assert e["data"]["recordings"] == recordings  # one plan, the same recordings
        assert r["defence"] == (e["model"]["defence"] or "none")
        assert r["robust 30 dB"] == f"{e['robust'][0]['normalised_accuracy']:.2f}"
        mine, theirs = e["smallest_change"]["median_snr_db"], base["smallest_change"]["median_snr_db"]
        # A larger change is a lower SNR: the undefended network's median SNR minus this one's.
        assert r["larger than undefended by (dB)"] == ("—" if r["system"] == "dnn" else f"{theirs - mine:.1f}")
    assert rows[-1]["defence"] == "randomized smoothing at 20 dB, 4 copies, of a base trained with noise 20 dB below -20 dBFS"
    # The smoothed system is certified on every test recording.
    certificates = list(csv.DictReader(open(tmp_path / "certified" / "dnn_smoothed" / "certify.csv")))
    assert len(certificates) == len(recordings) == summary["certified"]["dnn_smoothed"]["n_recordings"]
    # A rerun reuses every stage and writes the same table.
    table = (tmp_path / "table3-extended.md").read_text()
    run_table3_extended(tmp_path, quick=True, progress=False, log=lambda m: None, plan=plan, settings=settings,
                        defences=defences, report=False)
    assert (tmp_path / "table3-extended.md").read_text() == table


def _judged(by_recording: dict, defence=None) -> dict:
    """An evaluation with only what the extended table reads: one budget, and smallest changes per recording."""
    reached = [v for v in by_recording.values() if v is not None]
    return {"model": {"defence": defence}, "clean": {"normalised_accuracy": 0.5},
            "robust": [{"policy": "all_wrong", "snr_db": 30.0, "normalised_accuracy": 0.1, "gap": 0.2}],
            "smallest_change": {"median_snr_db": float(np.median(reached)), "snr_db_by_recording": by_recording},
            "headline": {"verdict": "a horse"}}


def test_the_extended_table_compares_smallest_changes_on_the_recordings_both_systems_get_right():
    # The plain system's changes are quiet on a and b, loud on c, which the defended one gets wrong; d it did not reach.
    plain = _judged({"a": 40.0, "b": 38.0, "c": 20.0})
    defended = _judged({"a": 30.0, "b": 30.0, "d": None}, defence="pgd")
    header, rows = defence_table([("plain", plain, None), ("defended", defended, plain)])
    row = dict(zip(header, rows[1]))
    # The medians (38 and 30 dB) are over different recordings; paired over a and b it is 10 and 8 dB larger.
    assert row["larger than undefended by (dB)"] == "8.0"
    assert row["larger, paired: median (recordings)"] == "9.0 (2)"
    assert dict(zip(header, rows[0]))["larger, paired: median (recordings)"] == "—"
    assert paired_larger_change(defended, plain) == (9.0, 2)
    # An evaluation written before per-recording figures compares nothing rather than something wrong.
    del plain["smallest_change"]["snr_db_by_recording"]
    assert paired_larger_change(defended, plain) == (None, 0)


@pytest.mark.parametrize("marker, plain", [("table3-extended", "dnn"), ("table3-extended-cdnn", "cdnn")])
def test_each_defence_table_on_the_results_page_is_what_defence_table_writes_from_the_kept_entries(marker, plain):
    """A results page's Table III extended is scripts/defence_table.py's section of the undefended network's kept
    entry, every kept entry of a defended version of it (docs/leaderboard-gtzan-mini/PLAIN_*.json whose model
    records a defence: not dnn_forest) and the smoothed system's kept certificate: no figure was typed by hand, and
    an entry kept or judged again must be written to the page again."""
    script = load_file(ROOT / "scripts" / "defence_table.py")
    study_page = load_file(ROOT / "scripts" / "study_page.py")
    kept = ROOT / "docs" / "leaderboard-gtzan-mini"
    defended = [p for p in sorted(kept.glob(f"{plain}_*.json")) if read_evaluation(p)["model"].get("defence")]
    written = study_page.read_section(ROOT / "docs" / "results-gtzan-mini.md", marker)
    assert written == script.section([kept / f"{plain}.json", *defended], kept / f"{plain}.json",
                                     [kept / "certified" / f"{plain}_smoothed"])

"""musadv.tables: the paper's Table III, our figures read from the attack runs they came from."""

import csv
import json
from dataclasses import replace

import numpy as np

from musadv.attack import AttackConfig
from musadv.experiments import DemoSettings
from musadv.tables import run_table3

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

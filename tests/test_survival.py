"""musadv.survival: adversarial examples and their originals transformed alike, judged on the written files."""

import csv
import json

import numpy as np
import pytest

from musadv import audio
from musadv.attack import AttackConfig, snr_db
from musadv.classify import classify_file
from musadv.errors import MusadvError
from musadv.runs import recordings_from_split, run_attacks
from musadv.survival import survive
from musadv.transforms import Transformation


@pytest.fixture(scope="module")
def attack_run(trained_dnn, learn_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("attacked")
    run_attacks(trained_dnn, recordings_from_split(learn_cache, "test", limit=4), "all_wrong", out, AttackConfig(snr_db=15.0),
                progress=False)
    return out


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_an_unchanging_transformation_keeps_every_adversary_and_every_original(attack_run):
    m = survive(attack_run, Transformation("gain", max_db=0.0), attack_run / "same", progress=False)
    ran = json.loads((attack_run / "metrics.json").read_text())
    assert m["n_examples"] == ran["n_examples"] == 4
    assert m["n_adversarial"] == round(ran["success_rate"] * 4) >= 3
    assert m["survived"] == 1.0 and m["returned"] == 0.0 and m["original_kept"] == 1.0
    assert m["median_snr_db_after"] == pytest.approx(m["median_snr_db_before"], abs=1e-6)


def test_a_lowpass_is_applied_alike_and_every_figure_comes_from_the_written_files(attack_run, trained_dnn):
    out = attack_run / "survive-lowpass"
    m = survive(attack_run, Transformation("lowpass", cutoff_hz=3000.0), progress=False)
    rows = _rows(out / "survive.csv")
    assert len(rows) == 4
    for row in rows:
        record = json.loads((attack_run / "examples" / f"{row['example']}.json").read_text())
        example, sr = audio.decode(attack_run / record["wav"])
        written, _ = audio.decode(out / row["wav"])
        np.testing.assert_array_equal(written, audio.quantize_pcm16(
            Transformation("lowpass", cutoff_hz=3000.0).apply(example, sr, {"cutoff_hz": 3000.0, "order": 4})))
        original, _ = audio.decode(out / row["original_wav"])
        assert float(row["snr_db"]) == pytest.approx(snr_db(original, written), abs=1e-4)
        assert classify_file(trained_dnn, out / row["wav"]).label == row["label"]
        assert classify_file(trained_dnn, out / row["original_wav"]).label == row["original_label"]
        assert (row["survived"] == "True") == (row["label"] == row["target"])
    adversarial = [r for r in rows if r["adversarial"] == "True"]
    assert m["survived"] == pytest.approx(np.mean([r["label"] == r["target"] for r in adversarial]))
    assert m["returned"] == pytest.approx(np.mean([r["label"] == r["label_before"] for r in adversarial]))
    assert m["other"] == pytest.approx(np.mean([r["label"] not in (r["target"], r["label_before"]) for r in adversarial]))
    assert m["original_kept"] == pytest.approx(np.mean([r["original_label"] == r["label_before"] for r in rows]))


def test_a_random_transformation_draws_once_for_an_example_and_its_original(attack_run):
    out = attack_run / "eq"
    survive(attack_run, Transformation("eq"), out, seed=3, progress=False)
    gains = set()
    for p in (out / "examples").glob("*.json"):
        r = json.loads(p.read_text())
        record = json.loads((attack_run / "examples" / p.name).read_text())
        for kind, rel in (("original", record["original_wav"]), ("example", record["wav"])):
            source, sr = audio.decode(attack_run / rel)
            written, _ = audio.decode(out / r[f"{kind}_wav" if kind == "original" else "wav"])
            np.testing.assert_array_equal(written, audio.quantize_pcm16(Transformation("eq").apply(source, sr, r["params"])))
        gains.add(tuple(r["params"]["gains_db"]))
    assert len(gains) == 4  # one draw per example


def test_a_survival_run_resumes_and_refuses_other_settings(attack_run):
    out = attack_run / "resume"
    m = survive(attack_run, Transformation("eq"), out, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "examples").glob("*.json")}
    assert survive(attack_run, Transformation("eq"), out, progress=False) == m
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    with pytest.raises(MusadvError, match="transformation"):
        survive(attack_run, Transformation("eq", max_db=1.0), out, progress=False)
    with pytest.raises(MusadvError, match="seed"):
        survive(attack_run, Transformation("eq"), out, seed=1, progress=False)
    with pytest.raises(MusadvError, match="not an attack run"):
        survive(out, Transformation("eq"), progress=False)


def test_an_attack_whose_target_was_already_the_label_is_not_counted_as_an_adversary(trained_dnn, learn_cache, tmp_path):
    jobs = recordings_from_split(learn_cache, "test", limit=4)
    label = classify_file(trained_dnn, jobs[0].source).label
    run_attacks(trained_dnn, jobs, f"label:{label}", tmp_path / "run", AttackConfig(snr_db=15.0), progress=False)
    m = survive(tmp_path / "run", Transformation("gain", max_db=0.0), tmp_path / "same", progress=False)
    rows = _rows(tmp_path / "same" / "survive.csv")
    already = [r for r in rows if r["label_before"] == label]
    assert already and all(r["attack_success"] == "True" for r in already)  # "reached" at iteration 0
    assert all(r["adversarial"] == "False" for r in already)  # said the target before any change
    assert m["n_examples"] == 4 and m["n_adversarial"] == sum(r["attack_success"] == "True" for r in rows) - len(already)


def test_judged_by_another_system_every_before_is_that_systems_own(attack_run, trained_dnn):
    """'Returned to the original's label' means the judging system's label of the original, not the attacked model's."""
    from musadv.wrappers import TorchClassifier

    # The same network with its labels rotated: it never agrees with the attacked model.
    rotated = trained_dnn.labels[1:] + trained_dnn.labels[:1]
    judge = TorchClassifier(trained_dnn, rotated, trained_dnn.stft)
    m = survive(attack_run, Transformation("gain", max_db=0.0), attack_run / "judged", system=judge, progress=False)
    rows = _rows(attack_run / "judged" / "survive.csv")
    assert len(rows) == m["n_examples"] == 4
    for row in rows:
        record = json.loads((attack_run / "examples" / f"{row['example']}.json").read_text())
        assert row["label_before"] == classify_file(judge, attack_run / record["original_wav"]).label != record["label_before"]
        judged_example = classify_file(judge, attack_run / record["wav"]).label
        assert (row["attack_success"] == "True") == (judged_example == record["target"])
        # An unchanging transformation: every transformed file gets the label its untransformed file got.
        assert row["label"] == judged_example and row["original_label"] == row["label_before"]
    assert m["n_adversarial"] == sum(r["attack_success"] == "True" and r["label_before"] != r["target"] for r in rows)


def test_several_draws_of_a_random_transformation_judge_each_example_and_the_shares_are_over_draws(attack_run):
    one = attack_run / "eq-one"
    survive(attack_run, Transformation("eq"), one, seed=4, progress=False)
    out = attack_run / "eq-three"
    m = survive(attack_run, Transformation("eq"), out, seed=4, progress=False, draws=3)
    rows = _rows(out / "survive.csv")
    assert len(rows) == 12 and m["n_examples"] == 4 and m["n_draws"] == 3
    for example in {r["example"] for r in rows}:
        mine = sorted((r for r in rows if r["example"] == example), key=lambda r: r["draw"])
        assert [r["draw"] for r in mine] == ["0", "1", "2"]
        assert len({r["gains_db"] for r in mine}) == 3  # three draws
        # The first draw is the one a run of one draw makes.
        first = json.loads((one / "examples" / f"{example}.json").read_text())
        assert json.loads((out / "examples" / f"{example}.json").read_text())["params"] == first["params"]
    adversarial = [r for r in rows if r["adversarial"] == "True"]
    assert m["survived"] == pytest.approx(np.mean([r["survived"] == "True" for r in adversarial]))
    assert m["original_kept"] == pytest.approx(np.mean([r["original_label"] == r["label_before"] for r in rows]))
    with pytest.raises(MusadvError, match="draws"):
        survive(attack_run, Transformation("eq"), out, seed=4, progress=False, draws=2)
    # A transformation that is not random is the same every time: one draw.
    fixed = survive(attack_run, Transformation("lowpass"), attack_run / "lp-five", progress=False, draws=5)
    assert fixed["n_draws"] == 1 and len(_rows(attack_run / "lp-five" / "survive.csv")) == 4

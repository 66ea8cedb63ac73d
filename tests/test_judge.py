"""musadv.judge: one verdict for any model, written to evaluation.json, and the leaderboard of several."""

import csv
import json
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from musadv.errors import MusadvError
from musadv.evaluate import figures_of_merit
from musadv.judge import Plan, defence, flat_success, headline, judge, leaderboard, read_evaluation, read_plan
from musadv.identity import system_sha256
from musadv.runs import recordings_from_split
from musadv.systems import load_system

from .conftest import ROOT, load_file
from .conftest import run_musadv as _run

PLAN = Plan("test", (20.0,), ("all_wrong",), max_iter=30, max_queries=300, controls=False)
#: Enough queries for the rounded DNN to be fooled on some of the test recordings at 20 dB, not on all.
QUERIES_THAT_FOOL_SOME = 300


#: A network behind a front end that rounds its input: the same labels, a zero gradient (the leaderboard's
#: masked-gradient model, as the docs ship it).
Rounded = load_file(ROOT / "docs" / "leaderboard-gtzan-mini" / "fe.py").Rounded


def _recordings(cache, n=6):
    # Two of each of the first three styles: both adversaries have work on every label.
    refs = recordings_from_split(cache, "test")
    return [r for lab in sorted({r.true_label for r in refs})[:3] for r in refs if r.true_label == lab][:2 * 3][:n]


def _without_timings(e):
    return {k: v for k, v in e.items() if k != "timings"}


def test_a_network_is_judged_from_its_written_files_and_a_second_call_resumes_to_the_same_file(trained_dnn, learn_cache,
                                                                                                 tmp_path):
    recordings = _recordings(learn_cache)
    plan = replace(PLAN, controls=True)
    e = judge(trained_dnn, recordings, tmp_path / "j", plan, progress=False)
    assert read_evaluation(tmp_path / "j") == json.loads(json.dumps(e))
    # The clean figures are those of the labels in clean/predictions.csv; the robust ones take each attacked
    # recording's label from the decoded file (results.csv) and keep the clean label of the others.
    clean = {r["recording"]: r["predicted"] for r in csv.DictReader(open(tmp_path / "j" / "clean" / "predictions.csv"))}
    truth = [r.true_label for r in recordings]
    assert e["clean"]["normalised_accuracy"] == figures_of_merit(truth, [clean[r.name] for r in recordings],
                                                                 trained_dnn.labels)["normalised_accuracy"]
    after = {row["file"]: row["decoded_label"]
             for row in csv.DictReader(open(tmp_path / "j" / "all_wrong-20dB" / "gradient" / "results.csv"))}
    correct = [r for r in recordings if clean[r.name] == r.true_label]
    assert sorted(after) == sorted(r.name for r in correct)  # only the recordings it gets right are attacked
    under = [after.get(r.name, clean[r.name]) for r in recordings]
    robust = e["robust"][0]
    assert robust["normalised_accuracy"] == figures_of_merit(truth, under, trained_dnn.labels)["normalised_accuracy"]
    assert robust["fooled_by_gradient"] == sum(after[r.name] != r.true_label for r in correct) >= 1
    low, high = robust["interval"]
    assert low <= robust["normalised_accuracy"] <= high
    assert e["gradient_check"]["problems"] == [] and not [f for f in e["flags"] if f["flag"] == "masked gradient"]
    assert e["headline"]["robust"] == robust["normalised_accuracy"]
    # The controls at the same SNR: their labels in controls/results.csv, the random-phase one made from each
    # attacked recording's written example, the gap the least of them minus the robust accuracy.
    rows = list(csv.DictReader(open(tmp_path / "j" / "all_wrong-controls" / "results.csv")))
    for kind in ("white_noise", "shaped_noise", "random_phase"):
        labels = {row["file"]: row[f"{kind}_label"] for row in rows}
        assert robust["controls"][kind]["normalised_accuracy"] == figures_of_merit(
            truth, [labels[r.name] for r in recordings], trained_dnn.labels)["normalised_accuracy"]
        assert all(float(row[f"{kind}_snr_db"]) == pytest.approx(20.0, abs=0.05) for row in rows
                   if kind != "random_phase" or row["file"] in after)
    examples = json.loads((tmp_path / "j" / "all_wrong-controls" / "controls.json").read_text())["examples"]["20"]
    assert sorted(k for k, v in examples.items() if v) == sorted(after)
    assert robust["gap"] == min(c["normalised_accuracy"] for c in robust["controls"].values()) - robust["normalised_accuracy"]
    page = (tmp_path / "j" / "report.html").read_text()
    assert e["headline"]["verdict"] in page
    # Every attacked recording can be heard beside its original, from the files the figures were read from.
    players = re.findall(r'<audio controls preload="none" src="([^"]+)">', page)
    assert len(players) == 2 * len(after) and all((tmp_path / "j" / p).is_file() for p in players)
    # Killed or not, a second call redoes no attack and writes the same evaluation but for timings.
    examples = sorted((tmp_path / "j" / "all_wrong-20dB" / "gradient" / "examples").glob("*.wav"))
    stamps = [p.stat().st_mtime_ns for p in examples]
    again = judge(trained_dnn, recordings, tmp_path / "j", plan, progress=False)
    assert _without_timings(again) == _without_timings(e)
    assert [p.stat().st_mtime_ns for p in examples] == stamps
    with pytest.raises(MusadvError, match="holds a judgement with another protocol"):
        judge(trained_dnn, recordings, tmp_path / "j", Plan("other", (30.0,), ("all_wrong",)), progress=False)


def test_a_masked_gradient_is_flagged_and_judged_through_queries(trained_dnn, learn_cache, tmp_path):
    """The rounding front end gives the network's labels with a zero gradient: a gradient attack alone would
    read as perfect robustness; the judgement says why it used queries, and they fool it."""
    recordings = _recordings(learn_cache)
    e = judge(Rounded(trained_dnn), recordings, tmp_path / "r", PLAN, progress=False)
    assert [f["flag"] for f in e["flags"]][:1] == ["gradient"]
    assert "input gradient is zero" in e["flags"][0]["reason"]
    robust = e["robust"][0]
    assert robust["fooled_by_gradient"] is None and robust["fooled_by_queries"] >= 1
    assert robust["normalised_accuracy"] < e["clean"]["normalised_accuracy"]
    assert not (tmp_path / "r" / "all_wrong-20dB" / "gradient").exists()
    # A second judgement from nothing, with the same seed, gives the same evaluation but for timings.
    again = judge(Rounded(trained_dnn), recordings, tmp_path / "again", PLAN, progress=False)
    assert _without_timings(again) == _without_timings(e)


def test_the_query_only_adversary_tries_a_smaller_budget_only_where_it_has_not_failed_within_a_larger_one(
        trained_dnn, learn_cache, tmp_path):
    """A recording the queries could not fool within 20 dB is counted as not fooled at 35 dB without a try (its
    35 dB ball lies inside the 20 dB one); those they fooled at 20 dB are tried again at 35 dB."""
    plan = Plan("two", (35.0, 20.0), ("all_wrong",), max_iter=30, max_queries=QUERIES_THAT_FOOL_SOME, controls=False)
    e = judge(Rounded(trained_dnn), _recordings(learn_cache), tmp_path / "q", plan, progress=False)
    fooled_at = {}
    for budget in (20, 35):
        rows = list(csv.DictReader(open(tmp_path / "q" / f"all_wrong-{budget}dB" / "queries" / "results.csv")))
        fooled_at[budget] = {r["file"]: r["decoded_label"] != r["true"] for r in rows}
    tried_at_20, fooled_at_20 = set(fooled_at[20]), {n for n, f in fooled_at[20].items() if f}
    assert fooled_at_20 and tried_at_20 - fooled_at_20, "the plan should leave both kinds at 20 dB"
    assert set(fooled_at[35]) == fooled_at_20
    at = {r["snr_db"]: r for r in e["robust"]}
    assert (at[20.0]["queried"], at[35.0]["queried"]) == (len(tried_at_20), len(fooled_at_20))
    assert at[35.0]["fooled_by_queries"] == sum(fooled_at[35].values())
    assert at[35.0]["normalised_accuracy"] >= at[20.0]["normalised_accuracy"]


def test_a_system_without_a_gradient_is_judged_through_queries_guided_by_the_network_it_carries(forest, baseline,
                                                                                                 learn_cache, tmp_path):
    system = load_system(forest)
    e = judge(system, _recordings(learn_cache, 3), tmp_path / "f", PLAN, progress=False)
    # Not a network: attacked through queries alone, which is no flag against it.
    assert "gives no gradient" in e["gradient_check"]["problems"][0] and "gradient" not in [f["flag"] for f in e["flags"]]
    assert e["robust"][0]["fooled_by_gradient"] is None
    assert e["model"]["kind"] == "ForestSystem" and len(e["model"]["sha256"]) == 64
    # The forest's own DNN guides the queries; the attack run records it.
    assert e["surrogate"]["kind"] == "DNN" and e["surrogate"]["sha256"] == system_sha256(system.dnn)
    run = json.loads((tmp_path / "f" / "all_wrong-20dB" / "queries" / "run.json").read_text())
    assert run["attack"]["surrogate"]["sha256"] == e["surrogate"]["sha256"]
    e = judge(load_system(baseline), _recordings(learn_cache, 3), tmp_path / "m", PLAN, progress=False)
    assert e["surrogate"]["kind"] == "MFCCReplica"


def test_a_smoothed_system_is_judged_through_queries_guided_by_its_base_averaged_over_its_noise(trained_dnn, learn_cache,
                                                                                                  tmp_path):
    system = load_system(f"smooth:{trained_dnn.path}@30x4")
    e = judge(system, _recordings(learn_cache, 3), tmp_path / "s", PLAN, progress=False)
    assert e["model"]["kind"] == "SmoothedClassifier" and e["model"]["name"] == f"smooth:{trained_dnn.path}@30x4"
    # Its identity is its base's weights with its noise: another level is another system.
    assert e["model"]["sha256"] != system_sha256(load_system(f"smooth:{trained_dnn.path}@20x4"))
    assert e["surrogate"]["kind"] == "SmoothedReplica" and e["surrogate"]["name"] == e["model"]["name"]
    entry = e["robust"][0]
    assert entry["fooled_by_gradient"] is None and entry["queried"] == entry["correct"] > 0
    # The queries fool what the base's gradient, averaged over the noise, guides them to.
    assert entry["fooled_by_queries"] > 0


def test_the_standard_stages_search_the_smallest_change_and_run_the_horse_tests(trained_dnn, learn_cache, tmp_path):
    plan = Plan("small", (35.0, 20.0), ("all_wrong",), max_iter=10, max_queries=40, controls=False, minimize=True,
                minimize_floor_db=10.0, perceptual=True, survival=("lowpass",), horse=("eq",), horse_trials=3)
    e = judge(trained_dnn, _recordings(learn_cache, 3), tmp_path / "s", plan, progress=False)
    # The smallest changes measured by ear's models and transformed: the figures of their own run directories.
    rows = [r for r in csv.DictReader(open(tmp_path / "s" / "smallest" / "results.csv")) if r["success"] == "1"]
    assert e["smallest_change"]["median_nmr_db"] == float(np.median([float(r["nmr_db"]) for r in rows]))
    assert e["smallest_change"]["median_visqol_mos"] == float(np.median([float(r["visqol_mos"]) for r in rows]))
    # The leaderboard's row carries that NMR, and the chance its robust figures are read against.
    (row,) = leaderboard([tmp_path / "s"], tmp_path / "board")
    assert row["smallest_change_nmr_db"] == e["smallest_change"]["median_nmr_db"] is not None
    assert row["chance"] == 1 / len(trained_dnn.labels)
    survived = json.loads((tmp_path / "s" / "survive-lowpass" / "survive.json").read_text())["results"]["survived"]
    assert e["survival"] == [{**e["survival"][0], "kind": "lowpass", "survived": survived}]
    figures = json.loads((tmp_path / "s" / "horse-eq" / "horse.json").read_text())["results"]["normalised_accuracy"]
    (eq,) = e["horse"]
    assert {k: eq[k] for k in ("clean", "random", "best", "worst")} == figures
    assert eq["spread"] == figures["best"] - figures["worst"] == e["headline"]["horse_spread"]
    assert "Horse tests" in (tmp_path / "s" / "report.html").read_text() and (tmp_path / "s" / "horse.png").exists()
    small = e["smallest_change"]
    snrs = [float(r["snr_wave_db"]) for r in csv.DictReader(open(tmp_path / "s" / "smallest" / "results.csv"))
            if r["success"] == "1"]
    assert small["reached"] == len(snrs) >= 1 and small["median_snr_db"] == float(np.median(snrs))
    # Each recording's own change is kept, so that two systems can be compared on the recordings both get right.
    searched = {r["file"]: r for r in csv.DictReader(open(tmp_path / "s" / "smallest" / "results.csv"))}
    assert small["snr_db_by_recording"] == {f: float(r["snr_wave_db"]) if r["success"] == "1" else None
                                            for f, r in searched.items()}
    assert len(searched) == small["n"]
    # The gradient from the smallest change up: what it fooled at 35 dB is not attacked again at 20 dB, and counts
    # as fooled there.
    at = {r["snr_db"]: r for r in e["robust"]}

    def labels(budget, run):
        path = tmp_path / "s" / f"all_wrong-{budget}dB" / run / "results.csv"
        return {row["file"]: row["decoded_label"] != row["true"] for row in csv.DictReader(open(path))} if path.exists() else {}

    fooled = {name for name, f in labels(35, "gradient").items() if f}
    attacked = set(labels(20, "gradient"))
    assert fooled and attacked and not fooled & attacked
    assert at[20.0]["fooled_at_smaller_budgets"] == len(fooled) and at[20.0]["attacked"] == len(attacked)
    # The queries from the largest budget down: at 35 dB only what the gradient left correct there and the
    # queries did not fail on at 20 dB.
    failed_at_20 = {name for name, f in labels(20, "queries").items() if not f}
    survivors_35 = {name for name, f in labels(35, "gradient").items() if not f}
    assert set(labels(35, "queries")) == survivors_35 - failed_at_20 and at[35.0]["queried"] == len(survivors_35 - failed_at_20)
    assert at[20.0]["queried"] == len(labels(20, "queries")) == len(attacked) - at[20.0]["fooled_by_gradient"]
    assert at[20.0]["normalised_accuracy"] <= at[35.0]["normalised_accuracy"]


def test_a_defence_is_recorded_in_words(trained_dnn):
    from musadv.smoothing import SmoothedClassifier

    assert defence(trained_dnn) is None  # plain training
    trained = dict(trained_dnn.info["training"]["train"], adversarial="pgd", adv_steps=7, adv_snr_db=25.0, adv_fraction=1.0)
    pgd = SimpleNamespace(info={"training": {"train": trained}})
    assert defence(pgd) == "PGD-7 at 25 dB (1 of each batch replaced)"
    noisy = SimpleNamespace(info={"training": {"train": dict(trained_dnn.info["training"]["train"], noise_snr_db=30.0)}})
    smoothed = SmoothedClassifier(trained_dnn, 30.0, n=4)
    smoothed.base = noisy
    assert defence(smoothed) == "randomized smoothing at 30 dB, 4 copies, of a base trained with noise 30 dB below -20 dBFS"


def test_success_that_does_not_grow_with_the_budget_is_flagged():
    curve = [{"policy": "random", "snr_db": 40.0, "normalised_accuracy": 0.5},
             {"policy": "random", "snr_db": 20.0, "normalised_accuracy": 0.5},
             {"policy": "random", "snr_db": 30.0, "normalised_accuracy": 0.5},
             {"policy": "all_wrong", "snr_db": 30.0, "normalised_accuracy": 0.4},
             {"policy": "all_wrong", "snr_db": 20.0, "normalised_accuracy": 0.1},
             {"policy": "label:x", "snr_db": 30.0, "normalised_accuracy": 0.0},
             {"policy": "label:x", "snr_db": 20.0, "normalised_accuracy": 0.0}]
    flags = flat_success(curve)
    assert len(flags) == 1 and flags[0]["reason"].startswith("random: robust accuracy 0.500 at 20 dB, as at 40 dB")
    # What stays right only because its random target is its own label is no sign of a masked gradient: a model
    # fooled on everything else at the smallest budget is not flagged, one that keeps another is.
    for left, flagged in ((0, False), (1, True)):
        curve[1] = {**curve[1], "foolable_left": left}
        assert bool(flat_success(curve)) == flagged


def test_plans_are_named_or_read_from_a_file(tmp_path):
    assert read_plan("quick").budgets_db == (30.0,)
    assert read_plan("standard").budgets_db == (40.0, 30.0, 20.0)
    (tmp_path / "p.json").write_text(json.dumps({"budgets_db": [25], "policies": ["random"], "max_iter": 10}))
    plan = read_plan(str(tmp_path / "p.json"))
    assert plan == Plan("p", (25,), ("random",), max_iter=10)
    (tmp_path / "bad.json").write_text(json.dumps({"budgets_db": [25], "policies": ["perfect"]}))
    with pytest.raises(MusadvError, match="policies must be among"):
        read_plan(str(tmp_path / "bad.json"))
    with pytest.raises(MusadvError, match="not a plan"):
        read_plan("fast")


def test_the_leaderboard_ranks_comparable_evaluations_and_refuses_others(trained_dnn, learn_cache, tmp_path):
    recordings = _recordings(learn_cache)
    judge(trained_dnn, recordings, tmp_path / "a", PLAN, progress=False)
    judge(Rounded(trained_dnn), recordings, tmp_path / "b", PLAN, progress=False)
    rows = leaderboard([tmp_path / "a", tmp_path / "b"], tmp_path / "board")
    # Ranked by the first robust column, most robust first; the rounding model's robustness is unproven (its
    # gradient is masked), so it comes last whatever its figure.
    assert len(rows) == 2 and rows[-1]["model"] == "fe:rounded"
    # A model directory goes by its folder, a factory by its spec.
    assert {r["model"] for r in rows} == {Path(trained_dnn.path).name, "fe:rounded"}
    table = list(csv.DictReader(open(tmp_path / "board" / "leaderboard.csv")))
    assert [t["model"] for t in table] == [r["model"] for r in rows]
    assert "gradient" in next(t["flags"] for t in table if t["model"] == "fe:rounded")
    page = (tmp_path / "board" / "leaderboard.html").read_text()
    assert "<th>all_wrong 20 dB</th>" in page and 'href="../a/report.html"' in page
    # An evaluation kept on its own file is an entry like any other, with no page to link to.
    kept = tmp_path / "kept" / "dnn.json"
    kept.parent.mkdir()
    kept.write_bytes((tmp_path / "a" / "evaluation.json").read_bytes())
    assert leaderboard([kept, tmp_path / "b"], tmp_path / "board3") == rows
    page = (tmp_path / "board3" / "leaderboard.html").read_text()
    assert page.count("href=") == 1 and 'href="../b/report.html"' in page
    # The same recordings read from a cache that lay elsewhere (another machine, a moved study) are the same data.
    moved = json.loads(kept.read_text())
    moved["data"]["cache"] = "/elsewhere/cache"
    kept.write_text(json.dumps(moved))
    (tmp_path / "b" / "evaluation.json").write_text(json.dumps({**read_evaluation(tmp_path / "b"),
                                                                "data": {**moved["data"], "cache": "/here/cache"}}))
    assert leaderboard([kept, tmp_path / "b"], tmp_path / "board4") == rows
    assert "Not comparable" not in (tmp_path / "board4" / "leaderboard.md").read_text()
    # A smoothed model goes by its base's folder too, not by where its study lay.
    kept.write_text(json.dumps({**moved, "model": {**moved["model"], "name": "smooth:/tmp/study/models/dnn_noise@30x8"}}))
    smoothed = leaderboard([kept, tmp_path / "b"], tmp_path / "board5")
    assert {r["model"] for r in smoothed} == {"smooth:dnn_noise@30x8", "fe:rounded"}
    judge(trained_dnn, recordings[:3], tmp_path / "c", PLAN, progress=False)
    with pytest.raises(MusadvError, match="another data"):
        leaderboard([tmp_path / "a", tmp_path / "c"], tmp_path / "board2")
    rows = leaderboard([tmp_path / "a", tmp_path / "c"], tmp_path / "board2", mixed=True)
    assert rows[0]["all_wrong 20 dB"] >= rows[1]["all_wrong 20 dB"]
    assert "Not comparable" in (tmp_path / "board2" / "leaderboard.md").read_text()


def test_judge_and_leaderboard_from_the_command_line(trained_dnn, learn_cache, tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps(PLAN.to_dict()))
    r = _run("judge", trained_dnn.path, "--cache", learn_cache.path, "--limit", 3, "--plan", tmp_path / "plan.json",
             "--out", tmp_path / "j", "--quiet")
    assert r.returncode == 0, r.stderr
    e = read_evaluation(tmp_path / "j")
    assert r.stdout.startswith(f"{e['model']['name']}: {e['headline']['verdict']}")
    assert e["data"]["split"] == "test" and len(e["data"]["recordings"]) == 3
    (tmp_path / "j" / "report.html").unlink()
    r = _run("report", tmp_path / "j")
    assert r.returncode == 0 and e["headline"]["verdict"] in (tmp_path / "j" / "report.html").read_text()
    r = _run("leaderboard", tmp_path / "j", "--out", tmp_path / "board")
    assert r.returncode == 0 and "| model |" in r.stdout
    r = _run("judge", trained_dnn.path, "--cache", learn_cache.path, "--plan", "fast", "--out", tmp_path / "x")
    assert r.returncode == 1 and r.stderr.startswith("error:") and "not a plan" in r.stderr
    # Loose files are labelled by the folder each lies in.
    files = [learn_cache.source(e) for e in learn_cache.split("test")[:2]]
    r = _run("judge", trained_dnn.path, *files, "--plan", tmp_path / "plan.json", "--out", tmp_path / "files", "--quiet")
    assert r.returncode == 0, r.stderr
    e = read_evaluation(tmp_path / "files")
    assert e["data"]["recordings"] == [str(f) for f in files] and e["clean"]["n"] == 2
    stray = tmp_path / "polka" / "x.wav"
    stray.parent.mkdir()
    stray.write_bytes(open(files[0], "rb").read())
    r = _run("judge", trained_dnn.path, stray, "--out", tmp_path / "stray")
    assert r.returncode == 2 and "polka is not a label of" in r.stderr


def test_a_recording_an_attack_could_not_take_is_counted_as_not_fooled_and_flagged(trained_dnn, learn_cache, tmp_path,
                                                                                     monkeypatch):
    import musadv.judge as judge_module

    real = judge_module._labels_after

    def losing_one(run_dir):  # as if the run's first recording had its row in errors.csv instead
        lost = min(real(run_dir)[0])
        return tuple({k: v for k, v in read.items() if k != lost} for read in real(run_dir))

    monkeypatch.setattr(judge_module, "_labels_after", losing_one)
    e = judge(trained_dnn, _recordings(learn_cache, 3), tmp_path / "e", PLAN, progress=False)
    robust = e["robust"][0]
    assert len(robust["could_not_attack"]) == 1
    assert [f["flag"] for f in e["flags"]] == ["errors"] and "1 recordings could not be attacked" in e["flags"][0]["reason"]


def test_the_verdict_reads_the_robust_accuracy_at_30_db_against_chance_and_the_clean_figure():
    def evaluation(robust, flags=()):
        return {"clean": {"normalised_accuracy": 0.8, "chance": 0.1}, "horse": [], "smallest_change": None,
                "flags": [{"flag": f, "reason": ""} for f in flags],
                "robust": [{"policy": "all_wrong", "snr_db": 40.0, "normalised_accuracy": 0.8},
                           {"policy": "all_wrong", "snr_db": 30.0, "normalised_accuracy": robust}]}

    assert headline(evaluation(0.1))["verdict"].startswith("a horse: changes 30 dB below the music")
    assert headline(evaluation(0.75))["verdict"] == "resists: at 30 dB it keeps 0.75 of its clean 0.80"
    assert headline(evaluation(0.75, ["errors"]))["verdict"].endswith("(but read the flags: errors)")
    # Where the gradient cannot be trusted, queries that fail prove nothing.
    assert headline(evaluation(0.75, ["gradient"]))["verdict"].startswith("unproven: it keeps 0.75 of its clean 0.80")
    assert headline(evaluation(0.4))["verdict"] == "partly fooled: at 30 dB it falls from 0.80 to 0.40"
    assert headline(evaluation(0.4))["robust_snr_db"] == 30.0


def test_a_plan_this_machine_cannot_follow_is_refused_before_any_work(trained_dnn, learn_cache, tmp_path, monkeypatch):
    import musadv.transforms

    monkeypatch.setattr(musadv.transforms, "mp3_available", lambda: False)
    plan = replace(PLAN, minimize=True, horse=("eq", "mp3"))
    with pytest.raises(MusadvError, match="cannot encode MP3: leave mp3 out"):
        judge(trained_dnn, _recordings(learn_cache, 2), tmp_path / "j", plan, progress=False)
    assert not (tmp_path / "j").exists()


def test_the_leaderboard_page_of_gtzan_mini_is_what_musadv_leaderboard_writes_from_its_kept_entries():
    """Each table between the page's markers is the leaderboard.md of the evaluations it names, kept beside the page
    (scripts/leaderboard_page.py writes them): no figure on it was typed by hand, and an entry judged again must be
    kept again."""
    script = load_file(ROOT / "scripts" / "leaderboard_page.py")
    page = (ROOT / "docs" / "leaderboard-gtzan-mini.md").read_text()
    assert script.MARKER.search(page), "the page has no generated table"
    for m in script.MARKER.finditer(page):
        assert m[3] == script.table(ROOT / "docs" / "leaderboard-gtzan-mini", m[2]), m[1]

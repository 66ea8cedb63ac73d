"""musadv.experiments: the demo trains the paper's systems and judges each under one plan, reproducibly and resumably."""

import csv
import json

import numpy as np
import pytest

from dataclasses import replace

from musadv.experiments import DEMO_SYSTEMS, run_demo
from musadv.judge import Plan, read_evaluation
from musadv.studies import DemoSettings

#: What these tests ask of the demo is its contract, not its figures: the least data, training, steps and
#: queries that still give four systems to judge and attack (one test recording per style).
TINY = Plan("tiny", (20.0,), ("all_wrong",), max_iter=10, max_queries=30, controls=False)
SMALL = replace(DemoSettings.for_data(True, True), clips=4, clip_seconds=4.0, dnn_epochs=15, cdnn_epochs=2, trees=20)


def _demo(out, **kwargs):
    return run_demo(out, quick=True, progress=False, log=kwargs.pop("log", lambda m: None), plan=TINY, settings=SMALL,
                    **kwargs)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, _demo(out)


def test_the_quick_demo_judges_each_system_and_ranks_them_from_their_evaluations(demo):
    out, summary = demo
    saved = json.loads((out / "summary.json").read_text())
    assert tuple(saved["systems"]) == DEMO_SYSTEMS and saved["plan"] == TINY.to_dict()
    evaluations = {name: read_evaluation(out / "judgements" / name) for name in DEMO_SYSTEMS}
    for name, e in evaluations.items():
        # Each system's clean figure is recounted from the labels its judgement wrote.
        rows = list(csv.DictReader(open(out / "judgements" / name / "clean" / "predictions.csv")))
        recall = [np.mean([r["predicted"] == r["true"] for r in rows if r["true"] == lab]) for lab in {r["true"] for r in rows}]
        assert saved["systems"][name]["clean"] == pytest.approx(float(np.mean(recall)))
        assert saved["systems"][name]["verdict"] == e["headline"]["verdict"]
        assert (out / "judgements" / name / "report.html").exists()
    # One protocol, one set of recordings: the leaderboard holds every system (it refuses mixed ones).
    assert {e["data"]["sha256"] for e in evaluations.values()} == {evaluations["dnn"]["data"]["sha256"]}
    board = list(csv.DictReader(open(out / "leaderboard" / "leaderboard.csv")))
    assert sorted(r["model"] for r in board) == sorted(DEMO_SYSTEMS)
    # The networks have a gradient; the forest and the baseline are attacked through queries alone (guided by
    # their own networks: the DNN, the replica).
    assert evaluations["dnn"]["robust"][0]["fooled_by_gradient"] > 0
    for name in ("dnn_forest", "mfcc_baseline"):
        assert evaluations[name]["robust"][0]["fooled_by_gradient"] is None
        assert evaluations[name]["surrogate"] is not None
    html = (out / "report.html").read_text()
    for name in DEMO_SYSTEMS:
        assert f'href="judgements/{name}/report.html"' in html
    assert 'href="leaderboard/leaderboard.html"' in html
    page = (out / "leaderboard" / "leaderboard.html").read_text()
    assert 'href="../judgements/dnn/report.html"' in page
    assert {"prepare", "train-dnn", "judge-dnn"} <= set(saved["seconds"])
    for name in ("dnn", "cdnn"):  # the models stay usable by musadv classify and attack
        assert (out / "models" / name / "model.safetensors").exists()


def test_a_second_run_reuses_finished_stages_and_gives_the_same_numbers(demo):
    out, first = demo
    logs = []
    again = _demo(out, log=logs.append, report=False)
    assert len(logs) >= 5 and all("earlier run" in line for line in logs)
    assert again["systems"] == first["systems"] and again["leaderboard"] == first["leaderboard"]


def test_the_same_seed_gives_the_same_evaluations_in_a_fresh_directory(demo, tmp_path):
    out, first = demo
    second = _demo(tmp_path, report=False)
    assert second["systems"] == first["systems"]
    for name in DEMO_SYSTEMS:
        # All but the timings and the folder each study lies in.
        a, b = (json.loads(json.dumps(read_evaluation(d / "judgements" / name)).replace(str(d.resolve()), "STUDY"))
                for d in (out, tmp_path))
        assert a["model"]["sha256"] == b["model"]["sha256"] and a["data"]["sha256"] == b["data"]["sha256"], name
        del a["timings"], b["timings"]
        assert a == b, name


def test_the_musicnn_study_judges_each_tagger_on_the_genres_every_one_of_them_covers(tmp_path):
    """MSD_musicnn has no classical tag, MTT_musicnn no blues: the study judges both on country, metal,
    pop and rock alone, so that their leaderboard compares like with like."""
    from musadv.experiments import run_musicnn_study
    from musadv.judge import Plan

    from .conftest import GTZAN_MINI

    for genre in ("blues", "classical", "country", "metal"):
        (tmp_path / "data" / genre).mkdir(parents=True)
        (tmp_path / "data" / genre / f"{genre}.00000.wav").symlink_to(GTZAN_MINI / genre / f"{genre}.00000.wav")
    plan = Plan("tiny", (30.0,), ("all_wrong",), max_iter=2, max_queries=5, controls=False)
    s = run_musicnn_study(tmp_path / "study", tmp_path / "data", plan=plan, progress=False, log=lambda m: None,
                          report=False)
    assert s["genres"] == ["country", "metal", "pop", "rock"]  # the labels both taggers have
    for name in ("MSD_musicnn", "MTT_musicnn"):
        e = read_evaluation(tmp_path / "study" / "judgements" / name)
        assert e["model"]["name"] == f"musicnn:{name}:gtzan"
        assert [r.split("/")[0] for r in e["data"]["recordings"]] == ["country", "metal"]
    assert sorted(r["model"] for r in s["leaderboard"]) == ["musicnn:MSD_musicnn:gtzan", "musicnn:MTT_musicnn:gtzan"]


def test_a_study_folder_refuses_a_judgement_under_another_plan(demo):
    from musadv.errors import MusadvError

    out, _ = demo
    with pytest.raises(MusadvError, match="stage judge-dnn was done with other settings"):
        run_demo(out, quick=True, progress=False, log=lambda m: None, plan=replace(TINY, max_iter=11), settings=SMALL,
                 report=False)


@pytest.mark.parametrize("other, stage", [
    (dict(clips=5), "prepare"),  # other data
    (dict(dnn_units=SMALL.dnn_units + 1), "train-dnn"),  # a network of another size
    (dict(cdnn_epochs=SMALL.cdnn_epochs + 1), "train-cdnn"),
    (dict(trees=SMALL.trees + 1), "train-forest"),
], ids=["data", "dnn", "cdnn", "forest"])
def test_a_study_folder_refuses_other_data_and_systems_of_other_settings_before_it_reuses_any(demo, other, stage):
    from musadv.errors import MusadvError

    out, _ = demo
    with pytest.raises(MusadvError, match=f"stage {stage} was done with other settings"):
        run_demo(out, quick=True, progress=False, log=lambda m: None, plan=TINY, settings=replace(SMALL, **other),
                 report=False)

"""musadv.systems: the forest on DNN activations and the MFCC baseline learn, save safely, judge attacks."""

import csv
import json

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis

from musadv.attack import AttackConfig
from musadv.classify import classify_file
from musadv.evaluate import evaluate_model
from musadv.models import ModelError
from musadv.runs import jobs_from_split, rescore, run_attacks
from musadv.systems import ForestSystem, MahalanobisClassifier, MFCCBaseline, load_system, train_baseline, train_forest


@pytest.fixture(scope="module")
def forest(trained_dnn, learn_cache, tmp_path_factory):
    system = train_forest(trained_dnn, learn_cache, "all", n_trees=100, window=86, hop=43, progress=False)
    return system.save(tmp_path_factory.mktemp("forest") / "forest")


@pytest.fixture(scope="module")
def baseline(learn_cache, tmp_path_factory):
    system = train_baseline(learn_cache, window=86, hop=43, progress=False)
    return system.save(tmp_path_factory.mktemp("baseline") / "baseline")


def test_forest_beats_chance_clearly(forest, learn_cache):
    system = load_system(forest)
    assert isinstance(system, ForestSystem) and system.classifier.n_estimators == 100
    fom = evaluate_model(system, learn_cache, "test")
    assert fom["normalised_accuracy"] >= 0.7 and fom["binomial_p"] < 1e-4


def test_baseline_beats_chance_clearly(baseline, learn_cache):
    system = load_system(baseline)
    assert isinstance(system, MFCCBaseline)
    fom = evaluate_model(system, learn_cache, "test")
    assert fom["normalised_accuracy"] >= 0.7 and fom["binomial_p"] < 1e-4
    assert json.loads((baseline / "model.json").read_text())["trained_on"] == ["train", "valid"]


def test_mahalanobis_decision_matches_a_direct_computation(baseline):
    system = load_system(baseline)
    rng = np.random.default_rng(0)
    c = system.classifier
    feats = c.means_[rng.integers(len(system.labels), size=5)] + rng.standard_normal((5, c.means_.shape[1]))
    d = c.distances(feats)
    for w in range(5):
        direct = [mahalanobis(feats[w], c.means_[k], c.inv_covs_[k]) ** 2 for k in range(len(system.labels))]
        np.testing.assert_allclose(d[w], direct, rtol=1e-6)


def test_a_recording_is_labelled_by_majority_vote_of_windows(forest, learn_cache):
    system = load_system(forest)
    e = learn_cache.split("test")[0]
    feats = system.features(learn_cache.frames(e))
    window_labels = system.classifier.predict(feats).astype(int)
    pred = system.predict(learn_cache.frames(e))
    assert pred.label == system.labels[np.bincount(window_labels).argmax()]
    assert pred.confidence[pred.label] == pytest.approx(np.bincount(window_labels).max() / len(window_labels))
    assert classify_file(system, learn_cache.source(e)).label == pred.label


def test_forest_files_are_not_pickles_and_follow_their_dnn(forest, trained_dnn, tmp_path):
    import shutil

    assert (forest / "forest.skops").exists() and not list(forest.glob("*.pkl"))
    meta = json.loads((forest / "model.json").read_text())
    assert meta["config"]["arch"] == "forest" and meta["layers"] == "all"
    # A forest whose DNN changed since training refuses to load.
    copy_dnn, copy_forest = tmp_path / "dnn", tmp_path / "forest"
    shutil.copytree(trained_dnn.path, copy_dnn)
    shutil.copytree(forest, copy_forest)
    meta["dnn"] = "../dnn"
    (copy_forest / "model.json").write_text(json.dumps(meta))
    load_system(copy_forest)
    with open(copy_dnn / "model.safetensors", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\0\0\0\1")
    with pytest.raises(ModelError, match="has changed"):
        load_system(copy_forest)


def test_rescoring_an_attack_run_with_the_forest(forest, baseline, trained_dnn, learn_cache, tmp_path):
    run = tmp_path / "run"
    run_attacks(trained_dnn, jobs_from_split(learn_cache, "test", limit=6), "all_wrong", run,
                AttackConfig(snr_db=15, max_iter=50), progress=False)
    system = load_system(forest)
    m = rescore(system, run)
    assert m["n_examples"] == 6
    # Success means the forest, which the adversary never saw, labels the adversarial file with the target.
    rows = list(csv.DictReader(open(run / "rescore-forest" / "results.csv")))
    hits = [classify_file(system, run / "examples" / f"{r['example']}.wav").label == r["target"] for r in rows]
    assert [int(r["success"]) for r in rows] == [int(h) for h in hits]
    assert m["success_rate"] == pytest.approx(np.mean(hits))
    assert m["normalised_accuracy_before"] >= 0.5
    assert (run / "rescore-forest" / "results.csv").read_text().count("\n") == 7
    mb = rescore(load_system(baseline), run, tmp_path / "b")
    assert (tmp_path / "b" / "metrics.json").exists() and mb["n_examples"] == 6


def test_the_baselines_classifier_passes_scikit_learns_estimator_checks():
    from sklearn.utils.estimator_checks import check_estimator

    # Raises on the first check that fails (fit/predict contracts, input validation, pickling, ...).
    check_estimator(MahalanobisClassifier())


def test_mahalanobis_classifier_picks_the_class_of_the_nearest_gaussian():
    rng = np.random.default_rng(0)
    # Two classes with the same mean distance but different spreads: Mahalanobis, not Euclidean.
    wide = rng.normal(0, [10, 1], size=(400, 2))
    narrow = rng.normal([6, 0], [1, 1], size=(400, 2))
    c = MahalanobisClassifier().fit(np.vstack([wide, narrow]), ["wide"] * 400 + ["narrow"] * 400)
    assert list(c.classes_) == ["narrow", "wide"]
    # (3.5, 0) is nearer the narrow class's mean in Euclidean terms (2.5 against 3.5), but 0.35 wide sigmas away.
    assert c.predict([[3.5, 0.0], [6.0, 0.0]]).tolist() == ["wide", "narrow"]


def test_baseline_files_hold_no_pickle_and_give_the_same_decisions(baseline, learn_cache):
    from safetensors.numpy import load_file

    system = load_system(baseline)
    assert sorted(p.name for p in baseline.iterdir() if p.is_file()) == ["model.json", "model.safetensors"]
    stored = load_file(str(baseline / "model.safetensors"))
    assert set(stored) == {"means", "inv_covs", "classes"}
    fresh = train_baseline(learn_cache, window=86, hop=43, progress=False)
    for e in learn_cache.split("test"):
        signal = learn_cache.signal(e)
        assert system.predict(None, signal).confidence == fresh.predict(None, signal).confidence

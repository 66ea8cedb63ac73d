"""musadv.systems: the forest on DNN activations and the MFCC baseline learn, save safely, judge attacks."""

import csv
import json
import sys
import textwrap

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis

from musadv.attack import AttackConfig
from musadv.classify import classify_file
from musadv.evaluate import evaluate_model
from musadv.models import ModelError
from musadv.runs import recordings_from_split, rescore, run_attacks
from musadv.spectral import magnitude
from musadv.features import TextureFeatures, texture_stats
from musadv.systems import (ForestSystem, MahalanobisClassifier, MFCCBaseline, WindowVote, load_system, mfcc_zcr,
                            texture_pipeline, train_baseline)


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
    run_attacks(trained_dnn, recordings_from_split(learn_cache, "test", limit=6), "all_wrong", run,
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


def test_window_vote_labels_a_recording_by_the_share_of_its_windows():
    from sklearn.neighbors import KNeighborsClassifier

    # Windows near 0 are "a", near 10 are "b"; the recordings' labels are those of most of their windows.
    recordings = [np.array([[0.0], [0.1], [9.9]]), np.array([[10.0], [10.1]]), np.array([[0.2]])]
    vote = WindowVote(KNeighborsClassifier(1)).fit(recordings, ["a", "b", "a"])
    assert list(vote.classes_) == ["a", "b"]
    # The window at 9.9 was fitted as "a" (its recording's label): one nearest neighbour keeps that.
    proba = vote.predict_proba([np.array([[0.0], [0.0], [10.0], [10.1]]), np.array([[9.9], [10.0], [10.0]])])
    np.testing.assert_array_equal(proba, [[0.5, 0.5], [1 / 3, 2 / 3]])
    assert vote.predict([np.array([[0.0], [10.0]]), np.array([[10.0]])]).tolist() == ["a", "b"]  # a tie: the first class
    with pytest.raises(ValueError, match="2 recordings but 3 labels"):
        WindowVote(KNeighborsClassifier(1)).fit(recordings[:2], ["a", "b", "a"])


def test_texture_features_map_each_recording_to_its_windows_and_check_its_frame_features():
    rng = np.random.default_rng(0)
    recordings = [rng.normal(size=(50, 3)), rng.normal(size=(7, 3))]
    texture = TextureFeatures(window=20, hop=10, spread="var")
    out = texture.fit_transform(iter(recordings))  # a generator is read once
    assert texture.n_features_in_ == 3 and [w.shape for w in out] == [(4, 6), (1, 6)]
    np.testing.assert_array_equal(out[0], texture_stats(recordings[0], 20, 10, "var"))
    again = texture.transform(recordings)
    assert len(again) == len(out) == 2
    for a, b in zip(again, out):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="recording 0 has 4 frame features, the others 3"):
        texture.transform([rng.normal(size=(30, 4))])
    with pytest.raises(ValueError, match="spread must be one of"):
        TextureFeatures(spread="mad").fit(recordings)
    with pytest.raises(ValueError, match="hop must be an integer >= 1"):
        TextureFeatures(hop=0).fit(recordings)


@pytest.mark.parametrize("estimator", [TextureFeatures(), WindowVote(MahalanobisClassifier())], ids=type)
def test_the_texture_estimators_follow_scikit_learns_conventions(estimator):
    """The checks that apply to estimators whose samples are recordings (not rows of a 2-D array):
    __init__ stores its parameters and sets nothing else, get_params / set_params round-trip."""
    from sklearn.utils import estimator_checks as checks

    name = type(estimator).__name__
    for check in (checks.check_no_attributes_set_in_init, checks.check_parameters_default_constructible,
                  checks.check_get_params_invariance, checks.check_set_params):
        check(name, estimator)


def test_the_baseline_is_a_pipeline_fitted_on_recordings_from_a_generator(baseline, learn_cache):
    """Its training is the pipeline's fit on recordings and labels; from a generator as from a list."""
    system = load_system(baseline)
    assert [name for name, _ in system.pipeline.steps] == ["texture", "vote"]
    entries = learn_cache.split("train") + learn_cache.split("valid")
    frame_features = [mfcc_zcr(learn_cache.signal(e), learn_cache.config) for e in entries]
    labels = [learn_cache.labels.index(e.label) for e in entries]
    from_list = texture_pipeline(MahalanobisClassifier(), 86, 43, "var").fit(frame_features, labels)
    from_generator = texture_pipeline(MahalanobisClassifier(), 86, 43, "var").fit(iter(frame_features), labels)
    test = [mfcc_zcr(learn_cache.signal(e), learn_cache.config) for e in learn_cache.split("test")]
    np.testing.assert_array_equal(from_generator.predict_proba(test), from_list.predict_proba(test))
    np.testing.assert_array_equal(from_list.predict_proba(test), system.pipeline.predict_proba(test))
    for e, proba in zip(learn_cache.split("test"), system.pipeline.predict_proba(test)):
        pred = system.predict(None, learn_cache.signal(e))
        assert [pred.confidence[lab] for lab in system.labels] == proba.tolist()


# A researcher's own system: an SVM on MFCC texture statistics, fitted and saved by them.
MINE_PY = textwrap.dedent('''
    import json
    from pathlib import Path

    import skops.io as sio

    from musadv.spectral import STFTConfig
    from musadv.systems import TextureSystem, mfcc_zcr

    HERE = Path(__file__).parent


    class MFCCSVM(TextureSystem):
        needs_signal = True

        def frame_features(self, frames, signal):
            return mfcc_zcr(signal, self.stft)


    def svm():
        file = HERE / "svm.skops"
        pipeline = sio.load(file, trusted=sio.get_untrusted_types(file=file))
        return MFCCSVM(json.loads((HERE / "labels.json").read_text()), STFTConfig(), pipeline)
''')


def test_a_researchers_own_scikit_learn_pipeline_is_tested_through_module_factory(learn_cache, tmp_path, monkeypatch):
    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from musadv import cli

    entries = learn_cache.split("train") + learn_cache.split("valid")
    svm = make_pipeline(StandardScaler(), SVC())
    pipeline = texture_pipeline(svm, 86, 43, "var").fit(
        (mfcc_zcr(learn_cache.signal(e), learn_cache.config) for e in entries),
        [learn_cache.labels.index(e.label) for e in entries])
    (tmp_path / "mine.py").write_text(MINE_PY)
    (tmp_path / "labels.json").write_text(json.dumps(learn_cache.labels))
    sio.dump(pipeline, tmp_path / "svm.skops")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        cli.main(["test", "mine:svm", "--cache", str(learn_cache.path), "--out", str(tmp_path / "test")])
        system = load_system("mine:svm")
    finally:
        sys.modules.pop("mine", None)
    fom = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert fom["normalised_accuracy"] >= 0.7 and fom["binomial_p"] < 1e-4, fom["normalised_accuracy"]
    e = learn_cache.split("test")[0]
    windows = system.features(None, learn_cache.signal(e))
    votes = np.bincount(pipeline["vote"].estimator_.predict(windows), minlength=len(system.labels))
    assert system.predict(None, learn_cache.signal(e)).label == system.labels[int(votes.argmax())]


def test_many_recordings_at_once_get_what_each_gets_alone(forest, baseline, trained_dnn, learn_cache):
    """predict_many (one vote over every recording's windows, one network pass) is predict, recording by recording."""
    entries = learn_cache.split("test")[:4]
    signals = [learn_cache.signal(e) for e in entries]
    for system in (load_system(forest), load_system(baseline), trained_dnn):
        frames = [magnitude(y, system.stft) for y in signals]
        frames[1] = frames[1][:150]  # recordings of other lengths in one call
        signals_cut = [y if k != 1 else y[: 149 * system.stft.hop] for k, y in enumerate(signals)]
        many = system.predict_many(frames, signals_cut, [e.path for e in entries])
        for f, y, p in zip(frames, signals_cut, many):
            alone = system.predict(f, y)
            assert p.label == alone.label and p.n_elements == alone.n_elements
            assert p.confidence == pytest.approx(alone.confidence, abs=1e-6)

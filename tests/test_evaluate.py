"""musadv.evaluate: figures of merit as the paper reports them, checked against scikit-learn and SciPy."""

import json

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, precision_recall_fscore_support

from musadv.evaluate import evaluate_model, figures_of_merit, format_table


def test_figures_match_scikit_learn_and_scipy():
    rng = np.random.default_rng(0)
    labels = ["blues", "jazz", "rock", "pop"]
    y_true = list(rng.choice(labels, 200))
    y_pred = [t if rng.random() < 0.6 else rng.choice(labels) for t in y_true]
    fom = figures_of_merit(y_true, y_pred, labels)
    np.testing.assert_array_equal(fom["confusion"], confusion_matrix(y_true, y_pred, labels=labels))
    assert fom["normalised_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    assert [fom["precision"][l] for l in labels] == pytest.approx(p)
    assert [fom["recall"][l] for l in labels] == pytest.approx(r)
    assert [fom["f_measure"][l] for l in labels] == pytest.approx(f)
    correct = sum(t == q for t, q in zip(y_true, y_pred))
    assert fom["accuracy"] == correct / 200
    assert fom["binomial_p"] == pytest.approx(binomtest(correct, 200, 0.25, alternative="greater").pvalue)
    assert "normalised accuracy" in format_table(fom)


def test_labels_absent_from_the_truth_do_not_count_in_normalised_accuracy():
    fom = figures_of_merit(["a", "a", "b"], ["a", "c", "b"], ["a", "b", "c"])
    assert fom["recall"]["c"] is None
    assert fom["normalised_accuracy"] == pytest.approx((0.5 + 1.0) / 2)


def test_evaluate_model_writes_readable_results(trained_dnn, learn_cache, tmp_path):
    fom = evaluate_model(trained_dnn, learn_cache, "test", tmp_path / "t")
    assert fom["n"] == len(learn_cache.split("test"))
    rows = (tmp_path / "t" / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("path,true,predicted,correct,n_elements,conf_")
    assert len(rows) == 1 + fom["n"]
    assert json.loads((tmp_path / "t" / "metrics.json").read_text())["n_correct"] == fom["n_correct"]
    assert "recall" in (tmp_path / "t" / "metrics.txt").read_text()

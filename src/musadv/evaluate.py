"""Figures of merit (paper section 6) and testing a model on a split of a spectra cache.

Confusion matrix (rows: true label, columns: predicted), per-class recall, precision and
F-measure, normalised accuracy (mean per-class recall, i.e. scikit-learn's
``balanced_accuracy_score``), plain accuracy, and a one-sided binomial test of the number of
correct recordings against chance (1 / number of labels).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from .cache import SpectraCache
from .classify import classify_frames
from .io import write_csv_atomic, write_json_atomic
from .interface import AudioClassifier
from .models import check_compatible

__all__ = ["figures_of_merit", "format_table", "evaluate_model"]


def figures_of_merit(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict:
    """All figures of merit of a set of recording-level decisions.

    Parameters
    ----------
    y_true, y_pred : list of str
        True and predicted label of each recording.
    labels : list of str
        Label order of the confusion matrix (the classifier's labels).

    Returns
    -------
    dict
        ``confusion`` (list of rows, true x predicted), ``recall``, ``precision``, ``f_measure``
        (dicts per label; labels absent from ``y_true`` have recall NaN and are left out of the
        normalised accuracy), ``normalised_accuracy``, ``accuracy``, ``n``, ``n_correct``,
        ``chance`` and ``binomial_p`` (P(at least this many correct | guessing)).
    """
    index = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    conf = np.zeros((k, k), dtype=int)
    for t, p in zip(y_true, y_pred):
        conf[index[t], index[p]] += 1
    support, predicted, hits = conf.sum(axis=1), conf.sum(axis=0), np.diag(conf)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / support, np.nan)
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        f = np.where(recall + precision > 0, 2 * recall * precision / (recall + precision), 0.0)
    n, correct = int(conf.sum()), int(hits.sum())
    present = support > 0
    chance = 1.0 / k
    return {
        "labels": list(labels),
        "confusion": conf.tolist(),
        "recall": {lab: (None if np.isnan(r) else float(r)) for lab, r in zip(labels, recall)},
        "precision": dict(zip(labels, map(float, precision))),
        "f_measure": {lab: (None if np.isnan(v) else float(v)) for lab, v in zip(labels, f)},
        "normalised_accuracy": float(np.mean(recall[present])) if present.any() else float("nan"),
        "accuracy": correct / n if n else float("nan"),
        "n": n,
        "n_correct": correct,
        "chance": chance,
        "binomial_p": float(binomtest(correct, n, chance, alternative="greater").pvalue) if n else float("nan"),
    }


def format_table(fom: dict) -> str:
    """The confusion matrix with recall, precision and F-measure as a plain-text table."""
    labels = fom["labels"]
    w = max(8, max(len(lab) for lab in labels) + 1)
    short = [lab[:6] for lab in labels]
    lines = ["true \\ predicted".ljust(w) + "".join(s.rjust(7) for s in short) + "  recall  precis.  F"]
    for lab, row in zip(labels, fom["confusion"]):
        r, p, f = fom["recall"][lab], fom["precision"][lab], fom["f_measure"][lab]
        fmt = lambda v: "   -  " if v is None else f"{v:6.3f}"
        lines.append(lab.ljust(w) + "".join(f"{c:7d}" for c in row) + f"  {fmt(r)}  {fmt(p)}  {fmt(f)}")
    lines.append("")
    lines.append(
        f"normalised accuracy {fom['normalised_accuracy']:.3f}   accuracy {fom['accuracy']:.3f} "
        f"({fom['n_correct']}/{fom['n']})   chance {fom['chance']:.3f}   binomial p = {fom['binomial_p']:.3g}"
    )
    if "left_out" in fom:
        lines.append(f"left out: {fom['left_out']['recordings']} recordings of labels the system has no output for "
                     f"({', '.join(fom['left_out']['labels'])})")
    return "\n".join(lines)


def evaluate_model(model: AudioClassifier, cache: SpectraCache, split: str = "test", out_dir: str | os.PathLike | None = None) -> dict:
    """Classify every recording of a cache split and compute the figures of merit.

    Parameters
    ----------
    model : AudioClassifier
        A network, a wrapped PyTorch module or a feature system.
    cache : SpectraCache
    split : {'train', 'valid', 'test'}
    out_dir : path, optional
        Where to write ``predictions.csv`` (one row per recording, with the confidence per
        label), ``metrics.json`` and ``metrics.txt`` (the readable table).

    Returns
    -------
    dict
        The figures of merit (see :func:`figures_of_merit`) plus ``split`` and ``seconds``.
    """
    check_compatible(model, cache.config, cache.labels, str(cache.path))
    t0 = time.perf_counter()
    rows, y_true, y_pred = [], [], []
    entries = cache.split(split)
    judged = [e for e in entries if e.label in model.labels]
    for e in judged:
        signal = cache.signal(e) if model.needs_signal else None
        pred = classify_frames(model, cache.frames(e), signal, e.path)
        y_true.append(e.label)
        y_pred.append(pred.label)
        rows.append({"path": e.path, "true": e.label, "predicted": pred.label, "correct": int(pred.label == e.label),
                     "n_elements": pred.n_elements,
                     **{f"conf_{lab}": round(c, 6) for lab, c in pred.confidence.items()}})
    fom = figures_of_merit(y_true, y_pred, model.labels)
    fom.update(split=split, seconds=time.perf_counter() - t0, cache=str(cache.path))
    if len(judged) < len(entries):
        fom["left_out"] = {"recordings": len(entries) - len(judged), "labels": list(model.uncovered_labels)}
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_csv_atomic(out_dir / "predictions.csv", rows)
        write_json_atomic(out_dir / "metrics.json", fom)
        (out_dir / "metrics.txt").write_text(format_table(fom) + "\n")
    return fom

"""Certifying recordings with a smoothed system: the run (one certificate per recording, resumable) and its summary.

``musadv certify`` runs this: for each recording, Cohen et al.'s CERTIFY (:func:`musadv.smoothing.certify`)
of the smoothed system, written as a record, then ``certify.csv`` (one row per recording) and the
``results`` of ``certify.json``: the certified accuracy at each SNR budget (the share of recordings
whose certified label is the true one and whose certified SNR is at most the budget: no change
within that budget can move them) and the distribution of certified SNRs.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .driver import RunKind, drive, read_records
from .errors import MusadvError
from .identity import model_name, system_sha256
from .io import finite_or_none, write_csv_atomic, write_json_atomic
from .parallel import Engine
from .recording import Recording
from .runs import RecordingRef, check_same_recordings, check_same_settings, slug
from .smoothing import ABSTAIN, SmoothedClassifier, certify

__all__ = ["certify_recordings", "summarise_certify", "CertifyRun", "FORMAT", "CSV_FIELDS"]

FORMAT = "musadv-certify"
CSV_FIELDS = ["file", "true", "label", "correct", "p_lower", "radius", "certified_snr_db", "noise_snr_db", "predicted",
              "seconds"]


def certify_recordings(system: SmoothedClassifier, recordings: list[RecordingRef], out_dir: str | os.PathLike,
                       n0: int = 100, n: int = 1000, alpha: float = 0.001, budgets: tuple[float, ...] = (40.0, 30.0, 20.0),
                       engine: Engine | None = None, progress: bool = True) -> dict:
    """Certify every recording with ``system`` and write a run directory (resuming one).

    Parameters
    ----------
    system : SmoothedClassifier
    recordings : list of RecordingRef
        Each with its true label.
    out_dir : path
    n0, n : int
        Noisy copies that select each recording's label and that bound its share.
    alpha : float
        Each certificate is wrong with probability at most ``alpha``.
    budgets : tuple of float
        SNR budgets in dB of the certified accuracies.

    Returns
    -------
    dict
        The ``results`` of ``certify.json`` (see :func:`summarise_certify`).
    """
    unlabelled = [r.name for r in recordings if not r.true_label]
    if unlabelled:
        raise MusadvError(f"{unlabelled[0]}: certified accuracy needs the true label of every recording")
    if not (n0 >= 1 and n >= 1 and 0 < alpha < 0.5):
        raise MusadvError(f"certify needs n0 >= 1, n >= 1 and 0 < alpha < 0.5 (got n0={n0}, n={n}, alpha={alpha})")
    kind = CertifyRun(system, Path(out_dir).resolve(), tuple(recordings), n0, n, alpha, tuple(float(b) for b in budgets))
    return drive(kind, engine, progress)


@dataclass(frozen=True)
class CertifyRun(RunKind):
    """A certification as the run driver sees it: one piece and one record per recording."""

    system: SmoothedClassifier
    out: Path
    recordings: tuple
    n0: int
    n: int
    alpha: float
    budgets: tuple

    settings_name = "certify.json"
    record_dir = "recordings"
    desc = "certify"

    def settings(self):
        s = self.system
        return {self.out: {"format": FORMAT, "musadv": __version__, "system": model_name(s),
                           "system_sha256": system_sha256(s), "base": model_name(s.base), "labels": s.labels,
                           "stft": s.stft.to_dict(), "smoothing": s.info["smoothing"], "n0": self.n0, "n": self.n,
                           "alpha": self.alpha, "budgets": list(self.budgets),
                           "recordings": [asdict(r) for r in self.recordings]}}

    def check_same(self, out, old, new):
        check_same_settings(out, old, new, ("system_sha256", "labels", "stft", "smoothing", "n0", "n", "alpha"),
                            "certification")
        check_same_recordings(out, old, new, "certification")

    def pieces(self):
        return list(self.recordings)

    def pending(self, piece):
        return None if (self.out / "recordings" / f"{slug(piece.name)}.json").exists() else piece

    def name(self, piece):
        return piece.name

    def do(self, piece):
        t = time.perf_counter()
        signal = Recording.from_file(piece.source, self.system.stft.sr, piece.offset, piece.duration).signal
        c = certify(self.system, signal, self.n0, self.n, self.alpha, piece.name)
        record = {"file": piece.name, "true": piece.true_label, "label": c.label, "correct": c.label == piece.true_label,
                  "p_lower": c.p_lower, "radius": c.radius, "certified_snr_db": finite_or_none(c.certified_snr_db),
                  "noise_snr_db": finite_or_none(c.noise_snr_db), "predicted": c.predicted,
                  "counts": dict(zip(self.system.labels, c.counts)),
                  "copies": self.n0 + self.n, "seconds": time.perf_counter() - t, "files": {}}
        return [(self.out / "recordings" / f"{slug(piece.name)}.json", record)]

    def summarise(self):
        return summarise_certify(self.out)


def summarise_certify(out_dir: str | os.PathLike) -> dict:
    """Collect a certification's finished records into certify.csv and the ``results`` of certify.json.

    Returns
    -------
    dict
        ``n_recordings``; ``abstained`` (share of recordings without a certificate);
        ``certified_accuracy``: per budget (dB, as a string key) the share of recordings whose
        certified label is the true one with a certified SNR at most the budget, and at ``"any"``
        the share whose certified label is the true one however small its radius;
        ``certified_snr_db``: median, min and max over the correct certificates (None without one);
        ``noise_snr_db``: the median SNR of the noise against the recordings;
        ``predict_accuracy`` and ``predict_abstained``: the shares of recordings PREDICT (from the
        ``n0`` selection copies) labels correctly and abstains on (an abstention is not correct);
        ``seconds_per_copy``: certification time over the noisy copies labelled.
    """
    out = Path(out_dir)
    run = {k: v for k, v in json.loads((out / "certify.json").read_text()).items() if k != "results"}
    records = sorted(read_records(out / "recordings"), key=lambda r: r["file"])
    # A record written before PREDICT was recorded has no "predicted": its column is empty, its figures None.
    write_csv_atomic(out / "certify.csv", [{k: r.get(k) for k in CSV_FIELDS} for r in records], CSV_FIELDS)
    predicted = [r.get("predicted") for r in records]
    predicted_all = bool(records) and None not in predicted
    n_rec = len(records)
    correct = [r for r in records if r["correct"]]
    snrs = [r["certified_snr_db"] for r in correct]
    accuracy = {f"{b:g}": (sum(s <= b for s in snrs) / n_rec if n_rec else None) for b in run["budgets"]}
    accuracy["any"] = len(correct) / n_rec if n_rec else None
    results = {
        "n_recordings": n_rec,
        "abstained": sum(r["label"] == ABSTAIN for r in records) / n_rec if n_rec else None,
        "certified_accuracy": accuracy,
        "certified_snr_db": ({"median": float(np.median(snrs)), "min": min(snrs), "max": max(snrs)} if snrs else None),
        # A silent recording has no finite noise SNR.
        "noise_snr_db": float(np.median(noise)) if (noise := [r["noise_snr_db"] for r in records if r["noise_snr_db"] is not None]) else None,
        "predict_accuracy": sum(p == r["true"] for p, r in zip(predicted, records)) / n_rec if predicted_all else None,
        "predict_abstained": predicted.count(ABSTAIN) / n_rec if predicted_all else None,
        "seconds_per_copy": (sum(r["seconds"] for r in records) / sum(r["copies"] for r in records)) if records else None,
    }
    write_json_atomic(out / "certify.json", {**run, "results": results})
    return results

"""Horse tests: how far irrelevant transformations of each recording move a system's figures of merit.

The "method of irrelevant transformations" (the paper's refs. [48], [53]): change each test
recording in a way that leaves its music, and so its genre, as it was (a minor EQ, a tempo change
of a few per cent), several times, and see whether the system's answers follow. A system that
has learned music keeps its answers; a "horse" can be made perfect, or no better than chance,
by choosing for each recording a draw that makes it right, or one that makes it wrong.

For each recording, :func:`horse_test` judges the original and up to ``trials`` random draws of a
:class:`~musadv.transforms.Transformation` (each drawn from the seed and the recording's name
and trial alone), every draw rounded to 16 bits as a written file. Rooms are the exception: a
room's simulation takes about a second, so every recording is played in the same ``trials``
rooms (trial ``t``'s room is drawn from the seed and ``t`` alone), each simulated once per
process. It keeps one draw that makes the system right (the most confident in the true label)
and one that makes it wrong (the least), where such exist, writes them as WAV and judges the
written files again. The figures
of merit are reported on:

``clean``
    The originals.
``random``
    The first draw of each recording: how stable the system is under one irrelevant change.
``best``
    Per recording the draw that makes it right where one does (else the one closest to right):
    how good irrelevant changes can make the system.
``worst``
    Per recording the draw that makes it wrong where one does: how bad they can make it.

A run directory holds ``horse.json`` (the settings and, under ``results``, the figures),
``recordings/*.json`` (one per finished recording: the run resumes), ``originals/``, ``right/``
and ``wrong/`` (WAV), and ``horse.csv`` (per recording and trial: the transformation's
parameters, SNR, label, confidences, which draw was kept).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import __version__, audio
from .attack import snr_db
from .classify import classify_samples
from .errors import MusadvError
from .evaluate import figures_of_merit
from .interface import AudioClassifier
from .io import finite_or_none, write_csv_atomic, write_json_atomic
from .driver import RunKind, drive, read_errors, read_records, record_files
from .parallel import Engine
from .taggers import tag_changes, tag_changes_summary
from .identity import model_name, system_sha256
from .runs import RecordingRef, check_same_recordings, check_same_settings, recording_rng, slug
from .transforms import Transformation

__all__ = ["horse_test", "horse_tests", "summarise_horse", "draw_params", "CASES", "FORMAT", "SHARED_ROOMS"]

FORMAT = "musadv-horse-run"
#: How a room run draws its rooms (recorded in ``horse.json``).
SHARED_ROOMS = "one per trial, the same for every recording"
#: The figures a horse test reports, in order.
CASES = ("clean", "random", "best", "worst")


def draw_params(transformation: Transformation, seed: int, name: str, trial: int) -> dict:
    """The parameters of one recording's draw ``trial``: from the seed, the recording's name and the trial, but a
    room's from the seed and the trial alone (see the module's documentation)."""
    return transformation.draw(recording_rng(seed, "" if transformation.kind == "room" else name, trial))


def horse_test(
    system: AudioClassifier,
    recordings: list[RecordingRef],
    out_dir: str | os.PathLike,
    transformation: Transformation,
    trials: int = 20,
    seed: int = 0,
    progress: bool = True,
    extra: dict | None = None,
    engine: Engine | None = None,
) -> dict:
    """Judge ``system`` on each recording and on random irrelevant transformations of it.

    Parameters
    ----------
    system : AudioClassifier
        Any system (network, forest, MFCC baseline, your own): no gradient is needed.
    recordings : list of RecordingRef
        The recordings, with their true labels (:func:`musadv.runs.recordings_from_split`).
    out_dir : path
        The run directory (see the module documentation); rerun to resume.
    transformation : Transformation
        What changes each recording, at the file's own rate and channels.
    trials : int
        Draws per recording (1 for a transformation that is not random: every draw is the same).
    seed : int
        With a recording's name and the trial's number, seeds each draw.
    progress : bool
    extra : dict, optional
        More to record in ``horse.json`` (cache, split).
    engine : Engine, optional
        Where the recordings are done (:mod:`musadv.parallel`; default: this process, one after
        another). With the same threads, every engine writes the same files.

    Returns
    -------
    dict
        The figures, ``horse.json``'s ``results`` (:func:`summarise_horse`).
    """
    return horse_tests([(system, out_dir)], recordings, transformation, trials, seed, progress, extra, engine)[0]


def horse_tests(
    runs: Sequence[tuple[AudioClassifier, str | os.PathLike]],
    recordings: list[RecordingRef],
    transformation: Transformation,
    trials: int = 20,
    seed: int = 0,
    progress: bool = True,
    extra: dict | None = None,
    engine: Engine | None = None,
) -> list[dict]:
    """:func:`horse_test` for several systems at once: each draw is made once and judged by all.

    Parameters
    ----------
    runs : sequence of (AudioClassifier, path)
        Each system with its own run directory; the directories are what :func:`horse_test`
        writes for that system alone, draw for draw.
    recordings, transformation, trials, seed, progress, extra, engine
        As :func:`horse_test`.

    Returns
    -------
    list of dict
        The figures of each run, in the order of ``runs``.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, not {trials}")
    unlabelled = [j.name for j in recordings if not j.true_label]
    if unlabelled:
        raise MusadvError(f"{unlabelled[0]}: a horse test needs the true label of every recording")
    trials = trials if transformation.random else 1
    kind = HorseRun(tuple(system for system, _ in runs), tuple(Path(out).resolve() for _, out in runs), tuple(recordings),
                    transformation, trials, seed, dict(extra or {}))
    return drive(kind, engine, progress)


@dataclass(frozen=True)
class HorseRun(RunKind):
    """Horse tests of several systems, as the run driver sees them: one piece per recording (for the
    systems whose run lacks it), one record per recording in each system's run."""

    systems: tuple
    outs: tuple
    recordings: tuple
    transformation: Transformation
    trials: int
    seed: int
    extra: dict

    settings_name = "horse.json"
    record_dir = "recordings"

    @property
    def desc(self):
        return f"horse ({self.transformation.kind})"

    def settings(self):
        t = self.transformation
        return {out: {"format": FORMAT, "musadv": __version__, "system": model_name(system),
                      "system_sha256": system_sha256(system), "labels": system.labels, "stft": system.stft.to_dict(),
                      "transformation": t.settings(), "description": t.describe(), "trials": self.trials,
                      "seed": self.seed, "recordings": [asdict(j) for j in self.recordings],
                      **({"rooms": SHARED_ROOMS} if t.kind == "room" else {}), **self.extra}
                for system, out in zip(self.systems, self.outs)}

    def check_same(self, out, old, new):
        # "rooms" is recorded since rooms became shared: an older room run drew one per recording and trial.
        keys = ("system_sha256", "labels", "stft", "transformation", "trials", "seed", *(("rooms",) if "rooms" in new else ()))
        check_same_settings(out, old, new, keys, "horse run")
        check_same_recordings(out, old, new, "horse run")

    def pieces(self):
        return [(ref, tuple(range(len(self.outs)))) for ref in self.recordings]

    def pending(self, piece):
        ref, _ = piece
        left = tuple(i for i, out in enumerate(self.outs) if not (out / "recordings" / f"{slug(ref.name)}.json").exists())
        return (ref, left) if left else None

    def name(self, piece):
        return piece[0].name

    def error_dirs(self, piece):
        return [self.outs[i] for i in piece[1]]

    def do(self, piece):
        ref, left = piece
        outs = [self.outs[i] for i in left]
        records = _recording([self.systems[i] for i in left], ref, outs, self.transformation, self.trials, self.seed)
        return [(out / "recordings" / f"{slug(ref.name)}.json", r) for out, r in zip(outs, records)]

    def summarise(self):
        return [summarise_horse(out) for out in self.outs]


def _judged(pred, true: str, tagger: bool) -> dict:
    judged = {"label": pred.label, "confidence": pred.confidence[pred.label], "true_confidence": pred.confidence.get(true, 0.0)}
    if tagger:  # every likelihood, for the tag-level figures
        judged["likelihoods"] = pred.confidence
    return judged


def _recording(systems: list[AudioClassifier], ref: RecordingRef, outs: list[Path], transformation: Transformation, trials: int,
               seed: int) -> list[dict]:
    """The original and every draw of one recording judged by each system; each system's chosen draws
    written into its run and judged again from their files."""
    name = slug(ref.name)
    samples, sr = audio.decode(ref.source, ref.offset, ref.duration)
    for system in systems:
        audio.check_signal(audio.conform(samples, sr, system.stft.sr), system.stft.sr, system.stft.n_fft, ref.source)
    clean = [_judged(classify_samples(system, samples, sr, ref.source), ref.true_label, system.activation == "sigmoid")
             for system in systems]
    rows: list[list[dict]] = [[] for _ in systems]
    kept: list[dict] = [{} for _ in systems]
    for t in range(trials):
        params = draw_params(transformation, seed, ref.name, t)
        raw = transformation.apply(samples, sr, params)
        changed = audio.quantize_pcm16(raw)  # what its written file holds, clipped as it would be
        snr = finite_or_none(snr_db(samples, changed)) if changed.shape == samples.shape else None
        clipped = int(np.count_nonzero(np.abs(raw) > 1))
        for k, system in enumerate(systems):
            judged = _judged(classify_samples(system, changed, sr, f"{ref.name} (trial {t})"), ref.true_label,
                             system.activation == "sigmoid")
            rows[k].append({"trial": t, "params": params, "snr_db": snr, "clipped": clipped, **judged})
            # Keep in memory only the draw that is so far the most right and the one most wrong.
            right = judged["label"] == ref.true_label
            side = "right" if right else "wrong"
            prev = kept[k].get(side)
            sign = 1 if right else -1
            if prev is None or sign * (judged["true_confidence"] - prev[0]["true_confidence"]) > 0:
                kept[k][side] = (rows[k][-1], changed)
    records = []
    for k, (system, out) in enumerate(zip(systems, outs)):
        original = out / "originals" / f"{name}.wav"
        audio.save(original, samples, sr, on_clip="clip")  # every time: it may be what was damaged
        chosen = {}
        for side, (row, changed) in kept[k].items():
            wav = out / side / f"{name}.wav"
            audio.save(wav, changed, sr, on_clip="clip")
            written, wsr = audio.decode(wav)
            pred = classify_samples(system, written, wsr, str(wav))
            chosen[side] = {"trial": row["trial"], "wav": str(wav.relative_to(out)),
                            **_judged(pred, ref.true_label, system.activation == "sigmoid")}
        records.append({"file": ref.name, "true": ref.true_label, "sr": sr, "channels": samples.shape[0],
                        "original_wav": str(original.relative_to(out)), "clean": clean[k], "trials": rows[k],
                        "right": chosen.get("right"), "wrong": chosen.get("wrong"),
                        "files": record_files(out, [original, *(out / c["wav"] for c in chosen.values())])})
    return records


def _case_labels(record: dict) -> dict:
    """Per case, the label the system gives this recording (a written file's where one was written)."""
    trials = record["trials"]
    right, wrong = record["right"], record["wrong"]
    best = right["label"] if right else max(trials, key=lambda r: r["true_confidence"])["label"]
    worst = wrong["label"] if wrong else min(trials, key=lambda r: r["true_confidence"])["label"]
    return {"clean": record["clean"]["label"], "random": trials[0]["label"], "best": best, "worst": worst}


def summarise_horse(out_dir: str | os.PathLike) -> dict:
    """Collect the finished recordings of a horse run into horse.csv and the ``results`` of horse.json.

    Returns
    -------
    dict
        ``n_recordings``, ``trials``, per case of :data:`CASES` the figures of merit
        (``figures[case]``, with confusion matrices) and ``normalised_accuracy[case]``;
        ``changed_trials`` (share of draws whose label differs from the original's),
        ``changed_recordings`` (share of recordings with at least one such draw),
        ``snr_db`` (median, min and max over draws; None for a stretch), ``clipped_trials``
        and ``written_disagree`` (chosen draws whose written file got another label than in
        memory: 0 unless 16-bit rounding moved a decision).
    """
    out = Path(out_dir)
    run = {k: v for k, v in json.loads((out / "horse.json").read_text()).items() if k != "results"}
    labels = run["labels"]
    records = read_records(out / "recordings")
    rows = []
    for r in records:
        for t in r["trials"]:
            params = {k: " ".join(f"{x:g}" for x in v) if isinstance(v, list) else v for k, v in t["params"].items()}
            gained, lost = (tag_changes(r["clean"]["likelihoods"], t["likelihoods"]) if "likelihoods" in t else ("", ""))
            rows.append({"file": r["file"], "true": r["true"], "clean_label": r["clean"]["label"], "trial": t["trial"],
                         **params, "snr_db": t["snr_db"], "clipped": t["clipped"], "label": t["label"],
                         "confidence": t["confidence"], "true_confidence": t["true_confidence"],
                         "tags_gained": " ".join(gained), "tags_lost": " ".join(lost),
                         "kept": "right" if (r["right"] or {}).get("trial") == t["trial"] else
                                 "wrong" if (r["wrong"] or {}).get("trial") == t["trial"] else ""})
    write_csv_atomic(out / "horse.csv", rows)
    cases = [_case_labels(r) for r in records]
    truth = [r["true"] for r in records]
    figures = {c: figures_of_merit(truth, [x[c] for x in cases], labels) if records else None for c in CASES}
    snrs = np.array([t["snr_db"] for r in records for t in r["trials"] if t["snr_db"] is not None], dtype=float)
    n_trials = sum(len(r["trials"]) for r in records)
    metrics = {
        "n_recordings": len(records),
        "n_skipped": len(read_errors(out)),  # recordings that could not be judged (errors.csv)
        "normalised_accuracy": {c: figures[c]["normalised_accuracy"] if figures[c] else None for c in CASES},
        "figures": figures,
        "changed_trials": (sum(t["label"] != r["clean"]["label"] for r in records for t in r["trials"]) / n_trials
                           if n_trials else None),
        "changed_recordings": (float(np.mean([any(t["label"] != r["clean"]["label"] for t in r["trials"]) for r in records]))
                               if records else None),
        "snr_db": ({"median": float(np.median(snrs)), "min": float(snrs.min()), "max": float(snrs.max())}
                   if len(snrs) else None),
        "clipped_trials": sum(1 for r in records for t in r["trials"] if t["clipped"]),
        "written_disagree": sum(1 for r in records for side in ("right", "wrong") if r[side]
                                and r[side]["label"] != r["trials"][r[side]["trial"]]["label"]),
        "chance": 1 / len(labels),
        # A tagger's (or a genre system made from one): tags turned on and off by each draw.
        "tags": tag_changes_summary([(r["clean"]["likelihoods"], t["likelihoods"]) for r in records for t in r["trials"]
                                     if "likelihoods" in t]),
    }
    write_json_atomic(out / "horse.json", {**run, "results": metrics})
    return metrics

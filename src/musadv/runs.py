"""Attack runs: the adversary applied to a split or to loose files, written as a directory of results.

A run directory holds:

``run.json``
    What was attacked with which model (and the SHA-256 of its weights) and settings.
``originals/`` and ``examples/``
    The original recordings and the adversarial examples as WAV files, by default at each
    original's own sampling rate and channel count (``model_rate=True``: mono at the model's
    rate); beside each example a JSON with its outcome and per-iteration trace.
``results.csv``
    One row per example: file, true label, target, label and confidence before, label and
    confidence after (in memory), decoded label and confidence (the written file decoded through
    the loading path that classifies any file), SNR against the original on the whole waveform
    (every channel, at the file's rate), the same leaving out 2048/22050 s at each edge (the
    reference code's measure), SNR on the magnitudes, ViSQOL MOS-LQO if asked for, repair
    rounds, iterations, seconds.
``traces.csv``
    Every iteration of every example: loss, target posterior, SNR (and, through queries, the
    predictions made so far).
``metrics.json``
    Figures of merit of the attacked system (decoded labels against the truth), success rates,
    SNR statistics, and the examples whose written file missed its target even after repair.

Success is judged on the file written: it is read back, analysed and classified again; a file
that misses its target is repaired (more iterations from the written file) before the run
gives up on it. An example whose finished JSON exists is not redone, so a killed run resumes
where it stopped; a run directory refuses to be resumed with another model, other recordings
or other settings.
"""

from __future__ import annotations

import json
import math
import os
import re
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__, audio
from .attack import AttackConfig, AttackResult, attack, attack_many, check_policy, continued_trace, choose_targets, goal_candidates, goal_reached, minimize, snr_db
from .cache import SpectraCache, analyse_file
from .classify import classify_frames
from .errors import MusadvError
from .evaluate import figures_of_merit
from .interface import AudioClassifier, DifferentiableClassifier
from .driver import RunKind, drive, read_errors, read_records, record_files
from .io import finite_or_none, write_csv_atomic, write_json_atomic
from .checks import GradientCheck, check_gradient
from .identity import model_name, system_sha256
from .parallel import Engine
from .progress import progress_bar
from .recording import Recording, edge_samples
from .robust import held_out
from .spectral import magnitude

__all__ = ["RecordingRef", "recordings_from_split", "recordings_from_files", "run_attacks", "summarise", "rescore", "RESULT_FIELDS", "model_name",
           "slug", "system_sha256", "check_same_settings", "check_same_recordings", "recording_rng", "example_rng", "attack_settings"]

RESULT_FIELDS = [
    "example", "file", "true", "goal", "target", "label_before", "conf_before", "label_after", "conf_after",
    "decoded_label", "decoded_conf", "decoded_target_conf", "success", "success_in_memory",
    "snr_wave_db", "snr_trim_db", "snr_mag_db", "visqol_mos", "nmr_db", "above_mask_share", "sr", "channels", "repairs",
    "iterations", "gradient", "queries", "query_check_success", "seconds", "wav", "original_wav",
]


@dataclass(frozen=True)
class RecordingRef:
    """One recording of a run (attack, robustness, horse): where its audio is, its name in the run, its true label if known."""

    source: str
    name: str
    true_label: str | None = None
    offset: float = 0.0
    duration: float | None = None


def recordings_from_split(cache: SpectraCache, split: str, limit: int | None = None,
                          labels: list[str] | None = None) -> list[RecordingRef]:
    """The recordings of a cache split (decoded from their source files, like the cache).

    ``labels``: keep only recordings with one of these labels (a system's, when it declares
    some of the data's labels uncovered); ``limit`` counts the recordings kept.
    """
    entries = [e for e in cache.split(split) if labels is None or e.label in labels][:limit]
    return [RecordingRef(str(cache.source(e)), e.path, e.label, cache.offset, cache.duration) for e in entries]


def recordings_from_files(files, offset: float = 0.0, duration: float | None = None) -> list[RecordingRef]:
    """Loose audio files as recordings of a run (true label unknown), each named by its path as given.

    The path, not the base name, names the example: ``a/x.wav`` and ``b/x.wav`` are two.
    """
    return [RecordingRef(str(Path(f).resolve()), str(Path(f)), None, offset, duration) for f in files]


def slug(name: str) -> str:
    """A file-name-safe, unique stem for a recording's name (its tail and a CRC of the whole)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", re.sub(r"\.[A-Za-z0-9]+$", "", name))[-60:]
    return f"{stem}-{zlib.crc32(name.encode()):08x}"


def _judge_file(model, rec: Recording, mag_x: np.ndarray, wav: Path) -> tuple:
    """Decode a written example as any file is decoded for classification, and measure it against ``rec``.

    Returns the prediction, the SNR on the whole file and edge-trimmed (at the file's rate,
    every channel), the SNR on the magnitudes, and the decoded samples.
    """
    samples, sr = audio.decode(wav)
    heard = audio.conform(samples, sr, model.stft.sr)  # what audio.load(wav, sr=model rate) gives
    frames = magnitude(heard, model.stft)
    pred = classify_frames(model, frames, heard, str(wav))
    if samples.shape != rec.samples.shape or sr != rec.sr:
        raise MusadvError(f"{wav}: decoded as {samples.shape} at {sr} Hz, written as {rec.samples.shape} at {rec.sr} Hz")
    whole = snr_db(rec.samples, samples)
    trimmed = snr_db(rec.samples, samples, trim=edge_samples(sr))
    return pred, whole, trimmed, snr_db(mag_x, frames), samples


def _example(model, ref: RecordingRef, rec: Recording, mag_x: np.ndarray, target: str, config: AttackConfig, out: Path, stem: str,
             repairs: int, quality, minimal: bool, seed: int, result: AttackResult | None = None,
             nmr: bool = False, query_check: int = 0) -> tuple[Path, dict]:
    """Attack one recording towards one target (the smallest change found if ``minimal``), write the
    WAV, judge the decoded file, repair it if it misses the target; the example's record and its path.

    ``result``: the attack already made (by a batch of attacks), to be written and judged. ``nmr``:
    measure the noise-to-mask ratio of the written file (always measured under a masking bound).
    A robust adversary's file is then judged on fresh draws of its transformations
    (:func:`musadv.robust.held_out`, from a generator of ``seed`` and the example that its
    attack never used). ``query_check``: a gradient attack whose file misses its goal is tried
    again through at most this many queries (:func:`_query_check`).
    """
    ex_id = f"{stem}--{target}"
    wav = out / "examples" / f"{ex_id}.wav"
    if minimal:
        result = first = minimize(model, rec, target, config)
        # Repairs keep the bound and the stopping rule of the level the example came from.
        succeeded = [lv["snr_bound_db"] for lv in result.levels if lv["success"]]
        repair_config = replace(config, snr_db=max(succeeded, default=config.snr_db), stop="label")
    else:
        result = first = attack(model, rec, target, config, rng=example_rng(seed, ex_id)) if result is None else result
        repair_config = config
    iterations, seconds, trace, rounds = result.iterations, result.seconds, list(result.trace), 0
    queries = result.queries
    while True:
        audio.save(wav, result.audio, rec.sr, float_wav=not config.quantize, on_clip="clip")
        dec, snr_whole, snr_trim, snr_mag, written = _judge_file(model, rec, mag_x, wav)
        success = goal_reached(config.goal, target, dec.label, dec.confidence)
        if success or rounds >= repairs:
            break
        # Start again from what the file holds: more iterations, same bound, same original.
        rounds += 1
        result = attack(model, rec, target, repair_config, start=written, rng=example_rng(seed, ex_id, rounds))
        # Its iteration 0 judges the written file again: the trace goes on from there.
        trace += continued_trace(result.trace[1:], iterations, queries)
        iterations, seconds = iterations + result.iterations, seconds + result.seconds
        if queries is not None:
            queries += result.queries
    masking = None
    if nmr or config.masking_db is not None:  # measured on the file written, at its rate
        from .psychoacoustics import noise_to_mask

        masking = noise_to_mask(rec.samples, written, rec.sr)
    kept = {}
    if config.robust_to:
        kept = held_out(model, written, rec.sr, str(wav), config.goal, target, config.robust_to,
                        recording_rng(seed, ex_id, HELD_OUT_STREAM))
    row = {
        "example": ex_id, "file": ref.name, "true": ref.true_label or "", "goal": config.goal, "target": target,
        "label_before": first.label_before, "conf_before": first.confidence_before[first.label_before],
        "label_after": result.label_after, "conf_after": result.confidence_after[result.label_after],
        "decoded_label": dec.label, "decoded_conf": dec.confidence[dec.label],
        "decoded_target_conf": dec.confidence[target],
        "success": int(success), "success_in_memory": int(result.success),
        "snr_wave_db": finite_or_none(snr_whole), "snr_trim_db": finite_or_none(snr_trim), "snr_mag_db": finite_or_none(snr_mag),
        "visqol_mos": quality(rec, written) if quality else None,
        "nmr_db": finite_or_none(masking["nmr_db"]) if masking else None,
        "above_mask_share": masking["above_share"] if masking else None,
        "sr": rec.sr, "channels": rec.n_channels, "repairs": rounds,
        "iterations": iterations, "gradient": config.gradient, "queries": queries, "seconds": seconds,
        "wav": str(wav.relative_to(out)), "original_wav": f"originals/{stem}.wav",
        **{f"held_out_{kind}": v["kept"] for kind, v in kept.items()},
    }
    checked, files = None, [wav, out / row["original_wav"]]
    if query_check and not success and config.gradient == "autograd":
        checked = _query_check(model, rec, mag_x, target, config, out, ex_id, query_check, seed, minimal)
        row["query_check_success"] = checked["success"]
        files.append(out / checked["wav"])
    record = {**row, "reached_threshold": result.reached, "confidence_before": first.confidence_before,
              "confidence_after": result.confidence_after, "decoded_confidence": dec.confidence,
              "trace": trace, "files": record_files(out, files)}
    if checked:
        record["query_check"] = checked
    if kept:
        record["held_out"] = kept
    if minimal:
        record["levels"] = [{**lv, "snr_wave_db": finite_or_none(lv["snr_wave_db"])} for lv in first.levels]
    return out / "examples" / f"{ex_id}.json", record


def _query_check(model, rec: Recording, mag_x: np.ndarray, target: str, config: AttackConfig, out: Path, ex_id: str,
                 budget: int, seed: int, minimal: bool) -> dict:
    """Try through queries an example the gradient attack could not make: success there is the sign of a
    masked gradient (AutoAttack's reason for running a query-only attack beside the gradient ones).

    The query-only attack has the example's bound and goal and at most ``budget`` queries; its
    file is written beside the example (``...-queries.wav``) and judged by decoding it.
    """
    check_config = replace(config, gradient="queries", max_queries=budget, step=None)
    if minimal:
        check_config = replace(check_config, stop="label")
    result = attack(model, rec, target, check_config, rng=example_rng(seed, ex_id, QUERY_CHECK_STREAM))
    wav = out / "examples" / f"{ex_id}-queries.wav"
    audio.save(wav, result.audio, rec.sr, float_wav=not config.quantize, on_clip="clip")
    dec, snr_whole, _, _, _ = _judge_file(model, rec, mag_x, wav)
    return {"success": int(goal_reached(config.goal, target, dec.label, dec.confidence)), "queries": result.queries,
            "decoded_label": dec.label, "snr_wave_db": finite_or_none(snr_whole), "wav": str(wav.relative_to(out))}


def check_same_settings(out: Path, old: dict, new: dict, keys, kind: str) -> None:
    """Refuse to mix two runs of ``kind`` in one directory: one line naming the first of ``keys`` that differs."""
    for key in keys:
        if old.get(key) != new[key]:
            raise MusadvError(f"{out}: holds a {kind} with other {key.replace('_', ' ')} "
                              f"({old.get(key)!s:.60} there, {new[key]!s:.60} now); choose another --out")


def check_same_recordings(out: Path, old: dict, new: dict, kind: str) -> None:
    """A run may grow (a larger --limit), but every recording it holds must be one of this run's."""
    ours = {r["name"]: r for r in new["recordings"]}
    for r in old.get("recordings", []):
        if ours.get(r["name"]) != r:
            why = "not in this run" if r["name"] not in ours else "with other source, offset or duration"
            raise MusadvError(f"{out}: holds a {kind} with other recordings ({r['name']} {why}); choose another --out")


def recording_rng(seed: int, name: str, *more: int) -> np.random.Generator:
    """The generator of one recording's random choices: from the seed and its name alone, so that
    resumed and partial runs draw what a whole run draws."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), *more])


#: Streams of :func:`recording_rng` for an example: its loop's draws (one per attack, a repair's its
#: own), the held-out draws that judge a robust adversary's file, and a query check's draws.
LOOP_STREAM, HELD_OUT_STREAM, QUERY_CHECK_STREAM = 1, 2, 3


def example_rng(seed: int, example: str, repair: int = 0) -> np.random.Generator:
    """The generator of the draws a robust adversary's loop makes for ``example`` (round ``repair``)."""
    return recording_rng(seed, example, LOOP_STREAM, repair)


def attack_settings(settings: dict) -> dict:
    """A run's recorded attack settings, a setting added since it was made at its default (off)."""
    return {**AttackConfig().to_dict(), **(settings.get("attack") or {})}


#: What a resumed run must share with the one on disk, and how to say it differs.
_RUN_CHECKS = [
    ("model_sha256", "another model (weights' SHA-256 {old:.12} here, {new:.12} now)"),
    ("labels", "other labels"),
    ("stft", "other analysis settings"),
    ("policy", "policy {old!r}, not {new!r}"),
    ("seed", "seed {old}, not {new}"),
    ("output", "examples written {old}, not {new}"),
    ("repairs", "{old} repair rounds, not {new}"),
    ("visqol", "ViSQOL {old}, not {new}"),
    ("nmr", "noise-to-mask ratios {old}, not {new}"),
    ("minimal", "minimal perturbations {old}, not {new}"),
    ("query_check", "a query check of {old} queries, not {new}"),
]
#: Run settings added since the first runs, at the value a run made before them had.
_ADDED_LATER = {"nmr": False, "query_check": 0}


@dataclass(frozen=True)
class AttackRun(RunKind):
    """An attack run, as the run driver sees it: one piece per recording, one record per example."""

    model: AudioClassifier
    recordings: tuple[RecordingRef, ...]
    policy: str
    out: Path
    config: AttackConfig
    seed: int
    model_rate: bool
    repairs: int
    visqol: bool
    minimal: bool
    extra: dict
    batch: int = 1
    nmr: bool = False
    check: GradientCheck | None = None
    query_check: int = 0

    settings_name = "run.json"
    record_dir = "examples"

    @property
    def desc(self) -> str:
        return "attack through queries" if self.config.gradient == "queries" else "attack"
    unit = "example"

    def settings(self) -> dict[Path, dict]:
        m = self.model
        return {self.out: {
            "format": "musadv-attack-run", "musadv": __version__, "model": model_name(m),
            "model_sha256": system_sha256(m), "labels": m.labels, "stft": m.stft.to_dict(),
            "policy": self.policy, "seed": self.seed, "attack": self.config.to_dict(),
            "output": "at the model's rate" if self.model_rate else "at each file's rate and channels",
            "repairs": self.repairs, "visqol": self.visqol, "nmr": self.nmr, "minimal": self.minimal,
            "query_check": self.query_check,
            "recordings": [asdict(j) for j in self.recordings],
            "gradient_check": None if self.check is None else self.check.to_dict(), **self.extra}}

    def check_same(self, out, old, new):
        # A run made before a setting existed had it off.
        old = {**_ADDED_LATER, **old}
        for key, what in _RUN_CHECKS:
            if old.get(key) != new[key]:
                raise MusadvError(f"{out}: holds a run with {what.format(old=str(old.get(key)), new=str(new[key]))}; "
                                  "choose another --out")
        check_same_recordings(out, old, new, "run")
        recorded = attack_settings(old)
        for key, value in new["attack"].items():
            if recorded.get(key) != value:
                raise MusadvError(f"{out}: holds a run with attack setting {key} = {recorded.get(key)}, "
                                  f"not {value}; choose another --out")

    def pieces(self):
        return list(self.recordings)

    def _known_targets(self) -> list[str] | None:
        """Every recording's targets where the policy fixes them before the recording is classified."""
        if self.policy.startswith("label:"):
            return [self.policy[len("label:"):]]
        if self.policy == "every_label" and self.config.goal == "label":
            return list(self.model.labels)
        return None

    def pending(self, ref):
        stem = slug(ref.name)
        targets = self._known_targets()
        if targets is not None:
            done = all((self.out / "examples" / f"{stem}--{t}.json").exists() for t in targets)
        elif self.policy == "every_label":  # tags to add or remove: known once the recording is classified
            done = False
        else:  # one target per recording
            done = any((self.out / "examples").glob(f"{stem}--*.json"))
        return None if done else ref

    def name(self, ref):
        return ref.name

    def steps(self, ref):
        return len(self.model.labels) if self.policy == "every_label" else 1

    def do(self, ref):
        ((records, error),) = _attack_recordings(self, [ref])
        if error is not None:
            raise MusadvError(error)
        return records

    def do_many(self, refs):
        return _attack_recordings(self, refs)

    def summarise(self):
        return summarise(self.out, self.model.labels)


@dataclass
class _RecordingJob:
    """One recording made ready to attack: its samples, magnitudes and unfinished targets."""

    rec: Recording
    mag_x: np.ndarray
    stem: str
    targets: list[str]
    quality: Callable | None


def _attack_recordings(c: AttackRun, refs: list[RecordingRef]) -> list[tuple[list | None, str | None]]:
    """Every unfinished example of several recordings (one, done alone), attacked ``c.batch`` at a time
    (:func:`attack_many`; a minimal-perturbation search, one example at a time); per recording its
    records, or the error that stopped it."""
    jobs: dict[int, _RecordingJob] = {}
    errors: dict[int, str] = {}
    for k, ref in enumerate(refs):
        try:
            jobs[k] = _recording_job(c, ref)
        except MusadvError as exc:
            errors[k] = str(exc)
    pairs = [(k, target) for k, job in jobs.items() for target in job.targets]
    records: dict[int, list] = {k: [] for k in jobs}
    size = 1 if c.minimal else c.batch
    for i in range(0, len(pairs), size):
        group = [(k, t) for k, t in pairs[i : i + size] if k not in errors]
        try:
            # A search makes its own attacks (_example); a plain attack is made here, for the whole group.
            results = [None] * len(group) if c.minimal else attack_many(
                c.model, [jobs[k].rec for k, _ in group], [t for _, t in group], c.config,
                rngs=[example_rng(c.seed, f"{jobs[k].stem}--{t}") for k, t in group])
        except MusadvError:  # one recording the model cannot judge (too short): each alone, to know which
            results = [None] * len(group)
            for n, (k, t) in enumerate(group):
                try:
                    results[n] = attack(c.model, jobs[k].rec, t, c.config, rng=example_rng(c.seed, f"{jobs[k].stem}--{t}"))
                except MusadvError as exc:
                    errors.setdefault(k, str(exc))
        for (k, target), result in zip(group, results):
            if k in errors or (result is None and not c.minimal):
                continue
            job = jobs[k]
            try:
                records[k].append(_example(c.model, refs[k], job.rec, job.mag_x, target, c.config, c.out, job.stem,
                                           c.repairs, job.quality, c.minimal, c.seed, result, nmr=c.nmr,
                                           query_check=c.query_check))
            except MusadvError as exc:
                errors[k] = str(exc)
    return [(None, errors[k]) if k in errors else (records[k], None) for k in range(len(refs))]


def _recording_job(c: AttackRun, ref: RecordingRef) -> _RecordingJob:
    """Decode a recording, classify it, choose its targets and write its original."""
    stem = slug(ref.name)
    rec = Recording.from_file(ref.source, c.model.stft.sr, ref.offset, ref.duration, model_rate=c.model_rate)
    audio.check_signal(rec.signal, c.model.stft.sr, c.model.stft.n_fft, ref.source)
    mag_x = magnitude(rec.signal, c.model.stft)  # once per recording, whatever the number of targets
    before = classify_frames(c.model, mag_x, rec.signal, ref.source)
    quality = None
    if c.visqol:
        from .quality import visqol_mos

        quality = lambda rec, written: visqol_mos(rec.samples, written, rec.sr)  # noqa: E731
    # A tag can be added only where it is off, removed only where it is on (a fixed label:NAME is
    # kept: an original that already meets the goal is an example with nothing to change).
    fixed = c.policy.startswith("label:")
    candidates = c.model.labels if fixed else goal_candidates(c.config.goal, c.model.labels, before.confidence)
    if not candidates:
        raise MusadvError(f"{ref.source}: no tag to {c.config.goal} (every tag is already "
                          f"{'on' if c.config.goal == 'add' else 'off'})")
    targets = choose_targets(c.policy, candidates, ref.true_label, before.label, recording_rng(c.seed, ref.name))
    # Written every time: a redone example may be redone because its original was damaged.
    audio.save(c.out / "originals" / f"{stem}.wav", rec.samples, rec.sr, float_wav=not c.config.quantize, on_clip="clip")
    # Asked of the disk: a task run again after its worker died skips what the driver wrote.
    return _RecordingJob(rec, mag_x, stem, [t for t in targets if not (c.out / "examples" / f"{stem}--{t}.json").exists()],
                         quality)


def run_attacks(
    model: DifferentiableClassifier,
    recordings: list[RecordingRef],
    policy: str,
    out_dir: str | os.PathLike,
    config: AttackConfig = AttackConfig(),
    seed: int = 0,
    progress: bool = True,
    extra: dict | None = None,
    model_rate: bool = False,
    repairs: int = 1,
    visqol: bool = False,
    minimal: bool = False,
    engine: Engine | None = None,
    batch: int = 1,
    nmr: bool = False,
    gradient: str = "auto",
    query_check: int = 0,
) -> dict:
    """Attack recordings under a policy and write a run directory (see the module documentation).

    Parameters
    ----------
    model : AudioClassifier
        A network of :mod:`musadv.models` or a wrapped PyTorch module (:mod:`musadv.wrappers`);
        any system with ``config.gradient='queries'`` (the forest, the MFCC baseline).
    recordings : list of RecordingRef
        From :func:`recordings_from_split` or :func:`recordings_from_files`.
    policy : str
        ``random``, ``all_wrong``, ``perfect``, ``every_label`` or ``label:NAME``
        (see :func:`musadv.attack.choose_targets`).
    out_dir : path
    config : AttackConfig
    seed : int
        Seeds the targets of ``random`` and ``all_wrong``; a recording's target depends only on
        the seed and its name, so resumed and partial runs agree.
    progress : bool
        Show a progress bar (on a terminal only).
    extra : dict, optional
        More to record in ``run.json`` (cache, split).
    model_rate : bool
        Write originals and examples mono at the model's rate instead of at each file's own
        rate and channel count.
    repairs : int
        Rounds of more iterations (from the written file) for an example whose decoded file
        misses its target, before giving up on it.
    visqol : bool
        Measure each example's ViSQOL v3 MOS-LQO (audio mode) against its original (about
        3 s per 30 s example on two cores).
    minimal : bool
        Write each example at the highest SNR at which the model says the target
        (:func:`musadv.attack.minimize`, to 0.5 dB; ``config.snr_db`` is the floor): the
        SNR columns are then minimal-perturbation SNRs, ``iterations`` and ``seconds`` cover
        the whole search, and each example's JSON lists the levels tried.
    engine : Engine, optional
        Where the recordings are done (:mod:`musadv.parallel`; default: this process, one after
        another). With the same threads, every engine writes the same files.
    batch : int
        Examples attacked at once (:func:`musadv.attack.attack_many`: one network pass per
        iteration for all of them), which is what makes a GPU pay; each example gets the label,
        success and SNR a batch of 1 gives it (up to float rounding, which may move the iteration
        it stops at), so a run may resume with another batch.
        ``minimal`` searches go one example at a time.
    nmr : bool
        Measure each written file's noise-to-mask ratio against its original's masking threshold
        (:func:`musadv.psychoacoustics.noise_to_mask`; always measured under ``config.masking_db``).
    gradient : {'auto', 'autograd'}
        With ``config.gradient='autograd'``: the model is checked first on the first recording
        (:func:`musadv.checks.check_gradient`; the finding is in ``run.json`` and the metrics'
        ``gradient_check``). A gradient that is missing, zero or not finite makes ``'auto'``
        attack through queries and ``'autograd'`` refuse the run in one line: a gradient attack
        on such a model fails everywhere and reads as robustness.

    query_check : int
        A gradient attack's example whose file misses its goal is tried again through at most this
        many queries (0: not); where queries succeed, the record's ``query_check`` says so and
        the metrics' ``flags`` name a masked gradient.

    Returns
    -------
    dict
        The contents of ``metrics.json`` (with ``gradient_check`` when the model was checked).
    """
    check_policy(policy, model.labels, all(j.true_label for j in recordings))
    if gradient not in ("auto", "autograd"):
        raise MusadvError(f"gradient must be 'auto' or 'autograd', not {gradient!r}")
    check = check_first_recording(model, recordings) if config.gradient == "autograd" else None
    if check is not None:
        if not check.ok:
            if gradient == "autograd":
                raise MusadvError(f"{check.line()}: a gradient attack would read as robustness; attack through "
                                  "queries (--black-box, or --gradient auto)")
            config = replace(config, gradient="queries")
    if repairs < 0:
        raise MusadvError(f"repairs must be >= 0, not {repairs}")
    if not (isinstance(query_check, int) and query_check >= 0):
        raise MusadvError(f"query_check must be an integer >= 0 queries, not {query_check!r}")
    if minimal and config.robust_to:
        raise MusadvError("a minimal perturbation is where the model's label changes; a robust adversary is judged on "
                          "transformed copies too: not both")
    if not (isinstance(batch, int) and batch >= 1):
        raise MusadvError(f"batch must be an integer >= 1, not {batch!r}")
    kind = AttackRun(model, tuple(recordings), policy, Path(out_dir).resolve(), config, seed, model_rate, repairs, visqol,
                     minimal, dict(extra or {}), batch, nmr, check, query_check)
    return drive(kind, engine, progress)


def check_first_recording(model: AudioClassifier, recordings: list[RecordingRef]) -> GradientCheck | None:
    """:func:`musadv.checks.check_gradient` on a run's first recording that decodes (at the model's rate);
    None when none does (each then gets its row in errors.csv)."""
    for ref in recordings:
        try:
            rec = Recording.from_file(ref.source, model.stft.sr, ref.offset, ref.duration, model_rate=True)
            audio.check_signal(rec.signal, model.stft.sr, model.stft.n_fft, ref.source)
            return check_gradient(model, rec.signal, ref.name)
        except MusadvError:  # a recording that cannot be read or judged: its row in errors.csv says why
            continue
    return None


def summarise(out_dir: str | os.PathLike, labels: list[str]) -> dict:
    """Collect the finished examples of a run directory into results.csv, traces.csv and metrics.json."""
    out = Path(out_dir)
    records = read_records(out / "examples")
    # A robust adversary's held-out shares, one column per transformation.
    kinds = sorted({kind for r in records for kind in r.get("held_out", {})})
    fields = RESULT_FIELDS + [f"held_out_{kind}" for kind in kinds]
    # Runs made before a column existed have none: it stays empty.
    write_csv_atomic(out / "results.csv", [{k: r.get(k) for k in fields} for r in records], fields)
    traces = [{"example": r["example"], **t} for r in records for t in r["trace"]]
    trace_fields = ["example", "iteration", "loss", "target_posterior", "snr_db"]
    trace_fields += ["worst_posterior"] if kinds else []
    trace_fields += ["queries"] if any("queries" in t for t in traces) else []
    write_csv_atomic(out / "traces.csv", traces, trace_fields)
    known = [r for r in records if r["true"]]
    changed = [r for r in records if r["snr_wave_db"] is not None]
    column = lambda key: np.array([r[key] for r in changed if r.get(key) is not None], dtype=float)  # noqa: E731
    snr = column("snr_wave_db")
    lost = [r["example"] for r in records if r["success_in_memory"] and not r["success"]]
    stats = lambda a: {"mean": float(a.mean()), "median": float(np.median(a)), "std": float(a.std()), "min": float(a.min()),  # noqa: E731
                       "max": float(a.max())} if len(a) else None
    metrics = {
        "n_examples": len(records),
        "n_skipped": len(read_errors(out)),  # recordings that could not be attacked (errors.csv)
        "success_rate": float(np.mean([r["success"] for r in records])) if records else None,
        "success_rate_in_memory": float(np.mean([r["success_in_memory"] for r in records])) if records else None,
        "lost_when_written": lost,
        "snr_wave_db": stats(snr),
        "snr_trim_db": stats(column("snr_trim_db")),
        # Table III's SNR column: the examples "that led to misclassifications" of the truth.
        "snr_wave_db_misclassified": stats(np.array([r["snr_wave_db"] for r in changed
                                                     if r["true"] and r["decoded_label"] != r["true"]], dtype=float)),
        "snr_mag_db": stats(column("snr_mag_db")),
        "visqol_mos": stats(column("visqol_mos")),
        "nmr_db": stats(column("nmr_db")),
        "above_mask_share": stats(column("above_mask_share")),
        "repaired": sum(1 for r in records if r.get("repairs") and r["success"]),
        "failed": [r["example"] for r in records if not r["success"]],
        "unchanged_examples": len(records) - len(changed),
        "mean_iterations": float(np.mean([r["iterations"] for r in records])) if records else None,
        # Predictions a query-only attack made per example (the repairs' included).
        "queries": stats(np.array([r["queries"] for r in records if r.get("queries") is not None], dtype=float)),
        "mean_seconds": float(np.mean([r["seconds"] for r in records])) if records else None,
        # Over the examples whose written file reached its goal: the share of held-out copies that keep it.
        "held_out": {kind: finite_or_none(float(np.mean([r["held_out"][kind]["kept"] for r in records
                                                         if r["success"] and kind in r.get("held_out", {})] or [np.nan])))
                     for kind in kinds},
    }
    minimal = [r for r in records if "levels" in r]
    if minimal:
        # An example the model already labelled with its target needs no change: SNR inf.
        reached = np.array([math.inf if r["snr_wave_db"] is None else r["snr_wave_db"] for r in minimal if r["success"]])
        metrics["minimal"] = {
            "n_examples": len(minimal), "n_success": len(reached), "n_unchanged": int(np.isinf(reached).sum()),
            "median_snr_db": finite_or_none(float(np.median(reached))) if len(reached) else None,
            "mean_levels": float(np.mean([len(r["levels"]) for r in minimal])),
            "mean_iterations": float(np.mean([r["iterations"] for r in minimal])),
        }
    metrics.update(_before_and_after(known, labels, "label_before", "decoded_label"))
    checked = [r for r in records if r.get("query_check")]
    fooled = [r["example"] for r in checked if r["query_check"]["success"]]
    metrics["query_check"] = {"n_tried": len(checked), "n_fooled": len(fooled), "fooled": fooled} if checked else None
    metrics["flags"] = []
    if fooled:
        metrics["flags"].append(f"masked gradient: queries reached the goal of {len(fooled)} of the {len(checked)} "
                                "examples the gradient attack missed")
    settings = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    if settings.get("gradient_check"):
        metrics["gradient_check"] = {**settings["gradient_check"], "attacked_through": attack_settings(settings)["gradient"]}
    write_json_atomic(out / "metrics.json", metrics)
    return metrics


def _before_and_after(rows: list[dict], labels: list[str], before: str, after: str) -> dict:
    """Figures of merit of the originals (once per recording) and of the adversarial examples."""
    if not rows:
        return {}
    originals = {r["file"]: r for r in rows}  # every_label attacks a recording K times
    fom_before = figures_of_merit([r["true"] for r in originals.values()], [r[before] for r in originals.values()], labels)
    fom_after = figures_of_merit([r["true"] for r in rows], [r[after] for r in rows], labels)
    return {"before": fom_before, "after": fom_after, "normalised_accuracy_before": fom_before["normalised_accuracy"],
            "normalised_accuracy": fom_after["normalised_accuracy"]}


def rescore(system: AudioClassifier, run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Judge the audio of an attack run with another system (e.g. the forest on a DNN's adversaries).

    The adversary attacked one model and knew nothing of ``system``; this decodes every original
    and adversarial WAV of the run and labels them with ``system``, as the paper's Fig. 4(a).

    Parameters
    ----------
    system : AudioClassifier
        Any system of :func:`musadv.systems.load_system`.
    run_dir : path
        A directory written by :func:`run_attacks`.
    out_dir : path, optional
        Default: ``RUN_DIR/rescore-<model folder name>``. Receives ``results.csv`` and
        ``metrics.json`` (figures of merit before and under the attack, success rate).
    """
    run = Path(run_dir)
    records = read_records(run / "examples")
    if not records:
        raise MusadvError(f"{run}: no finished attack examples to re-score")
    name = Path(system.path).name if system.path else re.sub(r"\W+", "_", system.info.get("factory", "system"))
    out = Path(out_dir) if out_dir else run / f"rescore-{name}"
    judged: dict[str, object] = {}

    def judge(rel: str):
        if rel not in judged:
            signal, frames = analyse_file(run / rel, system.stft)
            judged[rel] = classify_frames(system, frames, signal, rel)
        return judged[rel]

    rows = []
    for r in progress_bar(records, desc=f"re-score with {name}", enabled=progress, leave=False):
        before, after = judge(r["original_wav"]), judge(r["wav"])
        goal = r.get("goal", "label")
        success = goal_reached(goal, r["target"], after.label, after.confidence)
        rows.append({"example": r["example"], "file": r["file"], "true": r["true"], "goal": goal, "target": r["target"],
                     "label_before": before.label, "label_after": after.label,
                     "conf_after": after.confidence[after.label], "target_conf_after": after.confidence.get(r["target"], 0.0),
                     "success": int(success), "attacked_model_success": r["success"],
                     "snr_wave_db": r["snr_wave_db"]})
    write_csv_atomic(out / "results.csv", rows)
    # Figures of merit over the recordings whose true label the system has (a genre system made
    # from a tagger may lack some).
    known = [r for r in rows if r["true"] in system.labels]
    metrics = {"system": model_name(system), "run": str(run.resolve()), "n_examples": len(rows),
               "success_rate": float(np.mean([r["success"] for r in rows]))}
    metrics.update(_before_and_after(known, system.labels, "label_before", "label_after"))
    write_json_atomic(out / "metrics.json", metrics)
    return metrics

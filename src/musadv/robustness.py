"""Robustness curves: a system's accuracy under the adversary, and under noise, as the SNR allowed falls.

A system that an adversary can steer at 40 dB has not learned music; a system that white noise at
the same SNR moves is fragile, which is another matter. For each SNR level (dB, whole recording,
every channel, at the file's rate) and each recording of a split, a curve judges the system on:

``adversary``
    The adversarial example within that SNR towards the recording's target (a policy, as attack
    runs). Levels are visited from the highest SNR down and each starts where the previous level
    ended (inside the larger ball); an example that reached its target is kept for every lower
    level, where it is still allowed. Systems that give no gradient (the forest, the MFCC
    baseline) are judged on the examples of a network (transfer, as the paper's Fig. 4(a)).
``white_noise``
    White Gaussian noise.
``shaped_noise``
    Stationary noise with the recording's long-term magnitude spectrum: each channel with the
    phase of its Fourier transform replaced by uniformly random phase.
``random_phase``
    The adversarial perturbation's own STFT magnitudes (Hann 1024, hop 512, at the file's rate)
    with uniformly random phase: the adversary's spectral shape without its phase.

Every control is scaled to exactly the level's SNR (the most the adversary may use) and rounded
to 16 bits as a written file would be; its SNR is measured after rounding. A run directory
holds ``robustness.json`` (settings), ``recordings/*.json`` (one per finished recording: the run
resumes), the adversarial examples as WAV, ``results.csv`` (per recording and level),
``curve.csv``, ``curve.png`` and ``metrics.json``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import __version__, audio
from .attack import AttackConfig, attack, check_policy, choose_targets, snr_db
from .classify import classify_samples
from .errors import MusadvError
from .evaluate import figures_of_merit
from .interface import AudioClassifier, DifferentiableClassifier
from .io import finite_or_none, write_csv_atomic, write_json_atomic
from .driver import RunKind, drive, finished_record, read_errors, read_records, record_files
from .parallel import Engine
from .recording import Recording
from .identity import model_name, system_sha256
from .runs import RecordingRef, attack_settings, check_same_recordings, check_same_settings, recording_rng, slug
from .spectral import STFTConfig, irfft, istft, magnitude, rfft

__all__ = ["robustness_curve", "controls_run", "judge_controls", "summarise_curve", "describe_level", "white_noise", "shaped_noise", "random_phase", "at_snr", "CURVE_FIELDS",
           "DEFAULT_LEVELS", "CONTROLS"]

DEFAULT_LEVELS = (60.0, 50.0, 40.0, 30.0, 20.0, 10.0)
CONTROLS = ("white_noise", "shaped_noise", "random_phase")
CURVE_FIELDS = ["snr_db", "adversary_accuracy", "white_noise_accuracy", "shaped_noise_accuracy",
                "random_phase_accuracy", "success_rate", "adversary_snr_db_median", "adversary_nmr_db_median", "n"]
#: A level's attack gives up when the target's posterior has not risen for this many iterations.
CURVE_PATIENCE = 20
FORMAT = "musadv-robustness-run"


def white_noise(reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Standard white Gaussian noise shaped like ``reference`` ``(n_channels, n_samples)``."""
    return rng.standard_normal(reference.shape).astype(np.float32)


def shaped_noise(reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise with each channel's long-term magnitude spectrum: its Fourier transform with random phase.

    Parameters
    ----------
    reference : np.ndarray
        ``(n_channels, n_samples)``.
    rng : np.random.Generator

    Returns
    -------
    np.ndarray
        Float32, shaped like ``reference``; its magnitude spectrum equals ``reference``'s.
    """
    n = reference.shape[-1]
    spectrum = np.abs(rfft(reference))
    phase = np.exp(2j * np.pi * rng.random(spectrum.shape))
    # The DC bin (and Nyquist's, for even lengths) of a real signal is real: a phase there would be lost.
    phase[..., 0] = 1
    if n % 2 == 0:
        phase[..., -1] = 1
    return irfft(spectrum * phase, n).astype(np.float32)


def random_phase(change: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A perturbation's STFT magnitudes with uniformly random phase (Hann 1024, hop 512, at ``sr`` Hz).

    Parameters
    ----------
    change : np.ndarray
        ``(n_channels, n_samples)``: adversarial example minus original.
    sr : int
        Rate of ``change`` in Hz.
    rng : np.random.Generator

    Returns
    -------
    np.ndarray
        Float32, shaped like ``change``.
    """
    config = STFTConfig(sr=sr)
    mags = torch.from_numpy(magnitude(change, config))
    phase = torch.from_numpy(2 * np.pi * rng.random(tuple(mags.shape)).astype(np.float32))
    spec = torch.polar(mags, phase)
    return istft(spec, config, length=change.shape[-1]).numpy().astype(np.float32)


def at_snr(reference: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """``reference`` plus ``noise`` scaled to ``snr`` dB against it, rounded to 16-bit values.

    Raises
    ------
    ValueError
        If ``noise`` is all zeros (it cannot be scaled to any SNR).
    """
    scale = np.linalg.norm(reference.astype(np.float64)) / 10 ** (snr / 20)
    norm = np.linalg.norm(noise.astype(np.float64))
    if norm == 0:
        raise ValueError("silent noise cannot be scaled to an SNR")
    return audio.quantize_pcm16((reference + noise * (scale / norm)).astype(np.float32))


def robustness_curve(
    system: AudioClassifier,
    recordings: list[RecordingRef],
    out_dir: str | os.PathLike,
    levels=DEFAULT_LEVELS,
    policy: str = "all_wrong",
    config: AttackConfig = AttackConfig(patience=CURVE_PATIENCE),
    seed: int = 0,
    adversary: DifferentiableClassifier | None = None,
    examples_from: str | os.PathLike | None = None,
    progress: bool = True,
    extra: dict | None = None,
    engine: Engine | None = None,
    nmr: bool = False,
) -> dict:
    """Accuracy of ``system`` under the adversary and three noise controls at each SNR level.

    Parameters
    ----------
    system : AudioClassifier
        The system judged (any: network, forest, MFCC baseline, your own).
    recordings : list of RecordingRef
        The recordings (:func:`musadv.runs.recordings_from_split`); true labels give the accuracies.
    out_dir : path
        The run directory (see the module documentation); rerun to resume.
    levels : sequence of float
        SNR levels in dB (any order; visited from the highest).
    policy : str
        Target policy (``random``, ``all_wrong``, ``perfect``, ``label:NAME``): one target per
        recording, seeded by ``seed`` and the recording's name.
    config : AttackConfig
        The adversary's settings; ``snr_db`` is set by each level. Default: scale-free step,
        threshold 0.9, at most 100 iterations per level, giving up after
        :data:`CURVE_PATIENCE` iterations without progress.
    seed : int
        Seeds the targets and the controls' noise.
    adversary : DifferentiableClassifier, optional
        The network whose adversarial examples are judged (default: ``system``, which must then
        give a gradient). Another network gives transfer examples.
    examples_from : path, optional
        A robustness run directory of the adversary whose examples (same recordings, levels,
        policy and seed) are judged instead of attacking again: how the forest and the
        baseline share the DNN's examples in the study.
    progress : bool
    extra : dict, optional
        More to record in ``robustness.json`` (cache, split).
    engine : Engine, optional
        Where the recordings are done (:mod:`musadv.parallel`; default: this process, one after
        another). With the same threads, every engine writes the same files.

    Returns
    -------
    dict
        The contents of ``metrics.json``: ``curve`` (the rows of ``curve.csv``),
        ``clean_accuracy``, ``median_highest_success_snr_db`` (per recording, the highest level
        whose example the system labels with the target, inf where the original already has it
        and -inf where no level does; the median, None when infinite) and
        ``median_highest_success`` (the same in words, :func:`describe_level`).
    """
    levels = sorted({float(v) for v in levels}, reverse=True)
    if not levels:
        raise ValueError("levels must not be empty")
    if policy == "every_label":
        raise MusadvError("a robustness curve takes one target per recording: use random, all_wrong, perfect or label:NAME")
    check_policy(policy, system.labels, all(j.true_label for j in recordings))
    source = None
    if examples_from is not None:
        source = Path(examples_from)
        if not (source / "robustness.json").exists():
            raise MusadvError(f"{source}: not a robustness run (no robustness.json)")
        src = json.loads((source / "robustness.json").read_text())
        if src["levels"] != levels or src["policy"] != policy or src["seed"] != seed:
            raise MusadvError(f"{source}: its levels, policy or seed differ from this run's")
        mine = {j.name for j in recordings}
        theirs = {r["name"] for r in src["recordings"]}
        if not mine <= theirs:
            raise MusadvError(f"{source}: lacks recordings of this run (e.g. {sorted(mine - theirs)[0]})")
        adversary_sha = src["adversary_sha256"]
    else:
        adversary = system if adversary is None else adversary
        if not isinstance(adversary, DifferentiableClassifier):
            raise MusadvError(f"{model_name(system)} gives no gradient: give an adversary network whose examples it "
                              "is judged on (--adversary MODEL), or a robustness run of one (--examples-from DIR)")
        if adversary.stft.sr != system.stft.sr:
            raise MusadvError(f"the adversary analyses {adversary.stft.sr} Hz, the system {system.stft.sr} Hz")
        adversary_sha = system_sha256(adversary)
    run = {"format": FORMAT, "musadv": __version__, "system": model_name(system),
           "system_sha256": system_sha256(system), "adversary": None if source else model_name(adversary),
           "adversary_sha256": adversary_sha, "labels": system.labels, "stft": system.stft.to_dict(),
           "levels": levels, "policy": policy, "seed": seed, "attack": config.to_dict(),
           "examples_from": str(source.resolve()) if source else None,
           "nmr": nmr, "recordings": [asdict(j) for j in recordings], **(extra or {})}
    kind = CurveRun(system, None if source else adversary, tuple(recordings), Path(out_dir).resolve(),
                    source.resolve() if source else None, tuple(levels), policy, config, seed, run, nmr)
    return drive(kind, engine, progress)


class _RecordingRun(RunKind):
    """A run of one piece and one record (``recordings/SLUG.json``) per recording, in one directory ``out``
    whose settings are ``run``: what a curve and a controls run share."""

    record_dir = "recordings"

    def settings(self):
        return {self.out: self.run}

    def pieces(self):
        return list(self.recordings)

    def pending(self, ref):
        return None if (self.out / self.record_dir / f"{slug(ref.name)}.json").exists() else ref

    def name(self, ref):
        return ref.name


@dataclass(frozen=True)
class CurveRun(_RecordingRun):
    """A robustness curve, as the run driver sees it: one piece and one record per recording."""

    system: AudioClassifier
    adversary: DifferentiableClassifier | None
    recordings: tuple[RecordingRef, ...]
    out: Path
    source: Path | None
    levels: tuple
    policy: str
    config: AttackConfig
    seed: int
    run: dict
    nmr: bool = False

    settings_name = "robustness.json"
    desc = "robustness"

    def check_same(self, out, old, new):
        old = {**old, "attack": attack_settings(old)}
        check_same_settings(out, old, new, ("system_sha256", "adversary_sha256", "labels", "stft", "levels", "policy",
                                            "seed", "attack", "examples_from", "nmr"), "robustness run")
        check_same_recordings(out, old, new, "robustness run")

    def do(self, ref):
        record = _recording(self.system, self.adversary, ref, self.out, self.source, self.levels, self.policy,
                            self.config, self.seed, self.nmr)
        return [(self.out / "recordings" / f"{slug(ref.name)}.json", record)]

    def summarise(self):
        return summarise_curve(self.out, self.system.labels)


def _recording(system, adversary, ref: RecordingRef, out: Path, source: Path | None, levels, policy, config, seed,
               nmr: bool = False) -> dict:
    """Every level of one recording: the adversarial example (made or read) and the three controls, judged
    (and, with ``nmr``, the example's noise-to-mask ratio)."""
    name = slug(ref.name)
    rec = Recording.from_file(ref.source, system.stft.sr, ref.offset, ref.duration)
    audio.check_signal(rec.signal, system.stft.sr, system.stft.n_fft, ref.source)
    clean = classify_samples(system, rec.samples, rec.sr, ref.source)
    if source is not None:
        theirs = finished_record(source / "recordings" / f"{name}.json")
        if theirs is None:
            raise MusadvError(f"{ref.name}: the adversary's run has no finished examples for it")
        target, made = theirs["target"], theirs["levels"]
        base = source
    else:
        rng = recording_rng(seed, ref.name)
        before = clean if adversary is system else classify_samples(adversary, rec.samples, rec.sr, ref.source)
        target = choose_targets(policy, adversary.labels, ref.true_label, before.label, rng)[0]
        made = _make_examples(adversary, rec, target, out, name, levels, config)
        base = out
    rows, decoded = [], {}
    for i, (level, ex) in enumerate(zip(levels, made)):
        if ex["wav"] not in decoded:  # an example kept from a higher level is one file: read and judged once
            samples, sr = audio.decode(base / ex["wav"])
            if samples.shape != rec.samples.shape or sr != rec.sr:
                raise MusadvError(f"{base / ex['wav']}: decoded as {samples.shape} at {sr} Hz, not as its original")
            masking = None
            if nmr:
                from .psychoacoustics import noise_to_mask

                masking = noise_to_mask(rec.samples, samples, rec.sr)
            decoded[ex["wav"]] = samples, classify_samples(system, samples, rec.sr, ex["wav"]), masking
        samples, judged, masking = decoded[ex["wav"]]
        controls = judge_controls(system, rec, samples - rec.samples, level, recording_rng(seed, ref.name, i))
        rows.append({"snr_db": level, "wav": ex["wav"], "adversary_success": ex["adversary_success"],
                     "label": judged.label, "target_conf": judged.confidence.get(target, 0.0),
                     "snr_wave_db": finite_or_none(snr_db(rec.samples, samples)), "iterations": ex["iterations"],
                     "nmr_db": finite_or_none(masking["nmr_db"]) if masking else None,
                     "above_mask_share": masking["above_share"] if masking else None, "controls": controls})
    own = [] if source is not None else [out / "originals" / f"{name}.wav", *(out / w for w in decoded)]
    return {"file": ref.name, "true": ref.true_label or "", "target": target, "clean_label": clean.label,
            "original_wav": f"originals/{name}.wav" if source is None else None, "examples_from": str(source) if source else None,
            "levels": rows, "files": record_files(out, own)}


def judge_controls(system: AudioClassifier, rec: Recording, change: np.ndarray | None, level: float,
                   rng: np.random.Generator) -> dict[str, dict]:
    """The system's label of the recording under each of the three controls at ``level`` dB SNR.

    Parameters
    ----------
    system : AudioClassifier
    rec : Recording
        The original, at its file's rate and channels.
    change : np.ndarray or None
        The adversarial example minus the original ``rec.samples.shape`` (None or zeros: no
        example, and the random-phase control is the original).
    level : float
        SNR in dB every control is scaled to.
    rng : np.random.Generator
        The noises' draws.

    Returns
    -------
    dict
        Per control (:data:`CONTROLS`): ``label`` and ``snr_db`` (measured after 16-bit rounding).
    """
    moved = change is not None and np.any(change)
    noises = {"white_noise": white_noise(rec.samples, rng), "shaped_noise": shaped_noise(rec.samples, rng),
              "random_phase": random_phase(change, rec.sr, rng) if moved else None}
    controls = {}
    for kind, noise in noises.items():
        # An unchanged example has no perturbation to take the magnitudes of: its control is the original.
        noisy = rec.samples if noise is None else at_snr(rec.samples, noise, level)
        controls[kind] = {"label": classify_samples(system, noisy, rec.sr, kind).label,
                          "snr_db": finite_or_none(snr_db(rec.samples, noisy))}
    return controls


def controls_run(system: AudioClassifier, recordings: list[RecordingRef], out_dir: str | os.PathLike, levels,
                 examples: dict[float, dict[str, str | None]], seed: int = 0, progress: bool = True,
                 engine: Engine | None = None) -> dict:
    """The three noise controls of every recording at each level, the random-phase one from given examples.

    What a judgement (:mod:`musadv.judge`) sets beside its robust accuracies: the adversary's examples
    come from its attack runs, not from attacking again.

    Parameters
    ----------
    system : AudioClassifier
    recordings : list of RecordingRef
    out_dir : path
        ``controls.json`` (settings), ``recordings/*.json`` (one per finished recording: the run
        resumes), ``results.csv`` and ``metrics.json``.
    levels : sequence of float
        SNRs in dB.
    examples : dict
        Per level, per recording name, the path of its adversarial example (None: not attacked).
    seed : int
        Seeds the noises (per recording and level, as a robustness curve's).

    Returns
    -------
    dict
        ``metrics.json``: per level, each control's normalised accuracy (``controls``) and ``n``.
    """
    levels = tuple(float(v) for v in levels)
    run = {"format": "musadv-controls-run", "musadv": __version__, "system": model_name(system),
           "system_sha256": system_sha256(system), "labels": system.labels, "levels": list(levels), "seed": seed,
           "examples": {f"{k:g}": v for k, v in examples.items()}, "recordings": [asdict(j) for j in recordings]}
    kind = ControlsRun(system, tuple(recordings), Path(out_dir).resolve(), levels, seed, run)
    return drive(kind, engine, progress)


@dataclass(frozen=True)
class ControlsRun(_RecordingRun):
    """Noise controls, as the run driver sees them: one piece and one record per recording."""

    system: AudioClassifier
    recordings: tuple[RecordingRef, ...]
    out: Path
    levels: tuple
    seed: int
    run: dict

    settings_name = "controls.json"
    desc = "controls"

    def check_same(self, out, old, new):
        check_same_settings(out, old, new, ("system_sha256", "labels", "levels", "seed", "examples"), "controls run")
        check_same_recordings(out, old, new, "controls run")

    def do(self, ref):
        rec = Recording.from_file(ref.source, self.system.stft.sr, ref.offset, ref.duration)
        audio.check_signal(rec.signal, self.system.stft.sr, self.system.stft.n_fft, ref.source)
        rows = []
        for i, level in enumerate(self.levels):
            wav = self.run["examples"][f"{level:g}"].get(ref.name)
            change = None
            if wav is not None:
                samples, sr = audio.decode(wav)
                if samples.shape != rec.samples.shape or sr != rec.sr:
                    raise MusadvError(f"{wav}: decoded as {samples.shape} at {sr} Hz, not as its original")
                change = samples - rec.samples
            rows.append({"snr_db": level, "example": wav,
                         "controls": judge_controls(self.system, rec, change, level, recording_rng(self.seed, ref.name, i))})
        record = {"file": ref.name, "true": ref.true_label or "", "levels": rows, "files": {}}
        return [(self.out / "recordings" / f"{slug(ref.name)}.json", record)]

    def summarise(self):
        records = read_records(self.out / "recordings")
        write_csv_atomic(self.out / "results.csv", [
            {"file": r["file"], "true": r["true"], "snr_db": lv["snr_db"],
             **{f"{k}_label": lv["controls"][k]["label"] for k in CONTROLS},
             **{f"{k}_snr_db": lv["controls"][k]["snr_db"] for k in CONTROLS}} for r in records for lv in r["levels"]])
        known = [r for r in records if r["true"]]
        levels = []
        for level in self.levels:
            at = [next(lv for lv in r["levels"] if lv["snr_db"] == level) for r in known]
            levels.append({"snr_db": level, "n": len(known), "labels": {
                k: dict(zip((r["file"] for r in known), (lv["controls"][k]["label"] for lv in at))) for k in CONTROLS}})
        metrics = {"levels": levels, "n_skipped": len(read_errors(self.out))}
        write_json_atomic(self.out / "metrics.json", metrics)
        return metrics


def _make_examples(adversary, rec: Recording, target: str, out: Path, name: str, levels, config) -> list[dict]:
    """The adversary's examples from the highest SNR down, each level going on from the previous one."""
    # Written every time: a redone recording may be redone because its original was damaged.
    audio.save(out / "originals" / f"{name}.wav", rec.samples, rec.sr, float_wav=not config.quantize, on_clip="clip")
    made, result, wav = [], None, None
    for level in levels:
        iterations = 0
        if result is None or not result.success:
            # A success at a higher SNR is allowed at every lower one: it is kept.
            result = attack(adversary, rec, target, replace(config, snr_db=level),
                            start=None if result is None else result.audio)
            iterations = result.iterations
            wav = out / "examples" / f"{name}--{level:g}dB.wav"
            audio.save(wav, result.audio, rec.sr, float_wav=not config.quantize, on_clip="clip")
        made.append({"wav": str(wav.relative_to(out)), "adversary_success": bool(result.success), "iterations": iterations})
    return made


def summarise_curve(out_dir: str | os.PathLike, labels: list[str]) -> dict:
    """Collect the finished recordings of a robustness run into results.csv, curve.csv, curve.png and metrics.json."""
    out = Path(out_dir)
    records = read_records(out / "recordings")
    results, curve = [], []
    for r in records:
        for lv in r["levels"]:
            results.append({"file": r["file"], "true": r["true"], "target": r["target"], "clean_label": r["clean_label"],
                            "snr_db": lv["snr_db"], "label": lv["label"], "success": int(lv["label"] == r["target"]),
                            "adversary_success": int(lv["adversary_success"]), "snr_wave_db": lv["snr_wave_db"],
                            "nmr_db": lv.get("nmr_db"), "above_mask_share": lv.get("above_mask_share"),
                            "iterations": lv["iterations"], "wav": lv["wav"],
                            **{f"{k}_label": lv["controls"][k]["label"] for k in CONTROLS},
                            **{f"{k}_snr_db": lv["controls"][k]["snr_db"] for k in CONTROLS}})
    write_csv_atomic(out / "results.csv", results)
    known = [r for r in records if r["true"]]
    accuracy = lambda pred: (figures_of_merit([r["true"] for r in known], pred, labels)["normalised_accuracy"]  # noqa: E731
                             if known else None)
    levels = sorted({lv["snr_db"] for r in records for lv in r["levels"]}, reverse=True)
    for i, level in enumerate(levels):
        at = lambda r: next(lv for lv in r["levels"] if lv["snr_db"] == level)  # noqa: E731
        snrs = [at(r)["snr_wave_db"] for r in records]
        # An unchanged example's NMR is -inf (stored as None where its SNR is inf too).
        nmrs = [-math.inf if at(r).get("nmr_db") is None else at(r)["nmr_db"] for r in records
                if at(r).get("above_mask_share") is not None]
        curve.append({
            "snr_db": level,
            "adversary_accuracy": accuracy([at(r)["label"] for r in known]),
            **{f"{k}_accuracy": accuracy([at(r)["controls"][k]["label"] for r in known]) for k in CONTROLS},
            "success_rate": float(np.mean([at(r)["label"] == r["target"] for r in records])),
            "adversary_snr_db_median": finite_or_none(float(np.median([math.inf if s is None else s for s in snrs]))),
            "adversary_nmr_db_median": finite_or_none(float(np.median(nmrs))) if nmrs else None,
            "n": len(records),
        })
    write_csv_atomic(out / "curve.csv", curve, CURVE_FIELDS)
    # Per recording, the highest level whose example the system labels with the target (inf: the
    # original already has it; -inf: no level does).
    highest = []
    for r in records:
        if r["clean_label"] == r["target"]:
            highest.append(math.inf)
        else:
            hit = [lv["snr_db"] for lv in r["levels"] if lv["label"] == r["target"]]
            highest.append(max(hit) if hit else -math.inf)
    median = float(np.median(highest)) if highest else math.nan
    metrics = {
        "n_recordings": len(records),
        "n_skipped": len(read_errors(out)),  # recordings that could not be judged (errors.csv)
        "clean_accuracy": accuracy([r["clean_label"] for r in known]),
        "curve": curve,
        "median_highest_success_snr_db": finite_or_none(median),
        "median_highest_success": describe_level(median, min(levels) if levels else math.nan),
        "no_level_succeeded": sum(1 for h in highest if h == -math.inf),
    }
    write_json_atomic(out / "metrics.json", metrics)
    if curve:
        curve_figure(curve, metrics["clean_accuracy"], 1 / len(labels), out / "curve.png",
                     json.loads((out / "robustness.json").read_text())["system"] or "system")
    return metrics


def describe_level(snr: float, lowest: float) -> str:
    """An SNR that may be infinite, in words: ``inf`` needs no change, ``-inf`` is below every level tried."""
    if snr == math.inf:
        return "no change needed"
    if snr == -math.inf:
        return f"not reached at any level (below {lowest:g} dB)"
    return "none" if math.isnan(snr) else f"{snr:.1f} dB"


def curve_figure(curve: list[dict], clean: float | None, chance: float, path: Path, title: str) -> Path:
    """Normalised accuracy against SNR under the adversary and the three controls."""
    from .report import plt

    snr = [row["snr_db"] for row in curve]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    styles = [("adversary_accuracy", "adversary", "C3", "-"), ("white_noise_accuracy", "white noise", "C0", "--"),
              ("shaped_noise_accuracy", "shaped noise", "C2", "--"), ("random_phase_accuracy", "adversary's magnitudes, random phase", "C1", ":")]
    for key, label, color, ls in styles:
        ys = [np.nan if row[key] is None else row[key] for row in curve]
        ax.plot(snr, ys, ls, color=color, marker="o", ms=3, label=label)
    if clean is not None:
        ax.axhline(clean, color="k", lw=0.8, label="clean")
    ax.axhline(chance, color="grey", lw=0.8, ls="-.", label="chance")
    ax.set_xlim(max(snr) + 2, min(snr) - 2)  # the change grows to the right
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel("normalised accuracy")
    ax.set_title(Path(str(title)).name, fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

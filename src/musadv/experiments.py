"""The paper's studies as resumable pipelines: the demo, Table I and Table III.

Each study writes into one output directory and records every finished stage in
``stages/<name>.json``; a rerun into the same directory reuses finished stages (and training
resumes from its checkpoints), so an interrupted study continues where it stopped and a second
run with the same seed reproduces the same numbers.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from . import cache as cache_mod
from . import datasets, partitions, synth
from .attack import AttackConfig
from .evaluate import evaluate_model
from .horse import horse_tests
from .io import write_csv_atomic, write_json_atomic
from .parallel import Engine
from .robustness import CURVE_PATIENCE, describe_level, robustness_curve
from .runs import recordings_from_split, rescore, run_attacks
from .survival import survive
from .systems import load_system, train_baseline, train_forest
from .training import TrainConfig, train
from .transforms import Transformation, mp3_available

__all__ = ["DemoSettings", "run_demo", "run_table1", "run_table3", "PAPER_TABLE1", "PAPER_TABLE3", "MusicnnStudySettings",
           "run_musicnn_study", "spread_over_labels"]

#: The study's horse tests (refs. [48] and [53] of the paper) and the transformations its DNN's
#: adversaries must survive (the authors' WASPAA 2015 follow-up).
HORSE_TRANSFORMS = ("eq", "stretch")
SURVIVAL_TRANSFORMS = ("lowpass", "mp3", "eq")
HORSE_SUMMARY = ("normalised_accuracy", "changed_trials", "changed_recordings", "n_recordings", "snr_db")

#: Table I of the paper (GTZAN, DNN features + RF, normalised accuracy %):
#: (units, layers) -> {"relu": (random partition, fault-filtered), "dropout": (...)}.
PAPER_TABLE1 = {
    (50, "1"): {"relu": (76.0, 40.7), "dropout": (80.4, 45.2)},
    (50, "2"): {"relu": (78.8, 45.2), "dropout": (80.4, 43.1)},
    (50, "3"): {"relu": (79.6, 43.8), "dropout": (78.8, 44.5)},
    (50, "all"): {"relu": (80.4, 43.8), "dropout": (80.0, 43.8)},
    (500, "1"): {"relu": (68.4, 40.3), "dropout": (75.6, 40.7)},
    (500, "2"): {"relu": (74.4, 40.7), "dropout": (80.0, 50.3)},
    (500, "3"): {"relu": (77.6, 43.8), "dropout": (79.2, 48.6)},
    (500, "all"): {"relu": (76.0, 42.4), "dropout": (81.2, 49.0)},
}

#: Table III of the paper (LMD): clean and under the always-wrong adversary, SNR mean +- std (dB).
PAPER_TABLE3 = {
    "DNN": {"clean": 0.63, "attacked": 0.03, "snr_mean": 37.8, "snr_std": 4.6},
    "DNN+ADV": {"clean": 0.55, "attacked": 0.06, "snr_mean": 36.5, "snr_std": 5.4},
    "CDNN": {"clean": 0.63, "attacked": 0.21, "snr_mean": 9.62, "snr_std": 5.8},
    "CDNN+ADV": {"clean": 0.56, "attacked": 0.21, "snr_mean": 9.74, "snr_std": 6.4},
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Stages:
    """Run named stages once; remember their results and durations in ``OUT/stages``."""

    def __init__(self, out: Path, log: Callable[[str], None] = _log):
        self.out, self.log, self.seconds = out, log, {}
        (out / "stages").mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str, fn: Callable[[], dict]) -> dict:
        marker = self.out / "stages" / f"{name}.json"
        if marker.exists():
            rec = json.loads(marker.read_text())
            self.seconds[name] = rec["seconds"]
            self.log(f"[{name}] done in an earlier run ({rec['seconds']:.1f} s)")
            return rec["result"]
        self.log(f"[{name}] ...")
        t = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t
        write_json_atomic(marker, {"result": result, "seconds": dt})
        self.seconds[name] = dt
        self.log(f"[{name}] {dt:.1f} s")
        return result


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo study. :meth:`for_data` picks them for the built-in data or a real dataset."""

    clips: int = 20
    clip_seconds: float = 10.0
    dnn_units: int = 50
    dnn_epochs: int = 100
    dnn_batch: int = 256
    dnn_lr: float = 0.02
    cdnn: tuple = (("patch", 100), ("filters", 8), ("kernel1", (4, 400)), ("kernel2", (8, 8)), ("hidden", 50))
    cdnn_epochs: int = 12
    cdnn_batch: int = 8
    cdnn_lr: float = 0.003
    trees: int = 500
    # Table II's settings with the scale-free step, the same for every network (the paper's raw
    # mu = 0.1 left the CDNN's attacks near 45 dB: its input gradients are far smaller).
    attack: AttackConfig = AttackConfig(snr_db=15.0, threshold=0.9, max_iter=100)
    cdnn_attack_limit: int | None = None
    # Minimal perturbations and robustness curves cost a CDNN several attacks per recording.
    cdnn_search_limit: int | None = 6
    curve_levels: tuple = (60.0, 50.0, 40.0, 30.0, 20.0, 10.0)
    # Draws per recording of the horse tests (each draw is judged by all four systems).
    horse_trials: int = 10
    seed: int = 0

    @classmethod
    def for_data(cls, builtin: bool, quick: bool) -> "DemoSettings":
        if builtin and quick:
            return cls(clips=8, clip_seconds=6.0, dnn_epochs=40, cdnn=(("patch", 50), ("filters", 8), ("kernel1", (4, 64)),
                       ("kernel2", (8, 8)), ("hidden", 50)), cdnn_epochs=5, trees=100,
                       attack=AttackConfig(snr_db=15.0, threshold=0.9, max_iter=50), cdnn_attack_limit=6,
                       cdnn_search_limit=3, curve_levels=(40.0, 20.0), horse_trials=3)
        if builtin:
            return cls()
        # Real recordings of 30 s on two CPU cores: the paper's DNN-500, a slimmer CDNN, and
        # CDNN attacks on part of the test split (each CDNN iteration costs a full conv pass).
        if quick:
            return cls(dnn_units=500, dnn_epochs=10, cdnn_epochs=3, trees=100, cdnn_attack_limit=4, cdnn_search_limit=2,
                       attack=AttackConfig(snr_db=15.0, threshold=0.9, max_iter=30), curve_levels=(40.0, 20.0),
                       horse_trials=5)
        return cls(dnn_units=500, dnn_epochs=40, cdnn_epochs=8, trees=500, cdnn_search_limit=10, horse_trials=20)

    def cdnn_arch(self) -> dict:
        return {"arch": "cdnn", **{k: (list(v) if isinstance(v, tuple) else v) for k, v in self.cdnn}}


def _study_cache(st: Stages, stage: str, folder: Path, data_root: Path, data: str | None, partition: str | None,
                 clips: int, seconds: float, seed: int, progress: bool) -> cache_mod.SpectraCache:
    """Prepare (once) the spectra cache of one partition of the data in ``folder``.

    With ``data`` None the built-in data is generated in ``data_root`` (``clips`` per style of
    ``seconds`` s); without ``partition`` a seeded stratified 50/25/25 partition is made.
    """

    def make():
        if data is None:
            ds = synth.generate(data_root, n_per_style=clips, duration=seconds, seed=seed)
        else:
            ds = datasets.open_dataset(data)
        part = (partitions.load(partition, root=ds.root) if partition
                else partitions.stratified(ds, (0.5, 0.25, 0.25), seed=seed))
        c = cache_mod.prepare(part, folder, progress=progress)
        return {"recordings": len(c.entries), "errors": len(c.errors), "counts": part.counts()}

    st(stage, make)
    return cache_mod.SpectraCache(folder)


def _fom_summary(fom: dict) -> dict:
    keys = ("normalised_accuracy", "accuracy", "n", "binomial_p")
    return {k: fom[k] for k in keys}


def _attack_summary(m: dict) -> dict:
    snr, trim, mos = (m.get(k) or {} for k in ("snr_wave_db", "snr_trim_db", "visqol_mos"))
    return {"normalised_accuracy": m.get("normalised_accuracy"), "normalised_accuracy_before": m.get("normalised_accuracy_before"),
            "success_rate": m["success_rate"], "snr_db_mean": snr.get("mean"), "snr_db_std": snr.get("std"),
            "snr_db_min": snr.get("min"), "snr_db_max": snr.get("max"),
            "snr_trim_db_mean": trim.get("mean"), "snr_trim_db_min": trim.get("min"),
            "visqol_mos_mean": mos.get("mean"), "visqol_mos_min": mos.get("min"), "n_examples": m["n_examples"],
            "mean_iterations": m["mean_iterations"], "mean_seconds": m["mean_seconds"]}


def run_demo(out_dir: str | os.PathLike, data: str | None = None, partition: str | None = None, quick: bool = False,
             progress: bool = True, log: Callable[[str], None] = _log, report: bool = True,
             engine: Engine | None = None, device: torch.device | str = "cpu") -> dict:
    """The whole study in one call: train, test, attack, re-score, report (``musadv demo``).

    Parameters
    ----------
    out_dir : path
        Everything goes here: data (built-in), cache, models, attack runs, ``report.html`` and
        ``summary.json``. A rerun reuses finished stages.
    data : path, optional
        A dataset folder (GTZAN, folders of labels, CSV); default: the built-in data.
    partition : path, optional
        A partition JSON for ``data``; default: seeded stratified 50/25/25.
    quick : bool
        A reduced study (about a minute on the built-in data).
    engine : Engine, optional
        Where the recordings of the attack, robustness, horse and survival stages are done
        (:mod:`musadv.parallel`; default: this process).
    device : torch.device or str
        Where every network trains, is tested and is attacked (see :func:`musadv.devices.resolve_device`).

    Returns
    -------
    dict
        The contents of ``summary.json``.
    """
    out = Path(out_dir)
    st = Stages(out, log)
    settings = DemoSettings.for_data(data is None, quick)
    spectra = _study_cache(st, "prepare", out / "cache", out / "data", data, partition, settings.clips,
                           settings.clip_seconds, settings.seed, progress)
    quiet = dict(progress=progress, log=log)

    def load(path):
        return load_system(path).to(device)

    def fit(name, arch, cfg):
        def run():
            model = train(spectra, arch, out / "models" / name, cfg, resume=True, device=device, **quiet)
            return _fom_summary(evaluate_model(model, spectra, "test", out / "models" / name / "test-test"))
        return run

    systems = {
        "dnn": st("train-dnn", fit("dnn", {"arch": "dnn", "hidden": settings.dnn_units},
                                    TrainConfig(lr=settings.dnn_lr, batch_size=settings.dnn_batch,
                                                max_epochs=settings.dnn_epochs, seed=settings.seed))),
        "cdnn": st("train-cdnn", fit("cdnn", settings.cdnn_arch(),
                                      TrainConfig(lr=settings.cdnn_lr, batch_size=settings.cdnn_batch,
                                                  max_epochs=settings.cdnn_epochs, seed=settings.seed))),
    }

    def forest():
        system = train_forest(load(out / "models" / "dnn"), spectra, "all", n_trees=settings.trees,
                              seed=settings.seed, progress=progress)
        system.save(out / "models" / "dnn_forest")
        return _fom_summary(evaluate_model(load(out / "models" / "dnn_forest"), spectra, "test",
                                           out / "models" / "dnn_forest" / "test-test"))

    def baseline():
        system = train_baseline(spectra, progress=progress)
        system.info["data"] = {"cache": str((out / "cache").resolve())}
        system.save(out / "models" / "mfcc_baseline")
        return _fom_summary(evaluate_model(system, spectra, "test", out / "models" / "mfcc_baseline" / "test-test"))

    systems["dnn_forest"] = st("train-forest", forest)
    systems["mfcc_baseline"] = st("train-baseline", baseline)

    attacks = {}
    for model_name, prefix, limit in (("dnn", "", None), ("cdnn", "cdnn_", settings.cdnn_attack_limit)):
        for policy in ("random", "all_wrong"):
            def run(model_name=model_name, policy=policy, limit=limit, prefix=prefix):
                model = load(out / "models" / model_name)
                cfg = settings.attack
                # ViSQOL costs about as much as a DNN attack: the full study measures it for the
                # DNN's always-wrong and every-label runs, whose examples the report shows.
                m = run_attacks(model, recordings_from_split(spectra, "test", limit), policy, out / "attacks" / f"{prefix}{policy}",
                                cfg, seed=settings.seed, progress=progress,
                                extra={"cache": str((out / "cache").resolve()), "split": "test"},
                                visqol=not quick and model_name == "dnn" and policy == "all_wrong", engine=engine)
                return _attack_summary(m)
            attacks[f"{prefix}{policy}"] = st(f"attack-{prefix}{policy}", run)

    def every_label():
        model = load(out / "models" / "dnn")
        m = run_attacks(model, recordings_from_split(spectra, "test")[:1], "every_label", out / "attacks" / "every_label",
                        settings.attack, seed=settings.seed, progress=progress, visqol=not quick, engine=engine)
        return _attack_summary(m)

    attacks["every_label"] = st("attack-every_label", every_label)
    minimal = {}
    for model_name, limit in (("dnn", None), ("cdnn", settings.cdnn_search_limit)):
        def run_minimal(model_name=model_name, limit=limit):
            m = run_attacks(load(out / "models" / model_name), recordings_from_split(spectra, "test", limit), "all_wrong",
                            out / "attacks" / f"{model_name}_minimal", settings.attack, seed=settings.seed,
                            progress=progress, extra={"cache": str((out / "cache").resolve()), "split": "test"},
                            minimal=True, engine=engine)
            return {**_attack_summary(m), **m["minimal"]}
        minimal[model_name] = st(f"minimize-{model_name}", run_minimal)
    curves = {}
    curve_config = replace(settings.attack, patience=CURVE_PATIENCE)
    for name, limit, source in (("dnn", None, None), ("cdnn", settings.cdnn_search_limit, None),
                                ("dnn_forest", None, "dnn"), ("mfcc_baseline", None, "dnn")):
        def run_curve(name=name, limit=limit, source=source):
            m = robustness_curve(load(out / "models" / name), recordings_from_split(spectra, "test", limit),
                                 out / "robustness" / name, settings.curve_levels, "all_wrong", curve_config,
                                 seed=settings.seed, examples_from=out / "robustness" / source if source else None,
                                 progress=progress, extra={"cache": str((out / "cache").resolve()), "split": "test"},
                                 engine=engine)
            return {"clean_accuracy": m["clean_accuracy"], "curve": m["curve"],
                    "median_highest_success_snr_db": m["median_highest_success_snr_db"],
                    "median_highest_success": m["median_highest_success"], "transfer_from": source}
        curves[name] = st(f"robustness-{name}", run_curve)
    horse = {}
    system_names = ("dnn", "cdnn", "dnn_forest", "mfcc_baseline")
    for kind in HORSE_TRANSFORMS:
        def run_horse(kind=kind):
            transformation = Transformation(kind)
            runs = [(load(out / "models" / name), out / "horse" / f"{name}-{kind}") for name in system_names]
            results = horse_tests(runs, recordings_from_split(spectra, "test"), transformation, settings.horse_trials,
                                  seed=settings.seed, progress=progress,
                                  extra={"cache": str((out / "cache").resolve()), "split": "test"}, engine=engine)
            return {f"{name}-{kind}": {"system": name, "kind": kind, "description": transformation.describe(),
                                       "trials": settings.horse_trials, **{k: m[k] for k in HORSE_SUMMARY}}
                    for name, m in zip(system_names, results)}
        horse.update(st(f"horse-{kind}", run_horse))
    survival = {}
    for kind in SURVIVAL_TRANSFORMS:
        if kind == "mp3" and not mp3_available():
            log("[survive-mp3] skipped: this libsndfile cannot encode MP3")
            continue
        def run_survive(kind=kind):
            transformation = Transformation(kind)
            m = survive(out / "attacks" / "all_wrong", transformation, out / "survive" / f"all_wrong-{kind}",
                        seed=settings.seed, progress=progress, engine=engine, device=device)
            return {"run": "all_wrong", "kind": kind, "description": transformation.describe(), **m}
        survival[f"all_wrong-{kind}"] = st(f"survive-{kind}", run_survive)
    for policy in ("random", "all_wrong"):
        def rescored(policy=policy):
            m = rescore(load(out / "models" / "dnn_forest"), out / "attacks" / policy, progress=progress)
            return {"normalised_accuracy": m.get("normalised_accuracy"),
                    "normalised_accuracy_before": m.get("normalised_accuracy_before"), "success_rate": m["success_rate"]}
        attacks[f"forest_{policy}"] = st(f"rescore-forest-{policy}", rescored)

    # The smallest change that makes each system wrong, per recording, the median: the networks'
    # from the minimal-perturbation search (to 0.5 dB), the feature systems' from the curve's
    # levels (the highest level whose transferred example they label with the target).
    median_minimal = {name: {"median_snr_db": m["median_snr_db"], "how": "attack --minimize (0.5 dB)",
                             "reading": describe_level(math.inf if m["median_snr_db"] is None else m["median_snr_db"], 15.0),
                             "n_examples": m["n_examples"]} for name, m in minimal.items()}
    for name in ("dnn_forest", "mfcc_baseline"):
        median_minimal[name] = {"median_snr_db": curves[name]["median_highest_success_snr_db"],
                                "how": f"transfer only: highest curve level, examples of the {curves[name]['transfer_from']}",
                                "reading": curves[name]["median_highest_success"],
                                "n_examples": curves[name]["curve"][0]["n"] if curves[name]["curve"] else 0}
    summary = {"systems": systems, "attacks": attacks, "minimal": minimal, "robustness": curves,
               "median_minimal_snr_db": median_minimal, "horse": horse, "survival": survival, "seconds": dict(st.seconds),
               "data": "built-in" if data is None else str(data), "quick": quick,
               "settings": {"clips_per_style": settings.clips if data is None else None, "dnn_units": settings.dnn_units,
                            "cdnn": settings.cdnn_arch(), "attack": asdict(settings.attack),
                            "seed": settings.seed}}
    write_json_atomic(out / "summary.json", summary)
    if report:
        from .report import write_report

        t = time.perf_counter()
        write_report(out)
        summary["seconds"]["report"] = time.perf_counter() - t
        write_json_atomic(out / "summary.json", summary)
    return summary


#: musicnn's published taggers that the musicnn study judges as GTZAN genre systems (built-in tag maps).
MUSICNN_STUDY_MODELS = ("MSD_musicnn", "MTT_musicnn")
MUSICNN_SURVIVAL = ("lowpass", "mp3")


@dataclass(frozen=True)
class MusicnnStudySettings:
    """Sizes of the musicnn study (:func:`run_musicnn_study`)."""

    attack: AttackConfig = AttackConfig(snr_db=15.0, threshold=0.9, max_iter=50)
    # Recordings (spread over the covered genres) for the minimal perturbations and the curves:
    # each costs several attacks of a network whose iteration takes a second or more on 30 s.
    search_limit: int | None = 7
    attack_limit: int | None = None
    curve_levels: tuple = (60.0, 50.0, 40.0, 30.0, 20.0, 10.0)
    horse_trials: int = 5
    visqol: bool = True
    seed: int = 0

    @classmethod
    def for_run(cls, quick: bool) -> "MusicnnStudySettings":
        if quick:
            return cls(attack=AttackConfig(snr_db=15.0, threshold=0.9, max_iter=10), search_limit=2, attack_limit=3,
                       curve_levels=(40.0, 20.0), horse_trials=2, visqol=False)
        return cls()


def spread_over_labels(recordings: list, n: int | None) -> list:
    """``n`` of ``recordings`` taken in turn from each label (all of them if ``n`` is None), in the order given."""
    if n is None or n >= len(recordings):
        return list(recordings)
    by_label: dict[str | None, list] = {}
    for j in recordings:
        by_label.setdefault(j.true_label, []).append(j)
    picked, queues = [], [list(q) for q in by_label.values()]
    while len(picked) < n:
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return sorted(picked, key=recordings.index)


def run_musicnn_study(out_dir: str | os.PathLike, data: str | os.PathLike, models=MUSICNN_STUDY_MODELS,
                      tag_map: str = "gtzan", quick: bool = False, progress: bool = True,
                      log: Callable[[str], None] = _log, engine: Engine | None = None,
                      attack_limit: int | None = None) -> dict:
    """Judge musicnn's published taggers as genre systems on a dataset, with no training (``musadv experiment musicnn``).

    Every recording of ``data`` is a test recording (nothing is trained). For each model,
    made a genre system by ``tag_map`` (``musicnn:NAME:MAP``; recordings of genres without a tag
    are left out and counted): its figures of merit; random and always-wrong attacks
    (success on the written files, SNR, ViSQOL for the always-wrong run); minimal perturbations
    and robustness curves beside the three noise controls on recordings spread over the
    genres; horse tests (EQ, time-stretch); survival of the always-wrong adversaries under the
    low-pass and MP3. Writes ``summary.json``; a rerun reuses finished stages.

    ``attack_limit``: attack at most this many recordings per model, spread over the genres
    (default: all; the horse tests and the figures of merit always take every recording). A
    finished stage keeps the recordings it was made with: each attack's ``n_examples`` says how many.
    """
    from .systems import load_system

    out = Path(out_dir)
    st = Stages(out, log)
    settings = MusicnnStudySettings.for_run(quick)
    if attack_limit is not None:
        settings = replace(settings, attack_limit=attack_limit)
    specs = {name: f"musicnn:{name}:{tag_map}" for name in models}
    stft = load_system(specs[models[0]]).stft  # one cache serves every model: they share their analysis

    def prepare():
        ds = datasets.open_dataset(data)
        part = partitions.stratified(ds, (0.0, 0.0, 1.0), seed=settings.seed)
        c = cache_mod.prepare(part, out / "cache", stft, progress=progress)
        return {"recordings": len(c.entries), "errors": len(c.errors), "counts": part.counts()}

    st("prepare", prepare)
    spectra = cache_mod.SpectraCache(out / "cache")
    extra = {"cache": str((out / "cache").resolve()), "split": "test"}
    summary = {"data": str(data), "quick": quick, "models": {}, "seconds": st.seconds,
               "settings": {"attack": asdict(settings.attack), "search_limit": settings.search_limit,
                            "curve_levels": list(settings.curve_levels), "horse_trials": settings.horse_trials,
                            "seed": settings.seed, "tag_map": tag_map}}
    for name, spec in specs.items():
        model = load_system(spec)
        recordings = recordings_from_split(spectra, "test", None, model.labels)
        searched = spread_over_labels(recordings, settings.search_limit)
        attacked = spread_over_labels(recordings, settings.attack_limit)
        res: dict = {"spec": spec, "labels": model.labels, "uncovered": list(model.uncovered_labels)}

        def test(spec=spec):
            fom = evaluate_model(load_system(spec), spectra, "test", out / name / "test")
            return {**_fom_summary(fom), "left_out": fom.get("left_out"), "recall": fom["recall"]}

        res["test"] = st(f"{name}-test", test)
        res["attacks"] = {}
        for policy in ("random", "all_wrong"):
            def attack_run(spec=spec, policy=policy, attacked=attacked):
                m = run_attacks(load_system(spec), attacked, policy, out / name / "attacks" / policy, settings.attack,
                                seed=settings.seed, progress=progress, extra=extra,
                                visqol=settings.visqol and policy == "all_wrong", engine=engine)
                return _attack_summary(m)
            res["attacks"][policy] = st(f"{name}-attack-{policy}", attack_run)

        def minimal(spec=spec, searched=searched):
            m = run_attacks(load_system(spec), searched, "all_wrong", out / name / "attacks" / "minimal", settings.attack,
                            seed=settings.seed, progress=progress, extra=extra, minimal=True, engine=engine)
            return {**_attack_summary(m), **m["minimal"]}

        res["minimal"] = st(f"{name}-minimize", minimal)

        def curve(spec=spec, searched=searched):
            m = robustness_curve(load_system(spec), searched, out / name / "robustness", settings.curve_levels,
                                 "all_wrong", replace(settings.attack, patience=CURVE_PATIENCE), seed=settings.seed,
                                 progress=progress, extra=extra, engine=engine)
            return {"clean_accuracy": m["clean_accuracy"], "curve": m["curve"],
                    "median_highest_success_snr_db": m["median_highest_success_snr_db"],
                    "median_highest_success": m["median_highest_success"]}

        res["robustness"] = st(f"{name}-robustness", curve)
        res["horse"] = {}
        for kind in HORSE_TRANSFORMS:
            def horse(spec=spec, kind=kind, recordings=recordings):
                transformation = Transformation(kind)
                m = horse_tests([(load_system(spec), out / name / "horse" / kind)], recordings, transformation,
                                settings.horse_trials, seed=settings.seed, progress=progress, extra=extra,
                                engine=engine)[0]
                return {"kind": kind, "description": transformation.describe(), "trials": settings.horse_trials,
                        **{k: m[k] for k in HORSE_SUMMARY}}
            res["horse"][kind] = st(f"{name}-horse-{kind}", horse)
        res["survival"] = {}
        for kind in MUSICNN_SURVIVAL:
            if kind == "mp3" and not mp3_available():
                log(f"[{name}-survive-mp3] skipped: this libsndfile cannot encode MP3")
                continue
            def survival(kind=kind):
                transformation = Transformation(kind)
                m = survive(out / name / "attacks" / "all_wrong", transformation, out / name / "survive" / kind,
                            seed=settings.seed, progress=progress, engine=engine)
                return {"kind": kind, "description": transformation.describe(), **m}
            res["survival"][kind] = st(f"{name}-survive-{kind}", survival)
        summary["models"][name] = res
        write_json_atomic(out / "summary.json", summary)
    return summary


def _write_table(out: Path, name: str, title: str, header: list[str], rows: list[list]) -> None:
    write_json_atomic(out / "table.json", {"title": title, "header": header, "rows": rows})
    write_csv_atomic(out / f"{name}.csv", [dict(zip(header, r)) for r in rows], header)
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")


def run_table1(out_dir: str | os.PathLike, data: str | None = None, partition_files: list[str] | None = None,
               quick: bool = False, progress: bool = True, log: Callable[[str], None] = _log) -> list[list]:
    """Table I: normalised accuracy of random forests on DNN features, over the paper's grid.

    Trains DNNs with 50 and 500 units, with and without dropout (0.5), and for each a forest on
    the activations of hidden layer 1, 2, 3 and all; tests each forest on the test split. With
    two partitions (e.g. GTZAN's random and fault-filtered ones) every cell shows both, as the
    paper does. Writes ``table1.csv``, ``table1.md`` and ``report.html`` beside the paper's numbers.

    Parameters
    ----------
    out_dir : path
    data : path, optional
        Dataset; default: the built-in data.
    partition_files : list of path, optional
        One or two partition JSONs; default: one seeded stratified 50/25/25 partition.
    quick : bool
        Small data, few epochs, 100 trees: a few minutes on the built-in data.
    """
    out = Path(out_dir)
    st = Stages(out, log)
    parts = partition_files or [None]
    clips, seconds, epochs, trees = (8, 6.0, 30, 100) if quick else (20, 10.0, 100, 500)
    names = [Path(p).stem if p else "stratified" for p in parts]
    results: dict[tuple, list] = {}
    for name, part in zip(names, parts):
        spectra = _study_cache(st, f"prepare-{name}", out / name / "cache", out / "data", data, part, clips, seconds, 0,
                               progress)
        for units in (50, 500):
            for dropout in (0.0, 0.5):
                tag = f"dnn{units}" + ("-dropout" if dropout else "")
                model_dir = out / name / tag

                def fit(model_dir=model_dir, units=units, dropout=dropout):
                    train(spectra, {"arch": "dnn", "hidden": units, "dropout": dropout}, model_dir,
                          TrainConfig(lr=0.02, batch_size=256, max_epochs=epochs), resume=True, progress=progress, log=log)
                    return {}

                st(f"{name}-{tag}", fit)
                for layers in ("1", "2", "3", "all"):
                    def forest(model_dir=model_dir, layers=layers):
                        system = train_forest(load_system(model_dir), spectra, layers, n_trees=trees, progress=progress)
                        system.save(model_dir.parent / f"{model_dir.name}-forest-{layers}")
                        fom = evaluate_model(load_system(model_dir.parent / f"{model_dir.name}-forest-{layers}"), spectra, "test")
                        return {"normalised_accuracy": fom["normalised_accuracy"]}

                    acc = st(f"{name}-{tag}-forest-{layers}", forest)["normalised_accuracy"]
                    results.setdefault((units, layers, dropout > 0), []).append(100 * acc)
    fmt = lambda vals: f"{vals[0]:.1f}" + (f" ({vals[1]:.1f})" if len(vals) > 1 else "")
    paper = lambda u, lay, key: fmt(PAPER_TABLE1[(u, lay)][key][: len(parts)])
    header = ["hidden units", "layers", "ReLU (ours)", "ReLU (paper)", "ReLU+Dropout (ours)", "ReLU+Dropout (paper)"]
    rows = [[u, lay, fmt(results[(u, lay, False)]), paper(u, lay, "relu"), fmt(results[(u, lay, True)]), paper(u, lay, "dropout")]
            for u in (50, 500) for lay in ("1", "2", "3", "all")]
    cols = " (".join(names) + (")" if len(names) > 1 else "")
    _write_table(out, "table1", f"Table I: normalised accuracy (%) of DNN features + random forest on the test split; "
                                f"ours on {'built-in data' if data is None else data}, partitions: {cols}; "
                                f"paper: GTZAN random (fault-filtered)", header, rows)
    from .report import write_report

    write_report(out)
    return rows


ALG2_NAMES = {"fgsm": "musadv's default (raw-unit sign step towards a wrong label, joined to each batch)",
              "fgsm_reference": "the reference code (standardised-unit step, 15 dB ball per batch, any target, "
                                "adversarial batch alone)"}


def run_table3(out_dir: str | os.PathLike, data: str | None = None, partition: str | None = None,
               quick: bool = False, progress: bool = True, log: Callable[[str], None] = _log,
               alg2: str = "fgsm") -> list[list]:
    """Table III: does training with the adversary (Alg. 2) make the systems robust?

    Trains DNN, DNN+ADV (FGSM, mu 0.25), CDNN and CDNN+ADV; tests each; attacks each test split
    with the ``all_wrong`` policy and no SNR limit; writes normalised accuracy clean and under
    attack and the SNR of the adversarial files that led to a misclassification (mean +- std,
    min, max; as the paper) beside the paper's numbers (LMD) as ``table3.csv``, ``table3.md``
    and ``report.html``.

    ``alg2``: ``'fgsm'`` (musadv's Alg. 2: raw-unit step towards a wrong label, joined to the
    batch) or ``'fgsm_reference'`` (the reference code's variant, see
    :class:`musadv.training.TrainConfig`); the table's title says which.
    """
    out = Path(out_dir)
    st = Stages(out, log)
    settings = DemoSettings.for_data(data is None, quick)
    spectra = _study_cache(st, "prepare", out / "cache", out / "data", data, partition, settings.clips,
                           settings.clip_seconds, settings.seed, progress)
    dnn_cfg = TrainConfig(lr=settings.dnn_lr, batch_size=settings.dnn_batch, max_epochs=settings.dnn_epochs)
    cdnn_cfg = TrainConfig(lr=settings.cdnn_lr, batch_size=settings.cdnn_batch, max_epochs=settings.cdnn_epochs)
    adv = dict(adversarial=alg2, adv_step=0.25)
    systems = [("DNN", {"arch": "dnn", "hidden": settings.dnn_units}, dnn_cfg),
               ("DNN+ADV", {"arch": "dnn", "hidden": settings.dnn_units}, replace(dnn_cfg, **adv)),
               ("CDNN", settings.cdnn_arch(), cdnn_cfg),
               ("CDNN+ADV", settings.cdnn_arch(), replace(cdnn_cfg, **adv))]
    rows = []
    for name, arch, cfg in systems:
        folder = out / "models" / (name.lower().replace("+", "-") + ("-reference" if "ADV" in name and alg2 == "fgsm_reference" else ""))

        def run(arch=arch, cfg=cfg, folder=folder):
            model = train(spectra, arch, folder, cfg, resume=True, progress=progress, log=log)
            attack_cfg = replace(settings.attack, snr_db=None)
            m = run_attacks(model, recordings_from_split(spectra, "test", settings.cdnn_attack_limit if arch["arch"] == "cdnn" else None),
                            "all_wrong", out / "attacks" / folder.name, attack_cfg, progress=progress)
            # Clean and attacked accuracies over the same recordings (CDNN attacks may use a subset).
            # The paper averages the SNR over the examples that led to a misclassification.
            return {"clean": m.get("normalised_accuracy_before"), "attacked": m.get("normalised_accuracy"),
                    "snr": m["snr_wave_db_misclassified"], "success_rate": m["success_rate"]}

        r = st(f"table3-{folder.name}", run)
        p = PAPER_TABLE3[name]
        snr = r["snr"] or {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan")}
        rows.append([name, f"{r['clean']:.2f}", f"{r['attacked']:.2f}", f"{snr['mean']:.1f} ± {snr['std']:.1f}",
                     f"{snr['min']:.1f} / {snr['max']:.1f}", f"{p['clean']:.2f}", f"{p['attacked']:.2f}",
                     f"{p['snr_mean']} ± {p['snr_std']}"])
    header = ["system", "clean (ours)", "under attack (ours)", "SNR dB mean ± std (ours)", "SNR min / max (ours)",
              "clean (paper, LMD)", "under attack (paper)", "SNR dB (paper)"]
    _write_table(out, "table3", "Table III: normalised accuracy clean and under the always-wrong adversary (no SNR limit; "
                                "SNR over the examples that led to a misclassification); "
                                f"ours on {'built-in data' if data is None else data}; Alg. 2 as {ALG2_NAMES[alg2]}", header, rows)
    from .report import write_report

    write_report(out)
    return rows

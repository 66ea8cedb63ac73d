"""The studies as plans of :func:`musadv.judge.judge`: the demo and the musicnn study (the paper's tables, and Table III
extended to today's defences: :mod:`musadv.tables`).

The demo trains the paper's four systems and the musicnn study takes musicnn's published
taggers; both then judge every system under one :class:`~musadv.judge.Plan` and put the
judgements in one leaderboard (:func:`judge_models`): the same protocol, the same recordings,
figures that can be compared. Each study writes into one output directory and records every
finished stage in ``stages/<name>.json``; a rerun into the same directory reuses finished stages
(training resumes from its checkpoints, a judgement from its finished runs), so an interrupted
study continues where it stopped and a second run with the same seed gives the same figures.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from . import cache as cache_mod
from . import datasets, partitions, synth
from .attack import AttackConfig
from .errors import MusadvError
from .io import write_json_atomic
from .judge import PLANS, Plan, judge, leaderboard
from .parallel import Engine
from .runs import recordings_from_split
from .spectral import STFTConfig
from .systems import load_system, train_baseline, train_forest
from .training import TrainConfig, train

__all__ = ["Stages", "study_cache", "stderr_log", "DemoSettings", "DEMO_SYSTEMS", "run_demo", "judge_models",
           "train_demo_systems", "train_network", "open_study", "study_summary", "run_musicnn_study", "spread_over_labels",
           "MUSICNN_STUDY_MODELS"]

#: The paper's systems as the demo trains them: the DNN, the CDNN, the forest on the DNN's features, the MFCC baseline.
DEMO_SYSTEMS = ("dnn", "cdnn", "dnn_forest", "mfcc_baseline")
#: musicnn's published taggers that the musicnn study judges as GTZAN genre systems (built-in tag maps).
MUSICNN_STUDY_MODELS = ("MSD_musicnn", "MTT_musicnn")


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Stages:
    """Run named stages once; remember their results, settings and durations in ``OUT/stages``."""

    def __init__(self, out: Path, log: Callable[[str], None] = stderr_log):
        self.out, self.log, self.seconds = out, log, {}
        (out / "stages").mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str, fn: Callable[[], dict], settings: dict | None = None) -> dict:
        """``fn()``'s result, or the one recorded by an earlier run; one recorded under other ``settings``
        (JSON-ready, compared as JSON) is refused in one line rather than mixed with this run's, and one
        recorded without settings (an earlier musadv's) is taken as done."""
        marker = self.out / "stages" / f"{name}.json"
        if marker.exists():
            rec = json.loads(marker.read_text())
            # None: written before the stage kept its settings (a study folder of an earlier musadv), taken as these.
            if rec.get("settings") is not None and rec["settings"] != json.loads(json.dumps(settings)):
                raise MusadvError(f"{self.out}: its stage {name} was done with other settings ({rec.get('settings')}); "
                                  "run this study into another folder")
            self.seconds[name] = rec["seconds"]
            self.log(f"[{name}] done in an earlier run ({rec['seconds']:.1f} s)")
            return rec["result"]
        self.log(f"[{name}] ...")
        t = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t
        write_json_atomic(marker, {"result": result, "settings": settings, "seconds": dt})
        self.seconds[name] = dt
        self.log(f"[{name}] {dt:.1f} s")
        return result


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo's data and systems. :meth:`for_data` picks them for the built-in data or a real dataset.

    ``plan`` names the :data:`~musadv.judge.PLANS` entry every system is judged under; ``attack``
    and ``cdnn_attack_limit`` are Table III's attacks (:func:`run_table3`).
    """

    clips: int = 20
    clip_seconds: float = 10.0
    fractions: tuple = (0.5, 0.25, 0.25)
    dnn_units: int = 50
    dnn_epochs: int = 100
    dnn_batch: int = 256
    dnn_lr: float = 0.02
    cdnn: tuple = (("patch", 100), ("filters", 8), ("kernel1", (4, 400)), ("kernel2", (8, 8)), ("hidden", 50))
    cdnn_epochs: int = 12
    cdnn_batch: int = 8
    cdnn_lr: float = 0.003
    trees: int = 500
    plan: str = "standard"
    # Table II's settings with the scale-free step, the same for every network (the paper's raw
    # mu = 0.1 left the CDNN's attacks near 45 dB: its input gradients are far smaller).
    attack: AttackConfig = AttackConfig(snr_db=15.0, threshold=0.9, max_iter=100)
    cdnn_attack_limit: int | None = None
    seed: int = 0

    @classmethod
    def for_data(cls, builtin: bool, quick: bool) -> "DemoSettings":
        if builtin and quick:
            return cls(clips=8, clip_seconds=6.0, dnn_epochs=40, cdnn=(("patch", 50), ("filters", 8), ("kernel1", (4, 64)),
                       ("kernel2", (8, 8)), ("hidden", 50)), cdnn_epochs=5, trees=100, plan="quick",
                       attack=AttackConfig(snr_db=15.0, threshold=0.9, max_iter=50), cdnn_attack_limit=6)
        if builtin:
            # One test recording per style of 5 s (a texture window of the forest and the baseline): what judging
            # four systems under the standard plan affords in the 8 minutes the README states.
            return cls(clips=8, clip_seconds=5.0, fractions=(0.625, 0.25, 0.125))
        # Real recordings of 30 s on two CPU cores: the paper's DNN-500 and a slimmer CDNN.
        if quick:
            return cls(dnn_units=500, dnn_epochs=10, cdnn_epochs=3, trees=100, cdnn_attack_limit=4, plan="quick",
                       attack=AttackConfig(snr_db=15.0, threshold=0.9, max_iter=30))
        return cls(dnn_units=500, dnn_epochs=40, cdnn_epochs=8, trees=500)

    def dnn_arch(self) -> dict:
        return {"arch": "dnn", "hidden": self.dnn_units}

    def cdnn_arch(self) -> dict:
        return {"arch": "cdnn", **{k: (list(v) if isinstance(v, tuple) else v) for k, v in self.cdnn}}

    def dnn_config(self) -> TrainConfig:
        """The DNN's training settings, seeded by :attr:`seed`."""
        return TrainConfig(lr=self.dnn_lr, batch_size=self.dnn_batch, max_epochs=self.dnn_epochs, seed=self.seed)

    def cdnn_config(self) -> TrainConfig:
        """The CDNN's training settings, seeded by :attr:`seed`."""
        return TrainConfig(lr=self.cdnn_lr, batch_size=self.cdnn_batch, max_epochs=self.cdnn_epochs, seed=self.seed)


def study_cache(st: Stages, stage: str, folder: Path, data_root: Path, data: str | None, partition: str | None,
                 clips: int, seconds: float, seed: int, progress: bool, fractions=(0.5, 0.25, 0.25),
                 stft=None) -> cache_mod.SpectraCache:
    """Prepare (once) the spectra cache of one partition of the data in ``folder``.

    With ``data`` None the built-in data is generated in ``data_root`` (``clips`` per style of
    ``seconds`` s); without ``partition`` a seeded stratified partition in ``fractions`` is made.
    """
    st(stage, partial(_prepare, folder, data_root, data, partition, clips, seconds, seed, progress, fractions, stft),
       settings={"data": None if data is None else str(Path(data).resolve()),
                 "partition": None if partition is None else str(Path(partition).resolve()),
                 "clips": clips if data is None else None, "clip_seconds": seconds if data is None else None,
                 "fractions": list(fractions) if partition is None else None, "seed": seed,
                 "stft": None if stft is None else asdict(stft)})
    return cache_mod.SpectraCache(folder)


def open_study(out_dir: str | os.PathLike, data: str | None, partition: str | None, quick: bool,
               settings: DemoSettings | None, plan: Plan | None, progress: bool, log: Callable[[str], None]):
    """What a study of trained systems starts from: its folder, its stages, its sizes (default
    :meth:`DemoSettings.for_data`), its plan (default the sizes' own) and its prepared cache.

    Returns
    -------
    tuple
        ``(out, stages, settings, plan, spectra)``.
    """
    out = Path(out_dir)
    st = Stages(out, log)
    settings = settings or DemoSettings.for_data(data is None, quick)
    plan = plan or PLANS[settings.plan]
    spectra = study_cache(st, "prepare", out / "cache", out / "data", data, partition, settings.clips,
                           settings.clip_seconds, settings.seed, progress, settings.fractions)
    return out, st, settings, plan, spectra


def _prepare(folder, data_root, data, partition, clips, seconds, seed, progress, fractions, stft) -> dict:
    if data is None:
        ds = synth.generate(data_root, n_per_style=clips, duration=seconds, seed=seed)
    else:
        ds = datasets.open_dataset(data)
    part = partitions.load(partition, root=ds.root) if partition else partitions.stratified(ds, fractions, seed=seed)
    c = cache_mod.prepare(part, folder, stft or STFTConfig(), progress=progress)
    return {"recordings": len(c.entries), "errors": len(c.errors), "counts": part.counts()}


def _train_network(spectra, folder: Path, arch: dict, config: TrainConfig, device, progress: bool, log) -> dict:
    model = train(spectra, arch, folder, config, resume=True, device=device, progress=progress, log=log)
    return {"best_epoch": model.info["training"]["best_epoch"]}


def train_network(st: Stages, spectra, models: Path, name: str, arch: dict, config: TrainConfig, device,
                  progress: bool, stage: str | None = None) -> Path:
    """Train (once, or resume) one network of a study into ``models/<name>`` as the stage ``stage`` (default
    ``train-<name>``), which keeps its architecture and training settings; its folder."""
    st(stage or f"train-{name}", partial(_train_network, spectra, models / name, arch, config, device, progress, st.log),
       settings={"arch": arch, "train": asdict(config)})
    return models / name


def _train_forest(spectra, dnn_dir: Path, folder: Path, trees: int, seed: int, device, progress: bool) -> dict:
    train_forest(load_system(dnn_dir).to(device), spectra, "all", n_trees=trees, seed=seed, progress=progress).save(folder)
    return {"trees": trees}


def _train_baseline(spectra, folder: Path, progress: bool) -> dict:
    system = train_baseline(spectra, progress=progress)
    system.info["data"] = {"cache": str(spectra.path.resolve())}
    system.save(folder)
    return {}


def train_demo_systems(st: Stages, spectra, models: Path, settings: DemoSettings, device, progress: bool) -> dict[str, Path]:
    """Train (once each) the paper's four systems into ``models/<name>``; their folders by name."""
    train_network(st, spectra, models, "dnn", settings.dnn_arch(), settings.dnn_config(), device, progress)
    train_network(st, spectra, models, "cdnn", settings.cdnn_arch(), settings.cdnn_config(), device, progress)
    st("train-forest", partial(_train_forest, spectra, models / "dnn", models / "dnn_forest", settings.trees,
                               settings.seed, device, progress), settings={"trees": settings.trees, "seed": settings.seed})
    st("train-baseline", partial(_train_baseline, spectra, models / "mfcc_baseline", progress), settings={})
    return {name: models / name for name in DEMO_SYSTEMS}


def _judge_stage(spec, recordings: list, folder: Path, plan: Plan, seed: int, progress: bool, engine, device,
                 data: dict) -> dict:
    e = judge(load_system(spec).to(device), recordings, folder, plan, seed=seed, progress=progress, engine=engine, data=data)
    return {**e["headline"], "clean_interval": e["clean"]["interval"], "n": e["clean"]["n"],
            "flags": [f["flag"] for f in e["flags"]], "evaluation": str(Path("judgements") / folder.name / "evaluation.json")}


def judge_models(st: Stages, models: dict, recordings: list, out: Path, plan: Plan, seed: int = 0,
                 progress: bool = True, engine: Engine | None = None, device: torch.device | str = "cpu",
                 data: dict | None = None) -> tuple[dict, list[dict]]:
    """Judge every model on the same recordings under one plan, and put them in one leaderboard.

    Parameters
    ----------
    st : Stages
        Each judgement is the stage ``judge-<name>``.
    models : dict
        Name -> model spec (a model directory, ``musicnn:...``; anything :func:`~musadv.systems.load_system` loads).
    recordings : list of RecordingRef
    out : Path
        Judgements go to ``out/judgements/<name>``, the leaderboard to ``out/leaderboard``.
    plan : Plan
    seed, progress, engine, device, data
        As :func:`musadv.judge.judge` (``device``: where each network is judged).

    Returns
    -------
    tuple
        Each model's headline (:func:`musadv.judge.headline`, with its clean interval, flags and
        evaluation file) by name, and the leaderboard's rows.
    """
    verdicts = {name: st(f"judge-{name}", partial(_judge_stage, spec, recordings, out / "judgements" / name, plan, seed,
                                                   progress, engine, device, dict(data or {})),
                         settings={"plan": plan.to_dict(), "seed": seed})
                for name, spec in models.items()}
    return verdicts, leaderboard([out / "judgements" / name for name in models], out / "leaderboard")


def study_summary(out: Path, st: Stages, verdicts: dict, rows: list, plan: Plan, report: bool, **more) -> dict:
    """Write ``summary.json`` (and, with ``report``, ``report.html``) of a judged study; ``more``: what else it records."""
    summary = {"systems": verdicts, "leaderboard": rows, "plan": plan.to_dict(), "seconds": dict(st.seconds), **more}
    write_json_atomic(out / "summary.json", summary)
    if report:
        from .report import write_report

        write_report(out)
    return summary


def run_demo(out_dir: str | os.PathLike, data: str | None = None, partition: str | None = None, quick: bool = False,
             progress: bool = True, log: Callable[[str], None] = stderr_log, report: bool = True,
             engine: Engine | None = None, device: torch.device | str = "cpu", plan: Plan | None = None,
             settings: DemoSettings | None = None) -> dict:
    """The paper's study in one call (``musadv demo``): train its four systems, judge each, rank them.

    Parameters
    ----------
    out_dir : path
        Everything goes here: data (built-in), cache, models, ``judgements/<system>`` (each with
        its ``evaluation.json`` and ``report.html``), ``leaderboard/``, ``summary.json`` and
        ``report.html``. A rerun reuses finished stages.
    data : path, optional
        A dataset folder (GTZAN, folders of labels, CSV); default: the built-in data.
    partition : path, optional
        A partition JSON for ``data``; default: seeded stratified 50/25/25.
    quick : bool
        Smaller systems judged under the ``quick`` plan (the full demo: ``standard``).
    engine : Engine, optional
        Where each judgement's runs do their recordings (:mod:`musadv.parallel`; default: this process).
    device : torch.device or str
        Where every network trains and is judged (see :func:`musadv.devices.resolve_device`).
    plan : Plan, optional
        Judge under this plan instead.
    settings : DemoSettings, optional
        Other sizes of data and systems (default: :meth:`DemoSettings.for_data`).

    Returns
    -------
    dict
        The contents of ``summary.json``: each system's headline (``systems``), the leaderboard's
        rows, the plan and the seconds of every stage.
    """
    out, st, settings, plan, spectra = open_study(out_dir, data, partition, quick, settings, plan, progress, log)
    models = train_demo_systems(st, spectra, out / "models", settings, device, progress)
    verdicts, rows = judge_models(st, models, recordings_from_split(spectra, "test"), out, plan, settings.seed, progress,
                                  engine, device, {"cache": str(spectra.path.resolve()), "split": "test"})
    return study_summary(out, st, verdicts, rows, plan, report, data="built-in" if data is None else str(data),
                          quick=quick, settings={"clips_per_style": settings.clips if data is None else None,
                                                 "fractions": list(settings.fractions) if partition is None else None,
                                                 "dnn_units": settings.dnn_units, "cdnn": settings.cdnn_arch(),
                                                 "trees": settings.trees, "seed": settings.seed})


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
                      log: Callable[[str], None] = stderr_log, engine: Engine | None = None, limit: int | None = None,
                      plan: Plan | None = None, device: torch.device | str = "cpu", report: bool = True) -> dict:
    """Judge musicnn's published taggers as genre systems on a dataset, with no training (``musadv experiment musicnn``).

    Every recording of ``data`` is a test recording. Each model is made a genre system by
    ``tag_map`` (``musicnn:NAME:MAP``) and judged under ``plan`` (default ``quick`` or
    ``standard``) on the recordings of the genres every model has a tag for, so that the
    leaderboard compares like with like; ``limit`` takes at most that many, spread over the genres.
    """
    out = Path(out_dir)
    st = Stages(out, log)
    specs = {name: f"musicnn:{name}:{tag_map}" for name in models}
    systems = [load_system(spec) for spec in specs.values()]
    covered = [lab for lab in systems[0].labels if all(lab in s.labels for s in systems)]
    # One cache serves every model: they share their analysis.
    spectra = study_cache(st, "prepare", out / "cache", out / "data", str(data), None, 0, 0.0, 0, progress,
                           fractions=(0.0, 0.0, 1.0), stft=systems[0].stft)
    recordings = spread_over_labels(recordings_from_split(spectra, "test", None, covered), limit)
    plan = plan or PLANS["quick" if quick else "standard"]
    verdicts, rows = judge_models(st, specs, recordings, out, plan, 0, progress, engine, device,
                                  {"cache": str(spectra.path.resolve()), "split": "test", "genres": covered})
    return study_summary(out, st, verdicts, rows, plan, report, data=str(data), quick=quick, tag_map=tag_map,
                          genres=covered)

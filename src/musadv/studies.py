"""What every study is built from: named stages that run once and resume, its sizes of data and
networks (:class:`DemoSettings`), its spectra cache, its networks trained, and its systems judged
under one plan into one leaderboard. The studies themselves are :mod:`musadv.experiments` (the demo,
the musicnn study) and :mod:`musadv.tables` (the paper's tables, Table III extended).

Each study writes into one output directory and records every finished stage in
``stages/<name>.json`` with its settings; a rerun into the same directory reuses finished stages
(training resumes from its checkpoints, a judgement from its finished runs) and refuses a stage
recorded under other settings, so an interrupted study continues where it stopped and never mixes
two runs' results.
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
from .spectral import STFTConfig
from .systems import load_system
from .training import TrainConfig, train

__all__ = ["Stages", "stderr_log", "DemoSettings", "study_cache", "open_study", "train_network", "judge_models",
           "study_summary"]


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
    and ``cdnn_attack_limit`` are Table III's attacks (:func:`~musadv.tables.run_table3`).
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

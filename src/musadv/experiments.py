"""The studies as plans of :func:`musadv.judge.judge`: the demo and the musicnn study (the paper's tables, and Table III
extended to today's defences: :mod:`musadv.tables`; what every study is built from: :mod:`musadv.studies`).

The demo trains the paper's four systems and the musicnn study takes musicnn's published
taggers; both then judge every system under one :class:`~musadv.judge.Plan` and put the
judgements in one leaderboard (:func:`~musadv.studies.judge_models`): the same protocol, the same
recordings, figures that can be compared. A rerun into the same directory reuses finished stages.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from .judge import PLANS, Plan
from .parallel import Engine
from .runs import recordings_from_split
from .studies import DemoSettings, Stages, judge_models, open_study, stderr_log, study_cache, study_summary, train_network
from .systems import load_system, train_baseline, train_forest

__all__ = ["DEMO_SYSTEMS", "run_demo", "train_demo_systems", "run_musicnn_study", "spread_over_labels",
           "MUSICNN_STUDY_MODELS"]

#: The paper's systems as the demo trains them: the DNN, the CDNN, the forest on the DNN's features, the MFCC baseline.
DEMO_SYSTEMS = ("dnn", "cdnn", "dnn_forest", "mfcc_baseline")
#: musicnn's published taggers that the musicnn study judges as GTZAN genre systems (built-in tag maps).
MUSICNN_STUDY_MODELS = ("MSD_musicnn", "MTT_musicnn")


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

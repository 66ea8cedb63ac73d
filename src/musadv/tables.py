"""The paper's Tables I and III as resumable studies (``musadv experiment table1|table3``), beside the paper's numbers;
and Table III extended to the defences that work on images (``musadv experiment defences``).

Each writes ``TABLE.csv``, ``TABLE.md``, ``table.json`` and ``report.html`` into its output
directory; its stages are those of :class:`musadv.studies.Stages` (a rerun reuses them).
The extended Table III is a plan of :func:`musadv.judge.judge`: every defended system is judged
under one plan on the same recordings, so that a defence that only masks its gradient meets the
query-only adversary, and the table is read from the judgements' ``evaluation.json`` files.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .certification import certify_recordings
from .evaluate import evaluate_model
from .io import markdown_table, write_bytes_atomic, write_csv_atomic, write_json_atomic
from .judge import Plan, read_evaluation
from .parallel import Engine
from .runs import recordings_from_split, run_attacks
from .studies import DemoSettings, Stages, judge_models, open_study, stderr_log, study_cache, study_summary, train_network
from .systems import load_system, train_forest
from .training import TrainConfig

__all__ = ["run_table1", "run_table3", "run_table3_extended", "DefenceSettings", "defence_configs", "defence_table",
           "paired_larger_change", "certificate_table", "PAPER_TABLE1", "PAPER_TABLE3"]

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


def _write_table(out: Path, name: str, title: str, header: list[str], rows: list[list]) -> None:
    write_json_atomic(out / "table.json", {"title": title, "header": header, "rows": rows})
    write_csv_atomic(out / f"{name}.csv", [dict(zip(header, r)) for r in rows], header)
    (out / f"{name}.md").write_text("\n".join([f"# {title}", "", *markdown_table(header, rows)]) + "\n")


def run_table1(out_dir: str | os.PathLike, data: str | None = None, partition_files: list[str] | None = None,
               quick: bool = False, progress: bool = True, log: Callable[[str], None] = stderr_log) -> list[list]:
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
        spectra = study_cache(st, f"prepare-{name}", out / name / "cache", out / "data", data, part, clips, seconds, 0,
                               progress)
        for units in (50, 500):
            for dropout in (0.0, 0.5):
                tag = f"dnn{units}" + ("-dropout" if dropout else "")
                model_dir = train_network(st, spectra, out / name, tag, {"arch": "dnn", "hidden": units, "dropout": dropout},
                                          TrainConfig(lr=0.02, batch_size=256, max_epochs=epochs), "cpu", progress,
                                          stage=f"{name}-{tag}")
                for layers in ("1", "2", "3", "all"):
                    def forest(model_dir=model_dir, layers=layers):
                        system = train_forest(load_system(model_dir), spectra, layers, n_trees=trees, progress=progress)
                        system.save(model_dir.parent / f"{model_dir.name}-forest-{layers}")
                        fom = evaluate_model(load_system(model_dir.parent / f"{model_dir.name}-forest-{layers}"), spectra, "test")
                        return {"normalised_accuracy": fom["normalised_accuracy"]}

                    acc = st(f"{name}-{tag}-forest-{layers}", forest,
                             settings={"trees": trees, "layers": layers})["normalised_accuracy"]
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
               quick: bool = False, progress: bool = True, log: Callable[[str], None] = stderr_log,
               alg2: str = "fgsm", settings: DemoSettings | None = None) -> list[list]:
    """Table III: does training with the adversary (Alg. 2) make the systems robust?

    Trains DNN, DNN+ADV (FGSM, mu 0.25), CDNN and CDNN+ADV; tests each; attacks each test split
    with the ``all_wrong`` policy and no SNR limit; writes normalised accuracy clean and under
    attack and the SNR of the adversarial files that led to a misclassification (mean +- std,
    min, max; as the paper) beside the paper's numbers (LMD) as ``table3.csv``, ``table3.md``
    and ``report.html``.

    ``alg2``: ``'fgsm'`` (musadv's Alg. 2: raw-unit step towards a wrong label, joined to the
    batch) or ``'fgsm_reference'`` (the reference code's variant, see
    :class:`musadv.training.TrainConfig`); the table's title says which. ``settings``: other sizes
    of data, training and attacks (default: :meth:`musadv.studies.DemoSettings.for_data`, but
    on the full built-in data :class:`~musadv.studies.DemoSettings`' own sizes: 20 clips of
    10 s per style, where the demo judges one test recording per style).
    """
    out = Path(out_dir)
    st = Stages(out, log)
    settings = settings or (DemoSettings() if data is None and not quick else DemoSettings.for_data(data is None, quick))
    spectra = study_cache(st, "prepare", out / "cache", out / "data", data, partition, settings.clips,
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

        train_network(st, spectra, folder.parent, folder.name, arch, cfg, "cpu", progress)
        attack_cfg = replace(settings.attack, snr_db=None)
        limit = settings.cdnn_attack_limit if arch["arch"] == "cdnn" else None

        def run(folder=folder, attack_cfg=attack_cfg, limit=limit):
            m = run_attacks(load_system(folder), recordings_from_split(spectra, "test", limit), "all_wrong",
                            out / "attacks" / folder.name, attack_cfg, progress=progress)
            # Clean and attacked accuracies over the same recordings (CDNN attacks may use a subset).
            # The paper averages the SNR over the examples that led to a misclassification.
            return {"clean": m.get("normalised_accuracy_before"), "attacked": m.get("normalised_accuracy"),
                    "snr": m["snr_wave_db_misclassified"], "success_rate": m["success_rate"]}

        r = st(f"table3-{folder.name}", run, settings={"attack": attack_cfg.to_dict(), "limit": limit})
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


@dataclass(frozen=True)
class DefenceSettings:
    """The defences of the extended Table III and their settings.

    Attributes
    ----------
    archs : tuple of {'dnn', 'cdnn'}
        The networks defended (sizes from :class:`~musadv.studies.DemoSettings`).
    adv_snr_db, adv_steps, trades_beta : float, int, float
        PGD's and TRADES's budget (dB SNR on each element's magnitudes), attack steps and beta.
    adv_epochs : int, optional
        The most epochs PGD and TRADES train for (default: the plain network's). Training on
        attacked examples converges more slowly than plain training, so a study's plain budget
        can leave them undertrained.
    smoothing_snr_db : float
        The smoothed systems' noise, and the level their bases are trained with (dB below -20 dBFS).
    smoothing_copies : int
        Noisy copies per prediction of a smoothed system when it is judged.
    certify_n0, certify_n : int
        Copies that select and that bound each recording's certified label.
    """

    archs: tuple = ("dnn", "cdnn")
    adv_snr_db: float = 30.0
    adv_steps: int = 5
    trades_beta: float = 6.0
    adv_epochs: int | None = None
    smoothing_snr_db: float = 30.0
    smoothing_copies: int = 8
    certify_n0: int = 100
    certify_n: int = 1000


def defence_configs(base: TrainConfig, defences: DefenceSettings) -> dict[str, TrainConfig]:
    """Each defended training of one network, by the suffix of its model's name (``noise``: a smoothed system's base)."""
    attack = dict(adv_snr_db=defences.adv_snr_db, adv_steps=defences.adv_steps,
                  max_epochs=defences.adv_epochs or base.max_epochs)
    return {"": base, "fgsm": replace(base, adversarial="fgsm", adv_step=0.25),
            "pgd": replace(base, adversarial="pgd", **attack),
            "trades": replace(base, adversarial="trades", trades_beta=defences.trades_beta, **attack),
            "noise": replace(base, noise_snr_db=defences.smoothing_snr_db)}


def _f(v, digits=2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def paired_larger_change(evaluation: dict, baseline: dict) -> tuple[float | None, int]:
    """How much larger a system's smallest changes are than the baseline's, recording by recording.

    Two medians over each system's own correct recordings compare different recordings; this
    compares the same ones.

    Parameters
    ----------
    evaluation, baseline : dict
        Two judgements' evaluations (:func:`musadv.judge.read_evaluation`) on the same recordings.

    Returns
    -------
    median_db, n : float or None, int
        The median over the ``n`` recordings whose smallest change both searches reached of the
        baseline's SNR minus the system's (dB; positive: the system needs the larger change).
        None where there is no such recording or an evaluation predates per-recording figures.
    """
    mine = (evaluation["smallest_change"] or {}).get("snr_db_by_recording") or {}
    theirs = (baseline["smallest_change"] or {}).get("snr_db_by_recording") or {}
    both = [f for f in mine if mine[f] is not None and theirs.get(f) is not None]
    return (float(np.median([theirs[f] - mine[f] for f in both])) if both else None), len(both)


def defence_table(judged: list[tuple[str, dict, dict | None]]) -> tuple[list[str], list[list[str]]]:
    """The extended Table III's rows, each read from a judgement's evaluation.

    Parameters
    ----------
    judged : list of (name, evaluation, baseline evaluation or None)
        Each system's ``evaluation.json`` (:func:`musadv.judge.read_evaluation`) and that of the
        undefended system its smallest change is compared with.

    Returns
    -------
    header, rows
        Per system: its defence as recorded, clean and robust normalised accuracy at each budget
        (the worst over the plan's target policies), the median smallest change (dB SNR) and how
        many dB larger than the undefended system's it is, both as a difference of the two medians
        and paired over the recordings both get right (:func:`paired_larger_change`, with their
        number), the gap between the adversary and the noise controls at 30 dB, and the verdict.
    """
    budgets = sorted({r["snr_db"] for _, e, _ in judged for r in e["robust"]}, reverse=True)
    header = (["system", "defence", "clean"] + [f"robust {b:g} dB" for b in budgets]
              + ["smallest change, median (dB SNR)", "larger than undefended by (dB)",
                 "larger, paired: median (recordings)", "gap to noise at 30 dB", "verdict"])
    rows = []
    for name, e, base in judged:
        median = (e["smallest_change"] or {}).get("median_snr_db")
        base_median = ((base or {}).get("smallest_change") or {}).get("median_snr_db")
        worst = [min((r["normalised_accuracy"] for r in e["robust"] if r["snr_db"] == b), default=None) for b in budgets]
        gaps = [r["gap"] for r in e["robust"] if r["snr_db"] == 30.0 and r.get("gap") is not None]
        paired, n = paired_larger_change(e, base) if base is not None else (None, 0)
        rows.append([name, e["model"].get("defence") or "none", _f(e["clean"]["normalised_accuracy"])]
                    + [_f(w) for w in worst]
                    + [_f(median, 1), _f(None if base is None or median is None or base_median is None else base_median - median, 1),
                       "—" if paired is None else f"{paired:.1f} ({n})", _f(max(gaps) if gaps else None),
                       e["headline"]["verdict"]])
    return header, rows


def certificate_table(runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Rows of smoothed systems' certifications, each read from a ``certify.json`` (:mod:`musadv.certification`)."""
    header = ["smoothed system", "noise (dB below -20 dBFS)", "recordings", "abstained", "certified accuracy at any radius"]
    budgets = sorted({b for run in runs for b in run["budgets"]}, reverse=True)
    header += [f"certified at {b:g} dB" for b in budgets] + ["certified SNR, median (min-max)"]
    rows = []
    for run in runs:
        r = run["results"]
        snr = r["certified_snr_db"]
        rows.append([run["system"], f"{run['smoothing']['snr_db']:g}", str(r["n_recordings"]), _f(r["abstained"]),
                     _f(r["certified_accuracy"]["any"])] + [_f(r["certified_accuracy"].get(f"{b:g}")) for b in budgets]
                    + ["—" if snr is None else f"{snr['median']:.1f} ({snr['min']:.1f}-{snr['max']:.1f})"])
    return header, rows





def _certify_stage(spec: str, recordings: list, folder: Path, defences: DefenceSettings, budgets, engine, device,
                   progress: bool) -> dict:
    system = load_system(spec).to(device)
    return certify_recordings(system, recordings, folder, n0=defences.certify_n0, n=defences.certify_n, budgets=budgets,
                              engine=engine, progress=progress)


def run_table3_extended(out_dir: str | os.PathLike, data: str | None = None, partition: str | None = None,
                        quick: bool = False, progress: bool = True, log: Callable[[str], None] = stderr_log,
                        engine: Engine | None = None, device: torch.device | str = "cpu", plan: Plan | None = None,
                        settings: DemoSettings | None = None, defences: DefenceSettings = DefenceSettings(),
                        report: bool = True) -> dict:
    """Table III extended (``musadv experiment defences``): does any defence make a network hear music?

    Trains each network of ``defences.archs`` plainly, with Alg. 2 (FGSM), with PGD and with TRADES
    (:mod:`musadv.adversarial_training`), and on noise as the base of a smoothed system
    (:mod:`musadv.smoothing`); judges every one (the smoothed ones by their votes) under one plan on
    the test recordings; certifies the smoothed ones; and writes ``table3-extended.md`` and
    ``.csv`` (:func:`defence_table`, :func:`certificate_table`), the leaderboard, ``summary.json``
    and ``report.html``.

    Parameters
    ----------
    out_dir : path
    data, partition, quick, progress, log, engine, device
        As :func:`musadv.experiments.run_demo`.
    plan : Plan, optional
        Default: the plan of ``settings`` (``standard``, ``quick`` with ``quick``).
    settings : DemoSettings, optional
        Sizes of data and networks (default: :meth:`DemoSettings.for_data`).
    defences : DefenceSettings

    Returns
    -------
    dict
        The contents of ``summary.json``, with the certifications' results (``certified``).
    """
    out, st, settings, plan, spectra = open_study(out_dir, data, partition, quick, settings, plan, progress, log)
    networks = {"dnn": (settings.dnn_arch(), settings.dnn_config()), "cdnn": (settings.cdnn_arch(), settings.cdnn_config())}
    specs, baselines, smoothed = {}, {}, {}
    for arch_name in defences.archs:
        arch, base = networks[arch_name]
        for suffix, config in defence_configs(base, defences).items():
            name = f"{arch_name}_{suffix}" if suffix else arch_name
            train_network(st, spectra, out / "models", name, arch, config, device, progress)
            if suffix != "noise":
                specs[name] = str(out / "models" / name)
            baselines[name] = arch_name
        name = f"{arch_name}_smoothed"
        specs[name] = smoothed[name] = (f"smooth:{out / 'models' / f'{arch_name}_noise'}"
                                        f"@{defences.smoothing_snr_db:g}x{defences.smoothing_copies}")
        baselines[name] = arch_name
    recordings = recordings_from_split(spectra, "test")
    data_id = {"cache": str(spectra.path.resolve()), "split": "test"}
    verdicts, rows = judge_models(st, specs, recordings, out, plan, settings.seed, progress, engine, device, data_id)
    certified = {name: st(f"certify-{name}", partial(_certify_stage, spec, recordings, out / "certified" / name, defences,
                                                    plan.budgets_db, engine, device, progress),
                          settings={"n0": defences.certify_n0, "n": defences.certify_n})
                 for name, spec in smoothed.items()}
    evaluations = {name: read_evaluation(out / "judgements" / name) for name in specs}
    header, table = defence_table([(name, e, evaluations[baselines[name]] if baselines[name] != name else None)
                                   for name, e in evaluations.items()])
    cert_header, cert_rows = certificate_table([json.loads((out / "certified" / name / "certify.json").read_text())
                                                for name in smoothed])
    write_csv_atomic(out / "table3-extended.csv", [dict(zip(header, r)) for r in table], header)
    title = (f"Table III extended: each defence judged under the {plan.name} plan on {len(recordings)} test recordings "
             f"({'built-in data' if data is None else data}); the smallest change beside the undefended network's")
    lines = [f"# {title}", "", *markdown_table(header, table), "", "Smoothed systems' certificates (Cohen et al.'s CERTIFY, "
             f"n = {defences.certify_n}):", "", *markdown_table(cert_header, cert_rows)]
    write_bytes_atomic(out / "table3-extended.md", ("\n".join(lines) + "\n").encode())
    return study_summary(out, st, verdicts, rows, plan, report, data="built-in" if data is None else str(data), quick=quick,
                         defences=asdict(defences), certified=certified)

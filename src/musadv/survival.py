"""Do adversarial examples survive irrelevant transformations? (the authors' WASPAA 2015 question)

The adversary's perturbations sit mostly at high frequencies (the paper's Fig. 5); a 9 kHz
low-pass, an MP3 round-trip or a minor EQ may remove what fooled the system while the music
stays as it was. :func:`survive` applies one :class:`~musadv.transforms.Transformation` to every
adversarial example of an attack run and to its original (the same draw for both, seeded by
the seed and the example alone), writes both as 16-bit WAV, classifies the written files and
reports, over the examples that reached their target where the original had another label:

``survived``
    The share whose transformed example still gets the adversary's target.
``returned``
    The share whose transformed example gets the original's label again (the label the system
    gave the original before the attack).
``original_kept``
    As a control, the share of transformed originals that keep the original's label: how much
    the transformation alone moves the system.

and the SNR of each transformed example against its transformed original (beside the SNR of the
example against the original). A survival directory holds ``survive.json`` (settings and, under
``results``, the figures), ``examples/*.json`` (one per finished example: the run resumes),
``transformed/`` (WAV) and ``survive.csv``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__, audio
from .attack import goal_reached, snr_db
from .classify import classify_samples
from .errors import MusadvError
from .interface import AudioClassifier
from .io import finite_or_none, write_csv_atomic, write_json_atomic
from .parallel import Engine, LocalEngine
from .progress import progress_bar
from .runs import check_same_settings, model_name, recording_rng, system_sha256
from .systems import load_system
from .taggers import tag_changes, tag_changes_summary
from .transforms import Transformation

__all__ = ["survive", "summarise_survival", "FORMAT"]

FORMAT = "musadv-survival"


def _check_same_survival(out: Path, old: dict, new: dict) -> None:
    """Refuse to mix two survival runs in one directory: one line naming what differs."""
    check_same_settings(out, old, new, ("run", "system_sha256", "transformation", "seed"), "survival run")


def survive(
    run_dir: str | os.PathLike,
    transformation: Transformation,
    out_dir: str | os.PathLike | None = None,
    system: AudioClassifier | None = None,
    seed: int = 0,
    progress: bool = True,
    engine: Engine | None = None,
) -> dict:
    """Transform every example of an attack run and its original, and judge both again.

    Parameters
    ----------
    run_dir : path
        An attack run (:func:`musadv.runs.run_attacks`).
    transformation : Transformation
        Applied at each file's own rate and channels.
    out_dir : path, optional
        Default: ``RUN_DIR/survive-<kind>``. Rerun to resume.
    system : AudioClassifier, optional
        The system that judges (default: the model the run attacked, loaded from where the run
        says, which must still have the weights it attacked). Another system asks whether
        transferred examples survive.
    seed : int
        With each example's name, seeds its draw of a random transformation.
    progress : bool
    engine : Engine, optional
        Where the examples are done (:mod:`musadv.parallel`; default: this process, one after
        another). With the same threads, every engine writes the same files.

    Returns
    -------
    dict
        The figures, ``survive.json``'s ``results`` (:func:`summarise_survival`).
    """
    run = Path(run_dir)
    if not (run / "run.json").exists():
        raise MusadvError(f"{run}: not an attack run (no run.json)")
    meta = json.loads((run / "run.json").read_text())
    records = [json.loads(p.read_text()) for p in sorted((run / "examples").glob("*.json"))]
    if not records:
        raise MusadvError(f"{run}: no finished attack examples")
    if system is None:
        if not meta.get("model"):
            raise MusadvError(f"{run}: does not say which model it attacked; give the system")
        system = load_system(meta["model"])
        if system_sha256(system) != meta["model_sha256"]:
            raise MusadvError(f"{meta['model']}: its weights have changed since the run attacked it; give the system")
    out = Path(out_dir) if out_dir else run / f"survive-{transformation.kind}"
    settings = {"format": FORMAT, "musadv": __version__, "run": str(run.resolve()), "system": model_name(system),
                "system_sha256": system_sha256(system), "attacked_model": meta.get("model"),
                "transformation": transformation.settings(), "description": transformation.describe(), "seed": seed}
    settings_file = out / "survive.json"
    if settings_file.exists():
        old = json.loads(settings_file.read_text())
        _check_same_survival(out, old, settings)
        settings["results"] = old.get("results")
    write_json_atomic(settings_file, settings)
    errors = []
    pending = [r for r in records if not (out / "examples" / f"{r['example']}.json").exists()]
    context = _SurvivalContext(system, run.resolve(), out.resolve(), transformation, seed)
    bar = progress_bar(total=len(records), initial=len(records) - len(pending), desc=f"survive ({transformation.kind})",
                       unit="example", enabled=progress)
    for r, record, error in (engine or LocalEngine()).map(_survival_example, context, pending, shared=[settings_file]):
        if error:
            errors.append({"example": r["example"], "error": error})
        else:
            write_json_atomic(out / "examples" / f"{r['example']}.json", record)  # last: marks the example as finished
        bar.update(1)
    bar.close()
    write_csv_atomic(out / "errors.csv", sorted(errors, key=lambda e: e["example"]), ["example", "error"])
    return summarise_survival(out)


@dataclass(frozen=True)
class _SurvivalContext:
    """What every example of a survival run needs (given once to each worker process)."""

    system: AudioClassifier
    run: Path
    out: Path
    transformation: Transformation
    seed: int


def _survival_example(c: _SurvivalContext, r: dict) -> dict:
    return _example(c.system, c.run, r, c.out, c.transformation, c.seed)


def _example(system: AudioClassifier, run: Path, r: dict, out: Path, transformation: Transformation, seed: int) -> dict:
    """One example and its original, transformed alike, written, and judged from the written files."""
    params = transformation.draw(recording_rng(seed, r["example"]))
    judged, written, tags = {}, {}, {}
    for kind, rel in (("original", r["original_wav"]), ("example", r["wav"])):
        samples, sr = audio.decode(run / rel)
        if kind == "example" and system.activation == "sigmoid":
            # The example's tags before the change, as this system hears them: what the change turns on and off.
            tags["likelihoods_before"] = classify_samples(system, samples, sr, str(run / rel)).confidence
        wav = out / "transformed" / f"{r['example']}--{kind}.wav"
        audio.save(wav, transformation.apply(samples, sr, params), sr, on_clip="clip")
        written[kind], wsr = audio.decode(wav)
        judged[kind] = classify_samples(system, written[kind], wsr, str(wav))
    before = r["label_before"]
    after = judged["example"]
    goal = r.get("goal", "label")
    survived = goal_reached(goal, r["target"], after.label, after.confidence)
    return {"example": r["example"], "file": r["file"], "true": r["true"], "goal": goal, "target": r["target"],
            "label_before": before, "attack_success": bool(r["success"]),
            # An original that already met the goal changed nothing: not an adversary.
            "already_met": goal_reached(goal, r["target"], before, r["confidence_before"]),
            "snr_db_before": r["snr_wave_db"], "params": params,
            "original_label": judged["original"].label, "label": after.label,
            "target_conf": after.confidence.get(r["target"], 0.0), "survived": survived,
            # For a tag, back to its original state; for a label, the original's label again.
            "returned": after.label == before if goal == "label" else not survived,
            "snr_db": finite_or_none(snr_db(written["original"], written["example"])),
            **tags, **({"likelihoods": after.confidence} if tags else {}),
            "wav": str((out / "transformed" / f"{r['example']}--example.wav").relative_to(out)),
            "original_wav": str((out / "transformed" / f"{r['example']}--original.wav").relative_to(out))}


def summarise_survival(out_dir: str | os.PathLike) -> dict:
    """Collect the finished examples of a survival run into survive.csv and the ``results`` of survive.json.

    Returns
    -------
    dict
        ``n_examples``; ``n_adversarial`` (examples that reached a target other than the
        original's label);
        over those, ``survived``, ``returned`` and ``other`` (shares); ``original_kept`` (share of
        transformed originals, over all examples, that keep the original's label); the median
        SNR before (example against original) and after (transformed against transformed).
    """
    out = Path(out_dir)
    settings = {k: v for k, v in json.loads((out / "survive.json").read_text()).items() if k != "results"}
    records = [json.loads(p.read_text()) for p in sorted((out / "examples").glob("*.json"))]
    for r in records:
        # An attack whose goal the original already met changed no decision: not an adversary.
        r["adversarial"] = r["attack_success"] and not r["already_met"]
    for r in records:
        if "likelihoods" in r:
            r["tags_gained"], r["tags_lost"] = (" ".join(t) for t in tag_changes(r["likelihoods_before"], r["likelihoods"]))
    rows = [{k: (" ".join(f"{x:g}" for x in v) if isinstance(v, list) else v)
             for k, v in {**{x: r[x] for x in r if x not in ("params", "likelihoods", "likelihoods_before")},
                          **r["params"]}.items()} for r in records]
    write_csv_atomic(out / "survive.csv", rows)
    adversarial = [r for r in records if r["adversarial"]]
    share = lambda rs, key: float(np.mean([r[key] for r in rs])) if rs else None  # noqa: E731
    median = lambda key: (finite_or_none(float(np.median([np.inf if r[key] is None else r[key] for r in adversarial])))  # noqa: E731
                          if adversarial else None)
    results = {
        "n_examples": len(records),
        "n_adversarial": len(adversarial),
        "survived": share(adversarial, "survived"),
        "returned": share(adversarial, "returned"),
        "other": (float(np.mean([not (r["survived"] or r["returned"]) for r in adversarial])) if adversarial else None),
        "original_kept": (float(np.mean([r["original_label"] == r["label_before"] for r in records])) if records else None),
        "median_snr_db_before": median("snr_db_before"),
        "median_snr_db_after": median("snr_db"),
        # A tagger's (or a genre system made from one): tags the change turned on and off in the examples.
        "tags": tag_changes_summary([(r["likelihoods_before"], r["likelihoods"]) for r in records if "likelihoods" in r]),
    }
    write_json_atomic(out / "survive.json", {**settings, "results": results})
    return results

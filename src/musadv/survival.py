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
    The share whose transformed example gets the original's label again (the label the judging
    system gives the original: the attack's own record when it is the attacked model).
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
import torch

from . import __version__, audio
from .attack import goal_reached, snr_db
from .classify import classify_samples
from .errors import MusadvError
from .interface import AudioClassifier
from .io import finite_or_none, write_csv_atomic, write_json_atomic
from .driver import RunKind, drive, read_errors, read_records, record_files
from .parallel import Engine
from .identity import model_name, system_sha256
from .runs import check_same_settings, recording_rng
from .systems import load_system
from .taggers import tag_changes, tag_changes_summary
from .transforms import Transformation

__all__ = ["survive", "summarise_survival", "FORMAT"]

FORMAT = "musadv-survival"


def survive(
    run_dir: str | os.PathLike,
    transformation: Transformation,
    out_dir: str | os.PathLike | None = None,
    system: AudioClassifier | None = None,
    seed: int = 0,
    progress: bool = True,
    engine: Engine | None = None,
    device: torch.device | str = "cpu",
    draws: int = 1,
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
    device : torch.device or str
        Where the model the run names is loaded (a ``system`` given stays where it is).
    draws : int
        Draws of a random transformation per example, each applied to the example and its
        original alike (a fixed transformation is applied once); the shares are over all draws.
        The first draw is the one a run of one draw makes.

    Returns
    -------
    dict
        The figures, ``survive.json``'s ``results`` (:func:`summarise_survival`).
    """
    run = Path(run_dir)
    if not (run / "run.json").exists():
        raise MusadvError(f"{run}: not an attack run (no run.json)")
    meta = json.loads((run / "run.json").read_text())
    records = read_records(run / "examples")
    if not records:
        raise MusadvError(f"{run}: no finished attack examples")
    if not (isinstance(draws, int) and draws >= 1):
        raise MusadvError(f"draws must be an integer >= 1, not {draws!r}")
    draws = draws if transformation.random else 1
    from_run = system is None  # the model the run names, which must still be the one it attacked
    if from_run:
        if not meta.get("model"):
            raise MusadvError(f"{run}: does not say which model it attacked; give the system")
        system = load_system(meta["model"]).to(device)
    sha = system_sha256(system)
    if from_run and sha != meta["model_sha256"]:
        raise MusadvError(f"{meta['model']}: its weights have changed since the run attacked it; give the system")
    attacked = sha == meta["model_sha256"] and system.labels == meta["labels"]
    out = Path(out_dir) if out_dir else run / f"survive-{transformation.kind}"
    settings = {"format": FORMAT, "musadv": __version__, "run": str(run.resolve()), "system": model_name(system),
                "system_sha256": sha, "attacked_model": meta.get("model"),
                "transformation": transformation.settings(), "description": transformation.describe(), "seed": seed,
                "draws": draws}
    pieces = tuple((r, d) for r in records for d in range(draws))
    kind = SurvivalRun(system, attacked, run.resolve(), out.resolve(), pieces, transformation, seed, settings)
    return drive(kind, engine, progress)


@dataclass(frozen=True)
class SurvivalRun(RunKind):
    """A survival run, as the run driver sees it: one piece and one record per attack example and draw."""

    system: AudioClassifier
    attacked: bool  # the system is the model the run attacked
    run: Path
    out: Path
    examples: tuple
    transformation: Transformation
    seed: int
    run_settings: dict

    settings_name = "survive.json"
    record_dir = "examples"
    unit = "example"
    error_key = "example"

    @property
    def desc(self):
        return f"survive ({self.transformation.kind})"

    def settings(self):
        return {self.out: self.run_settings}

    def check_same(self, out, old, new):
        # A run made before draws existed made one.
        check_same_settings(out, {"draws": 1, **old}, new, ("run", "system_sha256", "transformation", "seed", "draws"),
                            "survival run")

    def pieces(self):
        return list(self.examples)

    def pending(self, piece):
        return None if (self.out / "examples" / f"{self.name(piece)}.json").exists() else piece

    def name(self, piece):
        r, draw = piece
        return _draw_name(r["example"], draw)

    def do(self, piece):
        r, draw = piece
        record = _example(self.system, self.attacked, self.run, r, self.out, self.transformation, self.seed, draw)
        return [(self.out / "examples" / f"{self.name(piece)}.json", record)]

    def summarise(self):
        return summarise_survival(self.out)


def _draw_name(example: str, draw: int) -> str:
    """The name of an example's draw in a survival run (the first draw's is the example's own)."""
    return example if draw == 0 else f"{example}--draw{draw}"


def _example(system: AudioClassifier, attacked: bool, run: Path, r: dict, out: Path, transformation: Transformation,
             seed: int, draw: int = 0) -> dict:
    """One example and its original, transformed alike (draw number ``draw``), written, and judged from the written files.

    What the system said before the change is the attack's record where the system is the model
    the run attacked (``attacked``), else the system's own judgement of the run's files.
    """
    params = transformation.draw(recording_rng(seed, r["example"], *([draw] if draw else [])))
    name = _draw_name(r["example"], draw)
    judged, written, unchanged = {}, {}, {}
    for kind, rel in (("original", r["original_wav"]), ("example", r["wav"])):
        samples, sr = audio.decode(run / rel)
        if not attacked:
            unchanged[kind] = classify_samples(system, samples, sr, str(run / rel))
        wav = out / "transformed" / f"{name}--{kind}.wav"
        audio.save(wav, transformation.apply(samples, sr, params), sr, on_clip="clip")
        written[kind], wsr = audio.decode(wav)
        judged[kind] = classify_samples(system, written[kind], wsr, str(wav))
    goal = r.get("goal", "label")
    if attacked:
        before, before_conf = r["label_before"], r["confidence_before"]
        success, example_conf = bool(r["success"]), r["decoded_confidence"]
    else:
        before, before_conf = unchanged["original"].label, unchanged["original"].confidence
        example_conf = unchanged["example"].confidence
        success = goal_reached(goal, r["target"], unchanged["example"].label, example_conf)
    after = judged["example"]
    survived = goal_reached(goal, r["target"], after.label, after.confidence)
    # A tagger's likelihoods of the example before and after the change: what the change turns on and off.
    tags = {"likelihoods_before": example_conf, "likelihoods": after.confidence} if system.activation == "sigmoid" else {}
    wavs = [out / "transformed" / f"{name}--{kind}.wav" for kind in ("example", "original")]
    return {"example": r["example"], "draw": draw, "file": r["file"], "true": r["true"], "goal": goal, "target": r["target"],
            "label_before": before, "attack_success": success,
            # An original that already met the goal changed nothing: not an adversary.
            "already_met": goal_reached(goal, r["target"], before, before_conf),
            "snr_db_before": r["snr_wave_db"], "params": params,
            "original_label": judged["original"].label, "label": after.label,
            "target_conf": after.confidence.get(r["target"], 0.0), "survived": survived,
            # For a tag, back to its original state; for a label, the original's label again.
            "returned": after.label == before if goal == "label" else not survived,
            "snr_db": finite_or_none(snr_db(written["original"], written["example"])),
            **tags, "wav": str(wavs[0].relative_to(out)), "original_wav": str(wavs[1].relative_to(out)),
            "files": record_files(out, wavs)}


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
    records = read_records(out / "examples")
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
        # Each record is one draw of one example; the shares are over draws.
        "n_examples": len({r["example"] for r in records}),
        "n_draws": settings.get("draws", 1),
        "n_skipped": len(read_errors(out)),  # examples that could not be judged (errors.csv)
        "n_adversarial": len({r["example"] for r in adversarial}),
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

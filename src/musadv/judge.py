"""One standardized verdict for any model: a plan of the existing run kinds, its figures in ``evaluation.json``.

``musadv judge`` asks of a model what the paper asks: has it learned music, or is it a horse?
A :class:`Plan` fixes the protocol (AutoAttack's idea, for music): the clean figures, the model
checks (:func:`musadv.checks.check_gradient`), and at each SNR budget the robust accuracy under
the worst of two adversaries, the gradient one and the query-only one, the second run only on
the recordings the first left correct, so that a masked gradient cannot make a model look
robust; then (``standard``) the smallest change that makes each recording wrong.

The gradient adversary goes from the smallest budget (the highest SNR) to the largest: what it
fooled within a budget it has fooled within every larger one (the example lies inside the larger
ball too), so only the rest is attacked again. The query-only adversary goes the other way: at
the largest budget it tries every recording the gradient left correct, and at each smaller one
only those it has not already failed on within a larger ball (an adversary that finds nothing
in a ball finds nothing in a ball inside it), which spares most of its queries on a model whose
gradient works. Every attack
is a run directory of :func:`musadv.runs.run_attacks` under the stage's folder, so a killed
judgement resumes where it stopped and refuses to mix two models' or two protocols' runs.

:func:`judge` returns and writes ``evaluation.json`` (:data:`SCHEMA`, version
:data:`SCHEMA_VERSION`): model and data identity, protocol, every setting, every figure with its
95 % interval, the flags with their reasons and a headline; ``timings`` is the only part that
differs between two runs with one seed. :func:`write_judgement_report` writes ``report.html``
from that file alone, :func:`leaderboard` puts several in one table.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .adversarial_training import describe_training
from .attack import AttackConfig
from .classify import classify_file
from .errors import MusadvError
from .evaluate import figures_of_merit
from .interface import AudioClassifier, DifferentiableClassifier, system_name
from .io import markdown_table, write_bytes_atomic, write_csv_atomic, write_json_atomic
from .identity import model_name, system_sha256
from .runs import RecordingRef, check_first_recording, run_attacks
from .smoothing import SMOOTH, SmoothedClassifier

__all__ = ["Plan", "PLANS", "read_plan", "judge", "defence", "headline", "flat_success", "accuracy_figures", "bootstrap_interval", "read_evaluation", "write_judgement_report", "leaderboard", "comparable_data",
           "SCHEMA", "SCHEMA_VERSION", "PROTOCOL"]

SCHEMA, SCHEMA_VERSION = "musadv-evaluation", 1
#: The protocol's name and version: two evaluations are comparable when both and the plan's settings agree.
PROTOCOL = {"name": "musadv-judge", "version": 2}
#: Flags that say a model's gradient cannot be trusted: its robustness is then unproven, not shown.
MASKING_FLAGS = ("gradient", "masked gradient", "flat")
#: Resamples of the recordings behind every 95 % interval.
BOOTSTRAP_DRAWS = 2000
#: Queries fooling at least this share of the recordings a gradient attack left correct flag a masked gradient:
#: a working gradient is the stronger adversary at the same budget.
MASKED_SHARE = 0.5


@dataclass(frozen=True)
class Plan:
    """What a judgement runs: the protocol's settings.

    Attributes
    ----------
    name : str
    budgets_db : tuple of float
        SNR budgets (dB) of the robust accuracies; the adversary's change is at most this far below
        the music.
    policies : tuple of str
        Target policies of the attacks (``all_wrong``, ``random``; :func:`musadv.attack.choose_targets`).
    max_iter : int
        Steps of each attack.
    max_queries : int
        Predictions the query-only adversary may ask per recording.
    controls : bool
        Whether to judge the three noise controls (:mod:`musadv.robustness`) at each budget, and the
        gap between them and the adversary.
    minimize : bool
        Whether to search each recording's smallest change (the median SNR and its interval).
    minimize_floor_db : float
        The lowest SNR (dB) that search goes down to.
    perceptual : bool
        Whether the smallest changes are measured by ear's models too: their noise-to-mask ratio
        (:func:`musadv.psychoacoustics.noise_to_mask`) and ViSQOL MOS-LQO (:mod:`musadv.quality`).
    survival : tuple of str
        Transformations (:class:`musadv.transforms.Transformation` kinds) applied to the smallest
        changes' examples (:func:`musadv.survival.survive`): the share that still says its target.
    horse : tuple of str
        Irrelevant transformations (:class:`musadv.transforms.Transformation` kinds) of the horse
        tests (:func:`musadv.horse.horse_test`): how far choosing a draw per recording moves the
        accuracy.
    horse_trials : int
        Draws per recording of each.
    """

    name: str
    budgets_db: tuple[float, ...]
    policies: tuple[str, ...]
    max_iter: int = 100
    max_queries: int = 1000
    controls: bool = True
    minimize: bool = False
    minimize_floor_db: float = 10.0
    perceptual: bool = False
    survival: tuple[str, ...] = ()
    horse: tuple[str, ...] = ()
    horse_trials: int = 10

    def __post_init__(self):
        if not self.budgets_db or not all(isinstance(b, (int, float)) and np.isfinite(b) for b in self.budgets_db):
            raise ValueError(f"budgets_db must be one or more finite SNRs in dB, not {self.budgets_db!r}")
        unknown = [p for p in self.policies if p not in ("all_wrong", "random")]
        if not self.policies or unknown:
            raise ValueError(f"policies must be among 'all_wrong' and 'random', not {list(self.policies)!r}")
        from .transforms import KINDS

        for name in ("horse", "survival"):
            unknown = [k for k in getattr(self, name) if k not in KINDS]
            if unknown:
                raise ValueError(f"{name} must be among {', '.join(KINDS)}, not {', '.join(unknown)}")
        if (self.perceptual or self.survival) and not self.minimize:
            raise ValueError("perceptual and survival measure the smallest changes: they need minimize")
        for name in ("max_iter", "max_queries", "horse_trials"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, not {value!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "budgets_db": list(self.budgets_db), "policies": list(self.policies),
                "horse": list(self.horse), "survival": list(self.survival)}


PLANS = {
    # CI-sized: one budget, one policy, a short query budget.
    "quick": Plan("quick", (30.0,), ("all_wrong",), max_iter=50, max_queries=300),
    # What the leaderboard uses. The queries after a gradient attack are most of its time (recordings the gradient
    # left at 40 dB): 500 a recording keeps it near a quarter of an hour for 25 recordings of 30 s on two cores.
    "standard": Plan("standard", (40.0, 30.0, 20.0), ("all_wrong", "random"), max_queries=500, minimize=True,
                     perceptual=True, survival=("lowpass", "mp3", "eq"), horse=("eq", "stretch", "lowpass", "mp3", "room")),
}


def read_plan(spec: str) -> Plan:
    """``quick``, ``standard`` or a JSON file of :class:`Plan`'s fields; refused in one line otherwise."""
    if spec in PLANS:
        return PLANS[spec]
    path = Path(spec)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MusadvError(f"{spec}: not a plan ({', '.join(PLANS)}) nor a readable JSON file ({exc})") from None
    known = {f.name for f in fields(Plan)}
    if not isinstance(data, dict) or set(data) - known:
        raise MusadvError(f"{spec}: a plan file is an object of {sorted(known)}")
    try:
        return Plan(**{**data, "name": data.get("name", path.stem), "budgets_db": tuple(data.get("budgets_db", ())),
                       "policies": tuple(data.get("policies", ())), "horse": tuple(data.get("horse", ())),
                       "survival": tuple(data.get("survival", ()))})
    except (TypeError, ValueError) as exc:
        raise MusadvError(f"{spec}: {exc}") from None


def bootstrap_interval(statistic, n: int, seed: int, draws: int = BOOTSTRAP_DRAWS) -> list[float] | None:
    """The 95 % percentile interval of ``statistic(indices)`` over resamples of ``n`` items (None for none)."""
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(draws)], dtype=float)
    values = values[np.isfinite(values)]
    return [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))] if len(values) else None


def accuracy_figures(y_true: list[str], y_pred: list[str], labels: list[str], seed: int) -> dict:
    """Normalised accuracy (mean recall over the labels present), accuracy, per-label recall, the
    confusion and a bootstrap 95 % interval of the normalised accuracy."""
    fom = figures_of_merit(y_true, y_pred, labels)
    t, p = np.array(y_true, dtype=object), np.array(y_pred, dtype=object)

    def normalised(idx):
        return figures_of_merit(list(t[idx]), list(p[idx]), labels)["normalised_accuracy"]

    return {"normalised_accuracy": fom["normalised_accuracy"], "interval": bootstrap_interval(normalised, len(t), seed),
            "accuracy": fom["accuracy"], "n": fom["n"], "recall": fom["recall"], "confusion": fom["confusion"],
            "chance": fom["chance"]}


def _check_machine(plan: Plan) -> None:
    """Refuse, before any work, a plan whose transformations this machine cannot make."""
    from .transforms import mp3_available

    if "mp3" in (*plan.survival, *plan.horse) and not mp3_available():
        raise MusadvError("this libsndfile cannot encode MP3: leave mp3 out of the plan's survival and horse tests")


def _stage(progress: bool, text: str) -> None:
    """Name the stage about to run, on a terminal only (nothing in a log file, nor with ``progress`` off)."""
    if progress and sys.stderr.isatty():
        print(f"[judge] {text}", file=sys.stderr, flush=True)


def _data_identity(recordings: list[RecordingRef], extra: dict) -> dict:
    names = [[r.name, r.true_label, r.offset, r.duration] for r in recordings]
    digest = hashlib.sha256(json.dumps(names).encode()).hexdigest()
    return {**extra, "recordings": [r.name for r in recordings], "sha256": digest}


def _clean(model: AudioClassifier, recordings: list[RecordingRef], out: Path) -> list[str]:
    """Each recording's label, from its file decoded as any file is (``clean/predictions.csv``)."""
    rows = []
    for ref in recordings:
        pred = classify_file(model, ref.source, ref.offset, ref.duration)
        rows.append({"recording": ref.name, "true": ref.true_label, "predicted": pred.label,
                     **{f"conf_{k}": round(v, 6) for k, v in pred.confidence.items()}})
    write_csv_atomic(out / "clean" / "predictions.csv", rows)
    return [r["predicted"] for r in rows]


def _labels_after(run_dir: Path) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Each attacked recording's label on its decoded file, that file's path, and the attack's target."""
    with open(run_dir / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return ({r["file"]: r["decoded_label"] for r in rows}, {r["file"]: str(run_dir / r["wav"]) for r in rows},
            {r["file"]: r["target"] for r in rows})


def judge(model: AudioClassifier, recordings: list[RecordingRef], out_dir: str | os.PathLike, plan: Plan = PLANS["quick"],
          seed: int = 0, progress: bool = True, engine=None, data: dict | None = None,
          surrogate: DifferentiableClassifier | None = None) -> dict:
    """Judge ``model`` on ``recordings`` under ``plan``; write and return ``evaluation.json``.

    Parameters
    ----------
    model : AudioClassifier
        Any system; one without a usable gradient is attacked through queries alone.
    recordings : list of RecordingRef
        With true labels (:func:`musadv.runs.recordings_from_split`).
    out_dir : path
        Receives ``evaluation.json``, ``report.html``, ``robust.csv``, ``clean/`` and a run
        directory per attack. A second call resumes; one with another model, plan, seed or
        recordings is refused.
    plan : Plan
    seed : int
        Seeds the targets and the query-only adversary (:func:`musadv.runs.run_attacks`) and the
        bootstrap intervals.
    progress : bool
        Progress bars (on a terminal only).
    engine : musadv.parallel.Engine, optional
        Where each attack run's recordings are done.
    data : dict, optional
        More to record of the data (the cache and split they came from).
    surrogate : DifferentiableClassifier, optional
        Guides the query-only adversary (:mod:`musadv.queries`); by default the network a feature
        system carries (:func:`musadv.replicas.own_surrogate`: a forest's DNN, the MFCC
        baseline's replica, a smoothed system's replica), none for other models. Recorded with
        the protocol.

    Returns
    -------
    dict
        The evaluation (see the module documentation).
    """
    if not recordings:
        raise MusadvError("no recordings to judge")
    unlabelled = [r.name for r in recordings if r.true_label is None]
    if unlabelled:
        raise MusadvError(f"{unlabelled[0]}: a judgement needs each recording's true label (judge a cache split)")
    _check_machine(plan)
    out = Path(out_dir).resolve()
    if surrogate is None:
        from .replicas import own_surrogate

        surrogate = own_surrogate(model)
    identity = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "protocol": {**PROTOCOL, "plan": plan.to_dict()},
                "seed": seed,
                "surrogate": None if surrogate is None else {"name": model_name(surrogate) or system_name(surrogate),
                                                              "kind": type(surrogate).__name__,
                                                              "sha256": system_sha256(surrogate)},
                "model": {"name": model_name(model) or system_name(model), "sha256": system_sha256(model),
                                        "kind": type(model).__name__, "labels": list(model.labels), "defence": defence(model)},
                "data": _data_identity(recordings, dict(data or {}))}
    _claim(out, identity)
    timings = {}
    t0 = time.perf_counter()
    clean_labels = _clean(model, recordings, out)
    timings["clean"] = time.perf_counter() - t0
    truth = [r.true_label for r in recordings]
    clean = accuracy_figures(truth, clean_labels, model.labels, seed)
    check = check_first_recording(model, recordings)
    gradient_ok = isinstance(model, DifferentiableClassifier) and (check is None or check.ok)
    flags = []
    if check is not None and not check.ok and isinstance(model, DifferentiableClassifier):
        # A network whose gradient would mislead; a system that is no network is simply attacked through queries.
        flags.append({"flag": "gradient", "reason": check.line() + ": attacked through queries alone"})
    correct = [r for r, label in zip(recordings, clean_labels) if label == r.true_label]
    robust, rows = [], []
    for policy in plan.policies:
        entries = _robust(model, recordings, correct, clean_labels, policy, plan, gradient_ok, out, seed, progress,
                          engine, surrogate, timings)
        if plan.controls:
            _stage(progress, f"{policy}: noise controls")
            t0 = time.perf_counter()
            _controls(model, recordings, entries, out / f"{policy}-controls", seed, progress, engine)
            timings[f"{policy}-controls"] = time.perf_counter() - t0
        for entry in entries:
            # Paths on this machine: they are in the run directories, not in the evaluation.
            del entry["examples"], entry["fooled"]
            robust.append(entry)
            controls = entry.get("controls", {})
            rows.append({k: entry[k] for k in ("policy", "snr_db", "normalised_accuracy", "accuracy")} |
                        {"low": (entry["interval"] or [None, None])[0], "high": (entry["interval"] or [None, None])[1],
                         "fooled_by_gradient": entry["fooled_by_gradient"], "fooled_by_queries": entry["fooled_by_queries"],
                         **{f"{k}_accuracy": c["normalised_accuracy"] for k, c in controls.items()},
                         "gap": entry.get("gap")})
            if entry["could_not_attack"]:
                flags.append({"flag": "errors", "reason": (
                    f"at {entry['snr_db']:g} dB ({policy}) {len(entry['could_not_attack'])} recordings could not be "
                    "attacked (errors.csv in the stage's run directories); they count as not fooled")})
            if entry["queries_beat_gradient"]:
                flags.append({"flag": "masked gradient", "reason": (
                    f"at {entry['snr_db']:g} dB ({policy}) queries fooled {entry['fooled_by_queries']} of the "
                    f"{entry['queried']} recordings the gradient attack left correct that they tried")})
    flags += flat_success(robust)
    if check is not None:
        flags += [{"flag": "randomness", "reason": w} for w in check.warnings if "differ" in w]
    smallest = None
    if plan.minimize:
        _stage(progress, "the smallest change")
        t0 = time.perf_counter()
        smallest = _smallest_change(model, correct, plan, gradient_ok, out, seed, progress, engine, surrogate)
        timings["smallest"] = time.perf_counter() - t0
        if smallest["not_reached"]:
            flags.append({"flag": "unreached", "reason": (
                f"{smallest['not_reached']} of {smallest['n']} recordings were not made to say their always-wrong "
                f"target even at {plan.minimize_floor_db:g} dB: an adversary should reach every label with a large "
                "enough change")})
    survival = []
    for kind in plan.survival:
        _stage(progress, f"survival: {kind}")
        t0 = time.perf_counter()
        survival.append(_survival(model, kind, out, seed, progress, engine))
        timings[f"survive-{kind}"] = time.perf_counter() - t0
    horse = []
    for kind in plan.horse:
        _stage(progress, f"horse test: {kind}")
        t0 = time.perf_counter()
        horse.append(_horse(model, recordings, kind, plan, out, seed, progress, engine))
        timings[f"horse-{kind}"] = time.perf_counter() - t0
    evaluation = {**identity, "gradient_check": None if check is None else check.to_dict(), "clean": clean,
                  "robust": robust, "smallest_change": smallest, "survival": survival, "horse": horse, "flags": flags}
    evaluation["headline"] = headline(evaluation)
    evaluation["timings"] = timings
    write_csv_atomic(out / "robust.csv", rows)
    write_json_atomic(out / "evaluation.json", evaluation)
    write_judgement_report(out)
    return evaluation


def flat_success(robust: list[dict]) -> list[dict]:
    """Flags for attacks whose success does not grow with the budget (Athalye et al. 2018's sign of a masked
    gradient): a larger change fools nothing more while recordings the model gets right remain that the
    adversary could fool (not those whose random target is their own label).

    Parameters
    ----------
    robust : list of dict
        ``policy``, ``snr_db`` and ``normalised_accuracy`` of each budget (two or more per policy to judge), and
        ``foolable_left``: how many recordings it gets right have another label as target (where absent, every
        recording it gets right counts).
    """
    flags = []
    for policy in dict.fromkeys(e["policy"] for e in robust):
        curve = sorted((e for e in robust if e["policy"] == policy), key=lambda e: -e["snr_db"])
        if len(curve) < 2:
            continue
        smallest, largest = curve[0], curve[-1]
        if (largest["normalised_accuracy"] > 0 and largest.get("foolable_left", 1) > 0
                and largest["normalised_accuracy"] >= smallest["normalised_accuracy"] - 1e-9):
            flags.append({"flag": "flat", "reason": (
                f"{policy}: robust accuracy {largest['normalised_accuracy']:.3f} at {largest['snr_db']:g} dB, as at "
                f"{smallest['snr_db']:g} dB: a larger change fooled nothing more (a masked gradient, or a broken attack)")})
    return flags


def _without_defence(block):
    return {k: v for k, v in block.items() if k != "defence"} if isinstance(block, dict) else block


def _claim(out: Path, identity: dict) -> None:
    """Record what this folder judges; refuse a folder that holds another judgement."""
    path = out / "judge.json"
    if path.exists():
        old = json.loads(path.read_text())
        for key in ("protocol", "seed", "surrogate", "model", "data"):
            # A model's defence is read from its files, which its hash already names; judgements claimed before
            # it was recorded lack it.
            if _without_defence(old.get(key)) != _without_defence(identity[key]):
                raise MusadvError(f"{out}: holds a judgement with another {key}; judge into a new folder")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, identity)


@dataclass
class _Budget:
    """What the two adversaries did within one SNR budget of one policy (see :func:`_robust`).

    ``after`` and ``examples``: each fooled or attacked recording's label, read from its example's written file,
    and that file; ``targets``: the label each attacked recording was to be given; ``survivors``: the recordings
    the gradient attack left correct (all the correct ones when it did not run).
    """

    after: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)
    targets: dict = field(default_factory=dict)
    failed: list = field(default_factory=list)
    carried: int = 0
    attacked: int = 0
    fooled_by_gradient: int | None = None
    survivors: list = field(default_factory=list)
    queried: int = 0
    fooled_by_queries: int = 0

    def take(self, run: Path, refs: list[RecordingRef]) -> list[RecordingRef]:
        """Read an attack run on ``refs`` into this budget; return those it left correct (one it could not
        take among them: errors.csv)."""
        labels, wavs, targets = _labels_after(run)
        self.after.update(labels)
        self.examples.update(wavs)
        self.targets.update(targets)
        self.failed += [r.name for r in refs if r.name not in labels]
        return [r for r in refs if labels.get(r.name, r.true_label) == r.true_label]


def _robust(model, recordings, correct, clean_labels, policy, plan, gradient_ok, out, seed, progress, engine,
            surrogate, timings: dict) -> list[dict]:
    """The robust figures at each budget under one policy, smallest budget (highest SNR) first: the worst case of
    the gradient and the query-only adversary, each in the order the module's documentation gives."""
    budgets = sorted(plan.budgets_db, reverse=True)
    at = {b: _Budget(survivors=list(correct)) for b in budgets}
    if gradient_ok:
        carried: dict[str, tuple[str, str]] = {}  # fooled within a smaller budget: label and example
        for budget in budgets:
            _stage(progress, f"{policy} targets at {budget:g} dB: the gradient")
            t0 = time.perf_counter()
            a = at[budget]
            left = [r for r in correct if r.name not in carried]
            a.after = {name: label for name, (label, _) in carried.items()}
            a.examples = {name: wav for name, (_, wav) in carried.items()}
            a.carried, a.attacked, a.survivors = len(carried), len(left), left
            if left:
                run = out / f"{policy}-{budget:g}dB" / "gradient"
                config = AttackConfig(snr_db=budget, stop="label", max_iter=plan.max_iter)
                run_attacks(model, left, policy, run, config, seed=seed, progress=progress, engine=engine,
                            gradient="autograd")
                a.survivors = a.take(run, left)
            a.fooled_by_gradient = len(left) - len(a.survivors)
            carried = {r.name: (a.after[r.name], a.examples[r.name]) for r in correct
                       if a.after.get(r.name, r.true_label) != r.true_label}
            timings[f"{policy}-{budget:g}dB"] = time.perf_counter() - t0
    failed_queries: set[str] = set()  # tried by the query-only adversary within a larger budget, and not fooled
    for budget in reversed(budgets):
        a = at[budget]
        tried = [r for r in a.survivors if r.name not in failed_queries]
        a.queried = len(tried)
        if not tried:
            continue
        _stage(progress, f"{policy} targets at {budget:g} dB: queries")
        t0 = time.perf_counter()
        run = out / f"{policy}-{budget:g}dB" / "queries"
        config = AttackConfig(snr_db=budget, stop="label", max_iter=plan.max_iter, gradient="queries",
                              max_queries=plan.max_queries, surrogate=surrogate)
        # No repair round: a miss would be tried again with as many queries, past the plan's budget.
        run_attacks(model, tried, policy, run, config, seed=seed, progress=progress, engine=engine, repairs=0)
        still = a.take(run, tried)
        a.fooled_by_queries = len(tried) - len(still)
        failed_queries |= {r.name for r in still}
        timings[f"{policy}-{budget:g}dB"] = timings.get(f"{policy}-{budget:g}dB", 0.0) + time.perf_counter() - t0
    entries = []
    for budget in budgets:
        a = at[budget]
        predicted = [a.after.get(r.name, r.true_label) if r in correct else label
                     for r, label in zip(recordings, clean_labels)]
        figures = accuracy_figures([r.true_label for r in recordings], predicted, model.labels, seed)
        fooled = {r.name: (a.after[r.name], a.examples[r.name]) for r in correct
                  if a.after.get(r.name, r.true_label) != r.true_label}
        # A random target may be the truth itself: such a recording stays right whatever the budget.
        foolable = [r.name for r in correct if r.name not in fooled and a.targets.get(r.name) != r.true_label]
        entries.append({
            "policy": policy, "snr_db": float(budget), **figures, "correct": len(correct),
            "fooled_at_smaller_budgets": a.carried, "attacked": a.attacked, "examples": a.examples, "fooled": fooled,
            "fooled_by_gradient": a.fooled_by_gradient, "survived_gradient": len(a.survivors), "queried": a.queried,
            "fooled_by_queries": a.fooled_by_queries, "foolable_left": len(foolable),
            "could_not_attack": sorted(set(a.failed)),
            "queries_beat_gradient": bool(gradient_ok and a.queried and a.fooled_by_queries >= MASKED_SHARE * a.queried)})
    return entries


def _controls(model, recordings, entries: list[dict], out: Path, seed, progress, engine) -> None:
    """Add to each budget's entry the accuracy under the three noise controls at that SNR (the random-phase one
    from its adversarial examples) and ``gap``: the least of them minus the robust accuracy."""
    from .robustness import CONTROLS, controls_run

    examples = {e["snr_db"]: {r.name: e["examples"].get(r.name) for r in recordings} for e in entries}
    m = controls_run(model, recordings, out, [e["snr_db"] for e in entries], examples, seed=seed, progress=progress,
                     engine=engine)
    truth = [r.true_label for r in recordings]
    for entry, level in zip(entries, m["levels"]):
        entry["controls"] = {}
        for kind in CONTROLS:
            labels = level["labels"][kind]
            if len(labels) < len(recordings):
                raise MusadvError(f"{out}: {len(recordings) - len(labels)} recordings could not be judged under "
                                  "the controls (errors.csv)")
            figures = accuracy_figures(truth, [labels[r.name] for r in recordings], model.labels, seed)
            entry["controls"][kind] = {"normalised_accuracy": figures["normalised_accuracy"], "interval": figures["interval"]}
        entry["gap"] = min(c["normalised_accuracy"] for c in entry["controls"].values()) - entry["normalised_accuracy"]


def _survival(model, kind: str, out: Path, seed, progress, engine) -> dict:
    """Whether the smallest changes still say their target after an irrelevant transformation of the written files."""
    from .survival import survive
    from .transforms import Transformation

    transformation = Transformation(kind)
    if not (out / "smallest" / "results.csv").exists():  # no recording was right: nothing to transform
        return {"kind": kind, "description": transformation.describe(), "survived": None, "n": 0}
    m = survive(out / "smallest", transformation, out / f"survive-{kind}", system=model, seed=seed, progress=progress,
                engine=engine)
    return {"kind": kind, "description": transformation.describe(), "survived": m["survived"],
            "returned": m["returned"], "original_kept": m["original_kept"], "n": m["n_examples"]}


def _horse(model, recordings, kind: str, plan: Plan, out: Path, seed, progress, engine) -> dict:
    """One horse test: the normalised accuracy on the originals, one draw, and the draw per recording that makes it
    right (best) or wrong (worst); the spread is best minus worst."""
    from .horse import horse_test
    from .transforms import Transformation

    transformation = Transformation(kind)
    m = horse_test(model, recordings, out / f"horse-{kind}", transformation, plan.horse_trials, seed=seed,
                   progress=progress, engine=engine)
    if m["n_skipped"]:
        raise MusadvError(f"{out / f'horse-{kind}'}: {m['n_skipped']} recordings could not be judged (errors.csv)")
    acc = m["normalised_accuracy"]
    return {"kind": kind, "description": transformation.describe(), "trials": plan.horse_trials, **acc,
            "spread": acc["best"] - acc["worst"], "changed_trials": m["changed_trials"], "snr_db": m["snr_db"]}


def _smallest_change(model, correct, plan, gradient_ok, out, seed, progress, engine, surrogate) -> dict:
    """Each correct recording's highest SNR at which an always-wrong target is said (median, interval, and per
    recording: ``snr_db_by_recording``, None where the search did not reach one, so that two systems' changes can
    be compared on the recordings both get right)."""
    config = AttackConfig(snr_db=plan.minimize_floor_db, stop="label", max_iter=plan.max_iter,
                          gradient="autograd" if gradient_ok else "queries",
                          max_queries=None if gradient_ok else plan.max_queries,
                          surrogate=None if gradient_ok else surrogate)
    n = len(correct)
    rows, by_recording = [], {}
    if correct:
        run = out / "smallest"
        run_attacks(model, correct, "all_wrong", run, config, seed=seed, progress=progress, engine=engine, minimal=True,
                    gradient="autograd" if gradient_ok else "auto", nmr=plan.perceptual, visqol=plan.perceptual)
        with open(run / "results.csv", newline="") as f:
            for row in csv.DictReader(f):
                reached = row["success"] == "1" and row["snr_wave_db"] not in ("", "nan")
                by_recording[row["file"]] = float(row["snr_wave_db"]) if reached else None
                rows += [row] if reached else []
    values = np.array([float(row["snr_wave_db"]) for row in rows])
    median = float(np.median(values)) if len(values) else None
    figures = {"median_snr_db": median, "interval": bootstrap_interval(lambda i: np.median(values[i]), len(values), seed),
               "reached": len(values), "not_reached": n - len(values), "n": n, "floor_db": plan.minimize_floor_db,
               "snr_db_by_recording": by_recording}
    if plan.perceptual:
        for key in ("nmr_db", "visqol_mos"):
            measured = np.array([float(row[key]) for row in rows if row[key] not in ("", "nan")])
            figures[f"median_{key}"] = float(np.median(measured)) if len(measured) else None
    return figures


def headline(evaluation: dict) -> dict:
    """Robust normalised accuracy at 30 dB (always-wrong targets; else the first budget), the median smallest
    change, and the verdict in words."""
    robust = evaluation["robust"]
    pick = next((e for e in robust if e["policy"] == "all_wrong" and e["snr_db"] == 30.0), robust[0] if robust else None)
    clean = evaluation["clean"]
    head = {"clean": clean["normalised_accuracy"], "robust": None if pick is None else pick["normalised_accuracy"],
            "robust_snr_db": None if pick is None else pick["snr_db"], "robust_policy": None if pick is None else pick["policy"],
            "gap": None if pick is None else pick.get("gap"),
            "horse_spread": max((h["spread"] for h in evaluation["horse"]), default=None),
            "smallest_change_db": (evaluation["smallest_change"] or {}).get("median_snr_db")}
    if pick is None:
        head["verdict"] = "not attacked"
    elif pick["normalised_accuracy"] <= clean["chance"]:
        head["verdict"] = (f"a horse: changes {pick['snr_db']:g} dB below the music leave it no better than chance "
                           f"({pick['normalised_accuracy']:.2f}, clean {clean['normalised_accuracy']:.2f})")
    elif pick["normalised_accuracy"] >= 0.9 * clean["normalised_accuracy"]:
        masked = [f["flag"] for f in evaluation["flags"] if f["flag"] in MASKING_FLAGS]
        if masked:
            # Queries that fail where the gradient cannot be trusted are no proof: the query-only adversary is the
            # weaker one at the same budget.
            head["verdict"] = (f"unproven: it keeps {pick['normalised_accuracy']:.2f} of its clean "
                               f"{clean['normalised_accuracy']:.2f} at {pick['snr_db']:g} dB, but its gradient cannot be "
                               f"trusted ({', '.join(masked)}) and queries alone did not fool it; judge it with more "
                               "queries or a surrogate")
        else:
            head["verdict"] = (f"resists: at {pick['snr_db']:g} dB it keeps {pick['normalised_accuracy']:.2f} of its "
                               f"clean {clean['normalised_accuracy']:.2f}"
                               + (f" (but read the flags: {', '.join(f['flag'] for f in evaluation['flags'])})"
                                  if evaluation["flags"] else ""))
    else:
        head["verdict"] = (f"partly fooled: at {pick['snr_db']:g} dB it falls from {clean['normalised_accuracy']:.2f} "
                           f"to {pick['normalised_accuracy']:.2f}")
    return head


def read_evaluation(path: str | os.PathLike) -> dict:
    """An ``evaluation.json`` (or the folder holding one), refused in one line if it is not one musadv can read."""
    path = Path(path)
    file = path / "evaluation.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise MusadvError(f"{file}: not a readable evaluation ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise MusadvError(f"{file}: not a musadv evaluation")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise MusadvError(f"{file}: evaluation schema version {data.get('schema_version')}; this musadv reads "
                          f"{SCHEMA_VERSION}")
    return data


def _fmt(v, digits=3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _interval(iv, digits=2) -> str:
    return "" if not iv else f" [{iv[0]:.{digits}f}, {iv[1]:.{digits}f}]"


def _figure(evaluation: dict, path: Path) -> Path | None:
    """Robust normalised accuracy against the budget, one line per policy, beside the clean figure and chance."""
    from .report import plt

    robust = evaluation["robust"]
    if not robust:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for policy in dict.fromkeys(e["policy"] for e in robust):
        mine = sorted((e for e in robust if e["policy"] == policy), key=lambda e: e["snr_db"])
        ax.plot([e["snr_db"] for e in mine], [e["normalised_accuracy"] for e in mine], "o-", label=f"under attack ({policy})")
        for kind in (mine[0].get("controls") or {}):
            ax.plot([e["snr_db"] for e in mine], [e["controls"][kind]["normalised_accuracy"] for e in mine], "x--", lw=0.8,
                    label=f"{kind.replace('_', ' ')} ({policy})")
    ax.axhline(evaluation["clean"]["normalised_accuracy"], color="k", ls="--", label="clean")
    ax.axhline(evaluation["clean"]["chance"], color="grey", ls=":", label="chance")
    ax.set_xlabel("SNR budget (dB; right: smaller changes)")
    ax.set_ylabel("normalised accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save_png(fig, path)


def _horse_figure(evaluation: dict, path: Path) -> Path | None:
    """Per horse test, the span from the worst to the best choice of draws, beside the clean accuracy and one draw."""
    horse = evaluation["horse"]
    if not horse:
        return None
    from .report import plt

    fig, ax = plt.subplots(figsize=(5, 0.5 + 0.45 * len(horse)))
    for i, h in enumerate(horse):
        ax.plot([h["worst"], h["best"]], [i, i], "-", color="tab:red", lw=6, alpha=0.5)
        ax.plot([h["random"]], [i], "o", color="k", ms=4)
    ax.axvline(evaluation["clean"]["normalised_accuracy"], color="k", ls="--", lw=1, label="clean")
    ax.set_yticks(range(len(horse)), [h["kind"] for h in horse])
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("normalised accuracy (bar: worst to best draw per recording; dot: one draw)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save_png(fig, path)


def _save_png(fig, path: Path) -> Path:
    import io

    from .report import plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return write_bytes_atomic(path, buf.getvalue())


def _listening(out: Path, evaluation: dict, most: int = 12) -> str:
    """Players of the headline budget's examples beside their originals (from its attack runs' results.csv)."""
    head = evaluation["headline"]
    if head["robust_snr_db"] is None:
        return ""
    stage = out / f"{head['robust_policy']}-{head['robust_snr_db']:g}dB"
    rows = []
    for run in ("gradient", "queries"):
        if (stage / run / "results.csv").exists():
            with open(stage / run / "results.csv", newline="") as f:
                rows += [(run, row) for row in csv.DictReader(f)]
    if not rows:
        return ""
    esc = html.escape

    def player(run, rel):
        src = (stage / run / rel).relative_to(out).as_posix()
        return f'<audio controls preload="none" src="{esc(src)}"></audio>'

    body = "".join(
        f"<tr><td>{esc(row['file'])}</td><td>{esc(row['true'])}</td><td>{esc(row['target'])}</td>"
        f"<td>{esc(row['decoded_label'])}</td><td>{_fmt(float(row['snr_wave_db']), 1) if row['snr_wave_db'] else '—'}</td>"
        f"<td>{esc(run)}</td><td>{player(run, row['original_wav'])}</td><td>{player(run, row['wav'])}</td></tr>"
        for run, row in rows[:most])
    return (f"<h2>Listen: the adversary at {head['robust_snr_db']:g} dB</h2><p>Each recording the model got right, "
            f"beside the written file that its label was read from ({min(most, len(rows))} of {len(rows)}).</p>"
            "<table><tr><th>recording</th><th>true</th><th>target</th><th>label of the file</th><th>SNR (dB)</th>"
            f"<th>adversary</th><th>original</th><th>adversarial</th></tr>{body}</table>")


def write_judgement_report(out_dir: str | os.PathLike) -> Path:
    """``report.html`` of a judgement, from its ``evaluation.json`` alone: the verdict card first."""
    out = Path(out_dir)
    e = read_evaluation(out)
    esc = html.escape
    head, clean = e["headline"], e["clean"]
    figure = _figure(e, out / "robust.png")
    def controls(r):
        c = r.get("controls") or {}
        return "".join(f"<td>{_fmt(c[k]['normalised_accuracy']) if k in c else '—'}</td>"
                       for k in ("white_noise", "shaped_noise", "random_phase")) + f"<td>{_fmt(r.get('gap'))}</td>"

    rows = "".join(
        f"<tr><td>{esc(r['policy'])}</td><td>{r['snr_db']:g}</td><td>{_fmt(r['normalised_accuracy'])}"
        f"{_interval(r['interval'])}</td><td>{r['correct']}</td><td>{r['fooled_at_smaller_budgets']}</td><td>{r['attacked']}</td>"
        f"<td>{'—' if r['fooled_by_gradient'] is None else r['fooled_by_gradient']}"
        f"</td><td>{r['queried']}</td><td>{r['fooled_by_queries']}</td>{controls(r)}</tr>" for r in e["robust"])
    flags = "".join(f"<li><b>{esc(f['flag'])}</b>: {esc(f['reason'])}</li>" for f in e["flags"]) or "<li>none</li>"
    horse_png = _horse_figure(e, out / "horse.png")
    horse_rows = "".join(
        f"<tr><td>{esc(h['description'])}</td><td>{h['trials']}</td><td>{_fmt(h['random'])}</td><td>{_fmt(h['worst'])}</td>"
        f"<td>{_fmt(h['best'])}</td><td>{_fmt(h['spread'])}</td><td>{h['changed_trials']:.0%}</td></tr>" for h in e["horse"])
    horse_html = "" if not e["horse"] else (
        "<h2>Horse tests</h2><p>Changes that leave the music alone, drawn per recording: the accuracy with one draw, and "
        "with the draw per recording that makes the model wrong (worst) or right (best). A model that has learned "
        "music has a small spread.</p><table><tr><th>transformation</th><th>draws</th><th>one draw</th><th>worst</th>"
        f"<th>best</th><th>spread</th><th>draws that change a label</th></tr>{horse_rows}</table>"
        + ("" if horse_png is None else '<p><img src="horse.png" alt="horse test spreads"></p>'))
    small = e["smallest_change"]
    small_line = "" if small is None else (
        f"<p>Smallest change that makes a recording wrong (always-wrong targets, down to {small['floor_db']:g} dB): "
        f"median {_fmt(small['median_snr_db'], 1)} dB SNR{_interval(small['interval'], 1)}, {small['reached']} of "
        f"{small['n']} reached"
        + ("" if "median_nmr_db" not in small else
           f"; by ear's models: median noise-to-mask ratio {_fmt(small['median_nmr_db'], 1)} dB (below 0: under the "
           f"masking threshold), median ViSQOL MOS-LQO {_fmt(small['median_visqol_mos'], 2)} (5: no audible difference)")
        + ".</p>")
    survival_html = "" if not e["survival"] else (
        "<h2>Do the smallest changes survive?</h2><table><tr><th>transformation of the written files</th><th>examples</th>"
        "<th>still the target</th><th>back to the original's label</th></tr>" + "".join(
            f"<tr><td>{esc(v['description'])}</td><td>{v['n']}</td><td>{_fmt(v['survived'], 2)}</td>"
            f"<td>{_fmt(v.get('returned'), 2)}</td></tr>" for v in e["survival"]) + "</table>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Judgement of {esc(e['model']['name'])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} .card{{border:2px solid #333;padding:1em;border-radius:8px}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.3em .6em}}</style></head><body>
<div class="card"><h1>{esc(e['model']['name'])}</h1>
<p style="font-size:1.3em"><b>{esc(head['verdict'])}</b></p>
<p>Clean normalised accuracy {_fmt(clean['normalised_accuracy'])}{_interval(clean['interval'])} on {clean['n']} recordings
(chance {clean['chance']:.2f}); under attack at {'—' if head['robust_snr_db'] is None else f"{head['robust_snr_db']:g}"} dB
({esc(str(head['robust_policy']))} targets): {_fmt(head['robust'])}.
{'' if head['smallest_change_db'] is None else f"Median smallest change: {head['smallest_change_db']:.1f} dB SNR."}
{'' if head['gap'] is None else f"Noise of the same power leaves it {head['gap']:+.2f} more accurate than the adversary (the gap)."}
{'' if head['horse_spread'] is None else f"Irrelevant changes, chosen per recording, move it over a span of {head['horse_spread']:.2f}."}</p>
<p>Flags:</p><ul>{flags}</ul></div>
<h2>Robust accuracy</h2><p>The worst case of a gradient attack and, on the recordings it left correct, the query-only
attack. The gradient attack goes from the smallest change up, attacking only what smaller budgets left correct
(their examples lie inside every larger budget); the query-only attack goes from the largest budget down, trying
only what it has not failed on within a larger one. Every label is read from the decoded 16-bit file. Intervals:
95 % bootstrap over recordings.</p>
<table><tr><th>targets</th><th>SNR budget (dB)</th><th>normalised accuracy</th><th>correct clean</th>
<th>fooled at a smaller budget</th><th>attacked by gradients</th>
<th>fooled by gradients</th><th>tried by queries</th><th>fooled by queries only</th><th>white noise</th><th>shaped noise</th>
<th>random phase</th><th>gap</th></tr>{rows}</table>
<p>The controls: the same SNR spent on white noise, on noise with the recording's spectrum, and on the
adversary's change with random phase. The gap is the least accurate control's normalised accuracy minus
the robust one: how much more the adversary's change does than noise of the same power (the paper's argument).</p>
{'' if figure is None else '<p><img src="robust.png" alt="robust accuracy against the SNR budget"></p>'}
{_listening(out, e)}
{small_line}
{survival_html}
{horse_html}
<p>Protocol {esc(e['protocol']['name'])} v{e['protocol']['version']}, plan {esc(e['protocol']['plan']['name'])};
data: {len(e['data']['recordings'])} recordings (SHA-256 {e['data']['sha256'][:12]}); model SHA-256
{esc(str(e['model']['sha256'])[:12])}. Every figure is in evaluation.json.</p></body></html>"""
    return write_bytes_atomic(out / "report.html", page.encode())


def _short_name(name: str, names: list[str]) -> str:
    """A model directory by its last folder (two folders where another directory ends in the same one), also
    inside ``smooth:MODEL@SNR``, where a study's absolute path would say where it lay, not what it judged;
    any other spec as it is."""
    smoothed = SMOOTH.fullmatch(name)
    if smoothed:
        return f"smooth:{_short_name(smoothed['base'], names)}{name[smoothed.end('base'):]}"
    if not os.path.isabs(name):
        return name
    parts = Path(name).parts
    bases = {_base_of(n) for n in names}
    same_tail = [b for b in bases if os.path.isabs(b) and Path(b).name == parts[-1]]
    return parts[-1] if len(same_tail) == 1 else "/".join(parts[-2:])


def _base_of(name: str) -> str:
    """The model a name judges, through any smoothing."""
    smoothed = SMOOTH.fullmatch(name)
    return _base_of(smoothed["base"]) if smoothed else name


def defence(system: AudioClassifier) -> str | None:
    """How a system was defended, in words (None: not at all, as far as it records): a network's adversarial or
    noisy training (:func:`musadv.adversarial_training.describe_training`), a smoothed system's noise."""
    if isinstance(system, SmoothedClassifier):
        s = system.info["smoothing"]
        base = defence(system.base)
        return f"randomized smoothing at {s['snr_db']:g} dB, {s['n']} copies" + (f", of a base trained with {base}" if base else "")
    train = system.info.get("training", {}).get("train")
    return describe_training(train) if isinstance(train, dict) else None


def comparable_data(data: dict) -> dict:
    """What makes two evaluations' data the same: the recordings judged (names, labels and excerpts,
    ``sha256``) and their split; not the path of the cache they were read from, which is where a
    study lay (another machine, a moved folder), not what it judged."""
    return {k: v for k, v in data.items() if k != "cache"}


def leaderboard(eval_dirs: list[str | os.PathLike], out_dir: str | os.PathLike, mixed: bool = False) -> list[dict]:
    """One row per evaluation (Markdown, CSV and a page sortable by column) in ``out_dir``.

    ``eval_dirs`` are judgement folders or ``evaluation.json`` files kept on their own; a model's
    name links to its judgement's ``report.html`` where one lies beside its evaluation.

    Evaluations of different protocols, plans or data (:func:`comparable_data`) are refused unless
    ``mixed``, and then the table says so.
    """
    evals = [read_evaluation(d) for d in eval_dirs]
    if not evals:
        raise MusadvError("no evaluations to put in a leaderboard")
    ref = evals[0]
    budgets = sorted({(r["policy"], r["snr_db"]) for e in evals for r in e["robust"]}, key=lambda k: (k[0], -k[1]))
    names = [_short_name(e["model"]["name"], [x["model"]["name"] for x in evals]) for e in evals]
    notes = []
    for d, e, name in zip(eval_dirs, evals, names):
        for what, same in (("protocol or plan", e["protocol"] == ref["protocol"]),
                           ("data", comparable_data(e["data"]) == comparable_data(ref["data"]))):
            if not same:
                if not mixed:
                    raise MusadvError(f"{d}: another {what} than {eval_dirs[0]}; evaluations that differ are not "
                                      "comparable (--mixed puts them in one table, saying so)")
                notes.append(f"{name}: another {what} than {names[0]}")
    rows, pages = [], {}
    for d, e, name in zip(eval_dirs, evals, names):
        row = {"model": name,
               "defence": e["model"].get("defence"),  # not in evaluations written before it was recorded
               "clean": e["clean"]["normalised_accuracy"],
               # Taggers read through a tag map have fewer labels: their chance differs from the others'.
               "chance": e["clean"]["chance"]}
        for policy, snr in budgets:
            hit = next((r for r in e["robust"] if r["policy"] == policy and r["snr_db"] == snr), None)
            row[f"{policy} {snr:g} dB"] = None if hit is None else hit["normalised_accuracy"]
        row["gap"] = e["headline"].get("gap")
        row["horse_spread"] = e["headline"].get("horse_spread")
        row["smallest_change_db"] = e["headline"]["smallest_change_db"]
        row["smallest_change_nmr_db"] = (e["smallest_change"] or {}).get("median_nmr_db")
        row["flags"] = "; ".join(f["flag"] for f in e["flags"])
        row["verdict"] = e["headline"]["verdict"]
        rows.append(row)
        # An evaluation kept on its own (as the docs keep the leaderboard's entries) has no page to link to.
        report = (Path(d) if Path(d).is_dir() else Path(d).parent).resolve() / "report.html"
        pages[id(row)] = os.path.relpath(report, Path(out_dir).resolve()) if report.is_file() else None
    first = f"{budgets[0][0]} {budgets[0][1]:g} dB" if budgets else "clean"
    # Most robust first, but a robustness the flags leave unproven never leads: it goes after the rest.
    unproven = {id(row): any(f["flag"] in MASKING_FLAGS for f in e["flags"]) for row, e in zip(rows, evals)}
    rows.sort(key=lambda r: (unproven[id(r)], -(r.get(first) if r.get(first) is not None else -1)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0])
    write_csv_atomic(out / "leaderboard.csv", rows, columns)

    def cell(v):
        return "—" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    md = markdown_table(columns, [[cell(r[c]) for c in columns] for r in rows])
    if notes:
        md += ["", "Not comparable: " + "; ".join(notes)]
    write_bytes_atomic(out / "leaderboard.md", ("\n".join(md) + "\n").encode())
    esc = html.escape

    def html_cell(r, c):
        # Each model links to its judgement's page.
        text, page = esc(cell(r[c])), pages[id(r)]
        return f'<td><a href="{esc(Path(page).as_posix())}">{text}</a></td>' if c == "model" and page else f"<td>{text}</td>"

    body = "".join("<tr>" + "".join(html_cell(r, c) for c in columns) + "</tr>" for r in rows)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>musadv leaderboard</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.3em .6em}}
th{{cursor:pointer;background:#eee}}</style></head><body><h1>musadv leaderboard</h1>
<p>Protocol {esc(ref['protocol']['name'])} v{ref['protocol']['version']}, plan {esc(ref['protocol']['plan']['name'])}, {len(ref['data']['recordings'])} recordings.
Normalised accuracy, clean and under the worst of a gradient and a query-only adversary at each SNR budget. Click a column to sort.</p>
{'' if not notes else '<p><b>Not comparable:</b> ' + esc('; '.join(notes)) + '</p>'}
<table id="t"><thead><tr>{''.join(f'<th>{esc(c)}</th>' for c in columns)}</tr></thead><tbody>{body}</tbody></table>
<script>
document.querySelectorAll('#t th').forEach((th, i) => th.onclick = () => {{
  const tb = document.querySelector('#t tbody'), rows = [...tb.rows], up = th.dataset.up !== '1';
  const key = r => {{ const v = r.cells[i].textContent, n = parseFloat(v); return isNaN(n) ? v : n; }};
  rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (up ? 1 : -1));
  th.dataset.up = up ? '1' : '0'; rows.forEach(r => tb.appendChild(r));
}});
</script></body></html>"""
    write_bytes_atomic(out / "leaderboard.html", page.encode())
    return rows

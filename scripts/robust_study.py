"""The robust-adversary study: the paper's adversary and one made robust to transformations, judged on fresh draws.

    python scripts/robust_study.py DEMO_DIR OUT_DIR [--kinds lowpass,mp3,eq,room] [--draws 2] [--held-out 10]
        [--jobs 2] [--page docs/results-gtzan-mini.md]

DEMO_DIR is what ``musadv demo --data ...`` wrote (its cache and its DNN). Two attack runs on the
test split with always-wrong targets (15 dB bound, threshold 0.9), both measuring ViSQOL:

* ``dnn-plain``: the paper's adversary;
* ``dnn-robust``: the same with ``--robust-to KINDS --draws D`` (expectation over transformation).

Then ``musadv survive RUN --transform KIND --draws N`` for every kind on both runs: N fresh draws
of each random transformation per example (one of a fixed one), never seen by the adversary's
loop, each applied to the example and its original alike and judged from the written files.
The runs resume (rerun the same command). The table is printed and, with ``--page``, written
into the page between its ``<!-- robust -->`` markers.
"""

import argparse
import csv
import json
import statistics
from pathlib import Path

from study_page import run_cli, write_section

COMMAND = "python scripts/robust_study.py DEMO_DIR OUT_DIR --page docs/results-gtzan-mini.md"
SECTION = """## Adversaries that survive the world: expectation over transformation

Made by `{command}` (DEMO_DIR: `musadv demo` on the same data and partition; the DNN-500 of the
tables above). Always-wrong targets on the test split, 15 dB bound, threshold 0.9. The robust
adversary (`--robust-to {kinds} --draws {draws}`) judges, at every iteration, transformed copies
of its iterate ({draws} draws of each random kind, one of each fixed one; rooms picked from 8
simulated per example) and follows the gradient of their mean loss, stopping when the iterate and
every copy reach the threshold. Then `musadv survive RUN --transform KIND --draws {held_out}`
judges every written example on {held_out} fresh draws of each random transformation (one of a
fixed one) that no adversary saw, applied alike to the example and its original, each judged as
its 16-bit file. "kept" is the share of those transformed examples that still get the target
(over the examples that reached it); the last row, the share of transformed originals that
keep the original's label: how much the transformation alone moves the system. Seconds per
example are the attack's own (two examples at a time on this project's 2-core machine, `--jobs 2`;
`benchmarks/bench_attack.py` prices an iteration on a quiet machine).
"""


def _rows(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _survival(run: Path, kind: str) -> dict | None:
    path = run / f"survive-{kind}" / "survive.json"
    return json.loads(path.read_text())["results"] if path.exists() else None


def table(out: Path, kinds: list[str]) -> list[str]:
    head = "| adversary | examples | success | median SNR dB | median ViSQOL MOS-LQO (min) | seconds per example | "
    head += " | ".join(f"{k} kept" for k in kinds) + " |"
    lines = [head, "|" + "---|" * (6 + len(kinds))]
    originals = None
    for name, title in (("dnn-plain", "paper's adversary"), ("dnn-robust", f"`--robust-to {','.join(kinds)}`")):
        results = out / name / "results.csv"
        if not results.exists():
            continue
        rows = _rows(results)
        ok = sum(r["success"] == "1" for r in rows)
        snr = statistics.median(float(r["snr_wave_db"]) for r in rows)
        mos = [float(r["visqol_mos"]) for r in rows if r["visqol_mos"]]
        seconds = statistics.mean(float(r["seconds"]) for r in rows)
        cells = []
        for k in kinds:
            s = _survival(out / name, k)
            cells.append("" if s is None or s["survived"] is None else f"{s['survived']:.1%}")
            if s is not None and name == "dnn-plain":
                originals = originals or {}
                originals[k] = s["original_kept"]
        lines.append(f"| {title} | {len(rows)} | {ok / len(rows):.0%} | {snr:.1f} | {statistics.median(mos):.2f} "
                     f"({min(mos):.2f}) | {seconds:.1f} | " + " | ".join(cells) + " |")
    if originals:
        lines.append("| (transformed originals that keep their label) | | | | | | "
                     + " | ".join(f"{originals[k]:.1%}" if k in originals else "" for k in kinds) + " |")
    return lines


def reading(out: Path, kinds: list[str]) -> list[str]:
    """What the table says, from the same files: what each transformation undoes, and the price of robustness."""
    runs = {name: _rows(out / name / "results.csv") for name in ("dnn-plain", "dnn-robust")
            if (out / name / "results.csv").exists()}
    if len(runs) < 2:
        return []
    lines = []
    for k in kinds:
        plain, robust = _survival(out / "dnn-plain", k), _survival(out / "dnn-robust", k)
        if plain is None or robust is None or plain["survived"] is None or robust["survived"] is None:
            continue
        lines.append(f"- `{k}` alone changes the label of {1 - plain['original_kept']:.0%} of the originals; it undoes "
                     f"{1 - plain['survived']:.1%} of the paper's adversaries and {1 - robust['survived']:.1%} of the "
                     "robust ones.")
    med = lambda rows, key: statistics.median(float(r[key]) for r in rows if r[key])  # noqa: E731
    p, r = runs["dnn-plain"], runs["dnn-robust"]
    lines.append(f"- The price: the robust adversary's changes are larger (median SNR {med(r, 'snr_wave_db'):.1f} dB "
                 f"against {med(p, 'snr_wave_db'):.1f}), rated lower by ViSQOL (median {med(r, 'visqol_mos'):.2f} "
                 f"against {med(p, 'visqol_mos'):.2f}), and take {med(r, 'iterations'):.0f} iterations (median) "
                 f"against {med(p, 'iterations'):.0f}.")
    return lines


def held_out_in_run(out: Path, kinds: list[str]) -> str | None:
    """The robust run's own held-out shares (results.csv; another stream of draws than survive's)."""
    path = out / "dnn-robust" / "metrics.json"
    if not path.exists():
        return None
    held = json.loads(path.read_text()).get("held_out", {})
    return ("The robust run's own check (results.csv: 10 other fresh draws of each random kind per example, drawn from "
            "another stream than survive's) gives " + ", ".join(f"{k} {held[k]:.0%}" for k in kinds if k in held) + ".")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--kinds", default="lowpass,mp3,eq,room")
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--held-out", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--page", type=Path)
    args = ap.parse_args()
    kinds = args.kinds.split(",")

    for name, extra in (("dnn-plain", []), ("dnn-robust", ["--robust-to", args.kinds, "--draws", str(args.draws)])):
        run_cli(["attack", str(args.demo / "models" / "dnn"), "--split", "test", "--cache", str(args.demo / "cache"),
             "--policy", "all_wrong", "--visqol", "--quiet", "--no-report", "--jobs", str(args.jobs),
             "--out", str(args.out / name), *extra])
        for kind in kinds:
            run_cli(["survive", str(args.out / name), "--transform", kind, "--draws", str(args.held_out), "--quiet",
                 "--jobs", str(args.jobs)])
    lines = table(args.out, kinds)
    print("\n".join(lines))
    extra = held_out_in_run(args.out, kinds)
    lines = (SECTION.format(command=COMMAND, kinds=args.kinds, draws=args.draws, held_out=args.held_out).splitlines()
             + [""] + lines + ([""] + [extra] if extra else []) + [""] + reading(args.out, kinds))
    if args.page:
        write_section(args.page, "robust", lines)


if __name__ == "__main__":
    main()

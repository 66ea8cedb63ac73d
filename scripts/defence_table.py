"""Write the extended Table III (defences judged under one plan) into a results page from evaluation.json files.

    python scripts/defence_table.py JUDGED_DIR... --page docs/results-gtzan-mini.md [--baseline JUDGED_DIR]
        [--certified CERTIFY_DIR...] [--marker table3-extended] [--command "..."]

Each JUDGED_DIR is what ``musadv judge`` wrote for one system; the defence is read from the model
directory the judgement names (``model.json``: ``--adversarial`` and its settings, ``--noise-snr``)
or from a ``smooth:`` spec. ``--baseline`` is the undefended system the change in the smallest
change is measured against (the paper's question: does the defence make the adversary's change
larger?). ``--certified`` adds the certify runs of smoothed systems (``musadv certify``): their
certified accuracies and certified SNRs. Every figure is read, none recomputed.
"""

import argparse
import json
from pathlib import Path

from musadv.judge import read_evaluation

from study_page import write_section


def _f(v, digits=2):
    return "—" if v is None else f"{v:.{digits}f}"


def defence(e: dict) -> str:
    """How the judged system was defended, from its model directory or its spec."""
    name = e["model"]["name"]
    if name.startswith("smooth:"):
        return f"randomized smoothing ({name.rsplit('@', 1)[1]})"
    info = Path(name) / "model.json"
    if not info.exists():
        return "—"
    t = json.loads(info.read_text()).get("training", {}).get("train", {})
    kind = t.get("adversarial")
    noise = t.get("noise_snr_db")
    parts = []
    if kind in ("fgsm", "fgsm_reference"):
        parts.append(f"Alg. 2 ({kind}, step {t['adv_step']:g}"
                     + (", joined)" if t.get("adv_fraction") is None else f", {t['adv_fraction']:g} replaced)"))
    elif kind == "pgd":
        parts.append(f"PGD-{t['adv_steps']} at {t['adv_snr_db']:g} dB"
                     + (" (joined)" if t.get("adv_fraction") is None else f" ({t['adv_fraction']:g} replaced)"))
    elif kind == "trades":
        parts.append(f"TRADES-{t['adv_steps']} at {t['adv_snr_db']:g} dB, β {t['trades_beta']:g}")
    if noise is not None:
        parts.append(f"noise {noise:g} dB")
    return ", ".join(parts) or "none"


def robust_at(e: dict, snr: float) -> float | None:
    """The worst robust accuracy over the plan's target policies at one budget."""
    values = [r["normalised_accuracy"] for r in e["robust"] if r["snr_db"] == snr]
    return min(values) if values else None


def table(judged: list[Path], baseline: Path | None, certified: list[Path]) -> list[str]:
    evaluations = [(d, read_evaluation(d)) for d in judged]
    budgets = sorted({r["snr_db"] for _, e in evaluations for r in e["robust"]}, reverse=True)
    base = read_evaluation(baseline)["smallest_change"]["median_snr_db"] if baseline else None
    lines = ["| system | defence | clean | " + " | ".join(f"robust {b:g} dB" for b in budgets)
             + " | smallest change, median (dB SNR) | larger than undefended by (dB) | gap to noise at 30 dB | verdict |",
             "|---|---|---|" + "---|" * len(budgets) + "---|---|---|---|"]
    for d, e in evaluations:
        s = e["smallest_change"]
        median = s["median_snr_db"] if s else None
        gain = None if base is None or median is None else base - median
        gaps = [r.get("gap") for r in e["robust"] if r["snr_db"] == 30.0 and r.get("gap") is not None]
        lines.append(f"| {d.name} | {defence(e)} | {_f(e['clean']['normalised_accuracy'])} | "
                     + " | ".join(_f(robust_at(e, b)) for b in budgets)
                     + f" | {_f(median, 1)} | {_f(gain, 1)} | {_f(max(gaps) if gaps else None)} | {e['headline']['verdict']} |")
    if certified:
        lines += ["", "| certified system | noise (dB below −20 dBFS) | recordings | abstained | certified accuracy at any radius | "
                  "certified at 40 / 30 / 20 dB | certified SNR, median (min–max) |", "|---|---|---|---|---|---|---|"]
        for d in certified:
            run = json.loads((d / "certify.json").read_text())
            r, acc = run["results"], run["results"]["certified_accuracy"]
            snr = r["certified_snr_db"]
            lines.append(f"| {run['system']} | {run['smoothing']['snr_db']:g} | {r['n_recordings']} | {_f(r['abstained'])} | "
                         f"{_f(acc['any'])} | " + " / ".join(_f(acc.get(k)) for k in ("40", "30", "20")) + " | "
                         + ("—" if snr is None else f"{snr['median']:.1f} ({snr['min']:.1f}–{snr['max']:.1f})") + " |")
    return lines + [""]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("judged", type=Path, nargs="+")
    ap.add_argument("--page", type=Path, required=True)
    ap.add_argument("--baseline", type=Path, default=None, help="The undefended system's judgement.")
    ap.add_argument("--certified", type=Path, nargs="*", default=[], help="Certify runs of smoothed systems.")
    ap.add_argument("--marker", default="table3-extended")
    ap.add_argument("--command", default=None, help="How the judgements were made, quoted on the page.")
    args = ap.parse_args()
    lines = ([f"Generated by `python scripts/defence_table.py` from the judgements made by `{args.command}`.", ""]
             if args.command else [])
    if not args.page.exists():
        args.page.write_text("# Results\n")
    write_section(args.page, args.marker, lines + table(args.judged, args.baseline, args.certified))
    print(f"written: {args.page} ({args.marker})")


if __name__ == "__main__":
    main()

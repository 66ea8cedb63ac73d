"""Write the musicnn section of a results page (e.g. docs/results-gtzan-mini.md) from a musicnn study's files.

    python scripts/musicnn_results.py STUDY_DIR docs/results-gtzan-mini.md [--command "..."]

STUDY_DIR is what ``musadv experiment musicnn DATA --out STUDY_DIR`` wrote; every figure comes
from its finished stages (``STUDY_DIR/stages/*.json``, what summary.json collects), so a study
still under way gives the figures it has, and says which are missing. The section replaces the
one between the page's ``<!-- musicnn -->`` markers (or is appended with them), so the rest of
the page stays as results_doc.py wrote it.
"""

import argparse
import json
import re
from dataclasses import asdict
from pathlib import Path

from musadv.experiments import HORSE_TRANSFORMS, MUSICNN_SURVIVAL, MusicnnStudySettings
from musadv.musicnn import MODELS

from results_doc import _f, curve_table, reading

MISSING = "not finished when this page was written"


def load_study(study: Path) -> dict:
    """The study's figures from its stage records, shaped as its summary.json; absent stages are None."""
    stages = study / "stages"
    result = lambda name: (json.loads((stages / f"{name}.json").read_text())["result"]  # noqa: E731
                           if (stages / f"{name}.json").exists() else None)
    seconds = sum(json.loads(p.read_text())["seconds"] for p in stages.glob("*.json"))
    summary_file = study / "summary.json"
    settings = (json.loads(summary_file.read_text())["settings"] if summary_file.exists()
                else {"attack": asdict(MusicnnStudySettings().attack), "seed": MusicnnStudySettings().seed})
    models = {}
    for name in MODELS:
        test = result(f"{name}-test")
        if test is None:
            continue
        models[name] = {
            "labels": list(test["recall"]), "test": test,
            "attacks": {p: result(f"{name}-attack-{p}") for p in ("random", "all_wrong")},
            "minimal": result(f"{name}-minimize"), "robustness": result(f"{name}-robustness"),
            "horse": {k: result(f"{name}-horse-{k}") for k in HORSE_TRANSFORMS},
            "survival": {k: result(f"{name}-survive-{k}") for k in MUSICNN_SURVIVAL},
        }
    return {"models": models, "settings": settings, "seconds": seconds,
            "recordings": result("prepare")["recordings"]}

BEGIN, END = "<!-- musicnn -->", "<!-- /musicnn -->"


def systems_table(s):
    lines = ["### As GTZAN genre systems (no training; every clip a test clip)", "",
             "Each tagger is made a genre system by the built-in GTZAN tag map (`musicnn:NAME:gtzan`): a recording's "
             "label is its most likely mapped tag. Clips of genres without a tag are left out; chance is 1 / (genres "
             "covered).", "",
             "| model | genres covered (tag) | clips | normalised accuracy | accuracy | chance | binomial p | left out |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in s["models"].items():
        t = r["test"]
        left = t.get("left_out") or {"recordings": 0, "labels": []}
        lines.append(f"| {name} | {', '.join(r['labels'])} | {t['n']} | {t['normalised_accuracy']:.3f} | {t['accuracy']:.3f} | "
                     f"{1 / len(r['labels']):.3f} | {t['binomial_p']:.2g} | {left['recordings']} ({', '.join(left['labels'])}) |")
    lines += [""]
    for name, r in s["models"].items():
        recall = ", ".join(f"{g} {_f(v, 2)}" for g, v in r["test"]["recall"].items())
        lines.append(f"{name}, recall per genre: {recall}.")
    return lines + [""]


def attacks_table(s):
    a0 = s["settings"]["attack"]
    lines = [f"### Attacks ({a0['snr_db']:g} dB SNR limit, threshold {a0['threshold']:g} on the target's mean likelihood, "
             f"at most {a0['max_iter']} iterations; success judged on the written WAV files)", "",
             "| model | policy | normalised accuracy before → under attack | success | SNR dB mean ± std | min | "
             "ViSQOL MOS-LQO mean (min) | iterations | s / example |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in s["models"].items():
        for policy, a in r["attacks"].items():
            if a is None:
                lines.append(f"| {name} | {policy} | {MISSING} | | | | | | |")
                continue
            mos = "" if a.get("visqol_mos_mean") is None else f"{a['visqol_mos_mean']:.2f} ({a['visqol_mos_min']:.2f})"
            lines.append(f"| {name} | {policy} | {a['normalised_accuracy_before']:.3f} → {a['normalised_accuracy']:.3f} | "
                         f"{100 * a['success_rate']:.0f} % ({a['n_examples']} ex.) | {a['snr_db_mean']:.1f} ± "
                         f"{a['snr_db_std']:.1f} | {a['snr_db_min']:.1f} | {mos} | {a['mean_iterations']:.1f} | "
                         f"{a['mean_seconds']:.1f} |")
    lines += ["", "The smallest change that makes each model wrong (`attack --minimize`, always-wrong targets, to 0.5 dB, "
              f"floor {a0['snr_db']:g} dB, judged on the written files; recordings spread over the covered genres):", ""]
    for name, r in s["models"].items():
        m = r["minimal"]
        if m is None:
            lines.append(f"- {name}: {MISSING}.")
            continue
        median = ("none: at least half needed no change" if m["median_snr_db"] is None
                  else f"{m['median_snr_db']:.1f} dB")
        lines.append(f"- {name}: median {median}, over {m['n_examples']} recordings "
                     f"({m['n_success']} reached their target, {m['n_unchanged']} needed no change: the model already "
                     f"said the target); {m['mean_levels']:.1f} levels and {m['mean_seconds']:.0f} s per example.")
    return lines + [""]


def curves(s):
    lines = ["### Robustness curves (normalised accuracy at each SNR; always-wrong targets)", "",
             "Controls at exactly that SNR, 16-bit: white noise, noise with the recording's long-term spectrum, the "
             "adversarial perturbation's STFT magnitudes with random phase.", ""]
    for name, r in s["models"].items():
        c = r["robustness"]
        chance = 1 / len(r["labels"])
        if c is None:
            lines += [f"**{name}**: {MISSING}.", ""]
            continue
        lines += [f"**{name}** (clean {_f(c['clean_accuracy'])}, {c['curve'][0]['n'] if c['curve'] else 0} recordings)", ""]
        lines += curve_table(c) + ["", reading(c, chance), ""]
    return lines


def _tags(t):
    if not t:
        return "—"
    return (f"{t['gained_per_change']:.2f} / {t['lost_per_change']:.2f} ({100 * t['changed']:.0f} % of changes), "
            f"ROC-AUC {_f(t['mean_roc_auc'], 3)}")


def horse_and_survival(s):
    lines = ["### Horse tests and survival", "",
             "Horse tests: up to the stated number of random draws per clip, each judged as its 16-bit file; best and "
             "worst choose one draw per clip. Tags: mean number of mapped tags turned on / off (likelihood crossing 0.5) "
             "per draw against the clean clip, and the mean tag-wise ROC-AUC of the draws' likelihoods against the clean "
             "clip's tags (1: the ranking of on and off tags kept).", "",
             "| model | transformation | clean | random draw | best | worst | draws changing the label | tags on / off per draw |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in s["models"].items():
        for kind, h in r["horse"].items():
            if h is None:
                lines.append(f"| {name} | {kind} | {MISSING} | | | | | |")
                continue
            acc = h["normalised_accuracy"]
            lines.append(f"| {name} | {h['description']} ({h['trials']} draws) | {_f(acc['clean'])} | {_f(acc['random'])} | "
                         f"{_f(acc['best'])} | {_f(acc['worst'])} | {100 * h['changed_trials']:.0f} % | "
                         f"{_tags(h.get('tags'))} |")
    lines += ["", "Survival: the always-wrong adversarial examples and their originals transformed alike and judged again "
              "(shares over the examples that reached a target other than the original's label).", "",
              "| model | transformation | keep the target | return to the original's label | transformed originals keep "
              "their label | median SNR dB before → after | examples | tags on / off |", "|---|---|---|---|---|---|---|---|"]
    for name, r in s["models"].items():
        for kind, v in r["survival"].items():
            if v is None:
                lines.append(f"| {name} | {kind} | {MISSING} | | | | | |")
                continue
            lines.append(f"| {name} | {v['description']} | {100 * v['survived']:.0f} % | {100 * v['returned']:.0f} % | "
                         f"{100 * v['original_kept']:.0f} % | {_f(v['median_snr_db_before'], 1)} → "
                         f"{_f(v['median_snr_db_after'], 1)} | {v['n_adversarial']} | {_tags(v.get('tags'))} |")
    return lines + [""]


def verdict(s):
    """Is musicnn a horse by the paper's standard? Read off the figures above."""
    out = ["### Is musicnn a horse?", ""]
    for name, r in s["models"].items():
        a, t = r["attacks"], r["test"]
        if None in (a["random"], a["all_wrong"], r["robustness"], *r["horse"].values()):
            out += [f"{name}: the verdict waits for its attacks, robustness curve and horse tests ({MISSING}).", ""]
            continue
        chance = 1 / len(r["labels"])
        m = (r["minimal"] or {}).get("median_snr_db")
        curve = r["robustness"]["curve"]
        noise_ok = [row for row in curve if min(row["white_noise_accuracy"], row["shaped_noise_accuracy"],
                                                row["random_phase_accuracy"]) >= r["robustness"]["clean_accuracy"] - 0.1]
        lowest_quiet = min((row["snr_db"] for row in noise_ok), default=None)
        worst = min(h["normalised_accuracy"]["worst"] for h in r["horse"].values())
        real = t["binomial_p"] < 0.05 and t["normalised_accuracy"] > chance
        text = (f"{name} {'is' if real else 'is not shown to be'} a genre system on the genres its tags cover "
                f"(normalised accuracy {t['normalised_accuracy']:.2f}, chance {chance:.2f}, binomial p {t['binomial_p']:.1g}). "
                f"{'Yet the' if real else 'The'} adversary makes it say a random genre on "
                f"{100 * a['random']['success_rate']:.0f} % and a wrong one on {100 * a['all_wrong']['success_rate']:.0f} % of the "
                f"clips at ≥ 15 dB (mean {a['all_wrong']['snr_db_mean']:.1f} dB"
                + ("" if a["all_wrong"].get("visqol_mos_mean") is None else
                   f", ViSQOL {a['all_wrong']['visqol_mos_mean']:.2f}") + ")"
                + ("" if m is None else f", and the median smallest change that makes it wrong lies {m:.1f} dB below the music")
                + ". ")
        if lowest_quiet is not None:
            text += (f"Noise (white, shaped, random-phase) leaves it within 0.1 of its clean accuracy down to "
                     f"{lowest_quiet:g} dB on the robustness curve's clips. ")
        text += (f"Irrelevant transformations choose between {worst:.2f} and "
                 f"{max(h['normalised_accuracy']['best'] for h in r['horse'].values()):.2f}. ")
        steered = a["random"]["success_rate"] >= 0.9 and a["all_wrong"]["success_rate"] >= 0.9
        # Noise as large as the adversary's changes must leave the system alone: the smallest change
        # that makes it wrong (median minimal SNR) where it was measured, else the attacks' mean SNR.
        size = m if m is not None else a["all_wrong"]["snr_db_mean"]
        if steered and lowest_quiet is not None and lowest_quiet <= size:
            text += ("By the paper's standard (a system that changes its answer to any label under changes that noise of "
                     "the same size does not make, and that a listener does not take for another genre, has not learned "
                     "the genre) it behaves as a horse: its genre tags answer from cues other than the genre. Whether the "
                     "changes are inaudible is a listener's question (see the ViSQOL figures above).")
        else:
            why = ("the adversary does not reach its targets on 90 % of the clips within the bound" if not steered else
                   "noise as large as its smallest changes was not shown to leave it alone")
            text += f"By the paper's standard this does not show a horse: {why}."
        out += [text, ""]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study_dir", type=Path)
    ap.add_argument("page", type=Path)
    ap.add_argument("--command", default="musadv experiment musicnn ../shared/gtzan-mini/genres --out musicnn-study",
                    help="the command that made STUDY_DIR, quoted in the page")
    args = ap.parse_args()
    s = load_study(args.study_dir)
    n = s["recordings"]
    lines = [BEGIN, "## musicnn's published taggers, judged with no training", "",
             f"Generated by `python scripts/musicnn_results.py {args.study_dir} {args.page}` from the run made by "
             f"`{args.command}` ({n} clips, seed {s['settings']['seed']}; "
             f"{s['seconds'] / 60:.0f} min of stages on this project's 2-core machine). musicnn 0.1.0's weights in "
             "musadv's PyTorch rebuild, which matches the package's TensorFlow taggrams to 4.8e-6 "
             "(`tests/test_musicnn.py`).", ""]
    lines += systems_table(s) + attacks_table(s) + curves(s) + horse_and_survival(s) + verdict(s) + [END]
    section = "\n".join(lines)
    page = args.page.read_text() if args.page.exists() else ""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    page = pattern.sub(lambda _: section, page) if pattern.search(page) else page.rstrip("\n") + "\n\n" + section + "\n"
    args.page.write_text(page)
    print(args.page)


if __name__ == "__main__":
    main()

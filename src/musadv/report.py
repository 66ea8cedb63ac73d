"""Reports to look at and listen to: one self-contained HTML page per run directory.

``write_report(DIR)`` turns a study (``summary.json``: its systems' verdicts, each linked to its
judgement's page), an attack run (``run.json``), a
robustness curve, a horse test, a survival run, a test (``metrics.json``) or a model directory
(``model.json``) into ``DIR/report.html`` with its
figures in ``DIR/report-media/``; audio players point at the WAVs already in the directory, so
the page needs no network. Figures are drawn with matplotlib's headless backend; the page comes
from a Jinja2 template with autoescaping, so file names with ``<``, ``&`` or quotes are shown
as text, never interpreted.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from jinja2 import Environment  # noqa: E402

from . import audio  # noqa: E402
from .driver import read_records  # noqa: E402
from .errors import MusadvError  # noqa: E402
from .io import write_bytes_atomic  # noqa: E402
from .spectral import STFTConfig, magnitude  # noqa: E402

__all__ = ["write_report", "confusion_figure", "spectrum_figure", "trace_figure"]

MAX_DETAILED = 24  # examples per run that get spectrum and trace figures


def confusion_figure(fom: dict, path: Path, title: str) -> Path:
    """Confusion matrix (rows true, columns predicted) with recall per class, as in Figs. 2-4 and 6."""
    labels, conf = fom["labels"], np.array(fom["confusion"])
    k = len(labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    ax.imshow(conf / np.maximum(conf.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if conf[i, j]:
                ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(k), labels, rotation=60, ha="right", fontsize=8)
    recall = fom["recall"]
    ylabels = [f"{lab} ({'-' if recall[lab] is None else round(100 * recall[lab])}%)" for lab in labels]
    ax.set_yticks(range(k), ylabels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (recall)")
    ax.set_title(f"{title}\nnormalised accuracy {fom['normalised_accuracy']:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def spectrum_figure(original: np.ndarray, adversarial: np.ndarray, config: STFTConfig, path: Path, title: str) -> Path:
    """Original vs adversarial magnitude spectrum in dB (paper Fig. 5): one frame and the average."""
    a, b = magnitude(original, config), magnitude(adversarial, config)
    freqs = np.arange(a.shape[1]) * config.sr / config.n_fft / 1000
    frame = a.shape[0] // 2
    db = lambda m: 20 * np.log10(np.maximum(m, 1e-8))
    fig, axes = plt.subplots(1, 2, figsize=(9, 2.8), sharey=True)
    for ax, (x, y, name) in zip(axes, [(a[frame], b[frame], f"frame {frame}"), (a.mean(0), b.mean(0), "mean over frames")]):
        ax.plot(freqs, db(x), lw=0.8, label="original")
        ax.plot(freqs, db(y), lw=0.8, alpha=0.8, label="adversarial")
        ax.plot(freqs, db(np.abs(y - x)), lw=0.6, alpha=0.7, label="|difference|")
        ax.set_xlabel("frequency (kHz)")
        ax.set_title(name, fontsize=9)
    axes[0].set_ylabel("magnitude (dB)")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def trace_figure(trace: list[dict], path: Path, title: str, threshold: float | None = None) -> Path:
    """Target posterior and SNR per iteration of one attack."""
    it = [t["iteration"] for t in trace]
    fig, ax = plt.subplots(figsize=(4.5, 2.6))
    ax.plot(it, [t["target_posterior"] for t in trace], color="C0", marker=".", ms=3)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("iteration")
    ax.set_ylabel("target posterior", color="C0")
    if threshold:
        ax.axhline(threshold, color="C0", lw=0.6, ls=":")
    snr = [t["snr_db"] if t["snr_db"] is not None and np.isfinite(t["snr_db"]) else np.nan for t in trace]
    ax2 = ax.twinx()
    ax2.plot(it, snr, color="C3", lw=0.8)
    ax2.set_ylabel("SNR (dB)", color="C3")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def _attack_section(run: Path, base: Path, media: Path, name: str) -> dict:
    """Figures and rows of one attack run, with paths relative to the report's folder."""
    meta = json.loads((run / "run.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    rows = _read_csv(run / "results.csv")
    tag = name.replace("/", "_")
    figures = []
    for key, title in (("before", "before the attack"), ("after", "under the attack (decoded files)")):
        if key in metrics:
            figures.append(_rel(confusion_figure(metrics[key], media / f"{tag}-confusion-{key}.png", f"{name}: {title}"), base))
    config = STFTConfig.from_dict(meta["stft"]) if "stft" in meta else STFTConfig()
    examples = []
    for i, row in enumerate(rows):
        ex = {**row, "wav_src": _rel(run / row["wav"], base), "original_src": _rel(run / row["original_wav"], base)}
        if i < MAX_DETAILED:
            record = json.loads((run / "examples" / f"{row['example']}.json").read_text())
            # As the model hears them: the figure's frequency axis is the model's.
            orig, _ = audio.load(run / row["original_wav"], sr=config.sr)
            adv, _ = audio.load(run / row["wav"], sr=config.sr)
            stem = f"{tag}-{i:03d}"
            ex["spectrum"] = _rel(spectrum_figure(orig, adv, config, media / f"{stem}-spectrum.png",
                                                  f"{row['file']} -> {row['target']}"), base)
            ex["trace"] = _rel(trace_figure(record["trace"], media / f"{stem}-trace.png", "per iteration",
                                            meta["attack"]["threshold"]), base)
        examples.append(ex)
    grid = None
    if meta["policy"] == "every_label":
        grid = {"labels": meta["labels"], "rows": []}
        by_file: dict[str, dict] = {}
        for ex in examples:
            by_file.setdefault(ex["file"], {})[ex["target"]] = ex
        for file, cells in by_file.items():
            first = next(iter(cells.values()))
            grid["rows"].append({"file": file, "true": first["true"], "original_src": first["original_src"],
                                 "cells": [cells.get(lab) for lab in meta["labels"]]})
    snr = metrics.get("snr_wave_db") or {}
    return {"name": name, "policy": meta["policy"], "attack": meta["attack"], "metrics": metrics, "snr": snr,
            "snr_trim": metrics.get("snr_trim_db") or {}, "visqol": metrics.get("visqol_mos") or {},
            "nmr": metrics.get("nmr_db") or {}, "above": metrics.get("above_mask_share") or {},
            "output": meta.get("output", "at the model's rate"),
            "robust": [t["kind"] for t in meta["attack"].get("robust_to", [])],
            "figures": figures, "examples": examples, "grid": grid, "n_detailed": min(len(rows), MAX_DETAILED)}


TEMPLATE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>musadv report: {{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
th{background:#f3f3f3}.ok{color:#070}.bad{color:#a00}img{max-width:100%}audio{width:210px;height:32px}
.figs img{margin-right:1em;vertical-align:top}.small{font-size:12px;color:#555}
</style></head><body>
<h1>musadv report: {{ title }}</h1>
<p class="small">Written by musadv {{ version }}. Audio and figures are files beside this page.</p>
{% if summary %}
<h2>Verdicts</h2>
<p>Every system judged on the same {{ summary.systems.values()|map(attribute="n")|first }} test recordings under the plan
<b>{{ summary.plan.name }}</b> (<code>musadv judge</code>): normalised accuracy clean and under the worst of a gradient and a
query-only adversary. Each system's page has its figures, controls and examples; the
<a href="leaderboard/leaderboard.html">leaderboard</a> ranks them.</p>
<table><tr><th>system</th><th>clean (95 % interval)</th><th>under attack</th><th>adversary vs noise gap</th><th>smallest change (median SNR dB)</th>
<th>horse spread</th><th>flags</th><th>verdict</th></tr>
{% for name, s in summary.systems.items() %}<tr><td><a href="judgements/{{ name }}/report.html">{{ name }}</a></td>
<td>{{ fmt(s.clean) }}{% if s.clean_interval %} ({{ fmt(s.clean_interval[0], 2) }}&ndash;{{ fmt(s.clean_interval[1], 2) }}){% endif %}</td>
<td>{{ fmt(s.robust) }}{% if s.robust_snr_db is not none %} at {{ "%g"|format(s.robust_snr_db) }} dB{% endif %}</td><td>{{ fmt(s.gap) }}</td>
<td>{{ fmt(s.smallest_change_db, 1) }}</td><td>{{ fmt(s.horse_spread) }}</td><td>{{ s.flags|join(", ") }}</td><td>{{ s.verdict }}</td></tr>{% endfor %}</table>
<p class="small">Seconds per stage: {% for k, v in summary.seconds.items() %}{{ k }} {{ "%.0f"|format(v) }}{% if not loop.last %}, {% endif %}{% endfor %}</p>
{% endif %}
{% if table %}<h2>{{ table.title }}</h2><table><tr>{% for h in table.header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in table.rows %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}
{% if confusions %}<h2>Confusion matrices</h2><div class="figs">{% for f in confusions %}<img src="{{ f }}" alt="confusion matrix">{% endfor %}</div>{% endif %}
{% if history %}<h2>Training</h2><div class="figs"><img src="{{ history }}" alt="training history"></div>{% endif %}
{% for c in curves %}
<h2>Robustness: {{ c.name }}</h2>
<p>{{ c.metrics.n_recordings }} recordings of {{ c.settings.get("split", "the split") }}, policy {{ c.settings.policy }};
{% if c.settings.examples_from %}adversarial examples of the network of {{ c.settings.examples_from }} (transfer){% elif c.settings.adversary != c.settings.system %}adversarial examples of {{ c.settings.adversary }} (transfer){% else %}adversarial examples of the system itself{% endif %}.
Clean normalised accuracy {{ fmt(c.metrics.clean_accuracy) }}. Each control is at exactly the level's SNR (the most the adversary may use);
an adversarial example may use less (median SNR in the table). Per recording, the highest level whose example this system labels with the target:
median {{ c.metrics.median_highest_success }}{% if c.metrics.no_level_succeeded %}, none for {{ c.metrics.no_level_succeeded }} recordings{% endif %}.
An adversary curve far below the noise curves at the same SNR means the system is steered by changes that noise of that size does not make;
noise curves that fall early mean the system is fragile to any change.</p>
{% if c.figure %}<div class="figs"><img src="{{ c.figure }}" alt="robustness curve"></div>{% endif %}
<table><tr><th>SNR (dB)</th><th>adversary</th><th>white noise</th><th>shaped noise</th><th>random phase</th><th>target reached</th><th>adversary's median SNR (dB)</th>{% if c.nmr %}<th>adversary's median NMR (dB)</th>{% endif %}</tr>
{% for r in c.metrics.curve %}<tr><td>{{ r.snr_db }}</td><td>{{ fmt(r.adversary_accuracy) }}</td><td>{{ fmt(r.white_noise_accuracy) }}</td>
<td>{{ fmt(r.shaped_noise_accuracy) }}</td><td>{{ fmt(r.random_phase_accuracy) }}</td><td>{{ pct(r.success_rate) }}</td><td>{{ fmt(r.adversary_snr_db_median, 1) }}</td>{% if c.nmr %}<td>{{ fmt(r.adversary_nmr_db_median, 1) if r.adversary_nmr_db_median is not none else "-inf (unchanged)" }}</td>{% endif %}</tr>{% endfor %}</table>
{% endfor %}
{% for h in horses %}
<h2>Horse test: {{ h.name }}</h2>
<p>{{ h.settings.system }}: {{ h.settings.description }}, {{ h.settings.trials }} draw{{ "s" if h.settings.trials > 1 }} per recording
of {{ h.settings.get("split", "the split") }}, seed {{ h.settings.seed }}. Each draw is judged as its 16-bit file; the kept draws were written and judged again from their files.
{% if h.results.snr_db %}SNR of the draws against their originals: median {{ "%.1f"|format(h.results.snr_db.median) }} dB
(min {{ "%.1f"|format(h.results.snr_db.min) }}, max {{ "%.1f"|format(h.results.snr_db.max) }}).{% endif %}
{{ pct(h.results.changed_trials) }} of draws change the original's label; {{ pct(h.results.changed_recordings) }} of recordings have such a draw.
{% if h.results.clipped_trials %}{{ h.results.clipped_trials }} draws clipped when rounded to 16 bits.{% endif %}</p>
<table><tr><th></th>{% for c in h.cases %}<th>{{ c }}</th>{% endfor %}<th>chance</th></tr>
<tr><td>normalised accuracy</td>{% for c in h.cases %}<td>{{ fmt(h.results.normalised_accuracy[c]) }}</td>{% endfor %}<td>{{ fmt(h.results.chance) }}</td></tr></table>
<div class="figs">{% for f in h.figures %}<img src="{{ f }}" alt="confusion matrix">{% endfor %}</div>
<table><tr><th>recording</th><th>true</th><th>original</th><th>a draw that makes it right</th><th>a draw that makes it wrong</th></tr>
{% for r in h.recordings %}<tr><td>{{ r.file }}</td><td>{{ r.true }}</td>
<td><audio controls preload="metadata" src="{{ r.original_src }}"></audio><br>{{ r.clean.label }} ({{ "%.2f"|format(r.clean.confidence) }})</td>
{% for side in ("right", "wrong") %}<td>{% if r[side] %}<audio controls preload="metadata" src="{{ r[side].src }}"></audio><br>
<span class="{{ 'ok' if side == 'right' else 'bad' }}">{{ r[side].label }}</span> ({{ "%.2f"|format(r[side].confidence) }}), draw {{ r[side].trial }}
{% else %}none of the draws{% endif %}</td>{% endfor %}</tr>{% endfor %}</table>
{% endfor %}
{% for v in survivals %}
<h2>Survival: {{ v.name }}</h2>
<p>The examples of {{ v.settings.run }} and their originals, {{ v.settings.description }}, judged by {{ v.settings.system }}.
Of {{ v.results.n_adversarial }} adversarial examples{% if v.results.n_draws|default(1) > 1 %}, each transformed {{ v.results.n_draws }} times (the shares are over draws){% endif %}, {{ pct(v.results.survived) }} keep the adversary's target,
{{ pct(v.results.returned) }} return to the original's label, {{ pct(v.results.other) }} get another label;
{{ pct(v.results.original_kept) }} of the transformed originals keep their label. Median SNR of the example against its original
{{ fmt(v.results.median_snr_db_before, 1) }} dB, of the transformed example against the transformed original {{ fmt(v.results.median_snr_db_after, 1) }} dB.</p>
<table><tr><th>example</th><th>true</th><th>before</th><th>target</th><th>transformed original</th><th>transformed example</th><th>SNR before / after (dB)</th></tr>
{% for r in v.rows %}<tr><td>{{ r.example }}{% if r.draw and r.draw != "0" %} (draw {{ r.draw }}){% endif %}</td><td>{{ r.true }}</td><td>{{ r.label_before }}</td><td>{{ r.target }}</td>
<td><audio controls preload="metadata" src="{{ r.original_src }}"></audio><br>{{ r.original_label }}</td>
<td><audio controls preload="metadata" src="{{ r.wav_src }}"></audio><br><span class="{{ 'bad' if r.survived == 'True' else 'ok' }}">{{ r.label }}</span></td>
<td>{{ fmt(r.snr_db_before, 1) }} / {{ fmt(r.snr_db, 1) }}</td></tr>{% endfor %}</table>
{% endfor %}
{% for sec in attacks %}
<h2>Attack: {{ sec.name }} (policy {{ sec.policy }})</h2>
<p>SNR limit {{ sec.attack.snr_db if sec.attack.snr_db is not none else "none" }} dB, step {{ sec.attack.step }}, threshold {{ sec.attack.threshold }},
at most {{ sec.attack.max_iter }} iterations, order {{ sec.attack.order }}{% if sec.attack.get("masking_db") is not none %},
every bin of the change kept {{ sec.attack.masking_db }} dB under the original's masking threshold{% endif %}{% if sec.robust %},
made robust to {{ sec.robust|join(", ") }} (expectation over transformation: every iteration also judged {{ sec.attack.draws }} transformed copies of
each random kind, one of each fixed one, and stopped when all reached the threshold){% endif %}. {{ sec.metrics.n_examples }} examples;
success on the decoded files {{ pct(sec.metrics.success_rate) }}{% if sec.snr %}; waveform SNR {{ "%.1f"|format(sec.snr.mean) }} &plusmn; {{ "%.1f"|format(sec.snr.std) }} dB
(min {{ "%.1f"|format(sec.snr.min) }}, max {{ "%.1f"|format(sec.snr.max) }}){% endif %}{% if sec.snr_trim %};
leaving out 93 ms at each edge (the reference code's measure) {{ "%.1f"|format(sec.snr_trim.mean) }} &plusmn; {{ "%.1f"|format(sec.snr_trim.std) }} dB
(min {{ "%.1f"|format(sec.snr_trim.min) }}){% endif %}{% if sec.visqol %}; ViSQOL MOS-LQO {{ "%.2f"|format(sec.visqol.mean) }}
(min {{ "%.2f"|format(sec.visqol.min) }}, of 5){% endif %}{% if sec.nmr %}; noise-to-mask ratio (the change's power over
the original's masking threshold per critical band, MPEG-1 psychoacoustic model 1; under 0 dB: masked on average) median {{ "%.1f"|format(sec.nmr.median) }} dB
(max {{ "%.1f"|format(sec.nmr.max) }}), {{ "%.2f"|format(100 * sec.above.mean) }} % of critical bands (per frame) above the threshold{% endif %}. Examples written {{ sec.output }}.
{% if sec.robust %}Fresh transformed copies of the written files (10 draws of each random transformation, never seen by the adversary, one
of a fixed one; each judged as its 16-bit file) keep the target, over the examples that reached it:
{% for kind, v in sec.metrics.held_out.items() %}{{ kind }} {{ pct(v) }}{{ ", " if not loop.last else "." }}{% endfor %}{% endif %}
{% if sec.attack.get("gradient") == "queries" %}Each step from queries alone (the system's predictions of changed copies){% if sec.attack.get("surrogate") %},
guided while it lowered the loss by the gradient of the surrogate {{ sec.attack.surrogate.model }}{% endif %}{% if sec.metrics.get("queries") %}:
{{ "%d"|format(sec.metrics.queries.median) }} queries per example (median; max {{ "%d"|format(sec.metrics.queries.max) }}){% endif %}.
{% endif %}{% if sec.metrics.get("gradient_check") %}{% set gc = sec.metrics.gradient_check %}Gradient check on {{ gc.recording }}:
{{ (gc.problems + gc.warnings)|join("; ") or "gradient usable" }} (attacked through {{ gc.attacked_through }}).
{% endif %}{% if sec.metrics.get("query_check") %}Query check: {{ sec.metrics.query_check.n_fooled }} of the {{ sec.metrics.query_check.n_tried }}
examples the gradient attack missed were reached through queries.
{% endif %}{% for flag in sec.metrics.get("flags") or [] %}<b class="bad">Flag: {{ flag }}.</b> {% endfor %}
{% if sec.metrics.failed %}<b class="bad">{{ sec.metrics.failed|length }} written files miss their target.</b>{% endif %}
{% if sec.metrics.lost_when_written %}<b class="bad">{{ sec.metrics.lost_when_written|length }} examples lost their target when written as 16-bit WAV.</b>{% endif %}</p>
<div class="figs">{% for f in sec.figures %}<img src="{{ f }}" alt="confusion matrix">{% endfor %}</div>
{% if sec.grid %}<h3>Every label for the same recording (Table II)</h3>
<table><tr><th>recording</th>{% for lab in sec.grid.labels %}<th>{{ lab }}</th>{% endfor %}</tr>
{% for r in sec.grid.rows %}<tr><td>{{ r.file }} ({{ r.true }})<br><audio controls preload="metadata" src="{{ r.original_src }}"></audio></td>
{% for c in r.cells %}<td>{% if c %}<audio controls preload="metadata" src="{{ c.wav_src }}"></audio><br>
<span class="{{ 'ok' if c.success == '1' else 'bad' }}">{{ c.decoded_label }}</span> {{ "%.2f"|format(c.decoded_target_conf|float) }},
{{ fmt(c.snr_wave_db, 1) }} dB{% endif %}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}
<table><tr><th>#</th><th>recording</th><th>original</th><th>adversarial</th><th>true</th><th>target</th><th>before</th><th>after (decoded)</th>
<th>confidence</th><th>SNR wave / edge-trimmed / mag (dB)</th><th>ViSQOL MOS</th><th>NMR dB (bands above)</th>{% if sec.robust %}<th>held-out copies that keep the target</th>{% endif %}<th>iterations</th><th>spectrum (Fig. 5) and trace</th></tr>
{% for ex in sec.examples %}<tr><td>{{ loop.index }}</td><td>{{ ex.file }}</td>
<td><audio controls preload="metadata" src="{{ ex.original_src }}"></audio></td><td><audio controls preload="metadata" src="{{ ex.wav_src }}"></audio></td>
<td>{{ ex.true }}</td><td>{{ ex.target }}</td><td>{{ ex.label_before }} ({{ "%.2f"|format(ex.conf_before|float) }})</td>
<td class="{{ 'ok' if ex.success == '1' else 'bad' }}">{{ ex.decoded_label }}</td><td>{{ "%.2f"|format(ex.decoded_conf|float) }}</td>
<td>{{ fmt(ex.snr_wave_db, 1) }} / {{ fmt(ex.get("snr_trim_db"), 1) }} / {{ fmt(ex.snr_mag_db, 1) }}</td>
<td>{{ fmt(ex.get("visqol_mos"), 2) }}</td><td>{{ fmt(ex.get("nmr_db"), 1) }}{% if ex.get("above_mask_share") not in (none, "") %}
({{ "%.2f"|format(100 * ex.above_mask_share|float) }} %){% endif %}</td>{% if sec.robust %}<td>{% for kind in sec.robust %}{{ kind }} {{ pct(ex.get("held_out_" ~ kind)|float) }}{{ ", " if not loop.last }}{% endfor %}</td>{% endif %}<td>{{ ex.iterations }}{% if ex.get("repairs") not in (none, "", "0") %} ({{ ex.repairs }} repair){% endif %}{% if ex.get("queries") not in (none, "") %}<br>{{ ex.queries }} queries{% endif %}</td>
<td>{% if ex.spectrum %}<img src="{{ ex.spectrum }}" alt="spectra" width="480"><img src="{{ ex.trace }}" alt="trace" width="260">{% endif %}</td></tr>{% endfor %}</table>
{% if sec.examples|length > sec.n_detailed %}<p class="small">Figures for the first {{ sec.n_detailed }} examples.</p>{% endif %}
{% endfor %}
</body></html>
"""


def _curve_section(run: Path, base: Path) -> dict:
    """A robustness run: its curve, its table and how it was made."""
    settings = json.loads((run / "robustness.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    return {"name": run.resolve().name if run == base else run.name, "settings": settings, "metrics": metrics,
            "figure": _rel(run / "curve.png", base) if (run / "curve.png").exists() else None,
            "nmr": bool(settings.get("nmr"))}


def _horse_section(run: Path, base: Path, media: Path) -> dict:
    """A horse run: its figures per case, confusion matrices and players for the kept draws."""
    from .horse import CASES

    settings = json.loads((run / "horse.json").read_text())
    results = settings.pop("results")
    name = run.resolve().name if run == base else run.name
    figures = [_rel(confusion_figure(results["figures"][c], media / f"horse-{name}-{c}.png", f"{name}: {c}"), base)
               for c in CASES if results["figures"][c]]
    recordings = []
    for r in read_records(run / "recordings"):
        r["original_src"] = _rel(run / r["original_wav"], base)
        for side in ("right", "wrong"):
            if r[side]:
                r[side]["src"] = _rel(run / r[side]["wav"], base)
        recordings.append(r)
    return {"name": name, "settings": settings, "results": results, "cases": CASES, "figures": figures,
            "recordings": recordings}


def _survival_section(run: Path, base: Path) -> dict:
    """A survival run: its shares and, per example, players for the transformed original and example."""
    settings = json.loads((run / "survive.json").read_text())
    results = settings.pop("results")
    rows = [{**r, "wav_src": _rel(run / r["wav"], base), "original_src": _rel(run / r["original_wav"], base)}
            for r in _read_csv(run / "survive.csv")]
    return {"name": run.resolve().name if run == base else run.name, "settings": settings, "results": results, "rows": rows}


def _fmt(v, digits: int = 3) -> str:
    try:
        return "" if v is None or v == "" else f"{float(v):.{digits}f}"
    except (TypeError, ValueError):
        return str(v)


def _pct(v) -> str:
    return "" if v is None else f"{100 * float(v):.1f} %"


def _history_figure(info: dict, path: Path) -> Path | None:
    hist = info.get("training", {}).get("history")
    if not hist:
        return None
    fig, ax = plt.subplots(figsize=(5, 2.8))
    ep = [h["epoch"] for h in hist]
    ax.plot(ep, [h["train_loss"] for h in hist], label="train loss")
    ax2 = ax.twinx()
    ax2.plot(ep, [h["valid_error"] for h in hist], color="C1", label="validation error")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss")
    ax2.set_ylabel("validation error", color="C1")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_report(run_dir: str | os.PathLike, title: str | None = None) -> Path:
    """Write ``RUN_DIR/report.html`` for a study, attack run, test or model directory.

    Returns
    -------
    Path
        The HTML file.
    """
    from . import __version__

    base = Path(run_dir)
    media = base / "report-media"
    media.mkdir(parents=True, exist_ok=True)
    ctx = {"title": title or base.resolve().name, "version": __version__, "summary": None, "table": None,
           "confusions": [], "history": None, "attacks": [], "curves": [], "horses": [], "survivals": []}
    if (base / "summary.json").exists():
        ctx["summary"] = json.loads((base / "summary.json").read_text())
        if "plan" not in ctx["summary"]:
            raise MusadvError(f"{base / 'summary.json'}: a study written before studies judged their systems "
                              "(musadv judge); run it again into a new folder")
    if (base / "table.json").exists():
        ctx["table"] = json.loads((base / "table.json").read_text())
    if (base / "run.json").exists() and (base / "results.csv").exists():
        ctx["attacks"].append(_attack_section(base, base, media, base.resolve().name))
    for run in sorted(p.parent for p in base.glob("attacks/*/run.json")):
        if (run / "results.csv").exists():
            ctx["attacks"].append(_attack_section(run, base, media, run.name))
    for run in [base] + sorted(p.parent for p in base.glob("robustness/*/robustness.json")):
        if (run / "robustness.json").exists() and (run / "metrics.json").exists():
            ctx["curves"].append(_curve_section(run, base))
    for run in [base] + sorted(p.parent for p in base.glob("horse/*/horse.json")):
        if (run / "horse.json").exists() and json.loads((run / "horse.json").read_text()).get("results"):
            ctx["horses"].append(_horse_section(run, base, media))
    for run in [base] + sorted(p.parent for p in base.glob("survive/*/survive.json")):
        if (run / "survive.json").exists() and json.loads((run / "survive.json").read_text()).get("results"):
            ctx["survivals"].append(_survival_section(run, base))
    if (base / "metrics.json").exists() and not ctx["attacks"] and not ctx["curves"]:
        fom = json.loads((base / "metrics.json").read_text())
        if "confusion" in fom:
            ctx["confusions"].append(_rel(confusion_figure(fom, media / "confusion.png", base.name), base))
    if (base / "model.json").exists():
        info = json.loads((base / "model.json").read_text())
        fig = _history_figure(info, media / "history.png")
        ctx["history"] = _rel(fig, base) if fig else None
        for test in sorted(base.glob("test-*/metrics.json")):
            ctx["confusions"].append(_rel(confusion_figure(json.loads(test.read_text()), media / f"{test.parent.name}.png",
                                                           test.parent.name), base))
    env = Environment(autoescape=True)
    env.globals.update(fmt=_fmt, pct=_pct)
    html = env.from_string(TEMPLATE).render(**ctx)
    return write_bytes_atomic(base / "report.html", html.encode("utf-8"))

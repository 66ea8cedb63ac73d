"""Listening tests of an attack run: pages a listener opens in a browser, and what their answers show.

:func:`write_listening_test` turns the adversarial examples of an attack run into a folder that
needs nothing else (no server, no network): ``index.html`` and the excerpts it plays.

``'abx'``
    Each trial plays A and B (the original and the adversarial example, in random order) and X
    (one of them at random); the listener says whether X is A or B. A listener who cannot hear
    the change is right half the time.
``'mushra'``
    Each example is one screen (ITU-R BS.1534 in form): the open reference (the original) and,
    in random order under neutral names, the hidden reference, the adversarial example and an
    anchor, white noise at the adversarial example's own SNR over the excerpt; the listener
    scores each from 0 (bad) to 100 (excellent).

Every stimulus is its own file under a random name drawn for the test (nothing in a name or a
player's menu tells the condition). The order of trials, of A and B, of X and of the screens'
stimuli is drawn afresh for every listener in the page; a trial can be answered only once each
of its sounds has been played to the end, and the last answer can be undone. Answers are kept
in the browser while the test runs (a reload resumes it) and exported as a JSON or CSV file,
whose name the end page gives. :func:`pool_answers` reads such files from several listeners,
validating every field (one line naming the file and the row for anything damaged; an ABX
answer's correctness is recomputed from the answer and X, never read from the file), and
:func:`evaluate` gives, per example and overall, the ABX detection rate with a one-sided
binomial test against guessing, and the MUSHRA scores with 95 % confidence intervals over
listeners (each listener's mean is one observation: scores of one listener are not
independent).

Excerpts are cut where the change is loudest relative to the music (the largest ratio of the
change's energy to the original's over the excerpt): the hardest place for the adversary to
hide its change, so a test passed there is passed everywhere in the clip.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from . import audio
from .attack import snr_db
from .errors import MusadvError
from .io import read_tagged_json, write_bytes_atomic, write_csv_atomic, write_json_atomic

__all__ = ["KINDS", "write_listening_test", "loudest_change", "read_answers", "pool_answers", "evaluate",
           "binomial_p_value", "write_results", "TEST_FORMAT", "ANSWERS_FORMAT"]

KINDS = ("abx", "mushra")
TEST_FORMAT = "musadv-listening-test"
ANSWERS_FORMAT = "musadv-listening-answers"
#: MUSHRA's stimuli on every screen.
CONDITIONS = ("hidden_reference", "adversarial", "anchor")
#: Step (s) of the search for the excerpt where the change is loudest.
EXCERPT_HOP_SECONDS = 0.5
ABX_FIELDS = ["test_id", "listener", "session", "trial", "example", "a", "x", "answer", "correct", "seconds"]
MUSHRA_FIELDS = ["test_id", "listener", "session", "screen", "example", "condition", "score"]


def loudest_change(original: np.ndarray, changed: np.ndarray, sr: int, seconds: float) -> tuple[int, int]:
    """The excerpt ``[start, stop)`` (samples) of ``seconds`` where the change is loudest relative to the music.

    Parameters
    ----------
    original, changed : np.ndarray
        ``(n_channels, n_samples)`` at ``sr`` Hz.
    sr : int
    seconds : float
        Length of the excerpt; the whole recording if it is shorter.

    Returns
    -------
    tuple of int
        Among excerpts starting every :data:`EXCERPT_HOP_SECONDS`, the one with the largest
        ratio of the change's energy to the original's (an excerpt of digital silence counts
        as infinitely loud if anything changed in it).
    """
    n = original.shape[-1]
    length = min(n, max(1, int(round(seconds * sr))))
    change = np.square(changed.astype(np.float64) - original).sum(0)
    music = np.square(original.astype(np.float64)).sum(0)
    csum = lambda e: np.concatenate([[0.0], np.cumsum(e)])  # noqa: E731
    c, m = csum(change), csum(music)
    starts = np.arange(0, n - length + 1, max(1, int(EXCERPT_HOP_SECONDS * sr)))
    ec, em = c[starts + length] - c[starts], m[starts + length] - m[starts]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(em > 0, ec / np.where(em > 0, em, 1.0), np.where(ec > 0, np.inf, 0.0))
    start = int(starts[int(np.argmax(ratio))])
    return start, start + length


def write_listening_test(run_dir: str | os.PathLike, out_dir: str | os.PathLike, kind: str = "abx", trials: int = 20,
                         excerpt_seconds: float = 10.0, seed: int = 0, title: str | None = None) -> Path:
    """Write a listening test of an attack run's successful adversarial examples into ``out_dir``.

    Parameters
    ----------
    run_dir : path
        An attack run (its ``results.csv`` and WAVs).
    out_dir : path
        Gets ``index.html``, ``audio/`` (16-bit WAV excerpts at each file's rate) and
        ``test.json`` (what each example is, for :func:`evaluate`).
    kind : {'abx', 'mushra'}
    trials : int
        ABX trials per listener (the examples in turn); MUSHRA: screens (at most one per example).
    excerpt_seconds : float
        Length of each excerpt (s): see :func:`loudest_change`.
    seed : int
        Seed of the anchors' noise (the listener's order is drawn in the page).
    title : str, optional

    Returns
    -------
    Path
        ``out_dir / 'index.html'``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, not {trials}")
    if not excerpt_seconds > 0:
        raise ValueError(f"excerpt_seconds must be > 0, not {excerpt_seconds}")
    run, out = Path(run_dir), Path(out_dir)
    results = run / "results.csv"
    if not results.exists():
        raise MusadvError(f"{run}: not an attack run (no results.csv)")
    with open(results, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("success") == "1" and r.get("wav") and r.get("snr_wave_db")]
    if not rows:
        raise MusadvError(f"{results}: no successful adversarial example with a change to listen to")
    rows = rows[:trials] if kind == "mushra" else rows
    rng = np.random.default_rng(seed)
    names = _file_names(np.random.default_rng([seed, 1]), len(rows) * (3 if kind == "mushra" else 2))
    examples, digest = [], hashlib.sha256(f"{kind}:{trials}:{excerpt_seconds}:{seed}".encode())
    for k, row in enumerate(rows):
        original, sr = audio.decode(run / row["original_wav"])
        changed, sr_changed = audio.decode(run / row["wav"])
        if sr_changed != sr or changed.shape != original.shape:
            raise MusadvError(f"{run / row['wav']}: not shaped like its original {row['original_wav']}")
        start, stop = loudest_change(original, changed, sr, excerpt_seconds)
        o, a = original[:, start:stop], changed[:, start:stop]
        stem = f"e{k:03d}"
        stimuli = {"original": o, "adversarial": a}
        if kind == "mushra":
            from .robustness import at_snr, white_noise

            stimuli["anchor"] = at_snr(o, white_noise(o, rng), snr_db(o, a))
        files = {}
        for name, y in stimuli.items():
            # A name drawn for the file: nothing in it (or in a player's menu) tells the condition.
            path = audio.save(out / "audio" / f"{names.pop()}.wav", y, sr, on_clip="clip")
            files[name] = f"audio/{path.name}"
            digest.update(path.read_bytes())
        examples.append({"id": stem, "example": row["example"], "file": row["file"], "target": row["target"],
                         "label_before": row["label_before"], "decoded_label": row["decoded_label"],
                         "snr_wave_db": float(row["snr_wave_db"]), "excerpt_snr_db": snr_db(o, a),
                         "nmr_db": float(row["nmr_db"]) if row.get("nmr_db") else None,
                         "visqol_mos": float(row["visqol_mos"]) if row.get("visqol_mos") else None,
                         "start_seconds": start / sr, "seconds": (stop - start) / sr, "sr": sr, "files": files})
    test_id = digest.hexdigest()[:16]
    manifest = {"format": TEST_FORMAT, "test_id": test_id, "kind": kind, "trials": trials if kind == "abx" else len(examples),
                "excerpt_seconds": excerpt_seconds, "run": str(run.resolve()), "examples": examples,
                "title": title or f"Listening test ({kind.upper()}) of {run.name}"}
    write_json_atomic(out / "test.json", manifest)
    # Files of an earlier test written here would be played by nobody and mistaken for this one's.
    kept = {f for e in examples for f in e["files"].values()}
    for stale in (out / "audio").glob("*.wav"):
        if f"audio/{stale.name}" not in kept:
            stale.unlink()
    return write_bytes_atomic(out / "index.html", _page(manifest).encode())


def _file_names(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct random names (16 hex digits) for a test's audio files, in the order drawn (the same seed,
    the same names)."""
    names: list[str] = []
    while len(names) < n:
        name = f"{int(rng.integers(0, 2**63)):016x}"
        if name not in names:
            names.append(name)
    return names


def _page(manifest: dict) -> str:
    public = {k: manifest[k] for k in ("format", "test_id", "kind", "trials", "title")}
    public["examples"] = [{"id": e["id"], "files": e["files"]} for e in manifest["examples"]]
    # The manifest sits in the page as JSON; "</" is escaped so that no file name can close the script.
    data = json.dumps(public).replace("</", "<\\/")
    return PAGE.replace("__TITLE__", _escape(manifest["title"])).replace("__DATA__", data)


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
            .replace("'", "&#39;"))


PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:sans-serif;max-width:46em;margin:2em auto;padding:0 1em;line-height:1.4}
button{font-size:1em;padding:.4em 1em;margin:.2em}audio{width:100%;margin:.2em 0}
.stim{border:1px solid #ccc;padding:.5em;margin:.5em 0}.hidden{display:none}input[type=range]{width:100%}
.scale{display:flex;font-size:.8em;color:#555}.scale span{flex:1;text-align:center;border-left:1px solid #bbb}
.scale span:last-child{border-right:1px solid #bbb}.played{color:#070;font-size:.85em;margin-left:.5em}
.warn{color:#a00}
</style></head><body>
<h1>__TITLE__</h1>
<div id="intro"><p>Use headphones in a quiet room. Play the sounds as often as you like.</p>
<p id="how-abx" class="hidden">Each trial has three sounds: A, B and X. X is the same recording as A or as B.
Say which. If you cannot hear a difference, guess.</p>
<p id="how-mushra" class="hidden">Each screen has a reference and three sounds. Score how close each sound is to the
reference, from 0 (bad) to 100 (excellent, no difference). One of them is the reference itself.</p>
<p>Every sound must be played to the end once before you can answer.</p>
<label>Your name or code: <input id="listener" autocomplete="off"></label> <button id="start">Start</button>
<p id="name-needed" class="warn hidden">Enter your name or code first.</p></div>
<div id="trial" class="hidden"><h2 id="progress"></h2><div id="stimuli"></div>
<p id="play-all" class="warn">Play every sound to the end to answer.</p>
<div id="abx-answer" class="hidden"><button id="answer-A" disabled>X is A</button><button id="answer-B" disabled>X is B</button></div>
<button id="next" class="hidden" disabled>Next</button> <button id="undo" class="hidden">Undo the last answer</button></div>
<div id="done" class="hidden"><h2>Thank you</h2><p>Save your answers and send the file to the experimenter.</p>
<button id="export-json">Save answers (JSON)</button><button id="export-csv">Save answers (CSV)</button>
<button id="undo-done">Undo the last answer</button>
<p id="saved-as"></p></div>
<script id="test-data" type="application/json">__DATA__</script>
<script>
"use strict";
const TEST = JSON.parse(document.getElementById("test-data").textContent);
const $ = id => document.getElementById(id);
const shuffle = a => { for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [a[i], a[j]] = [a[j], a[i]]; } return a; };
let state = null, shown = 0;
const key = () => "musadv-listening:" + TEST.test_id + ":" + state.listener;
const save = () => localStorage.setItem(key(), JSON.stringify(state));

function plan(listener) {
  const s = {format: "musadv-listening-answers", test_id: TEST.test_id, kind: TEST.kind, listener: listener,
             session: Math.random().toString(36).slice(2, 10) + Date.now().toString(36),
             started: new Date().toISOString(), user_agent: navigator.userAgent, abx: [], mushra: [], plan: []};
  const ex = TEST.examples;
  if (TEST.kind === "abx") {
    const order = shuffle(Array.from({length: TEST.trials}, (_, i) => ex[i % ex.length].id));
    s.plan = order.map(id => ({example: id, a: Math.random() < 0.5 ? "original" : "adversarial",
                               x: Math.random() < 0.5 ? "A" : "B"}));
  } else {
    s.plan = shuffle(ex.map(e => e.id)).map(id => ({example: id,
      order: shuffle(["hidden_reference", "adversarial", "anchor"])}));
  }
  return s;
}

const played = new Set();
// A sound counts as heard once it has played to its end; the answer waits for every sound of the trial.
function player(label, src, onPlayed) {
  const d = document.createElement("div"); d.className = "stim";
  const h = document.createElement("strong"); h.textContent = label; d.appendChild(h);
  const mark = document.createElement("span"); mark.className = "played"; d.appendChild(mark);
  const a = document.createElement("audio"); a.controls = true; a.preload = "auto"; a.src = src; d.appendChild(a);
  a.addEventListener("ended", () => { played.add(label); mark.textContent = "played"; if (onPlayed) onPlayed(); refresh(); });
  return d;
}

function refresh() {
  const n = document.querySelectorAll("#stimuli audio").length, all = played.size >= n;
  $("play-all").classList.toggle("hidden", all);
  if (state.kind === "abx") { $("answer-A").disabled = !all; $("answer-B").disabled = !all; }
  else $("next").disabled = !(all && Array.from($("stimuli").querySelectorAll("input")).every(x => x.dataset.touched));
  $("undo").classList.toggle("hidden", answered() === 0);
}

const answered = () => state.kind === "abx" ? state.abx.length : state.mushra.length;
const fileName = format => "answers-" + state.listener.replace(/[^A-Za-z0-9_-]+/g, "_") + "-" + TEST.test_id.slice(0, 8) + "." + format;

function scale() {
  const d = document.createElement("div"); d.className = "scale";
  ["Bad 0-20", "Poor 20-40", "Fair 40-60", "Good 60-80", "Excellent 80-100"].forEach(t => {
    const s = document.createElement("span"); s.textContent = t; d.appendChild(s); });
  return d;
}

function show() {
  const k = answered();
  played.clear();
  if (k >= state.plan.length) {
    $("trial").classList.add("hidden"); $("done").classList.remove("hidden");
    $("saved-as").textContent = "Your answers will be saved in your browser's downloads folder as " + fileName("json") +
      " (or " + fileName("csv") + ").";
    return;
  }
  $("done").classList.add("hidden"); $("trial").classList.remove("hidden");
  const p = state.plan[k], e = TEST.examples.find(x => x.id === p.example), box = $("stimuli");
  box.innerHTML = ""; shown = performance.now();
  $("progress").textContent = (state.kind === "abx" ? "Trial " : "Screen ") + (k + 1) + " of " + state.plan.length;
  if (state.kind === "abx") {
    const b = p.a === "original" ? "adversarial" : "original";
    const files = {A: e.files[p.a], B: e.files[b]};
    box.appendChild(player("A", files.A)); box.appendChild(player("B", files.B)); box.appendChild(player("X", files[p.x]));
    $("abx-answer").classList.remove("hidden");
  } else {
    box.appendChild(player("Reference", e.files.original));
    const src = {hidden_reference: e.files.original, adversarial: e.files.adversarial, anchor: e.files.anchor};
    p.order.forEach((c, i) => {
      const r = document.createElement("input"); r.type = "range"; r.min = 0; r.max = 100; r.value = 50;
      r.id = "score-" + (i + 1); r.dataset.touched = ""; r.disabled = true;
      const d = player("Sound " + (i + 1), src[c], () => { r.disabled = false; });
      const v = document.createElement("span"); v.textContent = " (play it, then move the slider)";
      r.addEventListener("input", () => { r.dataset.touched = "1"; v.textContent = " " + r.value; refresh(); });
      d.appendChild(r); d.appendChild(scale()); d.appendChild(v); box.appendChild(d);
    });
    $("next").classList.remove("hidden");
  }
  refresh();
}

function undo() {
  if (answered() === 0) return;
  (state.kind === "abx" ? state.abx : state.mushra).pop();
  save(); show();
}

function answerAbx(answer) {
  const k = state.abx.length, p = state.plan[k];
  state.abx.push({trial: k + 1, example: p.example, a: p.a, x: p.x, answer: answer, correct: answer === p.x,
                  seconds: (performance.now() - shown) / 1000});
  save(); show();
}

function answerMushra() {
  const k = state.mushra.length, p = state.plan[k];
  const scores = {};
  p.order.forEach((c, i) => { scores[c] = Number($("score-" + (i + 1)).value); });
  state.mushra.push({screen: k + 1, example: p.example, scores: scores, seconds: (performance.now() - shown) / 1000});
  save(); show();
}

function exportAnswers(format) {
  const out = Object.assign({}, state, {finished: new Date().toISOString()});
  delete out.plan;
  let text;
  if (format === "json") text = JSON.stringify(out, null, 1);
  else {
    const q = v => { const s = String(v); return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; };
    const head = ["test_id", "listener", "session"];
    const rows = state.kind === "abx"
      ? [head.concat(["trial", "example", "a", "x", "answer", "correct", "seconds"])].concat(state.abx.map(t =>
          [state.test_id, state.listener, state.session, t.trial, t.example, t.a, t.x, t.answer, t.correct, t.seconds]))
      : [head.concat(["screen", "example", "condition", "score"])].concat([].concat(...state.mushra.map(s =>
          Object.keys(s.scores).map(c => [state.test_id, state.listener, state.session, s.screen, s.example, c, s.scores[c]]))));
    text = rows.map(r => r.map(q).join(",")).join("\n") + "\n";
  }
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], {type: format === "json" ? "application/json" : "text/csv"}));
  a.download = fileName(format);
  document.body.appendChild(a); a.click(); a.remove();
  $("saved-as").textContent = "Saved as " + a.download + " in your browser's downloads folder: send it to the experimenter.";
}

$("how-" + TEST.kind).classList.remove("hidden");
$("start").addEventListener("click", () => {
  const listener = $("listener").value.trim();
  $("name-needed").classList.toggle("hidden", !!listener);
  if (!listener) { $("listener").focus(); return; }
  const kept = localStorage.getItem("musadv-listening:" + TEST.test_id + ":" + listener);
  state = kept ? JSON.parse(kept) : plan(listener);
  save(); $("intro").classList.add("hidden"); $("trial").classList.remove("hidden"); show();
});
$("answer-A").addEventListener("click", () => answerAbx("A"));
$("answer-B").addEventListener("click", () => answerAbx("B"));
$("next").addEventListener("click", answerMushra);
$("undo").addEventListener("click", undo);
$("undo-done").addEventListener("click", undo);
$("export-json").addEventListener("click", () => exportAnswers("json"));
$("export-csv").addEventListener("click", () => exportAnswers("csv"));
window.listening = {test: TEST, state: () => state};
</script></body></html>
"""


def read_answers(path: str | os.PathLike) -> dict:
    """One listener's answers, from the JSON or CSV file the page saved, every field validated.

    Returns
    -------
    dict
        ``test_id``, ``listener``, ``session``, ``kind``, and ``abx`` (trials: ``trial``,
        ``example``, ``a``, ``x``, ``answer`` and ``correct``, recomputed as ``answer == x``) or
        ``mushra`` (screens: ``screen``, ``example``, ``scores`` by condition, each 0 to 100).

    Raises
    ------
    MusadvError
        One line naming the file and the row (CSV) or answer (JSON) for anything missing,
        malformed or out of range, a row cut short included.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        raw = read_tagged_json(path, ANSWERS_FORMAT, MusadvError, "no such file",
                               f"not a file of listening-test answers (format {ANSWERS_FORMAT!r})")
        items = {k: raw.get(k) for k in ("abx", "mushra")}
        for k, v in items.items():
            if v is not None and not isinstance(v, list):
                raise MusadvError(f"{path}: {k!r} is not a list of answers")
        head = {k: raw.get(k) for k in ("test_id", "listener", "session", "kind")}
        abx = [(f"abx answer {n + 1}", t) for n, t in enumerate(items["abx"] or [])]
        mushra = [(f"mushra answer {n + 1}", sc) for n, sc in enumerate(items["mushra"] or [])]
        return _validated(path, head, abx, mushra)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise MusadvError(f"{path}: not a text file of answers") from None
    reader = csv.DictReader(text.splitlines())
    rows = list(reader)
    if not rows:
        raise MusadvError(f"{path}: no answers")
    fields = set(reader.fieldnames or ())
    kind = "abx" if set(ABX_FIELDS) - {"correct"} <= fields else "mushra" if set(MUSHRA_FIELDS) <= fields else None
    if kind is None:
        raise MusadvError(f"{path}: not a CSV of listening-test answers (columns {', '.join(ABX_FIELDS)} or "
                          f"{', '.join(MUSHRA_FIELDS)})")
    for line, r in enumerate(rows, start=2):
        if None in r.values() or None in r:
            raise MusadvError(f"{path}: row {line}: {'cut short' if None in r.values() else 'more fields than columns'}")
    if len({(r["test_id"], r["listener"], r["session"]) for r in rows}) != 1:
        raise MusadvError(f"{path}: answers of more than one listener or session in one file")
    head = {"test_id": rows[0]["test_id"], "listener": rows[0]["listener"], "session": rows[0]["session"], "kind": kind}
    if kind == "abx":
        return _validated(path, head, [(f"row {line}", r) for line, r in enumerate(rows, start=2)], [])
    screens: dict = {}
    for line, r in enumerate(rows, start=2):
        where = f"row {line}"
        screen = _field(path, where, r, "screen", int)
        entry = screens.setdefault(screen, (where, {"screen": screen, "example": r["example"], "scores": {}}))[1]
        if r["example"] != entry["example"]:
            raise MusadvError(f"{path}: {where}: screen {screen} is about {entry['example']!r}, not {r['example']!r}")
        condition = _field(path, where, r, "condition", str, CONDITIONS)
        if condition in entry["scores"]:
            raise MusadvError(f"{path}: {where}: a second score of {condition} on screen {screen}")
        entry["scores"][condition] = _score(path, where, r, "score", condition)
    return _validated(path, head, [], [screens[k] for k in sorted(screens)])


def _field(path: Path, where: str, item: dict, name: str, kind, choices=None):
    """``item[name]`` as ``kind`` (among ``choices``), or one line naming the file, the row and the problem."""
    if not isinstance(item, dict) or item.get(name) in (None, ""):
        raise MusadvError(f"{path}: {where}: no {name!r}")
    value = item[name]
    try:
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
            if not math.isfinite(value):
                raise ValueError
        elif kind is int:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            value = int(float(value))
        else:
            value = str(value)
    except (TypeError, ValueError):
        raise MusadvError(f"{path}: {where}: {name} {item[name]!r} is not {'a number' if kind is not str else 'text'}") from None
    if choices is not None and value not in choices:
        raise MusadvError(f"{path}: {where}: {name} {value!r} is not one of {', '.join(map(str, choices))}")
    return value


def _score(path: Path, where: str, item: dict, name: str, condition: str) -> float:
    """A MUSHRA score: a number from 0 to 100."""
    score = _field(path, where, item, name, float)
    if not 0 <= score <= 100:
        raise MusadvError(f"{path}: {where}: the score of {condition} is {score:g}, outside 0 to 100")
    return score


def _validated(path: Path, head: dict, abx: list, mushra: list) -> dict:
    """The answers of one file as :func:`read_answers` returns them; ``abx`` and ``mushra`` are ``(where, item)``."""
    out = {"format": ANSWERS_FORMAT}
    for name in ("test_id", "listener", "session"):
        out[name] = _field(path, "header", head, name, str)
    out["kind"] = _field(path, "header", head, "kind", str, KINDS)
    if (abx and out["kind"] != "abx") or (mushra and out["kind"] != "mushra"):
        raise MusadvError(f"{path}: {'ABX' if abx else 'MUSHRA'} answers in a file of {out['kind']} answers")
    out["abx"], seen = [], set()
    for where, t in abx:
        trial = _field(path, where, t, "trial", int)
        if trial < 1 or trial in seen:
            raise MusadvError(f"{path}: {where}: trial {trial} {'given twice' if trial in seen else 'is not 1 or more'}")
        seen.add(trial)
        answer, x = _field(path, where, t, "answer", str, ("A", "B")), _field(path, where, t, "x", str, ("A", "B"))
        out["abx"].append({"trial": trial, "example": _field(path, where, t, "example", str),
                           "a": _field(path, where, t, "a", str, ("original", "adversarial")), "x": x,
                           "answer": answer, "correct": answer == x})
    out["mushra"] = []
    for where, sc in mushra:
        screen = {"screen": _field(path, where, sc, "screen", int), "example": _field(path, where, sc, "example", str)}
        scores = sc.get("scores") if isinstance(sc, dict) else None
        if not isinstance(scores, dict) or set(scores) != set(CONDITIONS):
            got = ", ".join(sorted(scores)) if isinstance(scores, dict) else "none"
            raise MusadvError(f"{path}: {where}: screen {screen['screen']} scores {got}, not {', '.join(CONDITIONS)}")
        screen["scores"] = {c: _score(path, where, scores, c, c) for c in CONDITIONS}
        out["mushra"].append(screen)
    return out


def pool_answers(paths: list, manifest: dict | None = None) -> list[dict]:
    """Every listener's answers, checked to belong to one test (and to ``manifest``'s, if given).

    Raises
    ------
    MusadvError
        Naming the file: answers to another test, of another kind, or a session given twice
        (the same answers in two files, e.g. its JSON and its CSV).
    """
    if not paths:
        raise MusadvError("no answer files given")
    pooled, seen = [], {}
    for path in paths:
        a = read_answers(path)
        want = manifest["test_id"] if manifest else pooled[0]["test_id"] if pooled else a["test_id"]
        if a["test_id"] != want:
            raise MusadvError(f"{path}: answers to test {a['test_id']}, not {want}: results of different tests "
                              "are not pooled")
        if manifest and a["kind"] != manifest["kind"]:
            raise MusadvError(f"{path}: {a['kind']} answers to a {manifest['kind']} test")
        if a["session"] in seen:
            raise MusadvError(f"{path}: the same session ({a['listener']}) as {seen[a['session']]}")
        seen[a["session"]] = path
        if manifest:
            known = {e["id"] for e in manifest["examples"]}
            for t in a["abx"] + a["mushra"]:
                if t["example"] not in known:
                    raise MusadvError(f"{path}: an answer about {t['example']!r}, which is not an example of this test")
        pooled.append(a)
    return pooled


def binomial_p_value(correct: int, trials: int) -> float:
    """One-sided p-value of ``correct`` or more right answers out of ``trials`` when guessing (p = 1/2)."""
    if trials == 0:
        return 1.0
    return float(sum(math.comb(trials, k) for k in range(correct, trials + 1)) / 2.0 ** trials)


def _mean_ci(scores: list[float]) -> tuple[float, float | None, float | None]:
    """Mean and 95 % confidence interval (Student's t) of independent scores, the interval clipped to MUSHRA's
    0-100 scale (no mean can lie outside it); no interval from one score."""
    from scipy import stats

    x = np.asarray(scores, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, max(0.0, mean - half), min(100.0, mean + half)


def evaluate(answers: list[dict], manifest: dict | None = None) -> dict:
    """What pooled listeners heard: ABX detection rates and MUSHRA scores, per example and overall.

    Parameters
    ----------
    answers : list of dict
        From :func:`pool_answers`.
    manifest : dict, optional
        The test's ``test.json``: adds each example's name, target, SNR, NMR and ViSQOL.

    Returns
    -------
    dict
        ``listeners``; ``abx``: per example and ``overall`` the trials, correct answers,
        detection rate and one-sided binomial p-value against guessing (and per listener);
        ``mushra``: per example and ``overall``, per condition, the number of scores ``n``
        and of ``listeners``, the mean over listeners of each listener's mean score and its
        95 % confidence interval over listeners (clipped to 0-100; ``None`` for one listener).
    """
    info = {e["id"]: e for e in manifest["examples"]} if manifest else {}
    about = lambda ex: {k: info[ex][k] for k in ("example", "target", "snr_wave_db", "excerpt_snr_db", "nmr_db",  # noqa: E731
                                                   "visqol_mos")} if ex in info else {}
    out = {"listeners": sorted({a["listener"] for a in answers}), "sessions": len(answers)}
    trials = [(a["listener"], t) for a in answers for t in a["abx"]]
    if trials:
        def tally(group):
            n, k = len(group), sum(bool(t["correct"]) for _, t in group)
            return {"trials": n, "correct": k, "detection_rate": k / n, "p_value": binomial_p_value(k, n)}

        per = {}
        for listener, t in trials:
            per.setdefault(t["example"], []).append((listener, t))
        by_listener = {}
        for listener, t in trials:
            by_listener.setdefault(listener, []).append((listener, t))
        out["abx"] = {"examples": [{"id": ex, **about(ex), **tally(g)} for ex, g in sorted(per.items())],
                      "listeners": [{"listener": li, **tally(g)} for li, g in sorted(by_listener.items())],
                      "overall": tally(trials)}
    screens = [(a["listener"], s) for a in answers for s in a["mushra"]]
    if screens:
        def scores(group):
            # A listener's scores are not independent of each other: each listener's mean is one observation.
            res = {}
            for c in CONDITIONS:
                by_listener = {}
                for listener, s in group:
                    by_listener.setdefault(listener, []).append(s["scores"][c])
                mean, lo, hi = _mean_ci([float(np.mean(v)) for v in by_listener.values()])
                res[c] = {"n": sum(map(len, by_listener.values())), "listeners": len(by_listener), "mean": mean,
                          "ci_low": lo, "ci_high": hi}
            return res

        per = {}
        for listener, s in screens:
            per.setdefault(s["example"], []).append((listener, s))
        out["mushra"] = {"examples": [{"id": ex, **about(ex), "scores": scores(g)} for ex, g in sorted(per.items())],
                         "overall": scores(screens)}
    return out


def write_results(summary: dict, out_dir: str | os.PathLike) -> list[Path]:
    """``listening-results.csv``, ``listening-summary.json`` and ``listening.png`` of :func:`evaluate`'s summary."""
    out = Path(out_dir)
    rows = []
    if "abx" in summary:
        for level, items in (("example", summary["abx"]["examples"]), ("listener", summary["abx"]["listeners"]),
                             ("overall", [summary["abx"]["overall"]])):
            for it in items:
                rows.append({"test": "abx", "level": level, "id": it.get("id", it.get("listener", "all")),
                             "example": it.get("example", ""), "condition": "", "n": it["trials"],
                             "correct": it["correct"], "detection_rate": it["detection_rate"], "p_value": it["p_value"]})
    if "mushra" in summary:
        for level, items in (("example", summary["mushra"]["examples"]),
                             ("overall", [{"id": "all", "scores": summary["mushra"]["overall"]}])):
            for it in items:
                for c, s in it["scores"].items():
                    rows.append({"test": "mushra", "level": level, "id": it["id"], "example": it.get("example", ""),
                                 "condition": c, "n": s["n"], "listeners": s["listeners"], "mean_score": s["mean"],
                                 "ci_low": s["ci_low"], "ci_high": s["ci_high"]})
    fields = ["test", "level", "id", "example", "condition", "n", "listeners", "correct", "detection_rate", "p_value", "mean_score",
              "ci_low", "ci_high"]
    paths = [write_csv_atomic(out / "listening-results.csv", rows, fields),
             write_json_atomic(out / "listening-summary.json", summary)]
    paths.append(_figure(summary, out / "listening.png"))
    return paths


def _figure(summary: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path

    panels = [k for k in ("abx", "mushra") if k in summary]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], panels):
        if kind == "abx":
            ex = summary["abx"]["examples"] + [{"id": "all", **summary["abx"]["overall"]}]
            rates = [e["detection_rate"] for e in ex]
            ax.bar(range(len(ex)), rates, color=["C0"] * (len(ex) - 1) + ["C3"])
            ax.axhline(0.5, color="k", ls="--", lw=1, label="guessing")
            ax.set_xticks(range(len(ex)), [e["id"] for e in ex], rotation=90, fontsize=7)
            ax.set_ylim(0, 1)
            ax.set_ylabel("ABX: share of trials right")
            ax.legend(fontsize=8)
        else:
            overall = summary["mushra"]["overall"]
            conds = [c for c in CONDITIONS if c in overall]
            means = [overall[c]["mean"] for c in conds]
            err = [[overall[c]["mean"] - (overall[c]["ci_low"] if overall[c]["ci_low"] is not None else overall[c]["mean"])
                    for c in conds],
                   [(overall[c]["ci_high"] if overall[c]["ci_high"] is not None else overall[c]["mean"]) - overall[c]["mean"]
                    for c in conds]]
            ax.bar(range(len(conds)), means, yerr=err, capsize=4, color=["C2", "C3", "C7"][:len(conds)])
            ax.set_xticks(range(len(conds)), [c.replace("_", " ") for c in conds])
            ax.set_ylim(0, 100)
            ax.set_ylabel("MUSHRA score (mean over listeners, 95 % CI)")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path

"""musadv.listening: ABX and MUSHRA pages of an attack run, clicked through by a scripted listener in headless
Chromium; every condition is its own file under a name that tells nothing, cut from the run's own files; a
trial is answered only once each sound has played, and can be undone; the answers saved are those clicked,
damaged answer files are refused in one line, and pooled answers give the binomial test and the MUSHRA
intervals over listeners they should."""

import csv
import json
import math
import re
import time

import numpy as np
import pytest

from musadv import audio, cli
from musadv.attack import AttackConfig
from musadv.errors import MusadvError
from musadv.listening import (binomial_p_value, evaluate, loudest_change, pool_answers, read_answers,
                              write_listening_test)
from musadv.runs import recordings_from_split, run_attacks
from tests.test_report import _browser


@pytest.fixture(scope="module")
def attack_run(trained_dnn, learn_cache, tmp_path_factory):
    run = tmp_path_factory.mktemp("listen") / "run"
    run_attacks(trained_dnn, recordings_from_split(learn_cache, "test", limit=4), "random", run,
                AttackConfig(snr_db=15, max_iter=30), progress=False)
    return run


def _snr(reference, changed):
    return 20 * math.log10(np.linalg.norm(reference.astype(np.float64)) / np.linalg.norm(changed.astype(np.float64) - reference))


def test_the_excerpt_is_where_the_change_is_loudest_relative_to_the_music():
    """The same small change everywhere: it is loudest against the music where the music is quiet (6-7 s)."""
    sr, rng = 8000, np.random.default_rng(0)
    music = 0.5 * np.sin(2 * np.pi * 440 * np.arange(10 * sr) / sr)
    music[6 * sr:7 * sr] *= 0.1
    changed = music + 0.01 * rng.standard_normal(music.shape)
    assert loudest_change(music[None], changed[None], sr, 1.0) == (6 * sr, 7 * sr)
    assert loudest_change(music[None], changed[None], sr, 30.0) == (0, 10 * sr)  # shorter than the excerpt: all of it


def test_the_binomial_test_is_the_one_sided_test_against_guessing():
    from scipy import stats

    for k, n in ((20, 20), (15, 20), (14, 20), (10, 20), (0, 5)):
        assert binomial_p_value(k, n) == pytest.approx(stats.binomtest(k, n, 0.5, alternative="greater").pvalue, rel=1e-9)
    assert binomial_p_value(15, 20) < 0.05 < binomial_p_value(14, 20)


@pytest.mark.parametrize("kind", ["abx", "mushra"])
def test_every_condition_is_its_own_file_named_at_random_and_cut_from_the_runs_own_files(attack_run, tmp_path, kind):
    write_listening_test(attack_run, tmp_path / kind, kind=kind, excerpt_seconds=2.0)
    manifest = json.loads((tmp_path / kind / "test.json").read_text())
    assert len(manifest["examples"]) >= 2
    every = [f for e in manifest["examples"] for f in e["files"].values()]
    assert len(set(every)) == len(every) == len(manifest["examples"]) * (3 if kind == "mushra" else 2)
    assert all(re.fullmatch(r"audio/[0-9a-f]{16}\.wav", f) for f in every), every
    assert sorted(p.name for p in (tmp_path / kind / "audio").iterdir()) == sorted(f[6:] for f in every)
    rows = {r["example"]: r for r in csv.DictReader(open(attack_run / "results.csv"))}
    for e in manifest["examples"]:
        decoded = {c: audio.decode(tmp_path / kind / f)[0] for c, f in e["files"].items()}
        contents = [y.tobytes() for y in decoded.values()]
        assert len(set(contents)) == len(contents)  # no two conditions share audio
        sr = e["sr"]
        start = int(round(e["start_seconds"] * sr))
        stop = start + int(round(e["seconds"] * sr))
        for condition, column in (("original", "original_wav"), ("adversarial", "wav")):
            whole, _ = audio.decode(attack_run / rows[e["example"]][column])
            assert np.array_equal(decoded[condition], whole[:, start:stop]), (e["id"], condition)


def test_the_mushra_anchor_is_white_noise_at_the_adversarial_excerpts_own_snr(attack_run, tmp_path):
    write_listening_test(attack_run, tmp_path / "m", kind="mushra", excerpt_seconds=2.0)
    manifest = json.loads((tmp_path / "m" / "test.json").read_text())
    assert len(manifest["examples"]) >= 2
    for e in manifest["examples"]:
        o, sr = audio.decode(tmp_path / "m" / e["files"]["original"])
        a, _ = audio.decode(tmp_path / "m" / e["files"]["adversarial"])
        n, _ = audio.decode(tmp_path / "m" / e["files"]["anchor"])
        assert o.shape[-1] == int(2.0 * sr) and a.shape == n.shape == o.shape
        assert abs(_snr(o, a) - e["excerpt_snr_db"]) < 0.01
        assert abs(_snr(o, n) - _snr(o, a)) < 0.1
        # The anchor's change is white: as much power above half the Nyquist rate as below.
        spec = np.abs(np.fft.rfft(n[0] - o[0])) ** 2
        assert 0.8 < spec[len(spec) // 2:].sum() / spec[:len(spec) // 2].sum() < 1.25


PLAY_ALL = """
    const done = arguments[arguments.length - 1];
    Promise.all(Array.from(document.querySelectorAll('#stimuli audio')).map(a => new Promise(res => {
        a.addEventListener('ended', () => res(a.duration)); a.addEventListener('error', () => res(-1));
        const go = () => { a.playbackRate = 16; a.play().catch(() => res(-2)); };
        if (a.readyState >= 1) go(); else a.addEventListener('loadedmetadata', go);
    }))).then(done);"""


def _play_all(browser):
    """Play every sound of the screen to its end (16 times faster); their durations."""
    browser.set_script_timeout(30)
    durations = browser.execute_async_script(PLAY_ALL)
    assert all(d > 0 for d in durations), durations
    return durations


def _serve_downloads(browser, folder):
    folder.mkdir(exist_ok=True)
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})


def _wait_for(folder, suffix, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        done = [p for p in folder.iterdir() if p.suffix == suffix]
        if done:
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no {suffix} file was saved in {folder}")


def _abx_listener(browser, page, name, right):
    """Click through the ABX page; ``right(k)``: whether trial k is answered right. Returns the answers clicked."""
    browser.get(page.as_uri())
    browser.find_element("id", "listener").send_keys(name)
    browser.find_element("id", "start").click()
    clicked = []
    plan = browser.execute_script("return window.listening.state().plan")
    for k, trial in enumerate(plan):
        # Not answerable before every sound has played; every trial's three players hold decodable audio.
        assert not browser.find_element("id", "answer-A").is_enabled()
        assert len(_play_all(browser)) == 3
        answer = trial["x"] if right(k) else ("B" if trial["x"] == "A" else "A")
        if k == 0:  # answered wrongly, then undone: the trial comes back, to be played and answered again
            browser.find_element("id", f"answer-{'B' if answer == 'A' else 'A'}").click()
            assert browser.find_element("id", "progress").text == f"Trial 2 of {len(plan)}"
            browser.find_element("id", "undo").click()
            assert browser.find_element("id", "progress").text == f"Trial 1 of {len(plan)}"
            assert browser.execute_script("return window.listening.state().abx.length") == 0
            assert not browser.find_element("id", "answer-A").is_enabled()
            _play_all(browser)
        browser.find_element("id", f"answer-{answer}").click()
        clicked.append((trial["example"], trial["a"], trial["x"], answer))
    return clicked


def test_an_abx_listener_clicks_through_and_the_saved_answers_are_those_clicked(attack_run, tmp_path):
    page = write_listening_test(attack_run, tmp_path / "abx", kind="abx", trials=20, excerpt_seconds=1.0)
    browser = _browser()
    try:
        browser.get(page.as_uri())
        browser.find_element("id", "start").click()  # no name: it says so and does not start
        assert browser.find_element("id", "name-needed").is_displayed()
        assert not browser.find_element("id", "trial").is_displayed()
        saved = {}
        for name, right in (("always right", lambda k: True), ("half right", lambda k: k % 2 == 0)):
            folder = tmp_path / name.replace(" ", "_")
            _serve_downloads(browser, folder)
            clicked = _abx_listener(browser, page, name, right)
            assert browser.find_element("id", "done").is_displayed()
            browser.find_element("id", "export-json").click()
            browser.find_element("id", "export-csv").click()
            saved[name] = (clicked, _wait_for(folder, ".json"), _wait_for(folder, ".csv"))
            # The end page names the file the answers went to.
            assert saved[name][2].name in browser.find_element("id", "saved-as").text
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        browser.quit()
    manifest = json.loads((tmp_path / "abx" / "test.json").read_text())
    for name, (clicked, as_json, as_csv) in saved.items():
        for f in (as_json, as_csv):
            a = read_answers(f)
            assert a["listener"] == name and a["test_id"] == manifest["test_id"]
            assert [(t["example"], t["a"], t["x"], t["answer"]) for t in a["abx"]] == clicked
    # 20 trials: every example in turn, in an order drawn for the listener.
    assert sorted(e for e, *_ in saved["always right"][0]) == sorted(
        manifest["examples"][k % len(manifest["examples"])]["id"] for k in range(20))
    right = evaluate(pool_answers([saved["always right"][1]], manifest), manifest)["abx"]["overall"]
    assert right["correct"] == 20 and right["p_value"] < 0.05
    half = evaluate(pool_answers([saved["half right"][2]], manifest), manifest)["abx"]["overall"]
    assert half["correct"] == 10 and half["p_value"] > 0.5

    out = tmp_path / "results"
    cli.main(["listen-results", str(saved["always right"][1]), str(saved["half right"][1]),
              "--test", str(tmp_path / "abx" / "test.json"), "--out", str(out)])
    summary = json.loads((out / "listening-summary.json").read_text())
    assert summary["abx"]["overall"]["trials"] == 40 and summary["abx"]["overall"]["correct"] == 30
    assert sum(e["trials"] for e in summary["abx"]["examples"]) == 40
    assert (out / "listening.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The JSON and the CSV of one session are one listener, not two.
    with pytest.raises(MusadvError, match="same session"):
        pool_answers([saved["always right"][1], saved["always right"][2]])


def test_a_reloaded_page_resumes_the_listeners_test(attack_run, tmp_path):
    page = write_listening_test(attack_run, tmp_path / "abx", kind="abx", trials=6, excerpt_seconds=1.0)
    browser = _browser()
    try:
        browser.get(page.as_uri())
        browser.find_element("id", "listener").send_keys("ann")
        browser.find_element("id", "start").click()
        for _ in range(3):
            _play_all(browser)
            browser.find_element("id", "answer-A").click()
        before = browser.execute_script("return window.listening.state()")
        browser.get(page.as_uri())
        browser.find_element("id", "listener").send_keys("ann")
        browser.find_element("id", "start").click()
        after = browser.execute_script("return window.listening.state()")
        assert after["session"] == before["session"] and after["abx"] == before["abx"] and len(after["abx"]) == 3
        assert browser.find_element("id", "progress").text == "Trial 4 of 6"
    finally:
        browser.quit()


def test_a_mushra_listener_scores_every_screen_and_the_scores_are_pooled_with_intervals(attack_run, tmp_path):
    page = write_listening_test(attack_run, tmp_path / "m", kind="mushra", excerpt_seconds=0.5)
    manifest = json.loads((tmp_path / "m" / "test.json").read_text())
    want = {"hidden_reference": 100, "adversarial": 80, "anchor": 20}
    browser = _browser()
    files = []
    try:
        for name, shift in (("kim", 0), ("lee", -10)):
            folder = tmp_path / name
            _serve_downloads(browser, folder)
            browser.get(page.as_uri())
            browser.find_element("id", "listener").send_keys(name)
            browser.find_element("id", "start").click()
            for screen in browser.execute_script("return window.listening.state().plan"):
                assert not browser.find_element("id", "next").is_enabled()  # every sound must be scored first
                sliders = browser.find_elements("css selector", "#stimuli input[type=range]")
                assert len(sliders) == 3 and not any(r.is_enabled() for r in sliders)  # nor scored before it played
                scales = [e.text.split() for e in browser.find_elements("css selector", "#stimuli .scale span")]
                assert scales == [["Bad", "0-20"], ["Poor", "20-40"], ["Fair", "40-60"], ["Good", "60-80"],
                                  ["Excellent", "80-100"]] * 3
                _play_all(browser)
                assert all(r.is_enabled() for r in sliders)
                for i, condition in enumerate(screen["order"]):
                    browser.execute_script(
                        "const r = document.getElementById(arguments[0]); r.value = arguments[1];"
                        "r.dispatchEvent(new Event('input'));", f"score-{i + 1}", max(0, want[condition] + shift))
                browser.find_element("id", "next").click()
            browser.find_element("id", "export-json").click()
            files.append(_wait_for(folder, ".json"))
    finally:
        browser.quit()
    summary = evaluate(pool_answers(files, manifest), manifest)["mushra"]
    n = len(manifest["examples"])
    for condition, score in want.items():
        got = summary["overall"][condition]
        assert got["n"] == 2 * n and got["listeners"] == 2 and got["mean"] == pytest.approx(score - 5)
        assert got["ci_low"] < score - 5 < got["ci_high"]


def test_answers_of_another_test_are_refused_naming_the_file(tmp_path):
    files = []
    for k, test_id in enumerate(("aaaa", "bbbb")):
        f = tmp_path / f"answers{k}.json"
        f.write_text(json.dumps({"format": "musadv-listening-answers", "test_id": test_id, "kind": "abx", "listener": "x",
                                 "session": str(k), "abx": [], "mushra": []}))
        files.append(f)
    with pytest.raises(MusadvError, match="answers1.json: answers to test bbbb, not aaaa"):
        pool_answers(files)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(MusadvError, match="bad.csv: not a CSV of listening-test answers"):
        read_answers(tmp_path / "bad.csv")


def _mushra_answers(listener, scores_by_screen):
    return {"format": "musadv-listening-answers", "test_id": "t", "kind": "mushra", "listener": listener,
            "session": listener, "abx": [],
            "mushra": [{"screen": k + 1, "example": f"e{k}", "scores": sc} for k, sc in enumerate(scores_by_screen)]}


def test_mushra_intervals_are_over_listeners_not_over_pooled_scores():
    """Four screens from each of three listeners are three observations, not twelve: the interval is Student's t
    over the listeners' means, clipped to the 0-100 scale."""
    from scipy import stats

    rng = np.random.default_rng(0)
    answers = []
    for k, bias in enumerate((10.0, 30.0, 20.0)):
        screens = [{c: float(np.clip(bias + 30 * j + rng.normal(0, 5), 0, 100)) for j, c in
                    enumerate(("anchor", "adversarial", "hidden_reference"))} for _ in range(4)]
        answers.append(_mushra_answers(f"l{k}", screens))
    summary = evaluate(answers)["mushra"]
    for c in ("anchor", "adversarial", "hidden_reference"):
        means = [np.mean([s["scores"][c] for s in a["mushra"]]) for a in answers]
        lo, hi = stats.t.interval(0.95, len(means) - 1, loc=np.mean(means), scale=stats.sem(means))
        got = summary["overall"][c]
        assert got["listeners"] == 3 and got["n"] == 12
        assert got["mean"] == pytest.approx(np.mean(means))
        assert got["ci_low"] == pytest.approx(max(0.0, lo)) and got["ci_high"] == pytest.approx(min(100.0, hi))
    # One example, each listener scoring it once: two listeners leave an interval the scale clips.
    one = evaluate(answers[:2])["mushra"]["examples"][0]["scores"]["adversarial"]
    assert one["listeners"] == 2 and 0.0 <= one["ci_low"] <= one["ci_high"] <= 100.0
    assert evaluate(answers[:1])["mushra"]["overall"]["anchor"]["ci_low"] is None  # one listener: no interval


ABX_CSV = "test_id,listener,session,trial,example,a,x,answer,correct,seconds\n"


def _abx_rows(n=4, correct="true"):
    return "".join(f"t,ann,s1,{k + 1},e00{k % 2},original,{'AB'[k % 2]},{'AB'[k % 2]},{correct},1.5\n" for k in range(n))


@pytest.mark.parametrize("name, text, message", [
    ("cut.csv", ABX_CSV + _abx_rows(3) + "t,ann,s1,4,e001,original,B\n", "cut.csv: row 5: cut short"),
    ("answer.csv", ABX_CSV + _abx_rows(3) + "t,ann,s1,4,e001,original,B,C,false,1\n", "answer.csv: row 5: answer 'C' is not one of A, B"),
    ("score.csv", "test_id,listener,session,screen,example,condition,score\nt,ann,s1,1,e000,anchor,abc\n",
     "score.csv: row 2: score 'abc' is not a number"),
    ("range.csv", "test_id,listener,session,screen,example,condition,score\n" + "".join(
        f"t,ann,s1,1,e000,{c},{v}\n" for c, v in (("anchor", 5), ("adversarial", 140), ("hidden_reference", 100))),
     "range.csv: row 3: the score of adversarial is 140, outside 0 to 100"),
    ("short.csv", "test_id,listener,session,screen,example,condition,score\nt,ann,s1,1,e000,anchor,5\n",
     "short.csv: row 2: screen 1 scores anchor, not hidden_reference, adversarial, anchor"),
    ("nosession.json", json.dumps({"format": "musadv-listening-answers", "test_id": "t", "kind": "abx", "listener": "a",
                                   "abx": [], "mushra": []}), "nosession.json: header: no 'session'"),
    ("mscore.json", json.dumps(_mushra_answers("a", [{"anchor": "abc", "adversarial": 50, "hidden_reference": 90}])),
     "mscore.json: mushra answer 1: anchor 'abc' is not a number"),
])
def test_listen_results_refuses_a_damaged_answer_file_in_one_line_naming_file_and_row(tmp_path, capsys, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(SystemExit) as info:
        cli.main(["listen-results", str(tmp_path / name), "--out", str(tmp_path / "out")])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / message}", err
    assert not (tmp_path / "out").exists()


def test_abx_correctness_is_recomputed_from_the_answer_and_x_not_read_from_the_file(tmp_path):
    """A spreadsheet re-save writes TRUE for true; a hand-made file may have no such column at all."""
    (tmp_path / "resaved.csv").write_text(ABX_CSV + _abx_rows(4, correct="TRUE"))
    (tmp_path / "bare.json").write_text(json.dumps({
        "format": "musadv-listening-answers", "test_id": "t", "kind": "abx", "listener": "bo", "session": "s2", "mushra": [],
        "abx": [{"trial": k + 1, "example": "e000", "a": "adversarial", "x": "A", "answer": "AB"[k % 2]} for k in range(4)]}))
    summary = evaluate(pool_answers([tmp_path / "resaved.csv", tmp_path / "bare.json"]))["abx"]
    assert {li["listener"]: li["correct"] for li in summary["listeners"]} == {"ann": 4, "bo": 2}


def test_the_same_seed_writes_the_same_files_under_the_same_names_in_any_process(attack_run, tmp_path):
    """A test is reproducible: its random names come from the seed alone, not from Python's per-process hashing."""
    import os
    import subprocess
    import sys

    manifests = []
    for k, hash_seed in enumerate(("1", "2")):
        out = tmp_path / f"t{k}"
        code = ("import sys; from musadv.listening import write_listening_test; "
                "write_listening_test(sys.argv[1], sys.argv[2], kind='mushra', excerpt_seconds=0.5, seed=3)")
        subprocess.run([sys.executable, "-c", code, str(attack_run), str(out)], check=True,
                       env={**os.environ, "PYTHONHASHSEED": hash_seed})
        manifests.append(json.loads((out / "test.json").read_text()))
    assert [e["files"] for e in manifests[0]["examples"]] == [e["files"] for e in manifests[1]["examples"]]
    assert manifests[0]["test_id"] == manifests[1]["test_id"]

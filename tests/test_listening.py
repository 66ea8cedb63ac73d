"""musadv.listening: ABX and MUSHRA pages of an attack run, clicked through by a scripted listener in headless
Chromium; the answers saved are those clicked, and pooled answers give the binomial test and the MUSHRA
intervals they should."""

import json
import math
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
        # Every trial's three players hold decodable audio.
        durations = browser.execute_async_script("""
            const done = arguments[arguments.length - 1];
            Promise.all(Array.from(document.querySelectorAll('#stimuli audio')).map(a => new Promise(res => {
                if (a.readyState >= 1) return res(a.duration);
                a.addEventListener('loadedmetadata', () => res(a.duration)); a.addEventListener('error', () => res(-1));
            }))).then(done);""")
        assert len(durations) == 3 and all(d > 0 for d in durations), durations
        answer = trial["x"] if right(k) else ("B" if trial["x"] == "A" else "A")
        browser.find_element("id", f"answer-{answer}").click()
        clicked.append((trial["example"], trial["a"], trial["x"], answer))
    return clicked


def test_an_abx_listener_clicks_through_and_the_saved_answers_are_those_clicked(attack_run, tmp_path):
    page = write_listening_test(attack_run, tmp_path / "abx", kind="abx", trials=20, excerpt_seconds=2.0)
    browser = _browser()
    try:
        saved = {}
        for name, right in (("always right", lambda k: True), ("half right", lambda k: k % 2 == 0)):
            folder = tmp_path / name.replace(" ", "_")
            _serve_downloads(browser, folder)
            clicked = _abx_listener(browser, page, name, right)
            assert browser.find_element("id", "done").is_displayed()
            browser.find_element("id", "export-json").click()
            browser.find_element("id", "export-csv").click()
            saved[name] = (clicked, _wait_for(folder, ".json"), _wait_for(folder, ".csv"))
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
    page = write_listening_test(attack_run, tmp_path / "m", kind="mushra", excerpt_seconds=1.0)
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
        assert got["n"] == 2 * n and got["mean"] == pytest.approx(score - 5)
        assert got["ci_low"] < score - 5 < got["ci_high"]
        assert got["ci_high"] - got["ci_low"] < 15  # 2n scores, half at s and half at s - 10


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

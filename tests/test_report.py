"""musadv.report: a page from a small real attack run renders in a headless browser, media and all."""

import csv
import functools
import http.server
import json
import re
import shutil
import threading

import pytest
import soundfile as sf

from musadv import synth
from musadv.attack import AttackConfig
from musadv.report import write_report
from musadv.runs import recordings_from_files, recordings_from_split, run_attacks

HOSTILE = "evil <b>&\"quote's\".wav"


@pytest.fixture(scope="module")
def attack_run(trained_dnn, learn_cache, tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    sf.write(base / HOSTILE, synth.render("jazz", 3, duration=3.0), 22050)
    cfg = AttackConfig(snr_db=15, max_iter=30)
    jobs = recordings_from_split(learn_cache, "test", limit=3) + recordings_from_files([base / HOSTILE])
    run_attacks(trained_dnn, jobs, "label:techno", base / "run", cfg, progress=False)
    run_attacks(trained_dnn, recordings_from_split(learn_cache, "test", limit=1), "every_label", base / "grid", cfg, progress=False)
    return base


def test_report_holds_players_figures_and_escaped_names(attack_run):
    page = write_report(attack_run / "run")
    html = page.read_text()
    assert html.count("<audio") == 2 * 4
    assert "evil &lt;b&gt;&amp;&#34;quote&#39;s&#34;.wav" in html
    assert "<b>&" not in html
    # Every example's row carries its own figures from results.csv: whole-file, edge-trimmed and magnitude SNR.
    rows = list(csv.DictReader(open(attack_run / "run" / "results.csv")))
    one = lambda v: "" if v == "" else f"{float(v):.1f}"  # noqa: E731
    for r in rows:
        assert f"{one(r['snr_wave_db'])} / {one(r['snr_trim_db'])} / {one(r['snr_mag_db'])}" in html
    assert html.count('alt="spectra"') == len(rows) == 4
    # Every figure the page shows is a file beside it that holds a PNG.
    figures = re.findall(r'src="(report-media/[^"]+\.png)"', html)
    assert len(figures) >= len(rows)
    for rel in figures:
        assert (attack_run / "run" / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", rel


def test_every_label_run_shows_the_table2_grid(attack_run, trained_dnn):
    html = write_report(attack_run / "grid").read_text()
    assert "Every label for the same recording" in html
    assert html.count("<audio") >= 1 + 2 * len(trained_dnn.labels)


def _browser():
    selenium = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Debian chromium and chromium-driver are not installed")
    opts = Options()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return selenium.Chrome(service=Service(driver), options=opts)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_report_renders_in_a_headless_browser(attack_run):
    write_report(attack_run / "run")
    handler = functools.partial(QuietHandler, directory=str(attack_run / "run"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    browser = _browser()
    try:
        browser.get(f"http://127.0.0.1:{server.server_port}/report.html")
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]);")
        assert images and all(ok for _, ok in images), [src for src, ok in images if not ok]
        # Every audio element must be decodable: the browser learns its duration from the file.
        durations = browser.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const els = Array.from(document.querySelectorAll('audio'));
            Promise.all(els.map(a => new Promise(res => {
                if (a.readyState >= 1) return res(a.duration);
                a.addEventListener('loadedmetadata', () => res(a.duration));
                a.addEventListener('error', () => res(-1));
                a.load();
            }))).then(done);
        """)
        assert len(durations) == 8 and all(d and d > 0 for d in durations), durations
        assert "evil <b>&\"quote's\".wav" in browser.find_element("tag name", "body").text
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        browser.quit()
        server.shutdown()


def test_a_study_written_before_studies_were_judged_is_refused_in_one_line(tmp_path):
    from musadv.errors import MusadvError

    (tmp_path / "summary.json").write_text(json.dumps({"systems": {"dnn": {"normalised_accuracy": 0.9}}, "attacks": {}}))
    with pytest.raises(MusadvError, match="summary.json: a study written before studies judged their systems"):
        write_report(tmp_path)

"""musadv.driver: a run resumes what is finished, redoes what an interruption damaged, and its
workers do not outlive it."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musadv.attack import AttackConfig
from musadv.driver import finished_record, read_records, record_files
from musadv.errors import MusadvError
from musadv.runs import recordings_from_split, run_attacks

QUICK = AttackConfig(snr_db=15.0, max_iter=4)


def _results(out: Path) -> list[dict]:
    with open(out / "results.csv") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def whole_run(trained_dnn, learn_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    run_attacks(trained_dnn, recordings_from_split(learn_cache, "test", 4), "all_wrong", out, QUICK, progress=False)
    return out


def test_a_record_is_finished_only_with_its_files_at_their_sizes(tmp_path):
    (tmp_path / "examples").mkdir()
    wav = tmp_path / "examples" / "a.wav"
    wav.write_bytes(b"0123456789")
    record = tmp_path / "examples" / "a.json"
    record.write_text(json.dumps({"x": 1, "files": record_files(tmp_path, [wav])}))
    assert finished_record(record)["files"] == {"examples/a.wav": 10}
    wav.write_bytes(b"01234")
    assert finished_record(record) is None
    wav.unlink()
    assert finished_record(record) is None
    record.write_text('{"x": NaN, "files": {}}')  # not JSON: strict parsers refuse it
    assert finished_record(record) is None
    record.write_text('{"x": 1}')  # a record that names no files is not one the driver wrote
    assert finished_record(record) is None


def test_reading_a_run_with_a_damaged_record_names_it(tmp_path):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "a.json").write_text('{"files": {}, "x"')
    with pytest.raises(MusadvError, match=r"a\.json"):
        read_records(tmp_path / "examples")


def test_a_rerun_redoes_damaged_records_and_then_equals_an_uninterrupted_run(whole_run, trained_dnn, learn_cache, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(whole_run, run)
    records = sorted((run / "examples").glob("*.json"))
    assert len(records) == 4
    # What a kill, a full disk or a careless hand leaves behind:
    records[0].write_text(records[0].read_text()[:50])  # a truncated record
    (run / "examples" / ".tmp-k1l2m3.json").write_text("")  # an empty temporary file of a write cut short
    damaged_wav = run / json.loads(records[1].read_text())["wav"]
    damaged_wav.write_bytes(damaged_wav.read_bytes()[:1000])  # a truncated example WAV, its record intact
    original = run / json.loads(records[2].read_text())["original_wav"]
    original.unlink()  # a deleted original
    run_attacks(trained_dnn, recordings_from_split(learn_cache, "test", 4), "all_wrong", run, QUICK, progress=False)
    assert _results(run) == _results(whole_run)
    for name in ("examples", "originals"):
        for f in sorted((whole_run / name).glob("*.wav")):
            assert (run / name / f.name).read_bytes() == f.read_bytes(), f.name
    assert not list(run.rglob(".tmp-*"))
    assert json.loads((run / "metrics.json").read_text())["n_examples"] == 4


def test_records_and_results_are_strict_json_readable_as_the_umask_allows(whole_run):
    def strict(path):
        return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path}: {c} in JSON"))

    for path in [*whole_run.glob("*.json"), *(whole_run / "examples").glob("*.json")]:
        strict(path)
    umask = os.umask(0)
    os.umask(umask)
    for path in [whole_run / "metrics.json", whole_run / "results.csv", next((whole_run / "examples").glob("*.wav"))]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_kill_9_of_the_driver_takes_its_workers_down(trained_dnn, tmp_path):
    out = tmp_path / "run"
    driver = subprocess.Popen([sys.executable, "-m", "musadv.cli", "attack", str(trained_dnn.path), "--split", "test",
                               "--policy", "every_label", "--out", str(out), "--jobs", "2", "--quiet", "--no-report"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        # Both workers started and at work: an example WAV is being written.
        while time.monotonic() < deadline and not (len(workers) >= 2 and list(out.glob("examples/*.wav"))):
            workers = [p for p in _children(driver.pid) if _alive(p)]
            time.sleep(0.2)
        assert len(workers) >= 2 and list(out.glob("examples/*.wav")), "the run did not get going"
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.2)
        assert not [p for p in workers if _alive(p)]
    finally:
        driver.kill()
        for p in workers:
            if _alive(p):
                os.kill(p, signal.SIGKILL)

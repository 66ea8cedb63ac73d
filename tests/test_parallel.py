"""musadv.parallel: the pieces of a job done in worker processes or on Ray give the files one process gives."""

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from musadv.errors import MusadvError
from musadv.parallel import LocalEngine, RayEngine, engine_from_options
from musadv.runs import RecordingRef, recordings_from_split, run_attacks

TIMING = {"seconds", "mean_seconds"}


def _square_or_fail(offset, piece):
    if piece == 3:
        raise MusadvError(f"piece {piece} is bad")
    return piece * piece + offset, os.getpid()


def _bug(context, piece):
    raise ZeroDivisionError("a bug, not a bad input")


def test_every_piece_is_done_once_in_worker_processes_and_errors_come_back():
    pieces = [0, 1, 2, 3, 4, 5]
    outcomes = {p: (r, e) for p, r, e in LocalEngine(jobs=2, threads=1).map(_square_or_fail, 10, pieces)}
    assert sorted(outcomes) == pieces
    assert {p: r[0] for p, (r, e) in outcomes.items() if p != 3} == {p: p * p + 10 for p in pieces if p != 3}
    assert outcomes[3] == (None, "piece 3 is bad")  # a bad input is the piece's error, the others go on
    assert os.getpid() not in {r[1] for r, e in outcomes.values() if r}  # done by the workers
    in_process = {p: r for p, r, e in LocalEngine(jobs=1).map(_square_or_fail, 10, pieces)}
    assert in_process[2] == (14, os.getpid())
    with pytest.raises(ZeroDivisionError):  # a bug stops the job
        list(LocalEngine(jobs=2, threads=1).map(_bug, None, [1, 2]))
    with pytest.raises(ValueError, match="threads"):
        LocalEngine(jobs=1, threads=0)
    with pytest.raises(MusadvError, match="exclude each other"):
        engine_from_options(jobs=2, ray="auto")


def _rendezvous(folder, workers=2, timeout=120.0):
    """Check this worker process in, then wait until ``workers`` processes have: each piece is held until every
    worker has taken one, so that all take part whatever the machine's load (no sleep that may be too short)."""
    Path(folder, str(os.getpid())).touch()
    deadline = time.monotonic() + timeout
    while len(list(Path(folder).iterdir())) < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(Path(folder).iterdir()))} of {workers} workers took a piece")
        time.sleep(0.01)


def _pid_and_context(context, piece):
    name, folder = context
    _rendezvous(folder)
    return os.getpid(), name


def test_a_local_engine_keeps_its_workers_for_its_next_job_which_gets_its_own_context(tmp_path):
    engine = LocalEngine(jobs=2, threads=1)
    for job in ("first", "second", "third"):
        (tmp_path / job).mkdir()
    first = [r for _, r, _ in engine.map(_pid_and_context, ("first", str(tmp_path / "first")), [0, 1, 2, 3])]
    second = [r for _, r, _ in engine.map(_pid_and_context, ("second", str(tmp_path / "second")), [0, 1, 2, 3])]
    assert {c for _, c in first} == {"first"} and {c for _, c in second} == {"second"}
    workers = {p for p, _ in first}
    assert len(workers) == 2 and {p for p, _ in second} == workers  # the same two processes
    with pytest.raises(ZeroDivisionError):  # a job stopped by a bug takes its workers down ...
        list(engine.map(_bug, None, [1, 2]))
    third = [r for _, r, _ in engine.map(_pid_and_context, ("third", str(tmp_path / "third")), [0, 1, 2, 3])]
    assert {c for _, c in third} == {"third"} and not {p for p, _ in third} & workers  # ... the next starts anew
    engine.close()


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _untimed(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def assert_same_attack_run(a: Path, b: Path, n: int):
    """Two attack run directories hold the same examples, byte for byte apart from timings."""
    ra, rb = _rows(a / "results.csv"), _rows(b / "results.csv")
    assert len(ra) == n and _untimed(ra) == _untimed(rb)
    assert len({r["example"] for r in rb}) == n  # every example exactly once
    assert (a / "traces.csv").read_bytes() == (b / "traces.csv").read_bytes()
    for row in ra:
        assert (a / row["wav"]).read_bytes() == (b / row["wav"]).read_bytes()


def assert_same_files(a: Path, b: Path):
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:  # no timing columns in either: every file the same, byte for byte
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_an_attack_run_with_two_workers_writes_what_one_process_writes(trained_dnn, learn_cache, tmp_path):
    jobs = recordings_from_split(learn_cache, "test", limit=5)
    one = run_attacks(trained_dnn, jobs, "random", tmp_path / "one", progress=False, engine=LocalEngine(1, threads=1))
    two = run_attacks(trained_dnn, jobs, "random", tmp_path / "two", progress=False, engine=LocalEngine(2, threads=1))
    assert_same_attack_run(tmp_path / "one", tmp_path / "two", 5)
    assert {k: v for k, v in one.items() if k not in TIMING} == {k: v for k, v in two.items() if k not in TIMING}


def test_a_robustness_curve_and_a_horse_test_with_two_workers_write_what_one_process_writes(trained_dnn, learn_cache,
                                                                                            tmp_path):
    from musadv.horse import horse_test
    from musadv.robustness import robustness_curve
    from musadv.transforms import Transformation

    jobs = recordings_from_split(learn_cache, "test", limit=3)
    for n in (1, 2):
        engine = LocalEngine(n, threads=1)
        robustness_curve(trained_dnn, jobs, tmp_path / f"curve{n}", (30.0, 15.0), progress=False, engine=engine)
        horse_test(trained_dnn, jobs, tmp_path / f"horse{n}", Transformation("eq"), trials=3, progress=False, engine=engine)
    assert_same_files(tmp_path / "curve1", tmp_path / "curve2")
    assert_same_files(tmp_path / "horse1", tmp_path / "horse2")


def test_a_killed_run_resumes_and_finishes_with_every_example_exactly_once(trained_dnn, learn_cache, tmp_path):
    """The driver of a --jobs 2 run is killed as soon as its first example is written; the rerun
    finishes the rest and the run equals one that was never interrupted."""
    jobs = recordings_from_split(learn_cache, "test", limit=6)
    run_attacks(trained_dnn, jobs, "random", tmp_path / "whole", progress=False, engine=LocalEngine(1, threads=1))
    cmd = [sys.executable, "-m", "musadv.cli", "attack", str(trained_dnn.path), "--split", "test", "--cache",
           str(learn_cache.path), "--limit", "6", "--jobs", "2", "--threads", "1", "--out", str(tmp_path / "killed"),
           "--quiet", "--no-report"]
    examples = tmp_path / "killed" / "examples"
    driver = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(examples.glob("*.json")) and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and its workers, mid-run
    finally:
        driver.wait()
    finished = len(list(examples.glob("*.json")))
    assert 1 <= finished < 6 and not (tmp_path / "killed" / "results.csv").exists()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    assert_same_attack_run(tmp_path / "whole", tmp_path / "killed", 6)


# ---------------------------------------------------------------- Ray

@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance of two CPUs for this module's tests."""
    ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'musadv[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _die_once(flag_dir, piece):
    """Piece 2 kills its worker process the first time it is tried."""
    flag = Path(flag_dir) / f"died-{piece}"
    if piece == 2 and not flag.exists():
        flag.touch()
        os._exit(1)
    return _square_or_fail(0, piece)


def test_ray_tasks_come_back_with_their_errors_and_a_lost_worker_is_replaced(ray_instance, tmp_path):
    outcomes = {p: (r, e) for p, r, e in RayEngine(threads=1).map(_die_once, str(tmp_path), [0, 1, 2, 3, 4])}
    assert (tmp_path / "died-2").exists()  # the worker doing piece 2 died ...
    assert outcomes[2][0][0] == 4 and outcomes[4][0][0] == 16  # ... and the piece was done again elsewhere
    assert outcomes[3] == (None, "piece 3 is bad")
    assert os.getpid() not in {r[1] for r, e in outcomes.values() if r}
    (tmp_path / "again").mkdir()
    [(piece, result, error)] = RayEngine(threads=1, retries=0).map(_die_once, str(tmp_path / "again"), [2])
    assert result is None and error == "its Ray worker was lost 1 time(s) (WorkerCrashedError)"


def test_a_ray_worker_that_cannot_see_the_run_directory_stops_the_run(ray_instance, tmp_path):
    with pytest.raises(MusadvError, match="not visible from the Ray worker"):
        list(RayEngine(threads=1).map(_square_or_fail, 0, [1], shared=[tmp_path / "nowhere" / "run.json"]))


def test_tasks_that_ask_for_more_gpus_than_the_cluster_has_stop_in_one_line_instead_of_waiting(ray_instance):
    """A local instance of two CPUs has no GPU: Ray would hold such tasks pending for ever."""
    with pytest.raises(MusadvError, match="has 0 GPUs; a task asks for 0.5 \\(--gpus-per-task\\)"):
        list(RayEngine(threads=1, gpus=0.5).map(_square_or_fail, 0, [1]))


def _visible_gpu(folder, piece):
    _rendezvous(folder)
    return os.environ.get("CUDA_VISIBLE_DEVICES"), os.getpid()


def test_worker_processes_take_the_gpus_in_turn(tmp_path):
    """Each worker sees one GPU as its cuda:0 (set before CUDA starts), the workers all of them."""
    engine = LocalEngine(2, threads=1, gpus=[0, 1])
    try:
        seen = {result for _, result, _ in engine.map(_visible_gpu, str(tmp_path), list(range(6)))}
    finally:
        engine.close()
    by_worker = {}
    for gpu, pid in seen:
        by_worker.setdefault(pid, set()).add(gpu)
    assert len(by_worker) == 2 and sorted(g for gs in by_worker.values() for g in gs) == ["0", "1"]


def test_gpus_per_task_is_for_ray():
    with pytest.raises(MusadvError, match="--gpus-per-task is for Ray tasks"):
        engine_from_options(gpus_per_task=1)


def test_an_attack_run_and_a_robustness_curve_on_ray_write_what_one_process_writes(ray_instance, trained_dnn, learn_cache,
                                                                                  tmp_path):
    from musadv.robustness import robustness_curve

    (tmp_path / "bad.wav").write_bytes(b"RIFF not really a WAV file")
    jobs = recordings_from_split(learn_cache, "test", limit=4) + [RecordingRef(str(tmp_path / "bad.wav"), "bad.wav")]
    one, ray = LocalEngine(1, threads=1), RayEngine(threads=1)
    run_attacks(trained_dnn, jobs, "random", tmp_path / "one", progress=False, engine=one)
    run_attacks(trained_dnn, jobs, "random", tmp_path / "ray", progress=False, engine=ray)
    assert_same_attack_run(tmp_path / "one", tmp_path / "ray", 4)
    errors = _rows(tmp_path / "ray" / "errors.csv")  # a bad file is the same one-line error on Ray
    assert [e["file"] for e in errors] == ["bad.wav"] and errors == _rows(tmp_path / "one" / "errors.csv")
    robustness_curve(trained_dnn, jobs[:3], tmp_path / "curve-one", (30.0, 15.0), progress=False, engine=one)
    robustness_curve(trained_dnn, jobs[:3], tmp_path / "curve-ray", (30.0, 15.0), progress=False, engine=ray)
    assert_same_files(tmp_path / "curve-one", tmp_path / "curve-ray")


def _ray_workers_attacking():
    """PIDs of Ray worker processes running an attack task now (Ray titles a busy worker ray::<task>)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::_run_ray_task"):
                pids.append(int(proc.name))
        except OSError:
            pass
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's workers in /proc")
def test_an_attack_run_on_ray_loses_no_example_when_a_worker_is_killed(ray_instance, trained_dnn, learn_cache, tmp_path):
    jobs = recordings_from_split(learn_cache, "test", limit=6)
    run_attacks(trained_dnn, jobs, "random", tmp_path / "whole", progress=False, engine=LocalEngine(1, threads=1))
    killed = []

    def kill_a_worker_mid_run():
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            busy = _ray_workers_attacking()
            if busy and list((tmp_path / "ray" / "examples").glob("*.json")):
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_worker_mid_run)
    killer.start()
    run_attacks(trained_dnn, jobs, "random", tmp_path / "ray", progress=False, engine=RayEngine(threads=1))
    killer.join()
    assert killed  # a worker died mid-run, Ray ran its task again, and nothing is missing or doubled
    assert_same_attack_run(tmp_path / "whole", tmp_path / "ray", 6)

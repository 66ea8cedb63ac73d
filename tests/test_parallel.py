"""musadv.parallel: pieces of a job in worker processes give the same files as one process."""

import csv
import os

import pytest

from musadv.errors import MusadvError
from musadv.parallel import map_pieces
from musadv.runs import jobs_from_split, run_attacks


def _square_or_fail(offset, piece):
    if piece == 3:
        raise MusadvError(f"piece {piece} is bad")
    return piece * piece + offset, os.getpid()


def test_every_piece_is_done_once_in_worker_processes_and_errors_come_back():
    pieces = [0, 1, 2, 4, 5]
    results = dict(map_pieces(_square_or_fail, 10, pieces, jobs=2, threads=1))
    assert {p: r[0] for p, r in results.items()} == {p: p * p + 10 for p in pieces}
    assert os.getpid() not in {r[1] for r in results.values()}  # done by the workers
    assert dict(map_pieces(_square_or_fail, 10, pieces, jobs=1))[2][1] == os.getpid()
    with pytest.raises(MusadvError, match="piece 3 is bad"):
        list(map_pieces(_square_or_fail, 0, [1, 3, 2], jobs=2, threads=1))
    with pytest.raises(ValueError, match="threads"):
        list(map_pieces(_square_or_fail, 0, [1], jobs=1, threads=0))


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_an_attack_run_with_two_workers_writes_what_one_process_writes(trained_dnn, learn_cache, tmp_path):
    jobs = jobs_from_split(learn_cache, "test", limit=5)
    one = run_attacks(trained_dnn, jobs, "random", tmp_path / "one", progress=False, n_jobs=1, threads=1)
    two = run_attacks(trained_dnn, jobs, "random", tmp_path / "two", progress=False, n_jobs=2, threads=1)
    timing = {"seconds", "mean_seconds"}
    a, b = _rows(tmp_path / "one" / "results.csv"), _rows(tmp_path / "two" / "results.csv")
    assert len(a) == 5 and [{k: v for k, v in r.items() if k not in timing} for r in a] == \
        [{k: v for k, v in r.items() if k not in timing} for r in b]
    assert (tmp_path / "one" / "traces.csv").read_bytes() == (tmp_path / "two" / "traces.csv").read_bytes()
    for row in a:
        assert (tmp_path / "one" / row["wav"]).read_bytes() == (tmp_path / "two" / row["wav"]).read_bytes()
    assert {k: v for k, v in one.items() if k not in timing} == {k: v for k, v in two.items() if k not in timing}


def test_a_robustness_curve_and_a_horse_test_with_two_workers_write_what_one_process_writes(trained_dnn, learn_cache,
                                                                                            tmp_path):
    from musadv.horse import horse_test
    from musadv.robustness import robustness_curve
    from musadv.transforms import Transformation

    jobs = jobs_from_split(learn_cache, "test", limit=3)
    for n in (1, 2):
        robustness_curve(trained_dnn, jobs, tmp_path / f"curve{n}", (30.0, 15.0), progress=False, n_jobs=n, threads=1)
        horse_test(trained_dnn, jobs, tmp_path / f"horse{n}", Transformation("eq"), trials=3, progress=False, n_jobs=n,
                   threads=1)
    for name in ("curve", "horse"):
        files = sorted(p.relative_to(tmp_path / f"{name}1") for p in (tmp_path / f"{name}1").rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(tmp_path / f"{name}2") for p in (tmp_path / f"{name}2").rglob("*") if p.is_file())
        for f in files:  # no timing columns in either: every file the same, byte for byte
            assert (tmp_path / f"{name}1" / f).read_bytes() == (tmp_path / f"{name}2" / f).read_bytes(), f

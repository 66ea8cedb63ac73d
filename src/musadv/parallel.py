"""Worker processes for the independent pieces of a long job (one recording each) on one machine.

Attack runs, robustness curves, horse tests and survival runs finish one recording (or example)
at a time and write it atomically into their run directory; the pieces do not depend on each
other, so they can be done by several processes at once. :func:`map_pieces` hands the pieces
to ``jobs`` worker processes, each given the job's context (the model and the settings) once
when it starts and ``threads`` PyTorch threads (by default a fair share of the machine's
cores), and yields each result as it comes. With ``jobs=1`` it does the same work in this
process, one piece after another.

A piece's numbers depend on nothing but its inputs and the number of threads it is computed
with: PyTorch sums in another order on another number of threads, which moves the last digits
of a float (and, rarely, an attack that ends at its threshold). Runs with the same ``threads``
write the same files whatever ``jobs`` is.

Workers are started with ``spawn``: a forked child of a process whose OpenMP threads have run
can hang in its first parallel region. The context is pickled once per worker to get there
(inter-process transport of objects this process made, never the loading of a file).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, TypeVar

import torch

__all__ = ["available_cores", "default_threads", "map_pieces", "check_jobs"]

P = TypeVar("P")
R = TypeVar("R")

# A worker's context and work, set once when the worker starts (in the worker only).
_worker: dict = {}


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_jobs(jobs: int | None) -> int:
    """``jobs`` as a number of worker processes: ``None`` is every core; below 1 is an error."""
    if jobs is None:
        return available_cores()
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, not {jobs}")
    return int(jobs)


def _start(work: Callable, context: Any, threads: int) -> None:
    torch.set_num_threads(threads)
    _worker.update(work=work, context=context)


def _run(piece):
    return _worker["work"](_worker["context"], piece)


def default_threads(jobs: int) -> int:
    """A fair share of the cores for each of ``jobs`` workers (at least one)."""
    return max(1, available_cores() // jobs)


def map_pieces(work: Callable[[Any, P], R], context: Any, pieces: Sequence[P], jobs: int = 1,
               threads: int | None = None) -> Iterator[tuple[P, R]]:
    """``(piece, work(context, piece))`` for every piece, in the order they finish.

    Parameters
    ----------
    work : callable
        A module-level function ``work(context, piece)`` (workers import it by name).
    context : object
        What every piece needs (the model, the settings); given to each worker once.
    pieces : sequence
        The independent pieces (recordings, examples).
    jobs : int
        Worker processes; 1 does the work in this process.
    threads : int, optional
        PyTorch threads for each piece (default :func:`default_threads`).

    Raises
    ------
    Exception
        The first exception a piece raised (the other pieces already running finish; none
        that had not started is begun).
    """
    jobs = check_jobs(jobs)
    threads = default_threads(jobs) if threads is None else threads
    if threads < 1:
        raise ValueError(f"threads must be >= 1, not {threads}")
    jobs = min(jobs, max(len(pieces), 1))
    if jobs == 1:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for piece in pieces:
                yield piece, work(context, piece)
        finally:
            torch.set_num_threads(before)
        return
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
                               initargs=(work, context, threads))
    try:
        running = {pool.submit(_run, piece): piece for piece in pieces}
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                piece = running.pop(future)
                yield piece, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

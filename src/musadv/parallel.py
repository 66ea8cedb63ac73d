"""Engines for the independent pieces of a long job (one recording or example each): this process,
worker processes on this machine, or a Ray cluster.

Attack runs, robustness curves, horse tests and survival runs finish one recording (or example)
at a time and write it atomically into their run directory; the pieces do not depend on each
other, so an :class:`Engine` may do them anywhere and in any order. Each engine's
:meth:`Engine.map` hands every worker the job's context (the model and the settings) once, sets
the PyTorch threads each piece is computed with, and yields each piece's result as it comes,
or the one-line :class:`~musadv.errors.MusadvError` that stopped it. The run's driver (the
process that called it) draws the progress bar, collects the errors and writes the summary,
whatever the engine.

- :class:`LocalEngine` ``(jobs=1)`` works in this process; ``jobs > 1`` starts that many
  worker processes (``spawn``: a forked child of a process whose OpenMP threads have run can
  hang in its first parallel region) and keeps them for the engine's next job.
- :class:`RayEngine` sends one task per piece to a Ray cluster (``pip install 'musadv[ray]'``).
  The context is put in the cluster's object store once and unpacked once per worker process.
  Workers write into the run directory themselves, so the cluster's nodes must see it (and
  the audio) at the same path: each worker checks, and a node that cannot see it stops the run
  with one line saying so. A task whose worker dies is retried by Ray; a run whose driver dies
  keeps every piece it finished and resumes when it is run again.

A piece's numbers depend on nothing but its inputs and the number of threads it is computed
with: PyTorch sums in another order on another number of threads, which moves the last digits
of a float (and, rarely, an attack that ends at its threshold). Runs with the same ``threads``
write the same files on every engine.

The context travels pickled (inter-process transport of objects this process made, never the
loading of a file a user brought).
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import pickle
import socket
import sys
import tempfile
import threading
import time
import uuid
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

import torch

from .errors import MusadvError

__all__ = ["Engine", "LocalEngine", "RayEngine", "available_cores", "default_threads", "check_jobs", "engine_from_options"]

P = TypeVar("P")

#: What :meth:`Engine.map` yields for each piece: the piece, its result (None if it failed) and
#: the message of the MusadvError that stopped it (None if it did not).
Outcome = tuple[Any, Any, "str | None"]

#: How often a worker process looks whether its driver is still there (seconds).
WATCH_SECONDS = 0.5

# A worker process's context and work, set once when it starts or first needs them (in workers only).
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


def default_threads(jobs: int) -> int:
    """A fair share of this machine's cores for each of ``jobs`` workers (at least one)."""
    return max(1, available_cores() // jobs)


def _check_threads(threads: int) -> int:
    if threads < 1:
        raise ValueError(f"threads must be >= 1, not {threads}")
    return int(threads)


def _outcome(work: Callable, context: Any, piece: Any) -> tuple[Any, str | None]:
    """One piece: its result, or the user-facing error that stopped it (a bug still raises)."""
    try:
        return work(context, piece), None
    except MusadvError as exc:
        return None, str(exc)


class Engine(ABC):
    """Where the pieces of a job are done."""

    @abstractmethod
    def map(self, work: Callable[[Any, P], Any], context: Any, pieces: Sequence[P],
            shared: Sequence[str | os.PathLike] = ()) -> Iterator[Outcome]:
        """``(piece, result, error)`` for every piece, in the order they finish.

        Parameters
        ----------
        work : callable
            A module-level function ``work(context, piece)`` (workers import it by name). A
            :class:`~musadv.errors.MusadvError` it raises is the piece's error; anything else
            is a bug and stops the job.
        context : object
            What every piece needs (the model, the settings); given to each worker once.
        pieces : sequence
            The independent pieces (recordings, examples).
        shared : sequence of path
            Files the driver wrote that every worker must see (the run's settings file): an
            engine whose workers may run on other machines checks them before the first piece.
        """

    def close(self) -> None:
        """Let go of what the engine started (worker processes); a later job starts them again."""


class LocalEngine(Engine):
    """Pieces in this process (``jobs=1``) or in ``jobs`` spawned worker processes on this machine.

    The worker processes start with the first job that needs them and serve every later job
    of this engine (a study's stages pay the start once); each job's context reaches every
    worker once. A job that stops early (a bug, a worker that died, a caller that stops
    reading) takes the workers down with it; the next job starts new ones. :meth:`close`
    stops them, as does the engine's end.

    Parameters
    ----------
    jobs : int, optional
        Worker processes; 1 does the work in this process; ``None`` is every core.
    threads : int, optional
        PyTorch threads for each piece (default: the cores shared among ``jobs``).
    gpus : sequence of int, optional
        CUDA GPUs the worker processes take in turn (worker ``i`` sees only ``gpus[i % len(gpus)]``,
        as its ``cuda:0``), so that a model sent on ``cuda:0`` runs on each worker's own GPU.
    """

    def __init__(self, jobs: int | None = 1, threads: int | None = None, gpus: Sequence[int] | None = None):
        self.jobs = check_jobs(jobs)
        self.threads = default_threads(self.jobs) if threads is None else _check_threads(threads)
        self.gpus = tuple(int(g) for g in gpus or ())
        self._pool: ProcessPoolExecutor | None = None
        self._stop_pool = None

    def _workers(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_start_worker,
                                             initargs=(os.getpid(), self.gpus, ctx.Value("i", 0)))
            self._stop_pool = weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
        return self._pool

    def close(self) -> None:
        """Stop the worker processes (a later job starts new ones)."""
        if self._pool is not None:
            self._stop_pool.detach()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = self._stop_pool = None

    def map(self, work, context, pieces, shared=()):
        if min(self.jobs, len(pieces)) <= 1:
            before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                for piece in pieces:
                    yield piece, *_outcome(work, context, piece)
            finally:
                torch.set_num_threads(before)
            return
        # The job's context goes to the workers through a file each reads once, not with every piece.
        with tempfile.TemporaryDirectory(prefix="musadv-job-") as tmp:
            path = os.path.join(tmp, f"context-{uuid.uuid4().hex}.pickle")  # also the job's key in the workers
            try:
                with open(path, "wb") as fh:
                    pickle.dump((work, context), fh, protocol=pickle.HIGHEST_PROTOCOL)
            except (pickle.PicklingError, AttributeError, TypeError) as exc:
                # A model a user's factory made may hold what cannot travel (a local function, a lock).
                print(f"warning: the job cannot be sent to worker processes ({type(exc).__name__}: {exc}); "
                      "working in this process", file=sys.stderr)
                yield from LocalEngine(1, self.threads).map(work, context, pieces)
                return
            pool = self._workers()
            running = {pool.submit(_run_in_process, path, self.threads, piece): piece for piece in pieces}
            finished = False
            try:
                while running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        piece = running.pop(future)
                        try:
                            result = future.result()
                        except BrokenProcessPool:
                            raise MusadvError("a worker process died (killed, or out of memory); every piece it "
                                              "finished is kept: run the same command again to resume") from None
                        yield piece, *result
                finished = True
            finally:
                if not finished:
                    self.close()


def _start_worker(parent: int, gpus: tuple[int, ...], started) -> None:
    """In a new worker process: take its GPU (before CUDA starts), and end with the driver."""
    if gpus:
        with started.get_lock():
            rank, started.value = started.value, started.value + 1
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus[rank % len(gpus)])
    _end_with_parent(parent)


def _end_with_parent(parent: int) -> None:
    """In a worker process: exit as soon as the driver that started it is gone.

    A driver killed outright (``kill -9``, the OOM killer) cannot stop its workers, which would
    go on writing into the run and then block for good on a pipe nobody reads; so each worker
    watches for itself.
    """
    def watch():
        while os.getppid() == parent:
            time.sleep(WATCH_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="musadv-watch-parent", daemon=True).start()


def _run_in_process(path: str, threads: int, piece):
    if _worker.get("key") != path:  # this worker's first piece of this job
        with open(path, "rb") as fh:
            work, context = pickle.load(fh)
        torch.set_num_threads(threads)
        _worker.update(key=path, work=work, context=context)
    return _outcome(_worker["work"], _worker["context"], piece)


class RayEngine(Engine):
    """One Ray task per piece, on the cluster at ``address``.

    Parameters
    ----------
    address : str
        ``auto`` (the cluster this machine has joined with ``ray start``), ``HOST:PORT`` of a
        head node, ``ray://HOST:10001`` (Ray Client), or ``local`` (start a Ray instance on this
        machine for the run). Ignored when this process is already connected (``ray.init``).
    threads : int
        PyTorch threads (and Ray CPUs) each task takes.
    retries : int
        Times Ray runs a task again whose worker process or node died.
    gpus : float
        GPUs each task takes (Ray's ``num_gpus``; a fraction shares one). Ray makes a task's
        GPUs its only visible ones, so a model sent on ``cuda:0`` runs on the task's own GPU.
    """

    def __init__(self, address: str = "auto", threads: int = 1, retries: int = 3, gpus: float = 0.0):
        if not address:
            raise ValueError("address must name a Ray cluster, 'auto' or 'local'")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, not {retries}")
        if not gpus >= 0:
            raise ValueError(f"gpus must be >= 0, not {gpus}")
        self.address = address
        self.threads = _check_threads(threads)
        self.retries = int(retries)
        self.gpus = float(gpus)
        if importlib.util.find_spec("ray") is None:
            raise MusadvError("Ray is not installed: pip install 'musadv[ray]'")

    def _connect(self):
        import ray

        if not ray.is_initialized():
            options = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            try:
                ray.init(address=None if self.address == "local" else self.address, **options)
            except ConnectionError as exc:
                raise MusadvError(f"Ray cluster {self.address!r}: cannot connect; start one with `ray start --head` or ask "
                                  f"for a local instance ('local') ({str(exc).splitlines()[0][:80]})") from None
        return ray

    def map(self, work, context, pieces, shared=()):
        if not pieces:
            return
        ray = self._connect()
        if self.gpus and ray.cluster_resources().get("GPU", 0) < self.gpus:
            # Ray would wait for ever for a GPU no node has.
            raise MusadvError(f"Ray cluster {self.address!r}: has {ray.cluster_resources().get('GPU', 0):g} GPUs; "
                              f"a task asks for {self.gpus:g} (--gpus-per-task)")
        task = ray.remote(_run_ray_task).options(num_cpus=self.threads, num_gpus=self.gpus, max_retries=self.retries)
        # One copy in the object store; passed inside a list so that Ray hands the worker the
        # reference, which each worker process resolves once (see _run_ray_task).
        try:
            context_ref = ray.put((work, context, tuple(str(Path(p).resolve()) for p in shared)))
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise MusadvError(f"the job cannot be sent to the Ray cluster ({type(exc).__name__}: {exc}); run it "
                              "without --ray") from None
        running = {task.remote([context_ref], piece, self.threads): piece for piece in pieces}
        try:
            while running:
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    piece = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:
                        if isinstance(exc, MusadvError):  # the run cannot go on (a node that cannot see it)
                            raise MusadvError(str(exc.cause)) from None
                        raise
                    except ray.exceptions.RayError as exc:  # retries spent: the worker or its node kept dying
                        result = None, f"its Ray worker was lost {self.retries + 1} time(s) ({type(exc).__name__})"
                    yield piece, *result
        finally:
            for ref in running:
                ray.cancel(ref)


def _run_ray_task(context_ref: list, piece: Any, threads: int) -> tuple[Any, str | None]:
    import ray

    key = context_ref[0].hex()
    if _worker.get("key") != key:  # the first piece of this job in this worker process
        work, context, shared = ray.get(context_ref[0])
        for path in shared:
            if not os.path.exists(path):
                raise MusadvError(f"{path}: not visible from the Ray worker on {socket.gethostname()}; a Ray run needs "
                                  "its run directory and its audio on storage every node mounts at the same path")
        _worker.update(key=key, work=work, context=context)
    torch.set_num_threads(threads)
    return _outcome(_worker["work"], _worker["context"], piece)


def engine_from_options(jobs: int | None = None, threads: int | None = None, ray: str | None = None,
                        gpus_per_task: float | None = None, device: torch.device | None = None) -> Engine:
    """The engine the command-line options ``--jobs``, ``--threads``, ``--ray`` and ``--gpus-per-task`` name.

    With ``device`` a CUDA GPU (``cuda:0``) and several GPUs on this machine, the ``jobs``
    worker processes take every GPU in turn.

    Raises
    ------
    MusadvError
        If both ``jobs`` and ``ray`` are given (a Ray cluster decides how many tasks run at once),
        or ``gpus_per_task`` without ``ray``.
    """
    if ray is None:
        if gpus_per_task is not None:
            raise MusadvError("--gpus-per-task is for Ray tasks (--ray); on this machine --device names the GPU")
        spread = device is not None and device.type == "cuda" and device.index in (0, None) and \
            torch.cuda.device_count() > 1
        return LocalEngine(jobs, threads, gpus=range(torch.cuda.device_count()) if spread else None)
    if jobs is not None:
        raise MusadvError("--jobs and --ray exclude each other: on Ray, the cluster's CPUs decide how many tasks run at once")
    return RayEngine(ray, 1 if threads is None else threads, gpus=gpus_per_task or 0.0)

"""The run driver: what every long run (cache preparation, attack, robustness curve, horse test, survival) shares.

A run kind declares itself to :func:`drive` as a :class:`RunKind`: its run directories and the
settings each must hold, its pieces (recordings or examples), what of a piece is left to do, how
one piece is done and how its finished records are summarised. :func:`drive` owns the rest, the
same for every kind: refusing to mix two runs in one directory, removing what an interrupted run
left half-written, the pending pieces, the progress bar, the engine, writing each finished
record (its presence marks the piece as finished), ``errors.csv`` and the summary.

A finished record is a JSON file in a run's record directory whose ``files`` entry names every
file the record stands for (relative to the run directory) with its size in bytes
(:func:`record_files`). A record that does not parse, or whose files are missing or have
another size, is not finished: :func:`drive` removes it and the piece is done again.
"""

from __future__ import annotations

import csv
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import MusadvError
from .io import TMP_PREFIX, write_csv_atomic, write_json_atomic
from .parallel import Engine, LocalEngine
from .progress import progress_bar

__all__ = ["RunKind", "drive", "record_files", "finished_record", "read_records", "read_errors", "sweep"]


def record_files(out: Path, paths: Iterable[str | os.PathLike]) -> dict[str, int]:
    """A record's ``files`` entry: each path relative to the run directory ``out``, with its size in bytes."""
    out = Path(out)
    return {str(Path(p).relative_to(out)): Path(p).stat().st_size for p in paths}


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _load_strict(path: Path) -> Any:
    return json.loads(path.read_text(), parse_constant=_reject_constant)


def finished_record(path: str | os.PathLike) -> dict | None:
    """The record at ``path`` if it is finished (parses, and its files are there with their sizes), else None."""
    path = Path(path)
    try:
        record = _load_strict(path)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict):
        return None
    run_dir = path.parent.parent
    for rel, size in files.items():
        try:
            if (run_dir / rel).stat().st_size != size:
                return None
        except OSError:
            return None
    return record


def _record_paths(record_dir: Path) -> list[Path]:
    return sorted(p for p in Path(record_dir).glob("*.json") if not p.name.startswith(TMP_PREFIX))


def sweep(out: str | os.PathLike, record_dir: str) -> int:
    """Remove what an interrupted run left in ``out``: temporary files, and records that are not finished.

    Returns the number of records removed (their pieces are done again).
    """
    out = Path(out)
    for tmp in out.rglob(f"{TMP_PREFIX}*"):
        tmp.unlink(missing_ok=True)
    removed = 0
    for path in _record_paths(out / record_dir):
        if finished_record(path) is None:
            path.unlink()
            removed += 1
    return removed


def read_records(record_dir: str | os.PathLike) -> list[dict]:
    """Every record of a record directory, sorted by name.

    Raises
    ------
    MusadvError
        Naming the first record that is not finished (a run interrupted, or files changed since).
    """
    records = []
    for path in _record_paths(Path(record_dir)):
        record = finished_record(path)
        if record is None:
            raise MusadvError(f"{path}: unreadable, or the files it lists are missing or changed; "
                              "run the same command again to redo it")
        records.append(record)
    return records


def read_errors(out: str | os.PathLike) -> list[dict]:
    """The rows of a run's ``errors.csv`` (none if it has none)."""
    path = Path(out) / "errors.csv"
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class RunKind(ABC):
    """One kind of run, as :func:`drive` sees it.

    A run kind holds its model and settings (it travels to the engine's workers) and says:
    where its runs go (:meth:`settings`), what its pieces are, what of each is left and how
    one is done; the driver does everything else.
    """

    #: The settings file in each run directory, and the directory of its finished records.
    settings_name: str
    record_dir: str
    #: Progress bar: what the run does, and what one piece is.
    desc: str
    unit: str = "recording"
    #: The column of errors.csv that names a piece.
    error_key: str = "file"

    @abstractmethod
    def settings(self) -> dict[Path, dict]:
        """Each run directory with what its settings file must hold."""

    @abstractmethod
    def check_same(self, out: Path, old: dict, new: dict) -> None:
        """Raise a one-line :class:`MusadvError` if the run in ``out`` (``old``) is not this one (``new``)."""

    @abstractmethod
    def pieces(self) -> list:
        """Every piece of the run."""

    @abstractmethod
    def pending(self, piece) -> Any | None:
        """What of ``piece`` is left to do, judged on the disk (None when it is finished)."""

    @abstractmethod
    def name(self, piece) -> str:
        """A piece's name in errors.csv."""

    @abstractmethod
    def do(self, piece) -> list[tuple[Path, dict]]:
        """Do one pending piece (in any process): the records to write, each with its path.

        Raises :class:`MusadvError` for a piece that cannot be done (its error row).
        """

    @abstractmethod
    def summarise(self) -> Any:
        """Collect the finished records into the run's tables and figures."""

    def error_dirs(self, piece) -> list[Path] | None:
        """The run directories whose errors.csv gets a row when ``piece`` fails (None: all)."""
        return None

    def steps(self, piece) -> int:
        """Progress steps one piece counts for."""
        return 1

    #: Pending pieces given to :meth:`do_many` together (1: each to :meth:`do` alone).
    batch: int = 1

    def do_many(self, pieces: list) -> list[tuple[list | None, str | None]]:
        """Do several pending pieces together (when :attr:`batch` > 1): per piece, its records or its error.

        Kinds whose pieces gain from being done at once (attacks on a GPU) override this;
        by default each piece is done alone.
        """
        outcomes = []
        for piece in pieces:
            try:
                outcomes.append((self.do(piece), None))
            except MusadvError as exc:
                outcomes.append((None, str(exc)))
        return outcomes


def _do(kind: RunKind, piece):
    return kind.do(piece)


def _do_group(kind: RunKind, group: list):
    return kind.do_many(group)


def _outcomes(kind: RunKind, engine: Engine, lefts: list, shared):
    """``(left, records, error)`` of every pending piece, done alone or in groups of ``kind.batch``."""
    if kind.batch <= 1:
        yield from engine.map(_do, kind, lefts, shared=shared)
        return
    groups = [lefts[i : i + kind.batch] for i in range(0, len(lefts), kind.batch)]
    for group, results, error in engine.map(_do_group, kind, groups, shared=shared):
        for k, left in enumerate(group):
            yield (left, None, error) if error else (left, *results[k])


def drive(kind: RunKind, engine: Engine | None = None, progress: bool = True) -> Any:
    """Run ``kind`` to the end, resuming what its run directories hold; return its summary.

    Checks each settings file against the one on disk (a run refuses to mix with another),
    writes it, sweeps away temporary files and unfinished records, does every pending piece on
    ``engine``, writes each finished record, writes ``errors.csv`` (one row per piece that failed)
    in each run directory, and summarises.
    """
    runs = kind.settings()
    for out, settings in runs.items():
        path = out / kind.settings_name
        if path.exists():
            try:
                old = _load_strict(path)
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise MusadvError(f"{path}: unreadable ({exc}); choose another --out") from None
            kind.check_same(out, old, settings)
            if "results" in old:  # the summary's, until it is written again
                settings = {**settings, "results": old["results"]}
        write_json_atomic(path, settings)
        sweep(out, kind.record_dir)
    pieces = kind.pieces()
    pending = [(piece, left) for piece in pieces if (left := kind.pending(piece)) is not None]
    total = sum(kind.steps(p) for p in pieces)
    left_steps = sum(kind.steps(p) for p, _ in pending)
    bar = progress_bar(total=total, initial=total - left_steps, desc=kind.desc, unit=kind.unit, enabled=progress)
    errors: dict[Path, list[dict]] = {out: [] for out in runs}
    shared = [out / kind.settings_name for out in runs]
    try:
        for left, records, error in _outcomes(kind, engine or LocalEngine(), [left for _, left in pending], shared):
            if error:
                for out in kind.error_dirs(left) or runs:
                    errors[out].append({kind.error_key: kind.name(left), "error": error})
            for path, record in records or []:
                write_json_atomic(path, record)  # last: marks it as finished
            bar.update(kind.steps(left))
    finally:
        bar.close()
    for out, rows in errors.items():
        write_csv_atomic(out / "errors.csv", sorted(rows, key=lambda e: e[kind.error_key]), [kind.error_key, "error"])
    return kind.summarise()

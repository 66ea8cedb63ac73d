"""Atomic writing of result files, so an interrupted job never leaves a half-written one."""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["atomic_path", "write_json_atomic", "write_csv_atomic", "save_npy_atomic", "read_tagged_json", "finite_or_none"]


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} as JSON")


def write_json_atomic(path: str | os.PathLike, data) -> Path:
    """Write ``data`` as indented JSON (NumPy scalars and arrays allowed)."""
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_default) + "\n")
    return Path(path)


def write_csv_atomic(path: str | os.PathLike, rows: list[dict], fieldnames: list[str] | None = None) -> Path:
    """Write a list of dicts as CSV with a header row."""
    if fieldnames is None:
        fieldnames = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path, ".csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fieldnames)
            w.writeheader()
            w.writerows(rows)
    return Path(path)


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save an array as ``.npy`` (readable with ``np.load(mmap_mode='r')``, no pickle)."""
    with atomic_path(path, ".npy") as tmp:
        np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)
    return Path(path)


def read_tagged_json(path: str | os.PathLike, fmt: str, error: type, missing: str, wrong: str) -> dict:
    """Read a JSON file whose ``format`` field must be ``fmt``, raising ``error`` in one line.

    Parameters
    ----------
    missing, wrong : str
        Messages (after ``path: ``) for a missing file and for a file of another format.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise error(f"{path}: {wrong}")
    return data


def finite_or_none(v: float) -> float | None:
    """``v``, or None where it is inf or nan: JSON has no infinities, and an empty CSV cell reads as missing."""
    return v if math.isfinite(v) else None

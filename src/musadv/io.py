"""Atomic writing of result files, so an interrupted job never leaves a half-written one."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["markdown_table", "atomic_path", "write_json_atomic", "write_csv_atomic", "write_bytes_atomic", "save_npy_atomic",
           "read_tagged_json", "finite_or_none", "TMP_PREFIX"]

#: What the temporary files of an unfinished write are called (a run removes those it finds).
TMP_PREFIX = ".tmp-"

# mkstemp makes owner-only files; results are for sharing, so they get the mode the umask gives
# any new file. Read once: reading the umask means setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path``; an OSError (disk full, read-only) names ``path``."""
    path = Path(path)
    try:
        with atomic_path(path, path.suffix) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    return path


def _default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} as JSON")


def _strict(o):
    """``o`` with every infinite or NaN float as None: JSON has neither, and strict parsers refuse them."""
    if isinstance(o, float | np.floating):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, np.ndarray):
        return _strict(o.tolist())
    if isinstance(o, dict):
        return {k: _strict(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_strict(v) for v in o]
    return o


def write_json_atomic(path: str | os.PathLike, data) -> Path:
    """Write ``data`` as indented, strict JSON (NumPy scalars and arrays allowed; inf and NaN as null)."""
    text = json.dumps(_strict(data), indent=2, default=_default, allow_nan=False) + "\n"
    return write_bytes_atomic(path, text.encode())


def write_csv_atomic(path: str | os.PathLike, rows: list[dict], fieldnames: list[str] | None = None) -> Path:
    """Write a list of dicts as CSV with a header row."""
    if fieldnames is None:
        fieldnames = list(dict.fromkeys(k for r in rows for k in r))
    fh = io.StringIO(newline="")
    w = csv.DictWriter(fh, fieldnames=fieldnames)
    w.writeheader()
    w.writerows(rows)
    return write_bytes_atomic(path, fh.getvalue().encode())


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


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    """The lines of a Markdown table (a ``|`` inside a cell is written ``/``)."""
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows])

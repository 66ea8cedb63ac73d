"""The spectra cache: every recording of a partition decoded once, its magnitude frames on disk.

``prepare`` writes one ``.npy`` array of shape ``(n_frames, n_bins)`` (float32) per recording,
with a small JSON beside it recording the source file's size and modification time and the
analysis settings. Training and attacks memory-map these arrays instead of decoding audio.
A rerun skips recordings whose source and settings are unchanged, so an interrupted prepare
resumes where it stopped; recordings that cannot be used are listed in ``errors.csv``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import audio
from .errors import DatasetError, MusadvError
from .driver import RunKind, drive, finished_record, read_errors, record_files
from .io import read_tagged_json, save_npy_atomic, write_json_atomic
from .parallel import LocalEngine, check_jobs
from .partitions import SPLITS, Partition
from .spectral import STFTConfig, magnitude

__all__ = ["prepare", "SpectraCache", "Entry", "analyse_file"]

FORMAT = "musadv-spectra"
MIN_FILES_FOR_WORKERS = 32


@dataclass(frozen=True)
class Entry:
    """One cached recording."""

    path: str  #: relative to the dataset root
    label: str
    split: str
    key: str  #: file stem of the arrays in ``spectra/``
    n_frames: int
    n_samples: int


def _file_key(rel: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", rel)[-80:]
    return f"{safe}-{hashlib.sha1(rel.encode()).hexdigest()[:10]}"


def _source_stamp(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def analyse_file(
    path: str | os.PathLike,
    config: STFTConfig = STFTConfig(),
    offset: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode one recording and compute its magnitude frames, checking it can be analysed.

    Parameters
    ----------
    path : path
        Any audio file :func:`musadv.audio.load` reads; resampled to ``config.sr`` Hz, mono.
    config : STFTConfig
    offset, duration : float
        Seconds to skip, and seconds to keep (``None``: all), e.g. the first 30 s of a track.

    Returns
    -------
    y : np.ndarray
        The signal, float32.
    mag : np.ndarray
        Magnitude frames, float32, shape ``(n_frames, n_bins)``.
    """
    y, sr = audio.load(path, sr=config.sr, mono=True, offset=offset, duration=duration)
    audio.check_signal(y, sr, config.min_samples, str(path))
    return y, magnitude(y, config)


@dataclass(frozen=True)
class CacheRun(RunKind):
    """Preparing a cache, as the run driver sees it: one piece and one record (the array's JSON) per file."""

    partition: Partition
    out: Path
    config: STFTConfig
    offset: float
    duration: float | None

    settings_name = "partition.json"
    record_dir = "spectra"
    desc = "prepare"
    unit = "file"
    error_key = "path"

    def settings(self):
        return {self.out: self.partition.to_dict()}

    def check_same(self, out, old, new):
        pass  # a cache serves any partition: each file's array is checked against its source and settings

    def pieces(self):
        return self.partition.items()

    def pending(self, item):
        return None if self._fresh(item) else item

    def _fresh(self, item) -> dict | None:
        return _is_fresh(self.out / "spectra" / f"{_file_key(item.path)}.json", self.partition.root / item.path,
                         self.config.to_dict(), self.offset, self.duration)

    def name(self, item):
        return item.path

    def do(self, item):
        src = self.partition.root / item.path
        key = _file_key(item.path)
        try:
            stamp = _source_stamp(src)
            y, mag = analyse_file(src, self.config, self.offset, self.duration)
        except FileNotFoundError:
            raise MusadvError(f"{src}: file not found") from None
        except OSError as exc:
            raise MusadvError(f"{src}: {exc.strerror or exc}") from None
        npy = save_npy_atomic(self.out / "spectra" / f"{key}.npy", mag)
        meta = {"source": item.path, **stamp, "stft": self.config.to_dict(), "offset": self.offset,
                "duration": self.duration, "n_frames": int(mag.shape[0]), "n_samples": int(len(y)),
                "files": record_files(self.out, [npy])}
        return [(self.out / "spectra" / f"{key}.json", meta)]

    def summarise(self):
        entries, errors = [], read_errors(self.out)
        for split in SPLITS:
            for it in self.partition.splits[split]:
                meta = self._fresh(it)
                if meta is not None:
                    entries.append({"path": it.path, "label": it.label, "split": split, "key": _file_key(it.path),
                                    "n_frames": meta["n_frames"], "n_samples": meta["n_samples"]})
        index = {"format": FORMAT, "version": 1, "stft": self.config.to_dict(), "offset": self.offset,
                 "duration": self.duration, "labels": self.partition.labels, "root": str(self.partition.root.resolve()),
                 "entries": entries, "errors": errors}
        write_json_atomic(self.out / "index.json", index)
        return SpectraCache(self.out)


def _is_fresh(meta_file: Path, src: Path, cfg: dict, offset: float, duration: float | None) -> dict | None:
    """The array's record if it is finished (its .npy there at its size) and made from ``src`` as it is now with these settings."""
    meta = finished_record(meta_file)
    try:
        stamp = _source_stamp(src)
    except OSError:
        return None
    same = (
        meta is not None
        and meta.get("size") == stamp["size"]
        and meta.get("mtime_ns") == stamp["mtime_ns"]
        and meta.get("stft") == cfg
        and meta.get("offset") == offset
        and meta.get("duration") == duration
    )
    return meta if same else None


def prepare(
    partition: Partition,
    out_dir: str | os.PathLike,
    config: STFTConfig = STFTConfig(),
    offset: float = 0.0,
    duration: float | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> "SpectraCache":
    """Decode every recording of a partition once and store its magnitude frames.

    Parameters
    ----------
    partition : Partition
    out_dir : path
        Cache folder; created if needed. Holds ``partition.json``, ``index.json``,
        ``errors.csv`` and ``spectra/``.
    config : STFTConfig
        Analysis settings (sampling rate in Hz, window, hop).
    offset, duration : float
        Use only ``duration`` seconds from ``offset`` seconds into each recording
        (the paper uses the first 30 s of LMD's full tracks); ``None`` keeps all.
    jobs : int, optional
        Worker processes; default: all cores. ``1``, or fewer than 32 files to do, works in
        this process.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    SpectraCache
        The finished cache. Recordings that could not be used are left out of it and listed,
        with the reason, in ``errors.csv`` (also in ``SpectraCache.errors``).
    """
    kind = CacheRun(partition, Path(out_dir).resolve(), config, offset, duration)
    todo = sum(1 for it in partition.items() if kind.pending(it) is not None)
    # Starting workers has a fixed cost; for a few files the in-process path, whose FFTs already
    # use every core, is faster. Workers analyse one file at a time on one thread each.
    jobs = check_jobs(jobs)
    engine = LocalEngine(1) if jobs == 1 or todo < MIN_FILES_FOR_WORKERS else LocalEngine(jobs, threads=1)
    try:
        return drive(kind, engine, progress)
    finally:
        engine.close()


class SpectraCache:
    """Read access to a folder written by :func:`prepare`.

    Parameters
    ----------
    path : path
        The cache folder.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        index = read_tagged_json(self.path / "index.json", FORMAT, DatasetError,
                                 "not a finished spectra cache; run musadv prepare", "not a musadv spectra cache")
        self.config = STFTConfig.from_dict(index["stft"])
        self.offset = index["offset"]
        self.duration = index["duration"]
        self.labels: list[str] = index["labels"]
        self.root = Path(index["root"])
        self.entries = [Entry(**e) for e in index["entries"]]
        self.errors: list[dict] = index.get("errors", [])

    def split(self, name: str) -> list[Entry]:
        """Cached recordings of one split (``train``, ``valid`` or ``test``)."""
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return [e for e in self.entries if e.split == name]

    def frames(self, entry: Entry, mmap: bool = True) -> np.ndarray:
        """Magnitude frames of a recording, shape ``(n_frames, n_bins)``, float32.

        With ``mmap`` the array is memory-mapped read-only: nothing is read until used.
        """
        return np.load(self.path / "spectra" / f"{entry.key}.npy", mmap_mode="r" if mmap else None,
                       allow_pickle=False)

    def signal(self, entry: Entry) -> np.ndarray:
        """The recording's waveform as analysed (decoded again: the cache keeps magnitudes only)."""
        y, _ = audio.load(self.source(entry), sr=self.config.sr, offset=self.offset, duration=self.duration)
        return y

    def source(self, entry: Entry) -> Path:
        """The audio file a cached recording came from."""
        return self.root / entry.path

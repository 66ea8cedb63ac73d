"""The spectra cache: every recording of a partition decoded once, its magnitude frames on disk.

``prepare`` writes one ``.npy`` array of shape ``(n_frames, n_bins)`` (float32) per recording,
with a small JSON beside it recording the source file's size and modification time and the
analysis settings. Training and attacks memory-map these arrays instead of decoding audio.
A rerun skips recordings whose source and settings are unchanged, so an interrupted prepare
resumes where it stopped; recordings that cannot be used are listed in ``errors.csv``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .progress import progress_bar
from . import audio, partitions
from .datasets import Item
from .errors import DatasetError, MusadvError
from .io import read_tagged_json, save_npy_atomic, write_csv_atomic, write_json_atomic
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


def _work(task: tuple) -> tuple[str, str | None, int, int]:
    """Analyse one file into the cache; runs in a worker process."""
    src, rel, spectra_dir, cfg, offset, duration = task
    key = _file_key(rel)
    try:
        stamp = _source_stamp(Path(src))
        y, mag = analyse_file(src, STFTConfig.from_dict(cfg), offset, duration)
    except FileNotFoundError:
        return rel, f"{src}: file not found", 0, 0
    except (MusadvError, OSError) as exc:
        msg = str(exc) if isinstance(exc, MusadvError) else f"{src}: {exc.strerror or exc}"
        return rel, msg, 0, 0
    save_npy_atomic(Path(spectra_dir) / f"{key}.npy", mag)
    meta = {"source": rel, **stamp, "stft": cfg, "offset": offset, "duration": duration,
            "n_frames": int(mag.shape[0]), "n_samples": int(len(y))}
    # The JSON is written last: its presence means the array beside it is complete.
    write_json_atomic(Path(spectra_dir) / f"{key}.json", meta)
    return rel, None, int(mag.shape[0]), int(len(y))


def _init_worker():
    import torch

    # Each process analyses one file at a time; parallelism comes from the processes.
    torch.set_num_threads(1)


def _is_fresh(meta_file: Path, src: Path, cfg: dict, offset: float, duration: float | None) -> dict | None:
    try:
        meta = json.loads(meta_file.read_text())
        stamp = _source_stamp(src)
    except (OSError, json.JSONDecodeError):
        return None
    same = (
        meta.get("size") == stamp["size"]
        and meta.get("mtime_ns") == stamp["mtime_ns"]
        and meta.get("stft") == cfg
        and meta.get("offset") == offset
        and meta.get("duration") == duration
        and meta_file.with_suffix(".npy").exists()
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
    out_dir = Path(out_dir)
    spectra_dir = out_dir / "spectra"
    spectra_dir.mkdir(parents=True, exist_ok=True)
    partitions.save(partition, out_dir / "partition.json")
    cfg = config.to_dict()
    done: dict[str, tuple[int, int]] = {}
    todo = []
    for it in partition.items():
        src = partition.root / it.path
        meta = _is_fresh(spectra_dir / f"{_file_key(it.path)}.json", src, cfg, offset, duration)
        if meta is not None:
            done[it.path] = (meta["n_frames"], meta["n_samples"])
        else:
            todo.append((str(src), it.path, str(spectra_dir), cfg, offset, duration))
    errors: dict[str, str] = {}
    jobs = jobs or os.cpu_count() or 1
    bar = progress_bar(total=len(partition.items()), initial=len(done), desc="prepare", unit="file", enabled=progress)

    def record(result):
        rel, err, nf, ns = result
        if err is None:
            done[rel] = (nf, ns)
        else:
            errors[rel] = err
        bar.update(1)

    try:
        # Starting workers has a fixed cost; for a few files the in-process
        # path, whose FFTs already use every core, is faster.
        if jobs == 1 or len(todo) < MIN_FILES_FOR_WORKERS:
            for task in todo:
                record(_work(task))
        else:
            # 'fork' (not 'spawn') so that scripts without an ``if __name__ == '__main__'`` guard
            # work; the workers run PyTorch single-threaded, which keeps forking safe.
            with ProcessPoolExecutor(jobs, mp_context=get_context("fork"), initializer=_init_worker) as pool:
                for fut in as_completed([pool.submit(_work, t) for t in todo]):
                    record(fut.result())
    finally:
        bar.close()
        # Whatever happened, the report lists the failures found so far; finished arrays stay.
        write_csv_atomic(out_dir / "errors.csv", [{"path": p, "error": e} for p, e in sorted(errors.items())],
                         ["path", "error"])
    entries = []
    for split in SPLITS:
        for it in partition.splits[split]:
            if it.path in done:
                nf, ns = done[it.path]
                entries.append({"path": it.path, "label": it.label, "split": split,
                                "key": _file_key(it.path), "n_frames": nf, "n_samples": ns})
    index = {"format": FORMAT, "version": 1, "stft": cfg, "offset": offset, "duration": duration,
             "labels": partition.labels, "root": str(partition.root.resolve()), "entries": entries,
             "errors": [{"path": p, "error": e} for p, e in sorted(errors.items())]}
    write_json_atomic(out_dir / "index.json", index)
    return SpectraCache(out_dir)


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

    @property
    def partition(self) -> Partition:
        """The partition the cache was prepared from."""
        return partitions.load(self.path / "partition.json")

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

    def item(self, entry: Entry) -> Item:
        return Item(entry.path, entry.label)

"""Labelled collections of recordings: folder datasets, label lists, CSVs and the GTZAN preset.

A :class:`Dataset` is a root folder plus a list of :class:`Item` (path relative to the root,
label, optional artist). Nothing is decoded here; see :mod:`musadv.cache` for that.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from .audio import AUDIO_EXTENSIONS
from .errors import DatasetError

__all__ = [
    "Item",
    "Dataset",
    "GTZAN_GENRES",
    "from_folders",
    "from_label_list",
    "from_csv",
    "gtzan",
    "open_dataset",
    "read_artists",
]

#: The ten GTZAN genres in the order the paper's confusion matrices use.
GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


@dataclass(frozen=True)
class Item:
    """One recording: ``path`` relative to the dataset root (POSIX separators), its label, artist."""

    path: str
    label: str
    artist: str | None = None

    @property
    def key(self) -> str:
        """The path without its audio extension: ``blues/blues.00012.au`` and ``….wav`` share it."""
        return strip_audio_ext(self.path)


@dataclass
class Dataset:
    """A root folder and the labelled recordings under it.

    Attributes
    ----------
    root : Path
        Folder that item paths are relative to.
    items : list of Item
    labels : list of str
        All labels in a fixed order (a model's output units follow this order).
    """

    root: Path
    items: list[Item]
    labels: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.root = Path(self.root)
        if not self.labels:
            self.labels = sorted({it.label for it in self.items})
        unknown = {it.label for it in self.items} - set(self.labels)
        if unknown:
            raise DatasetError(f"{self.root}: items carry labels not in the label list: {sorted(unknown)}")

    def __len__(self) -> int:
        return len(self.items)

    def by_key(self) -> dict[str, Item]:
        """Items indexed by their extension-less path."""
        return {it.key: it for it in self.items}


def strip_audio_ext(path: str) -> str:
    p = path.replace(os.sep, "/")
    for ext in AUDIO_EXTENSIONS:
        if p.lower().endswith(ext):
            return p[: -len(ext)]
    return p


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _audio_files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )


def _require_dir(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    return root


def from_folders(root: str | os.PathLike, labels: list[str] | None = None) -> Dataset:
    """Every audio file under ``root``, labelled by the name of the folder that holds it.

    Parameters
    ----------
    root : path
        Folder to scan recursively for WAV, AU, FLAC, OGG and MP3 files.
    labels : list of str, optional
        Fixed label order; files in folders with other names are ignored. Default: all
        folder names, sorted.
    """
    root = _require_dir(root)
    items = [Item(_rel(p, root), p.parent.name) for p in _audio_files(root) if p.parent != root]
    if labels is not None:
        items = [it for it in items if it.label in labels]
    if not items:
        raise DatasetError(f"{root}: no audio files in label folders (expected ROOT/<label>/<file>)")
    return Dataset(root, items, list(labels) if labels else [])


def _split_line(line: str) -> tuple[str, str]:
    # Tabs allow paths with spaces; otherwise the label is the last whitespace-separated field.
    parts = line.split("\t") if "\t" in line else line.rsplit(None, 1)
    if len(parts) != 2:
        raise ValueError
    return parts[0].strip(), parts[1].strip()


def from_label_list(root: str | os.PathLike, list_file: str | os.PathLike) -> Dataset:
    """Recordings and labels from a text file of ``relative/path<TAB or space>label`` lines.

    Blank lines and lines starting with ``#`` are skipped. Paths are relative to ``root``.
    """
    root = _require_dir(root)
    items = []
    for n, line in enumerate(Path(list_file).read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            path, label = _split_line(line)
        except ValueError:
            raise DatasetError(f"{list_file}:{n}: expected 'path label', got {line!r}") from None
        items.append(Item(Path(path).as_posix(), label))
    if not items:
        raise DatasetError(f"{list_file}: lists no recordings")
    return Dataset(root, items)


def _read_csv_rows(csv_file: Path) -> list[dict]:
    with open(csv_file, newline="") as fh:
        rows = list(csv.reader(fh))
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise DatasetError(f"{csv_file}: empty CSV")
    header = [c.strip().lower() for c in rows[0]]
    if "path" in header:
        names, rows = header, rows[1:]
    else:
        names = ["path", "label", "artist"][: len(rows[0])]
    return [dict(zip(names, (c.strip() for c in r))) for r in rows]


def from_csv(csv_file: str | os.PathLike, root: str | os.PathLike | None = None) -> Dataset:
    """Recordings from a CSV of ``path,label[,artist]`` (header optional).

    Parameters
    ----------
    csv_file : path
    root : path, optional
        Folder the paths are relative to; default: the CSV's folder.
    """
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise DatasetError(f"{csv_file}: no such file")
    root = _require_dir(root if root is not None else csv_file.parent)
    items = []
    for n, row in enumerate(_read_csv_rows(csv_file), 1):
        if not row.get("path") or not row.get("label"):
            raise DatasetError(f"{csv_file}: row {n} lacks a path or a label")
        items.append(Item(Path(row["path"]).as_posix(), row["label"], row.get("artist") or None))
    return Dataset(root, items)


def gtzan(root: str | os.PathLike) -> Dataset:
    """The GTZAN preset: ``genre/genre.000NN.au`` (or ``.wav``), ten genres in the paper's order.

    ``root`` may be the folder holding the genre folders or its parent with a ``genres`` folder.
    Where both an ``.au`` and a ``.wav`` copy exist, the ``.au`` is used.
    """
    root = _require_dir(root)
    if not (root / "blues").is_dir() and (root / "genres").is_dir():
        root = root / "genres"
    missing = [g for g in GTZAN_GENRES if not (root / g).is_dir()]
    if missing:
        raise DatasetError(f"{root}: not a GTZAN folder (missing genre folders: {', '.join(missing)})")
    chosen: dict[str, Item] = {}
    for g in GTZAN_GENRES:
        for p in sorted((root / g).iterdir()):
            if p.suffix.lower() in (".au", ".wav") and p.name.startswith(g + "."):
                it = Item(_rel(p, root), g)
                if it.key not in chosen or p.suffix.lower() == ".au":
                    chosen[it.key] = it
    return Dataset(root, sorted(chosen.values(), key=lambda it: it.path), list(GTZAN_GENRES))


def open_dataset(source: str | os.PathLike, labels_file: str | os.PathLike | None = None) -> Dataset:
    """Open a dataset the way the command line does.

    ``source`` is a CSV file (:func:`from_csv`), a GTZAN folder (:func:`gtzan`), or any folder of
    label folders (:func:`from_folders`); with ``labels_file`` the labels come from that list
    (:func:`from_label_list`).
    """
    source = Path(source)
    if labels_file is not None:
        return from_label_list(source, labels_file)
    if source.is_file() and source.suffix.lower() == ".csv":
        return from_csv(source)
    source = _require_dir(source)
    base = source / "genres" if (source / "genres").is_dir() else source
    if all((base / g).is_dir() for g in GTZAN_GENRES):
        return gtzan(source)
    return from_folders(source)


def read_artists(csv_file: str | os.PathLike) -> dict[str, str]:
    """Map extension-less relative path to artist from a CSV with ``path`` and ``artist`` columns.

    Also accepts header-less ``path,artist`` or ``path,label,artist`` rows.
    """
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise DatasetError(f"{csv_file}: no such file")
    out = {}
    with open(csv_file, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise DatasetError(f"{csv_file}: empty CSV")
    header = [c.strip().lower() for c in rows[0]]
    if "path" in header and "artist" in header:
        ip, ia, rows = header.index("path"), header.index("artist"), rows[1:]
    else:
        ip, ia = 0, len(rows[0]) - 1
    for n, r in enumerate(rows, 1):
        if len(r) <= max(ip, ia) or not r[ia].strip():
            raise DatasetError(f"{csv_file}: row {n} lacks an artist")
        out[strip_audio_ext(r[ip].strip())] = r[ia].strip()
    return out

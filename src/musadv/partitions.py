"""Train / validation / test partitions of a dataset, saved as small JSON files.

Every later result (a model, a test, an attack) names the partition file it used, and the
partition names its exact files, so any figure can be traced to the recordings behind it.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .datasets import Dataset, Item, strip_audio_ext
from .errors import DatasetError
from .io import read_tagged_json, write_json_atomic

__all__ = ["Partition", "SPLITS", "stratified", "from_lists", "artist_filtered", "kfold", "load", "save"]

SPLITS = ("train", "valid", "test")
FORMAT = "musadv-partition"


@dataclass
class Partition:
    """Which recordings of a dataset are for training, validation and testing.

    Attributes
    ----------
    root : Path
        Dataset root the item paths are relative to.
    labels : list of str
        Label order of the dataset.
    splits : dict
        ``{'train': [Item, ...], 'valid': [...], 'test': [...]}``.
    method : str
        How it was made (``stratified``, ``lists``, ``artist``, ``kfold``).
    params : dict
        The parameters of that method (seed, fractions, list files, fold ...).
    """

    root: Path
    labels: list[str]
    splits: dict[str, list[Item]]
    method: str
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        self.root = Path(self.root)
        for s in SPLITS:
            self.splits.setdefault(s, [])
        seen: dict[str, str] = {}
        for s in SPLITS:
            for it in self.splits[s]:
                if it.key in seen:
                    raise DatasetError(f"partition puts {it.path} in both {seen[it.key]} and {s}")
                seen[it.key] = s

    def counts(self) -> dict[str, int]:
        return {s: len(self.splits[s]) for s in SPLITS}

    def items(self, split: str | None = None) -> list[Item]:
        """Items of one split, or of all splits (train, valid, test order) if ``split`` is None."""
        if split is None:
            return [it for s in SPLITS for it in self.splits[s]]
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return list(self.splits[split])

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": 1,
            "root": str(self.root.resolve()),
            "labels": list(self.labels),
            "method": self.method,
            "params": self.params,
            "counts": self.counts(),
            "splits": {
                s: [{k: v for k, v in vars(it).items() if v is not None} for it in self.splits[s]] for s in SPLITS
            },
        }

    @classmethod
    def from_dict(cls, d: dict, root: str | os.PathLike | None = None) -> "Partition":
        if d.get("format") != FORMAT:
            raise DatasetError("not a musadv partition file")
        splits = {s: [Item(**it) for it in d["splits"].get(s, [])] for s in SPLITS}
        return cls(Path(root) if root else Path(d["root"]), d["labels"], splits, d["method"], d.get("params", {}))


def save(partition: Partition, path: str | os.PathLike) -> Path:
    """Write a partition as JSON (atomically)."""
    return write_json_atomic(path, partition.to_dict())


def load(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Partition:
    """Read a partition JSON; ``root`` overrides the dataset folder it recorded (moved data)."""
    d = read_tagged_json(path, FORMAT, DatasetError, "no such partition file", "not a musadv partition file")
    try:
        return Partition.from_dict(d, root)
    except (KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: not a valid partition file ({exc})") from None


def _check_fractions(fractions) -> tuple[float, float, float]:
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6:
        raise DatasetError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    return fr


def _by_label(items: list[Item], labels: list[str]) -> dict[str, list[Item]]:
    groups = defaultdict(list)
    for it in sorted(items, key=lambda it: it.path):
        groups[it.label].append(it)
    return {lab: groups[lab] for lab in labels if groups[lab]}


def _shares(n: int, fr: tuple[float, float, float], totals: list[int]) -> list[int]:
    """Split ``n`` into three integer counts by largest remainder.

    Ties go to the split furthest below its share of the ``totals`` dealt so far (other labels),
    so no split is favoured overall: ten GTZAN-mini genres of 10 clips give 50/25/25, not 50/30/20.
    """
    exact = [f * n for f in fr]
    counts = [int(np.floor(x)) for x in exact]
    dealt = sum(totals)
    order = sorted(range(3), key=lambda i: (-round(exact[i] - counts[i], 9), totals[i] - fr[i] * dealt, i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def stratified(dataset: Dataset, fractions=(0.5, 0.25, 0.25), seed: int = 0) -> Partition:
    """Random partition with the same label proportions in every split.

    Parameters
    ----------
    dataset : Dataset
    fractions : (float, float, float)
        Shares of train, valid and test; GTZAN's 0.5/0.25/0.25 gives 500/250/250.
    seed : int
        Seed of the shuffle; the same seed gives the same partition.
    """
    fr = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    splits = {s: [] for s in SPLITS}
    for group in _by_label(dataset.items, dataset.labels).values():
        order = [group[i] for i in rng.permutation(len(group))]
        n_train, n_valid, _ = _shares(len(order), fr, [len(splits[s]) for s in SPLITS])
        splits["train"] += order[:n_train]
        splits["valid"] += order[n_train : n_train + n_valid]
        splits["test"] += order[n_train + n_valid :]
    return Partition(dataset.root, dataset.labels, splits, "stratified", {"fractions": list(fr), "seed": seed})


def _read_list(path: str | os.PathLike) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such list file")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def from_lists(
    dataset: Dataset,
    train: str | os.PathLike,
    valid: str | os.PathLike,
    test: str | os.PathLike,
    allow_missing: bool = False,
) -> Partition:
    """Partition from three list files of relative paths, one per line (e.g. the published GTZAN lists).

    Paths match dataset items regardless of audio extension, so lists naming ``.wav`` files
    work against a GTZAN copy holding ``.au`` files.

    Parameters
    ----------
    allow_missing : bool
        Drop listed recordings that the dataset lacks (recorded in ``params['missing']``)
        instead of raising :class:`DatasetError`.
    """
    index = dataset.by_key()
    splits, missing = {}, []
    for name, lst in zip(SPLITS, (train, valid, test)):
        splits[name] = []
        for line in _read_list(lst):
            # A list line may carry a label after the path; the dataset's label is authoritative.
            rel = line.split("\t")[0].split()[0] if line.split() else line
            it = index.get(strip_audio_ext(rel))
            if it is None:
                missing.append(rel)
            else:
                splits[name].append(it)
    if missing and not allow_missing:
        raise DatasetError(
            f"{len(missing)} listed recordings are not in {dataset.root} (first: {missing[0]}); "
            "allow_missing (--allow-missing) drops them"
        )
    params = {"lists": [str(Path(p).resolve()) for p in (train, valid, test)], "missing": len(missing)}
    return Partition(dataset.root, dataset.labels, splits, "lists", params)


def artist_filtered(
    dataset: Dataset,
    artists: dict[str, str] | None = None,
    fractions=(0.6, 0.2, 0.2),
    seed: int = 0,
) -> Partition:
    """Random partition in which no artist appears in two splits.

    Whole artists are dealt, largest first, to the split (train, valid, test) where adding them
    brings the split sizes and each split's label counts closest (least squares) to
    ``fractions``, so label shares stay close to stratified while artists stay separated.

    Parameters
    ----------
    artists : dict, optional
        Extension-less relative path to artist (see :func:`musadv.datasets.read_artists`);
        default: the items' own ``artist`` fields.
    """
    fr = _check_fractions(fractions)
    by_artist = defaultdict(list)
    for it in dataset.items:
        artist = (artists or {}).get(it.key, it.artist)
        if not artist:
            raise DatasetError(f"{it.path}: no artist given; artist filtering needs one for every recording")
        by_artist[artist].append(it)
    rng = np.random.default_rng(seed)
    names = sorted(by_artist)
    names = [names[i] for i in rng.permutation(len(names))]
    names.sort(key=lambda a: -len(by_artist[a]))  # stable: ties keep the seeded order
    label_totals = Counter(it.label for it in dataset.items)
    target = {s: {lab: f * n for lab, n in label_totals.items()} for s, f in zip(SPLITS, fr)}
    have = {s: Counter() for s in SPLITS}
    splits = {s: [] for s in SPLITS}

    def cost_after(split: str, need: Counter) -> float:
        err = 0.0
        for s in SPLITS:
            add = need if s == split else Counter()
            size = sum(have[s].values()) + sum(add.values())
            err += (size - sum(target[s].values())) ** 2
            err += sum((have[s][lab] + add[lab] - target[s][lab]) ** 2 for lab in label_totals)
        return err

    for a in names:
        group = by_artist[a]
        need = Counter(it.label for it in group)
        best = min((s for s, f in zip(SPLITS, fr) if f > 0), key=lambda s: cost_after(s, need))
        splits[best] += sorted(group, key=lambda it: it.path)
        have[best].update(need)
    splits = {s: [Item(it.path, it.label, (artists or {}).get(it.key, it.artist)) for it in v] for s, v in splits.items()}
    return Partition(dataset.root, dataset.labels, splits, "artist", {"fractions": list(fr), "seed": seed})


def kfold(dataset: Dataset, k: int = 5, seed: int = 0) -> list[Partition]:
    """Stratified k-fold partitions: fold ``i`` tests on part ``i``, validates on part ``i+1``.

    Returns
    -------
    list of Partition
        ``k`` partitions whose test splits together cover every recording exactly once.
    """
    if k < 3:
        raise DatasetError("k-fold needs k >= 3 (one part each for test and validation)")
    rng = np.random.default_rng(seed)
    parts = [[] for _ in range(k)]
    offset = 0
    for group in _by_label(dataset.items, dataset.labels).values():
        for j, i in enumerate(rng.permutation(len(group))):
            parts[(offset + j) % k].append(group[i])
        offset += len(group)  # continue dealing where the last label stopped: parts stay even
    out = []
    for i in range(k):
        v = (i + 1) % k
        train = [it for j in range(k) if j not in (i, v) for it in parts[j]]
        splits = {"train": train, "valid": list(parts[v]), "test": list(parts[i])}
        out.append(Partition(dataset.root, dataset.labels, splits, "kfold", {"k": k, "fold": i, "seed": seed}))
    return out

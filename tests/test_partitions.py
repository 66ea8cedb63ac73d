"""musadv.partitions: stratified, published lists, artist-filtered and k-fold splits, saved as JSON."""

from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from musadv import datasets, partitions
from musadv.datasets import GTZAN_GENRES, Dataset, Item
from musadv.errors import DatasetError

from .conftest import GTZAN_LISTS, GTZAN_MINI


@pytest.fixture(scope="module")
def fake_gtzan(tmp_path_factory):
    """A GTZAN tree of 1000 tiny .au files (8 samples each) in the real layout."""
    root = tmp_path_factory.mktemp("gtzan") / "genres"
    for g in GTZAN_GENRES:
        (root / g).mkdir(parents=True)
        for i in range(100):
            sf.write(root / g / f"{g}.{i:05d}.au", np.zeros(8, np.float32), 22050, subtype="PCM_16")
    return datasets.gtzan(root)


def _keys(part, split):
    return {it.key for it in part.splits[split]}


def test_stratified_gtzan_is_500_250_250_with_equal_genres(fake_gtzan):
    part = partitions.stratified(fake_gtzan, (0.5, 0.25, 0.25), seed=3)
    assert part.counts() == {"train": 500, "valid": 250, "test": 250}
    for split, n in [("train", 50), ("valid", 25), ("test", 25)]:
        assert set(Counter(it.label for it in part.splits[split]).values()) == {n}
    assert not (_keys(part, "train") & _keys(part, "test"))
    again = partitions.stratified(fake_gtzan, (0.5, 0.25, 0.25), seed=3)
    assert again.to_dict() == part.to_dict()
    assert partitions.stratified(fake_gtzan, (0.5, 0.25, 0.25), seed=4).to_dict() != part.to_dict()


def test_stratified_keeps_totals_even_when_labels_do_not_divide(tmp_path):
    ds = Dataset(tmp_path, [Item(f"{g}/{i}.wav", g) for g in "abcdefghij" for i in range(10)])
    assert partitions.stratified(ds, (0.5, 0.25, 0.25)).counts() == {"train": 50, "valid": 25, "test": 25}


@pytest.mark.parametrize("kind,counts", [("stratified", (500, 250, 250)), ("filtered", (443, 197, 290))])
def test_published_wav_lists_work_against_au_files(fake_gtzan, kind, counts):
    if not GTZAN_LISTS.is_dir():
        pytest.skip("../shared/gtzan-partitions is not beside this checkout")
    lists = [GTZAN_LISTS / f"{s}_{kind}.txt" for s in ("train", "valid", "test")]
    part = partitions.from_lists(fake_gtzan, *lists)
    assert tuple(part.counts().values()) == counts
    assert all(it.path.endswith(".au") for it in part.items())
    first = lists[0].read_text().split()[0]
    assert part.splits["train"][0].key == first.rsplit(".", 1)[0]


def test_lists_naming_absent_files_fail_unless_allowed(tmp_path):
    if not GTZAN_MINI.is_dir():
        pytest.skip("../shared/gtzan-mini is not beside this checkout")
    ds = datasets.gtzan(GTZAN_MINI)
    lists = [GTZAN_LISTS / f"{s}_filtered.txt" for s in ("train", "valid", "test")]
    with pytest.raises(DatasetError, match="not in"):
        partitions.from_lists(ds, *lists)
    part = partitions.from_lists(ds, *lists, allow_missing=True)
    assert part.counts() == {"train": 40, "valid": 49, "test": 4}  # as ../shared/gtzan-mini/README.md says


def test_artist_filtered_never_shares_an_artist(tmp_path):
    rng = np.random.default_rng(0)
    items = []
    for g in "abcd":
        for a in range(10):
            for i in range(rng.integers(2, 8)):
                items.append(Item(f"{g}/{a}-{i}.wav", g, f"{g}-artist{a}"))
    ds = Dataset(tmp_path, items)
    part = partitions.artist_filtered(ds, fractions=(0.6, 0.2, 0.2), seed=1)
    artists = {s: {it.artist for it in part.splits[s]} for s in partitions.SPLITS}
    assert not (artists["train"] & artists["valid"]) and not (artists["train"] & artists["test"])
    assert not (artists["valid"] & artists["test"])
    assert sum(part.counts().values()) == len(items)
    shares = np.array(list(part.counts().values())) / len(items)
    assert np.all(np.abs(shares - [0.6, 0.2, 0.2]) < 0.08)
    for s in partitions.SPLITS:  # every label is represented in every split
        assert {it.label for it in part.splits[s]} == set("abcd")


def test_artist_filtered_from_a_csv_table(tmp_path):
    ds = Dataset(tmp_path, [Item(f"x/{i}.au", "x") for i in range(6)])
    (tmp_path / "artists.csv").write_text("path,artist\n" + "".join(f"x/{i}.wav,A{i // 2}\n" for i in range(6)))
    part = partitions.artist_filtered(ds, datasets.read_artists(tmp_path / "artists.csv"), (0.34, 0.33, 0.33))
    assert [len(part.splits[s]) for s in partitions.SPLITS] == [2, 2, 2]
    with pytest.raises(DatasetError, match="no artist"):
        partitions.artist_filtered(ds)


def test_kfold_tests_every_recording_exactly_once(fake_gtzan):
    folds = partitions.kfold(fake_gtzan, k=5, seed=0)
    tested = Counter(it.key for p in folds for it in p.splits["test"])
    assert len(tested) == 1000 and set(tested.values()) == {1}
    for p in folds:
        assert p.counts() == {"train": 600, "valid": 200, "test": 200}
        assert not (_keys(p, "train") & (_keys(p, "valid") | _keys(p, "test")))


def test_json_round_trip_names_every_file(tmp_path, fake_gtzan):
    part = partitions.stratified(fake_gtzan, seed=0)
    path = partitions.save(part, tmp_path / "p.json")
    back = partitions.load(path)
    assert back.to_dict() == part.to_dict()
    assert partitions.load(path, root=tmp_path).root == tmp_path
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DatasetError, match="not a musadv partition"):
        partitions.load(tmp_path / "bad.json")


def test_a_recording_cannot_be_in_two_splits(tmp_path):
    it = Item("a/1.wav", "a")
    with pytest.raises(DatasetError, match="both"):
        partitions.Partition(tmp_path, ["a"], {"train": [it], "test": [Item("a/1.au", "a")]}, "manual")

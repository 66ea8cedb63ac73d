"""musadv.datasets: labels from folders, list files or CSVs; the GTZAN preset accepts .au and .wav."""

import numpy as np
import pytest
import soundfile as sf

from musadv import datasets
from musadv.datasets import GTZAN_GENRES, Item
from musadv.errors import DatasetError


def _touch_audio(path, ext_subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(16, np.float32), 22050, subtype=ext_subtype)


def test_labels_come_from_parent_folders(tmp_path):
    for rel in ["rock/a.wav", "rock/live/b.flac", "jazz/c.ogg", "loose.wav"]:
        _touch_audio(tmp_path / rel, "VORBIS" if rel.endswith(".ogg") else "PCM_16")
    (tmp_path / "jazz" / "notes.txt").write_text("ignored")
    ds = datasets.from_folders(tmp_path)
    assert {(it.path, it.label) for it in ds.items} == {
        ("rock/a.wav", "rock"), ("rock/live/b.flac", "live"), ("jazz/c.ogg", "jazz")
    }
    assert ds.labels == ["jazz", "live", "rock"]
    assert [it.path for it in datasets.from_folders(tmp_path, labels=["rock"]).items] == ["rock/a.wav"]


def test_label_list_file(tmp_path):
    lst = tmp_path / "labels.txt"
    lst.write_text("# comment\nx/one.wav\tsalsa\nx/two words.wav\ttango\nthree.au bolero\n\n")
    ds = datasets.from_label_list(tmp_path, lst)
    assert [(it.path, it.label) for it in ds.items] == [
        ("x/one.wav", "salsa"), ("x/two words.wav", "tango"), ("three.au", "bolero")
    ]
    lst.write_text("only-a-path.wav\n")
    with pytest.raises(DatasetError, match="labels.txt:1"):
        datasets.from_label_list(tmp_path, lst)


def test_csv_with_and_without_header(tmp_path):
    (tmp_path / "a.csv").write_text("path,label,artist\nx/1.wav,forro,Luiz\nx/2.wav,samba,Cartola\n")
    ds = datasets.from_csv(tmp_path / "a.csv")
    assert ds.items == [Item("x/1.wav", "forro", "Luiz"), Item("x/2.wav", "samba", "Cartola")]
    assert ds.root == tmp_path
    (tmp_path / "b.csv").write_text("x/1.wav,forro\n")
    assert datasets.from_csv(tmp_path / "b.csv").items == [Item("x/1.wav", "forro")]
    (tmp_path / "c.csv").write_text("path,label\nx/1.wav,\n")
    with pytest.raises(DatasetError, match="row 1"):
        datasets.from_csv(tmp_path / "c.csv")


def test_gtzan_preset_prefers_au_and_knows_its_genres(tmp_path):
    root = tmp_path / "gtzan" / "genres"
    for g in GTZAN_GENRES:
        _touch_audio(root / g / f"{g}.00000.au")
        _touch_audio(root / g / f"{g}.00001.wav")
    _touch_audio(root / "blues" / "blues.00000.wav")  # a .wav copy beside the .au
    ds = datasets.gtzan(tmp_path / "gtzan")  # the parent of genres/ works too
    assert ds.labels == list(GTZAN_GENRES)
    assert len(ds) == 20
    assert "blues/blues.00000.au" in {it.path for it in ds.items}
    assert "blues/blues.00000.wav" not in {it.path for it in ds.items}
    assert datasets.open_dataset(root).labels == list(GTZAN_GENRES)


def test_gtzan_preset_rejects_other_folders(tmp_path):
    _touch_audio(tmp_path / "blues" / "blues.00000.au")
    with pytest.raises(DatasetError, match="missing genre folders"):
        datasets.gtzan(tmp_path)


def test_real_gtzan_mini_opens_with_the_preset():
    from .conftest import GTZAN_MINI

    if not GTZAN_MINI.is_dir():
        pytest.skip("../shared/gtzan-mini is not beside this checkout")
    ds = datasets.open_dataset(GTZAN_MINI.parent)
    assert len(ds) == 100 and ds.labels == list(GTZAN_GENRES)


def test_read_artists_keys_ignore_the_extension(tmp_path):
    (tmp_path / "art.csv").write_text("path,artist\nblues/blues.00001.wav,John Lee Hooker\n")
    assert datasets.read_artists(tmp_path / "art.csv") == {"blues/blues.00001": "John Lee Hooker"}


def test_missing_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        datasets.open_dataset(tmp_path / "absent")

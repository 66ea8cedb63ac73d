"""musadv.cache: decode once, cache magnitude frames, resume, notice changed sources, skip bad files."""

import os
import shutil

import numpy as np
import pytest

from musadv import audio, partitions
from musadv.cache import SpectraCache, analyse_file, prepare
from musadv.datasets import Dataset, Item
from musadv.errors import AudioError, DatasetError
from musadv.spectral import REFERENCE, STFTConfig


@pytest.fixture
def small(builtin_data, tmp_path):
    """A copy of part of the built-in data (so tests may modify files) and its partition."""
    root = tmp_path / "data"
    items = [it for it in builtin_data.items if it.path.endswith(("00000.wav", "00001.wav"))]
    for it in items:
        (root / it.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(builtin_data.root / it.path, root / it.path)
    ds = Dataset(root, items, builtin_data.labels)
    return partitions.stratified(ds, (0.5, 0.0, 0.5), seed=0)


def test_cached_frames_equal_a_direct_analysis(small, tmp_path):
    cache = prepare(small, tmp_path / "cache", jobs=1, progress=False)
    assert len(cache.entries) == 12 and cache.errors == []
    assert {e.split for e in cache.entries} == {"train", "test"}
    e = cache.split("test")[0]
    frames = cache.frames(e)
    assert isinstance(frames, np.memmap) and frames.dtype == np.float32 and frames.shape == (e.n_frames, 513)
    _, direct = analyse_file(cache.source(e))
    np.testing.assert_array_equal(frames, direct)
    assert cache.labels == small.labels and cache.config == STFTConfig()
    assert (tmp_path / "cache" / "partition.json").exists()


def test_two_workers_give_the_same_cache(small, tmp_path, monkeypatch):
    monkeypatch.setattr("musadv.cache.MIN_FILES_FOR_WORKERS", 2)
    one = prepare(small, tmp_path / "one", jobs=1, progress=False)
    two = prepare(small, tmp_path / "two", jobs=2, progress=False)
    assert one.entries == two.entries
    for e in one.entries:
        np.testing.assert_array_equal(one.frames(e), two.frames(e))


def test_rerun_skips_finished_files_and_redoes_changed_ones(small, tmp_path):
    out = tmp_path / "cache"
    cache = prepare(small, out, jobs=1, progress=False)
    arrays = {e.path: out / "spectra" / f"{e.key}.npy" for e in cache.entries}
    stamps = {p: f.stat().st_mtime_ns for p, f in arrays.items()}
    changed = cache.entries[0]
    old = np.array(cache.frames(changed))
    y, sr = audio.load(small.root / changed.path)
    audio.save(small.root / changed.path, 0.5 * y, sr)  # a new version of the source
    later = prepare(small, out, jobs=1, progress=False)
    redone = {p for p, f in arrays.items() if f.stat().st_mtime_ns != stamps[p]}
    assert redone == {changed.path}
    np.testing.assert_allclose(later.frames(later.entries[0]), 0.5 * old, atol=1e-3)


def test_interrupted_prepare_resumes(small, tmp_path):
    out = tmp_path / "cache"
    prepare(small, out, jobs=1, progress=False)
    # Simulate a kill: no index, and the last file's metadata never written.
    os.unlink(out / "index.json")
    metas = sorted((out / "spectra").glob("*.json"))
    os.unlink(metas[0])
    with pytest.raises(DatasetError, match="run musadv prepare"):
        SpectraCache(out)
    keep = {m: m.stat().st_mtime_ns for m in metas[1:]}
    cache = prepare(small, out, jobs=1, progress=False)
    assert len(cache.entries) == 12
    assert all(m.stat().st_mtime_ns == t for m, t in keep.items())


def test_bad_files_are_skipped_and_listed(small, tmp_path, monkeypatch):
    monkeypatch.setattr("musadv.cache.MIN_FILES_FOR_WORKERS", 2)  # failures must cross process boundaries
    root = small.root
    bad = {
        "bad/empty.wav": b"",
        "bad/corrupt.wav": b"RIFF" + os.urandom(200),
    }
    for rel, data in bad.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    audio.save(root / "bad/silent.wav", np.zeros(22050, np.float32), 22050)
    audio.save(root / "bad/short.wav", 0.1 * np.ones(500, np.float32), 22050)
    full = (root / small.splits["train"][0].path).read_bytes()
    (root / "bad/truncated.wav").write_bytes(full[: len(full) // 3])
    extra = [Item(rel, "bad") for rel in ["bad/empty.wav", "bad/corrupt.wav", "bad/silent.wav",
                                         "bad/short.wav", "bad/truncated.wav", "bad/missing.wav"]]
    part = partitions.Partition(root, small.labels + ["bad"], {"train": small.splits["train"] + extra,
                                                               "test": small.splits["test"]}, "manual")
    cache = prepare(part, tmp_path / "cache", jobs=2, progress=False)
    assert len(cache.entries) == 12
    reasons = {e["path"]: e["error"] for e in cache.errors}
    assert set(reasons) == {it.path for it in extra}
    for word, rel in [("empty", "empty"), ("cannot decode", "corrupt"), ("silent", "silent"),
                      ("too short", "short"), ("truncated", "truncated"), ("not found", "missing")]:
        assert word in reasons[f"bad/{rel}.wav"] and "\n" not in reasons[f"bad/{rel}.wav"]
    assert len((tmp_path / "cache" / "errors.csv").read_text().splitlines()) == 1 + 6


def test_duration_and_reference_framing_are_recorded_and_applied(small, tmp_path):
    cache = prepare(small, tmp_path / "c", config=REFERENCE, duration=1.0, offset=0.5, jobs=1, progress=False)
    e = cache.entries[0]
    assert e.n_samples == 22050 and e.n_frames == (22050 - 1024) // 512 + 1
    assert cache.duration == 1.0 and cache.offset == 0.5 and cache.config == REFERENCE
    # Changing settings invalidates the cached arrays.
    again = prepare(small, tmp_path / "c", duration=2.0, jobs=1, progress=False)
    assert again.entries[0].n_samples == 44100


def test_analyse_file_rejects_short_and_silent(tmp_path):
    audio.save(tmp_path / "s.wav", np.zeros(4000, np.float32), 22050)
    with pytest.raises(AudioError, match="s.wav: silent"):
        analyse_file(tmp_path / "s.wav")

"""Real GTZAN clips end to end at small scale: load, prepare, train, attack one clip, check the decoded file."""

import numpy as np
import pytest

from musadv import audio, datasets, partitions
from musadv.attack import AttackConfig, snr_db
from musadv.cache import prepare
from musadv.classify import classify_file
from musadv.runs import recordings_from_split, run_attacks
from musadv.training import TrainConfig, train

from .conftest import GTZAN_MINI

pytestmark = pytest.mark.skipif(not GTZAN_MINI.is_dir(), reason="../shared/gtzan-mini is not beside this checkout")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    full = datasets.gtzan(GTZAN_MINI)
    # Three clips per genre, the first 10 s of each: small enough for CI, real music all the same.
    by_label = {}
    for it in full.items:
        by_label.setdefault(it.label, []).append(it)
    items = [it for lab in full.labels for it in by_label[lab][:3]]
    ds = datasets.Dataset(full.root, items, full.labels)
    part = partitions.stratified(ds, (0.67, 0.0, 0.33), seed=0)
    base = tmp_path_factory.mktemp("real")
    cache = prepare(part, base / "cache", duration=10.0, progress=False)
    return base, cache


def test_real_clips_load_and_prepare(real):
    _, cache = real
    assert len(cache.entries) == 30 and not cache.errors
    assert all(e.n_samples == 220500 for e in cache.entries)
    y, sr = audio.load(cache.source(cache.entries[0]))
    assert sr == 22050 and abs(len(y) / sr - 30.0) < 0.1 and y.dtype == np.float32  # GTZAN clips are ~30 s


def test_train_and_attack_a_real_clip_to_a_chosen_label(real):
    base, cache = real
    model = train(cache, {"arch": "dnn", "hidden": 50}, base / "dnn", TrainConfig(max_epochs=15, batch_size=256, lr=0.02),
                  progress=False, log=lambda m: None)
    job = recordings_from_split(cache, "test")[:1]
    target = "disco" if job[0].true_label != "disco" else "metal"
    m = run_attacks(model, job, f"label:{target}", base / "run", AttackConfig(snr_db=10.0, step=0.1, threshold=0.6, max_iter=100),
                    progress=False)
    assert m["n_examples"] == 1
    wav = next((base / "run" / "examples").glob("*.wav"))
    decoded = classify_file(model, wav)
    assert decoded.label == target  # verified on the file written, not in memory
    original, _ = audio.load(next((base / "run" / "originals").glob("*.wav")))
    assert snr_db(original, audio.load(wav)[0]) >= 10.0 - 0.1

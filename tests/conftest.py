"""Shared fixtures: small synthesized audio, and the real GTZAN material in ../shared."""

import contextlib
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GTZAN_MINI = SHARED / "gtzan-mini" / "genres"
GTZAN_LISTS = SHARED / "gtzan-partitions"


def tone(freq=440.0, seconds=1.0, sr=22050, amp=0.5, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    y = amp * np.sin(2 * np.pi * freq * t)
    if channels > 1:
        y = np.stack([y * (c + 1) / channels for c in range(channels)], axis=1)
    return y.astype(np.float32)


def run_musadv(*args) -> subprocess.CompletedProcess:
    """``musadv ARGS...`` run in this process (its entry point, :func:`musadv.cli.main`), as a finished process.

    The exit status, stdout and stderr are what the command line gives; this spares each call the seconds of
    starting Python and importing PyTorch. Tests that need a process of their own (a working directory on the
    import path, a kill) start one.
    """
    from musadv.cli import main

    argv = list(map(str, args))
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(["musadv", *argv], code, out.getvalue(), err.getvalue())


def load_file(path: Path):
    """The module in the file ``path`` (a script, or a model file the docs ship), loaded as running it would.

    Its folder is on the import path while it loads, so a script that imports a sibling (``scripts/study_page.py``)
    finds it as it does when run from there.
    """
    folder = str(path.parent)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def fit_cross_entropy(network, forward, inputs, targets, epochs, batch=64, lr=3e-3, seed=0):
    """The researcher's own loop: Adam on the cross-entropy of ``forward(inputs)``, shuffled mini-batches.

    ``network`` (whose parameters are trained) is left in evaluation mode and returned.
    """
    import torch

    torch.manual_seed(seed)
    opt = torch.optim.Adam(network.parameters(), lr=lr)
    network.train()
    for _ in range(epochs):
        order = torch.randperm(len(targets))
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            loss = torch.nn.functional.cross_entropy(forward(inputs[idx]), targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return network.eval()


@pytest.fixture
def write_tone(tmp_path):
    """Write a sine tone to tmp_path/name in the format its extension implies."""

    def write(name, freq=440.0, seconds=1.0, sr=22050, amp=0.5, channels=1, subtype=None):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(freq, seconds, sr, amp, channels), sr, subtype=subtype)
        return path

    return write


@pytest.fixture(scope="session")
def builtin_data(tmp_path_factory):
    """A small built-in dataset: 4 clips of 4 s for each of the six styles."""
    from musadv import synth

    return synth.generate(tmp_path_factory.mktemp("builtin"), n_per_style=4, duration=4.0, clips_per_artist=2)


@pytest.fixture(scope="session")
def learn_cache(tmp_path_factory):
    """Spectra cache of a built-in dataset big enough to learn from: 6 styles x 12 clips of 6 s, 6/2/4 split."""
    from musadv import partitions, synth
    from musadv.cache import prepare

    base = tmp_path_factory.mktemp("learn")
    ds = synth.generate(base / "data", n_per_style=12, duration=6.0, seed=1)
    part = partitions.stratified(ds, (0.5, 1 / 6, 1 / 3), seed=0)
    return prepare(part, base / "cache", jobs=1, progress=False)


@pytest.fixture(scope="session")
def trained_dnn(learn_cache, tmp_path_factory):
    """A DNN-50 trained on learn_cache (saved in its own model directory)."""
    from musadv.training import TrainConfig, train

    out = tmp_path_factory.mktemp("dnn") / "model"
    arch = {"arch": "dnn", "hidden": 50, "layers": 3, "dropout": 0.0}
    return train(learn_cache, arch, out, TrainConfig(max_epochs=60, batch_size=256, lr=0.02), progress=False, log=lambda m: None)


@pytest.fixture(scope="session")
def forest(trained_dnn, learn_cache, tmp_path_factory):
    """The directory of a 100-tree forest on trained_dnn's activations (texture windows of 2 s, hop 1 s)."""
    from musadv.systems import train_forest

    system = train_forest(trained_dnn, learn_cache, "all", n_trees=100, window=86, hop=43, progress=False)
    return system.save(tmp_path_factory.mktemp("forest") / "forest")


@pytest.fixture(scope="session")
def baseline(learn_cache, tmp_path_factory):
    """The directory of an MFCC baseline fitted on learn_cache (texture windows of 2 s, hop 1 s)."""
    from musadv.systems import train_baseline

    system = train_baseline(learn_cache, window=86, hop=43, progress=False)
    return system.save(tmp_path_factory.mktemp("baseline") / "baseline")

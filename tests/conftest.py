"""Shared fixtures: small synthesized audio, and the real GTZAN material in ../shared."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GTZAN_MINI = SHARED / "gtzan-mini" / "genres"
GTZAN_LISTS = SHARED / "gtzan-partitions"


def tone(freq=440.0, seconds=1.0, sr=22050, amp=0.5, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    y = amp * np.sin(2 * np.pi * freq * t)
    if channels > 1:
        y = np.stack([y * (c + 1) / channels for c in range(channels)], axis=1)
    return y.astype(np.float32)


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

"""The built-in dataset: synthesized music in six clearly different styles, made by code.

No downloads: :func:`generate` writes real WAV files in GTZAN's layout
(``ROOT/<style>/<style>.00000.wav``) plus ``artists.csv``, deterministically from a seed, so
every command can be tried without a dataset. The styles differ the way genres do, in rhythm,
tempo, instrumentation and harmony; clips of one synthetic "artist" share instrument settings,
so the artist-filtered partition can be tried too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from . import audio
from .datasets import Dataset, Item
from .io import write_csv_atomic, write_json_atomic

__all__ = ["STYLES", "generate", "render"]

STYLES = ("ambient", "chiptune", "folk", "jazz", "rock", "techno")

MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])


def _hz(midi):
    return 440.0 * 2.0 ** ((np.asarray(midi, float) - 69) / 12)


def _decay(n, sr, seconds):
    return np.exp(-np.arange(n) / (seconds * sr))


def _adsr(n, sr, attack, release):
    env = np.ones(n)
    a, r = min(n, int(attack * sr)), min(n, int(release * sr))
    if a:
        env[:a] = np.linspace(0, 1, a)
    if r:
        env[n - r :] *= np.linspace(1, 0, r)
    return env


def _osc(f, n, sr, kind, phase=0.0):
    ph = (phase + np.arange(n) * f / sr) % 1.0
    if kind == "sine":
        return np.sin(2 * np.pi * ph)
    if kind == "saw":
        return 2 * ph - 1
    if kind == "square":
        return np.where(ph < 0.5, 1.0, -1.0)
    if kind == "pulse":
        return np.where(ph < 0.25, 1.0, -1.0)
    if kind == "triangle":
        return 4 * np.abs(ph - 0.5) - 1
    raise ValueError(kind)


def _pluck(f, n, sr, brightness=1.0, length=1.0):
    """Plucked string: harmonics decaying faster the higher they are."""
    t = np.arange(n) / sr
    out = np.zeros(n)
    for k in range(1, 13):
        if k * f > sr / 2.2:
            break
        out += np.sin(2 * np.pi * k * f * t) / k**1.2 * np.exp(-t * k * 2.5 / (length * brightness))
    return out


def _lowpass(x, cutoff, sr):
    a = np.exp(-2 * np.pi * cutoff / sr)
    return lfilter([1 - a], [1, -a], x)


def _kick(sr, rng):
    n = int(0.35 * sr)
    t = np.arange(n) / sr
    f = 45 + 90 * np.exp(-t * 30)
    return np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t * 9)


def _snare(sr, rng, soft=False):
    n = int(0.2 * sr)
    t = np.arange(n) / sr
    noise = np.diff(rng.standard_normal(n + 1)) * 0.5
    body = np.sin(2 * np.pi * 185 * t) * np.exp(-t * 30)
    s = (noise * np.exp(-t * (18 if soft else 25)) + 0.6 * body)
    return s * (0.35 if soft else 1.0)


def _hat(sr, rng, open_=False):
    n = int((0.25 if open_ else 0.05) * sr)
    noise = np.diff(np.diff(rng.standard_normal(n + 2)))
    return noise * _decay(n, sr, 0.08 if open_ else 0.012) * 0.25


def _ride(sr, rng):
    n = int(0.5 * sr)
    t = np.arange(n) / sr
    partials = sum(np.sign(np.sin(2 * np.pi * f * t)) for f in (3150, 4210, 5337, 6711))
    return (0.05 * partials + 0.1 * np.diff(rng.standard_normal(n + 1))) * np.exp(-t * 5) * 0.5


def _put(buf, sig, start):
    start = int(start)
    if start >= len(buf):
        return
    end = min(len(buf), start + len(sig))
    buf[start:end] += sig[: end - start]


def _progression(rng, minor):
    """Four chords as scale degrees (0-based), e.g. I-V-vi-IV."""
    choices = [[0, 4, 5, 3], [0, 5, 3, 4], [0, 3, 4, 4], [5, 3, 0, 4], [0, 0, 3, 4], [1, 4, 0, 0]]
    return choices[rng.integers(len(choices))] if not minor else [[0, 5, 2, 6], [0, 3, 4, 0], [0, 6, 5, 4]][rng.integers(3)]


def _chord(root_midi, degree, scale, size=3):
    idx = degree + np.arange(size) * 2
    return root_midi + scale[idx % 7] + 12 * (idx // 7)


def _ambient(rng, art, sr, n):
    y = np.zeros(n)
    root = rng.integers(45, 57)
    scale = MINOR if rng.random() < 0.5 else MAJOR
    prog = _progression(rng, scale is MINOR)
    chord_len = rng.uniform(2.5, 4.5)
    t0, i = 0.0, 0
    while t0 * sr < n:
        m = int((chord_len + 1.5) * sr)
        env = _adsr(m, sr, art["attack"], 1.5)
        for note in _chord(root, prog[i % 4], scale, 4):
            for det in (-art["detune"], art["detune"]):
                y_note = _osc(_hz(note) * (1 + det), m, sr, "sine", rng.random())
                _put(y, 0.12 * env * y_note, t0 * sr)
        _put(y, 0.03 * env * _osc(_hz(root + 24 + scale[rng.integers(7)]), m, sr, "triangle"), t0 * sr)
        t0 += chord_len
        i += 1
    return _lowpass(y, art["cutoff"], sr)


def _techno(rng, art, sr, n):
    y = np.zeros(n)
    beat = 60.0 / rng.uniform(122, 136) * sr
    root = rng.integers(33, 41)
    kick, clap = _kick(sr, rng), _snare(sr, rng)
    bass_notes = root + np.array([0, 0, 12, 0, 7, 0, 10, 0])[rng.permutation(8)]
    for b in range(int(n / beat) + 1):
        _put(y, 0.9 * kick, b * beat)
        _put(y, _hat(sr, rng, open_=True), (b + 0.5) * beat)
        if b % 2 == 1:
            _put(y, 0.4 * clap, b * beat)
        for s in range(4):
            m = int(beat / 4)
            note = _hz(bass_notes[(4 * b + s) % 8])
            _put(y, 0.25 * _osc(note, m, sr, "saw") * _decay(m, sr, 0.05), (b + s / 4) * beat)
    return _lowpass(y, art["cutoff"] * 2, sr)


def _rock(rng, art, sr, n):
    y = np.zeros(n)
    beat = 60.0 / rng.uniform(100, 140) * sr
    root = rng.integers(40, 48)
    scale = MINOR if rng.random() < 0.6 else MAJOR
    prog = _progression(rng, scale is MINOR)
    kick, snare = _kick(sr, rng), _snare(sr, rng)
    for b in range(int(n / beat) + 1):
        if b % 2 == 0:
            _put(y, 0.8 * kick, b * beat)
        elif rng.random() < 0.3:
            _put(y, 0.6 * kick, (b + 0.5) * beat)  # a syncopated extra kick
        if b % 2 == 1:
            _put(y, 0.7 * snare, b * beat)
        chord_root = root + scale[prog[(b // 4) % 4] % 7]
        for e in range(2):
            _put(y, _hat(sr, rng), (b + e / 2) * beat)
            m = int(beat / 2)
            tone = sum(_osc(_hz(chord_root + iv), m, sr, "saw") for iv in (0, 7, 12))
            _put(y, 0.3 * np.tanh(art["drive"] * tone) * _adsr(m, sr, 0.005, 0.02), (b + e / 2) * beat)
    return _lowpass(y, art["cutoff"] * 1.5, sr)


def _folk(rng, art, sr, n):
    y = np.zeros(n)
    beat = 60.0 / rng.uniform(70, 110) * sr
    root = rng.integers(48, 56)
    scale = MAJOR if rng.random() < 0.7 else MINOR
    prog = _progression(rng, scale is MINOR)
    pattern = [0, 2, 1, 2, 3, 2, 1, 2] if rng.random() < 0.5 else [0, 1, 2, 3, 2, 1, 2, 1]
    for e in range(int(2 * n / beat) + 1):
        bar = e // 8
        notes = _chord(root, prog[bar % 4], scale, 4)
        m = int(1.2 * sr)
        _put(y, 0.35 * _pluck(_hz(notes[pattern[e % 8]]), m, sr, art["brightness"]), e * beat / 2)
        if e % 8 == 0:
            _put(y, 0.4 * _pluck(_hz(notes[0] - 12), int(2 * sr), sr, 0.6, 2.0), e * beat / 2)
    return y


def _jazz(rng, art, sr, n):
    y = np.zeros(n)
    beat = 60.0 / rng.uniform(120, 190) * sr
    swing = rng.uniform(0.62, 0.7)
    root = rng.integers(41, 48)
    ride = _ride(sr, rng)
    prog = [1, 4, 0, 0] if rng.random() < 0.5 else [0, 5, 1, 4]
    bass = root - 12
    for b in range(int(n / beat) + 1):
        _put(y, 0.5 * ride, b * beat)
        if b % 2 == 1:
            _put(y, 0.35 * ride, (b + swing) * beat)
            _put(y, _snare(sr, rng, soft=True), b * beat)
        chord = _chord(root, prog[(b // 4) % 4], MAJOR, 4)  # seventh chords
        # Walking bass: a chord tone or a chromatic approach on every beat.
        bass = chord[rng.integers(3)] - 12 if rng.random() < 0.7 else bass + rng.choice([-1, 1, 2])
        _put(y, 0.5 * _pluck(_hz(bass), int(beat), sr, 0.3, 0.8), b * beat)
        if rng.random() < 0.35:
            m = int(0.6 * sr)
            t = np.arange(m) / sr
            comp = sum(np.sin(2 * np.pi * _hz(nt) * t) + 0.3 * np.sin(4 * np.pi * _hz(nt) * t) for nt in chord)
            _put(y, 0.08 * comp * np.exp(-t * 4), (b + swing * rng.integers(2)) * beat)
    return y


def _chiptune(rng, art, sr, n):
    y = np.zeros(n)
    beat = 60.0 / rng.uniform(140, 176) * sr
    root = rng.integers(57, 65)
    penta = np.array([0, 2, 4, 7, 9, 12, 14, 16])
    prog = _progression(rng, False)
    deg = rng.integers(len(penta))
    for s in range(int(4 * n / beat) + 1):
        pos = s * beat / 4
        bar = s // 16
        if s % 2 == 0:
            deg = int(np.clip(deg + rng.integers(-2, 3), 0, len(penta) - 1))
            m = int(beat / 2)
            _put(y, 0.15 * _osc(_hz(root + penta[deg]), m, sr, art["wave"]) * _adsr(m, sr, 0.002, 0.01), pos)
        chord = _chord(root - 12, prog[bar % 4], MAJOR, 3)
        m = int(beat / 4)
        _put(y, 0.08 * _osc(_hz(chord[s % 3]), m, sr, "pulse") * _adsr(m, sr, 0.001, 0.005), pos)
        if s % 4 == 0:
            _put(y, 0.3 * _osc(_hz(chord[0] - 12), int(beat), sr, "triangle") * _adsr(int(beat), sr, 0.002, 0.02), pos)
            n_noise = int(0.06 * sr)
            _put(y, 0.15 * np.sign(rng.standard_normal(n_noise)) * _decay(n_noise, sr, 0.015 if s % 8 else 0.04), pos)
    return y


_RENDER = {"ambient": _ambient, "chiptune": _chiptune, "folk": _folk, "jazz": _jazz, "rock": _rock, "techno": _techno}


def _artist_settings(rng: np.random.Generator) -> dict:
    return {
        "attack": rng.uniform(0.4, 1.2),
        "detune": rng.uniform(0.002, 0.008),
        "cutoff": rng.uniform(1500, 4000),
        "drive": rng.uniform(2, 6),
        "brightness": rng.uniform(0.6, 1.5),
        "wave": ["square", "pulse"][rng.integers(2)],
    }


def render(style: str, seed: int, duration: float = 10.0, sr: int = 22050, artist_seed: int | None = None) -> np.ndarray:
    """Synthesize one clip.

    Parameters
    ----------
    style : str
        One of :data:`STYLES`.
    seed : int
        Seed of the clip's content (key, tempo, notes, noise).
    duration : float
        Length in seconds.
    sr : int
        Sampling rate in Hz.
    artist_seed : int, optional
        Seed of the instrument settings (clips of one artist share it); default ``seed``.

    Returns
    -------
    np.ndarray
        float32 signal with peak between 0.5 and 0.9.
    """
    if style not in _RENDER:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    rng = np.random.default_rng(seed)
    art = _artist_settings(np.random.default_rng(seed if artist_seed is None else artist_seed))
    n = int(round(duration * sr))
    y = _RENDER[style](rng, art, sr, n)
    y = y + 10 ** (-60 / 20) * rng.standard_normal(n)  # a recording's noise floor
    return (y / (np.max(np.abs(y)) + 1e-12) * rng.uniform(0.5, 0.9)).astype(np.float32)


def generate(
    out_dir: str | os.PathLike,
    n_per_style: int = 20,
    duration: float = 10.0,
    sr: int = 22050,
    seed: int = 0,
    styles: tuple[str, ...] = STYLES,
    clips_per_artist: int = 5,
) -> Dataset:
    """Write the built-in dataset: ``n_per_style`` WAV clips per style in GTZAN's layout.

    A second call with the same arguments finds the files in place and writes nothing.

    Parameters
    ----------
    out_dir : path
        Dataset root; ``<style>/<style>.00000.wav`` and ``artists.csv`` are written in it.
    n_per_style : int
        Clips per style.
    duration : float
        Clip length in seconds.
    sr : int
        Sampling rate in Hz.
    seed : int
        Master seed; the whole dataset is a function of it and the other arguments.
    styles : tuple of str
        Which of :data:`STYLES` to make.
    clips_per_artist : int
        Consecutive clips that share one synthetic artist (instrument settings).

    Returns
    -------
    Dataset
    """
    out_dir = Path(out_dir)
    params = {"n_per_style": n_per_style, "duration": duration, "sr": sr, "seed": seed,
              "styles": list(styles), "clips_per_artist": clips_per_artist, "version": 1}
    items = []
    for style in styles:
        for i in range(n_per_style):
            rel = f"{style}/{style}.{i:05d}.wav"
            artist = f"{style}-artist{i // clips_per_artist:02d}"
            items.append(Item(rel, style, artist))
    manifest = out_dir / "musadv-synth.json"
    try:
        complete = json.loads(manifest.read_text()) == params and all((out_dir / it.path).exists() for it in items)
    except (OSError, json.JSONDecodeError):
        complete = False
    if not complete:
        for style in styles:
            for i in range(n_per_style):
                clip_seed = seed * 1_000_003 + STYLES.index(style) * 10_007 + i
                artist_seed = seed * 1_000_003 + STYLES.index(style) * 10_007 + 5000 + i // clips_per_artist
                y = render(style, clip_seed, duration, sr, artist_seed)
                audio.save(out_dir / f"{style}/{style}.{i:05d}.wav", y, sr)
        write_csv_atomic(out_dir / "artists.csv", [vars(it) for it in items], ["path", "label", "artist"])
        write_json_atomic(manifest, params)
    return Dataset(out_dir, items, list(styles))

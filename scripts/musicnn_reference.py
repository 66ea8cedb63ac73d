"""Development script: reference tag likelihoods from the original musicnn package (TensorFlow), once.

musadv rebuilds musicnn's networks in PyTorch (:mod:`musadv.musicnn`); ``tests/test_musicnn.py``
checks them against what the authors' own code says. This script makes that reference:
it writes a synthesized clip (``tests/data/musicnn-synth.wav``, made here by NumPy) and runs
``musicnn.extractor.extractor`` on it and on one GTZAN clip from ``../shared/gtzan-mini``,
for every model the wheel ships, writing the per-patch tag likelihoods (the taggram) to
``tests/data/musicnn_reference.json``.

It needs an environment of its own, never musadv's (TensorFlow is not a musadv dependency)::

    python -m venv /tmp/tfref
    /tmp/tfref/bin/pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0 librosa soundfile
    /tmp/tfref/bin/pip install --no-deps musicnn==0.1.0
    TF_USE_LEGACY_KERAS=1 /tmp/tfref/bin/python scripts/musicnn_reference.py

One change to the package's code, stated: its ``batch_data`` casts the mel spectrogram to
float16 before ``log10(10000 x + 1)``, and under NumPy 2 ``10000 x`` then overflows float16
(x > 6.55) and every tag comes out NaN. The patch below is the package's function with that
cast left out (the log is taken in float32); everything else (librosa's loading at 16 kHz,
the mel spectrogram, the 187-frame patches, the TensorFlow graph and the checkpoint restore)
is the package's own.
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from musicnn import configuration as config  # noqa: E402
from musicnn import extractor as ex  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
GTZAN_CLIP = ROOT.parent / "shared" / "gtzan-mini" / "genres" / "metal" / "metal.00000.wav"
MODELS = ("MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg")
SYNTH_SR, SYNTH_SECONDS = 16000, 7.0


def batch_data(audio_file, n_frames, overlap):
    """musicnn.extractor.batch_data without the float16 cast (see the module notes)."""
    audio, sr = librosa.load(audio_file, sr=config.SR)
    audio_rep = librosa.feature.melspectrogram(y=audio, sr=sr, hop_length=config.FFT_HOP, n_fft=config.FFT_SIZE,
                                               n_mels=config.N_MELS).T
    audio_rep = np.log10(10000 * audio_rep.astype(np.float32) + 1)
    last_frame = audio_rep.shape[0] - n_frames + 1
    batch = np.stack([audio_rep[t : t + n_frames] for t in range(0, last_frame, overlap)])
    return batch, audio_rep


def synth_clip(path: Path) -> None:
    """A few seconds of music-like sound: a chord that changes, a kick-like pulse and some noise (16-bit)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(SYNTH_SECONDS * SYNTH_SR)) / SYNTH_SR
    y = np.zeros_like(t)
    for i, root in enumerate([220.0, 261.63, 196.0, 246.94]):
        part = (t >= i * SYNTH_SECONDS / 4) & (t < (i + 1) * SYNTH_SECONDS / 4)
        for ratio, amp in [(1, 0.25), (1.25, 0.18), (1.5, 0.15), (2, 0.08)]:
            y[part] += amp * np.sin(2 * np.pi * root * ratio * t[part])
    beat = np.exp(-30 * (t % 0.5)) * np.sin(2 * np.pi * 60 * t)
    y = 0.6 * y + 0.5 * beat + 0.02 * rng.standard_normal(len(t))
    y = 0.8 * y / np.abs(y).max()
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, SYNTH_SR, subtype="PCM_16")


def main() -> int:
    if not GTZAN_CLIP.exists():
        print(f"{GTZAN_CLIP}: not found (the reference needs ../shared/gtzan-mini beside the checkout)", file=sys.stderr)
        return 1
    ex.batch_data = batch_data
    synth = DATA / "musicnn-synth.wav"
    synth_clip(synth)
    clips = {"synth": synth, "gtzan:metal/metal.00000.wav": GTZAN_CLIP}
    out = {"note": "taggrams of musicnn 0.1.0's extractor (TensorFlow, float16 cast patched out); "
                   "made by scripts/musicnn_reference.py", "clips": {}}
    for name, path in clips.items():
        out["clips"][name] = {}
        for model in MODELS:
            taggram, tags = ex.extractor(str(path), model=model, input_length=3, input_overlap=False,
                                         extract_features=False)
            if not np.isfinite(taggram).all():
                print(f"{model} on {name}: non-finite tag likelihoods", file=sys.stderr)
                return 1
            out["clips"][name][model] = {"tags": list(tags), "taggram": np.round(taggram.astype(float), 7).tolist()}
            print(f"{name} {model}: {taggram.shape[0]} patches, top tag {tags[int(taggram.mean(0).argmax())]}")
    (DATA / "musicnn_reference.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

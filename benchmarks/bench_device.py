"""Benchmark of devices: seconds per attack iteration on 30 s, on the CPU and on each GPU there is.

For the DNN-500, the paper's CDNN, musicnn's MSD_musicnn (when its weights are installed) and a
small HuBERT (when transformers is installed: 4 layers of 256, the base model's convolutional
encoder, built from a config with random weights: a GPU's speed does not depend on what the
weights learned), it times one iteration of the adversary on a 30 s clip (a real GTZAN clip from
../shared/gtzan-mini, else synthesized music): an attack of N iterations that never stops early,
less the same attack with none, over N. On each device the model, the STFT and the loop are
there (``model.to(device)``); the table gives each device's time and its ratio to the CPU's,
measured in this process one after another, at batch 1 and at batch 16 (``attack --batch``: 16
examples whose iterations share one network pass), with the time per example.

    python benchmarks/bench_device.py [--iters 10] [--reps 3] [--devices cpu,cuda] [--batches 1,16] [--models CDNN]
"""

import argparse
import importlib.util
import time
from pathlib import Path

import torch

from musadv import audio, datasets, synth
from musadv.attack import AttackConfig, attack_many
from musadv.devices import resolve_device
from musadv.models import build
from musadv.spectral import STFTConfig, magnitude

GTZAN_MINI = Path(__file__).resolve().parents[1].parent / "shared" / "gtzan-mini"
CLIP = GTZAN_MINI / "genres" / "blues" / "blues.00000.wav"
LABELS = list(datasets.GTZAN_GENRES)


def clip_at(sr: int):
    if CLIP.exists():
        return audio.load(CLIP, sr=sr)[0]
    return audio.conform(synth.render("rock", 0, duration=30.0)[None], 22050, sr)


def paper_model(arch: dict, y):
    torch.manual_seed(0)
    model = build(arch, LABELS, STFTConfig())
    mags = magnitude(y)
    model.standardize.fit(mags.mean(0), mags.std(0))
    return model.eval()


def small_hubert():
    from transformers import HubertConfig, HubertForSequenceClassification

    from musadv.huggingface import HuggingFaceClassifier

    torch.manual_seed(0)
    config = HubertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                          num_labels=len(LABELS), classifier_proj_size=256)
    return HuggingFaceClassifier(HubertForSequenceClassification(config).eval(), LABELS, 16000,
                                 chunk_samples=160000, min_samples=400).eval()


def iteration_seconds(model, y, target: str, batch: int, iters: int, reps: int, device: torch.device) -> float:
    """Seconds of one iteration of a batch of ``batch`` copies of the clip (``attack_many``):
    (attack of ``iters`` iterations - attack of none) / ``iters``, best of ``reps``."""
    never = AttackConfig(snr_db=15.0, threshold=1.0, max_iter=iters)
    none = AttackConfig(snr_db=15.0, threshold=1.0, max_iter=0)
    signals, targets = [y] * batch, [target] * batch

    def best(config):
        times = []
        for _ in range(reps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            attack_many(model, signals, targets, config)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t)
        return min(times)

    attack_many(model, signals, targets, AttackConfig(snr_db=15.0, threshold=1.0, max_iter=1))  # warm-up
    return (best(never) - best(none)) / iters


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=10, help="iterations per timed attack")
    ap.add_argument("--reps", type=int, default=3, help="rounds (best time)")
    ap.add_argument("--devices", default=None, help="comma-separated (default: cpu and every CUDA GPU or MPS there is)")
    ap.add_argument("--batches", default="1,16", help="batch sizes (attack --batch), comma-separated")
    ap.add_argument("--models", default=None, help="only these (DNN-500, CDNN, MSD_musicnn, HuBERT-small), comma-separated")
    args = ap.parse_args()
    names = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
        ["mps"] if torch.backends.mps.is_available() else [])
    devices = [resolve_device(n) for n in names]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; devices: "
          + ", ".join(str(d) + (f" ({torch.cuda.get_device_name(d)})" if d.type == "cuda" else "") for d in devices))
    print(f"clip: {CLIP.name if CLIP.exists() else 'synthesized rock'}, 30 s; {args.iters} iterations, best of {args.reps}")
    y22 = clip_at(22050)
    models = [("DNN-500", lambda: paper_model({"arch": "dnn", "hidden": 500}, y22), y22),
              ("CDNN", lambda: paper_model({"arch": "cdnn"}, y22), y22)]
    if importlib.util.find_spec("musicnn") is not None:
        from musadv.musicnn import load_musicnn

        models.append(("MSD_musicnn", lambda: load_musicnn("MSD_musicnn"), clip_at(16000)))
    if importlib.util.find_spec("transformers") is not None:
        models.append(("HuBERT-small", small_hubert, clip_at(16000)))
    batches = [int(b) for b in args.batches.split(",")]
    if args.models:
        models = [m for m in models if m[0] in args.models.split(",")]
    print(f"{'model':12s} {'batch':>5s} " + " ".join(f"{str(d):>10s}" for d in devices)
          + "".join(f" {'cpu/' + str(d):>10s}" for d in devices[1:])
          + " " + " ".join(f"{str(d) + '/example':>14s}" for d in devices) + "   (s per iteration of the batch)")
    for name, make, y in models:
        model = make()
        target = model.labels[3]
        for batch in batches:
            # A batch of 16 on the CPU takes 16 times as long: fewer iterations give the same mean.
            iters = args.iters if batch == 1 else max(2, args.iters // 4)
            row = []
            for device in devices:
                model.to(device)
                row.append(iteration_seconds(model, y, target, batch, iters, args.reps, device))
            model.to("cpu")
            print(f"{name:12s} {batch:5d} " + " ".join(f"{s:10.3f}" for s in row)
                  + "".join(f" {row[0] / s:9.1f}x" for s in row[1:])
                  + " " + " ".join(f"{s / batch:14.3f}" for s in row), flush=True)


if __name__ == "__main__":
    main()

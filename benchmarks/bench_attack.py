"""Benchmark of the adversary: is an iteration as fast as its unavoidable parts allow?

On a real 30 s GTZAN clip (../shared/gtzan-mini; synthesized music if absent) and for DNN-50,
DNN-500 and the paper's CDNN, it times one attack iteration and, alone in the same process, the
parts no implementation can skip: the network's forward pass with the gradient of the loss with
respect to its input, one inverse STFT and one STFT (to magnitudes). The ratio iteration / sum of parts should
be <= 1.3. Then (unless --no-extrapolate) it trains a DNN-500 on gtzan-mini, attacks a sample of
its test split with the Table II settings and extrapolates to a GTZAN test split of 250 clips.

    python benchmarks/bench_attack.py [--iters 20] [--sample 10]
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from musadv import audio, datasets, partitions, synth
from musadv.attack import AttackConfig, attack
from musadv.cache import prepare
from musadv.models import build
from musadv.runs import jobs_from_split, run_attacks
from musadv.spectral import istft, magnitude, stft
from musadv.training import TrainConfig, train

GTZAN_MINI = Path(__file__).resolve().parents[1].parent / "shared" / "gtzan-mini"
LABELS = list(datasets.GTZAN_GENRES)


def best_time(fn, reps):
    """Best of ``reps`` calls (seconds): the least disturbed measurement of a fixed amount of work."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def parts(model, x, reps):
    spec = stft(x, model.stft)
    mags = spec.abs()
    target = torch.full((model.elements(mags).shape[0],), 3)

    def fwd_grad():
        m = mags.detach().requires_grad_(True)
        loss = F.cross_entropy(model(model.elements(m)), target, reduction="sum")
        torch.autograd.grad(loss, m)

    return {
        "forward+input grad": best_time(fwd_grad, reps),
        "istft": best_time(lambda: istft(spec, model.stft, length=len(x)), reps),
        "stft": best_time(lambda: stft(x, model.stft).abs(), reps),  # the magnitudes are what is analysed
    }


def iteration_time(model, y, iters, reps):
    never = AttackConfig(snr_db=15.0, threshold=1.0, max_iter=iters)
    none = AttackConfig(snr_db=15.0, threshold=1.0, max_iter=0)
    full = best_time(lambda: attack(model, y, LABELS[3], never), reps)
    setup = best_time(lambda: attack(model, y, LABELS[3], none), reps)
    return (full - setup) / iters


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=20, help="iterations per timed attack (CDNN: a quarter)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each timing (best kept)")
    ap.add_argument("--sample", type=int, default=10, help="test clips attacked for the extrapolation")
    ap.add_argument("--no-extrapolate", action="store_true")
    args = ap.parse_args()
    clip = GTZAN_MINI / "genres" / "blues" / "blues.00000.wav"
    if clip.exists():
        y, _ = audio.load(clip)
        print(f"clip: {clip.name}, {len(y) / 22050:.1f} s (real GTZAN)")
    else:
        y = synth.render("rock", 0, duration=30.0)
        print("clip: 30 s of synthesized rock (../shared/gtzan-mini not found)")
    x = torch.from_numpy(y)
    mags = magnitude(y)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':8s} {'iteration':>10s} {'fwd+grad':>9s} {'istft':>7s} {'stft':>7s} {'sum':>7s} {'ratio':>6s}   (ms)")
    for name, arch, iters in [("DNN-50", {"arch": "dnn", "hidden": 50}, args.iters),
                              ("DNN-500", {"arch": "dnn", "hidden": 500}, args.iters),
                              ("CDNN", {"arch": "cdnn"}, max(2, args.iters // 4))]:
        torch.manual_seed(0)
        model = build(arch, LABELS).eval()
        model.standardize.fit(mags.mean(0), mags.std(0))
        for p in model.parameters():
            p.requires_grad_(False)
        it = iteration_time(model, y, iters, args.reps)
        p = parts(model, x, args.reps * 3)
        total = sum(p.values())
        print(f"{name:8s} {it * 1e3:10.1f} {p['forward+input grad'] * 1e3:9.1f} {p['istft'] * 1e3:7.1f} "
              f"{p['stft'] * 1e3:7.1f} {total * 1e3:7.1f} {it / total:6.2f}")
    if args.no_extrapolate or not GTZAN_MINI.exists():
        return
    work = Path(tempfile.mkdtemp(prefix="musadv-bench-"))
    try:
        part = partitions.stratified(datasets.gtzan(GTZAN_MINI), (0.5, 0.25, 0.25), seed=0)
        cache = prepare(part, work / "cache", progress=False)
        t = time.perf_counter()
        model = train(cache, {"arch": "dnn", "hidden": 500}, work / "dnn500", TrainConfig(max_epochs=30, batch_size=1200),
                      progress=False, log=lambda m: None)
        print(f"\nDNN-500 trained on gtzan-mini in {time.perf_counter() - t:.0f} s "
              f"(validation error {model.info['training']['best_valid_error']:.3f})")
        t = time.perf_counter()
        m = run_attacks(model, jobs_from_split(cache, "test", args.sample), "random", work / "run",
                        AttackConfig(), progress=False)
        dt = time.perf_counter() - t
        print(f"attacked {m['n_examples']} test clips of 30 s (Table II: 15 dB, mu 0.1, threshold 0.9, 100 iter.): "
              f"{dt:.1f} s, {m['mean_iterations']:.1f} iterations and {m['mean_seconds']:.2f} s per example, "
              f"success {m['success_rate']:.0%}")
        print(f"extrapolated to a GTZAN test split of 250 clips: {dt / m['n_examples'] * 250 / 60:.1f} min")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

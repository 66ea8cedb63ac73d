"""Benchmark of training throughput: is an epoch bounded by arithmetic, not by Python or data loading?

For DNN-50, DNN-500 and the CDNN it trains one epoch on a spectra cache of the built-in data
(the real pipeline: batches gathered from the cache's frames, SGD with momentum) and, in the
same process, times the same number of forward+backward+SGD steps of the same model on random
tensors already in memory. Each is run ``--repeats`` times, alternating; the table gives the best
throughputs and the median of the rounds' ratios pipeline / pure compute, which should be >= 0.8.

    python benchmarks/bench_train.py [--clips 80] [--cdnn-clips 6]

It first prints each adversarial training's epoch cost (Alg. 2's FGSM, PGD, TRADES) against a
plain epoch of the same network, for the DNN-500 and the CDNN.
"""

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from musadv import partitions, synth
from musadv.cache import prepare
from musadv.models import build
from musadv.training import TrainConfig, train


def pure_compute(arch, labels, n_elements, batch, element_frames, n_bins=513):
    torch.manual_seed(0)
    model = build(arch, labels)
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand(batch, element_frames, n_bins) * 10
    y = torch.randint(0, len(labels), (batch,))
    steps = -(-n_elements // batch)
    t = time.perf_counter()
    for _ in range(steps):
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch * element_frames / (time.perf_counter() - t)


def bench(cache, arch, cfg, out, repeats):
    """Alternating runs of each, so that machine noise hits both alike.

    Returns the training frames, the best pipeline and pure throughputs, and the median of the
    per-round ratios (each round's two figures are taken seconds apart).
    """
    pipeline, pure = [], []
    for r in range(repeats):
        model = train(cache, arch, out / str(r), cfg, progress=False, log=lambda m: None)
        n_elements = sum(e.n_frames // model.element_frames for e in cache.split("train"))
        frames = n_elements * model.element_frames
        pipeline.append(frames / model.info["training"]["history"][0]["train_seconds"])
        pure.append(pure_compute(arch, cache.labels, n_elements, cfg.batch_size, model.element_frames))
    return frames, max(pipeline), max(pure), statistics.median(a / b for a, b in zip(pipeline, pure))


ADVERSARIAL = (("plain", {}), ("fgsm joined", {"adversarial": "fgsm"}),
               ("fgsm half replaced", {"adversarial": "fgsm", "adv_fraction": 0.5}),
               ("pgd-5 joined", {"adversarial": "pgd", "adv_steps": 5}),
               ("pgd-5 replaced", {"adversarial": "pgd", "adv_steps": 5, "adv_fraction": 1.0}),
               ("trades-5", {"adversarial": "trades", "adv_steps": 5}),
               ("noise 30 dB", {"noise_snr_db": 30.0}))


def adversarial_epoch_costs(cache, name, arch, base, work, repeats):
    """Epoch time of each adversarial training (and of training on noise, a smoothed system's base) against a
    plain epoch of the same network.

    Expected from the passes each adds (forward + input gradient ~ one training pass): FGSM joined
    ~3x (the doubled batch and the sign step), half replaced ~1.5x; PGD with k steps k + 1 passes
    on the batch, joined k + 2; TRADES k + 1 plus the attacked forward; noise only its draws.
    """
    best = {}
    folder = work / "adversarial" / name
    shutil.rmtree(folder, ignore_errors=True)  # a kept folder's models are from an earlier run
    for r in range(repeats):
        for kind, extra in ADVERSARIAL:
            model = train(cache, arch, folder / f"{kind.replace(' ', '-')}-{r}", TrainConfig(**{**base, "max_epochs": 1, **extra}),
                          progress=False, log=lambda m: None)
            t = model.info["training"]["history"][0]["train_seconds"]
            best[kind] = min(best.get(kind, t), t)
    print(f"adversarial training epoch cost, {name} (best of {repeats}): " + ", ".join(
        f"{k} {v:.1f} s ({v / best['plain']:.2f}x)" for k, v in best.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=80, help="30 s clips per style for the DNN cache (80: ~600k train frames)")
    ap.add_argument("--cdnn-clips", type=int, default=6, help="30 s clips per style for the CDNN cache")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of both measurements")
    ap.add_argument("--adversarial-only", action="store_true", help="only the adversarial-training epoch-cost comparison")
    ap.add_argument("--no-adversarial", action="store_true", help="skip the adversarial-training epoch-cost comparison")
    ap.add_argument("--only", nargs="*", default=None, help="models to run (DNN-50 DNN-500 CDNN)")
    ap.add_argument("--work", type=Path, default=None,
                    help="keep data, caches and models here (reused by the next run) instead of a temporary folder")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="musadv-bench-"))
    try:
        caches = {}
        for name, clips in (("dnn", args.clips), ("cdnn", args.cdnn_clips)):
            ds = synth.generate(work / f"data-{name}", n_per_style=clips, duration=30.0)
            part = partitions.stratified(ds, (0.95, 0.05, 0.0), seed=0)
            caches[name] = prepare(part, work / f"cache-{name}", progress=False)
        runs = [
            ("DNN-50", "dnn", {"arch": "dnn", "hidden": 50, "layers": 3, "dropout": 0.0}, TrainConfig(max_epochs=1)),
            ("DNN-500", "dnn", {"arch": "dnn", "hidden": 500, "layers": 3, "dropout": 0.0}, TrainConfig(max_epochs=1)),
            ("CDNN", "cdnn", {"arch": "cdnn"}, TrainConfig.reference("cdnn", max_epochs=1)),
        ]
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        if not args.no_adversarial:
            for name, key, arch, cfg in runs[1:]:
                if not args.only or name in args.only:
                    base = {"lr": cfg.lr, "batch_size": cfg.batch_size}
                    adversarial_epoch_costs(caches[key], name, arch, base, work, args.repeats)
        if args.adversarial_only:
            return
        print(f"{'model':8s} {'train frames':>12s} {'pipeline fr/s':>14s} {'pure fr/s':>11s} {'ratio':>6s}")
        for name, key, arch, cfg in runs:
            if args.only and name not in args.only:
                continue
            models = work / f"model-{name}"
            shutil.rmtree(models, ignore_errors=True)  # a kept folder's models are from an earlier run
            frames, pipeline, pure, ratio = bench(caches[key], arch, cfg, models, args.repeats)
            print(f"{name:8s} {frames:12d} {pipeline:14.0f} {pure:11.0f} {ratio:6.2f}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

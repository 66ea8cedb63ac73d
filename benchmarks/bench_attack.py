"""Benchmark of the adversary: is an iteration as fast as its unavoidable parts allow?

On a real 30 s GTZAN clip (../shared/gtzan-mini; synthesized music if absent) and for DNN-50,
DNN-500 and the paper's CDNN, it times one attack iteration and, alone in the same process, the
parts no implementation can skip: the network's forward pass with the gradient of the loss with
respect to its input, one inverse STFT and one STFT (to magnitudes). The ratio iteration / sum of parts should
be <= 1.3. Each is the mean over as many consecutive calls as the attack makes iterations; the
table shows the best of --reps rounds and the median of the rounds' ratios. "chained" times the same parts run one after another on each other's output, with
nothing else: the floor for an iteration whose data no longer sit in cache between the parts. Then (unless --no-extrapolate) it trains a DNN-500 on gtzan-mini, attacks a sample of
its test split with the Table II settings and extrapolates to a GTZAN test split of 250 clips.

It also prices the robust adversary (``--robust-to lowpass,mp3,eq,room``, 2 draws of each random
kind): per iteration and per example against the plain one on the same clips and targets, side
by side (``--robust-only MODEL_DIR`` for this part alone, on the test split of the model's cache).

When musicnn's weights are installed it also times an attack iteration of musicnn's published
MSD_musicnn and MSD_vgg on the clip at 16 kHz, beside its parts and beside a floor: the
floating-point operations of the network's forward pass and input gradient (counted by
PyTorch's FlopCounterMode) divided by this machine's matrix-multiply rate, measured in the same
process on 2048 x 2048 float32 matrices (``--musicnn-only`` for this part alone).

It also counts the query-only adversary's queries per second (``--queries MODEL...``: for each
system, one prediction alone and one round of the estimate, 21 queries in one ``predict_many``).

    python benchmarks/bench_attack.py [--iters 20] [--sample 10] [--no-extrapolate] [--profile] [--musicnn-only]
                                      [--robust-only MODEL_DIR] [--queries MODEL...]
"""

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import importlib.util

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from musadv import audio, datasets, partitions, synth
from musadv.attack import AttackConfig, attack, minimize
from musadv.recording import Recording
from musadv.cache import prepare
from musadv.models import build
from musadv.runs import recordings_from_split, run_attacks
from musadv.spectral import complex_abs, istft, magnitude, stft
from musadv.systems import load_system
from musadv.training import TrainConfig, train

GTZAN_MINI = Path(__file__).resolve().parents[1].parent / "shared" / "gtzan-mini"
LABELS = list(datasets.GTZAN_GENRES)


def best_time(fn, reps, calls=1):
    """Mean time of ``calls`` consecutive calls (seconds), best of ``reps`` such runs.

    The attack iteration is timed as the mean over many iterations, so its parts are timed the
    same way: a single call's best time would flatter the parts.
    """
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t) / calls)
    return min(times)


def parts(model, x, reps, calls):
    spec = stft(x, model.stft)
    mags = complex_abs(spec)
    target = torch.full((model.elements(mags).shape[0],), 3)

    def fwd_grad():
        m = mags.detach().requires_grad_(True)
        loss = F.cross_entropy(model(model.elements(m)), target, reduction="sum")
        torch.autograd.grad(loss, m)

    return {
        "forward+input grad": best_time(fwd_grad, reps, calls),
        "istft": best_time(lambda: istft(spec, model.stft, length=len(x)), reps, calls),
        "stft": best_time(lambda: magnitude(x, model.stft), reps, calls),  # the magnitudes are what is analysed
    }


def chained_parts(model, x, reps, calls):
    """The parts one after another on each other's output, as in an iteration, with nothing else."""
    target = torch.full((model.elements(magnitude(x, model.stft)).shape[0],), 3)

    def chain():
        y = x
        for _ in range(calls):
            spec = stft(y, model.stft)
            m = complex_abs(spec).requires_grad_(True)
            loss = F.cross_entropy(model(model.elements(m)), target, reduction="sum")
            torch.autograd.grad(loss, m)
            y = istft(spec, model.stft, length=len(x))

    return best_time(chain, reps) / calls


def iteration_time(model, y, iters, reps):
    never = AttackConfig(snr_db=15.0, threshold=1.0, max_iter=iters)
    none = AttackConfig(snr_db=15.0, threshold=1.0, max_iter=0)
    full = best_time(lambda: attack(model, y, LABELS[3], never), reps)
    setup = best_time(lambda: attack(model, y, LABELS[3], none), reps)
    return (full - setup) / iters


def first_conv_speedup(model, y, iters, reps):
    """CDNN attack iteration with musadv's first convolution against PyTorch's own, rounds side by side.

    Returns the best iteration times (musadv, PyTorch) and the median of the rounds' ratios, and
    the largest difference between the two input gradients relative to their largest value.
    """
    plain = torch.nn.Conv2d(1, model.features[0].out_channels, model.features[0].kernel_size)
    plain.load_state_dict(model.features[0].state_dict())
    plain.requires_grad_(False)
    ours = model.features[0]
    rounds = []
    for _ in range(reps):
        t_ours = iteration_time(model, y, iters, 1)
        model.features[0] = plain
        t_plain = iteration_time(model, y, iters, 1)
        model.features[0] = ours
        rounds.append((t_ours, t_plain))
    mags = torch.as_tensor(magnitude(y, model.stft))
    grads = []
    for conv in (ours, plain):
        model.features[0] = conv
        m = mags.detach().requires_grad_(True)
        grads.append(torch.autograd.grad(model.logits(m)[:, 3].sum(), m)[0])
    model.features[0] = ours
    rel = float((grads[0] - grads[1]).abs().max() / grads[1].abs().max())
    return min(r[0] for r in rounds), min(r[1] for r in rounds), statistics.median(r[1] / r[0] for r in rounds), rel


def minimize_cost(model, jobs):
    """The minimal-perturbation search against one attack at the SNR it found (a wrong target per clip).

    The single attack is what a user who knew the answer would run; the ratio is the price of
    not knowing it. How many of those single attacks reach the target shows what the warm
    starts add.
    """
    search = single = 0.0
    reached = found = 0
    rng = np.random.default_rng(0)
    for job in jobs:
        rec = Recording.from_file(job.source, model.stft.sr, job.offset, job.duration)
        others = [lab for lab in model.labels if lab != job.true_label]
        target = others[rng.integers(len(others))]
        r = minimize(model, rec, target)
        search += r.seconds
        bounds = [lv["snr_bound_db"] for lv in r.levels if lv["success"]]
        if not r.success or r.iterations == 0:
            continue
        found += 1
        one = attack(model, rec, target, AttackConfig(snr_db=max(bounds), stop="label"))
        single += one.seconds
        reached += one.success
    print(f"--minimize on {len(jobs)} clips: {search:.1f} s; one attack at each SNR found: {single:.1f} s "
          f"(search / single = {search / max(single, 1e-9):.1f}x); the single attack reached the target in "
          f"{reached} of {found}")


def profile_iterations(y, mags, iters):
    """Self time per operation over ``iters`` DNN-50 iterations (after one warm-up attack)."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = build({"arch": "dnn", "hidden": 50}, LABELS).eval()
    model.standardize.fit(mags.mean(0), mags.std(0))
    cfg = AttackConfig(snr_db=15.0, threshold=1.0, max_iter=iters)
    attack(model, y, LABELS[3], cfg)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        attack(model, y, LABELS[3], cfg)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


def matmul_flops_per_second(reps: int, n: int = 2048) -> float:
    """This machine's float32 matrix-multiply rate (FLOP/s), best of ``reps``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_time(lambda: a @ b, reps, calls=3)


def musicnn_section(clip: Path | None, iters: int, reps: int) -> None:
    """musicnn's taggers: iteration, parts and the multiply-add floor, rounds side by side."""
    if importlib.util.find_spec("musicnn") is None:
        print("\nmusicnn: not installed (pip install --no-deps musicnn==0.1.0), skipped")
        return
    y = audio.load(clip, sr=16000)[0] if clip else audio.conform(synth.render("rock", 0, duration=30.0)[None], 22050, 16000)[0]
    x = torch.from_numpy(y)
    print(f"\nmusicnn on {len(y) / 16000:.1f} s at 16 kHz ({1 + len(y) // 256} frames, patches of 187 in one batch)")
    print(f"{'model':12s} {'iteration':>10s} {'fwd+grad':>9s} {'istft':>7s} {'stft':>7s} {'ratio':>6s} {'GFLOP':>7s}"
          f" {'floor':>7s} {'ratio':>6s}   (ms; floor = FLOP / matmul rate)")
    for name in ("MSD_musicnn", "MSD_vgg"):
        model = load_system(f"musicnn:{name}")
        target = model.labels.index("jazz")
        spec = stft(x, model.stft)
        mags = complex_abs(spec)

        def fwd_grad():
            m = mags.detach().requires_grad_(True)
            torch.autograd.grad(model.logits(m)[:, target].sum(), m)

        with torch.no_grad():
            for p in model.parameters():
                p.requires_grad_(False)
        with FlopCounterMode(display=False) as counter:
            fwd_grad()
        flops = counter.get_total_flops()
        never = AttackConfig(snr_db=15.0, threshold=1.0, max_iter=iters)
        none = AttackConfig(snr_db=15.0, threshold=1.0, max_iter=0)
        rounds = []
        for _ in range(reps):
            full = best_time(lambda: attack(model, y, "jazz", never), 1)
            setup = best_time(lambda: attack(model, y, "jazz", none), 1)
            it = (full - setup) / iters
            p = {"fwd": best_time(fwd_grad, 1, iters), "istft": best_time(lambda: istft(spec, model.stft, length=len(y)), 1, iters),
                 "stft": best_time(lambda: magnitude(x, model.stft), 1, iters)}
            rate = matmul_flops_per_second(1)
            rounds.append((it, p, flops / rate))
        it = min(r[0] for r in rounds)
        p = {k: min(r[1][k] for r in rounds) for k in rounds[0][1]}
        floor = min(r[2] for r in rounds)
        ratio = statistics.median(r[0] / sum(r[1].values()) for r in rounds)
        ratio_floor = statistics.median(r[0] / r[2] for r in rounds)
        print(f"{name:12s} {it * 1e3:10.1f} {p['fwd'] * 1e3:9.1f} {p['istft'] * 1e3:7.1f} {p['stft'] * 1e3:7.1f} "
              f"{ratio:6.2f} {flops / 1e9:7.1f} {floor * 1e3:7.1f} {ratio_floor:6.2f}")
    print(f"matrix multiply: {matmul_flops_per_second(reps) / 1e9:.0f} GFLOP/s (2048 x 2048, float32, "
          f"{torch.get_num_threads()} threads)")


ROBUST_KINDS = ("lowpass", "mp3", "eq", "room")


def robust_cost(model, jobs, iters: int, reps: int) -> None:
    """The robust adversary's price: an iteration and a whole example against the plain adversary's.

    Per clip (a wrong target each), the plain and the robust attacks run one after the other, so
    each ratio compares timings taken close together; the robust one's set-up (its pool of
    simulated rooms) is timed apart from its iterations.
    """
    from musadv.transforms import Transformation

    robust = tuple(Transformation(k) for k in ROBUST_KINDS)
    rng = np.random.default_rng(0)
    rec0 = Recording.from_file(jobs[0].source, model.stft.sr, jobs[0].offset, jobs[0].duration)
    never = lambda **kw: AttackConfig(threshold=1.0, **kw)  # noqa: E731
    rounds = []
    for _ in range(reps):
        per_iter = []
        for kw in ({}, {"robust_to": robust}):
            # Divided by the iterations made: a posterior that rounds to 1.0 stops even this attack.
            full = attack(model, rec0, LABELS[3], never(max_iter=iters, **kw))
            setup = attack(model, rec0, LABELS[3], never(max_iter=0, **kw))
            per_iter.append(((full.seconds - setup.seconds) / max(full.iterations, 1), setup.seconds))
        rounds.append(per_iter)
    plain_it = min(r[0][0] for r in rounds)
    robust_it, robust_setup = min(r[1][0] for r in rounds), min(r[1][1] for r in rounds)
    ratio_it = statistics.median(r[1][0] / r[0][0] for r in rounds)
    print(f"\nrobust adversary ({', '.join(ROBUST_KINDS)}; 2 draws of each random kind: 7 judgements per iteration), "
          f"{rec0.samples.shape[-1] / rec0.sr:.0f} s clip: iteration {robust_it * 1e3:.0f} ms against {plain_it * 1e3:.0f} ms plain "
          f"({ratio_it:.1f}x, median of {reps} rounds side by side); set-up {robust_setup:.1f} s (its rooms)")
    plain_s = robust_s = 0.0
    plain_iters = robust_iters = 0
    ratios = []
    for job in jobs:
        rec = Recording.from_file(job.source, model.stft.sr, job.offset, job.duration)
        others = [lab for lab in model.labels if lab != job.true_label]
        target = others[rng.integers(len(others))]
        a = attack(model, rec, target, AttackConfig())
        b = attack(model, rec, target, AttackConfig(robust_to=robust), rng=np.random.default_rng(1))
        plain_s, robust_s = plain_s + a.seconds, robust_s + b.seconds
        plain_iters, robust_iters = plain_iters + a.iterations, robust_iters + b.iterations
        ratios.append(b.seconds / a.seconds)
    n = len(jobs)
    print(f"per example on {n} test clips (Table II settings, the same targets): robust {robust_s / n:.1f} s and "
          f"{robust_iters / n:.1f} iterations, plain {plain_s / n:.2f} s and {plain_iters / n:.1f} iterations; "
          f"robust / plain {robust_s / plain_s:.0f}x in all (median per clip {statistics.median(ratios):.0f}x)")


def queries_section(y: np.ndarray, specs: list[str], reps: int, pairs: int = 10) -> None:
    """Queries per second of the query-only adversary on a 30 s recording, for each system of ``specs``.

    "alone": one ``predict`` of the recording, as a loop of predictions would ask; "round": one
    round of the adversary's estimate (:func:`musadv.queries.estimate_gradients`): the iterate and
    ``2 pairs`` candidates made (inverse STFT, STFT) and judged in one ``predict_many``. Best of
    ``reps``, timed side by side.
    """
    from musadv.queries import QueryState, estimate_gradients, tile_grid

    print(f"\nqueries per second on a {len(y) / 22050:.0f} s recording ({2 * pairs + 1} queries a round; best of {reps})")
    print(f"{'system':24s} {'alone':>8s} {'round':>8s} {'ratio':>6s}")
    for spec in specs:
        model = load_system(spec)
        sig = audio.conform(y[None], 22050, model.stft.sr)
        x = torch.from_numpy(sig)
        full = stft(x, model.stft)
        mags = complex_abs(full)
        frames = mags.numpy()
        state = QueryState(tile_grid(len(mags), model.stft, 1.0), 0.1, 0.1, np.random.default_rng(0))
        item = [(full, mags, x, 1, state, True, "clip", [])]
        model.predict(frames, sig)  # first calls pay for lazy set-up
        estimate_gradients(model, "label", item, pairs)
        alone = best_time(lambda: model.predict(frames, sig), reps, calls=3)
        round_ = best_time(lambda: estimate_gradients(model, "label", item, pairs), reps)
        q_alone, q_round = 1 / alone, (2 * pairs + 1) / round_
        print(f"{Path(spec).name if Path(spec).exists() else spec:24s} {q_alone:8.1f} {q_round:8.1f} {q_round / q_alone:6.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=20, help="iterations per timed attack (CDNN: a quarter)")
    ap.add_argument("--reps", type=int, default=5, help="rounds of timings (best times, median ratios)")
    ap.add_argument("--sample", type=int, default=10, help="test clips attacked for the extrapolation")
    ap.add_argument("--no-extrapolate", action="store_true")
    ap.add_argument("--musicnn-only", action="store_true", help="only the musicnn part")
    ap.add_argument("--robust-only", type=Path, metavar="MODEL_DIR",
                    help="only the robust adversary's price, on a trained model's test split")
    ap.add_argument("--queries", nargs="+", metavar="MODEL",
                    help="only the query-only adversary's queries per second, for these systems (model directories, "
                         "musicnn:MSD_musicnn, ...)")
    ap.add_argument("--profile", action="store_true",
                    help="only print PyTorch's profile of DNN-50 attack iterations (which operations the time goes to)")
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
    if args.profile:
        profile_iterations(y, mags, args.iters)
        return
    if args.queries:
        queries_section(y, args.queries, args.reps)
        return
    if args.robust_only:
        from musadv.cache import SpectraCache

        model = load_system(args.robust_only)
        cache = SpectraCache(model.info["data"]["cache"])
        robust_cost(model, recordings_from_split(cache, "test", args.sample), max(2, args.iters // 4), args.reps)
        return
    if args.musicnn_only:
        musicnn_section(clip if clip.exists() else None, max(2, args.iters // 4), args.reps)
        return
    print(f"{'model':8s} {'iteration':>10s} {'fwd+grad':>9s} {'istft':>7s} {'stft':>7s} {'sum':>7s} {'ratio':>6s}"
          f" {'chained':>8s} {'ratio':>6s}   (ms)")
    for name, arch, iters in [("DNN-50", {"arch": "dnn", "hidden": 50}, args.iters),
                              ("DNN-500", {"arch": "dnn", "hidden": 500}, args.iters),
                              ("CDNN", {"arch": "cdnn"}, max(2, args.iters // 4))]:
        torch.manual_seed(0)
        model = build(arch, LABELS).eval()
        model.standardize.fit(mags.mean(0), mags.std(0))
        for p in model.parameters():
            p.requires_grad_(False)
        # Rounds of (iteration, parts, chained parts) measured side by side: this VM's speed drifts
        # by tens of percent over seconds, so each ratio compares timings taken close together.
        rounds = [(iteration_time(model, y, iters, 1), parts(model, x, 1, iters), chained_parts(model, x, 1, iters))
                  for _ in range(args.reps)]
        it = min(r[0] for r in rounds)
        p = {k: min(r[1][k] for r in rounds) for k in rounds[0][1]}
        total = sum(p.values())
        chained = min(r[2] for r in rounds)
        ratio = statistics.median(r[0] / sum(r[1].values()) for r in rounds)
        ratio_chained = statistics.median(r[0] / r[2] for r in rounds)
        print(f"{name:8s} {it * 1e3:10.1f} {p['forward+input grad'] * 1e3:9.1f} {p['istft'] * 1e3:7.1f} "
              f"{p['stft'] * 1e3:7.1f} {total * 1e3:7.1f} {ratio:6.2f} {chained * 1e3:8.1f} {ratio_chained:6.2f}")
        if arch["arch"] == "cdnn":
            ours, plain, speedup, rel = first_conv_speedup(model, y, iters, args.reps)
            print(f"CDNN iteration with PyTorch's own first-convolution backward: {plain * 1e3:.1f} ms, musadv's "
                  f"{ours * 1e3:.1f} ms: {speedup:.2f}x faster (median of rounds side by side); input gradients "
                  f"differ by at most {rel:.1e} of their largest value")
    musicnn_section(clip if clip.exists() else None, max(2, args.iters // 4), args.reps)
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
        m = run_attacks(model, recordings_from_split(cache, "test", args.sample), "random", work / "run",
                        AttackConfig(), progress=False)
        dt = time.perf_counter() - t
        print(f"attacked {m['n_examples']} test clips of 30 s (Table II: 15 dB, mu 0.1, threshold 0.9, 100 iter.): "
              f"{dt:.1f} s, {m['mean_iterations']:.1f} iterations and {m['mean_seconds']:.2f} s per example, "
              f"success {m['success_rate']:.0%}")
        print(f"extrapolated to a GTZAN test split of 250 clips: {dt / m['n_examples'] * 250 / 60:.1f} min")
        minimize_cost(model, recordings_from_split(cache, "test", args.sample))
        robust_cost(model, recordings_from_split(cache, "test", args.sample), max(2, args.iters // 4), args.reps)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

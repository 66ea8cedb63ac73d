"""Benchmark of worker processes: the same attack run sequentially and with --jobs N, side by side.

Makes the built-in data (or reuses a demo's cache and DNN with --demo DIR), then runs the same
attack run (random targets, 15 dB, the test split) into fresh directories: in this process with
all cores as PyTorch threads, in this process with one thread, and with N worker processes of one
thread each. Prints the wall times, the speed-up ratios against both sequential runs and the
overhead of a worker pool (start-up and the model's transport), measured on an empty run.

    python benchmarks/bench_parallel.py [--demo demo-out] [--jobs 2] [--limit N]
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from musadv.attack import AttackConfig
from musadv.cache import SpectraCache
from musadv.parallel import available_cores
from musadv.runs import jobs_from_split, run_attacks
from musadv.systems import load_system


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=None, help="A demo directory (its cache and models/dnn); default: run the quick demo first.")
    ap.add_argument("--jobs", type=int, default=available_cores())
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-parallel-"))
    try:
        demo = args.demo
        if demo is None:
            from musadv.experiments import run_demo

            demo = tmp / "demo"
            run_demo(demo, quick=True, progress=False, log=lambda m: None, report=False)
        model = load_system(demo / "models" / "dnn")
        jobs = jobs_from_split(SpectraCache(demo / "cache"), "test", args.limit)
        config = AttackConfig(snr_db=15.0)

        def timed(name, n_jobs, threads, pieces=jobs):
            t = time.perf_counter()
            run_attacks(model, pieces, "random", tmp / name, config, progress=False, n_jobs=n_jobs, threads=threads)
            return time.perf_counter() - t

        seq_all = timed("seq-all", 1, available_cores())
        seq_one = timed("seq-one", 1, 1)
        par = timed("par", args.jobs, 1)
        # A pool that has one recording per worker and nothing else: start-up and transport.
        overhead = timed("pool", args.jobs, 1, jobs[: args.jobs]) - timed("pool-seq", 1, 1, jobs[: args.jobs]) / args.jobs
        print(f"{len(jobs)} recordings, DNN of {demo}, {available_cores()} cores")
        print(f"{'mode':34s} {'wall s':>8s} {'s/recording':>12s}")
        for name, t in ((f"one process, {available_cores()} threads", seq_all), ("one process, 1 thread", seq_one),
                        (f"--jobs {args.jobs}, 1 thread each", par)):
            print(f"{name:34s} {t:8.2f} {t / len(jobs):12.3f}")
        print(f"speed-up of --jobs {args.jobs}: {seq_all / par:.2f}x against {available_cores()} threads, "
              f"{seq_one / par:.2f}x against 1 thread")
        print(f"pool overhead (start-up, model transport): {overhead:.2f} s per run")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

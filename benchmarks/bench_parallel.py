"""Benchmark of the engines: the same attack run in one process, with --jobs N and on local Ray, side by side.

Makes the built-in data (or reuses a demo's cache and DNN with --demo DIR, or its CDNN with
--model cdnn), then runs the same attack run (random targets, 15 dB, the test split) into fresh
directories: in this process with all cores as PyTorch threads, in this process with one
thread, with N worker processes of one thread each, and as one Ray task per recording on a
local Ray instance of N CPUs started here. Prints the wall times and the speed-up ratios, then
what each engine costs besides the work: its start (worker pool, or Ray instance) and, per
task, the round trip of an empty piece once the workers hold the model.

    python benchmarks/bench_parallel.py [--demo demo-out] [--model dnn|cdnn] [--jobs 2] [--limit N]
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from musadv.attack import AttackConfig
from musadv.cache import SpectraCache
from musadv.parallel import LocalEngine, RayEngine, available_cores
from musadv.runs import recordings_from_split, run_attacks
from musadv.systems import load_system


def _nothing(context, piece):
    return piece


def per_task_overhead(engine, context, workers: int, n: int = 2000) -> tuple[float, float, float]:
    """Seconds of a first job of one empty piece per worker (the engine's start, the context's
    transport), of a second such job on the started engine (the context's transport alone), and
    what each empty piece of a job of ``n`` costs."""
    times = []
    for _ in range(2):
        t = time.perf_counter()
        list(engine.map(_nothing, context, list(range(workers))))
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    list(engine.map(_nothing, context, list(range(n))))
    return times[0], times[1], (time.perf_counter() - t) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=None, help="A demo directory (its cache and models); default: make the quick demo's first.")
    ap.add_argument("--model", default="dnn", help="The demo's model attacked (dnn or cdnn).")
    ap.add_argument("--jobs", type=int, default=available_cores())
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    import ray

    tmp = Path(tempfile.mkdtemp(prefix="bench-parallel-"))
    try:
        demo = args.demo
        if demo is None:
            from musadv.experiments import train_demo_systems
            from musadv.studies import DemoSettings, Stages, study_cache

            # The quick demo's data and systems, without its judgements.
            demo, settings, quiet = tmp / "demo", DemoSettings.for_data(True, True), lambda m: None
            st = Stages(demo, quiet)
            spectra = study_cache(st, "prepare", demo / "cache", demo / "data", None, None, settings.clips,
                                  settings.clip_seconds, settings.seed, False)
            train_demo_systems(st, spectra, demo / "models", settings, "cpu", False)
        model = load_system(demo / "models" / args.model)
        jobs = recordings_from_split(SpectraCache(demo / "cache"), "test", args.limit)
        config = AttackConfig(snr_db=15.0)

        def timed(name, engine):
            t = time.perf_counter()
            run_attacks(model, jobs, "random", tmp / name, config, progress=False, engine=engine)
            return time.perf_counter() - t

        cores = available_cores()
        modes = [(f"one process, {cores} threads", timed("seq-all", LocalEngine(1))),
                 ("one process, 1 thread", timed("seq-one", LocalEngine(1, threads=1))),
                 (f"--jobs {args.jobs}, 1 thread each", timed("jobs", LocalEngine(args.jobs, threads=1)))]
        pool_first, pool_next, pool_task = per_task_overhead(LocalEngine(args.jobs, threads=1), model, args.jobs)
        t = time.perf_counter()
        ray.init(num_cpus=args.jobs, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        ray_start = time.perf_counter() - t
        modes.append((f"local Ray of {args.jobs} CPUs, 1 thread each", timed("ray", RayEngine(threads=1))))
        ray_first, ray_next, ray_task = per_task_overhead(RayEngine(threads=1), model, args.jobs)
        ray.shutdown()
        print(f"{len(jobs)} recordings, {args.model.upper()} of {demo}, {cores} cores, attack at 15 dB, random targets")
        print(f"{'mode':40s} {'wall s':>8s} {'s/recording':>12s} {'speed-up':>9s}")
        base = modes[0][1]
        for name, t in modes:
            print(f"{name:40s} {t:8.2f} {t / len(jobs):12.3f} {base / t:8.2f}x")
        print(f"speed-ups against one thread in one process: --jobs {modes[1][1] / modes[2][1]:.2f}x, "
              f"Ray {modes[1][1] / modes[3][1]:.2f}x")
        print(f"worker pool: {pool_first:.2f} s to start and take the model, {pool_next:.2f} s for the next job's model "
              f"on the kept workers, then {pool_task * 1e3:.2f} ms per empty piece")
        print(f"Ray: {ray_start:.2f} s to start a local instance; on its started workers {ray_first:.2f} s for a first "
              f"task each with the model, {ray_next:.2f} s for the next job's, then {ray_task * 1e3:.2f} ms per empty task")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

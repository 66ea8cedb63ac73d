"""Benchmark of `musadv prepare`: throughput (seconds of audio per second) and peak memory.

Prints figures for one and for all worker processes in the same run, against the size of the
spectra written, so the memory claim (peak well under the whole dataset's spectra) is checked.

    python benchmarks/bench_prepare.py [--clips 10] [--duration 30]
"""

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from musadv import partitions, synth
from musadv.cache import prepare


def peak_rss_mb(who):
    return resource.getrusage(who).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=10, help="clips per style (six styles)")
    ap.add_argument("--duration", type=float, default=30.0, help="clip length in seconds")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="musadv-bench-"))
    try:
        ds = synth.generate(work / "data", n_per_style=args.clips, duration=args.duration)
        part = partitions.stratified(ds, (0.5, 0.25, 0.25), seed=0)
        audio_s = len(ds) * args.duration
        print(f"built-in data: {len(ds)} clips, {audio_s / 60:.1f} min of audio")
        rates = {}
        for jobs in (1, 2):
            out = work / f"cache{jobs}"
            t = time.perf_counter()
            cache = prepare(part, out, jobs=jobs, progress=False)
            dt = time.perf_counter() - t
            rates[jobs] = audio_s / dt
            size_mb = sum(f.stat().st_size for f in (out / "spectra").glob("*.npy")) / 2**20
            print(f"jobs={jobs}: {dt:6.2f} s, {rates[jobs]:7.1f} s of audio per s, "
                  f"{len(cache.entries)} files, spectra on disk {size_mb:.0f} MB")
        t = time.perf_counter()
        prepare(part, work / "cache2", jobs=2, progress=False)
        print(f"rerun with nothing to do: {time.perf_counter() - t:.2f} s")
        print(f"speed-up of 2 workers over 1: {rates[2] / rates[1]:.2f}x")
        print(f"peak RSS: main process {peak_rss_mb(resource.RUSAGE_SELF):.0f} MB, "
              f"largest worker {peak_rss_mb(resource.RUSAGE_CHILDREN):.0f} MB, "
              f"spectra written {size_mb:.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

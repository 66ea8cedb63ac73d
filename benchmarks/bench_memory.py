"""Benchmark of memory on a long recording: peak RSS of ``musadv attack`` against the decoded signal.

Writes a stereo 44.1 kHz WAV of ``--minutes`` of synthesized music (20 by default: 211 MB as
float32), saves a DNN-500 (untrained: memory does not depend on the weights), attacks the file
with ``--max-iter`` iterations in a child process and reports the child's peak resident memory
(``ru_maxrss``) as a multiple of the decoded float32 signal, beside the peak of a child that only
imports musadv and PyTorch (the fixed cost, subtracted). The goal is at most about 8x.

``--src DIR`` runs the child on another checkout's ``src`` (e.g. the code before a change), so
the two figures come from one run on one machine:

    python benchmarks/bench_memory.py [--minutes 20] [--max-iter 20] [--src OTHER/src]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from musadv import synth
from musadv.models import build, save_model
from musadv.spectral import STFTConfig


def _child_peak(cmd: list[str], src: str | None) -> tuple[float, float, int]:
    """Peak RSS (bytes) and seconds of one child process, and its exit status."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    t = time.perf_counter()
    # A fresh child per measurement: RUSAGE_CHILDREN would report the largest of all children.
    code = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, p.returncode)")
    out = subprocess.run([sys.executable, "-c", code, *cmd], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    peak, status = out.stdout.split()[-2:]
    return float(peak), seconds, int(status)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--max-iter", type=int, default=20)
    ap.add_argument("--src", default=None, help="run the child on this source tree (PYTHONPATH)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="musadv-mem-") as tmp:
        tmp = Path(tmp)
        sr, seconds = 44100, int(args.minutes * 60)
        piece = synth.render("rock", seed=3, duration=30.0, sr=sr)
        y = np.tile(piece, seconds // 30 + 1)[: seconds * sr]
        stereo = np.stack([y, 0.8 * np.roll(y, 441)], axis=1).astype(np.float32)
        sf.write(tmp / "long.wav", stereo, sr, subtype="PCM_16")
        decoded = stereo.nbytes
        del stereo, y
        model = build({"arch": "dnn", "hidden": 500}, list(synth.STYLES), STFTConfig())
        save_model(model, tmp / "dnn")
        cli = [sys.executable, "-m", "musadv.cli"]
        base, _, _ = _child_peak([*cli, "--version"], args.src)
        # The adversary stops at its threshold: a target no untrained net reaches keeps it iterating.
        peak, secs, status = _child_peak([*cli, "attack", str(tmp / "dnn"), str(tmp / "long.wav"), "--target",
                                          synth.STYLES[0], "--threshold", "0.999999", "--max-iter",
                                          str(args.max_iter), "--out", str(tmp / "run"), "--quiet", "--no-report"],
                                         args.src)
        print(f"{args.minutes:g} min stereo at {sr} Hz: decoded {decoded / 2**20:.0f} MiB float32; "
              f"code: {args.src or 'this checkout'}")
        print(f"peak RSS {peak / 2**30:.2f} GiB ({peak / decoded:.1f}x the signal), {secs:.0f} s, exit {status}; "
              f"less the {base / 2**20:.0f} MiB of imports: {(peak - base) / decoded:.1f}x")


if __name__ == "__main__":
    main()

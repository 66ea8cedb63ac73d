"""Is a waveform CNN's resistance at 15 dB the model's or the adversary's? musadv against waveform PGD.

Makes the built-in data of the test suite (6 styles x 12 clips of 6 s, seed 1), trains the
waveform CNN of ``tests/test_wrappers.py`` (and a tiny SampleCNN, Lee et al. 2017) with the
test's own loop on elements of each length asked for (``--frames``: STFT frames of 512
samples; the test's 115 frames are 2.7 s, about SampleCNN's 59049-sample input; 16 frames are
0.37 s), and attacks every test recording towards a random wrong label at 15 dB:

* musadv's adversary (magnitude STFT, default settings), judged as the written 16-bit file;
* L2 PGD on the waveform itself, without the magnitude restriction: the step (0.1 of the SNR
  ball's radius along the normalised gradient of the same scale-free loss) is halved when the
  target's posterior has not risen for 20 iterations, up to 400 iterations, stopping when the
  model says the target;
* the same PGD keeping only the part of each step that a magnitude change can make (the
  gradient's STFT component in phase with the recording's STFT).

Prints each model's accuracy on the test recordings and the share of targets each attack
reaches. If the unrestricted PGD fails where musadv fails, the model, not the magnitude
adversary, resists at that SNR.

    python benchmarks/bench_waveform.py [--arch wave_cnn,samplecnn] [--frames 16,115] [--seed 0] [--snr 15]
"""

import argparse
import importlib.util
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.test_wrappers import MODELS_PY, _train  # noqa: E402  (the test's model and training loop)

from musadv import partitions, synth  # noqa: E402
from musadv.attack import AttackConfig, attack  # noqa: E402
from musadv.cache import prepare  # noqa: E402
from musadv.interface import unit_phase  # noqa: E402
from musadv.spectral import istft, stft  # noqa: E402
from musadv.wrappers import TorchClassifier  # noqa: E402


class SampleCNN(nn.Module):
    """A tiny SampleCNN: a 3-sample strided convolution, then five 3-sample convolutions and pools."""

    def __init__(self, n_labels):
        super().__init__()
        layers = [nn.Conv1d(1, 16, 3, stride=3), nn.ReLU()]
        for _ in range(5):
            layers += [nn.Conv1d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool1d(3)]
        self.net = nn.Sequential(*layers, nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(16, n_labels))

    def forward(self, x):
        return self.net(x.unsqueeze(1))


def _test_models(folder: Path):
    (folder / "models.py").write_text(MODELS_PY)
    spec = importlib.util.spec_from_file_location("bench_models", folder / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trained(arch: str, frames: int, cache, seed: int, models) -> TorchClassifier:
    torch.manual_seed(seed)
    n = len(cache.labels)
    module = models.WaveCNN(n) if arch == "wave_cnn" else SampleCNN(n)
    model = TorchClassifier(module, cache.labels, front_end="waveform", element_frames=frames, std=torch.ones(()))
    index = {lab: i for i, lab in enumerate(cache.labels)}
    train = cache.split("train")
    per_rec = [model.signal_inputs(torch.from_numpy(cache.signal(e))) for e in train]
    x = torch.cat(per_rec)
    y = torch.cat([torch.full((len(p),), index[e.label]) for p, e in zip(per_rec, train)])
    model.std.copy_(x.std())
    return _train(model, x / model.std, y, epochs=30, seed=seed)


def waveform_pgd(model: TorchClassifier, x0: torch.Tensor, target: int, snr_db: float, in_phase: bool,
                 iters: int = 400, fraction: float = 0.1, halve_after: int = 20) -> bool:
    """Whether L2 PGD on the waveform reaches ``target`` within ``snr_db`` (see the module notes)."""
    radius = float(x0.norm()) / 10 ** (snr_db / 20)
    x, best, since = x0.clone(), -1.0, 0
    for _ in range(iters):
        x.requires_grad_(True)
        logits = model.module(model.signal_inputs(x))
        posterior = torch.softmax(logits.detach(), -1).mean(0)
        if int(posterior.argmax()) == target:
            return True
        centred = logits - logits.mean(-1, keepdim=True)
        scaled = centred / centred.detach().square().mean(-1, keepdim=True).sqrt().clamp_min(1e-30)
        (grad,) = torch.autograd.grad(-torch.log_softmax(scaled, -1)[:, target].sum(), x)
        with torch.no_grad():
            if in_phase:
                phase = unit_phase(stft(x, model.stft))
                grad = istft((stft(grad, model.stft) * phase.conj()).real * phase, model.stft, length=len(x))
            x = x - fraction * radius * grad / grad.norm().clamp_min(1e-30)
            change = x - x0
            if change.norm() > radius:
                x = x0 + change * (radius / change.norm())
        if float(posterior[target]) > best:
            best, since = float(posterior[target]), 0
        else:
            since += 1
            if since >= halve_after:
                fraction, since = fraction / 2, 0
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="wave_cnn,samplecnn")
    ap.add_argument("--frames", default="16,115", help="element lengths in STFT frames, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snr", type=float, default=15.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-waveform-"))
    try:
        ds = synth.generate(tmp / "data", n_per_style=12, duration=6.0, seed=1)
        cache = prepare(partitions.stratified(ds, (0.5, 1 / 6, 1 / 3), seed=0), tmp / "cache", jobs=1, progress=False)
        models = _test_models(tmp)
        test = cache.split("test")
        rng = np.random.default_rng(0)
        targets = [str(rng.choice([lab for lab in cache.labels if lab != e.label])) for e in test]
        print(f"{len(test)} test recordings, random wrong targets, {args.snr:g} dB, training seed {args.seed}")
        print(f"{'model':10s} {'element':>8s} {'accuracy':>9s} {'musadv (written files)':>24s} "
              f"{'waveform PGD':>14s} {'in-phase PGD':>14s}")
        for arch, frames in itertools.product(args.arch.split(","), map(int, args.frames.split(","))):
            model = trained(arch, frames, cache, args.seed, models)
            for p in model.parameters():
                p.requires_grad_(False)
            accuracy = np.mean([model.predict(cache.frames(e), cache.signal(e)).label == e.label for e in test])
            t = time.perf_counter()
            ours = sum(attack(model, cache.signal(e), tgt, AttackConfig(snr_db=args.snr)).label_after == tgt
                       for e, tgt in zip(test, targets))
            t_ours = time.perf_counter() - t
            pgd = [sum(waveform_pgd(model, torch.from_numpy(cache.signal(e)), cache.labels.index(tgt), args.snr, in_phase)
                       for e, tgt in zip(test, targets)) for in_phase in (False, True)]
            n, element = len(test), f"{model.element_samples / model.stft.sr:.2f} s"
            print(f"{arch:10s} {element:>8s} {accuracy:9.2f} {f'{ours}/{n} ({t_ours:.0f} s)':>24s} "
                  f"{f'{pgd[0]}/{n}':>14s} {f'{pgd[1]}/{n}':>14s}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

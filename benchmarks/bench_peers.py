"""Side by side with what users would use instead: musadv's adversary against the L2 PGD of ART and foolbox.

Same model, same recordings (the first --clips test clips of gtzan-mini, 30 s each), the same
always-wrong target per clip (seeded) and the same SNR budgets. The peers attack the waveform of
a wrapper that computes the model's own analysis: STFT magnitudes, element logits and the log of
the recording's mean posterior (eq. 3-4), so they aim at the same decision musadv does. Their
step is set to musadv's (0.1 of the budget's radius per step, 100 steps; ART's and foolbox's
defaults are absolute or smaller), and they run every step (neither stops early). foolbox's
minimal-norm attack (FMN, L2) is compared with ``musadv attack --minimize``.

Every example, whoever made it, is written as a 16-bit WAV, decoded and classified by musadv:
success means the written file gets the target, and the SNR is measured on it. The time is the
attack's alone, per example.

ART (``adversarial-robustness-toolbox``) and foolbox are development extras, never needed to run
musadv: ``pip install adversarial-robustness-toolbox==1.20.1 foolbox==3.3.4``.

With ``--black-box`` it sets musadv's query-only adversary (``attack --black-box``, stopping at
the target label) beside ART's SquareAttack (L2, targeted through its loss and criterion; the
waveform held in a square "image" by a thin 4-D adapter) and HopSkipJump (L2, targeted, started
from a training recording of the target genre), on any system: the same clips, targets and SNR
budget, each system's predictions its only view; it counts each attack's queries.

    python benchmarks/bench_peers.py --model demo-out/models/dnn [--clips 5] [--snr 30,20,15]
    python benchmarks/bench_peers.py --black-box --model demo-out/models/dnn_forest [--clips 5] [--snr 15]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from musadv import audio, datasets, partitions
from musadv.attack import AttackConfig, attack, minimize, snr_db
from musadv.classify import classify_file
from musadv.interface import recording_confidence
from musadv.models import load_model
from musadv.spectral import complex_abs, magnitude, stft
from musadv.systems import load_system

GTZAN_MINI = Path(__file__).resolve().parents[1].parent / "shared" / "gtzan-mini"


class RecordingLogPosterior(torch.nn.Module):
    """Waveforms ``(batch, n_samples)`` -> log of each recording's mean element posterior ``(batch, n_labels)``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, y):
        out = []
        for signal in y.reshape(y.shape[0], -1):
            mags = complex_abs(stft(signal, self.model.stft))
            post = torch.softmax(self.model.logits(mags), -1)
            out.append(torch.log(recording_confidence(post).clamp_min(1e-30)))
        return torch.stack(out)


def judged(model, y, x, target, folder: Path, name: str):
    """Write ``y`` as a 16-bit WAV, decode and classify it: (success, SNR against ``x`` on the file)."""
    wav = folder / f"{name}.wav"
    audio.save(wav, np.asarray(y, np.float32), model.stft.sr, on_clip="clip")
    written, _ = audio.load(wav, sr=None)
    return classify_file(model, wav).label == target, snr_db(x, written)


def art_pgd(wrapper, n_labels, x, t_idx, eps, steps):
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(wrapper, loss=torch.nn.NLLLoss(), input_shape=(len(x),), nb_classes=n_labels,
                            clip_values=(-1.0, 1.0), device_type="cpu")
    pgd = ProjectedGradientDescent(clf, norm=2, eps=eps, eps_step=0.1 * eps, max_iter=steps, targeted=True,
                                   batch_size=1, verbose=False)
    return pgd.generate(x=x[None], y=np.eye(n_labels, dtype=np.float32)[[t_idx]])[0]


def foolbox_pgd(wrapper, x, t_idx, eps, steps):
    import foolbox as fb

    fmodel = fb.PyTorchModel(wrapper, bounds=(-1.0, 1.0))
    crit = fb.criteria.TargetedMisclassification(torch.tensor([t_idx]))
    pgd = fb.attacks.L2ProjectedGradientDescentAttack(rel_stepsize=0.1, steps=steps, random_start=False)
    _, clipped, _ = pgd(fmodel, torch.from_numpy(x)[None], crit, epsilons=eps)
    return clipped[0].numpy()


def foolbox_fmn(wrapper, x, t_idx, steps):
    import foolbox as fb

    fmodel = fb.PyTorchModel(wrapper, bounds=(-1.0, 1.0))
    crit = fb.criteria.TargetedMisclassification(torch.tensor([t_idx]))
    _, clipped, _ = fb.attacks.L2FMNAttack(steps=steps)(fmodel, torch.from_numpy(x)[None], crit, epsilons=None)
    return clipped[0].numpy()


def clips_and_targets(part, labels: list[str], n: int, sr: int):
    """The first ``n`` test clips of a partition, 30 s as 16-bit samples at ``sr`` Hz, each with a seeded
    always-wrong target: ``(index, samples, target, target index)``."""
    rng = np.random.default_rng(0)
    for i, entry in enumerate(part.items("test")[:n]):
        x, _ = audio.load(part.root / entry.path, sr=sr, duration=30.0)
        others = [lab for lab in labels if lab != entry.label]
        target = others[rng.integers(len(others))]
        yield i, audio.quantize_pcm16(x), target, labels.index(target)


def ball_norm(x: np.ndarray, snr: float) -> float:
    """The L2 norm of a change to ``x`` at ``snr`` dB."""
    return float(np.linalg.norm(x.astype(np.float64))) / 10 ** (snr / 20)


class QueryCounter:
    """A system seen as ART's black box: square images ``(N, 1, side, side)`` holding a waveform (zero-padded)
    in, each recording's confidences out, through the system's own ``predict_many``; it counts the queries."""

    def __init__(self, system, n_samples: int):
        self.system, self.n = system, n_samples
        self.side = int(np.ceil(np.sqrt(n_samples)))
        self.queries = 0

    def image(self, y: np.ndarray) -> np.ndarray:
        out = np.zeros(self.side * self.side, np.float32)
        out[: self.n] = y
        return out.reshape(1, 1, self.side, self.side)

    def waveform(self, image: np.ndarray) -> np.ndarray:
        return np.asarray(image, np.float32).reshape(-1)[: self.n]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        waves = [self.waveform(im) for im in images]
        self.queries += len(waves)
        preds = self.system.predict_many([magnitude(w, self.system.stft) for w in waves], waves,
                                         ["query"] * len(waves))
        return np.array([[p.confidence[k] for k in self.system.labels] for p in preds], np.float32)


def art_square(counter: QueryCounter, n_labels: int, x: np.ndarray, t_idx: int, eps: float, max_iter: int):
    """ART's SquareAttack (L2), targeted through its loss and criterion (ART's is untargeted by default)."""
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork

    clf = BlackBoxClassifierNeuralNetwork(counter, (1, counter.side, counter.side), n_labels, clip_values=(-1.0, 1.0))

    def loss(images, y):  # the margin towards the target, on log confidences (lower is better)
        conf = np.log(counter(images) + 1e-4)
        target = conf[:, t_idx].copy()
        conf[:, t_idx] = -np.inf
        return conf.max(1) - target

    square = SquareAttack(clf, norm=2, eps=eps, max_iter=max_iter, loss=loss, verbose=False,
                          adv_criterion=lambda y_pred, y: np.argmax(y_pred, 1) == np.argmax(y, 1))
    return counter.waveform(square.generate(counter.image(x), y=np.eye(n_labels, dtype=np.float32)[[t_idx]])[0])


def art_hopskipjump(counter: QueryCounter, n_labels: int, x: np.ndarray, t_idx: int, start: np.ndarray, max_iter: int):
    """ART's HopSkipJump (L2, targeted), started from a recording the system already labels with the target."""
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork

    clf = BlackBoxClassifierNeuralNetwork(counter, (1, counter.side, counter.side), n_labels, clip_values=(-1.0, 1.0))
    hsj = HopSkipJump(clf, targeted=True, norm=2, max_iter=max_iter, max_eval=1000, init_eval=100, verbose=False)
    return counter.waveform(hsj.generate(counter.image(x), y=np.eye(n_labels, dtype=np.float32)[[t_idx]],
                                         x_adv_init=counter.image(start))[0])


def black_box(args) -> None:
    """Query-only attacks side by side: musadv --black-box, ART's SquareAttack and HopSkipJump."""
    system = load_system(args.model)
    part = partitions.stratified(datasets.gtzan(GTZAN_MINI), (0.5, 0.25, 0.25), seed=0)
    n_clips = len(part.items("test")[: args.clips])
    snr = float(args.snr.split(",")[-1])
    rows = {}
    work = Path(tempfile.mkdtemp(prefix="musadv-peers-"))
    print(f"model {args.model}, {n_clips} test clips of gtzan-mini, {snr:g} dB, always-wrong targets; "
          f"Square: {args.square_iter} iterations, HopSkipJump: {args.hsj_iter}")
    for i, x, target, t_idx in clips_and_targets(part, system.labels, args.clips, system.stft.sr):
        eps = ball_norm(x, snr)
        t = time.perf_counter()
        r = attack(system, x, target, AttackConfig(snr_db=snr, stop="label", gradient="queries"))
        runs = [("musadv --black-box", r.audio, r.queries, time.perf_counter() - t)]
        counter = QueryCounter(system, len(x))
        t = time.perf_counter()
        y = art_square(counter, len(system.labels), x, t_idx, eps, args.square_iter)
        runs.append(("ART SquareAttack", y, counter.queries, time.perf_counter() - t))
        start = next((e for e in part.items("train") if e.label == target), None)
        if start is not None:
            s, _ = audio.load(part.root / start.path, sr=system.stft.sr, duration=30.0)
            s = np.pad(s, (0, max(0, len(x) - len(s))))[: len(x)]
            counter = QueryCounter(system, len(x))
            t = time.perf_counter()
            y = art_hopskipjump(counter, len(system.labels), x, t_idx, s, args.hsj_iter)
            runs.append(("ART HopSkipJump", y, counter.queries, time.perf_counter() - t))
        for name, y, queries, seconds in runs:
            ok, measured = judged(system, y, x, target, work, f"{i}-{name}".replace(" ", "_"))
            rows.setdefault(name, []).append((ok and measured >= snr - 0.05, measured, queries, seconds))
            # Each clip's figures as they come: a run stopped early still says what it measured.
            print(f"clip {i + 1}/{n_clips} {name:20s} success {int(rows[name][-1][0])} SNR {measured:.1f} dB "
                  f"queries {queries} {seconds:.1f} s", flush=True)
    print(f"\n{'method':20s} {'success':>8s} {'SNR dB median':>14s} {'queries median':>15s} {'s / example':>12s}")
    for name, v in rows.items():
        print(f"{name:20s} {sum(ok for ok, *_ in v):>4d}/{len(v):<3d} {statistics.median(s for _, s, _, _ in v):14.1f} "
              f"{statistics.median(q for _, _, q, _ in v):15.0f} {statistics.mean(t for *_, t in v):12.1f}")
    print(f"\nSuccess: the written 16-bit file, decoded, gets the target at an SNR of at least {snr:g} dB.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path, help="a musadv network trained on gtzan-mini's labels "
                    "(any system with --black-box)")
    ap.add_argument("--clips", type=int, default=5)
    ap.add_argument("--snr", default="30,20,15", help="SNR budgets in dB (--black-box: the last)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--black-box", action="store_true",
                    help="query-only attacks: musadv --black-box beside ART's SquareAttack and HopSkipJump")
    ap.add_argument("--square-iter", type=int, default=5000, help="--black-box: SquareAttack's iterations")
    ap.add_argument("--hsj-iter", type=int, default=10, help="--black-box: HopSkipJump's iterations")
    args = ap.parse_args()
    if args.black_box:
        black_box(args)
        return
    model = load_model(args.model).eval()
    model.requires_grad_(False)
    wrapper = RecordingLogPosterior(model).eval()
    part = partitions.stratified(datasets.gtzan(GTZAN_MINI), (0.5, 0.25, 0.25), seed=0)
    n_clips = len(part.items("test")[: args.clips])
    budgets = [float(v) for v in args.snr.split(",")]
    rows = {}  # (method, budget) -> list of (success, snr, seconds)
    work = Path(tempfile.mkdtemp(prefix="musadv-peers-"))
    print(f"model {args.model}, {n_clips} test clips of gtzan-mini, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for i, x, target, t_idx in clips_and_targets(part, model.labels, args.clips, model.stft.sr):
        for snr in budgets:
            eps = ball_norm(x, snr)
            t = time.perf_counter()
            r = attack(model, x, target, AttackConfig(snr_db=snr, max_iter=args.steps))
            runs = [("musadv", r.audio, time.perf_counter() - t)]
            for name, fn in (("ART PGD", lambda: art_pgd(wrapper, len(model.labels), x, t_idx, eps, args.steps)),
                             ("foolbox PGD", lambda: foolbox_pgd(wrapper, x, t_idx, eps, args.steps))):
                t = time.perf_counter()
                y = fn()
                runs.append((name, y, time.perf_counter() - t))
            for name, y, seconds in runs:
                ok, measured = judged(model, y, x, target, work, f"{i}-{name}-{snr}".replace(" ", "_"))
                rows.setdefault((name, snr), []).append((ok, measured, seconds))
        t = time.perf_counter()
        r = minimize(model, x, target, AttackConfig(snr_db=min(budgets), max_iter=args.steps))
        runs = [("musadv --minimize", r.audio, time.perf_counter() - t)]
        t = time.perf_counter()
        y = foolbox_fmn(wrapper, x, t_idx, args.steps)
        runs.append(("foolbox FMN (L2)", y, time.perf_counter() - t))
        for name, y, seconds in runs:
            ok, measured = judged(model, y, x, target, work, f"{i}-{name}".replace(" ", "_"))
            rows.setdefault((name, "minimal"), []).append((ok, measured, seconds))
        print(f"clip {i + 1}/{n_clips} done", flush=True)
    print(f"\n{'method':20s} {'budget':>8s} {'success':>8s} {'SNR dB median':>14s} {'min':>6s} {'s / example':>12s}")
    for (name, budget), v in rows.items():
        # An unchanged file (the model already said the target) has SNR inf: it counts as the largest.
        snrs = [s for _, s, _ in v]
        print(f"{name:20s} {str(budget):>8s} {sum(ok for ok, _, _ in v):>4d}/{len(v):<3d} "
              f"{statistics.median(snrs):14.1f} {min(snrs):6.1f} {statistics.mean(s for _, _, s in v):12.2f}")
    print("\nSuccess: the written 16-bit file, decoded, gets the target. For the minimal attacks a higher SNR is better"
          " (a smaller change); their success counts examples that reached the target at any SNR.")


if __name__ == "__main__":
    main()

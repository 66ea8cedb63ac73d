"""Training the networks on a spectra cache, as the reference code does, with resumable checkpoints.

SGD with momentum rising linearly (0.5 to 0.9) and the learning rate falling linearly (to 1 %)
over the first epochs, early stopping on the validation misclassification rate of elements
(stop when it has not improved by 0.1 % for 10 epochs), keeping the best model on validation.

Every epoch ends with an atomic checkpoint (safetensors + JSON) in the output directory, so a
Ctrl-C or a kill loses at most the epoch in progress and ``resume=True`` continues from there.
Shuffling and dropout are seeded per epoch, so a resumed run gives the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .adversarial_training import batch_loss, check_config, noisy_elements
from .progress import progress_bar
from .cache import SpectraCache
from .errors import MusadvError
from .interface import evaluating, recording_confidence
from .io import atomic_path, write_json_atomic
from .models import build, load_model, save_model

__all__ = ["TrainConfig", "ElementData", "train", "standardisation_stats"]


@dataclass
class TrainConfig:
    """Optimisation settings. :meth:`reference` gives the authors' settings for each architecture.

    Attributes
    ----------
    lr : float
        Initial learning rate.
    lr_final : float
        Learning rate reached after ``schedule_epochs``, as a fraction of ``lr``.
    momentum_start, momentum_end : float
        Momentum at epoch 0 and after ``schedule_epochs`` (linear in between).
    schedule_epochs : int
        Epochs over which the learning rate and momentum schedules run.
    batch_size : int
        Elements (frames or patches) per SGD step.
    max_epochs : int
    patience : int
        Stop when validation error has not improved for this many epochs.
    min_improvement : float
        Relative decrease of validation error that counts as an improvement (0.001 = 0.1 %).
    seed : int
        Seeds the initial weights, the shuffling and dropout.
    adversarial : {None, 'fgsm', 'fgsm_reference', 'pgd', 'trades'}
        Train on adversarial versions of each batch (see :mod:`musadv.adversarial_training`).
        ``'fgsm'``: Alg. 2, a sign step of ``adv_step`` on raw magnitudes towards a label other
        than the truth, the adversarial elements joining (or partly replacing) the batch.
        ``'fgsm_reference'``: what the reference code does: the step in standardised units, each
        adversarial batch projected onto a 15 dB SNR ball, targets drawn from all labels, and
        training on the adversarial batch alone.
        ``'pgd'``: Madry et al.'s ``adv_steps``-step projected attack from a random start within
        ``adv_snr_db`` of each element, joining (or partly replacing) the batch.
        ``'trades'``: the clean cross-entropy plus ``trades_beta`` times the KL divergence between
        the clean outputs and those of the ``adv_steps``-step attack within ``adv_snr_db``.
    adv_step : float
        Step mu of the sign step (the paper: 0.25), ``'fgsm'`` and ``'fgsm_reference'``.
    adv_fraction : float or None
        ``'fgsm'`` and ``'pgd'``. ``None``: each batch is joined by the adversarial versions of
        all its elements; a fraction F in (0, 1]: that share of the batch is replaced by them
        (1: Madry et al.'s training on adversarial elements alone).
    adv_snr_db : float
        ``'pgd'`` and ``'trades'``: the budget, the smallest SNR in dB of an element's change
        (measured on the magnitudes of the frame or patch).
    adv_steps : int
        ``'pgd'`` and ``'trades'``: gradient steps of the attack, each ``2.5 / adv_steps`` radii.
    trades_beta : float
        ``'trades'``: the weight beta of the divergence (Zhang et al.: 1 to 6; 0 is plain training).
    noise_snr_db : float or None
        Train on every batch as it would be with white noise in the waveform, this many dB below a
        recording at -20 dBFS (the level of ``smooth:MODEL@SNR``, :mod:`musadv.smoothing`); the
        adversaries, if any, start from the noisy batch.
    """

    lr: float = 0.01
    lr_final: float = 0.01
    momentum_start: float = 0.5
    momentum_end: float = 0.9
    schedule_epochs: int = 50
    batch_size: int = 1200
    max_epochs: int = 200
    patience: int = 10
    min_improvement: float = 0.001
    seed: int = 0
    adversarial: str | None = None
    adv_step: float = 0.25
    adv_fraction: float | None = None
    adv_snr_db: float = 30.0
    adv_steps: int = 5
    trades_beta: float = 6.0
    noise_snr_db: float | None = None

    @classmethod
    def reference(cls, arch: str, **overrides) -> "TrainConfig":
        """The reference code's settings: DNN lr 0.01, batch 1200; CDNN lr 0.001, batch 5, 30 epochs."""
        base = {"dnn": {}, "cdnn": {"lr": 0.001, "batch_size": 5, "max_epochs": 30}}[arch]
        return cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})

    def lr_at(self, epoch: int) -> float:
        frac = min(epoch, self.schedule_epochs) / max(1, self.schedule_epochs)
        return self.lr * (1 - (1 - self.lr_final) * frac)

    def momentum_at(self, epoch: int) -> float:
        frac = min(epoch, self.schedule_epochs) / max(1, self.schedule_epochs)
        return self.momentum_start + (self.momentum_end - self.momentum_start) * frac


class ElementData:
    """The elements of one split of a cache, ready for batching.

    All frames of the split are read once into one contiguous float32 array (one copy of the
    data in memory); an element is a start row into it, so frames and patches alike are
    gathered per batch with a single index operation. :meth:`standardize_` turns that array
    into the networks' standardised inputs once, instead of once per batch and epoch.

    Parameters
    ----------
    cache : SpectraCache
    split : str
    element_frames : int
        1 for frames, e.g. 100 for patches (non-overlapping within each recording).
    labels : list of str
        Label order of the model.
    """

    def __init__(self, cache: SpectraCache, split: str, element_frames: int, labels: list[str]):
        entries = cache.split(split)
        self.entries = entries
        self.element_frames = element_frames
        n_total = sum(e.n_frames for e in entries)
        frames = np.empty((n_total, cache.config.n_bins), np.float32)
        starts, labels_idx, recs = [], [], []
        pos = 0
        index = {lab: i for i, lab in enumerate(labels)}
        for r, e in enumerate(entries):
            frames[pos : pos + e.n_frames] = cache.frames(e)
            n_el = e.n_frames // element_frames
            starts.append(pos + element_frames * np.arange(n_el))
            labels_idx.append(np.full(n_el, index[e.label]))
            recs.append(np.full(n_el, r))
            pos += e.n_frames
        self.frames = torch.from_numpy(frames)
        cat = lambda xs: torch.from_numpy(np.concatenate(xs).astype(np.int64)) if xs else torch.zeros(0, dtype=torch.int64)
        self.starts, self.labels, self.recording = cat(starts), cat(labels_idx), cat(recs)
        self._offsets = torch.arange(element_frames)
        self.standardized = False

    def standardize_(self, mean: torch.Tensor, std: torch.Tensor, chunk: int = 65536) -> None:
        """Replace the frames by ``(frames - mean) / std`` per bin, in place, a chunk at a time.

        Give a model's own ``standardize.mean`` and ``standardize.std``: the values are then
        bit for bit what the model's standardisation layer would compute batch by batch.
        """
        for i in range(0, len(self.frames), chunk):
            self.frames[i : i + chunk].sub_(mean).div_(std)
        self.standardized = True

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, idx: torch.Tensor, out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Elements ``(len(idx), element_frames, n_bins)`` and their label indices.

        With ``out`` (at least ``len(idx) * element_frames`` rows) the frames are gathered into
        that buffer: reusing one buffer per epoch spares allocating (and page-faulting) a fresh
        batch-sized array every step. The returned elements are then a view of ``out``.
        """
        rows = self.starts[idx]
        if self.element_frames > 1:
            rows = (rows[:, None] + self._offsets).reshape(-1)
        if out is None:
            x = self.frames.index_select(0, rows)
        else:
            x = torch.index_select(self.frames, 0, rows, out=out[: len(rows)])
        return x.view(len(idx), self.element_frames, -1), self.labels[idx]


def standardisation_stats(frames: torch.Tensor, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard deviation of magnitude frames ``(n, n_bins)`` (float64 sums)."""
    s = torch.zeros(frames.shape[1], dtype=torch.float64)
    s2 = torch.zeros_like(s)
    for i in range(0, len(frames), chunk):
        x = frames[i : i + chunk].double()
        s += x.sum(0)
        s2 += (x * x).sum(0)
    n = len(frames)
    mean = s / n
    var = (s2 / n - mean * mean).clamp_min(0)
    return mean.numpy(), var.sqrt().numpy()


def _error_rate(model, data: ElementData, batch: int) -> tuple[float, float]:
    """Element misclassification rate and recording error rate (eq. 3-4) of a split."""
    if len(data) == 0:
        return float("nan"), float("nan")
    post = []
    with evaluating(model), torch.no_grad():
        for i in range(0, len(data), batch):
            x, _ = data.batch(torch.arange(i, min(i + batch, len(data))))
            x = x.to(model.device)
            logits = model(x, standardized=True) if data.standardized else model(x)
            post.append(torch.softmax(logits, -1).cpu())
    post = torch.cat(post)
    element_err = (post.argmax(1) != data.labels).double().mean().item()
    n_rec = int(data.recording.max()) + 1
    conf = recording_confidence(post, data.recording, n_rec)
    rec_labels = torch.zeros(n_rec, dtype=torch.int64).index_copy_(0, data.recording, data.labels)
    rec_err = (conf.argmax(1) != rec_labels).double().mean().item()
    return element_err, rec_err


def _save_checkpoint(out: Path, model, optimizer, best_state, meta: dict) -> None:
    tensors = {f"model/{k}": v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    tensors.update({f"best/{k}": v.to("cpu", copy=True) for k, v in best_state.items()})
    for i, st in optimizer.state_dict()["state"].items():
        if "momentum_buffer" in st and st["momentum_buffer"] is not None:
            tensors[f"momentum/{i}"] = st["momentum_buffer"].to("cpu", copy=True)
    with atomic_path(out / "checkpoint.safetensors", ".safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    write_json_atomic(out / "checkpoint.json", meta)


def _load_checkpoint(out: Path, model, optimizer) -> tuple[dict, dict]:
    meta = json.loads((out / "checkpoint.json").read_text())
    tensors = load_file(str(out / "checkpoint.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best/")}
    state = optimizer.state_dict()
    state["state"] = {int(k[9:]): {"momentum_buffer": v} for k, v in tensors.items() if k.startswith("momentum/")}
    optimizer.load_state_dict(state)
    return meta, best


def _log(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


def train(
    cache: SpectraCache,
    arch: dict,
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
    log: Callable[[str], None] = _log,
    device: torch.device | str = "cpu",
):
    """Train a network on the ``train`` split of a cache, early-stopping on ``valid``.

    Parameters
    ----------
    cache : SpectraCache
    arch : dict
        Architecture, e.g. ``{'arch': 'dnn', 'hidden': 50, 'layers': 3, 'dropout': 0.0}`` or
        ``{'arch': 'cdnn', 'patch': 100, ...}`` (see :func:`musadv.models.build`).
    out_dir : path
        Model directory: the best model (``model.safetensors``, ``model.json``) and the
        per-epoch checkpoint are written here.
    config : TrainConfig, optional
        Default: :meth:`TrainConfig.reference` for the architecture.
    resume : bool
        Continue from the checkpoint in ``out_dir``. Without it, an existing checkpoint is
        an error (nothing is overwritten by accident).
    progress : bool
        Show a progress bar over the batches of each epoch.
    on_epoch : callable, optional
        Called with each epoch's history record after its checkpoint is written.
    log : callable
        Receives one line per epoch (epoch, train loss, validation error, time).
    device : torch.device or str
        Where the network and each batch are (see :func:`musadv.devices.resolve_device`); the
        elements stay in CPU memory and go over a batch at a time.

    Returns
    -------
    model
        The best model on validation as saved in ``out_dir`` (reloaded from there, on
        ``device``), in evaluation mode. An epoch whose loss is not finite ends training (it
        diverged): the best epoch before it is kept, and ``info['training']['diverged_epoch']``
        names the epoch (None when training did not diverge).
    """
    out = Path(out_dir)
    config = config or TrainConfig.reference(arch["arch"])
    check_config(config)
    torch.manual_seed(config.seed)
    model = build(arch, cache.labels, cache.config)
    train_data = ElementData(cache, "train", model.element_frames, cache.labels)
    valid_data = ElementData(cache, "valid", model.element_frames, cache.labels)
    if len(train_data) == 0:
        raise MusadvError(f"{cache.path}: the train split has no element of {model.element_frames} frames")
    mean, std = standardisation_stats(train_data.frames)
    model.standardize.fit(mean, std)
    for data in (train_data, valid_data):
        data.standardize_(model.standardize.mean, model.standardize.std)
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum_start)
    run = {"arch": model.config(), "train": asdict(config), "cache": str(Path(cache.path).resolve())}
    history: list[dict] = []
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best = {"epoch": -1, "valid_error": None}
    start_epoch, stale, diverged = 0, 0, None
    if (out / "checkpoint.json").exists():
        if not resume:
            raise MusadvError(f"{out}: holds a checkpoint of an earlier run; use --resume to continue it or choose another --out")
        meta, best_state = _load_checkpoint(out, model, optimizer)
        # Settings added since the checkpoint was written read as their defaults, which is what it trained with.
        meta["run"]["train"] = {**asdict(TrainConfig()), **meta["run"]["train"]}
        if meta["run"] != json.loads(json.dumps(run)):
            raise MusadvError(f"{out}: the checkpoint was made with other settings; cannot resume with these")
        history, best, stale, diverged = meta["history"], meta["best"], meta["stale"], meta.get("diverged")
        start_epoch = meta["epoch"] + 1
        if meta.get("finished"):
            log(f"{out}: training already finished at epoch {meta['epoch']}")
            start_epoch = config.max_epochs
    out.mkdir(parents=True, exist_ok=True)
    model.train()
    eval_batch = max(1, 8192 // model.element_frames)
    for epoch in range(start_epoch, config.max_epochs):
        if stale >= config.patience:
            break
        t0 = time.perf_counter()
        lr, mom = config.lr_at(epoch), config.momentum_at(epoch)
        for g in optimizer.param_groups:
            g["lr"], g["momentum"] = lr, mom
        order = torch.from_numpy(np.random.default_rng([config.seed, epoch]).permutation(len(train_data)))
        torch.manual_seed(config.seed * 100_003 + epoch)  # dropout masks of this epoch
        # The attacks' random starts have their own stream: the shuffling and dropout stay plain training's.
        starts = torch.Generator(device=device).manual_seed(int(np.random.SeedSequence([config.seed, epoch, 1]).generate_state(1)[0]))
        losses, sizes = [], []
        buffer = torch.empty(config.batch_size * model.element_frames, train_data.frames.shape[1])
        batches = range(0, len(order), config.batch_size)
        for i in progress_bar(batches, desc=f"epoch {epoch}", leave=False, enabled=progress, unit="batch"):
            # The buffer is free again: the previous step's graph was released by backward().
            x, y = train_data.batch(order[i : i + config.batch_size], out=buffer)
            x, y = x.to(device), y.to(device)
            if config.noise_snr_db is not None:
                x = noisy_elements(model, x, config.noise_snr_db, starts)
            loss, n = batch_loss(model, x, y, config, starts)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())  # no .item(): no per-step conversion to Python
            sizes.append(n)
        train_seconds = time.perf_counter() - t0
        valid_err, valid_rec_err = _error_rate(model, valid_data, eval_batch)
        record = {"epoch": epoch, "train_loss": float(torch.stack(losses).double().cpu() @ torch.tensor(sizes, dtype=torch.float64)) / sum(sizes), "valid_error": valid_err,
                  "valid_recording_error": valid_rec_err, "lr": lr, "momentum": mom,
                  "train_seconds": train_seconds, "seconds": time.perf_counter() - t0}
        history.append(record)
        if not np.isfinite(record["train_loss"]):
            diverged = epoch  # the weights are no longer numbers: more epochs would train nothing
        else:
            # Without a validation split every epoch counts as the best (the last one is kept).
            best_err = np.inf if best["valid_error"] is None else best["valid_error"]
            if np.isnan(valid_err) or valid_err < best_err * (1 - config.min_improvement):
                best = {"epoch": epoch, "valid_error": None if np.isnan(valid_err) else valid_err}
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                stale = 0
            else:
                stale += 1
        finished = diverged is not None or stale >= config.patience or epoch + 1 >= config.max_epochs
        _save_checkpoint(out, model, optimizer, best_state,
                         {"run": run, "epoch": epoch, "history": history, "best": best, "stale": stale,
                          "finished": finished, "diverged": diverged})
        if diverged is not None:
            log(f"epoch {epoch:3d}  train loss {record['train_loss']}: training diverged; the best epoch before it is kept")
            break
        log(f"epoch {epoch:3d}  train loss {record['train_loss']:.4f}  valid error {valid_err:.4f} "
            f"(recordings {valid_rec_err:.3f})  lr {lr:.2g}  momentum {mom:.2f}  {record['seconds']:.1f} s"
            + ("  *" if best["epoch"] == epoch else ""))
        if on_epoch is not None:
            on_epoch(record)
    model.load_state_dict(best_state)
    info = {
        "training": {**run, "history": history, "best_epoch": best["epoch"],
                     "best_valid_error": best["valid_error"], "diverged_epoch": diverged},
        "data": {"offset": cache.offset, "duration": cache.duration, "cache": run["cache"]},
        "partition": json.loads((Path(cache.path) / "partition.json").read_text()),
    }
    save_model(model, out, info)
    return load_model(out).to(device)

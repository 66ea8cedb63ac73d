"""The paper's networks (DNN on frames, CDNN on patches) and their safe model files.

Both are :class:`~musadv.interface.DifferentiableClassifier` classifiers: ``model.logits(mags)`` cuts a
recording's magnitude frames ``(n_frames, n_bins)`` into non-overlapping elements
(``model.elements``: ``element_frames`` = 1 frame for the DNN, a patch of 100 for the CDNN, as
the reference code) and gives their logits, differentiable in the raw magnitudes.

The standardisation (training-set mean and standard deviation per input dimension) is a fixed
first layer, so a network's input is the raw magnitude spectrum, which is what the adversary
changes. ``model(elements, standardized=True)`` skips that layer for elements already
standardised: the trainer standardises its frames once instead of once per batch and epoch. A model is saved as a directory with ``model.safetensors`` (weights) and
``model.json`` (architecture, labels, STFT settings, partition, training history): loading it
never unpickles anything.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import ModelError
from .interface import AudioClassifier, DifferentiableClassifier
from .io import atomic_path, read_tagged_json, write_json_atomic
from .spectral import STFTConfig

__all__ = ["Standardize", "DNN", "CDNN", "build", "save_model", "write_model_files", "load_model", "ModelError", "check_compatible", "check_finite_weights",
           "weights_sha256"]

FORMAT = "musadv-model"


class Standardize(nn.Module):
    """Fixed per-dimension standardisation ``(x - mean) / std`` (not trained).

    Parameters
    ----------
    n_bins : int
        Frequency bins per frame; statistics are per bin and broadcast over the frames of an
        element, so the DNN and the CDNN share them.
    """

    def __init__(self, n_bins: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_bins))
        self.register_buffer("std", torch.ones(n_bins))

    def fit(self, mean: np.ndarray, std: np.ndarray, floor: float = 1e-8) -> None:
        """Set the statistics (``std`` is floored to keep constant bins finite)."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.maximum(std, floor), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class _ElementModel(nn.Module, DifferentiableClassifier):
    """Common part of the paper's networks: labels, STFT settings, standardisation, cutting frames into elements."""

    arch: str = ""
    element_frames: int = 1

    def __init__(self, labels: list[str], stft: STFTConfig):
        super().__init__()
        self.labels = list(labels)
        self.stft = stft
        self.standardize = Standardize(stft.n_bins)
        self.info, self.path = {}, None

    def _standardized(self, elements: torch.Tensor, standardized: bool) -> torch.Tensor:
        return elements if standardized else self.standardize(elements)

    def elements(self, frames: torch.Tensor) -> torch.Tensor:
        """Non-overlapping elements of a recording's frames.

        Parameters
        ----------
        frames : torch.Tensor
            Magnitudes ``(n_frames, n_bins)``.

        Returns
        -------
        torch.Tensor
            ``(n_frames // element_frames, element_frames, n_bins)``; trailing frames that do
            not fill an element are left out. A view of ``frames`` (gradients flow through).
        """
        n = frames.shape[0] // self.element_frames
        return frames[: n * self.element_frames].reshape(n, self.element_frames, frames.shape[-1])

    def logits(self, mags: torch.Tensor, phase: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(n_elements, n_labels)`` of a recording's magnitudes ``(n_frames, n_bins)`` (``phase`` unused)."""
        return self(self.elements(mags))

    def logits_many(self, mags: list[torch.Tensor], phases: list) -> list[torch.Tensor]:
        """:meth:`logits` of several recordings from one pass over all their elements."""
        elements = [self.elements(m) for m in mags]
        return list(self(torch.cat(elements)).split([len(e) for e in elements]))

    def config(self) -> dict:
        raise NotImplementedError


class DNN(_ElementModel):
    """Fully connected network on single magnitude frames (paper section II-C).

    Parameters
    ----------
    labels : list of str
        Output labels, in order.
    stft : STFTConfig
        Analysis settings the input frames come from (513 bins by default).
    hidden : int
        Units per hidden layer (the paper: 50 or 500).
    layers : int
        Number of hidden layers (the paper: 3).
    dropout : float
        Dropout probability after each hidden layer (0: none).
    """

    arch = "dnn"
    element_frames = 1

    def __init__(self, labels, stft: STFTConfig = STFTConfig(), hidden: int = 50, layers: int = 3, dropout: float = 0.0):
        super().__init__(labels, stft)
        self.hidden, self.layers, self.dropout = hidden, layers, dropout
        dims = [stft.n_bins] + [hidden] * layers
        self.hidden_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.drop = nn.Dropout(dropout)
        self.output = nn.Linear(dims[-1], len(self.labels))

    def activations(self, elements: torch.Tensor, standardized: bool = False) -> list[torch.Tensor]:
        """ReLU outputs of every hidden layer, each ``(n_elements, hidden)``."""
        h = self._standardized(elements.reshape(elements.shape[0], -1), standardized)
        out = []
        for layer in self.hidden_layers:
            h = torch.relu(layer(h))
            out.append(h)
            h = self.drop(h)
        return out

    def forward(self, elements: torch.Tensor, standardized: bool = False) -> torch.Tensor:
        """Logits ``(n_elements, n_labels)`` of elements ``(n_elements, 1, n_bins)``.

        ``standardized``: the elements are already ``(x - mean) / std`` (see the module notes).
        """
        return self.output(self.drop(self.activations(elements, standardized)[-1]))

    def config(self) -> dict:
        return {"arch": self.arch, "hidden": self.hidden, "layers": self.layers, "dropout": self.dropout}


class _InputGradientConv(torch.autograd.Function):
    """A one-channel 2-D convolution whose input gradient is computed with FFTs along frequency.

    The adversary needs the gradient of a CDNN's first convolution (32 filters of 4 x 400 over
    one channel) with respect to its input only. PyTorch's default backward for so wide a
    kernel on the CPU is several times slower than its forward; the same sum, taken as products
    of FFTs along frequency (:func:`conv_input_gradient`), costs a fraction of it
    (``benchmarks/bench_attack.py`` compares them side by side). Weights get no gradient here.
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(weight)
        ctx.input_shape = x.shape
        return torch.nn.functional.conv2d(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        return conv_input_gradient(grad_out, weight, ctx.input_shape), None, None


def conv_input_gradient(grad_out: torch.Tensor, weight: torch.Tensor, input_shape) -> torch.Tensor:
    """Gradient of a stride-1, unpadded, one-channel ``conv2d`` with respect to its input.

    Parameters
    ----------
    grad_out : torch.Tensor
        ``(n, filters, rows_out, cols_out)``.
    weight : torch.Tensor
        ``(filters, 1, kernel_rows, kernel_cols)``.
    input_shape : torch.Size
        ``(n, 1, rows_out + kernel_rows - 1, cols_out + kernel_cols - 1)``.

    Returns
    -------
    torch.Tensor
        Shaped ``input_shape``; equal to ``torch.nn.grad.conv2d_input`` to float rounding.
    """
    n, filters, rows, cols = grad_out.shape
    k_rows, width = weight.shape[2], input_shape[-1]
    # Along frequency each output row spreads back over the input as a full convolution with each kernel
    # row, ``cols + k_cols - 1 = width`` samples long: a product of FFTs of that length, summed over filters.
    spread = torch.einsum("nfrc,fkc->nrkc", torch.fft.rfft(grad_out, n=width), torch.fft.rfft(weight[:, 0], n=width))
    parts = torch.fft.irfft(spread, n=width)  # (n, rows, k_rows, width)
    grad = grad_out.new_zeros(n, rows + k_rows - 1, width)
    for k in range(k_rows):
        grad[:, k:k + rows] += parts[:, :, k]
    return grad.unsqueeze(1)


class _FirstConv(nn.Conv2d):
    """The CDNN's first convolution (one input channel): fast input gradients when the weights are fixed.

    Training (weights that need gradients) takes PyTorch's own path; the attack, which needs
    only the input gradient, takes :class:`_InputGradientConv`. Same parameters, same files.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        trains = self.weight.requires_grad or (self.bias is not None and self.bias.requires_grad)
        if trains or not (torch.is_grad_enabled() and x.requires_grad):
            return super().forward(x)
        return _InputGradientConv.apply(x, self.weight, self.bias)


class CDNN(_ElementModel):
    """Convolutional network on patches of consecutive frames (reference ``mlp_rlu_conv2.yaml``).

    Input ``patch`` frames x ``n_bins`` bins; conv ``filters`` of ``kernel1`` (time x frequency),
    ReLU, max-pool ``pool`` stride ``pool_stride``; conv ``filters`` of ``kernel2``, ReLU,
    max-pool; fully connected ``hidden`` ReLU; output layer. The defaults are the paper's:
    32 filters of 4 x 400, then 32 of 8 x 8, pools 4 x 4 stride 2 x 2, 50 hidden units, 100 frames.

    Parameters
    ----------
    labels : list of str
    stft : STFTConfig
    patch : int
        Frames per element (100 = 2.3 s at the paper's settings).
    filters : int
    kernel1, kernel2 : (int, int)
        Convolution kernel sizes (frames, bins).
    pool, pool_stride : (int, int)
    hidden : int
    dropout : float
    """

    arch = "cdnn"

    def __init__(
        self,
        labels,
        stft: STFTConfig = STFTConfig(),
        patch: int = 100,
        filters: int = 32,
        kernel1=(4, 400),
        kernel2=(8, 8),
        pool=(4, 4),
        pool_stride=(2, 2),
        hidden: int = 50,
        dropout: float = 0.0,
    ):
        super().__init__(labels, stft)
        self.element_frames = patch
        self.settings = {"patch": patch, "filters": filters, "kernel1": list(kernel1), "kernel2": list(kernel2),
                         "pool": list(pool), "pool_stride": list(pool_stride), "hidden": hidden, "dropout": dropout}
        self.features = nn.Sequential(
            _FirstConv(1, filters, tuple(kernel1)),
            nn.ReLU(),
            nn.MaxPool2d(tuple(pool), tuple(pool_stride)),
            nn.Conv2d(filters, filters, tuple(kernel2)),
            nn.ReLU(),
            nn.MaxPool2d(tuple(pool), tuple(pool_stride)),
        )
        try:
            with torch.no_grad():
                n_flat = self.features(torch.zeros(1, 1, patch, stft.n_bins)).numel()
        except RuntimeError:
            raise ModelError(
                f"CDNN: a patch of {patch} frames x {stft.n_bins} bins is too small for kernels "
                f"{list(kernel1)}, {list(kernel2)} and pools {list(pool)}"
            ) from None
        self.fc = nn.Linear(n_flat, hidden)
        self.drop = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, len(self.labels))

    def activations(self, elements: torch.Tensor, standardized: bool = False) -> list[torch.Tensor]:
        """Output of the fully connected hidden layer, ``[(n_elements, hidden)]``."""
        h = self.features(self._standardized(elements, standardized).unsqueeze(1))
        return [torch.relu(self.fc(h.flatten(1)))]

    def forward(self, elements: torch.Tensor, standardized: bool = False) -> torch.Tensor:
        """Logits ``(n_elements, n_labels)`` of elements ``(n_elements, patch, n_bins)``.

        ``standardized``: the elements are already ``(x - mean) / std`` (see the module notes).
        """
        return self.output(self.drop(self.activations(elements, standardized)[-1]))

    def config(self) -> dict:
        return {"arch": self.arch, **self.settings}


def build(config: dict, labels: list[str], stft: STFTConfig = STFTConfig()) -> _ElementModel:
    """Make an untrained network from a ``config()`` dict (``{'arch': 'dnn', 'hidden': 50, ...}``)."""
    cfg = dict(config)
    arch = cfg.pop("arch", None)
    if arch == "dnn":
        return DNN(labels, stft, **cfg)
    if arch == "cdnn":
        return CDNN(labels, stft, **cfg)
    raise ModelError(f"unknown architecture {arch!r} (expected 'dnn' or 'cdnn')")


def write_model_files(path: str | os.PathLike, config: dict, labels: list[str], stft: STFTConfig,
                      tensors: dict | None = None, info: dict | None = None) -> Path:
    """Write a model directory: ``model.json`` and, if given, ``model.safetensors``.

    Every kind of system (network, forest, baseline) is saved through this one writer, so
    every model directory is read by :func:`read_model_info` and none needs unpickling.

    Parameters
    ----------
    path : path
        Directory to write (created).
    config : dict
        ``{'arch': NAME, ...}``: what :func:`musadv.systems.load_system` builds.
    labels : list of str
    stft : STFTConfig
    tensors : dict of str to torch.Tensor or np.ndarray, optional
        Weights or statistics, stored in safetensors.
    info : dict, optional
        More to record in ``model.json`` (training data, partition, settings, history).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if tensors is not None:
        state = {k: torch.as_tensor(v).detach().contiguous().cpu() for k, v in tensors.items()}
        with atomic_path(path / "model.safetensors", ".safetensors") as tmp:
            save_file(state, str(tmp))
    meta = {"format": FORMAT, "version": 1, "config": config, "labels": list(labels), "stft": stft.to_dict(), **(info or {})}
    write_json_atomic(path / "model.json", meta)
    return path


def save_model(model: _ElementModel, path: str | os.PathLike, info: dict | None = None) -> Path:
    """Save a network as a directory: ``model.safetensors`` and ``model.json`` (see :func:`write_model_files`)."""
    return write_model_files(path, model.config(), model.labels, model.stft, model.state_dict(), info)


def read_model_info(path: str | os.PathLike) -> dict:
    """The ``model.json`` of a saved model."""
    path = Path(path)
    meta_file = path / "model.json" if path.is_dir() else path
    return read_tagged_json(meta_file, FORMAT, ModelError, "not a musadv model (no model.json)", "not a musadv model file")


def load_model(path: str | os.PathLike) -> _ElementModel:
    """Load a model saved by :func:`save_model` (weights from safetensors; no pickle).

    The returned model is in evaluation mode; ``model.info`` holds its ``model.json`` and
    ``model.path`` the directory it came from.
    """
    path = Path(path)
    meta = read_model_info(path)
    model = build(meta["config"], meta["labels"], STFTConfig.from_dict(meta["stft"]))
    try:
        state = load_file(str(path / "model.safetensors"))
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"{path / 'model.safetensors'}: cannot be read ({exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit the architecture in model.json ({str(exc).splitlines()[0]})") from None
    check_finite_weights(model, str(path))
    model.info = meta
    model.path = path
    return model.eval()


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of a network's weights and buffers (names, shapes, dtypes and values, in name order).

    Identifies the model an attack run was made with, whatever file it was loaded from.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def check_compatible(model: AudioClassifier, stft: STFTConfig, labels: list[str] | None = None, what: str = "data") -> None:
    """Raise :class:`ModelError` if a model is asked to judge data it was not made for.

    Parameters
    ----------
    stft : STFTConfig
        Analysis settings of the data.
    labels : list of str, optional
        Labels of the data; every one must be among the model's.
    what : str
        Name of the data for the message (a cache folder, a file).
    """
    if stft != model.stft:
        raise ModelError(
            f"{what}: analysed with {stft.to_dict()}, but the model was trained on {model.stft.to_dict()}; "
            "prepare the data with the model's settings"
        )
    if labels is not None:
        # Labels the system declares it has no output for are left out of its judgements, not refused.
        unknown = [lab for lab in labels if lab not in model.labels and lab not in model.uncovered_labels]
        if unknown:
            raise ModelError(f"{what}: labels {unknown} are not among the model's labels {model.labels}")


def check_finite_weights(module: torch.nn.Module, name: str) -> None:
    """Refuse a network whose parameters or buffers are not all finite: it would give every
    recording the same label with confidence NaN.

    Raises
    ------
    ModelError
        Naming ``name`` and the first tensor that holds NaN or infinity.
    """
    for key, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ModelError(f"{name}: its weights hold NaN or infinity ({key}); the model file is broken")

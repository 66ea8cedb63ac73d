"""musicnn's published taggers (Pons & Serra, 2019) rebuilt in PyTorch, with the weights the PyPI wheel ships.

The ``musicnn`` package (0.1.0) holds four TensorFlow-1 checkpoints, each a tagger of 50 tags:
``MSD_musicnn`` and ``MTT_musicnn`` (the musically motivated CNN: timbral and temporal
convolutions, a dense mid-end, temporal pooling) and ``MSD_vgg`` and ``MTT_vgg`` (a VGG-like
baseline), trained on the Million Song Dataset and MagnaTagATune. The package's own code needs
TensorFlow and legacy Keras and, under NumPy 2, returns NaN; musadv uses only its weights,
read by :mod:`musadv.tfcheckpoint`, in networks rebuilt here layer for layer (TensorFlow's
batch-norm epsilon, its "same" padding, its NHWC flattening order).

What each network hears is what the package computes: audio at 16 kHz, a 512-point STFT with
hop 256 (centred, periodic Hann), 96 Slaney mel bands of the power spectrum and
``log10(1 + 10000 mel)``, cut into non-overlapping patches of 187 frames (3 s); a recording's
tag likelihoods are the mean over its patches of the sigmoid of each patch's logits. The
front end is :class:`musadv.wrappers.TorchClassifier`'s log-mel one:
``log10(1 + 10000 m) = (ln(m + 1e-4) + 4 ln 10) / ln 10`` is its ``log(m + offset)`` with
offset 1e-4, standardised with mean ``-4 ln 10`` and standard deviation ``ln 10``.

:func:`load_musicnn` returns a tagger (labels: the 50 tags) or, given a map from a dataset's
labels to tags (:mod:`musadv.taggers`), a system whose labels are the dataset's.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .models import ModelError
from .spectral import STFTConfig
from .taggers import TagSelect
from .tfcheckpoint import read_checkpoint
from .wrappers import TorchClassifier

__all__ = ["MODELS", "MSD_TAGS", "MTT_TAGS", "STFT", "PATCH_FRAMES", "N_MELS", "Musicnn", "VGG", "weights_dir",
           "load_musicnn", "build_network"]

#: musicnn's analysis: 16 kHz, n_fft 512, hop 256 (``configuration.py`` of the package).
STFT = STFTConfig(sr=16000, n_fft=512, hop=256)
N_MELS = 96
#: ``librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1``: the package's 3 s patch.
PATCH_FRAMES = 187
#: TensorFlow's ``batch_normalization`` default.
TF_BN_EPS = 1e-3

MSD_TAGS = ["rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
            "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
            "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock",
            "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
            "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb",
            "indie pop", "sad", "House", "happy"]
MTT_TAGS = ["guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
            "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals",
            "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft",
            "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal",
            "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral"]
#: The checkpoints of the wheel: architecture and tags.
MODELS = {"MSD_musicnn": ("musicnn", MSD_TAGS), "MTT_musicnn": ("musicnn", MTT_TAGS),
          "MSD_vgg": ("vgg", MSD_TAGS), "MTT_vgg": ("vgg", MTT_TAGS)}

INSTALL_HINT = "pip install --no-deps musicnn==0.1.0 (its numpy and tensorflow pins are not needed: musadv reads only its weights)"


def _bn(n: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(n, eps=TF_BN_EPS)


def _same_time_pad(kernel: int) -> tuple[int, int]:
    """TensorFlow's "same" padding along one axis for stride 1: the odd sample goes at the end."""
    return (kernel - 1) // 2, kernel // 2


class Musicnn(nn.Module):
    """The musically motivated CNN of the package's ``build_musicnn`` (front end '7774timbraltemporal').

    Input: log-mel patches ``(n, frames, 96)``; output: logits ``(n, n_tags)``.

    Parameters
    ----------
    n_tags : int
    n_mels : int
    midend_filters, backend_units : int
        64 and 200 for the published models.
    """

    def __init__(self, n_tags: int = 50, n_mels: int = N_MELS, midend_filters: int = 64, backend_units: int = 200):
        super().__init__()
        timbral = int(1.6 * 128)
        temporal = int(1.6 * 32)
        self.input_norm = _bn(1)
        self.timbral = nn.ModuleList([nn.Conv2d(1, timbral, (7, int(r * n_mels))) for r in (0.4, 0.7)])
        self.timbral_norm = nn.ModuleList([_bn(timbral) for _ in range(2)])
        self.temporal_kernels = (128, 64, 32)
        self.temporal = nn.ModuleList([nn.Conv2d(1, temporal, (k, 1)) for k in self.temporal_kernels])
        self.temporal_norm = nn.ModuleList([_bn(temporal) for _ in self.temporal_kernels])
        front = 2 * timbral + 3 * temporal
        self.midend = nn.ModuleList([nn.Conv1d(front, midend_filters, 7, padding=3)] +
                                    [nn.Conv1d(midend_filters, midend_filters, 7, padding=3) for _ in range(2)])
        self.midend_norm = nn.ModuleList([nn.BatchNorm1d(midend_filters, eps=TF_BN_EPS) for _ in range(3)])
        pooled = 2 * (front + 3 * midend_filters)
        self.pool_norm = nn.BatchNorm1d(pooled, eps=TF_BN_EPS)
        self.dense = nn.Linear(pooled, backend_units)
        self.dense_norm = nn.BatchNorm1d(backend_units, eps=TF_BN_EPS)
        self.out = nn.Linear(backend_units, n_tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(x[:, None])  # (n, 1, frames, mels)
        padded = F.pad(x, (0, 0, 3, 3))
        front = [self._block(conv, norm, padded) for conv, norm in zip(self.timbral, self.timbral_norm)]
        for k, conv, norm in zip(self.temporal_kernels, self.temporal, self.temporal_norm):
            front.append(self._block(conv, norm, F.pad(x, (0, 0, *_same_time_pad(k)))))
        features = [torch.cat(front, 1)]
        h = features[0]
        for i, (conv, norm) in enumerate(zip(self.midend, self.midend_norm)):
            h = norm(F.relu(conv(h))) + (h if i else 0)
            features.append(h)
        h = torch.cat(features, 1)  # (n, 753, frames)
        # TensorFlow flattens (channels, [max, mean]): the two poolings interleave.
        pooled = torch.stack([h.amax(-1), h.mean(-1)], -1).flatten(1)
        h = self.dense_norm(F.relu(self.dense(self.pool_norm(pooled))))
        return self.out(h)

    def _block(self, conv: nn.Conv2d, norm: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
        """A front-end block: convolution, ReLU, batch norm, max over frequency -> ``(n, channels, frames)``."""
        if self.training:
            return norm(F.relu(conv(x))).amax(-1)
        # In evaluation batch norm is a fixed affine map per channel and ReLU is monotone, so the
        # max over frequency can come first: of the convolution where the scale is positive, of
        # its negation where it is negative. The same values, without ReLU and batch norm on (and
        # back through) the full (channels, frames, bins) map; max's gradient is a scatter.
        sign = torch.where(norm.weight < 0, -1.0, 1.0)
        h = F.conv2d(x, conv.weight * sign[:, None, None, None], conv.bias * sign).max(-1).values * sign[:, None]
        return F.batch_norm(F.relu(h), norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)

    def load_tf(self, tensors: dict[str, np.ndarray]) -> None:
        """Copy the weights of a TensorFlow checkpoint of ``build_musicnn`` (layer names in creation order)."""
        convs = [*self.timbral, *self.temporal]
        norms = [self.input_norm, *self.timbral_norm, *self.temporal_norm, *self.midend_norm, self.pool_norm,
                 self.dense_norm]
        state = {}
        for i, conv in enumerate(convs):
            state[conv] = (_conv2d_weight(_get(tensors, _name("conv2d", i), "kernel")), _get(tensors, _name("conv2d", i), "bias"))
        for j, conv in enumerate(self.midend, start=len(convs)):
            kernel = _get(tensors, _name("conv2d", j), "kernel")  # (7, in, 1, out): a 1-D convolution over frames
            state[conv] = (kernel[:, :, 0, :].transpose(2, 1, 0), _get(tensors, _name("conv2d", j), "bias"))
        for i, dense in enumerate([self.dense, self.out]):
            state[dense] = (_get(tensors, _name("dense", i), "kernel").T, _get(tensors, _name("dense", i), "bias"))
        _copy(state, norms, tensors)


class VGG(nn.Module):
    """The package's VGG-like baseline: five 3x3 convolution blocks with batch norm and max pooling, dense output.

    Input: log-mel patches ``(n, 187, 96)`` (the pooling leaves a 2 x 1 map); output: logits ``(n, n_tags)``.
    """

    POOLS = ((4, 1), (2, 2), (2, 2), (2, 2), (4, 4))
    STRIDES = ((2, 2), (2, 2), (2, 2), (2, 2), (4, 4))

    def __init__(self, n_tags: int = 50, filters: int = 128, frames: int = PATCH_FRAMES, n_mels: int = N_MELS):
        super().__init__()
        self.input_norm = _bn(1)
        self.convs = nn.ModuleList([nn.Conv2d(1 if i == 0 else filters, filters, 3, padding=1) for i in range(5)])
        self.norms = nn.ModuleList([_bn(filters) for _ in range(5)])
        for (pt, pf), (st, sf) in zip(self.POOLS, self.STRIDES):
            frames, n_mels = (frames - pt) // st + 1, (n_mels - pf) // sf + 1
        self.out = nn.Linear(filters * frames * n_mels, n_tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.input_norm(x[:, None])
        for conv, norm, pool, stride in zip(self.convs, self.norms, self.POOLS, self.STRIDES):
            h = F.max_pool2d(norm(F.relu(conv(h))), pool, stride)
        return self.out(h.permute(0, 2, 3, 1).flatten(1))  # TensorFlow's NHWC flattening order

    def load_tf(self, tensors: dict[str, np.ndarray]) -> None:
        """Copy the weights of a TensorFlow checkpoint of the package's ``vgg``."""
        state = {conv: (_conv2d_weight(_get(tensors, f"{i + 1}CNN", "kernel")), _get(tensors, f"{i + 1}CNN", "bias"))
                 for i, conv in enumerate(self.convs)}
        state[self.out] = (_get(tensors, "dense", "kernel").T, _get(tensors, "dense", "bias"))
        _copy(state, [self.input_norm, *self.norms], tensors)


def _name(layer: str, i: int) -> str:
    return layer if i == 0 else f"{layer}_{i}"


def _get(tensors: dict, scope: str, name: str) -> np.ndarray:
    key = f"{scope}/{name}"
    if key not in tensors:
        raise ModelError(f"the checkpoint has no tensor {key} (not a musicnn checkpoint of this architecture?)")
    return tensors[key]


def _conv2d_weight(kernel: np.ndarray) -> np.ndarray:
    """TensorFlow's ``(height, width, in, out)`` kernel as PyTorch's ``(out, in, height, width)``."""
    return kernel.transpose(3, 2, 0, 1)


def _copy(state: dict, norms: list, tensors: dict) -> None:
    with torch.no_grad():
        for layer, (weight, bias) in state.items():
            for param, value in ((layer.weight, weight), (layer.bias, bias)):
                if tuple(param.shape) != value.shape:
                    raise ModelError(f"checkpoint tensor of shape {value.shape} does not fit a layer of shape "
                                     f"{tuple(param.shape)}")
                param.copy_(torch.from_numpy(np.ascontiguousarray(value)))
        for i, norm in enumerate(norms):
            scope = _name("batch_normalization", i)
            for buf, name in ((norm.weight, "gamma"), (norm.bias, "beta"), (norm.running_mean, "moving_mean"),
                              (norm.running_var, "moving_variance")):
                value = _get(tensors, scope, name)
                if tuple(buf.shape) != value.shape:
                    raise ModelError(f"checkpoint tensor {scope}/{name} of shape {value.shape} does not fit a "
                                     f"batch norm of {tuple(buf.shape)}")
                buf.copy_(torch.from_numpy(value))


def weights_dir() -> Path:
    """The folder of the installed ``musicnn`` package, which holds its checkpoints (found without importing it).

    Raises
    ------
    ModelError
        If the package is not installed.
    """
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"musicnn's weights are not installed: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def build_network(name: str, checkpoint: str | os.PathLike | None = None) -> nn.Module:
    """The PyTorch network of one of :data:`MODELS` with the checkpoint's weights, in evaluation mode.

    Parameters
    ----------
    name : {'MSD_musicnn', 'MTT_musicnn', 'MSD_vgg', 'MTT_vgg'}
    checkpoint : path, optional
        The checkpoint prefix (default: the installed package's ``NAME/``).
    """
    if name not in MODELS:
        raise ModelError(f"unknown musicnn model {name!r}; expected one of {', '.join(MODELS)}")
    arch, tags = MODELS[name]
    prefix = checkpoint if checkpoint is not None else f"{weights_dir() / name}{os.sep}"
    net = Musicnn(len(tags)) if arch == "musicnn" else VGG(len(tags))
    net.load_tf(read_checkpoint(prefix))
    return net.eval()


def load_musicnn(name: str, tag_map: dict[str, str] | None = None, checkpoint: str | os.PathLike | None = None,
                 spec: str | None = None) -> TorchClassifier:
    """One of musicnn's taggers as a musadv system.

    Parameters
    ----------
    name : {'MSD_musicnn', 'MTT_musicnn', 'MSD_vgg', 'MTT_vgg'}
    tag_map : dict, optional
        A dataset's labels -> the tag that stands for each (see :mod:`musadv.taggers`): the
        system's labels are then the mapped labels, each scored by its tag's likelihood, the
        label being the highest. Default: the tagger itself, labels the 50 tags.
    checkpoint : path, optional
        The checkpoint prefix (default: the installed package's).
    spec : str, optional
        What rebuilds the system with :func:`musadv.systems.load_system` (recorded with runs).

    Returns
    -------
    TorchClassifier
        ``activation='sigmoid'``: a recording's confidences are its mean patch tag likelihoods.
    """
    net = build_network(name, checkpoint)
    tags = MODELS[name][1]
    info = {"factory": spec or f"musicnn:{name}", "pretrained": f"musicnn 0.1.0 {name}", "tags": list(tags)}
    labels = tags
    if tag_map is not None:
        unknown = sorted({t for t in tag_map.values() if t is not None and t not in tags})
        if unknown:
            raise ModelError(f"tag map names tags {unknown} that {name} does not have")
        labels = [lab for lab, tag in tag_map.items() if tag is not None]
        if not labels:
            raise ModelError("the tag map maps no label to a tag")
        net = TagSelect(net, [tags.index(tag_map[lab]) for lab in labels])
        info.update(tag_map=dict(tag_map), uncovered=[lab for lab, tag in tag_map.items() if tag is None])
    ln10 = math.log(10.0)
    model = TorchClassifier(net, labels, STFT, front_end="logmel", element_frames=PATCH_FRAMES, n_mels=N_MELS,
                            log_offset=1e-4, mean=-4 * ln10, std=ln10, activation="sigmoid",
                            uncovered_labels=info.get("uncovered", ()), info=info)
    return model.eval()

"""What names a system in the files a run writes: where it came from, and what identifies its parameters.

A run records both so that a resumed run refuses another model's results (:mod:`musadv.runs`,
:mod:`musadv.judge`), and an attack's settings name its surrogate the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .interface import AudioClassifier
from .models import weights_sha256

__all__ = ["model_name", "system_sha256"]


def model_name(system: AudioClassifier) -> str | None:
    """Where a system came from: its directory, or the ``module:factory`` that made it."""
    return str(Path(system.path).resolve()) if system.path else system.info.get("factory")


def system_sha256(system: AudioClassifier) -> str | None:
    """What identifies a system's parameters: a network's weights, else its model files (None for neither)."""
    if isinstance(system, torch.nn.Module):
        return weights_sha256(system)
    if system.path is None:
        return None
    h = hashlib.sha256()
    for f in sorted(p for p in Path(system.path).iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".skops")):
        h.update(f.name.encode() + b":" + f.read_bytes())
    return h.hexdigest()

"""What names a system in the files a run writes: where it came from, and what identifies its parameters.

A run records both so that a resumed run refuses another model's results (:mod:`musadv.runs`,
:mod:`musadv.judge`), and an attack's settings name its surrogate the same way.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from .interface import AudioClassifier
from .models import weights_sha256
from .smoothing import SmoothedClassifier

__all__ = ["model_name", "system_sha256", "PROVENANCE"]

#: What a model file records of where the system was made and where its parts lie, not of what it computes: left
#: out of its identity, so that the same system made twice in two folders is one system (a forest's DNN is named
#: by its weights' hash, ``dnn_sha256``, which stays).
PROVENANCE = ("data", "partition", "training", "dnn")


def model_name(system: AudioClassifier) -> str | None:
    """Where a system came from: its directory, or the ``module:factory`` that made it."""
    return str(Path(system.path).resolve()) if system.path else system.info.get("factory")


def system_sha256(system: AudioClassifier) -> str | None:
    """What identifies a system's parameters: a network's weights, else its model files (None for neither);
    a smoothed system's, its base's and its smoothing settings'."""
    if isinstance(system, SmoothedClassifier):
        base = system_sha256(system.base)
        settings = json.dumps(system.info["smoothing"], sort_keys=True)
        return None if base is None else hashlib.sha256(f"{base}:{settings}".encode()).hexdigest()
    if isinstance(system, torch.nn.Module):
        return weights_sha256(system)
    if system.path is None:
        return None
    h = hashlib.sha256()
    for f in sorted(p for p in Path(system.path).iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".skops")):
        h.update(f.name.encode() + b":" + _canonical(f))
    return h.hexdigest()


def _canonical(path: Path) -> bytes:
    """A model file's parameters as bytes that do not depend on when or where it was written."""
    if path.suffix == ".json":
        info = json.loads(path.read_text())
        return json.dumps({k: v for k, v in info.items() if k not in PROVENANCE}, sort_keys=True).encode()
    if path.suffix == ".skops":
        # skops names each array's member, and marks each object, with the id the object had in memory: the same
        # model written twice has other ones. Its schema with each member's name replaced by the hash of its
        # bytes, and each id by the order in which it first appears, has not.
        with zipfile.ZipFile(path) as z:
            schema = z.read("schema.json").decode()
            digests = {name: _member_digest(name, z.read(name)) for name in z.namelist() if name != "schema.json"}
        # One pass over the schema's strings (a forest has thousands of members: a replace per member is slow).
        schema = re.sub(r'"([^"]*)"', lambda m: f'"{digests[m.group(1)]}"' if m.group(1) in digests else m.group(0), schema)
        order: dict[str, int] = {}
        schema = re.sub(r'"__id__": (\d+)', lambda m: f'"__id__": {order.setdefault(m.group(1), len(order))}', schema)
        return schema.encode()
    return path.read_bytes()


def _member_digest(name: str, data: bytes) -> str:
    """An array's dtype, shape and values (field by field: a tree's node records carry padding bytes that are
    whatever memory held); any other member's bytes."""
    if not name.endswith(".npy"):
        return hashlib.sha256(data).hexdigest()
    a = np.load(io.BytesIO(data), allow_pickle=False)
    h = hashlib.sha256(f"{a.dtype.descr}{a.shape}".encode())
    for field in a.dtype.names or (None,):
        h.update(np.ascontiguousarray(a if field is None else a[field]).tobytes())
    return h.hexdigest()

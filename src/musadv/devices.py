"""Which PyTorch device a model, its STFT and the adversary's loop run on (``--device``).

One function, :func:`resolve_device`, turns what a user writes (``cpu``, ``cuda``, ``cuda:N``,
``mps`` or ``auto``) into a :class:`torch.device` that is there, or says in one line why not.
A model's device is where its weights are (:attr:`musadv.interface.DifferentiableClassifier.device`);
everything else follows the model.
"""

from __future__ import annotations

import re

import torch

from .errors import MusadvError

__all__ = ["DEVICES", "resolve_device"]

#: What ``--device`` accepts.
DEVICES = "cpu, cuda, cuda:N, mps or auto"
_NAME = re.compile(r"(?P<kind>cpu|cuda|mps)(?::(?P<index>\d+))?")


def resolve_device(name: str | torch.device | None = "cpu") -> torch.device:
    """The device ``name`` stands for, checked to be present.

    Parameters
    ----------
    name : str, torch.device or None
        ``'cpu'`` (also ``None``), ``'cuda'`` (the current GPU), ``'cuda:N'``, ``'mps'``
        (Apple silicon) or ``'auto'`` (the first GPU if there is one, else MPS, else the CPU).

    Raises
    ------
    MusadvError
        For a name that is none of these, or a device this machine does not have.
    """
    if name is None:
        return torch.device("cpu")
    text = str(name).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if torch.backends.mps.is_available() else torch.device("cpu")
    match = _NAME.fullmatch(text)
    if match is None:
        raise MusadvError(f"device {name!r} is not one of {DEVICES}")
    kind, index = match["kind"], match["index"]
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise MusadvError("device 'mps' is not available here (no Apple-silicon GPU, or PyTorch built without MPS)")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise MusadvError(f"device {text!r} is not available here (PyTorch sees no CUDA GPU)")
    count = torch.cuda.device_count()
    i = torch.cuda.current_device() if index is None else int(index)
    if i >= count:
        raise MusadvError(f"device {text!r} is not available here (this machine has {count} CUDA GPU"
                          f"{'s' if count != 1 else ''}: cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", i)

"""Checks of a model before a white-box attack: would its gradient make it look robust when it is not?

A gradient attack on a model whose input gradient is missing, zero or not finite fails on every
recording and reads as perfect robustness (obfuscated gradients, Athalye et al. 2018). AutoAttack
(Croce and Hein 2020) therefore checks every model before attacking it; these are its checks,
adapted to recordings: the input gradient of the adversary's loss in the magnitude STFT is
missing (the network detaches its input, or is no network), not finite, or zero (a front end
that rounds or thresholds); two predictions of the same recording differ (randomness: an
attack's success then depends on the draw); element outputs that look like probabilities where
logits are expected (a softmax inside the network flattens the loss).

:func:`check_gradient` gives a :class:`GradientCheck`: ``problems`` (a gradient attack would be
misled: attack through queries instead) and ``warnings`` (figures to read with care).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import MusadvError
from .interface import AudioClassifier, DifferentiableClassifier, evaluating, system_name, unit_phase
from .spectral import complex_abs, stft

__all__ = ["GradientCheck", "check_gradient", "gradient_problem", "NO_GRAPH"]

#: The problem of logits that autograd cannot trace back to the input magnitudes.
NO_GRAPH = "its logits do not depend on the input magnitudes through autograd (its front end detaches them?)"


def gradient_problem(grad: torch.Tensor | None) -> str | None:
    """What makes an input gradient unusable for a gradient attack (None: usable): missing, not finite, or zero.

    The one judgement of :func:`check_gradient` and of the attack's own first step
    (:func:`musadv.attack.attack`), so both say the same of the same gradient.
    """
    if grad is None:
        return NO_GRAPH
    if not bool(torch.isfinite(grad).all()):
        return "its input gradient is not finite"
    if not bool(grad.any()):
        return "its input gradient is zero (a front end that rounds or thresholds its input?)"
    return None


#: Confidences of two predictions of one recording further apart than this differ.
REPEAT_TOLERANCE = 1e-5


@dataclass
class GradientCheck:
    """What :func:`check_gradient` found on one recording.

    Attributes
    ----------
    model : str
        The system's name (:func:`~musadv.interface.system_name`).
    recording : str
    problems : list of str
        What would mislead a gradient attack (it should go through queries).
    warnings : list of str
        What the figures of any attack should be read with.
    """

    model: str
    recording: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem for a gradient attack."""
        return not self.problems

    def line(self) -> str:
        """One line saying what was found."""
        found = self.problems + self.warnings
        return f"{self.model}: " + ("; ".join(found) if found else "gradient usable") + f" (checked on {self.recording})"

    def to_dict(self) -> dict:
        return {"model": self.model, "recording": self.recording, "problems": self.problems, "warnings": self.warnings}


def check_gradient(model: AudioClassifier, signal: np.ndarray, name: str = "recording") -> GradientCheck:
    """AutoAttack's model checks on one recording.

    Parameters
    ----------
    model : AudioClassifier
    signal : np.ndarray
        A mono recording at ``model.stft.sr`` Hz.
    name : str
        Names the recording in the findings.

    Returns
    -------
    GradientCheck
    """
    check = GradientCheck(system_name(model), name)
    x = torch.from_numpy(np.asarray(signal, np.float32))
    spec = stft(x, model.stft)
    frames = complex_abs(spec)
    first = model.predict(frames.numpy(), np.asarray(signal, np.float32), name)
    second = model.predict(frames.numpy(), np.asarray(signal, np.float32), name)
    if max(abs(first.confidence[k] - second.confidence[k]) for k in model.labels) > REPEAT_TOLERANCE:
        check.warnings.append("two predictions of the same recording differ (the model draws at random: "
                              "an attack's success depends on the draw)")
    if not isinstance(model, DifferentiableClassifier):
        check.problems.append("it gives no gradient (not a network musadv can differentiate)")
        return check
    mags = frames.to(model.device).requires_grad_(True)
    phase = unit_phase(spec).to(model.device) if model.needs_signal else None
    # Towards the label the model finds least likely: the loss of an attack's hardest target.
    target = min(model.labels, key=lambda k: first.confidence[k])
    with evaluating(model):
        try:
            logits = model.logits(mags, phase)
        except Exception as exc:  # the user's own network: one line naming it and the recording
            raise MusadvError(f"{check.model}: raised {type(exc).__name__} in logits on {name}: {exc}") from exc
        loss = -torch.log_softmax(logits, -1)[:, model.labels.index(target)].sum()
        outputs = logits.detach()
        if model.activation == "softmax" and bool((outputs >= 0).all()) and \
                bool(torch.allclose(outputs.sum(-1), torch.ones(len(outputs), device=outputs.device), atol=1e-4)):
            check.warnings.append("its element outputs are probabilities where logits are expected (a softmax inside "
                                  "the network flattens the adversary's loss)")
        (grad,) = torch.autograd.grad(loss, mags, allow_unused=True) if loss.requires_grad else (None,)
    problem = gradient_problem(grad)
    if problem is not None:
        check.problems.append(problem)
    return check

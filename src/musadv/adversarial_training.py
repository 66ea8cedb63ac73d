"""Adversaries inside the training loop: Alg. 2's sign step, PGD (Madry et al.) and TRADES (Zhang et al.); and noise.

Each works on one batch of a network's standardised elements (frames or patches, as
:class:`musadv.training.ElementData` gives them) and :func:`batch_loss` turns a batch into the
loss that :func:`musadv.training.train` descends:

- ``'fgsm'`` and ``'fgsm_reference'``: the paper's Alg. 2 (:func:`fgsm`) and the reference code's
  variant of it (:func:`fgsm_reference`);
- ``'pgd'``: the elements of :func:`pgd`, a k-step projected attack from a random start within an
  SNR ball around each element's magnitudes, trained on with the true labels;
- ``'trades'``: the clean cross-entropy plus beta times the KL divergence between the clean and
  the attacked outputs, the attack (:func:`trades_elements`) maximising that divergence.

:func:`noisy_elements` gives a batch the magnitudes it would have with white noise added to the
waveform (the base of a smoothed system is trained on its own noise level).

The balls are measured on magnitudes, as every SNR in musadv: element ``x`` (its magnitudes, all
frames of a patch together) may move to any ``x' >= 0`` with
``20 log10(||x|| / ||x' - x||) >= snr_db``. The attacks run with dropout off and draw their random
starts from their own generator, so the training's own random stream (shuffling, dropout) is the
one plain training draws.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .errors import MusadvError
from .interface import evaluating, frozen
from .smoothing import noise_sigma, noisy_magnitudes

__all__ = ["ADVERSARIAL_KINDS", "fgsm", "fgsm_reference", "snr_ball_radius", "project_to_ball", "pgd",
           "trades_elements", "trades_divergence", "noisy_elements", "batch_loss", "check_config", "describe_training"]

ADVERSARIAL_KINDS = ("fgsm", "fgsm_reference", "pgd", "trades")
# Madry et al.'s rule for the step of a k-step attack: 2.5 radii spread over the k steps, so that
# the attack can reach the ball's edge from anywhere in it and move along it.
_STEP_RADII = 2.5
# TRADES starts next to the clean element: the divergence's gradient is zero at the element itself.
_TRADES_START = 1e-3


def fgsm(model, x: torch.Tensor, y: torch.Tensor, step: float, generator: torch.Generator | None = None,
         standardized: bool = False):
    """Fast-gradient-sign adversarial elements towards labels other than the truth (paper Alg. 2).

    Each element gets a target drawn uniformly among the labels other than its true label ``y``;
    the element moves one sign step against the gradient of the cross-entropy with that target,
    ``x - step * sign(grad)``, and is clipped at zero (magnitudes are never negative).

    With ``standardized`` the elements are the model's standardised inputs ``(x - mean) / std``;
    the same step is taken on the magnitudes they stand for and returned standardised:
    ``max(z - step * sign(grad) / std, -mean / std)`` (the sign is the same in both units).

    Returns
    -------
    x_adv : torch.Tensor
        Same shape as ``x``, no gradient attached.
    targets : torch.Tensor
        The wrong labels aimed at.
    """
    k = len(model.labels)
    targets = (y + torch.randint(1, k, y.shape, generator=generator).to(y.device)) % k
    x = x.detach().requires_grad_(True)
    with frozen(model):  # the mode Alg. 2 trains in (dropout on), the input-gradient paths
        logits = model(x, standardized=True) if standardized else model(x)  # any element model takes raw input
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, targets, reduction="sum"), x)
    if not standardized:
        return torch.clamp(x.detach() - step * grad.sign(), min=0), targets
    mean, std = model.standardize.mean, model.standardize.std
    return torch.maximum(x.detach() - step * grad.sign() / std, -mean / std), targets


def fgsm_reference(model, z: torch.Tensor, y: torch.Tensor, step: float, snr_db: float = 15.0,
                   generator: torch.Generator | None = None):
    """The reference code's Alg. 2 batch (``adversary_dataset.py``) on standardised elements ``z``.

    Targets are drawn uniformly from all labels, the truth included; every element moves one
    sign step of ``step`` *standardised* units against the gradient of the cross-entropy with
    its target, is clipped at zero magnitude, and the batch's change is projected onto the ball
    of ``snr_db`` dB around the batch (measured on magnitudes, over the whole batch).

    Returns
    -------
    z_adv : torch.Tensor
        Standardised, same shape as ``z``, no gradient attached.
    targets : torch.Tensor
    """
    targets = torch.randint(0, len(model.labels), y.shape, generator=generator).to(y.device)
    z = z.detach().requires_grad_(True)
    with frozen(model):
        (grad,) = torch.autograd.grad(F.cross_entropy(model(z, standardized=True), targets, reduction="sum"), z)
    z = z.detach()
    mean, std = model.standardize.mean, model.standardize.std
    z_adv = torch.maximum(z - step * grad.sign(), -mean / std)
    # Magnitudes are z * std + mean; scaling the change towards z keeps them non-negative.
    change, radius = (z_adv - z) * std, torch.linalg.vector_norm(z * std + mean) / 10 ** (snr_db / 20)
    dist = torch.linalg.vector_norm(change)
    if dist > radius:
        z_adv = z + (z_adv - z) * (radius / dist)
    return z_adv, targets


def _per_element(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def snr_ball_radius(x: torch.Tensor, snr_db: float) -> torch.Tensor:
    """The L2 radius of each element's SNR ball.

    Parameters
    ----------
    x : torch.Tensor, shape (n, ...)
        Magnitudes of n elements.
    snr_db : float
        The smallest SNR in dB a change may have: ``20 log10(||x|| / ||change||)``.

    Returns
    -------
    torch.Tensor, shape (n,)
    """
    return torch.linalg.vector_norm(x.flatten(1), dim=1) * 10 ** (-snr_db / 20)


def project_to_ball(x: torch.Tensor, x_adv: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """``x_adv`` moved into each element's ball: magnitudes clipped at zero, then the change scaled towards ``x``.

    Both ``x`` and the clipped ``x_adv`` are non-negative, so every point between them is; the
    result is inside the ball and non-negative (a point of the intersection, not always its nearest).

    Parameters
    ----------
    x, x_adv : torch.Tensor, shape (n, ...)
        The elements' magnitudes and their moved versions.
    radius : torch.Tensor, shape (n,)
    """
    change = x_adv.clamp_min(0) - x
    norm = torch.linalg.vector_norm(change.flatten(1), dim=1)
    scale = torch.where(norm > radius, radius / norm.clamp_min(torch.finfo(norm.dtype).tiny), torch.ones_like(norm))
    return x + change * _per_element(scale, x)


def _random_directions(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    d = torch.randn(shape, generator=generator, device=device)
    return d / _per_element(torch.linalg.vector_norm(d.flatten(1), dim=1), d)


def _ascend(model, x: torch.Tensor, x_start: torch.Tensor, radius: torch.Tensor, steps: int,
            objective: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``steps`` normalised-gradient steps up ``objective(logits)`` from ``x_start``, each projected onto the ball."""
    step = _per_element(_STEP_RADII * radius / steps, x)
    x_adv = project_to_ball(x, x_start, radius)
    with evaluating(model):
        for _ in range(steps):
            x_adv = x_adv.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(model(x_adv)), x_adv)
            norm = torch.linalg.vector_norm(grad.flatten(1), dim=1).clamp_min(torch.finfo(grad.dtype).tiny)
            x_adv = project_to_ball(x, x_adv.detach() + step * grad / _per_element(norm, grad), radius)
    return x_adv.detach()


def _magnitudes(model, z: torch.Tensor) -> torch.Tensor:
    # Standardised elements came from non-negative magnitudes; the round trip may leave -1e-7.
    return (z.detach() * model.standardize.std + model.standardize.mean).clamp_min(0)


def _standardised(model, x: torch.Tensor) -> torch.Tensor:
    return (x - model.standardize.mean) / model.standardize.std


def pgd(model, z: torch.Tensor, y: torch.Tensor, snr_db: float, steps: int,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Madry et al.'s projected gradient attack on standardised elements, within an SNR ball on magnitudes.

    Each element starts at a point drawn uniformly in its ball and takes ``steps`` steps of
    ``2.5 * radius / steps`` along the normalised gradient of the cross-entropy with its true
    label ``y``, each projected back onto the ball (:func:`project_to_ball`). Dropout is off.

    Parameters
    ----------
    model
        An element model (:class:`musadv.models.DNN` or :class:`musadv.models.CDNN`).
    z : torch.Tensor, shape (n, element_frames, n_bins)
        Standardised elements.
    y : torch.Tensor, shape (n,)
        True label indices.
    snr_db : float
        The ball: no example's change is larger than ``||x|| / 10**(snr_db / 20)``.
    steps : int
        Gradient steps, at least 1.
    generator : torch.Generator, optional
        Draws the random starts.

    Returns
    -------
    torch.Tensor
        Standardised adversarial elements, the shape of ``z``, no gradient attached.
    """
    x = _magnitudes(model, z)
    radius = snr_ball_radius(x, snr_db)
    # Uniform in an n-ball: a radius fraction of u ** (1 / dims).
    dims = x[0].numel()
    fraction = torch.rand(len(x), generator=generator, device=x.device) ** (1 / dims)
    start = x + _random_directions(x.shape, generator, x.device) * _per_element(fraction * radius, x)
    x_adv = _ascend(model, x, start, radius, steps, lambda logits: F.cross_entropy(logits, y, reduction="sum"))
    return _standardised(model, x_adv)


def trades_elements(model, z: torch.Tensor, snr_db: float, steps: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """TRADES's inner maximisation: elements within the SNR ball whose outputs diverge most from the clean ones.

    From a start one thousandth of the radius away in a random direction, ``steps`` projected steps
    (as :func:`pgd`) up the KL divergence between the clean posteriors and the moved element's.
    Dropout is off. ``z``: standardised elements ``(n, element_frames, n_bins)``. Returns
    standardised elements, no gradient attached.
    """
    x = _magnitudes(model, z)
    radius = snr_ball_radius(x, snr_db)
    with evaluating(model), torch.no_grad():
        clean = F.log_softmax(model(x), -1)
    start = x + _random_directions(x.shape, generator, x.device) * _per_element(_TRADES_START * radius, x)
    x_adv = _ascend(model, x, start, radius, steps, lambda logits: trades_divergence(logits, clean, "sum"))
    return _standardised(model, x_adv)


def trades_divergence(logits: torch.Tensor, clean_log_probs: torch.Tensor, reduction: str) -> torch.Tensor:
    """TRADES's KL divergence of the attacked outputs from the clean ones, KL(clean || attacked).

    Both sides in log-probabilities: a clean posterior that underflows to 0 (a logit gap of about
    100) would give ``0 * log 0`` and a NaN gradient through the clean side.

    Parameters
    ----------
    logits : torch.Tensor, shape (n, n_classes)
        The attacked elements' logits.
    clean_log_probs : torch.Tensor, shape (n, n_classes)
        The clean elements' log-posteriors.
    reduction : str
        ``'sum'`` or ``'batchmean'`` (as :func:`torch.nn.functional.kl_div`).
    """
    return F.kl_div(F.log_softmax(logits, -1), clean_log_probs, reduction=reduction, log_target=True)


def noisy_elements(model, z: torch.Tensor, snr_db: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standardised elements as they would be with white noise ``snr_db`` below the reference level in the waveform.

    See :func:`musadv.smoothing.noisy_magnitudes` (the noise's law per bin) and
    :func:`musadv.smoothing.noise_sigma` (its level). ``z``: standardised elements
    ``(n, element_frames, n_bins)``; returns the same, no gradient attached.
    """
    return _standardised(model, noisy_magnitudes(_magnitudes(model, z), noise_sigma(snr_db), model.stft, generator))


def describe_training(train: dict) -> str | None:
    """What a network's recorded training settings (``model.json``'s ``training.train``) did against adversaries,
    in words; None for plain training."""
    kind, noise = train.get("adversarial"), train.get("noise_snr_db")
    fraction = train.get("adv_fraction")
    share = "joined" if fraction is None else f"{fraction:g} of each batch replaced"
    parts = []
    if kind in ("fgsm", "fgsm_reference"):
        parts.append(f"Alg. 2 ({kind}, step {train['adv_step']:g}" + (f", {share})" if kind == "fgsm" else ")"))
    elif kind == "pgd":
        parts.append(f"PGD-{train['adv_steps']} at {train['adv_snr_db']:g} dB ({share})")
    elif kind == "trades":
        parts.append(f"TRADES-{train['adv_steps']} at {train['adv_snr_db']:g} dB, beta {train['trades_beta']:g}")
    if noise is not None:
        parts.append(f"noise {noise:g} dB below -20 dBFS")
    return ", ".join(parts) or None


def check_config(config) -> None:
    """Refuse adversarial-training settings that cannot be run, one message per setting.

    ``config``: a :class:`musadv.training.TrainConfig`.
    """
    if config.noise_snr_db is not None and not -60 <= config.noise_snr_db <= 200:
        raise MusadvError(f"noise_snr_db must be a level in dB between -60 and 200, got {config.noise_snr_db}")
    kind = config.adversarial
    if kind is None:
        return
    if kind not in ADVERSARIAL_KINDS:
        raise MusadvError(f"unknown adversarial training {kind!r} (expected one of {', '.join(ADVERSARIAL_KINDS)})")
    if config.adv_fraction is not None and not 0 < config.adv_fraction <= 1:
        raise MusadvError(f"adv_fraction must be in (0, 1], got {config.adv_fraction}")
    if kind in ("pgd", "trades"):
        if not config.adv_steps >= 1:
            raise MusadvError(f"adv_steps must be at least 1 for {kind}, got {config.adv_steps}")
        if not -60 <= config.adv_snr_db <= 120:
            raise MusadvError(f"adv_snr_db must be a budget in dB between -60 and 120, got {config.adv_snr_db}")
    if kind == "trades":
        if not config.trades_beta >= 0:
            raise MusadvError(f"trades_beta must be non-negative, got {config.trades_beta}")
        if config.adv_fraction is not None:
            raise MusadvError("adv_fraction does not apply to trades: every element is trained on clean and attacked")


def _joined(z: torch.Tensor, y: torch.Tensor, make: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
            fraction: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch joined by the adversarial versions of all its elements, or a ``fraction`` of it replaced by them."""
    if fraction is None:
        return torch.cat([z, make(z, y)]), torch.cat([y, y])
    n = int(round(fraction * len(y)))
    if n == 0:
        return z, y
    return torch.cat([make(z[:n], y[:n]), z[n:]]), y


def batch_loss(model, z: torch.Tensor, y: torch.Tensor, config,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """The loss one training step descends on a batch of standardised elements, under ``config.adversarial``.

    Parameters
    ----------
    model
        The element model being trained (in training mode).
    z : torch.Tensor, shape (n, element_frames, n_bins)
        Standardised elements.
    y : torch.Tensor, shape (n,)
        Their label indices.
    config : musadv.training.TrainConfig
    generator : torch.Generator, optional
        Random starts of PGD and TRADES.

    Returns
    -------
    loss : torch.Tensor
        Scalar, mean over the elements trained on.
    n : int
        How many elements it averages over (a joined batch counts twice).
    """
    kind = config.adversarial
    if kind == "fgsm_reference":
        z, _ = fgsm_reference(model, z, y, config.adv_step)
    elif kind == "fgsm":
        z, y = _joined(z, y, lambda zz, yy: fgsm(model, zz, yy, config.adv_step, standardized=True)[0],
                       config.adv_fraction)
    elif kind == "pgd":
        z, y = _joined(z, y, lambda zz, yy: pgd(model, zz, yy, config.adv_snr_db, config.adv_steps, generator),
                       config.adv_fraction)
    elif kind == "trades":
        z_adv = trades_elements(model, z, config.adv_snr_db, config.adv_steps, generator)
        logits = model(z, standardized=True)
        divergence = trades_divergence(model(z_adv, standardized=True), F.log_softmax(logits, -1), "batchmean")
        return F.cross_entropy(logits, y) + config.trades_beta * divergence, len(y)
    elif kind is not None:
        check_config(config)
    return F.cross_entropy(model(z, standardized=True), y), len(y)

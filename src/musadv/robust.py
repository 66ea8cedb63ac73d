"""Expectation over transformation: the irrelevant transformations as steps the adversary can differentiate.

An adversary made robust (Athalye et al., "Synthesizing robust adversarial examples", ICML
2018) judges, at every iteration, transformed copies of its iterate beside the iterate itself,
and follows the gradient of their mean loss. Each :class:`~musadv.transforms.Transformation`
kind has here a PyTorch form for a mono signal at the model's rate, as the adversary's loop
holds it:

``gain``, ``eq``, ``noise``, ``room``
    The NumPy transformation itself, in PyTorch: a scale, the EQ's zero-phase response on the
    signal's FFT, the noise of the draw's seed at the draw's SNR (its scale follows the signal),
    the room's impulse response as an FFT convolution. The gradient is exact.
``lowpass``
    The Butterworth's complex frequency response on the FFT of the signal padded to twice its
    length, which is the forward filter (``sosfilt``) to within float rounding: the response has
    died out long before the padding could wrap it around. The gradient is exact.
``resample``
    Forwards the real SoX round trip; the gradient is that of an ideal low-pass at half the lower
    rate (the FFT bins above it zeroed), the nearest differentiable stand-in (straight-through).
``mp3``
    Forwards the real codec; the gradient is the identity's (straight-through).
``stretch``
    Forwards Rubber Band's stretch; the gradient is that of a tape-speed change to the same
    length (linear interpolation), which moves every frequency by the rate (at most the 6 % of
    the default range) where Rubber Band keeps it.

The iterate the adversary writes is judged afterwards on fresh draws of every transformation
(:func:`held_out`), made from a generator the loop never used, each transformed copy rounded to
16 bits as writing it would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import fft as spfft
from scipy import signal as sps

from . import transforms
from .audio import quantize_pcm16
from .classify import classify_samples
from .goals import goal_reached
from .interface import AudioClassifier
from .transforms import Transformation

__all__ = ["Draw", "Draws", "prepare", "differentiable", "held_out", "HELD_OUT_DRAWS", "ROOM_POOL"]

#: Fresh draws of a random transformation that judge a written example (one for a fixed one).
HELD_OUT_DRAWS = 10
#: Rooms simulated per recording for the loop, from which every iteration picks its draws
#: (a room's response takes pyroomacoustics about a second; the held-out rooms are new ones).
ROOM_POOL = 8


@dataclass(frozen=True)
class Draw:
    """One transformed copy: the transformation and its parameters; for a low-pass or a room, its
    frequency response on an FFT of ``size`` samples, made once for signals of ``n_samples``
    (:func:`prepare`: the Butterworth's response and the room's simulation cost more than the copy)."""

    transformation: Transformation
    params: dict
    response: np.ndarray | None = None
    size: int = 0
    n_samples: int = 0


def prepare(t: Transformation, params: dict, sr: int, n_samples: int) -> Draw:
    """A :class:`Draw` of ``t`` with ``params`` for mono signals of ``n_samples`` at ``sr`` Hz.

    A low-pass gets the Butterworth's complex response on the FFT of the signal padded to twice
    its length; a room, its simulated impulse response's, padded for a linear convolution.
    """
    if t.kind == "lowpass" and params["cutoff_hz"] < sr / 2:
        size = spfft.next_fast_len(2 * n_samples, real=True)
        _, response = sps.sosfreqz(transforms.lowpass_sos(sr, params["cutoff_hz"], params["order"]),
                                   worN=np.fft.rfftfreq(size, 1 / sr), fs=sr)
    elif t.kind == "room":
        rir = t.room_response(sr, params)
        size = spfft.next_fast_len(n_samples + len(rir) - 1, real=True)
        response = np.fft.rfft(rir, n=size)
    else:
        return Draw(t, params)
    return Draw(t, params, response.astype(np.complex64), size, n_samples)


def _straight_through(real: np.ndarray, standin: torch.Tensor) -> torch.Tensor:
    """``real``'s values with ``standin``'s gradient."""
    real_t = torch.from_numpy(np.ascontiguousarray(real, np.float32)).to(standin.device)
    return standin + (real_t - standin).detach()


def _fft_filter(z: torch.Tensor, response: np.ndarray, size: int) -> torch.Tensor:
    """``z`` zero-padded to ``size``, multiplied in the frequency domain by ``response`` (``size // 2 + 1`` bins), cut to its length."""
    h = torch.from_numpy(np.asarray(response, np.complex64)).to(z.device)
    return torch.fft.irfft(torch.fft.rfft(z, n=size) * h, n=size)[: z.shape[-1]]


def differentiable(draw: Draw, z: torch.Tensor, sr: int) -> torch.Tensor:
    """``draw`` applied to the mono signal ``z`` (``(n_samples,)`` at ``sr`` Hz) so that a gradient flows back.

    See the module notes for each kind's gradient. The result has ``z``'s length except for
    ``stretch`` (``round(n_samples / rate)``).
    """
    t, p, n = draw.transformation, draw.params, z.shape[-1]
    if t.kind == "gain":
        return z * 10 ** (p["gain_db"] / 20)
    if t.kind == "eq":
        return _fft_filter(z, 10 ** (transforms.eq_curve(np.fft.rfftfreq(n, 1 / sr), p["gains_db"]) / 20), n)
    if t.kind in ("lowpass", "room"):
        if t.kind == "lowpass" and p["cutoff_hz"] >= sr / 2:
            return z
        if draw.response is None or draw.n_samples != n:
            draw = prepare(t, p, sr, n)
        return _fft_filter(z, draw.response, draw.size)
    if t.kind == "noise":
        rng = np.random.default_rng(p["noise_seed"])
        noise = torch.from_numpy(rng.standard_normal(n)).to(z.device, z.dtype)
        scale = z.square().sum().sqrt() / noise.square().sum().sqrt() / 10 ** (p["snr_db"] / 20)
        return z + noise * scale
    real = t.apply(z.detach().cpu().numpy(), sr, p)
    if t.kind == "resample":
        if p["resample_sr"] >= sr:
            return z
        keep = (np.fft.rfftfreq(n, 1 / sr) <= p["resample_sr"] / 2).astype(np.complex64)
        return _straight_through(real, _fft_filter(z, keep, n))
    if t.kind == "stretch":
        standin = torch.nn.functional.interpolate(z[None, None], size=real.shape[-1], mode="linear", align_corners=True)[0, 0]
        return _straight_through(real, standin)
    return _straight_through(real, z)  # mp3


class Draws:
    """The transformed copies one recording's adversary judges at each iteration.

    Parameters
    ----------
    transformations : sequence of Transformation
    draws : int
        Copies per iteration of each random kind (a fixed kind gives one).
    rng : np.random.Generator
        This recording's generator of the loop's draws (see :func:`held_out` for the others).
    sr : int
        The model's rate in Hz, at which the loop transforms.
    n_samples : int
        The length of the signals transformed.

    A fixed kind's one draw and the rooms are prepared (:func:`prepare`) once.
    """

    def __init__(self, transformations, draws: int, rng: np.random.Generator, sr: int, n_samples: int):
        self.transformations, self.draws, self.rng, self.sr, self.n_samples = tuple(transformations), draws, rng, sr, n_samples
        self.prepared = {}
        for t in self.transformations:
            if t.kind == "room":
                self.prepared[t] = [prepare(t, t.draw(rng), sr, n_samples) for _ in range(max(ROOM_POOL, draws))]
            elif not t.random:
                self.prepared[t] = [prepare(t, t.draw(rng), sr, n_samples)]

    @property
    def per_iteration(self) -> int:
        """How many copies each :meth:`sample` gives."""
        return sum(self.draws if t.random else 1 for t in self.transformations)

    def sample(self) -> list[Draw]:
        """This iteration's copies: ``draws`` of each random kind (rooms without repeats from the pool), one of each fixed one."""
        out = []
        for t in self.transformations:
            if t.kind == "room":
                pool = self.prepared[t]
                out += [pool[i] for i in self.rng.choice(len(pool), size=self.draws, replace=False)]
            elif t.random:
                out += [Draw(t, t.draw(self.rng)) for _ in range(self.draws)]
            else:
                out += self.prepared[t]
        return out


def held_out(system: AudioClassifier, samples: np.ndarray, sr: int, name: str, goal: str, target: str,
             transformations, rng: np.random.Generator, draws: int = HELD_OUT_DRAWS) -> dict:
    """How often fresh transformed copies of a written example keep the attack's goal.

    Each copy is ``samples`` (the decoded file, ``(n_channels, n_samples)`` at ``sr`` Hz)
    transformed at the file's rate and channels, rounded to 16 bits and clipped as a WAV of it
    would be (:func:`~musadv.audio.quantize_pcm16`), and classified as any file is.

    Returns
    -------
    dict
        Per kind: ``{"kept": share of the copies that meet the goal, "draws": how many}``
        (``draws`` copies of a random kind, one of a fixed one).
    """
    out = {}
    for t in transformations:
        n = draws if t.random else 1
        kept = 0
        for _ in range(n):
            copy = quantize_pcm16(t.apply(samples, sr, t.draw(rng)))
            pred = classify_samples(system, copy, sr, f"{name} ({t.kind})")
            kept += goal_reached(goal, target, pred.label, pred.confidence)
        out[t.kind] = {"kept": kept / n, "draws": n}
    return out

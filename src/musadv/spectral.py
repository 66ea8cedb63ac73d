"""Short-time Fourier transform and its inverse: the only STFT code in musadv.

Classifiers, the adversary, the spectra cache and the reports all call :func:`stft` /
:func:`magnitude` and :func:`istft`, so they agree on framing to the sample. Both are PyTorch,
batched over leading dimensions and differentiable.

Spectra are laid out ``(..., n_frames, n_bins)``: one row per frame, because a frame (or a run
of frames) is what the classifiers take as an input element.

:func:`rfft` and :func:`irfft` are the whole-signal FFTs of NumPy arrays (a zero-phase EQ, noise
with a recording's spectrum), done by PyTorch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["STFTConfig", "REFERENCE", "stft", "magnitude", "complex_abs", "istft", "n_frames", "l2_norm", "rfft", "irfft"]

WINDOWS = ("hann", "hann_symmetric")


@dataclass(frozen=True)
class STFTConfig:
    """Analysis settings (paper eq. 1-2).

    Parameters
    ----------
    sr : int
        Sampling rate in Hz that audio is resampled to before analysis.
    n_fft : int
        Window and FFT length in samples (1024 = 46 ms at 22050 Hz).
    hop : int
        Frame advance in samples (512 = 50 % overlap).
    window : {'hann', 'hann_symmetric'}
        ``'hann'`` is the periodic Hann window, whose squares overlap-add to a constant at 50 %
        hop, so analysis and resynthesis are exact. ``'hann_symmetric'`` is ``np.hanning`` as in
        the authors' reference code.
    center : bool
        Pad ``n_fft // 2`` zeros at both ends so frame ``t`` is centred on sample ``t * hop``
        (every sample is then covered by two frames and reconstructs exactly). ``False`` frames
        from sample 0 without padding, as the reference code does.
    """

    sr: int = 22050
    n_fft: int = 1024
    hop: int = 512
    window: str = "hann"
    center: bool = True

    def __post_init__(self):
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, not {self.window!r}")
        if not 0 < self.hop <= self.n_fft:
            raise ValueError("hop must be in (0, n_fft]")

    @property
    def n_bins(self) -> int:
        """Number of non-negative frequency bins, ``n_fft // 2 + 1`` (513)."""
        return self.n_fft // 2 + 1

    @property
    def min_samples(self) -> int:
        """Fewest samples that give one complete frame."""
        return self.n_fft

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "STFTConfig":
        return cls(**{k: d[k] for k in ("sr", "n_fft", "hop", "window", "center")})


#: The framing of the authors' reference code: symmetric Hann, no centring.
REFERENCE = STFTConfig(window="hann_symmetric", center=False)


def window(config: STFTConfig, dtype=torch.float32, device=None) -> torch.Tensor:
    """The analysis window as a tensor of ``n_fft`` samples."""
    return torch.hann_window(
        config.n_fft, periodic=config.window == "hann", dtype=dtype, device=device
    )


def n_frames(n_samples: int, config: STFTConfig) -> int:
    """Number of frames :func:`stft` returns for a signal of ``n_samples`` samples."""
    if config.center:
        return 1 + n_samples // config.hop
    if n_samples < config.n_fft:
        return 0
    return 1 + (n_samples - config.n_fft) // config.hop


def stft(y: torch.Tensor, config: STFTConfig = STFTConfig()) -> torch.Tensor:
    """Complex STFT of one or many signals.

    Parameters
    ----------
    y : torch.Tensor
        Real signal(s), shape ``(..., n_samples)``.
    config : STFTConfig

    Returns
    -------
    torch.Tensor
        Complex, shape ``(..., n_frames, n_bins)``.
    """
    lead = y.shape[:-1]
    flat = y.reshape(-1, y.shape[-1])
    spec = torch.stft(
        flat,
        n_fft=config.n_fft,
        hop_length=config.hop,
        window=window(config, flat.dtype, flat.device),
        center=config.center,
        pad_mode="constant",
        return_complex=True,
    )
    return spec.transpose(-1, -2).reshape(*lead, spec.shape[-1], spec.shape[-2])


def rfft(x: np.ndarray) -> np.ndarray:
    """The real FFT of ``x`` (``(..., n)``) along its last axis at its own length, complex128.

    A whole recording's length often has a large prime factor (30 s at 22,050 Hz is 2 x 3 x 7^2 x 2251
    samples), where NumPy's FFT is many times slower than PyTorch's: this is NumPy's ``rfft``, done by PyTorch.
    """
    return torch.fft.rfft(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()


def irfft(spectrum: np.ndarray, n: int) -> np.ndarray:
    """The inverse of :func:`rfft` for ``n`` samples along the last axis, float64 (NumPy's ``irfft``, by PyTorch)."""
    return torch.fft.irfft(torch.from_numpy(np.asarray(spectrum, dtype=np.complex128)), n=n).numpy()


def l2_norm(v: torch.Tensor) -> float:
    """Euclidean norm, summed with PyTorch's cascade summation (float64-accurate, float32-fast)."""
    return math.sqrt(float(v.square().sum()))


def complex_abs(spec: torch.Tensor) -> torch.Tensor:
    """``|spec|`` of a complex tensor, as a real tensor of the same shape.

    Computed as ``sqrt(re^2 + im^2)`` on the real view: PyTorch's complex ``abs`` guards against
    overflow that audio spectra cannot reach and is three to four times slower on CPU, which shows
    in the adversary's loop. Where ``spec`` needs a gradient, ``abs`` is used (its gradient at 0 is
    defined; this form's is not).
    """
    if spec.requires_grad:
        return spec.abs()
    sq = torch.view_as_real(spec).square()
    return torch.add(sq[..., 0], sq[..., 1]).sqrt_()


def magnitude(y, config: STFTConfig = STFTConfig()):
    """Magnitude spectrum ``|STFT|`` of one or many signals.

    Parameters
    ----------
    y : torch.Tensor or np.ndarray
        Real signal(s), shape ``(..., n_samples)``.
    config : STFTConfig

    Returns
    -------
    torch.Tensor or np.ndarray (float32)
        Shape ``(..., n_frames, n_bins)``, of the same kind as ``y``.
    """
    if isinstance(y, np.ndarray):
        with torch.no_grad():
            return complex_abs(stft(torch.from_numpy(np.ascontiguousarray(y, np.float32)), config)).numpy()
    return complex_abs(stft(y, config))


def _overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """Sum frames ``(B, T, n)`` placed ``hop`` samples apart: ``(B, n + hop * (T - 1))``."""
    b, t, n = frames.shape
    total = n + hop * (t - 1)
    if n % hop:
        fold = dict(output_size=(1, total), kernel_size=(1, n), stride=(1, hop))
        return F.fold(frames.transpose(1, 2), **fold).reshape(b, total)
    # When the hop divides the frame (50 % overlap: two halves), overlap-add is a sum of
    # n / hop shifted copies of the frames cut into hop-long pieces: far faster than fold.
    pieces = frames.reshape(b, t, n // hop, hop)
    out = frames.new_empty(b, t + n // hop - 1, hop)
    out[:, :t] = pieces[:, :, 0]
    out[:, t:] = 0
    for j in range(1, n // hop):
        out[:, j : j + t] += pieces[:, :, j]
    return out.reshape(b, total)


def _envelope(config: STFTConfig, n_fr: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Window envelope ``sum_t w^2(n - t hop)`` over the ``n_fft + hop (n_fr - 1)`` samples ``n_fr`` frames span."""
    win2 = window(config, dtype, device) ** 2
    return _overlap_add(win2.expand(1, n_fr, config.n_fft), config.hop)[0]


def _inverse_envelope(config: STFTConfig, n_fr: int, floor: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """``1 / max(envelope, floor)`` over the span of ``n_fr`` frames (``1`` where the envelope is below 1e-8
    and ``floor`` is smaller: such samples stay at the 0 the overlap-add gives).

    Away from the ends the envelope repeats every ``hop`` samples, so it is computed for a few
    frames and tiled: a full-length computation costs more than the inverse FFT it serves.
    """
    n, hop = config.n_fft, config.hop
    k = -(-n // hop)  # most frames covering one sample
    short = min(n_fr, 2 * k + 1)
    env = _envelope(config, short, dtype, device)
    low = torch.full_like(env, floor if floor > 1e-8 else 1.0)
    inv = torch.where(env > floor, env, low).reciprocal_()
    if short == n_fr:
        return inv
    # Samples k*hop .. (k+1)*hop - 1 lie under every frame that can reach them: one period.
    total = n + hop * (n_fr - 1)
    full = inv[k * hop : (k + 1) * hop].repeat(-(-total // hop))[:total]
    full[: k * hop] = inv[: k * hop]
    full[total - k * hop :] = inv[inv.shape[0] - k * hop :]
    return full


def envelope_floor(config: STFTConfig) -> float:
    """Smallest window envelope of a sample that every frame able to reach it covers (the interior).

    Below it a sample lies only under the tails of windows at a recording's ends; :func:`istft`
    with a ``prior`` keeps such samples near the prior instead of dividing by the small envelope.
    """
    k = -(-config.n_fft // config.hop)
    env = _envelope(config, 2 * k + 1, torch.float64)
    return float(env[k * config.hop : (k + 1) * config.hop].min())


def _anchor_edges(y: torch.Tensor, prior: torch.Tensor, config: STFTConfig, n_fr: int, floor: float, start: int) -> None:
    """Add ``prior * max(0, floor - envelope) / floor`` to ``y`` in place (see :func:`istft`).

    The weight is non-zero only within ``n_fft`` samples of the ends of the frames' span and
    past its end, so only those stretches are touched, not the whole signal.
    """
    n, hop = config.n_fft, config.hop
    length, total = y.shape[-1], n + hop * (n_fr - 1)
    # The envelope of the first and last n + start samples involves only the frames that reach
    # them: a span of at most `few` frames has the same ends.
    few = min(n_fr, -(-(2 * n + start) // hop) + 1)
    env = _envelope(config, few, y.dtype, y.device)
    head = min(length, n)
    tail = min(max(head, total - start - n), length)
    for lo, hi in ((0, head), (tail, length)):
        if hi <= lo:
            continue
        weight = torch.ones(hi - lo, dtype=y.dtype, device=y.device)
        covered = max(0, min(hi, total - start) - lo)  # samples of the stretch that the frames span
        if covered:
            first = start + lo if lo == 0 else env.shape[0] - (total - start - lo)
            weight[:covered] = (floor - env[first : first + covered]).clamp_(min=0).div_(floor)
        y[..., lo:hi].addcmul_(weight, prior[..., lo:hi])


def istft(spec: torch.Tensor, config: STFTConfig = STFTConfig(), length: int | None = None,
          prior: torch.Tensor | None = None) -> torch.Tensor:
    """Least-squares inverse STFT (weighted overlap-add, Griffin & Lim 1984), optionally anchored at the edges.

    For a spectrum that came from :func:`stft` this returns the original signal; for any other
    complex array it returns the signal whose STFT is closest to it in the least-squares sense.

    Near a recording's ends a sample may lie only under the tail of one window (with centred
    frames when the length is just under a multiple of the hop; at the start and past the last
    frame without centring). The plain least-squares inverse divides by that window's tiny
    envelope and amplifies any change to the frame there thousands of times: a click. With a
    ``prior`` signal the inverse instead solves the least-squares problem plus the penalty
    ``sum_n lambda_n (y_n - prior_n)^2`` with ``lambda_n = max(0, floor - envelope_n)``, where
    ``floor`` is the interior's smallest envelope (:func:`envelope_floor`)::

        y_n = (overlap_add_n + lambda_n prior_n) / max(envelope_n, floor)

    Interior samples are the plain inverse; edge samples move no more than interior ones; samples
    no window covers keep the prior's value; and a spectrum that came from ``stft(prior)`` gives
    ``prior`` back exactly. The adversary passes its current waveform as the prior.

    Parameters
    ----------
    spec : torch.Tensor
        Complex, shape ``(..., n_frames, n_bins)``.
    config : STFTConfig
    length : int or None
        Length of the output in samples; by default as many as the frames span.
    prior : torch.Tensor or None
        Real, shape ``(..., length)`` (or broadcastable to it). ``None``: the plain inverse, in
        which samples no window covers come out as 0.

    Returns
    -------
    torch.Tensor
        Real, shape ``(..., length)``.
    """
    lead, n_fr = spec.shape[:-2], spec.shape[-2]
    flat = spec.reshape(-1, n_fr, spec.shape[-1])
    win = window(config, flat.real.dtype, flat.device)
    frames = torch.fft.irfft(flat, n=config.n_fft, dim=-1).mul_(win)  # (B, T, n_fft)
    floor = envelope_floor(config) if prior is not None else 1e-8
    y = _overlap_add(frames, config.hop).mul_(_inverse_envelope(config, n_fr, floor, win.dtype, win.device))
    start = config.n_fft // 2 if config.center else 0
    if length is None:
        length = config.hop * (n_fr - 1) if config.center else y.shape[-1]
    y = y[:, start : start + length]
    if y.shape[-1] < length:
        y = F.pad(y, (0, length - y.shape[-1]))
    y = y.reshape(*lead, length)
    if prior is not None:
        _anchor_edges(y, prior.expand_as(y), config, n_fr, floor, start)
    return y

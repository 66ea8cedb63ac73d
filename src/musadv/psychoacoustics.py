"""What a listener cannot hear: the frequency-masking threshold of the MPEG-1 psychoacoustic model 1.

Per STFT frame, the global masking threshold (ISO/IEC 11172-3, model 1, as formulated by Painter
& Spanias, "Perceptual coding of digital audio", Proc. IEEE 2000, and used by Qin et al., ICML
2019, to bound an imperceptible adversary):

1. The power spectral density in dB SPL, calibrated so that a full-scale sinusoid (amplitude 1)
   reads ``level_db`` (default 96 dB: the 16-bit range mapped onto a loud playback).
2. Tonal maskers: local maxima that stand 7 dB above their neighbours within 172 Hz (below
   5.5 kHz), 258 Hz (below 11 kHz) or 517 Hz (above); each the power sum of its bin and the two
   beside it. Noise maskers: per critical band, the power of every bin that is not near a tonal
   masker, placed at the band's geometric-mean frequency.
3. Maskers under the absolute threshold of hearing are dropped, and of two within 0.5 Bark the
   weaker.
4. Each masker's threshold at every bin: its level, its masking index (tonal
   ``-6.025 - 0.275 z``, noise ``-2.025 - 0.175 z``, ``z`` its Bark) and the spreading function
   of the Bark distance (:func:`spreading_db`); the global threshold is the power sum of all of
   them and the absolute threshold of hearing (:func:`absolute_threshold_db`).

What the threshold is compared with. The global threshold at a frequency is the level of a
probe that is just masked there, and a probe's level is its power in the critical band around
it: a tone's is its own power, a noise's the sum over the band. Comparing the threshold with each
bin's power instead (as Qin et al. and the Adversarial Robustness Toolbox do) grants a change
spread over a band of K bins K times what the model grants that band: above 5.5 kHz, at 21.5 Hz
a bin, 17 to 22 dB too much. So a change is measured as the model's SMR measures it (ISO/IEC
11172-3, Annex D: the masking level of a subband is the least of the global threshold across
it): per frame and critical band (:func:`critical_bands`), its power (:func:`band_power_db`)
against the least of the threshold across that band (:func:`band_masking_threshold`). A change
is masked where no band of any frame exceeds it (simultaneous masking only: the model has no
temporal masking). A noise's band power does not depend on the framing's resolution, so its
noise-to-mask ratio changes only as far as the model's maskers are resolved differently (little
between 46 and 93 ms frames; more at 11.6 ms, in the lowest bands).
"""

from __future__ import annotations

import numpy as np
import torch

from .spectral import STFTConfig, istft, stft, window

__all__ = ["LOWEST_HZ", "bark", "absolute_threshold_db", "spreading_db", "psd_db", "masking_threshold", "thresholds",
           "critical_bands", "full_scale_power", "band_power_db", "band_masking_threshold", "noise_under_mask", "noise_to_mask",
           "measure_config", "DEFAULT_LEVEL_DB"]

#: SPL (dB) of a full-scale sinusoid: where a recording's digital level is put for the model.
DEFAULT_LEVEL_DB = 96.0
#: Neighbourhoods of the tonal-masker test (Hz), below 5.5 kHz, below 11 kHz, above: the model's
#: 2, 3 and 6 bins of a 512-point FFT at 44.1 kHz.
TONAL_NEIGHBOURHOOD_HZ = ((5500.0, 172.0), (11000.0, 258.0), (np.inf, 517.0))
TONAL_EXCESS_DB = 7.0
#: Critical band edges (Hz) of the model (Zwicker's 25 bands).
BAND_EDGES_HZ = np.array([0, 100, 200, 300, 400, 510, 630, 770, 920, 1080, 1270, 1480, 1720, 2000, 2320, 2700, 3150,
                          3700, 4400, 5300, 6400, 7700, 9500, 12000, 15500, 1e9])


#: 1 Bark (Hz): below it the threshold in quiet is held at its value here (see :func:`absolute_threshold_db`).
LOWEST_HZ = 101.35


def bark(freqs) -> np.ndarray:
    """Critical-band rate ``z`` (Bark) of frequencies in Hz: ``13 atan(0.00076 f) + 3.5 atan((f / 7500)^2)``."""
    f = np.asarray(freqs, dtype=np.float64)
    return 13.0 * np.arctan(0.00076 * f) + 3.5 * np.arctan((f / 7500.0) ** 2)


def absolute_threshold_db(freqs) -> np.ndarray:
    """Absolute threshold of hearing (dB SPL) at frequencies in Hz (Terhardt's approximation).

    ``3.64 (f/1000)^-0.8 - 6.5 exp(-0.6 (f/1000 - 3.3)^2) + 10^-3 (f/1000)^4``; below 1 Bark
    (:data:`LOWEST_HZ`) it is held at its value there. The formula climbs steeply below it (83 dB
    SPL at 20 Hz, near full scale at the calibration) and would let an adversary fill the lowest
    bins with a change that the formula calls inaudible but that dwarfs the music, drives a
    loudspeaker and clips; Qin et al.'s code gives the threshold in quiet no say below 1 Bark
    either (the Adversarial Robustness Toolbox's gives it one down to 20 Hz, 12 dB lower).
    """
    k = np.maximum(np.asarray(freqs, dtype=np.float64), LOWEST_HZ) / 1000.0
    return 3.64 * k ** -0.8 - 6.5 * np.exp(-0.6 * (k - 3.3) ** 2) + 1e-3 * k ** 4


def spreading_db(dz, masker_db) -> np.ndarray:
    """The model's spreading function (dB) at Bark distance ``dz = z_maskee - z_masker`` from a masker of ``masker_db`` SPL.

    ``17 dz - 0.4 P + 11`` for ``-3 <= dz < -1``; ``(0.4 P + 6) dz`` for ``-1 <= dz < 0``;
    ``-17 dz`` for ``0 <= dz < 1``; ``(0.15 P - 17) dz - 0.15 P`` for ``1 <= dz < 8``; ``-inf``
    (no masking) elsewhere. Broadcasts over both arguments.
    """
    dz, p = np.broadcast_arrays(np.asarray(dz, dtype=np.float64), np.asarray(masker_db, dtype=np.float64))
    sf = np.full(dz.shape, -np.inf)
    for lo, hi, value in ((-3, -1, lambda d, q: 17 * d - 0.4 * q + 11), (-1, 0, lambda d, q: (0.4 * q + 6) * d),
                          (0, 1, lambda d, q: -17 * d), (1, 8, lambda d, q: (0.15 * q - 17) * d - 0.15 * q)):
        sel = (dz >= lo) & (dz < hi)
        sf[sel] = value(dz[sel], p[sel])
    return sf


def psd_db(spec: np.ndarray, config: STFTConfig, level_db: float = DEFAULT_LEVEL_DB) -> np.ndarray:
    """Power spectral density (dB SPL) ``(n_frames, n_bins)`` of an STFT made with ``config``.

    Calibrated so that a full-scale sinusoid centred on a bin reads ``level_db`` there: the
    magnitude is divided by half the window's sum.
    """
    scale = float(window(config).sum()) / 2.0
    power = np.abs(np.asarray(spec)) ** 2 / scale**2
    return level_db + 10.0 * np.log10(np.maximum(power, 1e-30))


def _tonal_neighbourhood(freqs: np.ndarray, bin_hz: float) -> np.ndarray:
    """Bins on each side that a tonal masker must exceed by 7 dB (at least 2)."""
    width = np.select([freqs < edge for edge, _ in TONAL_NEIGHBOURHOOD_HZ], [hz for _, hz in TONAL_NEIGHBOURHOOD_HZ])
    return np.maximum(2, np.round(width / bin_hz)).astype(int)


def _shift(a: np.ndarray, j: int, fill) -> np.ndarray:
    """``a`` moved ``j`` bins up the last axis (down for negative ``j``), ``fill`` where nothing came."""
    out = np.full_like(a, fill)
    if j > 0:
        out[..., j:] = a[..., :-j]
    elif j < 0:
        out[..., :j] = a[..., -j:]
    else:
        out[...] = a
    return out


def _tonal(psd: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Which bins of each frame ``(n_frames, n_bins)`` are tonal maskers: local maxima standing
    TONAL_EXCESS_DB above every bin from 2 to ``reach`` away on both sides."""
    tonal = (psd > _shift(psd, 1, np.inf)) & (psd >= _shift(psd, -1, np.inf))
    tonal[:, [0, -1]] = False
    for j in range(2, int(reach.max()) + 1):
        stands = (psd - _shift(psd, j, -np.inf) >= TONAL_EXCESS_DB) & (psd - _shift(psd, -j, -np.inf) >= TONAL_EXCESS_DB)
        tonal &= stands | (reach < j)
    return tonal


def thresholds(psd: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Global masking threshold (dB SPL) ``(n_frames, n_bins)`` of frames' PSD ``(n_frames, n_bins)`` in dB SPL at ``freqs`` Hz."""
    psd = np.atleast_2d(np.asarray(psd, dtype=np.float64))
    n = psd.shape[1]
    z, ath = bark(freqs), absolute_threshold_db(freqs)
    bin_hz = float(freqs[1] - freqs[0])
    reach = _tonal_neighbourhood(freqs, bin_hz)
    power = 10.0 ** (psd / 10.0)
    tonal = _tonal(psd, reach)
    tonal_db = 10.0 * np.log10(_shift(power, 1, 0.0) + power + _shift(power, -1, 0.0))
    near = np.zeros_like(tonal)
    for j in range(-int(reach.max()), int(reach.max()) + 1):
        near |= _shift(tonal & (reach >= abs(j)), j, False)
    # Noise maskers: what is left in each critical band, at its geometric-mean frequency.
    bands = [np.flatnonzero((freqs >= lo) & (freqs < hi)) for lo, hi in zip(BAND_EDGES_HZ[:-1], BAND_EDGES_HZ[1:])]
    bands = [b for b in bands if b.size]
    log_f = np.log(np.maximum(freqs, bin_hz / 2))
    noise_bins, noise_db = [], []
    for b in bands:
        left = ~near[:, b]
        rest = (power[:, b] * left).sum(1)
        count = left.sum(1)
        centre = np.exp((log_f[b] * left).sum(1) / np.maximum(count, 1))
        above = np.clip(np.searchsorted(freqs, centre), 1, n - 1)
        nearest = np.where(freqs[above] - centre < centre - freqs[above - 1], above, above - 1)
        noise_bins.append(nearest)
        noise_db.append(np.where((count > 0) & (rest > 0), 10.0 * np.log10(np.maximum(rest, 1e-300)), -np.inf))
    noise_bins, noise_db = np.stack(noise_bins, 1), np.stack(noise_db, 1)
    out = np.empty_like(psd)
    ath_power = 10.0 ** (ath / 10.0)
    for f in range(len(psd)):
        tk = np.flatnonzero(tonal[f])
        bins = np.r_[tk, noise_bins[f]]
        levels = np.r_[tonal_db[f, tk], noise_db[f]]
        is_tonal = np.r_[np.ones(len(tk), bool), np.zeros(noise_bins.shape[1], bool)]
        # Decimation: audible maskers only, and of two within 0.5 Bark the stronger.
        audible = levels >= ath[bins]
        bins, levels, is_tonal = bins[audible], levels[audible], is_tonal[audible]
        order = np.argsort(z[bins], kind="stable")
        keep: list[int] = []
        for m in order:
            if keep and z[bins[m]] - z[bins[keep[-1]]] < 0.5:
                if levels[m] > levels[keep[-1]]:
                    keep[-1] = m
                continue
            keep.append(m)
        bins, levels, is_tonal = bins[keep], levels[keep], is_tonal[keep]
        index = np.where(is_tonal, -6.025 - 0.275 * z[bins], -2.025 - 0.175 * z[bins])
        spread = spreading_db(z[None, :] - z[bins][:, None], levels[:, None])
        out[f] = 10.0 * np.log10(ath_power + (10.0 ** (((levels + index)[:, None] + spread) / 10.0)).sum(0))
    return out


def masking_threshold(signal, config: STFTConfig = STFTConfig(), level_db: float = DEFAULT_LEVEL_DB) -> np.ndarray:
    """Global masking threshold (dB SPL) ``(n_frames, n_bins)`` of a mono signal, frame by frame of ``config``'s STFT.

    Parameters
    ----------
    signal : np.ndarray
        ``(n_samples,)`` at ``config.sr`` Hz (the model's rate or the file's: the threshold is
        made at whatever rate and framing ``config`` states).
    config : STFTConfig
    level_db : float
        SPL of a full-scale sinusoid: the playback level the threshold assumes.

    Returns
    -------
    np.ndarray
        float64; compare with :func:`psd_db` of a change's STFT in the same ``config``.
    """
    with torch.no_grad():
        spec = stft(torch.as_tensor(np.asarray(signal, dtype=np.float32)), config).numpy()
    psd = psd_db(spec, config, level_db)
    freqs = np.arange(config.n_bins) * config.sr / config.n_fft
    return thresholds(psd, freqs) if len(psd) else np.zeros((0, config.n_bins))


def critical_bands(config: STFTConfig) -> np.ndarray:
    """The critical band (Zwicker's 25, numbered from 0, empty ones skipped) of each bin of ``config``'s STFT.

    Returns
    -------
    np.ndarray
        int, ``(n_bins,)``, non-decreasing: a band's bins are contiguous.
    """
    freqs = np.arange(config.n_bins) * config.sr / config.n_fft
    return np.unique(np.searchsorted(BAND_EDGES_HZ, freqs, side="right") - 1, return_inverse=True)[1].ravel()


def _band_starts(config: STFTConfig) -> np.ndarray:
    """The first bin of each critical band of :func:`critical_bands`."""
    return np.flatnonzero(np.r_[True, np.diff(critical_bands(config)) != 0])


def full_scale_power(config: STFTConfig) -> float:
    """The STFT power ``sum |S|^2`` over its bins of a full-scale sinusoid in ``config``'s framing: what
    :func:`band_power_db` reads as the playback level.

    ``(sum w / 2)^2`` (the peak bin) times the window's equivalent noise bandwidth in bins
    (``n sum w^2 / (sum w)^2``: 1.5 for Hann), over which a sinusoid's power spreads.
    """
    w = window(config, dtype=torch.float64)
    return float((w.sum() / 2.0) ** 2 * len(w) * (w**2).sum() / w.sum() ** 2)


def band_power_db(spec, config: STFTConfig, level_db: float = DEFAULT_LEVEL_DB) -> np.ndarray:
    """The power (dB SPL) ``(n_frames, n_bands)`` in each critical band of each frame of an STFT made with ``config``.

    The calibrated power of the band's bins (:func:`psd_db`) summed and divided by the window's
    equivalent noise bandwidth (1.5 bins for Hann), so that a sinusoid of amplitude ``a`` reads
    ``level_db + 20 log10(a)`` and a noise its own power on the same scale, at any resolution.
    """
    power = np.abs(np.asarray(spec)).astype(np.float64) ** 2 / full_scale_power(config)
    summed = np.add.reduceat(power, _band_starts(config), axis=-1) if power.shape[-1] else power
    return level_db + 10.0 * np.log10(np.maximum(summed, 1e-30))


def band_masking_threshold(signal, config: STFTConfig = STFTConfig(), level_db: float = DEFAULT_LEVEL_DB) -> np.ndarray:
    """The masking threshold (dB SPL) ``(n_frames, n_bands)`` of each critical band of each frame of a mono signal.

    The least of the global threshold (:func:`masking_threshold`) across the band's bins: a
    change whose power in the band (:func:`band_power_db`) stays under it is masked wherever in
    the band it lies (the model's masking level of a subband, ISO/IEC 11172-3 Annex D).

    Parameters
    ----------
    signal : np.ndarray
        ``(n_samples,)`` at ``config.sr`` Hz.
    config : STFTConfig
    level_db : float
        SPL of a full-scale sinusoid.
    """
    threshold = masking_threshold(signal, config, level_db)
    starts = _band_starts(config)
    return np.minimum.reduceat(threshold, starts, axis=-1) if len(threshold) else np.zeros((0, len(starts)))


def noise_under_mask(signal, config: STFTConfig = STFTConfig(), margin_db: float = 3.0, level_db: float = DEFAULT_LEVEL_DB,
                     rng: np.random.Generator | None = None) -> np.ndarray:
    """Noise the model calls masked: white noise whose power in every critical band of every frame is
    ``margin_db`` under the signal's band threshold (:func:`band_masking_threshold`).

    A control for the perceptual adversary: the loudest change a threshold allows, and what its
    SNR says of the threshold (a codec's inaudible noise sits 15 to 25 dB under the music).

    Parameters
    ----------
    signal : np.ndarray
        ``(n_samples,)`` at ``config.sr`` Hz, mono.
    margin_db : float
        How far under the threshold (dB).
    rng : np.random.Generator, optional

    Returns
    -------
    np.ndarray
        float32 ``(n_samples,)``: the noise alone (add it to the signal).
    """
    signal = np.asarray(signal, dtype=np.float32)
    rng = rng or np.random.default_rng(0)
    with torch.no_grad():
        spec = stft(torch.from_numpy(rng.standard_normal(len(signal)).astype(np.float32)), config)
        gain_db = band_masking_threshold(signal, config, level_db) - margin_db - band_power_db(spec.numpy(), config, level_db)
        gain = torch.from_numpy((10.0 ** (gain_db / 20.0))[:, critical_bands(config)].astype(np.float32))
        return istft(spec * gain, config, length=len(signal), prior=torch.zeros(len(signal))).numpy()


def measure_config(sr: int) -> STFTConfig:
    """The framing a file's noise-to-mask ratio is measured in at ``sr`` Hz: Hann frames of the power of
    two nearest 46 ms (1024 at 22.05 kHz, 2048 at 44.1 kHz, 512 at 11.025 kHz), 50 % overlap."""
    n_fft = int(2 ** round(np.log2(0.0464 * sr)))
    return STFTConfig(sr=int(sr), n_fft=n_fft, hop=n_fft // 2)


def noise_to_mask(reference: np.ndarray, changed: np.ndarray, sr: int, level_db: float = DEFAULT_LEVEL_DB,
                  config: STFTConfig | None = None) -> dict:
    """How far a change rises above the masking threshold of the recording it was made to.

    Per frame and critical band, the change's power (:func:`band_power_db`) over the
    original's band threshold (:func:`band_masking_threshold`).

    Parameters
    ----------
    reference, changed : np.ndarray
        ``(n_channels, n_samples)`` (or ``(n_samples,)``) at ``sr`` Hz: the original and the
        changed recording; each channel is measured against its own threshold.
    sr : int
    level_db : float
        SPL of a full-scale sinusoid (the playback level the threshold assumes).
    config : STFTConfig, optional
        The framing (default :func:`measure_config` of ``sr``: every figure musadv prints uses it).

    Returns
    -------
    dict
        ``nmr_db``: ``10 log10`` of the mean over frames, critical bands and channels of the
        change's band power over the band threshold (0 dB: on the threshold on average; -inf for
        no change; a linear mean, so that an audible stretch is not hidden by unchanged ones);
        ``above_share``: the share of (frame, band) cells where the change's power exceeds the
        threshold.
    """
    reference = np.atleast_2d(np.asarray(reference, dtype=np.float32))
    changed = np.atleast_2d(np.asarray(changed, dtype=np.float32))
    if reference.shape != changed.shape:
        raise ValueError(f"reference and changed differ in shape: {reference.shape} and {changed.shape}")
    if np.array_equal(reference, changed):
        return {"nmr_db": -np.inf, "above_share": 0.0}
    config = config or measure_config(sr)
    ratios, above, n = 0.0, 0, 0
    for ref, new in zip(reference, changed):
        threshold = band_masking_threshold(ref, config, level_db)
        with torch.no_grad():
            spec = stft(torch.from_numpy(new - ref), config).numpy()
        excess = band_power_db(spec, config, level_db) - threshold
        ratios += float((10.0 ** (excess / 10.0)).sum())
        above += int((excess > 0).sum())
        n += excess.size
    return {"nmr_db": 10.0 * np.log10(ratios / n) if ratios > 0 else -np.inf, "above_share": above / n}

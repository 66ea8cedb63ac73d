"""musadv's masking threshold beside an independent implementation: the Adversarial Robustness Toolbox's.

ART's ``PsychoacousticMasker`` (Qin et al. 2019's simplification of model 1: every local maximum a
tonal masker, a two-slope spreading function, the threshold in quiet 12 dB lower) is given the
same PSD frames as musadv (22.05 kHz, Hann 1024/512, a full-scale sine at 96 dB SPL), so that only
the models differ. Its 0.5-Bark decimation compares the Bark value of the i-th *bin* instead of
the i-th masker's; that is corrected here (``decimate``) so that the comparison is of the models.

Per clip it prints:

* the global thresholds side by side: musadv's minus ART's, median and 90th percentile over all
  bins, below 500 Hz and above 5.5 kHz;
* the share of bins (ART) or critical bands (musadv) whose threshold exceeds the music's own power
  there;
* noise shaped 3 dB under each rule, its SNR against the music, and how the other rule reads it:
  ``musadv bands`` (the threshold compared with a band's power: :func:`~musadv.psychoacoustics.noise_under_mask`),
  ``musadv per bin`` (musadv's threshold used as an allowance for each bin: the rule before
  issue 37) and ``ART per bin`` (ART's threshold for each bin, as Qin et al. use it). "ART: bins
  above" is the share of bins where the noise's power exceeds ART's threshold.

ART is a development extra, never needed to run musadv: ``pip install adversarial-robustness-toolbox==1.20.1``.

    python benchmarks/bench_masking_reference.py [--clips blues.00000,classical.00000,metal.00000]
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from musadv import audio
from musadv.psychoacoustics import (DEFAULT_LEVEL_DB, band_masking_threshold, band_power_db, masking_threshold,
                                    noise_to_mask, noise_under_mask, psd_db)
from musadv.spectral import STFTConfig, istft, stft

GTZAN_MINI = Path(__file__).resolve().parents[1].parent / "shared" / "gtzan-mini" / "genres"
CONFIG = STFTConfig()


def decimate(maskers: np.ndarray, idx: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of two maskers within 0.5 Bark of each other the stronger, comparing the maskers' own Bark values."""
    keep: list[int] = []
    for m in range(len(idx)):
        if keep and z[idx[m]] - z[idx[keep[-1]]] < 0.5:
            if maskers[m] > maskers[keep[-1]]:
                keep[-1] = m
            continue
        keep.append(m)
    return maskers[keep], idx[keep]


def art_threshold(psd: np.ndarray) -> np.ndarray:
    """ART's global threshold (dB SPL) ``(n_frames, n_bins)`` of musadv's PSD frames, decimation corrected."""
    from art.attacks.evasion.imperceptible_asr.imperceptible_asr import PsychoacousticMasker

    masker = PsychoacousticMasker(window_size=CONFIG.n_fft, hop_size=CONFIG.hop, sample_rate=CONFIG.sr)
    out = np.empty_like(psd)
    for f, frame in enumerate(psd):
        maskers, idx = masker.find_maskers(frame)
        audible = maskers > masker.absolute_threshold_hearing[idx]
        maskers, idx = decimate(maskers[audible], idx[audible], masker.bark)
        out[f] = masker.calculate_global_threshold(masker.calculate_individual_threshold(maskers, idx))
    return out


def per_bin_noise(x: np.ndarray, threshold_db: np.ndarray, margin_db: float, rng) -> np.ndarray:
    """White noise whose power in every bin is ``margin_db`` under ``threshold_db`` (a per-bin allowance)."""
    with torch.no_grad():
        spec = stft(torch.from_numpy(rng.standard_normal(len(x)).astype(np.float32)), CONFIG)
        gain = 10.0 ** ((threshold_db - margin_db - psd_db(spec.numpy(), CONFIG)) / 20.0)
        return istft(spec * torch.from_numpy(gain.astype(np.float32)), CONFIG, length=len(x),
                     prior=torch.zeros(len(x))).numpy()


def snr_db(x: np.ndarray, noise: np.ndarray) -> float:
    return float(10 * np.log10((x.astype(np.float64) ** 2).sum() / (noise.astype(np.float64) ** 2).sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", default="blues.00000,classical.00000,metal.00000")
    parser.add_argument("--margin", type=float, default=3.0, help="dB under each threshold the shaped noise lies")
    args = parser.parse_args()
    freqs = np.arange(CONFIG.n_bins) * CONFIG.sr / CONFIG.n_fft
    regions = {"all": freqs >= 0, "<500 Hz": freqs < 500, ">5.5 kHz": freqs > 5500}
    print(f"framing: {CONFIG.sr} Hz, Hann {CONFIG.n_fft}/{CONFIG.hop}; full-scale sine = {DEFAULT_LEVEL_DB} dB SPL; "
          f"noise {args.margin} dB under each rule")
    for name in args.clips.split(","):
        x, _ = audio.load(GTZAN_MINI / name.split(".")[0] / f"{name}.wav", sr=CONFIG.sr)
        with torch.no_grad():
            psd = psd_db(stft(torch.from_numpy(x), CONFIG).numpy(), CONFIG)
        ours, theirs = masking_threshold(x, CONFIG), art_threshold(psd)
        ok = np.isfinite(theirs)
        diff = ours - theirs
        print(f"\n{name}: musadv's global threshold minus ART's (dB):")
        for label, sel in regions.items():
            d = diff[:, sel][ok[:, sel]]
            print(f"  {label:>9}: median {np.median(d):+6.1f}, 90th percentile {np.percentile(d, 90):+6.1f}")
        with torch.no_grad():
            music_bands = band_power_db(stft(torch.from_numpy(x), CONFIG).numpy(), CONFIG)
        bands = band_masking_threshold(x, CONFIG)
        print(f"  threshold above the music's own power: ART {np.mean(theirs > psd):.0%} of bins; "
              f"musadv {np.mean(ours > psd):.0%} of bins, {np.mean(bands > music_bands):.0%} of critical bands")
        rng = np.random.default_rng(0)
        noises = {"musadv bands": noise_under_mask(x, CONFIG, args.margin, rng=rng),
                  "musadv per bin": per_bin_noise(x, ours, args.margin, rng),
                  "ART per bin": per_bin_noise(x, np.where(ok, theirs, -np.inf), args.margin, rng)}
        print(f"  {'noise shaped by':>15} | {'SNR dB':>6} | musadv NMR dB (bands above) | ART: NMR dB per bin (bins above)")
        for label, n in noises.items():
            ours_read = noise_to_mask(x, x + n, CONFIG.sr, config=CONFIG)
            with torch.no_grad():
                excess = psd_db(stft(torch.from_numpy(n), CONFIG).numpy(), CONFIG) - theirs
            excess = excess[ok]
            art_nmr = 10 * np.log10(np.mean(10 ** (excess / 10)))
            print(f"  {label:>15} | {snr_db(x, n):6.1f} | {ours_read['nmr_db']:+7.1f} ({ours_read['above_share']:5.1%})"
                  f"          | {art_nmr:+7.1f} ({np.mean(excess > 0):5.1%})")


if __name__ == "__main__":
    main()

"""musadv.psychoacoustics: the masking threshold of the MPEG-1 psychoacoustic model 1, against its definition:
silence leaves the absolute threshold of hearing; around a tone the threshold is the tone's level plus the
masking index, falling with the spreading function's slopes in Bark; a weak tone half a Bark away is masked,
the same tone four Bark away is not; the same at any rate and framing. A change is measured by its power in
each critical band against the band's threshold: a noise masks a noise of its band only down to the masking
index in band power, a change spread over a band is granted no more than the same change in one bin, and
noise shaped under the threshold of real music sits well under the music."""

import numpy as np
import pytest
import torch

from musadv import audio
from musadv.psychoacoustics import (LOWEST_HZ, absolute_threshold_db, band_power_db, bark, critical_bands, masking_threshold,
                                    noise_to_mask, noise_under_mask, psd_db)
from musadv.spectral import STFTConfig, stft

from .conftest import GTZAN_MINI

CONFIG = STFTConfig()  # 22050 Hz, 1024-point frames
FREQS = np.arange(CONFIG.n_bins) * CONFIG.sr / CONFIG.n_fft
K0 = 100  # the masker on bin 100: 2153 Hz
Z0 = bark(FREQS[K0])


def _tone(freq, amp, sr=CONFIG.sr, seconds=2.0):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _middle(a):
    return a[len(a) // 2]


def _bin_at(dz):
    return int(np.argmin(np.abs(bark(FREQS) - (Z0 + dz))))


def _power_sum_db(*levels):
    return 10 * np.log10(sum(10 ** (np.asarray(v) / 10) for v in levels))


def test_in_silence_the_threshold_is_the_absolute_threshold_of_hearing():
    th = masking_threshold(np.zeros(CONFIG.sr, np.float32), CONFIG)
    assert th.shape[1] == CONFIG.n_bins
    assert np.abs(th - absolute_threshold_db(FREQS)).max() < 1e-9
    assert absolute_threshold_db(3300.0) < absolute_threshold_db(100.0)  # most sensitive near 3.3 kHz


def test_below_one_bark_the_threshold_in_quiet_gives_no_more_room_than_at_one_bark():
    """Terhardt's formula reads 83 dB SPL at 20 Hz (13 dB under full scale): held there, it would let an
    adversary put a change as loud as the music into the lowest bins and call it inaudible."""
    assert abs(bark(LOWEST_HZ) - 1.0) < 1e-3
    th = masking_threshold(np.zeros(CONFIG.sr, np.float32), CONFIG)
    low = FREQS < LOWEST_HZ
    assert low.sum() == 5  # 0 to 86 Hz at 21.5 Hz a bin
    assert np.abs(th[:, low] - absolute_threshold_db(LOWEST_HZ)).max() < 1e-9
    assert absolute_threshold_db(LOWEST_HZ) < 25.0


def test_a_full_scale_sine_reads_the_playback_level():
    for level in (96.0, 80.0):
        psd = _middle(psd_db(stft(torch.from_numpy(_tone(FREQS[K0], 1.0)), CONFIG).numpy(), CONFIG, level))
        assert psd[K0] == pytest.approx(level, abs=0.01)


@pytest.mark.parametrize("amp", [0.5, 0.05])
def test_around_a_tone_the_threshold_follows_the_masking_index_and_the_spreading_slopes(amp):
    """Painter & Spanias (2000), eqs. 13-16: a tonal masker of level P (the power of its bin and the
    two beside it) at z0 masks P - 6.025 - 0.275 z0 at its own place, falls 17 dB per Bark above it
    up to 1 Bark and (0.4 P + 6) dB per Bark below it, and beyond 1 Bark above by (17 - 0.15 P) dB
    per Bark less 0.15 P."""
    x = _tone(FREQS[K0], amp)
    psd = _middle(psd_db(stft(torch.from_numpy(x), CONFIG).numpy(), CONFIG))
    P = 10 * np.log10((10 ** (psd[K0 - 1 : K0 + 2] / 10)).sum())
    at_masker = P - 6.025 - 0.275 * Z0
    th = _middle(masking_threshold(x, CONFIG))
    z = bark(FREQS)
    for dz in (-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0):
        k = _bin_at(dz)
        d = z[k] - Z0
        if d < 0:
            slope = (0.4 * P + 6) * d
        elif d < 1:
            slope = -17 * d
        else:
            slope = (0.15 * P - 17) * d - 0.15 * P
        want = _power_sum_db(at_masker + slope, absolute_threshold_db(FREQS[k]))
        assert th[k] == pytest.approx(want, abs=0.5), dz


def test_a_weak_tone_half_a_bark_away_is_masked_and_four_bark_away_is_not():
    masker = _tone(FREQS[K0], 0.5)
    th = _middle(masking_threshold(masker, CONFIG))
    for dz, masked in ((0.5, True), (4.0, False)):
        k = _bin_at(dz)
        weak = _tone(FREQS[k], 0.05)  # 20 dB below the masker
        level = _middle(psd_db(stft(torch.from_numpy(weak), CONFIG).numpy(), CONFIG))[k]
        assert bool(level < th[k]) == masked, (dz, level, th[k])


@pytest.mark.parametrize("config", [STFTConfig(sr=16000, n_fft=512, hop=256), STFTConfig(sr=44100, n_fft=2048, hop=1024)])
def test_the_threshold_of_a_tone_is_the_same_at_another_rate_and_framing(config):
    """The model's rate and the file's: the same tone, the same threshold at its frequency and 1 Bark above."""
    freq = FREQS[K0]
    k_here = int(round(freq * config.n_fft / config.sr))
    freq = k_here * config.sr / config.n_fft  # on a bin in both framings
    ref_k = int(round(freq * CONFIG.n_fft / CONFIG.sr))
    ref = _middle(masking_threshold(_tone(freq, 0.5), CONFIG))
    th = _middle(masking_threshold(_tone(freq, 0.5, sr=config.sr), config))
    assert th[k_here] == pytest.approx(ref[ref_k], abs=0.5)
    above = bark(freq) + 1.0
    k1 = int(np.argmin(np.abs(bark(np.arange(config.n_bins) * config.sr / config.n_fft) - above)))
    r1 = int(np.argmin(np.abs(bark(FREQS) - above)))
    assert th[k1] == pytest.approx(ref[r1], abs=1.0)


def test_noise_to_mask_of_no_change_is_minus_infinity():
    x = _tone(FREQS[K0], 0.5)
    assert noise_to_mask(x, x, CONFIG.sr) == {"nmr_db": -np.inf, "above_share": 0.0}


def test_a_change_ten_times_larger_has_a_noise_to_mask_ratio_20_db_higher():
    """The NMR is a power ratio against the original's threshold: linear in the change's power."""
    x = _tone(FREQS[K0], 0.5)
    noise = np.random.default_rng(0).standard_normal(len(x)).astype(np.float32) * 1e-4
    a = noise_to_mask(x, x + noise, CONFIG.sr)["nmr_db"]
    b = noise_to_mask(x, x + 10 * noise, CONFIG.sr)["nmr_db"]
    assert b - a == pytest.approx(20.0, abs=0.05)


def test_a_masked_change_has_no_band_above_the_threshold_and_an_unmasked_one_has():
    """A tone 34 dB under the masker. (20 dB under, half a Bark away, it lies under the threshold at its own
    frequency but over the least of it across its band, where the change is measured: the band rule errs
    on the side of hearing.)"""
    masker = _tone(FREQS[K0], 0.5)
    for dz, masked in ((0.5, True), (4.0, False)):
        weak = _tone(FREQS[_bin_at(dz)], 0.01)
        share = noise_to_mask(masker, masker + weak, CONFIG.sr, config=CONFIG)["above_share"]
        assert (share == 0) if masked else (share > 0.005), (dz, share)


def test_a_channel_left_alone_halves_the_noise_to_mask_ratio():
    x = _tone(FREQS[K0], 0.5)
    noise = np.random.default_rng(1).standard_normal(len(x)).astype(np.float32) * 1e-3
    mono = noise_to_mask(x, x + noise, CONFIG.sr)["nmr_db"]
    stereo = noise_to_mask(np.stack([x, x]), np.stack([x + noise, x]), CONFIG.sr)["nmr_db"]
    assert stereo == pytest.approx(mono - 10 * np.log10(2), abs=0.01)


def _band_noise(lo_hz, hi_hz, seed, sr=CONFIG.sr, seconds=2.0):
    """Gaussian noise with all its power between ``lo_hz`` and ``hi_hz``."""
    n = int(seconds * sr)
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[(f < lo_hz) | (f >= hi_hz)] = 0
    return np.fft.irfft(spec, n).astype(np.float32)


def _band_level(x, band, config=CONFIG):
    """Mean power (dB SPL) of critical band ``band`` over the frames away from the ends."""
    p = band_power_db(stft(torch.from_numpy(x), config).numpy(), config)[5:-5, band]
    return 10 * np.log10(np.mean(10 ** (p / 10)))


def test_a_band_power_reads_a_sines_amplitude_and_a_noises_power_at_any_resolution():
    for config in (CONFIG, STFTConfig(n_fft=256, hop=128)):
        k = int(np.searchsorted(np.arange(config.n_bins) * config.sr / config.n_fft, 3400.0))
        band = critical_bands(config)[k]
        assert _band_level(_tone(3400.0, 0.1), band, config) == pytest.approx(96.0 - 20.0, abs=0.2)
        noise = _band_noise(3200.0, 3600.0, seed=0)  # inside the 3150-3700 Hz band
        want = 96.0 + 10 * np.log10(np.mean(noise.astype(np.float64) ** 2) / 0.5)  # a full-scale sine's power is 0.5
        assert _band_level(noise, band, config) == pytest.approx(want, abs=0.3), config


def test_a_narrowband_noise_masks_a_probe_noise_of_its_band_only_down_to_the_masking_index_in_band_power():
    """The model's noise masker carries its band's summed power and masks index(z) = -2.025 - 0.175 z dB under
    it: a probe noise of the same band is heard once its band power is above that, however thinly it
    spreads over the band's bins (a per-bin comparison grants it 10 log10(bins) dB more, 12.6 dB here)."""
    lo, hi = 2320.0, 2700.0
    freqs_in = FREQS[(FREQS >= lo) & (FREQS < hi)]
    band = critical_bands(CONFIG)[np.searchsorted(FREQS, lo)]
    masker = _band_noise(lo, hi, seed=1) * 0.3
    probe = _band_noise(lo, hi, seed=2)
    index = -2.025 - 0.175 * bark(np.exp(np.log(freqs_in).mean()))
    probe *= 10 ** ((_band_level(masker, band) + index - _band_level(probe, band)) / 20)  # at the masking index
    n_bands = int(critical_bands(CONFIG).max()) + 1
    for under_db, masked in ((-2.0, False), (30.0, True)):
        share = noise_to_mask(masker, masker + probe * 10 ** (-under_db / 20), CONFIG.sr, config=CONFIG)["above_share"]
        if masked:
            assert share == 0, under_db
        else:  # the probe's band is above the threshold in (nearly) every frame
            assert share > 0.9 / n_bands, (under_db, share * n_bands)


def test_a_change_spread_over_a_wide_high_band_is_heard_as_the_same_change_in_one_bin():
    """7.7-9.5 kHz holds 84 bins of 21.5 Hz: compared bin by bin, the spread change would sit 19 dB further
    under the threshold than the tone of the same power, and be called masked."""
    x = _band_noise(50.0, 11000.0, seed=3) * 0.2 + _tone(1000.0, 0.3)
    tone = _tone(8500.0, 0.05)
    spread = _band_noise(7750.0, 9450.0, seed=4)
    spread *= np.sqrt(np.mean(tone.astype(np.float64) ** 2) / np.mean(spread.astype(np.float64) ** 2))
    one_bin = noise_to_mask(x, x + tone, CONFIG.sr, config=CONFIG)
    wide = noise_to_mask(x, x + spread, CONFIG.sr, config=CONFIG)
    assert one_bin["above_share"] > 0.5 / 23  # the tone is heard in most frames
    assert wide["above_share"] >= 0.9 * one_bin["above_share"], (wide, one_bin)
    assert wide["nmr_db"] == pytest.approx(one_bin["nmr_db"], abs=1.0)


def test_the_noise_to_mask_ratio_of_a_noise_does_not_depend_on_the_frame_length():
    """A band's power is the same at any resolution; a bin's falls 3 dB each time the frames double. (Frames of
    1024 and 2048 points: at 256 points, 11.6 ms, the model's own maskers are resolved differently in the lowest
    bands, whatever the change is compared with; every figure musadv prints uses one framing, ``measure_config``.)"""
    x = _band_noise(50.0, 11000.0, seed=5) * 0.2
    noise = _band_noise(500.0, 8000.0, seed=6) * 1e-2
    nmr = [noise_to_mask(x, x + noise, CONFIG.sr, config=STFTConfig(n_fft=n, hop=n // 2))["nmr_db"] for n in (1024, 2048)]
    assert nmr[0] == pytest.approx(nmr[1], abs=1.0), nmr


def test_noise_shaped_3_db_under_the_threshold_of_real_music_sits_well_under_the_music():
    """A codec's inaudible noise sits 15 to 25 dB under the music; noise a threshold calls masked must not sit
    near 0 dB SNR (the per-bin rule's did: 1 to 4 dB). One clip of each genre, its first 10 s."""
    snrs, nmrs = [], []
    for genre in sorted(p.name for p in GTZAN_MINI.iterdir()):
        x, _ = audio.load(GTZAN_MINI / genre / f"{genre}.00000.wav", sr=CONFIG.sr, duration=10.0)
        noise = noise_under_mask(x, CONFIG, margin_db=3.0, rng=np.random.default_rng(0))
        snrs.append(10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum(noise.astype(np.float64) ** 2)))
        nmrs.append(noise_to_mask(x, x + noise, CONFIG.sr, config=CONFIG)["nmr_db"])
    assert len(snrs) == 10
    assert np.median(snrs) >= 10.0, snrs
    assert max(nmrs) < 0.0, nmrs  # measured as it was shaped: under the threshold

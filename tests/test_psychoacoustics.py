"""musadv.psychoacoustics: the masking threshold of the MPEG-1 psychoacoustic model 1, against its definition:
silence leaves the absolute threshold of hearing; around a tone the threshold is the tone's level plus the
masking index, falling with the spreading function's slopes in Bark; a weak tone half a Bark away is masked,
the same tone four Bark away is not; the same at any rate and framing."""

import numpy as np
import pytest
import torch

from musadv.psychoacoustics import LOWEST_HZ, absolute_threshold_db, bark, masking_threshold, noise_to_mask, psd_db
from musadv.spectral import STFTConfig, stft

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


def test_a_masked_change_has_no_bin_above_the_threshold_and_an_unmasked_one_has():
    masker = _tone(FREQS[K0], 0.5)
    for dz, masked in ((0.5, True), (4.0, False)):
        weak = _tone(FREQS[_bin_at(dz)], 0.05)
        share = noise_to_mask(masker, masker + weak, CONFIG.sr, config=CONFIG)["above_share"]
        assert (share == 0) if masked else (share > 0.005), (dz, share)


def test_a_channel_left_alone_halves_the_noise_to_mask_ratio():
    x = _tone(FREQS[K0], 0.5)
    noise = np.random.default_rng(1).standard_normal(len(x)).astype(np.float32) * 1e-3
    mono = noise_to_mask(x, x + noise, CONFIG.sr)["nmr_db"]
    stereo = noise_to_mask(np.stack([x, x]), np.stack([x + noise, x]), CONFIG.sr)["nmr_db"]
    assert stereo == pytest.approx(mono - 10 * np.log10(2), abs=0.01)

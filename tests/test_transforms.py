"""musadv.transforms: each irrelevant transformation checked against its definition."""

import numpy as np
import pytest

from musadv.attack import snr_db
from musadv.transforms import EQ_BANDS_HZ, eq, eq_curve, gain, lowpass, random_eq_gains, stretch

SR = 44100


def _tone(freq, seconds=2.0, sr=SR, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _level_db(y, x):
    """Steady-state gain of ``y`` against ``x`` in dB, leaving out the filter's start."""
    a, b = x[len(x) // 2:], y[len(y) // 2:]
    return 20 * np.log10(np.sqrt(np.mean(b.astype(np.float64) ** 2)) / np.sqrt(np.mean(a.astype(np.float64) ** 2)))


def _butterworth_db(freq, cutoff, order, sr=SR):
    """The digital Butterworth's gain (bilinear transform, pre-warped at the cut-off)."""
    ratio = np.tan(np.pi * freq / sr) / np.tan(np.pi * cutoff / sr)
    return -10 * np.log10(1 + ratio ** (2 * order))


@pytest.mark.parametrize("cutoff, order", [(9000.0, 4), (2000.0, 2)])
def test_lowpass_is_3_db_down_at_the_cutoff_and_a_butterworth_an_octave_above(cutoff, order):
    assert _butterworth_db(cutoff, cutoff, order) == pytest.approx(-3.01, abs=0.01)
    # An octave above, at least the analogue prototype's 6 dB per order and octave (the bilinear
    # transform only steepens it): 9 kHz, 4th order: -51.9 dB at 18 kHz (44.1 kHz).
    assert _butterworth_db(2 * cutoff, cutoff, order) <= -10 * np.log10(1 + 2 ** (2 * order))
    for freq in (cutoff, 2 * cutoff, cutoff / 8):
        x = _tone(freq)
        assert _level_db(lowpass(x, SR, cutoff, order), x) == pytest.approx(_butterworth_db(freq, cutoff, order), abs=0.1), freq


def test_lowpass_keeps_the_shape_of_stereo_input_and_refuses_a_cutoff_past_nyquist():
    x = np.stack([_tone(500.0), _tone(15000.0)])
    y = lowpass(x, SR)
    assert y.shape == x.shape and y.dtype == np.float32
    assert _level_db(y[0], x[0]) > -0.1 and _level_db(y[1], x[1]) < -20
    with pytest.raises(ValueError, match="Nyquist"):
        lowpass(x, 16000, cutoff_hz=9000.0)


def test_eq_gains_stay_within_the_bound_and_the_filter_applies_its_curve():
    rng = np.random.default_rng(0)
    gains = random_eq_gains(rng, 3.0)
    assert np.all(np.abs(gains) <= 3.0) and np.ptp(gains) > 1.0
    freqs = np.geomspace(20, SR / 2, 500)
    assert np.all(np.abs(eq_curve(freqs, gains)) <= 3.0 + 1e-12)
    np.testing.assert_allclose(eq_curve(EQ_BANDS_HZ, gains), gains)
    for freq in (100.0, 1000.0, 3000.0, 12000.0):
        x = _tone(freq)
        assert _level_db(eq(x, SR, gains), x) == pytest.approx(float(eq_curve([freq], gains)[0]), abs=0.05), freq


def test_eq_is_zero_phase_and_its_change_is_small():
    rng = np.random.default_rng(1)
    x = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    flat = eq(x, SR, np.zeros(len(EQ_BANDS_HZ)))
    np.testing.assert_allclose(flat, x, atol=1e-6)  # 0 dB everywhere: the signal itself, no delay
    y = eq(x, SR, random_eq_gains(rng, 3.0))
    # A zero-phase filter keeps the signal aligned: the cross-correlation peaks at lag 0.
    lags = np.arange(-50, 51)
    corr = [np.dot(x[50:-50], np.roll(y, k)[50:-50]) for k in lags]
    assert lags[int(np.argmax(corr))] == 0
    assert 5 < snr_db(x, y) < 40


def test_gain_scales_by_its_decibels():
    x = _tone(440.0)
    assert _level_db(gain(x, -6.0), x) == pytest.approx(-6.0, abs=1e-4)
    assert snr_db(x, gain(x, 6.0)) == pytest.approx(-20 * np.log10(10 ** (6 / 20) - 1), abs=1e-3)


@pytest.mark.parametrize("rate", [0.94, 1.06])
def test_stretch_changes_the_duration_by_its_rate_and_keeps_the_pitch(rate):
    sr = 22050
    x = _tone(440.0, seconds=4.0, sr=sr)
    y = stretch(x, sr, rate)
    assert len(y) / len(x) == pytest.approx(1 / rate, rel=0.01)
    middle = y[len(y) // 4: 3 * len(y) // 4].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle)), n=8 * len(middle)))
    peak_hz = np.argmax(spectrum) * sr / (8 * len(middle))
    assert peak_hz == pytest.approx(440.0, rel=0.01)
    assert stretch(np.stack([x, x]), sr, rate).shape[0] == 2
    with pytest.raises(ValueError, match="rate"):
        stretch(x, sr, 0.0)

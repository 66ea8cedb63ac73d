"""musadv.transforms: each irrelevant transformation checked against its definition."""

import numpy as np
import pytest

from musadv.attack import snr_db
from musadv import audio, synth
from musadv.transforms import (EQ_BANDS_HZ, Transformation, eq, room, room_impulse_response, rt60_schroeder, eq_curve, gain, lowpass, mp3, mp3_available, mp3_bitrate,
                               noise, random_eq_gains, resample, stretch)

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


def test_lowpass_keeps_the_shape_of_stereo_input_and_leaves_a_file_with_nothing_above_the_cutoff_alone():
    x = np.stack([_tone(500.0), _tone(15000.0)])
    y = lowpass(x, SR)
    assert y.shape == x.shape and y.dtype == np.float32
    assert _level_db(y[0], x[0]) > -0.1 and _level_db(y[1], x[1]) < -20
    # A 16 kHz file holds nothing above 8 kHz: a 9 kHz low-pass has nothing to remove.
    np.testing.assert_array_equal(lowpass(x[:, :16000], 16000, cutoff_hz=9000.0), x[:, :16000])
    with pytest.raises(ValueError, match="cutoff_hz"):
        lowpass(x, SR, cutoff_hz=0.0)


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


def _music(sr, seconds=6.0, channels=1):
    y = synth.render("rock", seed=3, duration=seconds, sr=sr)
    return audio.quantize_pcm16(np.stack([y, 0.5 * y[::-1]])[:channels] if channels > 1 else y)


needs_mp3 = pytest.mark.skipif(not mp3_available(), reason="this libsndfile cannot encode MP3")


@needs_mp3
@pytest.mark.parametrize("sr, channels, kbps", [(22050, 1, 128), (22050, 1, 32), (44100, 2, 32), (96000, 1, 128)])
def test_mp3_round_trip_keeps_shape_and_alignment(sr, channels, kbps):
    """At 32 kbps libsndfile's decoder does not remove the encoder's delay (the decoded file is
    longer): the round-trip must still line up with the original, sample for sample."""
    x = _music(sr, channels=channels)
    y = mp3(x, sr, kbps)
    assert y.shape == x.shape and y.dtype == np.float32
    a, b = np.atleast_2d(x).mean(0)[2000:-2000], np.atleast_2d(y).mean(0)
    lags = np.arange(-30, 31)
    corr = [np.dot(a, b[2000 + k: len(b) - 2000 + k]) for k in lags]
    assert lags[int(np.argmax(corr))] == 0
    assert snr_db(x, y) > 8  # aligned: a delay of a frame would leave about 0 dB


@needs_mp3
def test_mp3_keeps_more_of_the_signal_at_a_higher_bitrate_and_caps_it_by_the_mpeg_version():
    x = _music(22050)
    assert snr_db(x, mp3(x, 22050, 160)) > snr_db(x, mp3(x, 22050, 32)) + 3
    assert mp3_bitrate(22050, 320) == 160 and mp3_bitrate(44100, 320) == 320 and mp3_bitrate(8000, 128) == 64
    with pytest.raises(ValueError, match="bitrate"):
        mp3(x, 22050, 16)


@pytest.mark.parametrize("kind, key, low, high", [("eq", "gains_db", -3.0, 3.0), ("gain", "gain_db", -6.0, 6.0),
                                                  ("stretch", "rate", 0.94, 1.06)])
def test_random_transformations_draw_within_their_bounds_and_repeat_from_the_same_seed(kind, key, low, high):
    t = Transformation(kind)
    draws = [np.ravel(t.draw(np.random.default_rng(i))[key]) for i in range(200)]
    values = np.concatenate(draws)
    assert values.min() >= low and values.max() <= high
    assert values.min() < low + 0.1 * (high - low) and values.max() > high - 0.1 * (high - low)  # the whole range
    assert t.draw(np.random.default_rng(7)) == t.draw(np.random.default_rng(7))
    assert t.random


def test_a_transformation_applies_the_function_of_its_kind_with_the_drawn_parameters():
    x = _music(22050, seconds=3.0, channels=2)
    t = Transformation("eq", max_db=2.0)
    params = t.draw(np.random.default_rng(0))
    np.testing.assert_array_equal(t.apply(x, 22050, params), eq(x, 22050, params["gains_db"]))
    low = Transformation("lowpass", cutoff_hz=4000.0, order=2)
    assert not low.random and low.draw(np.random.default_rng(0)) == low.draw(np.random.default_rng(1))
    np.testing.assert_array_equal(low.apply(x, 22050, low.draw(None)), lowpass(x, 22050, 4000.0, 2))
    assert Transformation("gain").settings() == {"kind": "gain", "max_db": 6.0}
    with pytest.raises(ValueError, match="kind"):
        Transformation("reverb")
    with pytest.raises(ValueError, match="max_rate_change"):
        Transformation("stretch", max_rate_change=1.5)


@pytest.mark.parametrize("rt60", [0.3, 1.0])
def test_schroeder_integration_reads_the_reverberation_time_of_an_exponential_decay(rt60):
    """Noise whose envelope falls 60 dB in ``rt60`` seconds (the definition), read back to 3 %."""
    sr, rng = 16000, np.random.default_rng(0)
    t = np.arange(int(3 * rt60 * sr)) / sr
    h = rng.standard_normal(t.shape) * 10 ** (-3 * t / rt60)
    assert abs(rt60_schroeder(h, sr) / rt60 - 1) < 0.03
    with pytest.raises(ValueError, match="decay"):
        rt60_schroeder(np.ones(10), sr)  # its energy decay curve ends at -10 dB


def test_a_room_draw_has_the_reverberation_time_asked_for_and_keeps_the_signals_level_and_timing():
    t = Transformation("room", rt60_s=(0.25, 0.7))
    sr = 16000
    for seed in range(3):
        params = t.draw(np.random.default_rng(seed))
        assert 0.25 <= params["rt60_s"] <= 0.7
        dims, src, mic = (np.array(params[k]) for k in ("dims_m", "source_m", "mic_m"))
        assert np.all(src >= 0.5) and np.all(src <= dims - 0.5) and np.linalg.norm(src - mic) >= 1.0
        h = room_impulse_response(sr, params["rt60_s"], dims, src, mic)
        assert abs(rt60_schroeder(h, sr) / params["rt60_s"] - 1) < 0.10
        assert abs(np.square(h).sum() - 1) < 1e-9 and np.argmax(np.abs(h)) == 0  # unit energy, the direct sound first
    assert t.random and t.draw(np.random.default_rng(5)) == t.draw(np.random.default_rng(5))
    # A click played in the room arrives at once (no delay) and rings on for the tail.
    click = np.zeros((2, sr), np.float32)
    click[:, 100] = 1.0
    out = t.apply(click, sr, params)
    assert out.shape == click.shape and np.argmax(np.abs(out[0])) == 100
    np.testing.assert_allclose(out[0], out[1])
    np.testing.assert_allclose(out[0, 100:], h[: sr - 100].astype(np.float32), atol=1e-6)
    np.testing.assert_allclose(room(click[0], sr, h), out[0], atol=1e-6)
    with pytest.raises(ValueError, match="rt60_s"):
        Transformation("room", rt60_s=(0.8, 0.2))


def test_noise_is_added_at_exactly_its_snr_over_every_channel_and_repeats_from_its_seed():
    x = _music(22050, seconds=2.0, channels=2)
    y = noise(x, 20.0, seed=3)
    assert y.shape == x.shape and y.dtype == np.float32
    assert snr_db(x, y) == pytest.approx(20.0, abs=1e-3)
    np.testing.assert_array_equal(y, noise(x, 20.0, seed=3))
    assert not np.array_equal(y, noise(x, 20.0, seed=4))
    t = Transformation("noise", snr_db=10.0)
    params = t.draw(np.random.default_rng(0))
    assert t.random and params["snr_db"] == 10.0 and params != t.draw(np.random.default_rng(1))
    assert snr_db(x, t.apply(x, 22050, params)) == pytest.approx(10.0, abs=1e-3)
    np.testing.assert_array_equal(noise(np.zeros(100, np.float32), 20.0, 0), np.zeros(100, np.float32))  # silence stays silent


def test_resampling_down_and_back_removes_what_lies_above_half_the_lower_rate_and_keeps_the_rest():
    x = _tone(1000.0, sr=22050) + _tone(9000.0, sr=22050)
    y = resample(x, 22050, 16000)
    assert y.shape == x.shape
    spectrum = lambda v: np.abs(np.fft.rfft(v[2000:-2000] * np.hanning(len(v) - 4000)))  # noqa: E731
    freqs = np.fft.rfftfreq(len(x) - 4000, 1 / 22050)
    at = lambda s, f: s[np.argmin(np.abs(freqs - f))]  # noqa: E731
    before, after = spectrum(x), spectrum(y)
    assert 20 * np.log10(at(after, 1000.0) / at(before, 1000.0)) == pytest.approx(0.0, abs=0.1)
    assert 20 * np.log10(at(after, 9000.0) / at(before, 9000.0)) < -60  # beyond the 8 kHz of 16 kHz
    stereo = np.stack([x, 0.5 * x])
    np.testing.assert_allclose(resample(stereo, 22050, 16000)[1], 0.5 * y, atol=1e-6)
    np.testing.assert_array_equal(resample(x, 22050, 44100), x)  # a higher rate keeps everything
    t = Transformation("resample", resample_sr=11025)
    assert not t.random and t.settings() == {"kind": "resample", "resample_sr": 11025}

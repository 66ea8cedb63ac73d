"""musadv.smoothing: a system voting over noisy copies of the waveform, and Cohen et al.'s certificate of it."""

import csv

import numpy as np
import pytest
from scipy.stats import binom, norm

from musadv import audio
from musadv.attack import AttackConfig
from musadv.errors import AudioError
from musadv.interface import AudioClassifier, Prediction
from musadv.recording import Recording
from musadv.runs import recordings_from_split, run_attacks
from musadv.smoothing import ABSTAIN, REFERENCE_RMS, SmoothedClassifier, certify, predict, predict_from_votes
from musadv.spectral import STFTConfig


def _signals(cache, model, limit):
    refs = recordings_from_split(cache, "test", limit)
    return refs, [Recording.from_file(r.source, model.stft.sr, r.offset, r.duration).signal for r in refs]


class Loudness(AudioClassifier):
    """Labels a waveform 'loud' when its RMS is above a level: a base whose share of votes under noise is known."""

    labels = ["quiet", "loud"]
    stft = STFTConfig()
    needs_signal = True
    info: dict = {}

    def __init__(self, level):
        self.level = level

    def predict(self, frames, signal=None, name="recording"):
        loud = float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))) > self.level
        return Prediction(self.labels[loud], {"quiet": float(not loud), "loud": float(loud)}, 1)


def test_with_almost_no_noise_the_smoothed_system_predicts_as_its_base_and_with_much_noise_it_does_not(trained_dnn, learn_cache):
    refs, signals = _signals(learn_cache, trained_dnn, 8)
    from musadv.classify import classify_samples

    base = [classify_samples(trained_dnn, s[None], trained_dnn.stft.sr).label for s in signals]
    quiet = SmoothedClassifier(trained_dnn, snr_db=200.0, n=4)
    assert [quiet.predict(None, s).label for s in signals] == base
    # The noise is really added: 20 dB above the recordings, the votes are not the base's any more.
    loud = SmoothedClassifier(trained_dnn, snr_db=-20.0, n=4)
    assert [loud.predict(None, s).label for s in signals] != base


def test_the_noise_has_the_stated_level_and_is_the_same_for_the_same_waveform():
    system = SmoothedClassifier(Loudness(0.0), snr_db=30.0)
    assert system.sigma == pytest.approx(REFERENCE_RMS * 10 ** (-30 / 20))
    x = np.zeros(22050, np.float32)
    # A silent waveform judged 'loud' above a level just under sigma: about half the copies, the same half twice.
    half = SmoothedClassifier(Loudness(system.sigma), snr_db=30.0, n=400)
    first = half.votes(x, 400, half.generator(x))
    assert 150 < first[1] < 250
    assert np.array_equal(first, half.votes(x, 400, half.generator(x)))
    y = x.copy()
    y[0] = 1e-6
    assert half.generator(x).initial_seed() != half.generator(y).initial_seed()


def test_a_smoothed_system_without_the_waveform_is_refused_in_one_line(trained_dnn):
    with pytest.raises(AudioError, match="song.wav: a smoothed system adds its noise to the waveform"):
        SmoothedClassifier(trained_dnn, 30.0).predict(np.zeros((10, 513), np.float32), None, "song.wav")


def test_a_unanimous_vote_certifies_the_clopper_pearson_bound_and_its_radius():
    system = SmoothedClassifier(Loudness(-1.0), snr_db=20.0, n=10)  # every copy is 'loud'
    x = 0.1 * np.ones(22050, np.float32)
    c = certify(system, x, n0=10, n=1000, alpha=0.001)
    assert c.label == "loud" and c.counts == [0, 1000]
    # The one-sided Clopper-Pearson bound: the share at which 1000 votes of 1000 has probability alpha.
    assert binom.sf(999, 1000, c.p_lower) == pytest.approx(0.001, rel=1e-6)
    assert c.radius == pytest.approx(system.sigma * norm.ppf(c.p_lower))
    assert c.certified_snr_db == pytest.approx(20 * np.log10(np.linalg.norm(x.astype(np.float64)) / c.radius))
    assert c.noise_snr_db == pytest.approx(20.0, abs=1e-4)  # x is at the reference level


def test_a_split_vote_abstains():
    system = SmoothedClassifier(Loudness(REFERENCE_RMS * 10 ** (-20 / 20)), snr_db=20.0, n=10)
    c = certify(system, np.zeros(22050, np.float32), n0=50, n=200)
    assert c.label == ABSTAIN and c.radius == 0.0 and c.p_lower < 0.5


def test_predict_gives_the_top_label_only_where_a_binomial_test_tells_it_from_the_runner_up():
    labels = ["a", "b", "c"]
    # 60 against 40 is a tie at alpha 0.001 (two-sided p 0.057); 70 against 30 is not (p 7.9e-5).
    assert predict_from_votes(np.array([5, 60, 40]), labels, alpha=0.001) == ABSTAIN
    assert predict_from_votes(np.array([0, 70, 30]), labels, alpha=0.001) == "b"
    assert predict_from_votes(np.array([5, 60, 40]), labels, alpha=0.1) == "b"
    # Only the top two are tested: 70 against 25 is clear (p 4e-6), though 70 against the other 50 is not.
    assert predict_from_votes(np.array([25, 70, 25]), labels, alpha=0.001) == "b"


def test_predict_abstains_on_a_split_vote_and_certificates_carry_it():
    clear = SmoothedClassifier(Loudness(-1.0), snr_db=20.0)
    assert predict(clear, 0.1 * np.ones(22050, np.float32), n=100) == "loud"
    split = SmoothedClassifier(Loudness(REFERENCE_RMS * 10 ** (-20 / 20)), snr_db=20.0)
    assert predict(split, np.zeros(22050, np.float32), n=100) == ABSTAIN
    assert certify(split, np.zeros(22050, np.float32), n0=50, n=100).predicted == ABSTAIN
    assert certify(clear, 0.1 * np.ones(22050, np.float32), n0=50, n=100).predicted == "loud"


def test_no_adversarial_example_musadv_finds_lies_within_the_certified_radius(trained_dnn, learn_cache, tmp_path):
    """Cohen et al.'s guarantee, checked against musadv's query-only adversary on the built-in data.

    The adversary attacks the smoothed system itself (16 copies a query, guided by the base's
    gradient); each example it reports is certified in turn with fresh copies, so that only examples
    whose smoothed label really differs count.
    """
    system = SmoothedClassifier(trained_dnn, snr_db=0.0, n=16)
    refs, signals = _signals(learn_cache, trained_dnn, 6)
    certificates = {r.name: certify(system, s, n0=20, n=200) for r, s in zip(refs, signals)}
    certified = [r for r in refs if certificates[r.name].label != ABSTAIN]
    assert certified
    config = AttackConfig(snr_db=None, stop="label", gradient="queries", max_queries=200, surrogate=trained_dnn)
    run_attacks(system, certified, "all_wrong", tmp_path / "run", config, progress=False, repairs=0, model_rate=True)
    rows = list(csv.DictReader(open(tmp_path / "run" / "results.csv")))
    checked = 0
    for row in rows:
        if row["success"] != "1":
            continue
        original = certificates[row["file"]]
        x = signals[[r.name for r in refs].index(row["file"])].astype(np.float64)
        x_adv = audio.load(tmp_path / "run" / row["wav"], trained_dnn.stft.sr)
        x_adv = (x_adv[0] if isinstance(x_adv, tuple) else x_adv).astype(np.float64)
        moved = certify(system, x_adv.astype(np.float32), n0=20, n=200)
        if moved.label in (ABSTAIN, original.label):
            continue
        checked += 1
        assert np.linalg.norm(x_adv - x) >= original.radius
    assert checked >= 1


def test_noisy_magnitudes_have_the_law_of_the_magnitudes_of_a_noisy_waveform():
    """What noise training draws from magnitudes alone, against the STFT of real noisy waveforms."""
    import torch

    from musadv.smoothing import noisy_magnitudes
    from musadv.spectral import magnitude

    stft = STFTConfig()
    t = torch.arange(22050) / 22050
    x = 0.3 * torch.sin(2 * torch.pi * 1000 * t) + 0.05 * torch.sin(2 * torch.pi * 5000 * t)  # strong, weak, and empty bins
    sigma, draws = 0.02, 600
    gen = torch.Generator().manual_seed(0)
    heard = magnitude(x + sigma * torch.randn((draws, len(x)), generator=gen), stft)
    drawn = noisy_magnitudes(magnitude(x, stft).expand(draws, -1, -1), sigma, stft, gen)
    inner = slice(2, -2)  # the edge frames hear the zeros padded around the waveform, not noise
    for moment in (lambda m: m, torch.square):
        real, ours = moment(heard[:, inner]).mean((0, 1)), moment(drawn[:, inner]).mean((0, 1))
        torch.testing.assert_close(ours, real, rtol=0.05, atol=0)  # 6 standard errors of a bin's mean square

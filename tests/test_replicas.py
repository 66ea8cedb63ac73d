"""musadv.replicas: the MFCC baseline as a network, to guide a query-only attack of itself."""

import numpy as np
import pytest
import torch

from musadv.attack import AttackConfig, attack
from musadv.errors import MusadvError
from musadv.interface import unit_phase
from musadv.replicas import MFCCReplica, SmoothedReplica, as_surrogate, own_surrogate
from musadv.smoothing import SmoothedClassifier
from musadv.spectral import complex_abs, stft
from musadv.systems import load_system, zero_crossing_rate


def test_the_replica_computes_the_baselines_windows_and_votes_as_it_does(baseline, learn_cache):
    system = load_system(baseline)
    replica = MFCCReplica(system)
    for entry in learn_cache.split("test"):
        y = learn_cache.signal(entry)
        spec = stft(torch.from_numpy(y), system.stft)
        mags = complex_abs(spec)
        windows = system.features(mags.numpy(), y)
        ours = replica.window_features(mags, torch.from_numpy(zero_crossing_rate(y, system.stft))).numpy()
        np.testing.assert_allclose(ours, windows, rtol=1e-4, atol=1e-4 * np.abs(windows).max())
        votes = system.classifier.predict(windows)
        # Through the phase the attack hands a surrogate (the zero-crossing rate of the inverse STFT).
        logits = replica.logits(mags, unit_phase(spec))
        assert logits.shape == (len(windows), len(system.labels))
        assert (logits.argmax(1).numpy() == votes).all(), entry
        assert replica.predict(mags.numpy(), y).label == system.predict(mags.numpy(), y).label


def test_the_replicas_gradient_is_that_of_its_distances(baseline, learn_cache):
    """What the attack follows: a step against the gradient of a label's summed distance shortens it
    as the first-order term says (the zero-crossing rate held, as in the replica)."""
    system = load_system(baseline)
    replica = MFCCReplica(system)
    y = learn_cache.signal(learn_cache.split("test")[0])
    mags = complex_abs(stft(torch.from_numpy(y), system.stft)).double().requires_grad_(True)
    zcr = torch.from_numpy(zero_crossing_rate(y, system.stft))
    k = 1
    dist = -replica.window_logits(replica.window_features(mags, zcr))[:, k].sum()
    (grad,) = torch.autograd.grad(dist, mags)
    h = 1e-4 * mags.detach().norm() / grad.norm()
    with torch.no_grad():
        moved = -replica.window_logits(replica.window_features(mags - h * grad, zcr))[:, k].sum()
    predicted = h * grad.norm() ** 2
    assert float(dist.detach() - moved) == pytest.approx(float(predicted), rel=0.05)


def test_the_replica_guides_the_query_only_attack_of_its_baseline_one_query_a_step(baseline, learn_cache):
    """Each recording towards the label of the baseline's third nearest Gaussian, at 15 dB: the
    baseline, judged by its predictions alone, falls on three of four on the replica's steps alone
    (one query a step: its judgement). A replica whose gradient misled gave way to estimates (21
    queries a step) on all four after TRANSFER_PATIENCE steps, and reached two."""
    system = load_system(baseline)
    config = AttackConfig(gradient="queries", snr_db=15, stop="label", max_iter=40, surrogate=as_surrogate(system))
    transferred = 0
    for entry in learn_cache.split("test")[:8:2]:
        y = learn_cache.signal(entry)
        mags = complex_abs(stft(torch.from_numpy(y), system.stft)).numpy()
        nearest = np.argsort(system.classifier.distances(system.features(mags, y)).mean(0))
        target = system.labels[system.classifier.classes_[nearest[2]]]
        r = attack(system, y, target, config)
        assert r.snr_wave_db >= 15.0, entry
        transferred += r.success and r.queries == r.iterations + 2
    assert transferred >= 3


def test_a_surrogate_is_a_network_or_the_replica_of_a_baseline(trained_dnn, forest, baseline):
    assert as_surrogate(trained_dnn) is trained_dnn
    assert isinstance(as_surrogate(load_system(baseline)), MFCCReplica)
    with pytest.raises(MusadvError, match="ForestSystem has no gradient and no differentiable replica"):
        as_surrogate(load_system(forest))


def _mags(system, learn_cache):
    y = learn_cache.signal(learn_cache.split("test")[0])
    return complex_abs(stft(torch.from_numpy(y), system.stft))


def test_a_smoothed_systems_replica_is_its_base_where_the_noise_is_negligible(trained_dnn, learn_cache):
    replica = own_surrogate(SmoothedClassifier(trained_dnn, snr_db=200.0, n=8))
    assert isinstance(replica, SmoothedReplica) and replica.guide is trained_dnn
    mags = _mags(trained_dnn, learn_cache)
    with torch.no_grad():
        got = replica.probabilities(replica.logits(mags))
        want = trained_dnn.probabilities(trained_dnn.logits(mags))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_a_smoothed_systems_replica_averages_its_base_over_the_noise_and_repeats_on_the_same_input(trained_dnn,
                                                                                                  learn_cache):
    smoothed = SmoothedClassifier(trained_dnn, snr_db=10.0, n=8)
    replica = SmoothedReplica(smoothed, trained_dnn, draws=4)
    mags = _mags(trained_dnn, learn_cache).requires_grad_()
    first = replica.logits(mags)
    first.logsumexp(-1).sum().backward()
    assert mags.grad.abs().sum() > 0
    with torch.no_grad():
        # The same magnitudes draw the same noise.
        torch.testing.assert_close(replica.logits(mags), first.detach(), rtol=0, atol=0)
        # Noise 10 dB below a -20 dBFS recording changes what the base says of its frames.
        base = trained_dnn.probabilities(trained_dnn.logits(mags))
        mean = replica.probabilities(first)
        assert (mean - base).abs().max() > 0.1
        torch.testing.assert_close(mean.sum(-1), torch.ones(len(mean)))

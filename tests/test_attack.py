"""musadv.attack: Alg. 1 — projections, bounds, orders, momentum and target policies."""

import math

import numpy as np
import pytest
import torch

from musadv import synth
from musadv.attack import AttackConfig, attack, ball_radius, choose_targets, minimize, project_ball, snr_db
from musadv.audio import quantize_pcm16
from musadv.errors import MusadvError


def test_snr_projection_is_exact_on_a_hand_built_case():
    center = torch.tensor([1.0, 1.0])
    z = torch.tensor([4.0, 5.0])  # 5 away from the center
    u = project_ball(z, center, 2.5)
    # nu = 5 / 2.5 - 1 = 1, so u = (z + center) / 2: the nearest point of the ball, on its surface.
    torch.testing.assert_close(u, torch.tensor([2.5, 3.0]))
    assert float(torch.linalg.vector_norm(u - center)) == pytest.approx(2.5)
    inside = torch.tensor([2.0, 2.0])
    assert project_ball(inside, center, 2.5) is inside


def test_projection_is_the_least_squares_point_of_the_ball():
    rng = np.random.default_rng(0)
    center, z = torch.from_numpy(rng.standard_normal(50)), torch.from_numpy(rng.standard_normal(50) * 4)
    u = project_ball(z, center, 1.0)
    assert float(torch.linalg.vector_norm(u - center)) == pytest.approx(1.0)
    for _ in range(200):  # no other point of the ball is closer to z
        d = torch.from_numpy(rng.standard_normal(50))
        other = center + d / torch.linalg.vector_norm(d) * rng.random()
        assert torch.linalg.vector_norm(other - z) >= torch.linalg.vector_norm(u - z) - 1e-9


def test_snr_and_radius_agree():
    x = torch.ones(100)
    r = ball_radius(x, 20.0)
    assert r == pytest.approx(1.0)  # |x| = 10, 10 / 10^(20/20)
    assert snr_db(x, x + 0.1) == pytest.approx(20.0)
    assert snr_db(x, x) == math.inf


@pytest.fixture(scope="module")
def clip(trained_dnn):
    return synth.render("folk", seed=123, duration=4.0)


def _wrong(model, y):
    before = attack(model, y, model.labels[0], AttackConfig(max_iter=0))
    return next(lab for lab in model.labels if lab != before.label_before)


def test_consistent_order_keeps_every_iterate_a_16_bit_signal_inside_the_bound(trained_dnn, clip):
    target = _wrong(trained_dnn, clip)
    r = attack(trained_dnn, clip, target, AttackConfig(snr_db=15, step=0.1, threshold=0.9, max_iter=60))
    assert r.snr_wave_db >= 15.0
    assert all(t["snr_db"] >= 15.0 for t in r.trace)
    np.testing.assert_array_equal(r.audio, quantize_pcm16(r.audio))
    assert r.iterations == len(r.trace) - 1
    assert r.success and r.reached and r.confidence_after[target] >= 0.9


def test_digital_silence_inside_a_recording_gets_sound_where_the_gradient_asks(trained_dnn, clip):
    """Bins that are exactly 0 have no phase to keep: the new magnitudes enter with phase 0."""
    gapped = clip.copy()
    gapped[len(clip) // 3 : 2 * len(clip) // 3] = 0.0
    target = _wrong(trained_dnn, gapped)
    r = attack(trained_dnn, gapped, target, AttackConfig(snr_db=15, step=0.1, threshold=0.9, max_iter=60))
    assert np.isfinite(r.audio).all() and r.snr_wave_db >= 15.0
    assert r.success
    gap = r.audio[len(clip) // 3 + 2048 : 2 * len(clip) // 3 - 2048]
    assert np.abs(gap).max() > 0  # the attack used the silence


def test_attack_changes_magnitudes_not_weights(trained_dnn, clip):
    before = {k: v.clone() for k, v in trained_dnn.state_dict().items()}
    attack(trained_dnn, clip, _wrong(trained_dnn, clip), AttackConfig(max_iter=3))
    assert all(p.grad is None for p in trained_dnn.parameters())
    assert all(p.requires_grad for p in trained_dnn.parameters())
    for k, v in trained_dnn.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


@pytest.mark.parametrize("momentum", [False, True])
def test_paper_order_bounds_the_magnitudes_and_reports_its_own_outcome(trained_dnn, clip, momentum):
    target = _wrong(trained_dnn, clip)
    cfg = AttackConfig(snr_db=15, step=0.1, threshold=0.5, max_iter=40, order="paper", momentum=momentum)
    r = attack(trained_dnn, clip, target, cfg)
    # In the paper's order the SNR ball is on magnitudes: every iterate respects it there.
    assert all(t["snr_db"] >= 15.0 - 1e-6 for t in r.trace)
    # The reported magnitude SNR is that of the waveform returned, not of the in-loop magnitudes.
    from musadv.spectral import magnitude

    assert r.audio.dtype == np.float32
    assert r.snr_mag_db == pytest.approx(snr_db(magnitude(clip), magnitude(r.audio)), abs=1e-6)
    assert r.snr_wave_db == pytest.approx(snr_db(clip, r.audio), abs=1e-6)


def test_no_snr_limit_and_a_target_already_reached(trained_dnn, clip):
    own = attack(trained_dnn, clip, trained_dnn.labels[0], AttackConfig(max_iter=0)).label_before
    r = attack(trained_dnn, clip, own, AttackConfig(snr_db=None, threshold=0.5))
    assert r.iterations == 0 and r.success
    with pytest.raises(MusadvError, match="not one of the model's labels"):
        attack(trained_dnn, clip, "polka", AttackConfig())


def test_policies():
    labels = ["a", "b", "c", "d"]
    rng = np.random.default_rng(0)
    drawn = [choose_targets("random", labels, "a", "a", rng)[0] for _ in range(4000)]
    assert abs(drawn.count("a") / 4000 - 0.25) < 0.03  # the truth too: right with probability 1/K
    wrong = [choose_targets("all_wrong", labels, "a", "b", rng)[0] for _ in range(300)]
    assert "a" not in wrong and set(wrong) == {"b", "c", "d"}
    assert "b" not in [choose_targets("all_wrong", labels, None, "b", rng)[0] for _ in range(100)]
    assert choose_targets("perfect", labels, "c", "a", rng) == ["c"]
    assert choose_targets("label:d", labels, "a", "a", rng) == ["d"]
    assert choose_targets("every_label", labels, "a", "a", rng) == labels
    with pytest.raises(MusadvError, match="not one of"):
        choose_targets("label:z", labels, "a", "a", rng)
    with pytest.raises(MusadvError, match="unknown policy"):
        choose_targets("sometimes", labels, "a", "a", rng)
    with pytest.raises(MusadvError, match="true label"):
        choose_targets("perfect", labels, None, "a", rng)


@pytest.fixture(scope="module")
def reference_framed(trained_dnn):
    """The trained DNN analysing with the reference framing (symmetric Hann, no centring)."""
    import copy

    from musadv.spectral import REFERENCE

    model = copy.deepcopy(trained_dnn)
    model.stft = REFERENCE
    return model


@pytest.mark.parametrize("framing", ["centred", "reference"])
@pytest.mark.parametrize("remainder", [0, 1, 256, 508, 511])
def test_no_click_at_the_edges_whatever_the_length(trained_dnn, reference_framed, framing, remainder):
    """Samples under only a window's tail are not amplified: the edges change no more than the interior,
    and the whole-file SNR is the edge-trimmed one."""
    model = trained_dnn if framing == "centred" else reference_framed
    y = synth.render("folk", seed=7, duration=4.0)[: 512 * 160 + remainder]
    assert len(y) % 512 == remainder
    r = attack(model, y, _wrong(model, y), AttackConfig(snr_db=30, step=0.1, threshold=0.9, max_iter=30))
    change = np.abs(r.audio.astype(np.float64) - y)
    interior = change[64:-64].max()
    assert interior > 0
    assert change[:64].max() <= 3 * interior and change[-64:].max() <= 3 * interior
    assert r.snr_wave_db >= 30.0
    assert abs(r.snr_wave_db - r.snr_trim_db) <= 0.5


def _scaled(model, factor):
    """The same network with its logits multiplied by ``factor``: same labels, gradients ``factor`` times larger."""
    import copy

    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled.output.weight.mul_(factor)
        scaled.output.bias.mul_(factor)
    return scaled


def test_the_default_step_does_not_depend_on_the_models_gradient_scale(trained_dnn, clip):
    """One gradient step, no SNR limit: the scale-free step moves the recording by the same amount
    whatever the scale of the logits; the paper's raw step moves it 100 times further."""
    target = _wrong(trained_dnn, clip)
    one_step = dict(snr_db=None, threshold=1.0, max_iter=1, momentum=False, quantize=False)
    free = [attack(m, clip, target, AttackConfig(**one_step)).snr_wave_db for m in (trained_dnn, _scaled(trained_dnn, 100))]
    raw = [attack(m, clip, target, AttackConfig(step=1e-4, **one_step)).snr_wave_db for m in (trained_dnn, _scaled(trained_dnn, 100))]
    assert abs(free[0] - free[1]) < 1.0, free
    # A step of 0.1 of the radius at 15 dB: about 35 dB on magnitudes, on the waveform near it.
    assert 28 < free[0] < 42, free
    assert raw[0] - raw[1] > 20, raw



def test_the_default_step_succeeds_alike_on_models_whose_logits_are_scaled_by_100_and_by_a_hundredth(trained_dnn):
    """Same targets, same recordings, default settings: the same success, whatever the logits' scale.

    (At 0.01 the posteriors stay near uniform, so the 0.9 threshold is out of reach and the
    attack runs all its iterations; success is the label.)"""
    clips = [synth.render(style, seed=31, duration=4.0) for style in ("rock", "jazz", "ambient")]
    targets = [_wrong(trained_dnn, y) for y in clips]
    outcomes = {}
    for factor in (1.0, 100.0, 0.01):
        model = _scaled(trained_dnn, factor)
        outcomes[factor] = [attack(model, y, t, AttackConfig(snr_db=15)).success for y, t in zip(clips, targets)]
    assert outcomes[1.0] == outcomes[100.0] == outcomes[0.01] == [True, True, True], outcomes
    raw = [attack(_scaled(trained_dnn, 0.01), y, t, AttackConfig(snr_db=15, step=0.1)).success for y, t in zip(clips, targets)]
    assert not all(raw)  # the paper's raw step does depend on the scale


def test_minimize_finds_the_highest_snr_a_brute_force_scan_finds(trained_dnn, clip):
    """The warm-started search against fresh attacks at every SNR on a 0.25 dB grid, each level failing as the
    search's do (no rise of the target's posterior in 20 iterations)."""
    target = _wrong(trained_dnn, clip)
    found = minimize(trained_dnn, clip, target)
    succeeded = [lv["snr_bound_db"] for lv in found.levels if lv["success"]]
    failed = [lv["snr_bound_db"] for lv in found.levels if not lv["success"]]
    assert found.success and found.label_after == target
    # The search ends when its highest success and lowest failure above it are 0.5 dB apart.
    assert min(f for f in failed if f > max(succeeded)) - max(succeeded) <= 0.5
    assert found.snr_wave_db >= max(succeeded)
    scan = np.arange(15.0, 60.0, 0.25)
    brute = max(float(s) for s in scan
                if attack(trained_dnn, clip, target, AttackConfig(snr_db=float(s), stop="label", patience=20)).success)
    assert brute > 20  # a case where the search has something to find
    assert abs(max(succeeded) - brute) <= 0.5, (max(succeeded), brute)
    assert found.iterations == sum(lv["iterations"] for lv in found.levels)


def test_minimize_needs_no_change_when_the_model_already_says_the_target(trained_dnn, clip):
    clip16 = quantize_pcm16(clip)  # as a 16-bit file holds it: the unchanged example is the original
    said = attack(trained_dnn, clip16, trained_dnn.labels[0], AttackConfig(max_iter=0)).label_before
    found = minimize(trained_dnn, clip16, said)
    assert found.success and found.snr_wave_db == math.inf and found.iterations == 0 and len(found.levels) == 1
    # A float signal changes by its 16-bit rounding alone (a finite SNR): still no search above it.
    rounded = minimize(trained_dnn, clip, said)
    assert rounded.success and rounded.iterations == 0 and len(rounded.levels) == 1


def test_patience_stops_a_stalled_attack_and_label_stops_at_the_decision(trained_dnn, clip):
    target = _wrong(trained_dnn, clip)
    # 45 dB is too small a ball for this clip: the posterior stalls long before 100 iterations.
    stalled = attack(trained_dnn, clip, target, AttackConfig(snr_db=45, patience=5))
    full = attack(trained_dnn, clip, target, AttackConfig(snr_db=45))
    assert not full.success and full.iterations == 100
    assert stalled.iterations < 60
    best = max(t["target_posterior"] for t in stalled.trace[:-5])
    assert max(t["target_posterior"] for t in stalled.trace[-5:]) <= best
    decided = attack(trained_dnn, clip, target, AttackConfig(snr_db=15, stop="label"))
    assert decided.success and decided.confidence_after[target] < 0.9
    assert decided.iterations < attack(trained_dnn, clip, target, AttackConfig(snr_db=15)).iterations


def _band_noise(lo_hz, hi_hz, seed, n, sr=22050):
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[(f < lo_hz) | (f >= hi_hz)] = 0
    return torch.from_numpy(np.fft.irfft(spec, n).astype(np.float32))


def test_the_masking_bound_grants_a_change_spread_over_a_band_no_more_power_than_the_same_change_in_one_bin():
    """The bound is on each critical band's power: a tone at 8.5 kHz and noise over its whole band (84 bins)
    are cut to the same power, and what is left is measured under the threshold. (Bin by bin, the spread
    change kept 12 times the tone's power.)"""
    from musadv.attack import _under_mask, masking_bound
    from musadv.psychoacoustics import noise_to_mask
    from musadv.spectral import STFTConfig

    config, n = STFTConfig(), 2 * 22050
    x = _band_noise(50.0, 11000.0, 0, n) * 0.2 + torch.from_numpy(synth_tone(1000.0, n))
    bound = masking_bound(x, config, margin_db=3.0)
    tone = torch.from_numpy(synth_tone(8500.0, n, amp=0.3))
    spread = _band_noise(7750.0, 9450.0, 1, n)
    spread *= tone.norm() / spread.norm()
    kept = {}
    for name, change in (("tone", tone), ("spread", spread)):
        y = _under_mask(x + change, x, bound, config)
        kept[name] = float(((y - x) ** 2).sum())
        measured = noise_to_mask(x.numpy(), y.numpy(), config.sr, config=config)
        assert measured["nmr_db"] < -2.0 and measured["above_share"] <= 0.02, (name, measured)
    assert kept["spread"] == pytest.approx(kept["tone"], rel=0.26), kept  # within 1 dB


def synth_tone(freq, n, amp=0.3, sr=22050):
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def test_the_masking_bound_refuses_settings_it_cannot_keep():
    """The bound holds on the written change ('consistent' order) and its step is sized in the bound's own
    units (the scale-free step), so the paper's raw step and order are refused, each with its own message."""
    with pytest.raises(ValueError, match="scale-free step"):
        AttackConfig(masking_db=3.0, step=0.1)
    with pytest.raises(ValueError, match="'consistent' order only"):
        AttackConfig(masking_db=3.0, order="paper")
    with pytest.raises(ValueError, match="finite"):
        AttackConfig(masking_db=float("nan"))

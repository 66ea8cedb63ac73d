"""musadv.robust: the transformations in PyTorch (their values and gradients) and the robust adversary."""

import json

import numpy as np
import pytest
import torch

from musadv import synth
from musadv.attack import AttackConfig, attack, snr_db
from musadv.robust import ROOM_POOL, Draw, Draws, differentiable, held_out, prepare
from musadv.transforms import Transformation, mp3_available

from .conftest import run_musadv

SR = 8000


def _signal(seconds=0.5, sr=SR):
    return synth.render("rock", seed=5, duration=seconds, sr=sr).astype(np.float32)


def _draw(t: Transformation, seed=0, sr=SR) -> Draw:
    return Draw(t, t.draw(np.random.default_rng(seed)))


EXACT = [Transformation("gain"), Transformation("eq"), Transformation("lowpass", cutoff_hz=1500.0),
         Transformation("noise", snr_db=10.0), Transformation("room", rt60_s=(0.2, 0.3))]


@pytest.mark.parametrize("t", EXACT, ids=lambda t: t.kind)
def test_an_exact_kind_gives_the_numpy_transformation_itself(t):
    x, draw = _signal(), _draw(t)
    out = differentiable(draw, torch.from_numpy(x), SR).numpy()
    expected = t.apply(x, SR, draw.params)
    np.testing.assert_allclose(out, expected, atol=2e-6 * np.abs(expected).max())


@pytest.mark.parametrize("t", [t for t in EXACT if t.kind in ("lowpass", "room")], ids=lambda t: t.kind)
def test_a_prepared_draw_filters_as_one_prepared_on_the_spot(t):
    x, draw = _signal(), _draw(t)
    ready = prepare(t, draw.params, SR, len(x))
    assert ready.response is not None and ready.n_samples == len(x)
    np.testing.assert_array_equal(differentiable(ready, torch.from_numpy(x), SR).numpy(),
                                  differentiable(draw, torch.from_numpy(x), SR).numpy())
    # Made for another length, it is made again for this one.
    other = prepare(t, draw.params, SR, len(x) // 3)
    np.testing.assert_array_equal(differentiable(other, torch.from_numpy(x), SR).numpy(),
                                  differentiable(ready, torch.from_numpy(x), SR).numpy())


@pytest.mark.parametrize("t", EXACT, ids=lambda t: t.kind)
def test_an_exact_kinds_gradient_agrees_with_finite_differences(t):
    """A loss that is not linear in the output (squares), so the whole Jacobian is exercised, in float64."""
    rng = np.random.default_rng(1)
    x, draw = _signal().astype(np.float64), _draw(t)
    weights = torch.from_numpy(rng.standard_normal(len(x)))
    loss = lambda z: (weights * differentiable(draw, z, SR) ** 2).sum()  # noqa: E731
    z = torch.from_numpy(x).requires_grad_()
    (grad,) = torch.autograd.grad(loss(z), z)
    for _ in range(3):
        v = torch.from_numpy(rng.standard_normal(len(x)))
        eps = 1e-4
        with torch.no_grad():
            fd = (loss(z + eps * v) - loss(z - eps * v)) / (2 * eps)
        assert float((grad * v).sum()) == pytest.approx(float(fd), rel=1e-4)


def _gradient(draw: Draw, z: np.ndarray, weights: np.ndarray) -> np.ndarray:
    zt = torch.from_numpy(z).requires_grad_()
    out = differentiable(draw, zt, 22050)
    (g,) = torch.autograd.grad((torch.from_numpy(weights) * out).sum(), zt)
    return g.numpy()


def test_resampling_forwards_the_real_round_trip_and_back_propagates_an_ideal_low_pass_at_half_the_lower_rate():
    t = Transformation("resample", resample_sr=16000)
    x = synth.render("jazz", seed=2, duration=1.0).astype(np.float32)
    draw = _draw(t)
    # The real transformation's values (to float rounding: the straight-through adds and takes away the stand-in).
    np.testing.assert_allclose(differentiable(draw, torch.from_numpy(x), 22050).numpy(), t.apply(x, 22050, draw.params),
                               atol=1e-6)
    weights = np.random.default_rng(0).standard_normal(len(x)).astype(np.float32)
    g = _gradient(draw, x, weights)
    # The stand-in's directional derivatives are the real (linear) round trip's along directions in
    # its pass band, and none beyond half the lower rate.
    n = np.arange(len(x)) / 22050
    for freq, expect_zero in ((1000.0, False), (3000.0, False), (9500.0, True)):
        v = (np.sin(2 * np.pi * freq * n) * np.hanning(len(x))).astype(np.float32)
        real = float(weights @ (t.apply(x + v, 22050, draw.params) - t.apply(x, 22050, draw.params)))
        standin = float(g @ v)
        if expect_zero:
            scale = np.linalg.norm(weights) * np.linalg.norm(v)
            assert abs(standin) < 1e-3 * scale and abs(real) < 1e-3 * scale
        else:
            assert standin == pytest.approx(real, rel=0.01)


@pytest.mark.skipif(not mp3_available(), reason="this libsndfile cannot encode MP3")
def test_the_codec_forwards_the_real_mp3_and_back_propagates_the_identity():
    t = Transformation("mp3")
    x = synth.render("jazz", seed=2, duration=1.0).astype(np.float32)
    draw = _draw(t)
    # The real transformation's values (to float rounding: the straight-through adds and takes away the stand-in).
    np.testing.assert_allclose(differentiable(draw, torch.from_numpy(x), 22050).numpy(), t.apply(x, 22050, draw.params),
                               atol=1e-6)
    weights = np.random.default_rng(0).standard_normal(len(x)).astype(np.float32)
    np.testing.assert_array_equal(_gradient(draw, x, weights), weights)


def test_the_stretch_forwards_rubber_band_and_back_propagates_a_tape_speed_change_of_the_same_length():
    t = Transformation("stretch")
    x = synth.render("jazz", seed=2, duration=1.0).astype(np.float32)
    draw = Draw(t, {"rate": 1.05})
    out = differentiable(draw, torch.from_numpy(x), 22050).numpy()
    real = t.apply(x, 22050, draw.params)
    np.testing.assert_allclose(out, real, atol=1e-6)
    g = _gradient(draw, x, np.ones(len(real), np.float32))
    # Linear interpolation's weights for each output sample sum to one: the gradient of the output's
    # sum spreads the output's length over the input's.
    assert g.shape == x.shape and g.sum() == pytest.approx(len(real), rel=1e-5)
    assert g.min() > 0


def test_each_iteration_draws_every_random_kind_as_often_as_asked_and_rooms_from_a_pool_without_repeats():
    ts = (Transformation("lowpass"), Transformation("eq"), Transformation("room", rt60_s=(0.2, 0.3)))
    draws = Draws(ts, 3, np.random.default_rng(0), SR, 4000)
    assert len(draws.prepared[ts[2]]) == ROOM_POOL
    first, second = draws.sample(), draws.sample()
    kinds = [d.transformation.kind for d in first]
    assert kinds == ["lowpass", "eq", "eq", "eq", "room", "room", "room"]
    rooms = [id(d) for d in first if d.transformation.kind == "room"]
    assert len(set(rooms)) == 3 and all(d in draws.prepared[ts[2]] for d in first[4:])
    assert first[1].params != second[1].params  # fresh EQs every iteration


def test_held_out_judges_a_random_kind_on_ten_fresh_draws_and_a_fixed_one_once(trained_dnn):
    y = synth.render("folk", seed=123, duration=4.0)
    lp = Transformation("lowpass", cutoff_hz=4000.0)
    eq = Transformation("eq")
    before = attack(trained_dnn, y, trained_dnn.labels[0], AttackConfig(max_iter=0))
    kept = held_out(trained_dnn, y[None], 22050, "clip", "label", before.label_before, (lp, eq), np.random.default_rng(0))
    assert kept["lowpass"]["draws"] == 1 and kept["eq"]["draws"] == 10
    # The original keeps its own label through a small EQ; the held-out share counts it.
    assert kept["eq"]["kept"] == 1.0


@pytest.mark.parametrize("style, target", [("folk", "jazz"), ("rock", "chiptune")])
def test_a_robust_adversary_survives_a_low_pass_that_undoes_the_plain_one(trained_dnn, style, target):
    y = synth.render(style, seed=123, duration=4.0)
    lp = Transformation("lowpass", cutoff_hz=4000.0)
    judge = lambda r: held_out(trained_dnn, r.audio[None], 22050, "x", "label", target, (lp,),  # noqa: E731
                               np.random.default_rng(0))["lowpass"]["kept"]
    plain = attack(trained_dnn, y, target, AttackConfig(max_iter=60))
    assert plain.label_before != target and plain.success and judge(plain) == 0.0
    robust = attack(trained_dnn, y, target, AttackConfig(max_iter=60, robust_to=(lp,), draws=1))
    assert robust.reached and robust.success and judge(robust) == 1.0
    assert snr_db(y, robust.audio) >= 15.0
    # It stopped when the iterate and its low-passed copy both reached the threshold.
    assert robust.trace[-1]["worst_posterior"] >= 0.9
    assert all("worst_posterior" not in t for t in plain.trace)


def test_a_robust_adversary_refuses_what_it_cannot_keep():
    lp = Transformation("lowpass")
    with pytest.raises(ValueError, match="consistent"):
        AttackConfig(robust_to=(lp,), order="paper")
    with pytest.raises(ValueError, match="twice"):
        AttackConfig(robust_to=(lp, Transformation("lowpass", cutoff_hz=4000.0)))
    with pytest.raises(ValueError, match="Transformation"):
        AttackConfig(robust_to=("lowpass",))
    with pytest.raises(ValueError, match="draws"):
        AttackConfig(robust_to=(lp,), draws=0)
    assert AttackConfig(robust_to=(lp,)).to_dict()["robust_to"] == [{"kind": "lowpass", "cutoff_hz": 9000.0, "order": 4}]


def test_a_robust_run_gives_each_example_the_share_of_held_out_copies_its_written_file_keeps(trained_dnn, learn_cache,
                                                                                              tmp_path):
    import csv

    from musadv import audio
    from musadv.classify import classify_file
    from musadv.errors import MusadvError
    from musadv.runs import recordings_from_split, run_attacks

    lp = Transformation("lowpass", cutoff_hz=3000.0)
    refs = recordings_from_split(learn_cache, "test", limit=3)
    config = AttackConfig(max_iter=30, robust_to=(lp, Transformation("gain")), draws=1)
    m = run_attacks(trained_dnn, refs, "all_wrong", tmp_path / "run", config, progress=False)
    with open(tmp_path / "run" / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3
    for row in rows:
        # The low-pass of the written file, written as a WAV and classified as any file is.
        example, sr = audio.decode(tmp_path / "run" / row["wav"])
        copy = audio.save(tmp_path / "copy.wav", lp.apply(example, sr, lp.draw(None)), sr, on_clip="clip")
        kept = classify_file(trained_dnn, copy).label == row["target"]
        assert float(row["held_out_lowpass"]) == float(kept)
        record = json.loads((tmp_path / "run" / "examples" / f"{row['example']}.json").read_text())
        assert record["held_out"]["gain"]["draws"] == 10 and record["held_out"]["lowpass"]["draws"] == 1
        assert float(row["held_out_gain"]) == record["held_out"]["gain"]["kept"]
    successes = [r for r in rows if r["success"] == "1"]
    assert successes
    assert m["held_out"]["lowpass"] == pytest.approx(np.mean([float(r["held_out_lowpass"]) for r in successes]))
    from musadv.report import write_report

    page = write_report(tmp_path / "run").read_text()
    assert "made robust to lowpass, gain" in page
    assert f"gain {100 * m['held_out']['gain']:.1f} %, lowpass {100 * m['held_out']['lowpass']:.1f} %." in page
    with pytest.raises(MusadvError, match="robust_to"):
        run_attacks(trained_dnn, refs, "all_wrong", tmp_path / "run", AttackConfig(max_iter=30), progress=False)
    with pytest.raises(MusadvError, match="not both"):
        run_attacks(trained_dnn, refs, "all_wrong", tmp_path / "min", config, progress=False, minimal=True)


def test_the_command_line_makes_robust_adversaries_and_says_what_survived(trained_dnn, learn_cache, tmp_path):
    song = learn_cache.source(learn_cache.split("test")[0])
    run = lambda *args: run_musadv("attack", trained_dnn.path, song, "--target", "techno", "--quiet", "--no-report",  # noqa: E731
                                   *args)
    r = run("--robust-to", "lowpass,noise", "--cutoff", 3000, "--noise-snr", 25, "--draws", 1, "--max-iter", 20,
            "--out", tmp_path / "one")
    assert r.returncode == 0, r.stderr
    assert "held-out transformed copies that keep the target" in r.stdout and "lowpass" in r.stdout
    settings = json.loads((tmp_path / "one" / "run.json").read_text())["attack"]
    assert settings["robust_to"] == [{"kind": "lowpass", "cutoff_hz": 3000.0, "order": 4}, {"kind": "noise", "snr_db": 25.0}]
    r = run("--robust-to", "lowpass,reverb", "--out", tmp_path / "two")
    assert r.returncode == 2 and "reverb: not a transformation" in r.stderr
    r = run("--robust-to", "lowpass", "--minimize", "--out", tmp_path / "three")
    assert r.returncode == 2 and "not both" in r.stderr


def test_a_batch_of_robust_attacks_gives_each_recording_what_it_gets_alone(trained_dnn):
    from musadv.attack import attack_many

    lp = Transformation("lowpass", cutoff_hz=4000.0)
    config = AttackConfig(max_iter=40, robust_to=(lp, Transformation("eq")), draws=2)
    clips = [synth.render("folk", seed=123, duration=4.0), synth.render("rock", seed=123, duration=3.0)]
    targets = ["jazz", "chiptune"]
    together = attack_many(trained_dnn, clips, targets, config, rngs=[np.random.default_rng(k) for k in range(2)])
    for k, (clip, target) in enumerate(zip(clips, targets)):
        alone = attack(trained_dnn, clip, target, config, rng=np.random.default_rng(k))
        assert together[k].label_after == alone.label_after and together[k].reached == alone.reached
        assert together[k].snr_wave_db == pytest.approx(alone.snr_wave_db, abs=0.1)

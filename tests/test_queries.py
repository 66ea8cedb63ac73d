"""musadv.queries: the query-only adversary's step, and the adversary's loop driven by it."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from musadv import synth
from musadv.attack import AttackConfig, attack, attack_many, minimize, snr_db
from musadv.errors import MusadvError
from musadv.interface import AudioClassifier, DifferentiableClassifier, Prediction, recording_confidence
from musadv.queries import MAX_SIGMA, TRANSFER_PATIENCE, QueryState, estimate_gradients, query_loss, tile_grid
from musadv.spectral import STFTConfig, complex_abs, stft
from musadv.systems import load_system


class OnlyPredict(AudioClassifier):
    """A system seen through its predictions alone (a service): it counts the recordings it is asked about."""

    def __init__(self, inner):
        self.inner, self.labels, self.stft, self.info, self.path = inner, inner.labels, inner.stft, {}, None
        self.asked = 0

    def predict(self, frames, signal=None, name="recording"):
        self.asked += 1
        return self.inner.predict(frames, signal, name)


class Constant(AudioClassifier):
    """A system that says the same whatever it hears: its confidences are saturated everywhere."""

    def __init__(self, labels):
        self.labels, self.stft, self.info, self.path = list(labels), STFTConfig(), {}, None

    def predict(self, frames, signal=None, name="recording"):
        return Prediction(self.labels[0], {lab: float(i == 0) for i, lab in enumerate(self.labels)}, 1)


class Turned(torch.nn.Module, DifferentiableClassifier):
    """A network's values with its gradient turned around: a surrogate that misleads."""

    def __init__(self, net):
        super().__init__()
        self.net, self.labels, self.stft, self.element_frames = net, net.labels, net.stft, net.element_frames
        self.info, self.path = {}, None

    def logits(self, mags, phase=None):
        return self.net.logits(2 * mags.detach() - mags)


@pytest.fixture(scope="module")
def clip():
    return synth.render("folk", seed=123, duration=4.0)


def _wrong(model, y):
    frames = complex_abs(stft(torch.from_numpy(y), model.stft)).numpy()
    label = model.predict(frames, y).label
    return next(lab for lab in model.labels if lab != label)


def test_the_margin_loss_is_negative_exactly_when_the_target_leads():
    conf = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.7, 0.1], [0.0, 0.0, 1.0]])
    loss = query_loss("label", conf, 1)
    assert (loss < 0).tolist() == [False, True, False]
    # A saturated vote (target 0, another 1) still has a finite loss, the worst.
    assert torch.isfinite(loss).all() and loss[2] > loss[0]
    p = torch.tensor([[0.2, 0.6], [0.2, 0.3]])
    assert query_loss("add", p, 1)[0] < query_loss("add", p, 1)[1]
    assert query_loss("remove", p, 1)[0] > query_loss("remove", p, 1)[1]


def test_tiles_cover_every_frame_and_bin_with_critical_bands_by_segments():
    cfg = STFTConfig()
    grid = tile_grid(100, cfg, 1.0)
    assert grid.n_segments == 3  # 43 frames a second at 22.05 kHz / 512: 43 + 43 + 14
    assert grid.segments.tolist() == [i // 43 for i in range(100)]
    assert grid.bands.shape == (cfg.n_bins,) and int(grid.bands[0]) == 0 and int(grid.bands[-1]) == grid.n_bands - 1
    tiles = torch.arange(grid.n_segments * grid.n_bands, dtype=torch.float32).reshape(grid.n_segments, grid.n_bands)
    full = grid.expand(tiles)
    assert full.shape == (100, cfg.n_bins)
    assert float(full[50, 0]) == float(tiles[1, 0]) and float(full[99, -1]) == float(tiles[2, -1])


def test_the_estimate_points_where_the_networks_own_gradient_points(trained_dnn, clip):
    """Many queries: the estimate's direction approaches the true gradient in the tiles' space."""
    cfg = trained_dnn.stft
    x = torch.from_numpy(clip)
    spec = stft(x, cfg)
    mags = complex_abs(spec)
    target = trained_dnn.labels.index(_wrong(trained_dnn, clip))
    grid = tile_grid(len(mags), cfg, 1.0)
    tiles = torch.zeros(grid.n_segments, grid.n_bands, requires_grad=True)
    from musadv.queries import profile

    p = profile(mags)
    conf = recording_confidence(torch.softmax(trained_dnn.logits(mags + grid.expand(tiles) * p), -1))
    (true,) = torch.autograd.grad(query_loss("label", conf, target), tiles)
    state = QueryState(grid, 0.01, 0.01, np.random.default_rng(0))
    ((conf_q, loss, grad, queries, copies),) = estimate_gradients(trained_dnn, "label",
                                                                  [(spec, mags, x, target, state, True, "c", [])], 200)
    assert queries == 401 and copies == []
    est = grad / p  # the estimate per tile, spread over its bins
    cos = float((grid.expand(true) * est).sum() / (grid.expand(true).norm() * est.norm()))
    assert cos > 0.5
    assert torch.allclose(conf_q, conf.detach().float(), atol=1e-5)


def test_saturated_confidences_widen_the_search_and_give_no_step():
    model = Constant(["a", "b", "c"])
    y = synth.render("folk", seed=1, duration=2.0)
    spec = stft(torch.from_numpy(y), model.stft)
    mags = complex_abs(spec)
    state = QueryState(tile_grid(len(mags), model.stft, 1.0), 0.1, 0.1, np.random.default_rng(0))
    sigmas = []
    for _ in range(6):
        ((_, _, grad, _, _),) = estimate_gradients(model, "label", [(spec, mags, torch.from_numpy(y), 1, state, True, "c", [])], 3)
        assert not grad.any()
        sigmas.append(state.sigma)
    assert sigmas == [0.2, 0.4, 0.8, 1.6, MAX_SIGMA, MAX_SIGMA]


def test_a_system_seen_only_through_predictions_is_fooled_inside_the_bound(trained_dnn, clip):
    service = OnlyPredict(trained_dnn)
    target = _wrong(trained_dnn, clip)
    r = attack(service, clip, target, AttackConfig(gradient="queries", snr_db=15, stop="label", max_iter=60))
    assert r.success and r.label_after == target
    assert r.snr_wave_db >= 15.0
    assert r.queries == service.asked  # every prediction counted, the original's included
    assert r.gradient == "queries" and r.iterations > 0
    # The 16-bit example the loop judged is what the system says of it.
    frames = complex_abs(stft(torch.from_numpy(r.audio), trained_dnn.stft)).numpy()
    assert trained_dnn.predict(frames, r.audio).label == target


def test_the_query_budget_stops_an_attack(trained_dnn, clip):
    target = _wrong(trained_dnn, clip)
    config = AttackConfig(gradient="queries", snr_db=60, threshold=1.0, max_iter=100, query_pairs=5, max_queries=50)
    r = attack(trained_dnn, clip, target, config)
    # Each step costs 10 candidates and the next judgement: 1 + 1 + 4 x 11 = 46 fit, a fifth step does not.
    assert not r.reached and r.queries == 46 and r.iterations == 4


def test_queries_and_batches_give_one_example_each(trained_dnn, clip):
    other = synth.render("techno", seed=5, duration=3.0)
    config = AttackConfig(gradient="queries", snr_db=15, stop="label", max_iter=30)
    targets = [_wrong(trained_dnn, clip), _wrong(trained_dnn, other)]
    alone = [attack(trained_dnn, y, t, config) for y, t in zip([clip, other], targets)]
    together = attack_many(trained_dnn, [clip, other], targets, config)
    for a, b in zip(alone, together):
        assert a.queries == b.queries and a.label_after == b.label_after
        assert snr_db(a.audio, b.audio) > 60  # the same draws, the same steps, up to float rounding


def test_a_query_only_search_for_the_smallest_change_counts_every_level(trained_dnn, clip):
    target = _wrong(trained_dnn, clip)
    r = minimize(OnlyPredict(trained_dnn), clip, target, AttackConfig(gradient="queries", snr_db=10, max_iter=30))
    assert r.success and r.queries == sum(lv["queries"] for lv in r.levels) and len(r.levels) > 2
    # The trace counts on over the levels: every level's predictions after the last one's.
    asked = [t["queries"] for t in r.trace]
    assert asked == sorted(asked) and asked[-1] == r.queries
    assert r.snr_wave_db >= max(lv["snr_bound_db"] for lv in r.levels if lv["success"]) - 1e-6


def test_the_forest_and_the_baseline_are_attacked_through_queries(forest, baseline, learn_cache):
    """Systems whose votes saturate (every window for one label) and that give no gradient still fall.

    The synthesized styles are far apart: at 10 dB two of three recordings fall for each (at
    15 dB the forest holds on these three: the real forest of the results page falls there).
    """
    for spec in (forest, baseline):
        system = load_system(spec)
        fooled = 0
        for entry in learn_cache.split("test")[:8:3]:
            y = learn_cache.signal(entry)
            r = attack(system, y, _wrong(system, y), AttackConfig(gradient="queries", snr_db=10, stop="label", max_iter=40))
            assert r.snr_wave_db >= 10.0 and r.queries <= 2 + 40 * 21  # the original twice, then 40 rounds
            fooled += r.success
        assert fooled >= 2, spec


def test_a_surrogate_guides_the_forest_down_with_one_query_a_step(trained_dnn, forest, learn_cache):
    """The forest that holds at 15 dB against estimates (above) falls when the network its features come
    from guides the steps (two of the three recordings); each step then costs one query, the judgement
    of the new iterate."""
    system = load_system(forest)
    config = AttackConfig(gradient="queries", snr_db=15, stop="label", max_iter=40)
    guided = replace(config, surrogate=trained_dnn)
    fooled = 0
    for entry in learn_cache.split("test")[:8:3]:
        y = learn_cache.signal(entry)
        target = _wrong(system, y)
        r = attack(system, y, target, guided)
        assert r.snr_wave_db >= 15.0
        if r.success:
            fooled += 1
            # The original judged twice (before, and as the loop's first iterate), then one query a step.
            assert [t["queries"] for t in r.trace] == list(range(2, r.iterations + 3)) == list(range(2, r.queries + 1))
    assert fooled >= 2


def test_a_misleading_surrogate_gives_way_to_estimates(trained_dnn, clip):
    service = OnlyPredict(trained_dnn)
    target = _wrong(trained_dnn, clip)
    config = AttackConfig(gradient="queries", snr_db=15, stop="label", max_iter=60, surrogate=Turned(trained_dnn))
    r = attack(service, clip, target, config)
    assert r.success and r.queries == service.asked
    # An iteration's count holds its judgement and its step's candidates: none for a transfer step,
    # 2 x 10 for an estimated one. The turned gradient does not lower the loss: once TRANSFER_PATIENCE
    # judgements in a row (the original's two included) bring no new low, estimates take over for good.
    asked = [t["queries"] for t in r.trace]
    costs = np.diff(asked).tolist()
    transfer = costs.index(21) + 1  # steps that followed the surrogate, the first one's in asked[0]
    assert asked[0] == 2 and costs == [1] * (transfer - 1) + [21] * (len(costs) - transfer + 1)
    losses = [t["loss"] for t in r.trace]
    assert transfer == TRANSFER_PATIENCE  # the turned gradient never lowered the loss below the original's
    assert min(losses[1 : transfer + 1]) > losses[0]


def test_a_surrogate_must_hear_what_the_system_hears(trained_dnn, clip):
    other = OnlyPredict(trained_dnn)
    other.stft = STFTConfig(sr=trained_dnn.stft.sr, n_fft=2048, hop=1024)
    target = _wrong(trained_dnn, clip)
    with pytest.raises(MusadvError, match="its gradient must be in the same magnitudes"):
        attack(other, clip, target, AttackConfig(gradient="queries", surrogate=trained_dnn))
    renamed = OnlyPredict(trained_dnn)
    renamed.labels = [f"x{lab}" for lab in trained_dnn.labels]
    with pytest.raises(MusadvError, match="has no label x"):
        attack(renamed, clip, "x" + target, AttackConfig(gradient="queries", surrogate=trained_dnn))
    with pytest.raises(ValueError, match="surrogate guides a query-only attack"):
        AttackConfig(surrogate=trained_dnn)
    with pytest.raises(ValueError, match="DifferentiableClassifier"):
        AttackConfig(gradient="queries", surrogate=Constant(["a"]))


def test_settings_a_query_only_attack_cannot_follow_are_refused(trained_dnn):
    with pytest.raises(ValueError, match="'consistent' order only"):
        AttackConfig(gradient="queries", order="paper")
    with pytest.raises(ValueError, match="scale-free step"):
        AttackConfig(gradient="queries", step=0.1)
    with pytest.raises(ValueError, match="max_queries"):
        AttackConfig(gradient="queries", max_queries=0)
    with pytest.raises(MusadvError, match="gives no gradient; attack it through queries"):
        attack(Constant(["a", "b"]), np.zeros(22050, np.float32), "b", AttackConfig())


def test_a_run_through_queries_writes_what_it_judged_and_resumes(forest, learn_cache, tmp_path):
    import csv
    import json

    from musadv.runs import recordings_from_split, run_attacks

    system = load_system(forest)
    refs = recordings_from_split(learn_cache, "test", limit=2)
    config = AttackConfig(gradient="queries", snr_db=10, stop="label", max_iter=30)
    m = run_attacks(system, refs, "all_wrong", tmp_path / "run", config, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "results.csv")))
    assert [r["gradient"] for r in rows] == ["queries"] * 2
    queries = sorted(int(r["queries"]) for r in rows)
    assert m["queries"]["median"] == pytest.approx(sum(queries) / 2) and all(q > 0 for q in queries)
    settings = json.loads((tmp_path / "run" / "run.json").read_text())
    assert settings["attack"]["gradient"] == "queries" and settings["model_sha256"]  # the forest's files, hashed
    for r in rows:  # success is the decoded file's label, and the file keeps the bound
        assert int(r["success"]) == (r["decoded_label"] == r["target"]) and float(r["snr_wave_db"]) >= 10.0
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "examples").glob("*.json")}
    again = run_attacks(system, refs, "all_wrong", tmp_path / "run", config, progress=False)
    assert again["queries"] == m["queries"]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    with pytest.raises(MusadvError, match="attack setting query_pairs"):
        run_attacks(system, refs, "all_wrong", tmp_path / "run", AttackConfig(gradient="queries", snr_db=10, stop="label",
                                                                             max_iter=30, query_pairs=5), progress=False)


def test_a_robust_adversary_through_queries_survives_a_low_pass_that_undoes_the_plain_one(trained_dnn, clip):
    """Expectation over transformation with queries alone: the iterate and every candidate are judged
    with the iteration's low-passed copy, and the attack stops only when the iterate and its copy
    say the target; each copy is a prediction, and the count holds it."""
    from musadv.robust import held_out
    from musadv.transforms import Transformation

    lp = Transformation("lowpass", cutoff_hz=6000.0)
    target = "jazz"
    judge = lambda r: held_out(trained_dnn, r.audio[None], 22050, "x", "label", target, (lp,),  # noqa: E731
                               np.random.default_rng(0))["lowpass"]["kept"]
    config = AttackConfig(gradient="queries", snr_db=15, stop="label", max_iter=60)
    plain = attack(trained_dnn, clip, target, config)
    assert plain.label_before != target and plain.success and judge(plain) == 0.0
    service = OnlyPredict(trained_dnn)
    robust = attack(service, clip, target, replace(config, robust_to=(lp,), draws=1))
    assert robust.reached and robust.success and judge(robust) == 1.0
    assert robust.snr_wave_db >= 15.0
    # It went on past where the plain attack stopped: the iterate said the target before its copy did.
    assert robust.iterations > plain.iterations
    # The original once; then every judgement is of the iterate and its copy, with 2 x 10 candidates
    # and theirs asked in the same call.
    assert robust.queries == service.asked == 1 + (robust.iterations + 1) * 2 * 21

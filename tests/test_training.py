"""musadv.training: both networks learn on the built-in data; runs resume exactly; reference settings."""

import json

import pytest
import torch

from musadv.errors import MusadvError
from musadv.evaluate import evaluate_model
from musadv.models import load_model
from musadv.training import TrainConfig, train

QUIET = dict(progress=False, log=lambda m: None)
SMALL_CDNN = {"arch": "cdnn", "patch": 50, "filters": 8, "kernel1": [4, 64], "kernel2": [8, 8], "hidden": 50, "dropout": 0.0}


def test_reference_settings():
    dnn, cdnn = TrainConfig.reference("dnn"), TrainConfig.reference("cdnn")
    assert (dnn.lr, dnn.batch_size, dnn.momentum_start, dnn.momentum_end) == (0.01, 1200, 0.5, 0.9)
    assert (cdnn.lr, cdnn.batch_size, cdnn.max_epochs) == (0.001, 5, 30)
    assert (dnn.patience, dnn.min_improvement) == (10, 0.001)
    assert dnn.lr_at(0) == 0.01 and dnn.lr_at(50) == pytest.approx(0.0001) and dnn.lr_at(80) == pytest.approx(0.0001)
    assert dnn.momentum_at(25) == pytest.approx(0.7) and dnn.momentum_at(60) == pytest.approx(0.9)


def test_dnn_learns_well_above_chance_on_held_out_files(trained_dnn, learn_cache):
    fom = evaluate_model(trained_dnn, learn_cache, "test")
    assert fom["chance"] == pytest.approx(1 / 6)
    assert fom["normalised_accuracy"] >= 0.75 and fom["binomial_p"] < 1e-4
    info = trained_dnn.info
    assert info["training"]["history"][0]["epoch"] == 0
    assert {e["path"] for e in info["partition"]["splits"]["test"]} == {e.path for e in learn_cache.split("test")}


def test_cdnn_learns_above_chance_on_held_out_files(learn_cache, tmp_path):
    model = train(learn_cache, SMALL_CDNN, tmp_path / "cdnn",
                  TrainConfig(lr=0.003, batch_size=8, max_epochs=8, patience=8), **QUIET)
    fom = evaluate_model(model, learn_cache, "test")
    assert fom["normalised_accuracy"] >= 0.5 and fom["binomial_p"] < 1e-2


def test_best_model_on_validation_is_kept_and_saved(trained_dnn, learn_cache):
    t = trained_dnn.info["training"]
    errors = [h["valid_error"] for h in t["history"]]
    assert errors[t["best_epoch"]] == t["best_valid_error"] <= min(errors) / (1 - 0.001)
    # The weights on disk are the best epoch's: judged again, they make exactly its validation error.
    from musadv.training import ElementData, _error_rate

    reloaded = load_model(trained_dnn.path)
    data = ElementData(learn_cache, "valid", 1, reloaded.labels)
    assert _error_rate(reloaded, data, 4096)[0] == pytest.approx(t["best_valid_error"], abs=1e-12)
    # Safe to share: weights in safetensors, everything else JSON; nothing is a pickle.
    assert {p.suffix for p in trained_dnn.path.iterdir() if p.is_file()} <= {".json", ".csv", ".safetensors"}


@pytest.mark.parametrize("arch", [{"arch": "dnn", "hidden": 50, "layers": 3, "dropout": 0.3}, SMALL_CDNN], ids=["dnn", "cdnn"])
def test_an_interrupted_run_resumes_to_the_same_weights(learn_cache, tmp_path, arch):
    cfg = TrainConfig(max_epochs=4, batch_size=64 if arch["arch"] == "dnn" else 8, patience=10)
    whole = train(learn_cache, arch, tmp_path / "whole", cfg, **QUIET)

    def stop_after_two(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(learn_cache, arch, tmp_path / "cut", cfg, on_epoch=stop_after_two, **QUIET)
    assert json.loads((tmp_path / "cut" / "checkpoint.json").read_text())["epoch"] == 1
    with pytest.raises(MusadvError, match="--resume"):
        train(learn_cache, arch, tmp_path / "cut", cfg, **QUIET)
    resumed = train(learn_cache, arch, tmp_path / "cut", cfg, resume=True, **QUIET)
    assert [h["epoch"] for h in resumed.info["training"]["history"]] == [0, 1, 2, 3]
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_a_checkpoint_written_before_a_setting_existed_resumes_with_its_default(learn_cache, tmp_path):
    arch = {"arch": "dnn", "hidden": 16, "layers": 3, "dropout": 0.0}
    cfg = TrainConfig(max_epochs=2, batch_size=256)

    def stop_after_one(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(learn_cache, arch, tmp_path / "cut", cfg, on_epoch=stop_after_one, **QUIET)
    meta = json.loads((tmp_path / "cut" / "checkpoint.json").read_text())
    for newer in ("adv_snr_db", "adv_steps", "trades_beta", "noise_snr_db"):  # settings added after such checkpoints
        del meta["run"]["train"][newer]
    (tmp_path / "cut" / "checkpoint.json").write_text(json.dumps(meta))
    resumed = train(learn_cache, arch, tmp_path / "cut", cfg, resume=True, **QUIET)
    assert [h["epoch"] for h in resumed.info["training"]["history"]] == [0, 1]
    # A setting that is not at its default is still another run.
    meta["run"]["train"]["trades_beta"] = 1.0
    (tmp_path / "cut" / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(MusadvError, match="other settings"):
        train(learn_cache, arch, tmp_path / "cut", cfg, resume=True, **QUIET)


def test_a_diverged_training_stops_and_keeps_the_best_epoch_before_it(learn_cache, tmp_path):
    arch = {"arch": "dnn", "hidden": 16, "layers": 3, "dropout": 0.0}
    cfg = TrainConfig(max_epochs=4, batch_size=256, lr=1e10)  # the first steps throw the weights past any float
    model = train(learn_cache, arch, tmp_path / "m", cfg, **QUIET)
    t = model.info["training"]
    assert t["diverged_epoch"] == 0 and len(t["history"]) == 1  # no epoch trained on weights that are not numbers
    assert t["best_epoch"] == -1  # nothing better than the start: the initial weights are kept
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # Resuming does not train the diverged run on.
    again = train(learn_cache, arch, tmp_path / "m", cfg, resume=True, **QUIET)
    assert again.info["training"]["diverged_epoch"] == 0 and len(again.info["training"]["history"]) == 1

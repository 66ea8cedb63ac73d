"""musadv.devices and --device: a device is named as PyTorch names it, checked before any work, and one that
this machine does not have is one line; the CPU, named explicitly, gives what the default gives."""

import json

import pytest
import torch

from musadv import cli
from musadv.devices import resolve_device
from musadv.errors import MusadvError

from .conftest import run_musadv


def test_the_cpu_is_named_as_pytorch_names_it():
    assert resolve_device("cpu") == resolve_device(None) == resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="this machine has a GPU")
def test_auto_is_the_cpu_on_a_machine_without_a_gpu():
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("name, says", [("tpu", "is not one of cpu, cuda, cuda:N, mps or auto"),
                                        ("cuda:x", "is not one of"), ("cuda:64", "not available here")])
def test_a_name_that_is_no_device_here_is_refused(name, says):
    with pytest.raises(MusadvError, match=says):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_on_a_machine_without_one_is_refused():
    with pytest.raises(MusadvError, match="PyTorch sees no CUDA GPU"):
        resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("command", ["classify", "test", "attack", "robustness", "horse"])
def test_every_command_refuses_a_missing_device_in_one_line_before_loading_anything(command, tmp_path):
    """The model named does not exist: the device is checked first, so the error is about the device."""
    args = [command, str(tmp_path / "no-such-model")]
    if command in ("classify", "attack"):
        args.append(str(tmp_path / "x.wav"))
    if command in ("attack", "robustness", "horse"):
        args += ["--out", str(tmp_path / "out")]
    done = run_musadv(*args, "--device", "cuda:1")
    assert done.returncode == 1
    err = done.stderr.strip().splitlines()
    assert err == ["error: device 'cuda:1' is not available here (PyTorch sees no CUDA GPU)"]


def test_training_on_the_cpu_is_reproduced_bit_for_bit_by_its_seed(learn_cache, tmp_path):
    """Same seed, same data: --device cpu writes the same weights and history as no --device, and
    another seed does not (so the equality is the seed's doing, not a model that never trained)."""
    common = ["train", str(learn_cache.path), "--units", "16", "--epochs", "3", "--quiet"]
    cli.main(common + ["--out", str(tmp_path / "default")])
    cli.main(common + ["--out", str(tmp_path / "cpu"), "--device", "cpu"])
    cli.main(common + ["--out", str(tmp_path / "seed1"), "--seed", "1"])
    weights = {d: (tmp_path / d / "model.safetensors").read_bytes() for d in ("default", "cpu", "seed1")}
    assert weights["default"] == weights["cpu"] != weights["seed1"]
    history = {d: json.loads((tmp_path / d / "model.json").read_text())["training"]["history"] for d in weights}
    losses = {d: [h["train_loss"] for h in history[d]] for d in weights}
    assert losses["default"] == losses["cpu"] != losses["seed1"]
    assert losses["default"][-1] < losses["default"][0]  # it trained

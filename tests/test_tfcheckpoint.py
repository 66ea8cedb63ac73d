"""musadv.tfcheckpoint: the TensorFlow checkpoints musicnn ships, read without TensorFlow; broken files named in one line."""

import shutil

import numpy as np
import pytest

from musadv.musicnn import MODELS, weights_dir, build_network
from musadv.tfcheckpoint import CheckpointError, read_checkpoint, read_index

TRAINABLE = ("kernel", "bias", "gamma", "beta")


def _prefix(name="MSD_musicnn"):
    return f"{weights_dir() / name}/"


def test_every_tensor_of_a_musicnn_checkpoint_is_read_with_its_shape():
    index = read_index(_prefix())
    tensors = read_checkpoint(_prefix())
    assert set(tensors) == set(index)
    assert tensors["conv2d/kernel"].shape == (7, 38, 1, 204)  # the 7 x 38 timbral filters
    assert tensors["dense_1/kernel"].shape == (200, 50)
    for name, entry in index.items():
        assert tensors[name].shape == entry.shape
        assert tensors[name].nbytes == entry.size
    assert all(np.isfinite(t).all() for t in tensors.values())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_rebuilt_network_takes_exactly_the_trainable_tensors(name):
    """Every trained number of the checkpoint lands in one PyTorch parameter, and nothing else does."""
    tensors = read_checkpoint(_prefix(name))
    trained = sum(t.size for k, t in tensors.items() if k.rsplit("/", 1)[-1] in TRAINABLE)
    net = build_network(name)
    assert sum(p.numel() for p in net.parameters()) == trained


def test_a_truncated_data_file_is_named(tmp_path):
    for f in weights_dir().joinpath("MTT_vgg").iterdir():
        shutil.copy(f, tmp_path / f.name)
    data = tmp_path / ".data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"past the end of its data file"):
        read_checkpoint(f"{tmp_path}/")


def test_a_truncated_or_foreign_index_is_named(tmp_path):
    index = weights_dir() / "MTT_vgg" / ".index"
    (tmp_path / "a.index").write_bytes(index.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"a\.index: not a TensorFlow checkpoint index"):
        read_index(tmp_path / "a")
    (tmp_path / "b.index").write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match=r"b\.index: not a TensorFlow checkpoint index"):
        read_index(tmp_path / "b")
    with pytest.raises(CheckpointError, match=r"c\.index: cannot read"):
        read_index(tmp_path / "c")

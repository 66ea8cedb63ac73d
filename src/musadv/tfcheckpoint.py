"""Reading TensorFlow checkpoints without TensorFlow: the weights of published models as NumPy arrays.

A TensorFlow (v1 or v2) checkpoint with prefix ``P`` is two files: ``P.index``, a LevelDB-format
sorted table that maps each tensor's name to a ``BundleEntryProto`` (its dtype, shape, shard,
offset and size in bytes), and the data shards ``P.data-00000-of-0000N`` holding the tensors as
raw little-endian bytes. This module parses both with the standard library and NumPy, so that
musadv can use the weights that packages such as ``musicnn`` ship without importing (or
installing) TensorFlow. Nothing is unpickled or executed: only numbers are read.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MusadvError

__all__ = ["CheckpointError", "TensorEntry", "read_index", "read_checkpoint"]

#: The last 8 bytes of a LevelDB table (``kTableMagicNumber``), little-endian.
TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5  # compression type, then a masked CRC-32C

#: TensorFlow's ``DataType`` numbers of the numeric types a checkpoint may hold.
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 17: "<u2", 19: "<f2",
          22: "<u4", 23: "<u8"}


class CheckpointError(MusadvError):
    """A checkpoint file that is missing, truncated or not what it claims to be."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies: ``size`` bytes at ``offset`` of shard ``shard_id``, as ``dtype`` with ``shape``."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise CheckpointError("a varint runs past the end of its block")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _proto_fields(buf: bytes):
    """``(field number, wire type, value)`` of a serialised protobuf message; length-delimited values as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _shape(buf: bytes) -> tuple[int, ...]:
    """Dimensions of a ``TensorShapeProto`` (``repeated Dim dim = 2``, ``Dim.size = 1``)."""
    dims = []
    for field, _, dim in _proto_fields(buf):
        if field == 2:
            size = next((v for f, _, v in _proto_fields(dim) if f == 1), 0)
            dims.append(size - (1 << 64) if size >= 1 << 63 else size)  # int64: -1 is unknown
        elif field == 3:
            raise CheckpointError("a tensor of unknown rank")
    return tuple(dims)


def _entry(name: str, buf: bytes) -> TensorEntry:
    fields = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0}
    for field, _, value in _proto_fields(buf):
        if field == 1:
            fields["dtype"] = value
        elif field == 2:
            fields["shape"] = _shape(value)
        elif field == 3:
            fields["shard_id"] = value
        elif field == 4:
            fields["offset"] = value
        elif field == 5:
            fields["size"] = value
        elif field == 7:
            raise CheckpointError(f"{name}: a partitioned (sliced) tensor; not supported")
    return TensorEntry(name, **fields)


def _block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    end = offset + size
    if end + BLOCK_TRAILER_BYTES > len(data):
        raise CheckpointError(f"{path}: truncated (a block ends past the end of the file)")
    if data[end] != 0:
        raise CheckpointError(f"{path}: compressed table blocks (type {data[end]}) are not supported")
    return data[offset:end]


def _block_entries(block: bytes):
    """``(key, value)`` pairs of a LevelDB block (prefix-compressed keys, restart array at its end)."""
    if len(block) < 4:
        raise CheckpointError("a table block too short for its restart count")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * n_restarts
    if limit < 0:
        raise CheckpointError("a table block's restart array runs past its start")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        n_value, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + n_value]
        pos += n_value


def _handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def read_index(prefix: str | os.PathLike) -> dict[str, TensorEntry]:
    """The tensors a checkpoint holds, by name, from its ``PREFIX.index`` file.

    Parameters
    ----------
    prefix : path
        The checkpoint prefix: ``model.ckpt`` for ``model.ckpt.index``; for a directory ending
        in a separator, the files ``DIR/.index`` and ``DIR/.data-...`` (as musicnn ships them).

    Returns
    -------
    dict
        Tensor name -> :class:`TensorEntry` (the bundle's header, under the empty key, is left out).
    """
    path = Path(str(prefix) + ".index")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint index ({exc.strerror or exc})") from None
    if len(data) < FOOTER_BYTES or struct.unpack_from("<Q", data, len(data) - 8)[0] != TABLE_MAGIC:
        raise CheckpointError(f"{path}: not a TensorFlow checkpoint index (no table footer)")
    footer = data[len(data) - FOOTER_BYTES :]
    _, _, pos = _handle(footer)  # the metaindex block: unused by checkpoints
    index_offset, index_size, _ = _handle(footer, pos)
    entries = {}
    for _, handle in _block_entries(_block(data, index_offset, index_size, path)):
        offset, size, _ = _handle(handle)
        for key, value in _block_entries(_block(data, offset, size, path)):
            if key:
                name = key.decode("utf-8")
                entries[name] = _entry(name, value)
    if not entries:
        raise CheckpointError(f"{path}: the checkpoint holds no tensors")
    return entries


def read_checkpoint(prefix: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every numeric tensor of a checkpoint, by name, as NumPy arrays in TensorFlow's layout.

    Convolution kernels keep TensorFlow's ``(height, width, in, out)`` and dense kernels its
    ``(in, out)``: mapping them to PyTorch's layout is the model's business.

    Raises
    ------
    CheckpointError
        If a file is missing or truncated, a tensor's size does not match its shape and dtype,
        or a tensor is not numeric (strings) or partitioned.
    """
    entries = read_index(prefix)
    shards: dict[int, bytes] = {}
    n_shards = 1 + max(e.shard_id for e in entries.values())
    tensors = {}
    for name, e in entries.items():
        if e.dtype not in DTYPES:
            raise CheckpointError(f"{prefix}: tensor {name} has dtype {e.dtype}, not a numeric type musadv reads")
        if e.shard_id not in shards:
            shard = Path(f"{prefix}.data-{e.shard_id:05d}-of-{n_shards:05d}")
            try:
                shards[e.shard_id] = shard.read_bytes()
            except OSError as exc:
                raise CheckpointError(f"{shard}: cannot read the checkpoint data ({exc.strerror or exc})") from None
        dtype = np.dtype(DTYPES[e.dtype])
        count = int(np.prod(e.shape, dtype=np.int64))
        if e.size != count * dtype.itemsize:
            raise CheckpointError(f"{prefix}: tensor {name} holds {e.size} bytes, not the {count * dtype.itemsize} "
                                  f"its shape {list(e.shape)} needs")
        buf = shards[e.shard_id]
        if e.offset + e.size > len(buf):
            raise CheckpointError(f"{prefix}: tensor {name} lies past the end of its data file (truncated?)")
        tensors[name] = np.frombuffer(buf, dtype, count, e.offset).reshape(e.shape).astype(dtype.newbyteorder("="))
    return tensors

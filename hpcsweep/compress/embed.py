"""A compressor as a compressed file knows it: its identity, and its bytes when the file carries it.

A file is decoded by the compressor at its bound and nothing else of the
bundle (not its trial record, export time or other bounds), so that is what
identifies it: the sha256 of that compressor's state (its description and
arrays, the recipe of a trial file's checksum). The same trial exported again,
or with fewer bounds, holds the same compressor and decodes the file.

Embedded, the state is one record: a JSON description of the compressor and of
its arrays (name, dtype, shape, offset), then the arrays' bytes, all zstd
compressed. Reading it builds numeric arrays from bytes and never runs code (a
received file is data): any other dtype is refused.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from hpcsweep.codec import Compressor
from hpcsweep.store import checksum

#: Share of the output from which a compressor is not embedded by default: one compressor for many small files
#: belongs in their bundle, not in each file.
EMBED_UP_TO = 0.10
_LENGTH = struct.Struct("<Q")  # bytes of the description, before the arrays
_NUMERIC = "biuf"


def identity(compressor: Compressor, bound: float) -> str:
    """The identity of what decoding at `bound` needs: the sha256 of the compressor with that bound's coder alone."""
    meta, arrays = compressor.only([bound]).state()
    return checksum({"compressor": json.dumps(meta, sort_keys=True)}, arrays)


def pack(compressor: Compressor, bound: float) -> bytes:
    """The compressor at `bound` as the bytes of a file's codec record."""
    import zstandard

    meta, arrays = compressor.only([bound]).state()
    layout, blobs, at = [], [], 0
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        layout.append([name, array.dtype.str, list(array.shape), at])
        blobs.append(array.tobytes())
        at += array.nbytes
    description = json.dumps({"compressor": meta, "arrays": layout}, sort_keys=True).encode()
    return zstandard.ZstdCompressor(level=19).compress(_LENGTH.pack(len(description)) + description + b"".join(blobs))


def unpack(payload: bytes) -> Compressor:
    """The compressor of a codec record; ValueError for anything but the description and numeric arrays it should hold."""
    import zstandard

    try:
        data = zstandard.ZstdDecompressor().decompress(payload)
        (length,) = _LENGTH.unpack_from(data)
        description = json.loads(data[_LENGTH.size : _LENGTH.size + length])
        body = memoryview(data)[_LENGTH.size + length :]
        arrays = {name: _array(body, dtype, shape, at) for name, dtype, shape, at in description["arrays"]}
        return Compressor.from_state(description["compressor"], arrays)
    except (zstandard.ZstdError, struct.error, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"not a compressor ({type(err).__name__}: {err})") from None


def _array(body: memoryview, dtype: str, shape: list[int], at: int) -> np.ndarray:
    kind = np.dtype(dtype)
    if kind.kind not in _NUMERIC or kind.hasobject:
        raise ValueError(f"an array of dtype {dtype!r}: only numbers are read")
    count = int(np.prod(shape, dtype=np.int64))
    if min(shape, default=0) < 0 or at < 0 or at + count * kind.itemsize > len(body):
        raise ValueError("an array runs past the end of the record")
    return np.frombuffer(body, kind, count, at).reshape(shape).copy()


def embedded_by_default(codec_bytes: int, output_bytes: int) -> bool:
    """Whether a file carries its compressor when not told: unless it would make more than EMBED_UP_TO of the file."""
    return codec_bytes <= EMBED_UP_TO * (output_bytes + codec_bytes)

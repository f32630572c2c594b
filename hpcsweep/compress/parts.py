"""A chunk's parts: the model's jets to code, everything else stored losslessly, and the branches assembled back.

The model's variables are compressed within the bound; their jets outside the
variable set's selection (which the model never saw) are stored losslessly, as
are every other branch (awkward buffers), the jaggedness (jets per entry) and
where optional branches miss a value. Numbers of 16 bits or more (counts,
offsets, other branches' values) are coded by pcodec, the rest (bytes, bit
masks) by zstd: pcodec was the smaller on every such column kind measured, 12 %
to 99.99 % (benchmarks/lossless.py). Each part is one section of the chunk's
record (`container.Chunk.sections`); the coded variables are "model".
"""

from __future__ import annotations

import json
import struct
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcsweep.compress.io import in_set_units, model_columns, unflattened

if TYPE_CHECKING:
    import awkward as ak

    from hpcsweep.data.varset import Variable, VarSet

LEVEL = 3  # zstd level of the lossless parts


def split(arrays: ak.Array, model: dict[str, Variable], varset: VarSet) -> tuple[np.ndarray, dict[str, bytes], int]:
    """The jets of a chunk to code (those the model applies to and that the bound can hold, in the file's own units: the
    coder keeps what it stores exactly as the file holds it), the chunk's other parts packed, and its jets (those not
    coded are stored whole, each branch in its own type)."""
    raw, counts, missing = model_columns(arrays, model)
    physical, kept = in_set_units(raw, model, varset)
    own = _own_values(arrays, model)
    kept &= ~(np.column_stack([_uncodable(column) for column in own]) | _uncodable(physical)).any(axis=1)
    whole = b"".join(column[~kept].astype(column.dtype.newbyteorder("<")).tobytes() for column in own)
    sections = {"kept": _zstd(np.packbits(kept).tobytes()), "whole": _zstd(whole)}
    negative_zeros = (raw[kept] == 0) & np.signbit(raw[kept])
    if negative_zeros.any():
        sections["negative_zeros"] = _zstd(np.packbits(negative_zeros).tobytes())
    if counts is not None:
        sections["counts"] = _numbers(counts.astype("<i8"))
    sections |= {f"missing/{name}": _zstd(np.packbits(mask).tobytes()) for name, mask in missing.items() if mask.any()}
    others = [name for name in arrays.fields if name not in model]
    if others:
        sections["other"] = _to_buffers(arrays[others])
    return raw[kept], sections, len(raw)


def _own_values(arrays: ak.Array, model: dict[str, Variable]) -> list[np.ndarray]:
    """Each model branch's values per jet in the branch's own type, so that a jet stored whole keeps every bit (a
    float32 signalling NaN, an int64 beyond 2**53, which float64 would change); where a value is missing, whatever
    awkward holds there (the missing masks restore the nulls)."""
    import awkward as ak

    columns = []
    for name in model:
        array = arrays[name]
        columns.append(np.ma.getdata(ak.to_numpy(ak.flatten(array) if array.ndim > 1 else array)))
    return columns


def _uncodable(values: np.ndarray) -> np.ndarray:
    """Where a value cannot be coded as the file holds it (a column's jets in their own type, or jets x variables in
    the set's units): a jet with one is stored whole. A denormal float (its few bits round a decoded value by more
    than the bound: float32 1e-44 has 7 steps; 5e-324 MeV is 0 in GeV, which would decode as an exact zero), and an
    integer beyond 2**53, which the coder's float64 rounds (2**53 + 1 came back 2**53)."""
    if values.dtype.kind in "iu":
        return (values > 2**53) | (values < -(2**53))  # in integers: 2**53 + 1 is 2**53 as a float
    if values.dtype.kind != "f":
        return np.zeros(values.shape, bool)
    with np.errstate(invalid="ignore"):
        return (values != 0) & (np.abs(values) < np.finfo(values.dtype).tiny)


def assemble(
    decoded: np.ndarray | None,
    sections: dict[str, bytes],
    header: dict[str, Any],
    names: list[str],
    n_jets: int,
    wanted: Collection[str] | None = None,
) -> dict[str, Any]:
    """The chunk's branches (name -> awkward array, those `wanted`, default all), from the decoded model variables
    (columns in the order of `names`, the compressor's; None when no model branch is wanted) and the stored parts."""
    import awkward as ak

    branches = [b for b in header["branches"] if wanted is None or b["name"] in wanted]
    values = _model_values(decoded, sections, header, names, n_jets) if any("variable" in b for b in branches) else None
    counts = _numbers_back(sections["counts"]).view("<i8") if "counts" in sections else None
    others = _from_buffers(sections["other"]) if any("variable" not in b for b in branches) else None
    out = {}
    for branch in branches:
        if "variable" not in branch:
            assert others is not None  # the branches outside the model are the chunk's "other" part
            out[branch["name"]] = others[branch["name"]]
            continue
        assert values is not None
        column = ak.Array(values[branch["variable"]])
        if branch["optional"]:
            stored = sections.get(f"missing/{branch['name']}")
            missing = (
                np.unpackbits(np.frombuffer(_unzstd(stored), np.uint8), count=n_jets).astype(bool) if stored else np.zeros(n_jets, bool)
            )
            column = ak.mask(column, ~missing)
        if counts is not None:
            column = unflattened(column, counts, branch.get("absent", False), branch.get("size"))
        out[branch["name"]] = column
    return out


def _model_values(
    decoded: np.ndarray | None, sections: dict[str, bytes], header: dict[str, Any], names: list[str], n_jets: int
) -> dict[str, np.ndarray]:
    """Every jet's model variables in the file's own units and types (variable -> column): the coded jets decoded (in
    those units; their negative zeros signed again), the others as stored whole. Parts that disagree on the number of
    jets are a ValueError."""
    if decoded is None:
        raise ValueError("the model's branches are wanted: their decoded values are needed")
    order = {name: i for i, name in enumerate(names)}
    model = sorted((b for b in header["branches"] if "variable" in b), key=lambda b: order[b["variable"]])
    kept = np.unpackbits(np.frombuffer(_unzstd(sections["kept"]), dtype=np.uint8), count=n_jets).astype(bool)
    if len(decoded) != kept.sum():
        raise ValueError(f"its model part holds {len(decoded)} jets where it marks {kept.sum()} as coded")
    whole = _stored_whole(sections, model, int((~kept).sum()))
    signed = sections.get("negative_zeros")
    negative_zeros = (
        np.unpackbits(np.frombuffer(_unzstd(signed), np.uint8), count=decoded.size).astype(bool).reshape(decoded.shape)
        if signed
        else np.zeros(decoded.shape, bool)
    )
    values = {}
    for i, branch in enumerate(model):
        column = np.empty(n_jets, np.dtype(branch["dtype"]))
        coded = _cast(decoded[:, i], branch["dtype"])
        coded[negative_zeros[:, i]] = -0.0
        column[kept], column[~kept] = coded, whole[i]
        values[branch["variable"]] = column
    return values


def _stored_whole(sections: dict[str, bytes], model: list[dict[str, Any]], n_whole: int) -> list[np.ndarray]:
    """The values of the jets stored whole, per model branch (in the compressor's order), in its own type,
    little-endian; a part of another length than they make is a ValueError."""
    data, columns, at = _unzstd(sections["whole"]), [], 0
    kinds = [np.dtype(branch["dtype"]).newbyteorder("<") for branch in model]
    if len(data) != n_whole * sum(kind.itemsize for kind in kinds):
        raise ValueError(f"its part of jets stored whole holds {len(data)} bytes, not those of {n_whole} jets")
    for kind in kinds:
        columns.append(np.frombuffer(data, dtype=kind, count=n_whole, offset=at))
        at += n_whole * kind.itemsize
    return columns


def model_units(header: dict[str, Any], names: list[str]) -> np.ndarray:
    """Per variable, in the order of `names` (the compressor's): the scale that turns the file's values physical."""
    scale = {b["variable"]: b["unit_scale"] for b in header["branches"] if "variable" in b}
    return np.array([scale[name] for name in names], dtype=np.float64)


def _cast(values: np.ndarray, dtype: str) -> np.ndarray:
    kind = np.dtype(dtype)
    return np.round(values).astype(kind) if kind.kind in "iub" else values.astype(kind)


def _to_buffers(array: ak.Array) -> bytes:
    """The branches as awkward's buffers, each packed by `_numbers`, after a JSON head (form, length, each buffer's key
    and packed size)."""
    import awkward as ak

    form, length, container = ak.to_buffers(ak.to_packed(array))
    blobs = {key: _numbers(np.asarray(value)) for key, value in container.items()}
    head = json.dumps({"form": form.to_json(), "length": length, "keys": [[k, len(v)] for k, v in blobs.items()]}).encode()
    return struct.pack("<Q", len(head)) + head + b"".join(blobs.values())


def _from_buffers(data: bytes) -> ak.Array:
    import awkward as ak

    (size,) = struct.unpack_from("<Q", data)
    head = json.loads(data[8 : 8 + size])
    container, at = {}, 8 + size
    for key, length in head["keys"]:
        container[key] = _numbers_back(data[at : at + length]).view(np.uint8)
        at += length
    return ak.from_buffers(ak.forms.from_json(head["form"]), head["length"], container)


#: How `_numbers` packed a buffer: its first byte.
_PCODEC, _ZSTD = b"p", b"z"


def _numbers(array: np.ndarray) -> bytes:
    """A buffer packed losslessly, every bit kept (NaN payloads, -0.0): pcodec for integers and floats of 16 bits or
    more (what it codes), zstd for the rest; a first byte says which."""
    if array.dtype.kind in "iuf" and array.dtype.itemsize >= 2 and array.dtype.isnative and array.size:
        from pcodec import ChunkConfig, standalone

        return _PCODEC + standalone.simple_compress(np.ascontiguousarray(array).ravel(), ChunkConfig())
    return _ZSTD + _zstd(np.ascontiguousarray(array).tobytes())


def _numbers_back(data: bytes) -> np.ndarray:
    """What `_numbers` packed: the typed array (pcodec), or its bytes (zstd)."""
    if data[:1] == _PCODEC:
        from pcodec import standalone

        return np.asarray(standalone.simple_decompress(data[1:]))
    if data[:1] == _ZSTD:
        return np.frombuffer(_unzstd(data[1:]), dtype=np.uint8)
    raise ValueError("a lossless part of unknown kind")


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=LEVEL).compress(data)


def _unzstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompress(data)

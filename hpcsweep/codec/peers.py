"""The error-bounded compressors physicists already have, held to the bound hpcsweep judges by.

Every value is kept within `bound` the way the residual tables measure it:
relatively for scale variables (compressed as log(x), so an absolute bound of
log(1 + bound) there is a pointwise relative bound; exact zeros kept by a
mask), absolutely for angles and other signed variables, and discrete
variables losslessly. SZ3 (`pysz`) and ZFP (`zfpy`) take the bound directly;
fpzip and float32 mantissa rounding (+ zstd) take a precision, so each column
gets the fewest bits (every precision tried) that keep all its values within the
bound, in log space or on the raw values, whichever takes fewer bytes. Each column
is one stream; bytes per jet count every stream with its header.

The libraries are the optional extra `compare` (which `make` installs); without them
`available()` is empty and evaluations carry no peers.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hpcsweep.codec.coder import SAFETY  # bounds handed to the libraries are shrunk by it, as the coder's grid steps are

#: A peer's coder: (values, bound) -> (bytes, decoded values); a peer by precision takes a bound per value too.
Code = Callable[..., tuple[int, np.ndarray]]


@dataclass(frozen=True)
class Peer:
    """One compressor held to the bound: its name in tables and figures, the library it needs (beside zstandard, which
    keeps the lossless columns), how it codes a column, and whether it takes a precision rather than a bound (then a
    relatively bounded column is also coded as its raw values, a float's precision being relative already, and the
    fewer bytes of the two domains count)."""

    name: str
    module: str
    code: Code
    by_precision: bool = False


def available() -> list[str]:
    """The peers whose library is installed."""
    return [peer.name for peer in TABLE if all(importlib.util.find_spec(module) for module in (peer.module, "zstandard"))]


def compress_with_peers(x: np.ndarray, kinds: list[str], discrete: list[bool], bound: float) -> dict[str, tuple[float, np.ndarray]]:
    """Peer -> (bytes per jet, decoded jets) for the jets `x` (jets x variables, physical units).

    `kinds[i]` is variable i's residual kind ('relative', 'absolute', 'phi'), `discrete[i]` whether it is stored losslessly.
    """
    out = {}
    by_name = {peer.name: peer for peer in TABLE}
    for name in available():
        total, decoded = 0, np.empty_like(x, dtype=np.float32)
        for i, kind in enumerate(kinds):
            size, decoded[:, i] = _column(x[:, i], kind, discrete[i], bound, by_name[name])
            total += size
        out[name] = (total / len(x), decoded)
    return out


def _column(values: np.ndarray, kind: str, discrete: bool, bound: float, peer: Peer) -> tuple[int, np.ndarray]:
    """Bytes and decoded values of one variable: lossless if discrete, as is (absolute), or under a relative bound in
    log space, and, for a peer that takes a precision (fpzip, mantissa bits), also on the raw values: the fewer bytes."""
    values = np.asarray(values, dtype=np.float32)
    if discrete:
        return len(_zstd(values.tobytes())), values
    if kind != "relative":
        size, back = peer.code(values.astype(np.float64), bound * SAFETY)
        return size, back.astype(np.float32)
    logged = _in_logs(values, bound, peer.code)
    if not peer.by_precision:
        return logged
    raw = peer.code(values.astype(np.float64), bound * SAFETY * np.abs(values.astype(np.float64)))  # a relative bound per value
    return min(logged, (raw[0], raw[1].astype(np.float32)), key=lambda coded: coded[0])


def _in_logs(values: np.ndarray, bound: float, codec: Code) -> tuple[int, np.ndarray]:
    """A relative bound as an absolute one on log(x), the one domain SZ3 and ZFP can keep it in; zeros go in a mask."""
    zero = values <= 0
    logs = np.log(np.where(zero, 1.0, values).astype(np.float64))
    if zero.any():
        logs[zero] = np.median(logs[~zero]) if (~zero).any() else 0.0  # a smooth stand-in; the mask restores them
    size, back = codec(logs, np.log1p(bound) * SAFETY)
    mask = len(_zstd(np.packbits(zero).tobytes())) if zero.any() else 0
    return size + mask, np.where(zero, 0.0, np.exp(back)).astype(np.float32)


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=19).compress(data)


def _sz3(values: np.ndarray, bound: float) -> tuple[int, np.ndarray]:
    from pysz import sz, szConfig, szErrorBoundMode

    config = szConfig()
    config.errorBoundMode = szErrorBoundMode.ABS
    config.absErrorBound = bound
    packed, _ = sz.compress(np.ascontiguousarray(values), config)
    back, _ = sz.decompress(packed, values.dtype, values.shape)
    return packed.nbytes, back


def _zfp(values: np.ndarray, bound: float) -> tuple[int, np.ndarray]:
    import zfpy

    packed = zfpy.compress_numpy(np.ascontiguousarray(values), tolerance=bound)
    return len(packed), zfpy.decompress_numpy(packed)


def _fewest_bits(
    values: np.ndarray, bound: float | np.ndarray, encode: Callable[[np.ndarray, int], tuple[bytes, np.ndarray]], bits: range
) -> tuple[int, np.ndarray]:
    """The first precision in `bits` whose decoded values all stay within `bound` (one for all, or one per value; the
    last precision otherwise)."""
    for precision in bits:
        packed, back = encode(values, precision)
        if np.all(np.abs(back.astype(np.float64) - values) <= bound):
            break
    return len(packed), back


def _fpzip(values: np.ndarray, bound: float | np.ndarray) -> tuple[int, np.ndarray]:
    import fpzip

    def encode(column: np.ndarray, precision: int) -> tuple[bytes, np.ndarray]:
        packed = fpzip.compress(np.ascontiguousarray(column.astype(np.float32)), precision=precision)
        return packed, fpzip.decompress(packed).reshape(-1)

    return _fewest_bits(values, bound, encode, range(2, 33))


def _mantissa(values: np.ndarray, bound: float | np.ndarray) -> tuple[int, np.ndarray]:
    def encode(column: np.ndarray, bits: int) -> tuple[bytes, np.ndarray]:
        raw = column.astype(np.float32).view(np.uint32).astype(np.uint64)
        drop = 23 - bits
        kept = ((raw + (1 << (drop - 1))) & ~np.uint64((1 << drop) - 1)).astype(np.uint32) if drop else raw.astype(np.uint32)
        planes = kept.view(np.uint8).reshape(-1, 4).T.copy()  # byte planes: the zeroed low bytes compress to nothing
        return _zstd(planes.tobytes()), kept.view(np.float32)

    return _fewest_bits(values, bound, encode, range(1, 24))


#: The peers, in the order of every table and figure: adding a peer is adding its row (and its library to the extra
#: `compare` in pyproject.toml).
TABLE: tuple[Peer, ...] = (
    Peer("SZ3", "pysz", _sz3),
    Peer("ZFP", "zfpy", _zfp),
    Peer("fpzip", "fpzip", _fpzip, by_precision=True),
    Peer("mantissa + zstd", "zstandard", _mantissa, by_precision=True),
)
PEERS = tuple(peer.name for peer in TABLE)

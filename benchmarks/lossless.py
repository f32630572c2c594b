"""Lossless codecs for the parts `hpcsweep compress` stores outside the model (issue 23, item 8): measurement only.

For each column kind, the compressed bytes and the compress / decompress speeds (MB/s of raw input) of zstd level 3
(what `hpcsweep.compress.parts` ships), zstd level 19, pcodec (default level) and OpenZL (its generic graph), when
installed; every round trip is checked bit-exact (dtype and bytes). Columns are ~1M values: the jet counts and the jet_pt values are
drawn (with replacement) from the generated sample, or tiled from it (tiling repeats the file byte for byte, which
long-match coders exploit, so those rows flatter them); the rest are synthetic with a fixed seed.

    PYTHONPATH=. python benchmarks/lossless.py [--sample data/generated/qcd_n10000_s1_v1.root] [--n 1000000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hpcsweep.compress.parts import LEVEL

SAMPLE = Path("data/generated/qcd_n10000_s1_v1.root")


def _timed(fn: Callable[[], object], repeats: int) -> tuple[object, float]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


# Each codec: (compress(list of arrays) -> bytes, decompress(bytes, like) -> list of arrays). A column is a list of
# 1-D arrays (a jagged column is its `ak.to_buffers` offsets and content); zstd sees them joined in one blob, as
# `parts._to_buffers` does (less its small JSON head).


def _zstd(level: int):
    import zstandard

    def comp(arrays: list[np.ndarray]) -> bytes:
        return zstandard.ZstdCompressor(level=level).compress(b"".join(a.tobytes() for a in arrays))

    def decomp(data: bytes, like: list[np.ndarray]) -> list[np.ndarray]:
        raw, out, at = zstandard.ZstdDecompressor().decompress(data), [], 0
        for a in like:
            out.append(np.frombuffer(raw, dtype=a.dtype, count=a.size, offset=at))
            at += a.nbytes
        return out

    return comp, decomp


def _pcodec():
    from pcodec import ChunkConfig, standalone

    def comp(arrays: list[np.ndarray]) -> bytes:
        blobs = [standalone.simple_compress(np.ascontiguousarray(a), ChunkConfig()) for a in arrays]
        return b"".join(len(b).to_bytes(8, "little") + b for b in blobs)

    def decomp(data: bytes, like: list[np.ndarray]) -> list[np.ndarray]:
        out, at = [], 0
        for _ in like:
            size = int.from_bytes(data[at : at + 8], "little")
            out.append(standalone.simple_decompress(data[at + 8 : at + 8 + size]))
            at += 8 + size
        return out

    return comp, decomp


def _openzl():
    import openzl.ext as zl

    compressor = zl.Compressor()
    compressor.select_starting_graph(zl.graphs.Compress()(compressor))

    def comp(arrays: list[np.ndarray]) -> bytes:
        cctx = zl.CCtx()
        cctx.ref_compressor(compressor)
        cctx.set_parameter(zl.CParam.FormatVersion, zl.MAX_FORMAT_VERSION)
        return cctx.compress([zl.Input(zl.Type.Numeric, np.ascontiguousarray(a)) for a in arrays])

    def decomp(data: bytes, like: list[np.ndarray]) -> list[np.ndarray]:
        # OpenZL gives numeric outputs back as unsigned ints of the same width: view them as the input's dtype.
        return [o.content.as_nparray().view(a.dtype) for o, a in zip(zl.DCtx().decompress(data), like, strict=True)]

    return comp, decomp


def codecs() -> dict[str, tuple[Callable, Callable]]:
    out = {f"zstd-{LEVEL}": _zstd(LEVEL), "zstd-19": _zstd(19)}
    for name, make in (("pcodec", _pcodec), ("openzl", _openzl)):
        try:
            out[name] = make()
        except ImportError as error:
            print(f"{name}: not installed ({error})")
    return out


def columns(sample: Path, n: int, seed: int = 0) -> dict[str, list[np.ndarray]]:
    import awkward as ak
    import uproot

    rng = np.random.default_rng(seed)
    events = uproot.open(sample)["events"]
    branches = list(events.keys())
    jet = next(name for name in branches if name.startswith("jet_"))
    counts = ak.to_numpy(ak.num(events[jet].array(library="ak"))).astype("<i8")
    pt = ak.to_numpy(ak.flatten(events["jet_pt"].array(library="ak"))).astype(
        np.float64
    )  # as float64, as the jets stored whole were kept before they kept their branches types
    tiles_c, tiles_pt = -(-n // counts.size), -(-n // pt.size)
    n_tracks = rng.poisson(20, size=n // 20)
    tracks = ak.unflatten(rng.exponential(5.0, size=int(n_tracks.sum())).astype(np.float32), n_tracks)
    _, _, buffers = ak.to_buffers(ak.to_packed(tracks))
    offsets, content = (np.asarray(buffers[k]) for k in sorted(buffers))  # node0-offsets, node1-data
    if offsets.dtype.kind == "f":
        offsets, content = content, offsets
    return {
        "counts (resampled, i8)": [rng.choice(counts, size=n)],
        "counts (tiled, i8)": [np.tile(counts, tiles_c)[:n]],
        "run number (const i4)": [np.full(n, 284500, dtype=np.int32)],
        "event number (incr i4)": [np.arange(1_000_000, 1_000_000 + n, dtype=np.int32)],
        "weight (normal f8)": [rng.normal(1.0, 0.1, size=n)],
        "track pt (jagged f4)": [offsets, content],
        "jet_pt as f8 (resampled)": [rng.choice(pt, size=n)],
        "jet_pt as f8 (tiled)": [np.tile(pt, tiles_pt)[:n]],
        # The sample's own non-jet branches, unrepeated (its entries only): the "other" part as this file gives it.
        "file others (native)": [ak.to_numpy(events[b].array(library="ak")) for b in branches if not b.startswith("jet_")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="best of, per timing (zstd-19 compresses once)")
    args = parser.parse_args()

    found = codecs()
    cols = columns(args.sample, args.n)
    print(f"{'column':26} {'raw B':>10} {'codec':8} {'bytes':>10} {'ratio':>8} {'comp MB/s':>10} {'decomp MB/s':>11}")
    best = {}
    for kind, arrays in cols.items():
        raw = sum(a.nbytes for a in arrays)
        for name, (comp, decomp) in found.items():
            data, t_c = _timed(lambda comp=comp, arrays=arrays: comp(arrays), 1 if name == "zstd-19" else args.repeats)
            back, t_d = _timed(lambda decomp=decomp, data=data, arrays=arrays: decomp(data, arrays), args.repeats)
            exact = all(
                b.dtype == a.dtype and np.array_equal(b.view(np.uint8), a.view(np.uint8)) for a, b in zip(arrays, back, strict=True)
            )
            if not exact:
                raise AssertionError(f"{name} round trip of {kind} not bit-exact")
            print(f"{kind:26} {raw:>10} {name:8} {len(data):>10} {raw / len(data):>8.1f} {raw / t_c / 1e6:>10.0f} {raw / t_d / 1e6:>11.0f}")
            if kind not in best or len(data) < best[kind][1]:
                best[kind] = (name, len(data))
    print("\nsmallest per column kind:", {k: v[0] for k, v in best.items()})


if __name__ == "__main__":
    main()

"""docs/format.md read as a specification: a reader written from it alone (struct, json, hashlib, zstandard, pcodec,
constriction, awkward for the `other` section's buffers, numpy for the predictor's arithmetic; nothing of
hpcsweep.compress's container or parts, nor of hpcsweep.codec) parses real compressed files, checks every checksum as
the page says, and gives back what the input file holds.

The files: a ROOT TTree (jagged jets under a counter, flat and jagged branches of other types, one jet with a
negative pt, one with a NaN eta, one with E = 0, one with a pt of 1e30) and a Parquet table (a null value, a null row, a string column),
compressed with a bundle of the learned coder alone, in several chunks, carrying their compressor; and the generated
jets of 24 variables (float64 branches, a zero, escapes) compressed by compressors that predict variables, the learned
coder alone and an autoencoder's, decoded by the arithmetic of the page's last section (exp, log, fixed point, feature
rows, integer layers, the integer decoder's side features) to the same bits as `hpcsweep decompress` gives.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import zstandard

from hpcsweep.cli import main
from tests.helpers import QCD, coder_bundle

DOC = Path(__file__).parents[2] / "docs" / "format.md"
BOUND = 0.01
BROKEN = {"pt": 5, "eta": 7}  # jets the model does not apply to: a negative pt, a NaN eta (stored losslessly)
ZERO_E = 9  # a jet with E = 0: coded as the ZERO symbol
ESCAPED = 11  # a jet with a pt of 1e30: past every bin the coder's counts cover, an escape
DISCRETE_ESCAPE = 13  # a jet whose N90Constituents (9999) is in no table: an escape of a discrete variable


# --- what the page says ----------------------------------------------------------------------------------------------
def _section(heading: str) -> str:
    """The text of docs/format.md under `heading` (up to the next heading of the same level)."""
    text = DOC.read_text()
    level = heading.split(" ")[0]
    start = text.index(f"\n{heading}\n")
    end = re.search(rf"\n{level} ", text[start + len(heading) + 2 :])
    return text[start : start + len(heading) + 2 + end.start()] if end else text[start:]


def _tables(heading: str) -> list[list[str]]:
    """The first cell of each row of every table under `heading`, one list per table, backticks removed."""
    tables: list[list[str]] = []
    previous = ""
    for line in _section(heading).splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            if not previous.startswith("|"):
                tables.append([])  # a header row starts a table: it is left out
            else:
                tables[-1].append(line.split("|")[1].strip().strip("`"))
        previous = line
    return tables


def _version() -> int:
    found = re.search(r"^# .*layout version (\d+)$", DOC.read_text(), re.M)
    assert found, "docs/format.md names its layout version in its title"
    return int(found.group(1))


# --- the reader ------------------------------------------------------------------------------------------------------
PREFIX = b"HPCSWEEP-JETS\x00"
FRAME = struct.Struct("<cQ")
CHUNK_HEAD = struct.Struct("<16sQQQQQ")
CODER_HEAD = struct.Struct("<QQQ16s")


@dataclass
class Record:
    kind: bytes
    at: int
    payload: bytes
    digest: bytes

    def verified(self) -> bytes:
        assert hashlib.sha256(self.payload).digest() == self.digest, f"{self.kind!r} record at byte {self.at}: sha256"
        return self.payload


@dataclass
class Chunk:
    file_id: bytes
    index: int
    entries_before: int
    jets_before: int
    entries: int
    jets: int
    sections: dict[str, bytes]


def read_records(data: bytes) -> tuple[int, list[Record]]:
    """The version and the records, their framing checked against the file's size before a payload is read."""
    assert data[: len(PREFIX)] == PREFIX and len(data) > len(PREFIX), "not a compressed file"
    version, at, records = data[len(PREFIX)], len(PREFIX) + 1, []
    while not records or records[-1].kind != b"E":
        assert at + FRAME.size <= len(data), "truncated before the end record"
        kind, length = FRAME.unpack_from(data, at)
        assert kind in (b"H", b"C", b"M", b"E"), f"unknown record at byte {at}"
        assert (kind == b"H") == (not records), "the header first, and once"
        assert length <= len(data) - at - FRAME.size - 32, "a length past the end of the file"
        start = at + FRAME.size
        records.append(Record(kind, at, data[start : start + length], data[start + length : start + length + 32]))
        at = start + length + 32
    assert at == len(data), "bytes after the end record"
    assert sum(r.kind == b"M" for r in records) <= 1, "a second compressor record"
    return version, records


def read_chunk(payload: bytes) -> Chunk:
    head, sections, at = CHUNK_HEAD.unpack_from(payload), {}, CHUNK_HEAD.size
    while at < len(payload):
        (size,) = struct.unpack_from("<H", payload, at)
        name = payload[at + 2 : at + 2 + size].decode()
        (length,) = struct.unpack_from("<Q", payload, at + 2 + size)
        start = at + 2 + size + 8
        assert name not in sections and start + length <= len(payload)
        sections[name], at = payload[start : start + length], start + length
    return Chunk(*head, sections)


def checked_chunks(records: list[Record], header: dict, end: dict) -> list[Chunk]:
    """Every chunk, checked as the page says: its sha256, the file's id, its index and the entries and jets before it;
    then the end record's totals and digest."""
    chunks, digests, entries, jets = [], hashlib.sha256(), 0, 0
    for record in (r for r in records if r.kind == b"C"):
        chunk = read_chunk(record.verified())
        assert chunk.file_id == bytes.fromhex(header["file_id"]), "a chunk of another file"
        assert chunk.index == len(chunks), "a chunk twice, missing or out of order"
        assert (chunk.entries_before, chunk.jets_before) == (entries, jets)
        chunks.append(chunk)
        digests.update(record.digest)
        entries, jets = entries + chunk.entries, jets + chunk.jets
    assert (end["chunks"], end["entries"], end["jets"]) == (len(chunks), entries, jets)
    assert end["digest"] == digests.hexdigest()
    return chunks


def unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(data)


def bits(data: bytes, count: int) -> np.ndarray:
    """A zstd'd bit mask: flag j is bit 7 - j % 8 of byte j // 8."""
    packed = np.frombuffer(unzstd(data), np.uint8)
    assert len(packed) == (count + 7) // 8
    j = np.arange(count)
    return (packed[j // 8] >> (7 - j % 8)) & 1 == 1


def numbers(data: bytes) -> bytes:
    """Packed numbers: their little-endian bytes."""
    if data[:1] == b"p":
        from pcodec import standalone

        array = np.asarray(standalone.simple_decompress(data[1:]))
        return array.astype(array.dtype.newbyteorder("<")).tobytes()
    assert data[:1] == b"z", f"packed numbers tagged {data[:1]!r}"
    return unzstd(data[1:])


def other_branches(data: bytes) -> ak.Array:
    (size,) = struct.unpack_from("<Q", data)
    head = json.loads(data[8 : 8 + size])
    assert set(head) == {"form", "length", "keys"} and isinstance(head["form"], str)
    buffers, at = {}, 8 + size
    for key, length in head["keys"]:
        buffers[key] = np.frombuffer(numbers(data[at : at + length]), np.uint8)
        at += length
    assert at == len(data)
    return ak.from_buffers(ak.forms.from_json(head["form"]), head["length"], buffers)


def compressor_record(payload: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    data = unzstd(payload)
    (size,) = struct.unpack_from("<Q", data)
    description = json.loads(data[8 : 8 + size])
    assert set(description) == {"arrays", "compressor"}
    body, arrays = data[8 + size :], {}
    for name, dtype, shape, offset in description["arrays"]:
        kind = np.dtype(dtype)
        assert kind.kind in "biuf", f"{name}: only numbers"
        count = math.prod(shape)
        assert offset + count * kind.itemsize <= len(body), f"{name} runs past the record"
        arrays[name] = np.frombuffer(body, kind, count, offset).reshape(shape)
    return description["compressor"], arrays


def identity(description: dict, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(f"compressor\0{json.dumps(description, sort_keys=True)}\0".encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{array.dtype.str}\0{tuple(array.shape)}\0".encode() + array.tobytes())
    return "sha256:" + digest.hexdigest()


def bundle_identity(bundle: Path, bound: float) -> str:
    """The identity of a bundle's compressor restricted to `bound`, as the page says to compute it."""
    import h5py

    with h5py.File(bundle, "r") as handle:
        description = json.loads(handle.attrs["compressor"])
        arrays: dict[str, np.ndarray] = {}
        handle["compressor"].visititems(lambda name, node: arrays.__setitem__(name, node[()]) if isinstance(node, h5py.Dataset) else None)
    j = next(i for i, b in enumerate(description["bounds"]) if math.isclose(b, bound, rel_tol=1e-9))
    restricted = {"bounds": [bound], "codecs": [description["codecs"][j]], "latents": description["latents"]}
    kept = {f"codec/0/{k.removeprefix(f'codec/{j}/')}": v for k, v in arrays.items() if k.startswith(f"codec/{j}/")}
    return identity(restricted, kept | {k: v for k, v in arrays.items() if k.startswith("latents/")})


@dataclass
class CoderSection:
    n: int
    words: np.ndarray
    escapes: np.ndarray
    digest: bytes


def coder_section(data: bytes) -> CoderSection:
    n, w, e, digest = CODER_HEAD.unpack_from(data)
    assert len(data) == CODER_HEAD.size + 4 * w + e and e % 8 == 0
    words = np.frombuffer(data, "<u4", w, CODER_HEAD.size)
    return CoderSection(n, words, np.frombuffer(data, "<f8", e // 8, CODER_HEAD.size + 4 * w), digest)


def model_parts(data: bytes) -> tuple[bytes, CoderSection]:
    (latent,) = struct.unpack_from("<Q", data)
    assert 8 + latent <= len(data)
    return data[8 : 8 + latent], coder_section(data[8 + latent :])


# --- the predictor's arithmetic (the page's last section) ------------------------------------------------------------
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
EXP_COEFFICIENTS = tuple(1 / math.factorial(k) for k in range(13, 0, -1)) + (1.0,)  # 1/13! .. 1/1!, 1: int / int rounds
LOG_COEFFICIENTS = tuple(1 / k for k in range(23, 0, -2))  # 1/23, 1/21, .., 1/3, 1
LIMIT = 2.0**32  # fixed-point features and activations are clipped to +-4096 (times 2^20)


def horner(x: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    p = np.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        p = p * x + c
    return p


def page_exp(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    clipped = np.clip(np.where(np.isnan(x), 0.0, x), -746.0, 710.0)
    n = np.rint(clipped * 1.4426950408889634)
    r = (clipped - n * LN2_HI) - n * LN2_LO
    h = np.floor(n / 2)
    with np.errstate(over="ignore"):
        out = np.ldexp(np.ldexp(horner(r, EXP_COEFFICIENTS), h.astype(np.int64)), (n - h).astype(np.int64))
    return np.where(np.isnan(x), np.nan, out)


def page_log(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    regular = np.isfinite(x) & (x > 0)
    m, e = np.frexp(np.where(regular, x, 1.0))
    low = m < 0.7071067811865476
    m, e = np.where(low, 2 * m, m), np.where(low, e - 1, e).astype(np.float64)
    s = (m - 1) / (m + 1)
    out = e * LN2_HI + (2 * (s * horner(s * s, LOG_COEFFICIENTS)) + e * LN2_LO)
    return np.where(regular, out, np.where(x == 0, -np.inf, np.where(x == np.inf, np.inf, np.nan)))


def page_tanh(x: np.ndarray) -> np.ndarray:
    a = np.minimum(np.abs(x), 40.0)
    return np.sign(x) * (1 - 2 / (page_exp(2 * a) + 1))


def fixed(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.rint(np.clip(np.where(np.isnan(x), 0.0, x), -4096.0, 4096.0) * 2.0**20)


def round_shift(s: np.ndarray, shift: int) -> np.ndarray:
    return np.floor((s + 2.0 ** (shift - 1)) * 2.0**-shift) if shift > 0 else s * 2.0**-shift


def integer_layer(arrays: dict[str, np.ndarray], name: str, shift: int, x: np.ndarray) -> np.ndarray:
    """round_shift(matrix^T x + bias, shift) of fixed-point inputs (inputs x jets); the sums in int64, exactly."""
    matrix, bias = arrays[f"{name}/matrix"].astype(np.int64), arrays[f"{name}/bias"].astype(np.int64)
    return round_shift((matrix.T @ x.astype(np.int64) + bias[:, None]).astype(np.float64), shift)


def activation(h: np.ndarray, kind: str) -> np.ndarray:
    if kind == "relu":
        out = np.maximum(h, 0.0)
    elif kind == "leaky_relu":
        out = np.where(h > 0, h, round_shift(np.maximum(h, -LIMIT) * 167772.0, 24))
    else:
        assert kind == "tanh", kind
        out = fixed(page_tanh(h * 2.0**-20))
    return np.clip(out, -LIMIT, LIMIT)


def predict(f: np.ndarray, i: int, coder: dict, arrays: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Predictor i's centre and class of every jet from its feature rows `f` (rows x jets)."""
    shifts = coder["shifts"][i]
    h = f
    for j, shift in enumerate(shifts[:-1]):
        h = activation(integer_layer(arrays, f"{prefix}layers/{i}/{j}", shift, h), "relu")
    out = integer_layer(arrays, f"{prefix}layers/{i}/{len(shifts) - 1}", shifts[-1], h)
    out = out + integer_layer(arrays, f"{prefix}skip/{i}/0", coder["skip"][i], f)
    centre = round_shift(np.clip(out[0], -(2.0**50), 2.0**50), 20).astype(np.int64)
    return centre, np.searchsorted(arrays[f"{prefix}edges/{i}"], out[1], side="left").astype(np.int64)


def energy(values: np.ndarray, of: list[int]) -> np.ndarray:
    """The energy row's raw value from the physical values of pt, eta and mass."""
    pt, eta, mass = (np.where(np.isfinite(values[:, j]), values[:, j], 0.0) for j in of)
    e = page_exp(np.clip(eta, -20.0, 20.0))
    with np.errstate(over="ignore"):
        big_e = np.sqrt((pt * ((e + 1 / e) * 0.5)) ** 2 + mass**2)
    return page_log(np.maximum(big_e, 1e-12))


def decode_section(
    section: CoderSection,
    coder: dict,
    arrays: dict[str, np.ndarray],
    prefix: str,
    side: np.ndarray | None = None,
    units: np.ndarray | None = None,
) -> np.ndarray:
    """The values (jets x variables, in the file's units: `units` per variable, 1 for none) of a coder section, every
    predicted variable by the page's arithmetic, its digest checked. `prefix` names the coder's arrays; `side` holds
    the jets' raw side features (jets x side)."""
    import constriction

    columns, n = coder["columns"], section.n
    units = np.ones(len(columns)) if units is None else units
    centre, spread = arrays[f"{prefix}centre"], arrays[f"{prefix}spread"]
    first = 1 + coder["side"]
    rows = np.zeros((first + 3 * len(columns), n))

    def standardised(raw: np.ndarray, where: slice) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return fixed((raw - centre[where, None]) / spread[where, None])

    if coder["side"]:
        assert side is not None and side.shape == (n, coder["side"])
        rows[1:first] = standardised(side.T, slice(1, first))
    decoder = constriction.stream.queue.RangeDecoder(section.words.astype(np.uint32))
    physical, out = np.zeros((n, len(columns))), np.zeros((n, len(columns)))
    all_bins, all_escapes, used = [], [], 0
    last_energy = max(coder["energy_of"]) if coder["energy_of"] else None
    for i, column in enumerate(columns):
        if coder["predicted"][i]:
            low = 0 if last_energy is not None and last_energy < i else 1
            centre_bin, cls = predict(rows[low : first + 3 * i], i, coder, arrays, prefix)
        else:
            centre_bin, cls = np.zeros(n, np.int64), np.zeros(n, np.int64)
        counts = arrays[f"{prefix}counts/{i}"].astype(np.float64)
        symbol = np.zeros(n, np.int64)
        for c, row in enumerate(counts):
            where = cls == c
            if where.any():
                model = constriction.stream.model.Categorical(row / row.sum(), perfect=False)
                symbol[where] = decoder.decode(model, int(where.sum()))
        assert np.all(cls < len(counts)), "a class the counts have"
        k = np.where(symbol >= 2, symbol - 2 + centre_bin + arrays[f"{prefix}offsets/{i}"][cls], 0)
        bin_, escaped = symbol >= 2, symbol == 1
        stored = section.escapes[used : used + escaped.sum()]
        used += len(stored)
        x = np.zeros(n)
        x[escaped] = stored * units[i]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if column["kind"] == "relative":
                value, coding = page_exp(k * column["step"]), k * column["step"]
                escape_coding = page_log(x)
            elif column["kind"] == "absolute":
                value = coding = k * column["step"]
                escape_coding = x
            else:
                value = coding = arrays[f"{prefix}table/{i}"][np.where(bin_, k, 0)]
                escape_coding = x
        physical[:, i] = np.where(bin_, value, np.where(escaped, x, 0.0))
        coding_row = np.where(bin_, coding, np.where(escaped & np.isfinite(escape_coding), escape_coding, 0.0))
        value_row = np.where(np.isfinite(physical[:, i]), physical[:, i], 0.0)
        raw = np.stack([coding_row, value_row, ((coding_row == 0) & (value_row != 1)).astype(np.float64)])
        rows[first + 3 * i : first + 3 * i + 3] = standardised(raw, slice(first + 3 * i, first + 3 * i + 3))
        if i == last_energy:
            rows[0] = standardised(energy(physical, coder["energy_of"])[None], slice(0, 1))
        out[:, i] = np.where(bin_, value / units[i], 0.0)
        out[escaped, i] = stored
        all_bins.append(k)
        all_escapes.append(stored)
    assert used == len(section.escapes), "every escape used"
    digest = hashlib.blake2b(digest_size=16)
    for k in all_bins:
        digest.update(k.astype("<i8").tobytes())
    for escapes in all_escapes:
        digest.update(escapes.astype("<f8").tobytes())
    assert digest.digest() == section.digest, "the digest of the decoded bins and escapes"
    return out


def side_features(q: np.ndarray, latents: dict, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """An autoencoder's side features (jets x side) of the latents `q` (jets x z integers): what the integer decoder
    makes of them, then the latents."""
    h = fixed(q.T * latents["step"])
    shifts = latents["exact"]
    for j, shift in enumerate(shifts):
        h = integer_layer(arrays, f"latents/exact/{j}", shift, h)
        if j < len(shifts) - 1:
            h = activation(h, latents["activation"])
    return np.column_stack([(h * 2.0**-20).T, q.astype(np.float64)])


def decode_model(data: bytes, description: dict, arrays: dict[str, np.ndarray], units: np.ndarray) -> np.ndarray:
    """A chunk's model section -> its kept jets' values (jets x variables, the file's units)."""
    latent, section = model_parts(data)
    side = None
    if description["latents"] is None:
        assert latent == b""
    else:
        latents = description["latents"]
        q = np.rint(decode_section(coder_section(latent), latents["codec"], arrays, "latents/codec/"))
        assert len(q) == section.n, "the latent and variables' parts of the same jets"
        side = side_features(q, latents, arrays)
    return decode_section(section, description["codecs"][0], arrays, "codec/0/", side, units)


@dataclass
class File:
    version: int
    header: dict
    end: dict
    chunks: list[Chunk]
    description: dict
    arrays: dict[str, np.ndarray]


def read_file(path: Path) -> File:
    """A compressed file read and checked as docs/format.md says, down to its carried compressor's identity."""
    version, records = read_records(path.read_bytes())
    header, end = (json.loads(r.verified()) for r in (records[0], records[-1]))
    assert end["file_id"] == header["file_id"]
    chunks = checked_chunks(records, header, end)
    carried = [r for r in records if r.kind == b"M"]
    assert carried, "these files carry their compressor"
    description, arrays = compressor_record(carried[0].verified())
    assert identity(description, arrays) == header["codec"], "the carried compressor is the one the header names"
    return File(version, header, end, chunks, description, arrays)


# --- the files -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle(tmp_path_factory, qcd_file) -> Path:
    """The bundle of a sweep of the learned coder alone on the four-momentum (seconds: it copies what it fitted)."""
    return coder_bundle(tmp_path_factory.mktemp("format"), f"events: {QCD.events}, generator_seed: {QCD.seed}, varset: fourvec")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, qcd_file) -> tuple[Path, Path]:
    """jets.root (a TTree) and jets.parquet, of the generated jets (see the module's docstring)."""
    folder = tmp_path_factory.mktemp("inputs")
    source = uproot.open(qcd_file)["events"].arrays()
    n, rng = len(source), np.random.default_rng(3)
    jets = {name: source[f"jet_{name}"] for name in ("pt", "eta", "phi", "E", "m", "N90Constituents")}
    counts = ak.num(jets["pt"])
    for name, index, value in (("pt", BROKEN["pt"], -1.5), ("eta", BROKEN["eta"], np.nan), ("E", ZERO_E, 0.0), ("pt", ESCAPED, 1e30)):
        flat = ak.to_numpy(ak.flatten(jets[name])).copy()
        flat[index] = value
        jets[name] = ak.unflatten(flat, counts)
    tracks = rng.integers(0, 4, n)
    branches = {
        "eventNumber": source["eventNumber"],
        "run": np.full(n, 284500, np.int32),
        "weight": rng.normal(1, 0.1, n),
        "passed": rng.random(n) > 0.5,
        "jet": ak.zip(jets),
        "track_pt": ak.unflatten(rng.exponential(2.0, int(tracks.sum())).astype(np.float32), tracks),
    }
    with uproot.recreate(folder / "jets.root") as handle:
        handle.mktree(
            "events",
            {k: v.type.content if isinstance(v, ak.Array) else v.dtype for k, v in branches.items()},
            counter_name=lambda group: {"jet": "njet", "track_pt": "ntrack"}[group],
            field_name=lambda outer, inner: f"{outer}_{inner}",
        )
        handle["events"].extend(branches)
    table = {f"jet_{name}": jets[name] for name in ("pt", "eta", "phi", "E")}
    eta = ak.to_list(ak.flatten(table["jet_eta"]))
    eta[3] = None  # a missing value
    table["jet_eta"] = ak.unflatten(ak.Array(eta), counts)
    null_row = int(np.flatnonzero(ak.to_numpy(counts) == 0)[0]) if np.any(ak.to_numpy(counts) == 0) else 11
    table = {k: ak.mask(v, np.arange(n) != null_row) for k, v in table.items()}  # an entry missing as a whole
    table |= {"run": branches["run"], "label": ak.Array([f"event {i}" for i in range(n)])}
    events = ak.zip(table, depth_limit=1)
    ak.to_parquet(ak.concatenate([events, events]), folder / "jets.parquet")  # twice: two chunks (of 1000 rows at least)
    return folder / "jets.root", folder / "jets.parquet"


@pytest.fixture(scope="module")
def compressed(bundle, inputs, tmp_path_factory) -> tuple[Path, Path]:
    """Each input compressed at 1 % in chunks of ~20 kB of input, carrying its compressor."""
    from hpcsweep.compress import compress_file, load_bundle

    folder = tmp_path_factory.mktemp("compressed")
    out = []
    for source in inputs:
        out.append(folder / f"{source.stem}_{source.suffix[1:]}.hpcz")
        compress_file(source, load_bundle(bundle), BOUND, out[-1], step_size="20 kB", progress=False, embed=True)
    return out[0], out[1]


@pytest.fixture(scope="module")
def predicting_bundles(tmp_path_factory, qcd_file) -> dict[str, Path]:
    """The bundles of a sweep on the generated 24-variable set whose compressors predict variables: the learned coder
    alone, an autoencoder's (z = 2, leaky ReLU) and one with tanh (z = 3) (seconds)."""
    folder = tmp_path_factory.mktemp("predicting")
    (folder / "p.yaml").write_text(
        f"name: p\ndata: {{source: generated, events: {QCD.events}, generator_seed: {QCD.seed}}}\n"
        "model: {hidden: [16], latent: 2}\ntrain: {epochs: 2, batch_size: 256}\ncodec: {steps: 60}\nrank_by: bytes\n"
        "dispatch: {executor: debug}\nevaluation: {signals: [], timing_repeats: 1}\npoints:\n  - {model.kind: codec}\n  - {model.latent: 2}\n"
        "  - {model.latent: 3, model.activation: tanh}\n"
    )
    assert main(["sweep", str(folder / "p.yaml"), "--results", str(folder / "results"), "--no-review"]) == 0
    bundles = {}
    for z, kind in ((0, "codec"), (2, "leaky_relu"), (3, "tanh")):
        bundles[kind] = folder / f"{kind}.h5"
        assert main(["export", "p", "--results", str(folder / "results"), "--z", str(z), "-o", str(bundles[kind])]) == 0
    return bundles


@pytest.fixture(scope="module")
def generated_input(tmp_path_factory, qcd_file) -> Path:
    """The generated jets with their float branches as float64 (so that decompress gives back the decoded float64
    values themselves), one E of 0 (ZERO), one pt of 1e30 and one N90Constituents of 9999 (escapes)."""
    source = uproot.open(qcd_file)["events"].arrays()
    names = [f[len("jet_") :] for f in source.fields if f.startswith("jet_")]
    counts = ak.num(source["jet_pt"])
    jets = {}
    for name in names:
        flat = ak.to_numpy(ak.flatten(source[f"jet_{name}"]))
        flat = flat.astype(np.float64) if flat.dtype.kind == "f" else flat.copy()
        for changed, index, value in (("E", ZERO_E, 0.0), ("pt", ESCAPED, 1e30), ("N90Constituents", DISCRETE_ESCAPE, 9999)):
            if name == changed:
                flat[index] = value
        jets[name] = ak.unflatten(flat, counts)
    path = tmp_path_factory.mktemp("generated_input") / "jets.root"
    branches = {"eventNumber": source["eventNumber"], "jet": ak.zip(jets)}
    with uproot.recreate(path) as handle:
        handle.mktree(
            "events",
            {k: v.type.content if k == "jet" else v.type.content.primitive for k, v in branches.items()},
            counter_name=lambda group: "njet",
            field_name=lambda outer, inner: f"{outer}_{inner}",
        )
        handle["events"].extend(branches)
    return path


@pytest.fixture(scope="module")
def predicted(predicting_bundles, generated_input, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Per bundle: the generated input compressed at 1 % in chunks of ~20 kB of input, carrying its compressor, and
    what `hpcsweep decompress` gives back of it (ROOT)."""
    from hpcsweep.compress import compress_file, load_bundle

    folder = tmp_path_factory.mktemp("predicted")
    out = {}
    for kind, bundle in predicting_bundles.items():
        packed, back = folder / f"{kind}.hpcz", folder / f"{kind}_back.root"
        compress_file(generated_input, load_bundle(bundle), BOUND, packed, step_size="20 kB", progress=False, embed=True)
        assert main(["decompress", str(packed), "-o", str(back)]) == 0
        out[kind] = packed, back
    return out


# --- the tests -------------------------------------------------------------------------------------------------------
def test_every_record_checksum_and_chunk_sequence_checks_out_as_the_page_says(compressed, bundle):
    for path in compressed:
        read = read_file(path)  # every sha256, the chunks' ids, order and totals, the carried compressor's identity
        assert read.version == _version()
        assert len(read.chunks) > 1, "several chunks: the sequence checks have something to check"
        assert bundle_identity(bundle, read.header["bound"]) == read.header["codec"], "the bundle route of the page"


def test_the_header_and_end_record_hold_the_fields_the_page_lists_and_no_other(compressed, inputs):
    header_fields, branch_fields = _tables("## The header record (`H`)")
    (end_fields,) = _tables("## The end record (`E`)")
    model_only = {"variable", "unit_scale"}
    for path, source in zip(compressed, inputs, strict=True):
        read = read_file(path)
        assert set(read.header) == set(header_fields)
        assert set(read.end) == set(end_fields)
        assert {key for branch in read.header["branches"] for key in branch} == set(branch_fields)
        for branch in read.header["branches"]:
            assert set(branch) == set(branch_fields) - (set() if "variable" in branch else model_only), branch["name"]
        assert re.fullmatch(r"[0-9a-f]{32}", read.header["file_id"]) and re.fullmatch(r"sha256:[0-9a-f]{64}", read.header["codec"])
        assert read.header["bound"] == BOUND and read.header["source"] == source.name


def test_every_chunk_holds_the_sections_the_page_lists(compressed):
    documented = next(table for table in _tables("## The chunk record (`C`)") if "kept" in table)
    for path in compressed:
        for chunk in read_file(path).chunks:
            names = {re.sub(r"^missing/.*", "missing/<name>", name) for name in chunk.sections}
            assert names <= set(documented) and {"kept", "whole", "model"} <= names, names


def whole_jets(chunk: Chunk, header: dict, columns: list[str]) -> dict[str, np.ndarray]:
    """The `whole` section: per model branch in column order, the jets stored whole in the branch's own dtype."""
    branches = {b["variable"]: b for b in header["branches"] if "variable" in b}
    n = int((~bits(chunk.sections["kept"], chunk.jets)).sum())
    data, at, out = unzstd(chunk.sections["whole"]), 0, {}
    for name in columns:
        kind = np.dtype(branches[name]["dtype"]).newbyteorder("<")
        out[name] = np.frombuffer(data, kind, count=n, offset=at)
        at += n * kind.itemsize
    assert at == len(data), "the whole section holds those jets and nothing else"
    return out


def test_the_lossless_sections_give_back_the_input_tree(compressed, inputs):
    path, source = compressed[0], inputs[0]
    read = read_file(path)
    tree = uproot.open(source)["events"]
    original = tree.arrays()
    columns = [c["name"] for c in read.description["codecs"][0]["columns"]]
    model = {b["variable"]: b["name"] for b in read.header["branches"] if "variable" in b}
    assert [b["name"] for b in read.header["branches"]] == [k for k in tree.keys(recursive=False) if k not in ("njet", "ntrack")]
    counts = np.concatenate([np.frombuffer(numbers(c.sections["counts"]), "<i8") for c in read.chunks])
    np.testing.assert_array_equal(counts, ak.to_numpy(original["njet"]))
    kept = np.concatenate([bits(c.sections["kept"], c.jets) for c in read.chunks])
    assert np.flatnonzero(~kept).tolist() == sorted(BROKEN.values())
    wholes = [whole_jets(c, read.header, columns) for c in read.chunks]
    for name in columns:
        stored = np.concatenate([w[name] for w in wholes])
        assert stored.tobytes() == ak.to_numpy(ak.flatten(original[model[name]]))[~kept].tobytes(), "the file's own values, NaN included"
    other = ak.concatenate([other_branches(c.sections["other"]) for c in read.chunks])
    carried = [b["name"] for b in read.header["branches"] if "variable" not in b]
    assert other.fields == carried
    for name in carried:
        assert ak.array_equal(other[name], original[name]) and str(other[name].type) == str(original[name].type), name
    assert all(not name.startswith("missing/") for c in read.chunks for name in c.sections), "a TTree misses no value"


def test_a_null_value_and_a_null_row_are_in_the_missing_and_counts_sections(compressed, inputs):
    read = read_file(compressed[1])
    original = ak.from_parquet(inputs[1])
    branches = {b["name"]: b for b in read.header["branches"]}
    assert branches["jet_eta"]["optional"] and branches["jet_eta"]["absent"] and not branches["run"]["jagged"]
    counts = np.concatenate([np.frombuffer(numbers(c.sections["counts"]), "<i8") for c in read.chunks])
    np.testing.assert_array_equal(counts, ak.to_numpy(ak.fill_none(ak.num(original["jet_pt"]), -1)))
    missing = np.concatenate(
        [bits(c.sections["missing/jet_eta"], c.jets) if "missing/jet_eta" in c.sections else np.zeros(c.jets, bool) for c in read.chunks]
    )
    np.testing.assert_array_equal(missing, ak.to_numpy(ak.is_none(ak.flatten(original["jet_eta"]))))
    kept = np.concatenate([bits(c.sections["kept"], c.jets) for c in read.chunks])
    assert not np.any(missing & kept), "a jet missing a value is stored whole"
    columns = [c["name"] for c in read.description["codecs"][0]["columns"]]
    wholes = [whole_jets(c, read.header, columns) for c in read.chunks]
    assert sum(len(w["eta"]) for w in wholes) == (~kept).sum() >= missing.sum()
    other = ak.concatenate([other_branches(c.sections["other"]) for c in read.chunks])
    assert other.fields == ["run", "label"] and other["label"].to_list() == original["label"].to_list()
    assert ak.array_equal(other["run"], original["run"])


def model_values(read: File) -> tuple[np.ndarray, np.ndarray]:
    """Every jet's model variables (jets x variables in the coder's column order, the file's units) as the page says:
    kept jets decoded from the model sections (-0.0 where `negative_zeros` says), the others those of `whole`; and the
    `kept` flags."""
    names = [c["name"] for c in read.description["codecs"][0]["columns"]]
    scale = {b["variable"]: b["unit_scale"] for b in read.header["branches"] if "variable" in b}
    units = np.array([scale[name] for name in names], dtype=np.float64)
    values, flags = [], []
    for chunk in read.chunks:
        kept = bits(chunk.sections["kept"], chunk.jets)
        whole = whole_jets(chunk, read.header, names)
        decoded = decode_model(chunk.sections["model"], read.description, read.arrays, units)
        assert len(decoded) == kept.sum(), "the model section's jets are kept's set flags"
        if "negative_zeros" in chunk.sections:
            decoded[bits(chunk.sections["negative_zeros"], decoded.size).reshape(decoded.shape)] = -0.0
        out = np.empty((chunk.jets, len(names)))
        out[kept] = decoded
        out[~kept] = np.column_stack([whole[name].astype(np.float64) for name in names]) if (~kept).any() else 0.0
        values.append(out)
        flags.append(kept)
    return np.concatenate(values), np.concatenate(flags)


def assert_as_decompress_gives(read: File, values: np.ndarray, back: Path) -> None:
    """Every model branch: the values cast to its dtype (rounded first for integers) are, byte for byte, those of
    what `hpcsweep decompress` wrote."""
    names = [c["name"] for c in read.description["codecs"][0]["columns"]]
    tree = uproot.open(back)[read.header["tree"]].arrays()
    for branch in (b for b in read.header["branches"] if "variable" in b):
        dtype = np.dtype(branch["dtype"])
        mine = values[:, names.index(branch["variable"])]
        mine = np.round(mine).astype(dtype) if dtype.kind in "iub" else mine.astype(dtype)
        theirs = ak.to_numpy(ak.flatten(tree[branch["name"]]))
        assert theirs.dtype == dtype and mine.tobytes() == theirs.tobytes(), branch["name"]


def test_the_model_section_decodes_within_the_bound_from_the_page_alone(compressed, inputs, tmp_path):
    """The bundle's coder of the four-momentum (20 training steps) predicts nothing: every variable is decoded with
    centre 0 and class 0 from the stored counts, and its digest checked; the values lie within the bound of the
    input's, and are what decompress gives."""
    read = read_file(compressed[0])
    coder = read.description["codecs"][0]
    assert read.description["latents"] is None and read.description["bounds"] == [read.header["bound"]]
    values, kept = model_values(read)
    original = uproot.open(inputs[0])["events"].arrays()
    scales = {b["variable"]: (b["name"], b["unit_scale"]) for b in read.header["branches"] if "variable" in b}
    for i, column in enumerate(coder["columns"]):
        name, scale = scales[column["name"]]
        x = ak.to_numpy(ak.flatten(original[name])).astype(np.float64)[kept]
        allowed = BOUND * (np.abs(x) if column["kind"] == "relative" else 1.0 / scale)  # the file's units
        assert np.all(np.abs(values[kept, i] - x) <= allowed), column["name"]
    names = [c["name"] for c in coder["columns"]]
    assert values[ZERO_E, names.index("E")] == 0.0, "E = 0 comes back exactly"
    assert sum(len(model_parts(c.sections["model"])[1].escapes) for c in read.chunks) >= 1, "an escape"
    assert values[ESCAPED, names.index("pt")] == np.float32(1e30), "an escape comes back exactly"
    assert main(["decompress", str(compressed[0]), "-o", str(tmp_path / "back.root")]) == 0
    assert_as_decompress_gives(read, values, tmp_path / "back.root")


@pytest.mark.parametrize("kind", ["codec", "leaky_relu", "tanh"])
def test_predicted_variables_decode_from_the_page_alone_as_decompress_gives_them(predicted, predicting_bundles, kind):
    """A compressor that predicts variables (the learned coder alone, an autoencoder's): the page's arithmetic (fixed
    point, its exp and log, feature rows, integer layers, the AE's integer decoder) gives every centre and class, the
    digest of every chunk's bins and escapes checks out, and the decoded values are, bit for bit (float64 branches),
    those `hpcsweep decompress` gives."""
    packed, back = predicted[kind]
    read = read_file(packed)
    assert bundle_identity(predicting_bundles[kind], BOUND) == read.header["codec"]
    assert len(read.chunks) > 1
    coder, latents = read.description["codecs"][0], read.description["latents"]
    assert any(coder["predicted"]), "variables are predicted: the page's arithmetic decodes them"
    assert coder["energy_of"] is not None and any(coder["predicted"][max(coder["energy_of"]) + 1 :]), "the energy row is used"
    if kind != "codec":
        assert latents is not None and latents["activation"] == kind
        assert coder["side"] == len(latents["kinds"]) + len(latents["codec"]["columns"])
        assert any(latents["codec"]["predicted"]), "a latent predicted from the ones before it"
        assert all(len(model_parts(c.sections["model"])[0]) > 0 for c in read.chunks)
    else:
        assert latents is None and coder["side"] == 0
    values, kept = model_values(read)
    names = [c["name"] for c in coder["columns"]]
    assert kept[[ZERO_E, ESCAPED, DISCRETE_ESCAPE]].all()
    assert values[ZERO_E, names.index("E")] == 0.0
    assert values[ESCAPED, names.index("pt")] == 1e30 and values[DISCRETE_ESCAPE, names.index("N90Constituents")] == 9999
    assert_as_decompress_gives(read, values, back)


def test_the_pages_exp_log_and_tanh_are_exp_log_and_tanh():
    """The page's formulas (as implemented here from its words) are the functions they name, to a few ulp, and give
    what it says at the edges."""
    x = np.concatenate([np.linspace(-740, 705, 20001), np.linspace(-3, 3, 20001), [-1e-300, 0.0, 1e-300]])
    np.testing.assert_array_max_ulp(page_exp(x), np.exp(x), maxulp=4)
    assert np.isnan(page_exp(np.array([np.nan])))[0] and page_exp(np.array([800.0, -800.0, np.inf])).tolist() == [np.inf, 0, np.inf]
    y = np.concatenate([np.geomspace(1e-300, 1e300, 20001), np.linspace(0.5, 2, 20001)])
    np.testing.assert_array_max_ulp(page_log(y), np.log(y), maxulp=4)
    edges = page_log(np.array([0.0, np.inf, -1.0, np.nan]))
    assert edges[:2].tolist() == [-np.inf, np.inf] and np.isnan(edges[2:]).all()
    z = np.linspace(-30, 30, 20001)
    assert np.max(np.abs(page_tanh(z) - np.tanh(z))) < 1e-15 and page_tanh(np.array([1e6, -1e6])).tolist() == [1.0, -1.0]
    assert fixed(np.array([np.nan, 1e9, -np.inf, 0.5 * 2.0**-20, 1.5 * 2.0**-20])).tolist() == [0, 2.0**32, -(2.0**32), 0, 2]
    assert round_shift(np.array([5.0, -5.0, 6.0, -6.0]), 1).tolist() == [3, -2, 3, -3] and round_shift(np.array([3.0]), -2)[0] == 12


def test_a_flipped_byte_fails_the_readers_check_and_hpcsweeps(compressed, tmp_path, capsys):
    data = bytearray(compressed[0].read_bytes())
    _, records = read_records(bytes(data))
    data[records[2].at + FRAME.size + 100] ^= 0x01  # inside the second chunk's payload
    damaged = tmp_path / "damaged.hpcz"
    damaged.write_bytes(bytes(data))
    with pytest.raises(AssertionError, match="sha256"):
        read_file(damaged)
    assert main(["decompress", str(damaged), "-o", str(tmp_path / "back.root")]) == 2
    assert "damaged (checksum mismatch in the record at byte" in capsys.readouterr().err

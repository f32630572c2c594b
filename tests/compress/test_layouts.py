"""Every awkward layout a user's file may have, compressed and given back: seeded random layouts, each value checked.

Each seed draws a file shaped like a user's (a ROOT TTree or RNTuple, or Parquet; energies in MeV as ATLAS writes
them, read by a variable set whose unit_scale is 0.001): flat jets, jagged ones (empty entries included) or fixed-size
arrays of them; float32, float64 and (unsigned) integer branches; nullable leaves (`?float64`) and nullable lists
(`option[var * ...]`, Parquet's null rows); in one chunk or several (a last chunk with no jet); at 1 % or 0.1 %; and
values a model never saw: NaN (payloads, signalling and negative ones included), +-inf, negative values of positive
variables, exact zeros (+-0.0), denormals, huge values (the largest float32), integers beyond 2**53, discrete values
never seen, angles off every grid. Beside them, branches outside the model: a per-jet label, a jagged track list and
a float64 weight with special values, an event number, a flag, a float[3], and in Parquet nullable columns, strings
and records. Compressed with a bundle of the learned coder alone and decompressed, the file must come back with the
same tree (names, types, jaggedness, where values are missing), every value stored losslessly bit for bit (every
branch outside the model; every value of a jet the model does not apply to or cannot code; zeros; discrete values),
and every other model value within the bound as the docs write it: relative for scale variables, absolute for angles
and signed ones (docs/compression.md, "The bound"). `hpcsweep.open` reads the compressed file as decompress writes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

import hpcsweep
from hpcsweep.cli import main
from hpcsweep.compress import apply
from hpcsweep.compress.bundle import load_bundle
from hpcsweep.compress.container import read_compressed
from hpcsweep.compress.parts import _unzstd
from hpcsweep.data import load_varset
from hpcsweep.data.varset import VarSet
from tests.helpers import coder_bundle

BOUNDS = (0.01, 0.001)  # the bundle's; a layout draws one
SEEDS = range(18)
JETS = 40  # at least, per layout: 16 ordinary, 13 probes, the rest drawn

#: A user's jets in MeV (m, pt, sumet) with an angle, a signed variable cut at the tracker's edge, a multiplicity, and
#: a scale variable not declared positive (its negative values are escapes of the coder, not jets stored whole).
VARSET = """\
name: layouts
description: a user's jets, energies in MeV
prefixes: ["jet_"]
four_momentum: {pt: pt, eta: eta, phi: phi, mass: m}
variables:
  - {name: m, unit: GeV, unit_scale: 0.001, positive: true, transform: {kind: log10, offset: 1, scale: 1.8}}
  - {name: pt, unit: GeV, unit_scale: 0.001, positive: true, transform: {kind: log10, shift: 1.3, scale: 1.2}}
  - {name: eta, transform: {scale: 5}}
  - {name: phi, unit: rad, residual: phi, transform: {scale: 3}}
  - {name: ntrk, discrete: true, positive: true, transform: {scale: 20}}
  - {name: sumet, unit: GeV, unit_scale: 0.001, residual: relative, transform: {scale: 100}}
cuts:
  - {name: "tracker |eta| < 2.5", keep: "abs(eta) < 2.5"}
"""
FLOATS = ("m", "pt", "eta", "phi", "sumet")
#: A negative sumet whose escape, stored in GeV, does not come back to these MeV through / 0.001 (x * 0.001 / 0.001 != x).
UNIT_ESCAPE = -65071.76164585


def _jets(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Ordinary jets, as the training file holds them (MeV)."""
    pt = 30000 * (1 + rng.exponential(1.0, n))
    return {
        "m": np.exp(rng.normal(np.log(15000), 0.6, n)),
        "pt": pt,
        "eta": rng.uniform(-2.4, 2.4, n),
        "phi": rng.uniform(-np.pi, np.pi, n),
        "ntrk": (rng.poisson(8, n) + 1).astype(np.int64),
        "sumet": pt * rng.uniform(1, 1.5, n),
    }


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The bundle of a one-trial sweep of the learned coder alone on a user's flat Parquet file in MeV (seconds)."""
    folder = tmp_path_factory.mktemp("layouts")
    (folder / "layouts.yaml").write_text(VARSET)
    ak.to_parquet(ak.zip({f"jet_{k}": v for k, v in _jets(np.random.default_rng(0), 3000).items()}), folder / "train.parquet")
    return coder_bundle(folder, f"source: {folder / 'train.parquet'}, varset: layouts.yaml", f"steps: 60, bounds: {list(BOUNDS)}")


# --- drawing a layout ------------------------------------------------------------------------------------------------
def _bits(dtype: type, pattern: int) -> float:
    """The float of `dtype` with these bits (a NaN's payload, a signalling NaN)."""
    kind = np.dtype(dtype)
    return np.array([pattern], dtype=f"u{kind.itemsize}").view(kind)[0]


def _specials(dtype: type) -> list[float]:
    """Values no model was trained on, in a branch of `dtype`."""
    info = np.finfo(dtype)
    payload, signalling = (0x7FF8_0000_0000_0123, 0x7FF0_0000_0000_0001) if dtype is np.float64 else (0x7FC0_0123, 0x7F80_0001)
    negative_nan = 0xFFF8_0000_0000_0000 if dtype is np.float64 else 0xFFC0_0000
    return [
        np.nan,
        _bits(dtype, payload),
        _bits(dtype, signalling),
        _bits(dtype, negative_nan),
        np.inf,
        -np.inf,
        0.0,
        -0.0,
        float(info.smallest_subnormal),
        float(info.smallest_subnormal) * 1000,  # denormals
        float(info.tiny),
        float(info.max),
        float(info.max) / 3,  # huge
        1e-30,
    ]


@dataclass
class Layout:
    """One drawn file: its kind, how jets are laid out, the bound, the chunks it is compressed in (None: one) and its
    branches as written."""

    seed: int
    kind: str  # "root" (a TTree), "rntuple" or "parquet"
    jets: str  # "flat" (one an entry), "jagged" (lists) or "fixed" (arrays of three)
    bound: float
    step: int | str | None
    branches: dict[str, ak.Array]


def _draw(seed: int) -> Layout:
    """A random file of `seed`: every kind and jet layout come up every few seeds; the rest is drawn. The first jets
    are ordinary, so that the first chunk passes the check against the training jets."""
    rng = np.random.default_rng(seed)
    kind, layout = ("root", "parquet", "rntuple")[seed % 3], ("flat", "jagged", "fixed", "jagged")[(seed // 3) % 4]
    bound, jagged = BOUNDS[int(rng.integers(len(BOUNDS)))], layout == "jagged"
    big = kind == "parquet" and seed % 2 == 0  # Parquet is read 1000 rows or more at a time: two chunks
    if layout == "fixed":  # three jets an entry (a TTree's float[3])
        counts = np.full(rng.integers(JETS // 3, JETS // 3 + 5), 3)
    elif jagged:
        counts = rng.integers(0, 6, 1100 if big else rng.integers(8, 16))
        while counts.sum() < JETS:
            counts[rng.integers(len(counts))] += 1
        counts = np.insert(counts, rng.integers(1, len(counts), 3), 0)  # empty entries
    else:
        counts = np.ones(1100 if big else rng.integers(JETS, JETS + 12), np.int64)
    n = int(counts.sum())
    jets = _jets(rng, n)
    order = 16 + rng.permutation(n - 16)
    clean, probes, special = np.arange(16), order[:13], order[13:]
    step = "1 kB" if big else int(np.searchsorted(np.cumsum(counts), 16) + 1) if kind != "parquet" and rng.random() < 0.5 else None
    if isinstance(step, int) and jagged:
        counts = np.concatenate([counts, np.zeros(step + (-len(counts)) % step, np.int64)])  # a last chunk with no jet
    dtypes = {name: rng.choice([np.float32, np.float64]) for name in FLOATS}
    columns: dict[str, np.ndarray] = {name: jets[name].astype(dtypes[name]) for name in FLOATS}
    for name in FLOATS:
        values = _specials(dtypes[name])
        for jet in rng.choice(special, rng.integers(0, 4), replace=False):
            columns[name][jet] = values[rng.integers(len(values))]
    columns["ntrk"] = jets["ntrk"].astype(rng.choice([np.int16, np.uint16, np.int32, np.int64, np.float32]))
    if columns["ntrk"].dtype == np.float32:  # a float multiplicity takes the specials too
        for jet in rng.choice(special, rng.integers(0, 4), replace=False):
            columns["ntrk"][jet] = _specials(np.float32)[rng.integers(len(_specials(np.float32)))]
    probe = iter(probes)  # one jet each, otherwise ordinary: each probe meets the rule alone
    columns["m"][next(probe)] = -abs(columns["m"][clean[0]])  # a negative mass (stored whole), and a -0.0 mass
    columns["m"][next(probe)] = -0.0
    columns["eta"][next(probe)] = rng.choice([2.5, -3.1, 1e30])  # outside the cut (stored whole)
    columns["eta"][next(probe)] = -0.0
    columns["sumet"][next(probe)] = UNIT_ESCAPE  # a negative scale value not declared positive (an escape)
    columns["phi"][next(probe)] = 1e30  # off every grid (an escape)
    for fraction in 1 - bound * np.arange(4) / 4:  # near the largest of its type: float32's are coded, never inf
        columns["pt"][next(probe)] = np.finfo(dtypes["pt"]).max * fraction
    columns["ntrk"][next(probe)] = 999  # never seen in training (an escape)
    columns["ntrk"][next(probe)] = {"i": -1, "u": 0, "f": 2.5}[columns["ntrk"].dtype.kind]  # stored whole, or escapes
    if columns["ntrk"].dtype == np.int64:
        columns["ntrk"][next(probe)] = 2**53 + 1  # which float64 cannot hold
    model = {name: ak.Array(values) for name, values in columns.items()}
    model["label"] = ak.Array(rng.integers(-5, 22, n).astype(np.int32))  # a per-jet branch outside the model
    nulls, lists = np.zeros(len(counts), bool), "plain"
    if kind == "parquet":
        for name in rng.choice([*FLOATS, "ntrk"], rng.integers(0, 3), replace=False):  # nullable leaves, maybe no null
            missing = np.zeros(n, bool)
            missing[rng.choice(special, rng.integers(0, 3), replace=False)] = True
            model[name] = ak.mask(model[name], ~missing)
        lists = "plain" if layout == "flat" else "nullable" if seed % 9 == 1 else "null rows"
        if lists == "null rows":  # entries without a list (no jets; a fixed-size one hides its three)
            empty = np.flatnonzero(counts == 0) if jagged else np.arange(8, len(counts))
            nulls[rng.choice(empty, rng.integers(1, min(len(empty), 4) + 1), replace=False)] = True
    branches = {f"jet_{name}": ak.unflatten(values, counts) if layout != "flat" else values for name, values in model.items()}
    if layout == "fixed":
        branches = {name: ak.to_regular(values, axis=1) for name, values in branches.items()}
    if kind == "parquet" and lists != "plain":  # option[var * ...], with null rows or none
        branches = {name: ak.mask(values, ~nulls) for name, values in branches.items()}
    branches |= _others(rng, kind, len(counts))
    return Layout(seed, kind, layout, bound, step, branches)


def _others(rng: np.random.Generator, kind: str, entries: int) -> dict[str, ak.Array]:
    """Branches outside the model: an event number, a float64 weight and a jagged float32 track list with special
    values, a flag, a small integer, a fixed-size array; in Parquet a nullable float, a nullable list, strings and
    records too."""
    weight = rng.normal(1, 0.1, entries)
    weight[rng.integers(entries)] = _specials(np.float64)[rng.integers(len(_specials(np.float64)))]
    tracks = rng.exponential(2000, int(rng.integers(0, 6, entries).sum() + 3)).astype(np.float32)
    specials = _specials(np.float32)
    for track in rng.choice(len(tracks), 3, replace=False):  # one at a time: an array of them would be float64, quiet NaNs
        tracks[track] = specials[rng.integers(len(specials))]
    track_counts = np.zeros(entries, np.int64)
    np.add.at(track_counts, rng.integers(0, entries, len(tracks)), 1)
    others = {
        "eventNumber": ak.Array(rng.integers(-(2**62), 2**62, entries, dtype=np.int64)),
        "weight": ak.Array(weight),
        "track_pt": ak.unflatten(tracks, track_counts),
        "flag": ak.Array(rng.random(entries) < 0.5),
        "bunch": ak.Array(rng.integers(0, 3564, entries).astype(np.int16)),
        "beamspot": ak.to_regular(ak.Array(rng.normal(0, 0.01, (entries, 3)).astype(np.float32)), axis=1),  # float[3]
    }
    if kind == "parquet":
        others["stream"] = ak.Array(rng.choice(["physics_Main", "express", ""], entries).tolist())
        others["vertex"] = ak.zip({"z": rng.normal(0, 40, entries), "ntrk": rng.integers(0, 80, entries).astype(np.int32)})
        pileup = rng.normal(40, 5, entries).astype(np.float32)
        others["pileup"] = ak.mask(ak.Array(pileup), rng.random(entries) < 0.8)
        d0 = ak.unflatten(rng.normal(0, 0.05, 2 * entries), np.full(entries, 2))
        others["track_d0"] = ak.mask(d0, rng.random(entries) < 0.7)
    return others


def _write(layout: Layout, path: Path) -> Path:
    """The layout as a user's file: a TTree (jet branches grouped under one counter `njet`), an RNTuple (uproot's
    default) or a Parquet table."""
    if layout.kind == "parquet":
        ak.to_parquet(ak.zip(layout.branches, depth_limit=1), path)
        return path
    if layout.kind == "rntuple":
        with uproot.recreate(path) as handle:
            handle["events"] = layout.branches
        return path
    jets = {k.removeprefix("jet_"): v for k, v in layout.branches.items() if k.startswith("jet_")}
    rest = {k: v for k, v in layout.branches.items() if not k.startswith("jet_")}
    grouped = ({"jet": ak.zip(jets)} if layout.jets == "jagged" else {f"jet_{k}": v for k, v in jets.items()}) | rest
    with uproot.recreate(path) as handle:
        handle.mktree("events", {name: values.type.content for name, values in grouped.items()})
        handle["events"].extend(grouped)
    return path


def test_the_seeds_draw_every_layout():
    """The seeds cover what the checks are about: each kind of file flat and jagged, chunked files, Parquet's null
    rows, nullable lists without one and null values, both bounds, integer and float multiplicities."""
    layouts = [_draw(seed) for seed in SEEDS]
    kinds = ("root", "rntuple", "parquet")
    assert {(layout.kind, layout.jets) for layout in layouts} == {(k, j) for k in kinds for j in ("flat", "jagged", "fixed")}
    assert {layout.kind for layout in layouts if layout.step is not None} == {"root", "rntuple", "parquet"}
    assert {layout.bound for layout in layouts} == set(BOUNDS)
    types = [str(branch.type.content) for layout in layouts for branch in layout.branches.values()]
    assert any("?" in t for t in types if "var" not in t) and any("var * ?" in t for t in types), "null values, flat and jagged"
    lists = [layout.branches["jet_m"] for layout in layouts if layout.kind == "parquet" and layout.jets != "flat"]
    assert any("var" in str(m.type) and ak.any(ak.is_none(m)) for m in lists), "null rows"
    assert any("3 *" in str(m.type) and ak.any(ak.is_none(m)) for m in lists), "null rows of fixed-size arrays"
    assert any(str(m.type.content).startswith("option[") and not ak.any(ak.is_none(m)) for m in lists), "lists that may be null, not"
    ntrk = {str(layout.branches["jet_ntrk"].type.content).split()[-1] for layout in layouts}
    assert {"int16", "uint16", "int64", "float32"} <= ntrk


# --- the round trip and its checks -----------------------------------------------------------------------------------
@dataclass
class Trip:
    """A layout written, compressed and decompressed to a file of its kind; both files as read back."""

    layout: Layout
    source: Path
    packed: Path
    output: Path
    original: ak.Array
    back: ak.Array
    read: ak.Array  # the compressed file read as arrays (`hpcsweep.open`), nothing written


def _read(path: Path) -> ak.Array:
    return ak.from_parquet(path) if path.suffix == ".parquet" else uproot.open(path)["events"].arrays()


@pytest.fixture(scope="module")
def round_trip(bundle, tmp_path_factory) -> Callable[[int], Trip]:
    """The round trip of a seed's layout, made once (the checks of a seed, and the one over all seeds, share it)."""
    done: dict[int, Trip] = {}

    def run(seed: int) -> Trip:
        if seed not in done:
            layout = _draw(seed)
            folder = tmp_path_factory.mktemp(f"seed{seed}")
            suffix = ".parquet" if layout.kind == "parquet" else ".root"
            source = _write(layout, folder / f"jets{suffix}")
            packed, output = folder / "jets.hpcz", folder / f"back{suffix}"
            if layout.step is None:  # the command, one chunk
                bound = f"{100 * layout.bound:g}%"
                assert main(["compress", str(source), "--model", str(bundle), "--max-error", bound, "-o", str(packed)]) == 0
                assert main(["decompress", str(packed), "--model", str(bundle), "-o", str(output)]) == 0
            else:
                loaded = load_bundle(bundle)
                apply.compress_file(source, loaded, layout.bound, packed, step_size=layout.step, progress=False)
                chunks = list(read_compressed(packed)[1])
                assert len(chunks) > 1 and (layout.kind == "parquet" or layout.jets != "jagged" or chunks[-1].jets == 0), "chunks"
                apply.decompress_file(packed, loaded, output, progress=False)
            read = hpcsweep.open(packed, model=bundle).arrays()
            done[seed] = Trip(layout, source, packed, output, _read(source), _read(output), read)
        return done[seed]

    return run


def _leaves(array: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """A branch's values per jet (null rows hold none) in its own type, and where a value is missing."""
    values = ak.to_numpy(ak.flatten(array) if array.ndim > 1 else array)
    return np.ma.getdata(values), np.ma.getmaskarray(values)


def _values(array: ak.Array) -> np.ndarray:
    """Every value a branch holds, in its own type (missing ones left out)."""
    return np.ma.getdata(ak.to_numpy(ak.flatten(array, axis=None)))


def _assert_same_bits(a: ak.Array, b: ak.Array, name: str) -> None:
    """Every value of `b` has the bits of `a`'s: numbers compared bit for bit, records field by field, strings."""
    if a.fields:
        assert b.fields == a.fields, name
        for field in a.fields:
            _assert_same_bits(a[field], b[field], f"{name}.{field}")
    elif "string" in str(a.type):
        assert ak.to_list(b) == ak.to_list(a), name
    else:
        x, y = _values(a), _values(b)
        same = _same_bits(x, y)
        assert np.all(same), f"{name}: not bit for bit: {_hex(x[~same])} -> {_hex(y[~same])}"


def _hex(values: np.ndarray) -> list[str]:
    """Each value with its bits, for messages (NaN payloads differ only there)."""
    width = values.dtype.itemsize
    return [f"{v!r}=0x{bytes(reversed(v.tobytes())).hex()}" if width > 1 else repr(v) for v in values][:5]


def _same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether each value of `b` has the bits of `a`'s (same type)."""
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    width = a.dtype.itemsize
    return np.all(
        np.ascontiguousarray(a).view(np.uint8).reshape(-1, width) == np.ascontiguousarray(b).view(np.uint8).reshape(-1, width), axis=1
    )


@dataclass
class Jets:
    """The model's values of a file, per variable, as the file holds them (`raw`) and decoded (`back`); where values
    are missing; which jets the model applies to (coded: the others are stored whole); and per variable the values
    the coder escapes (stored as they are, in the set's units)."""

    raw: dict[str, np.ndarray]
    back: dict[str, np.ndarray]
    missing: dict[str, np.ndarray]
    coded: np.ndarray
    escaped: dict[str, np.ndarray]


def _jets_of(trip: Trip, varset: VarSet) -> Jets:
    raw, back, missing, physical = {}, {}, {}, {}
    for variable in varset.variables:
        raw[variable.name], missing[variable.name] = _leaves(trip.original[f"jet_{variable.name}"])
        back[variable.name], lost = _leaves(trip.back[f"jet_{variable.name}"])
        np.testing.assert_array_equal(lost, missing[variable.name], err_msg=f"{variable.name}: missing values moved")
        with np.errstate(over="ignore", invalid="ignore"):
            physical[variable.name] = np.where(missing[variable.name], np.nan, raw[variable.name].astype(np.float64) * variable.unit_scale)
    uncodable = [_uncodable(raw[name]) | _uncodable(physical[name]) for name in varset.names]
    coded = np.asarray(varset.selected(physical)) & ~np.any(uncodable, axis=0)
    seen = np.unique(_jets(np.random.default_rng(0), 3000)["ntrk"])  # the training file's multiplicities
    escaped = {}
    for variable in varset.variables:
        x = physical[variable.name]
        if variable.discrete:
            off = ~np.isin(x, seen)
        elif variable.residual == "relative":
            off = x < 0
        else:
            off = np.abs(x) > 1e12  # beyond the grid's largest bin (2**40 steps)
        escaped[variable.name] = coded & off
    return Jets(raw, back, missing, coded, escaped)


def _uncodable(values: np.ndarray) -> np.ndarray:
    """Denormals, and integers float64 cannot hold: stored whole (docs/compression.md, "The bound")."""
    if values.dtype.kind in "iu":
        return (values > 2**53) | (values < -(2**53))  # in integers: 2**53 + 1 is 2**53 as a float
    if values.dtype.kind != "f":
        return np.zeros(len(values), bool)
    with np.errstate(invalid="ignore"):
        return (np.abs(values) < np.finfo(values.dtype).tiny) & (values != 0)


def _varset(bundle: Path) -> VarSet:
    """The bundle's variable set, as its sweep read it."""
    return load_varset(bundle.with_name("layouts.yaml"))


@pytest.mark.parametrize("seed", SEEDS)
def test_the_tree_comes_back_with_its_branches_types_jaggedness_and_nulls(round_trip, seed):
    """The same branches in the same order (an RNTuple comes back as a TTree: its jagged fields gain counters), the
    same types, entries per list and missing values; a TTree's branches have the same ROOT types and counters."""
    trip = round_trip(seed)
    if trip.layout.kind == "rntuple":
        output = uproot.open(trip.output)["events"]
        added = [b.count_branch.name for b in output.itervalues() if b.count_branch is not None]
        assert [field for field in trip.back.fields if field not in added] == trip.original.fields
    else:
        assert trip.back.fields == trip.original.fields
    if trip.layout.kind == "root":
        source, output = uproot.open(trip.source)["events"], uproot.open(trip.output)["events"]
        assert output.keys() == source.keys()
        assert [output[k].typename for k in output.keys()] == [source[k].typename for k in source.keys()]  # noqa: SIM118
        counters = [(b.count_branch.name if b.count_branch is not None else None) for b in source.itervalues()]
        assert [(b.count_branch.name if b.count_branch is not None else None) for b in output.itervalues()] == counters
    for field in trip.original.fields:
        a, b = trip.original[field], trip.back[field]
        assert str(b.type) == str(a.type), f"{field}: {a.type} came back as {b.type}"
        for axis in range(a.ndim):
            assert ak.to_list(ak.is_none(b, axis=axis)) == ak.to_list(ak.is_none(a, axis=axis)), f"{field}: nulls at axis {axis}"
        if a.ndim > 1:
            assert ak.to_list(ak.num(b)) == ak.to_list(ak.num(a)), f"{field}: jaggedness"


@pytest.mark.parametrize("seed", SEEDS)
def test_every_value_stored_losslessly_comes_back_bit_for_bit(round_trip, bundle, seed):
    """Branches outside the model; every value of a jet the model does not apply to; zeros and discrete values of the
    jets it codes."""
    trip = round_trip(seed)
    varset = _varset(bundle)
    model = {f"jet_{name}" for name in varset.names}
    for field in trip.original.fields:
        if field in model:
            continue
        _assert_same_bits(trip.original[field], trip.back[field], field)
    jets = _jets_of(trip, varset)
    coded = np.concatenate(
        [np.unpackbits(np.frombuffer(_unzstd(c.sections["kept"]), np.uint8), count=c.jets) for c in read_compressed(trip.packed)[1]]
    )
    np.testing.assert_array_equal(coded.astype(bool), jets.coded, err_msg="the jets coded are those the docs' rule codes")
    for variable in varset.variables:
        name, raw, back = variable.name, jets.raw[variable.name], jets.back[variable.name]
        present = ~jets.missing[name]
        same = _same_bits(raw, back)
        whole = ~jets.coded & present
        assert np.all(same[whole]), f"{name}: jets stored whole differ: {_hex(raw[whole & ~same])} -> {_hex(back[whole & ~same])}"
        exact = jets.coded if variable.discrete else jets.coded & (raw == 0)
        assert np.all(same[exact]), f"{name}: exact values differ: {_hex(raw[exact & ~same])} -> {_hex(back[exact & ~same])}"


@pytest.mark.parametrize("seed", SEEDS)
def test_every_coded_value_lies_within_the_bound(round_trip, bundle, seed):
    trip = round_trip(seed)
    varset = _varset(bundle)
    jets = _jets_of(trip, varset)
    for variable in varset.variables:
        if variable.discrete:
            continue
        name = variable.name
        x, y = jets.raw[name].astype(np.float64)[jets.coded], jets.back[name].astype(np.float64)[jets.coded]
        with np.errstate(invalid="ignore", over="ignore"):
            error = np.abs(y - x)
        bound = trip.layout.bound
        allowed = bound * np.abs(x) if variable.residual == "relative" else np.full_like(x, bound / variable.unit_scale)
        bad = ~(error <= allowed)
        assert not bad.any(), f"{name}: {int(bad.sum())} values outside the bound: {_hex(x[bad])} -> {_hex(y[bad])}"


@pytest.mark.parametrize("seed", SEEDS)
def test_the_compressed_file_reads_as_what_decompress_writes(round_trip, seed):
    """`hpcsweep.open(...).arrays()`: the branches decompress writes (its counters aside), the same nulls, jaggedness
    and bits."""
    trip = round_trip(seed)
    counters = [field for field in trip.back.fields if field not in trip.read.fields]
    assert trip.read.fields == [field for field in trip.back.fields if field not in counters]
    assert trip.layout.kind == "parquet" and not counters or all(c.startswith("n") for c in counters)
    for field in trip.read.fields:
        a, b = trip.back[field], trip.read[field]
        for axis in range(a.ndim):
            assert ak.to_list(ak.is_none(b, axis=axis)) == ak.to_list(ak.is_none(a, axis=axis)), f"{field}: nulls at axis {axis}"
        if a.ndim > 1:
            assert ak.to_list(ak.num(b)) == ak.to_list(ak.num(a)), f"{field}: jaggedness"
        _assert_same_bits(a, b, field)


def test_a_file_of_one_jet_compresses_and_comes_back(bundle, tmp_path):
    """Too few jets to judge a spread by (data.profile.SPREAD_FROM): one ordinary jet is not 'constant where the training
    jets vary', and it comes back."""
    source = tmp_path / "one.parquet"
    jets = _jets(np.random.default_rng(1), 1)
    ak.to_parquet(ak.zip({f"jet_{k}": v for k, v in jets.items()}), source)
    assert main(["compress", str(source), "--model", str(bundle), "-o", str(tmp_path / "one.hpcz")]) == 0
    assert main(["decompress", str(tmp_path / "one.hpcz"), "--model", str(bundle), "-o", str(tmp_path / "back.parquet")]) == 0
    back = ak.from_parquet(tmp_path / "back.parquet")
    assert len(back) == 1 and sorted(back.fields) == sorted(f"jet_{k}" for k in jets)


def test_the_coders_escapes_come_back_bit_for_bit_through_unit_scale(round_trip, bundle):
    """A value the coder escapes (a negative scale value not declared positive, an angle off every grid, a
    multiplicity never seen) is a lossless value: it comes back with the file's own bits, whatever its unit_scale."""
    assert (UNIT_ESCAPE * 0.001) / 0.001 != UNIT_ESCAPE, "the value every layout holds is one that / unit_scale changes"
    varset = _varset(bundle)
    differ = []
    for seed in SEEDS:
        jets = _jets_of(round_trip(seed), varset)
        for name, escaped in jets.escaped.items():
            same = _same_bits(jets.raw[name], jets.back[name])
            differ += [(seed, name, x, y) for x, y in zip(jets.raw[name][escaped & ~same], jets.back[name][escaped & ~same], strict=True)]
    assert not differ, differ

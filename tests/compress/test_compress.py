"""The learned error-bounded compressor: export a sweep's trial, compress a file of one's own, give it back.

Every decompressed value of a model variable must lie within the bound (relatively for scale variables,
absolutely for angles and signed ones), discrete values and every other branch must come back identical,
and the tree's names, types and jaggedness must be kept. Bad input is one line and exit 2, nothing written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import pytest
import uproot

from hpcsweep.cli import main
from hpcsweep.codec import Settings, codec_kinds, columns_for, energy_of, fit_codec, fit_independent
from hpcsweep.compress.bundle import load_bundle
from hpcsweep.compress.container import OLDEST, VERSION
from hpcsweep.data import load_jets, load_varset
from hpcsweep.store import read_trial, scan
from hpcsweep.trial import split_indices
from tests.helpers import ATLAS4, QCD, write_flat


def _export(tmp_path_factory, sweep_text: str, folder: Path) -> Path:
    """The bundle of the sweep's trial at z = 4, as the trial fitted and measured its compressor (its results folder
    beside it as results.txt)."""
    sweep = folder / "sweep.yaml"
    sweep.write_text(sweep_text)
    results = tmp_path_factory.mktemp("results")
    assert main(["sweep", str(sweep), "--results", str(results), "--no-review"]) == 0
    bundle = folder / "model.h5"
    assert main(["export", "s", "--results", str(results), "--z", "4", "-o", str(bundle)]) == 0
    (folder / "results.txt").write_text(str(results / "s"))
    return bundle


@pytest.fixture(scope="module")
def onnx_bundles(generated_bundle, own_bundle, tmp_path_factory) -> tuple[Path, Path]:
    """The two bundles exported again from their trials with `--onnx`, into a folder of their own (torch.onnx takes
    seconds per bundle: only the tests of the ONNX graphs pay for them)."""
    folder = tmp_path_factory.mktemp("onnx")
    exported = []
    for name, bundle in (("generated", generated_bundle), ("own", own_bundle)):
        results = Path(bundle.with_name("results.txt").read_text())
        exported.append(folder / name / "model.h5")
        exported[-1].parent.mkdir()
        assert main(["export", "s", "--results", str(results.parent), "--z", "4", "-o", str(exported[-1]), "--onnx"]) == 0
    return exported[0], exported[1]


@pytest.fixture(scope="module")
def generated_bundle(tmp_path_factory, qcd_file) -> Path:
    """The bundle of a one-trial sweep on the session's generated jets (24 variables, jagged per event)."""
    folder = tmp_path_factory.mktemp("gen")
    text = (
        f"name: s\ndata: {{source: generated, events: {QCD.events}, generator_seed: {QCD.seed}}}\n"
        "model: {hidden: [32, 32], latent: 4}\ntrain: {epochs: 5, batch_size: 256, rate_lambda: 1.0e-3}\n"
        "codec: {bounds: [0.01, 0.001], steps: 150}\n"
        "dispatch: {executor: debug}\nevaluation: {timing_repeats: 1, signals: []}\n"
    )
    return _export(tmp_path_factory, text, folder)


@pytest.fixture(scope="module")
def own(tmp_path_factory, qcd_file) -> Path:
    """A user's folder: flat jets (m, pt, eta, phi in MeV as float32; massless and slightly negative masses) with
    branches of their own (a run number, a float64 weight, a jagged list of track pts), and their variable set."""
    folder = tmp_path_factory.mktemp("own")
    table = load_jets(qcd_file, load_varset("generated"))
    n = len(table)
    rng = np.random.default_rng(1)
    columns = {
        "run": np.full(n, 284500, dtype=np.int32),
        "m": table.columns["m"].astype(np.float32) * 1000,
        "pt": table.columns["pt"].astype(np.float32) * 1000,
        "eta": table.columns["eta"].astype(np.float32),
        "phi": table.columns["phi"].astype(np.float32),
        "weight": rng.normal(1, 0.1, n),
    }
    columns["m"][[10, 20, 30]] = 0.0
    columns["m"][[40, 50]] = -0.5
    counts = rng.integers(0, 5, n)
    tracks = ak.unflatten(rng.exponential(2000, int(counts.sum())).astype(np.float32), counts)
    (folder / "atlas4.yaml").write_text(ATLAS4)
    with uproot.recreate(folder / "jets.root") as handle:
        handle.mktree("jets", {**{k: v.dtype for k, v in columns.items()}, "track_pt": tracks.type.content}).extend(
            columns | {"track_pt": tracks}
        )
    write_flat(folder / "jets_rntuple.root", {k: v for k, v in columns.items()}, "rntuple")
    pd.DataFrame(columns).to_parquet(folder / "jets.parquet")
    return folder


@pytest.fixture(scope="module")
def own_bundle(tmp_path_factory, own) -> Path:
    text = (
        f"name: s\ndata: {{source: {own / 'jets.parquet'}, varset: atlas4.yaml}}\n"
        "model: {hidden: [32, 32], latent: 4}\ntrain: {epochs: 5, batch_size: 128}\ncodec: {steps: 150}\n"
        "dispatch: {executor: debug}\nevaluation: {timing_repeats: 1}\n"
    )
    return _export(tmp_path_factory, text, own)


def _round_trip(source: Path, bundle: Path, folder: Path, suffix: str, bound: str = "1%") -> Path:
    packed, back = folder / f"{source.stem}.hpcz", folder / f"{source.stem}_back{suffix}"
    assert main(["compress", str(source), "--model", str(bundle), "--max-error", bound, "-o", str(packed)]) == 0
    assert main(["decompress", str(packed), "--model", str(bundle), "-o", str(back)]) == 0
    return back


def _arrays(path: Path, tree: str) -> ak.Array:
    return ak.from_parquet(path) if path.suffix == ".parquet" else uproot.open(path)[tree].arrays()


def _assert_within(original: np.ndarray, decoded: np.ndarray, kind: str, bound: float, name: str) -> None:
    """Every value within the bound: exactly kept where it is zero, negative or not finite (escapes)."""
    original, decoded = original.astype(np.float64), decoded.astype(np.float64)
    special = ~np.isfinite(original) | (original <= 0) if kind == "relative" else ~np.isfinite(original)
    np.testing.assert_array_equal(decoded[special], original[special], err_msg=name)
    error = np.abs(decoded - original)[~special]
    allowed = (bound * np.abs(original) if kind == "relative" else np.full_like(original, bound))[~special]
    assert np.all(error <= allowed), (
        f"{name}: {int((error > allowed).sum())} values outside the bound (worst {np.max(error / allowed):.4f})"
    )


def _assert_same_tree(source: Path, back: Path, tree: str, varset, bound: float) -> None:
    original, decoded = _arrays(source, tree), _arrays(back, tree)
    assert decoded.fields == original.fields
    kinds = {v.name: ("discrete" if v.discrete else v.residual) for v in varset.variables}
    prefixes = varset.prefixes
    model = {f"{prefix}{name}": name for name in kinds for prefix in prefixes}
    for field in original.fields:
        a, b = original[field], decoded[field]
        assert str(ak.type(a).content) == str(ak.type(b).content), f"{field}: type {ak.type(a)} came back as {ak.type(b)}"
        assert len(a) == len(b)
        if a.ndim > 1:
            jets = [ak.to_numpy(ak.fill_none(ak.num(x), -1)) for x in (a, b)]  # -1: an entry missing as a whole
            np.testing.assert_array_equal(*jets, err_msg=f"{field}: jaggedness changed")
        flat_a, flat_b = (ak.to_numpy(ak.flatten(x, axis=None)) for x in (a, b))
        name = model.get(field)
        if name is None or kinds[name] == "discrete":
            np.testing.assert_array_equal(flat_a, flat_b, err_msg=f"{field} is not identical")
        else:
            _assert_within(flat_a, flat_b, "absolute" if kinds[name] == "phi" else kinds[name], bound, field)


@pytest.mark.slow
@pytest.mark.parametrize("bound", ["1%", "0.1%"])
def test_a_generated_jagged_file_comes_back_with_its_tree_and_every_value_within_the_bound(generated_bundle, qcd_file, tmp_path, bound):
    back = _round_trip(qcd_file, generated_bundle, tmp_path, ".root", bound)
    source, decoded = uproot.open(qcd_file)["events"], uproot.open(back)["events"]
    names = source.keys()
    assert decoded.keys() == names, "branch names and order, counter included"
    assert [decoded[k].typename for k in names] == [source[k].typename for k in names]
    _assert_same_tree(qcd_file, back, "events", load_varset("generated"), float(bound[:-1]) / 100)


@pytest.mark.parametrize("name, suffix", [("jets.root", ".root"), ("jets_rntuple.root", ".root"), ("jets.parquet", ".parquet")])
def test_a_flat_file_of_ones_own_comes_back_with_its_branches(own, own_bundle, tmp_path, name, suffix, capsys):
    back = _round_trip(own / name, own_bundle, tmp_path, suffix)
    _assert_same_tree(own / name, back, "jets", load_varset(own / "atlas4.yaml"), 0.01)
    out = capsys.readouterr().out
    assert "note: 2 jets the model does not apply to" in out, "the two negative masses of a positive m, stored as they are"
    found = re.search(r"([\d.]+)x smaller than the input, ([\d.]+)x counting the compressor it needs to be read", out)
    assert found and "not carried" in out, "a compressor of more than 10 % of a small file stays in its bundle"
    plain, counted = map(float, found.groups())
    assert counted < plain, "the compressor a file needs is counted"
    m_in, m_out = (ak.to_numpy(_arrays(path, "jets")["m"]) for path in (own / name, back))
    assert m_in[[40, 50]].tobytes() == m_out[[40, 50]].tobytes() == np.float32([-0.5, -0.5]).tobytes(), "the file's own bits"
    if name == "jets.root":
        assert uproot.open(back)["jets"]["track_pt"].count_branch is not None, "a jagged branch keeps a counter"


def test_a_parquet_list_column_with_null_rows_comes_back_with_them(own, own_bundle, tmp_path, capsys):
    """Jets grouped per event in a Parquet table whose list columns have null rows (`option[var * float32]`): read
    for training as events without jets; compressed and decompressed to Parquet with the same type, the same null
    rows and every value within the bound; to ROOT, which cannot hold a null, refused in one line, nothing written (a
    table whose columns may be null but are not goes to ROOT as plain branches)."""
    flat = ak.from_parquet(own / "jets.parquet")
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 4, 2 * len(flat) // 3)
    counts[-1] += len(flat) - counts.sum()  # every jet in an event
    null = np.zeros(len(counts), bool)
    null[np.flatnonzero(counts == 0)[:3]] = True  # three events with no list at all (and no jets)
    events = {name: ak.mask(ak.unflatten(flat[name], counts), ~null) for name in ("m", "pt", "eta", "phi")}
    source = tmp_path / "events.parquet"
    ak.to_parquet(ak.zip(events, depth_limit=1), source)
    assert str(ak.from_parquet(source).type.content).count("option[var") == 4
    varset = load_varset(own / "atlas4.yaml")
    assert len(load_jets(source, varset)) == len(load_jets(own / "jets.parquet", varset)), "a null row: an event without jets"
    back = _round_trip(source, own_bundle, tmp_path, ".parquet")
    original, decoded = ak.from_parquet(source), ak.from_parquet(back)
    assert decoded.type == original.type
    for name in ("m", "pt", "eta", "phi"):
        assert ak.to_numpy(ak.is_none(decoded[name])).tolist() == null.tolist()
    _assert_same_tree(source, back, "jets", varset, 0.01)
    capsys.readouterr()
    out = tmp_path / "events.root"
    assert main(["decompress", str(tmp_path / "events.hpcz"), "--model", str(own_bundle), "-o", str(out)]) == 2
    _one_line_error(capsys, "branch 'm' has missing values", "which a ROOT TTree cannot hold: write .parquet")
    assert not out.exists() and not list(tmp_path.glob(".events.root*"))
    from hpcsweep.compress import score_file
    from hpcsweep.compress.score import SCORE

    scored = tmp_path / "scored.parquet"  # in chunks of a few events: only some hold a null row
    score_file(source, load_bundle(own_bundle), scored, step_size="2 kB", progress=False)
    scores = ak.from_parquet(scored)[SCORE]
    assert str(scores.type.content) == "option[var * float32]" and ak.to_numpy(ak.is_none(scores)).tolist() == null.tolist()
    plain = _round_trip(own / "jets.parquet", own_bundle, tmp_path, ".root")  # columns that may be null, but are not
    assert ak.to_numpy(uproot.open(plain)["jets"]["run"].array()).tolist() == ak.to_numpy(flat["run"]).tolist()


def test_a_new_output_kind_is_one_writer_class(own, own_bundle, tmp_path, monkeypatch):
    """A toy writer (JSON lines, one object per jet) added as one entry of WRITERS: decompress writes it, and it holds
    what the Parquet output holds, jagged branch included."""
    from hpcsweep.compress import io

    class JsonLinesWriter:
        def __init__(self, path: Path, header: dict) -> None:
            self.path, self.chunks = path, []

        def write(self, arrays: dict) -> None:
            self.chunks.append(ak.zip(arrays, depth_limit=1))

        def close(self) -> None:  # Python's json writes a float by the digits that read back as the same float
            self.path.write_text("".join(f"{json.dumps(jet)}\n" for chunk in self.chunks for jet in chunk.to_list()))

    monkeypatch.setitem(io.WRITERS, ".jsonl", JsonLinesWriter)
    packed = tmp_path / "jets.hpcz"
    assert main(["compress", str(own / "jets.root"), "--model", str(own_bundle), "-o", str(packed)]) == 0
    for suffix in (".jsonl", ".parquet"):
        assert main(["decompress", str(packed), "--model", str(own_bundle), "-o", str(tmp_path / f"back{suffix}")]) == 0
    lines = ak.Array([json.loads(line) for line in (tmp_path / "back.jsonl").read_text().splitlines()])
    parquet = ak.from_parquet(tmp_path / "back.parquet")
    assert lines.fields == parquet.fields and len(lines) == len(parquet) == len(_arrays(own / "jets.root", "jets"))
    for field in parquet.fields:
        written = ak.to_numpy(ak.ravel(parquet[field]))
        np.testing.assert_array_equal(ak.to_numpy(ak.ravel(lines[field])).astype(written.dtype), written, err_msg=field)


@pytest.mark.slow
def test_the_learned_compressor_beats_coding_each_variable_alone_and_sz3(qcd_file):
    """On held-out jets of the 24-variable sample, at 1 %: fewer bytes than independent quantisation + range coding
    (the codec with no predictor) and than SZ3 at the same bound on every value."""
    varset = load_varset("generated")
    x = load_jets(qcd_file, varset).matrix().astype(np.float64)
    train, held = split_indices(len(x), 0.3, 0)
    learned = fit_codec(
        columns_for(varset.names, codec_kinds(varset), x[train], 0.01),
        x[train],
        0.01,
        energy=energy_of(varset),
        settings=Settings(steps=300),
    )
    alone = fit_independent(varset.names, codec_kinds(varset), x[train], 0.01)
    size_learned = len(learned.encode(x[held])) / len(held)
    size_alone = len(alone.encode(x[held])) / len(held)
    assert size_learned < 0.9 * size_alone, (size_learned, size_alone)
    pytest.importorskip("pysz")
    from hpcsweep.codec.peers import compress_with_peers

    kinds = [v.residual for v in varset.variables]
    sz3, _ = compress_with_peers(x[held], kinds, [v.discrete for v in varset.variables], 0.01)["SZ3"]
    assert size_learned < sz3, (size_learned, sz3)


def test_special_values_come_back_exactly_and_a_wrong_checksum_is_refused(qcd_file):
    varset = load_varset("generated")
    x = load_jets(qcd_file, varset).matrix().astype(np.float64)
    codec = fit_codec(
        columns_for(varset.names, codec_kinds(varset), x, 0.01), x, 0.01, energy=energy_of(varset), settings=Settings(steps=50)
    )
    odd = x[:8].copy()
    m, n90 = varset.names.index("m"), varset.names.index("N90Constituents")
    odd[0, m], odd[1, m], odd[2, m], odd[3, m] = 0.0, -1.5, np.nan, np.inf
    odd[4, n90] = 12345.0  # a discrete value never seen in training
    odd[5, m] = 1e30  # far outside every bin the tables cover
    back = codec.decode(codec.encode(odd))
    np.testing.assert_array_equal(back[[0, 1, 2, 3, 5], m], odd[[0, 1, 2, 3, 5], m])
    assert back[4, n90] == 12345.0
    for i, column in enumerate(codec.columns):
        _assert_within(
            odd[6:, i],
            back[6:, i],
            column.kind if column.kind != "discrete" else "absolute",
            0.01 if column.kind != "discrete" else 0,
            column.name,
        )
    data = bytearray(codec.encode(x[:500]))
    data[100] ^= 0xFF  # a flipped bit inside the coded words
    with pytest.raises(ValueError, match="checksum|does not decode"):
        codec.decode(bytes(data))


def _one_line_error(capsys, *expected: str) -> None:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("hpcsweep: error:")]
    assert len(errors) == 1 and all(part in errors[0] for part in expected) and "Traceback" not in err, err


def _mistakes(folder: Path, bundle: Path, jets: Path) -> list[tuple[list[str], str]]:
    """Bad invocations of the file commands, each with a part of the one line it must get."""
    empty = folder / "empty.root"
    names = uproot.open(jets)["events"].keys(filter_name="jet_*")
    with uproot.recreate(empty) as handle:  # the generated tree's jet branches, no entries
        handle["events"] = {name: np.zeros(0, np.float32) for name in names}
    (folder / "a_folder").mkdir()
    events = uproot.open(jets)["events"].arrays(filter_name="jet_*")
    in_mev = {name: events[name] * (1000 if name in ("jet_pt", "jet_m", "jet_E") else 1) for name in names}
    with uproot.recreate(folder / "mev.root") as handle:  # the generated jets with their energies in MeV
        handle.mktree("events", {name: values.type.content for name, values in in_mev.items()}).extend(in_mev)
    pd.DataFrame({"AK4_eta": [0.5, 1.0], "AK4_pt": [50.0, 60.0]}).to_parquet(folder / "other.parquet")  # jets under another prefix
    b, out = str(bundle), str(folder / "out.x")
    return [
        (["compress", str(folder / "missing.root"), "--model", b, "-o", out], "missing.root: no such file"),
        (["score", str(folder / "missing.root"), "--model", b, "-o", out], "missing.root: no such file"),
        (["decompress", str(folder / "missing.hpcz"), "--model", b, "-o", out], "missing.hpcz: no such file"),
        (["compress", str(folder / "a_folder"), "--model", b, "-o", out], "a_folder: a folder, not a file"),
        (["compress", str(jets), "--model", b, "-o", str(folder / "a_folder")], "a_folder is a folder; give the name"),
        (["export", "s", "--results", str(folder), "--z", "4", "-o", str(folder / "a_folder")], "a_folder is a folder"),
        (["compress", str(jets), "--model", b, "--max-error", "150%", "-o", out], "'150%': a bound lies between 0 and 50%"),
        (["compress", str(jets), "--model", b, "--max-error", "one", "-o", out], "'one' is not a bound"),
        (["compress", str(jets), "--model", b], "the following arguments are required: -o/--output"),
        (["compress", str(jets), "--model", str(jets), "-o", out], "not a readable bundle"),
        (["compress", str(empty), "--model", b, "-o", out], "empty.root: holds no entries to compress"),
        (["score", str(empty), "--model", b, "-o", out], "empty.root: holds no entries to score"),
        (["data", "inspect", str(empty), "--draft-varset", str(folder / "v.yaml")], "'events' holds no entries"),
        (["compress", str(folder / "mev.root"), "--model", b, "-o", out], "MeV where GeV was expected"),
        (
            ["compress", str(folder / "other.parquet"), "--model", b, "-o", out],
            "the Parquet table has no branch for variable 'pt' (tried jet_pt); nearest existing branches: AK4_pt",
        ),
        (["score", str(folder / "mev.root"), "--model", b, "-o", out], "MeV where GeV was expected"),
        (["data", "inspect", str(folder / "missing.root")], "missing.root: no such file"),
    ]


def test_every_mistake_on_a_file_command_is_one_line_exit_2_and_nothing_written(generated_bundle, qcd_file, tmp_path, capsys):
    """Missing or empty inputs, a folder for a file, a bad bound, a missing option, a file for a bundle."""
    for argv, expected in _mistakes(tmp_path, generated_bundle, qcd_file):
        before = sorted(tmp_path.rglob("*"))
        try:
            code = main(argv)
        except SystemExit as stop:  # argparse's own checks
            code = stop.code
        err = capsys.readouterr().err
        assert code == 2 and len(err.splitlines()) == 1 and expected in err and "Traceback" not in err, (argv, err)
        assert sorted(tmp_path.rglob("*")) == before, f"{argv}: nothing written"


@pytest.mark.slow
def test_damaged_truncated_or_foreign_input_is_one_line_exit_2_and_nothing_written(
    own, own_bundle, generated_bundle, qcd_file, tmp_path, capsys
):
    packed = tmp_path / "jets.hpcz"
    assert main(["compress", str(own / "jets.parquet"), "--model", str(own_bundle), "-o", str(packed)]) == 0
    data = packed.read_bytes()
    out = tmp_path / "back.root"

    damaged = tmp_path / "damaged.hpcz"
    damaged.write_bytes(data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 1]) + data[len(data) // 2 + 1 :])
    assert main(["decompress", str(damaged), "--model", str(own_bundle), "-o", str(out)]) == 2
    _one_line_error(capsys, "damaged (checksum mismatch")
    truncated = tmp_path / "truncated.hpcz"
    truncated.write_bytes(data[:-100])
    assert main(["decompress", str(truncated), "--model", str(own_bundle), "-o", str(out)]) == 2
    _one_line_error(capsys, "truncated")
    assert main(["decompress", str(packed), "--model", str(generated_bundle), "-o", str(out)]) == 2
    _one_line_error(capsys, "was compressed with another compressor")
    assert not out.exists() and not list(tmp_path.glob(".*tmp")), "nothing half-written"

    assert main(["compress", str(qcd_file), "--model", str(own_bundle), "-o", str(tmp_path / "x.hpcz")]) == 2
    _one_line_error(capsys, "has no branch for variable 'm' (tried m); nearest existing branches: jet_m, jet_ActiveArea4vec_m")
    assert (
        main(["compress", str(own / "jets.parquet"), "--model", str(own_bundle), "--max-error", "5%", "-o", str(tmp_path / "x.hpcz")]) == 2
    )
    _one_line_error(capsys, "holds compressors for --max-error 1%, not 5%")
    assert not (tmp_path / "x.hpcz").exists()

    bundle = bytearray(own_bundle.read_bytes())
    bundle[_largest_dataset_at(own_bundle)] ^= 0xFF  # a byte of data, not of HDF5's free space
    (tmp_path / "bad.h5").write_bytes(bytes(bundle))
    assert main(["compress", str(own / "jets.parquet"), "--model", str(tmp_path / "bad.h5"), "-o", str(tmp_path / "x.hpcz")]) == 2
    _one_line_error(capsys, "bad.h5")
    assert main(["export", "s", "--results", str(tmp_path), "-o", str(tmp_path / "b.h5")]) == 2
    _one_line_error(capsys, "give one of --z")


def _largest_dataset_at(path: Path) -> int:
    """The offset in the file of the middle byte of its largest contiguous dataset."""
    import h5py

    found: list[tuple[int, int]] = []
    with h5py.File(path, "r") as handle:
        handle.visititems(
            lambda _, node: (
                found.append((node.id.get_storage_size(), node.id.get_offset()))
                if isinstance(node, h5py.Dataset) and node.id.get_offset() is not None
                else None
            )
        )
    size, offset = max(found)
    return offset + size // 2


def test_a_file_is_read_by_any_bundle_of_its_compressor_or_by_none_when_it_carries_it(
    generated_bundle, own_bundle, qcd_file, tmp_path, capsys
):
    """The compressor at the file's bound identifies it, not the bundle file: the trial exported again at that bound
    alone (another bundle checksum) decodes it. With --embed the file carries the compressor and needs nothing else;
    without it, decompressing alone is one line naming the trial and compressor it needs; damage to the carried
    compressor is refused in one line."""
    from hpcsweep.compress.container import CODEC

    results = (generated_bundle.parent / "results.txt").read_text()
    again = tmp_path / "again.h5"
    assert load_bundle(generated_bundle).bounds == [0.01, 0.001], "fitted at two bounds"
    assert main(["export", results, "--z", "4", "--max-error", "1%", "-o", str(again)]) == 0
    assert load_bundle(again).checksum != load_bundle(generated_bundle).checksum
    bare, carried = tmp_path / "bare.hpcz", tmp_path / "carried.hpcz"
    assert main(["compress", str(qcd_file), "--model", str(generated_bundle), "--no-embed", "-o", str(bare)]) == 0
    assert "not carried" in capsys.readouterr().out
    assert main(["compress", str(qcd_file), "--model", str(generated_bundle), "--embed", "-o", str(carried)]) == 0
    assert "carried" in capsys.readouterr().out
    kinds = [record[:1] for record in _records(carried)[1]]
    assert kinds.count(CODEC) == 1 and CODEC not in [record[:1] for record in _records(bare)[1]]
    outputs = {
        "first bundle": ["decompress", str(bare), "--model", str(generated_bundle)],
        "the trial exported again": ["decompress", str(bare), "--model", str(again)],
        "carried": ["decompress", str(carried)],
    }
    backs = []
    for name, argv in outputs.items():
        backs.append(tmp_path / f"{name}.parquet")
        assert main([*argv, "-o", str(backs[-1])]) == 0, name
    expected = ak.to_list(ak.from_parquet(backs[0]))
    assert all(ak.to_list(ak.from_parquet(back)) == expected for back in backs[1:])

    out = tmp_path / "out.parquet"
    assert main(["decompress", str(bare), "-o", str(out)]) == 2
    _one_line_error(capsys, "bare.hpcz: carries no compressor", "--model", f"trial {load_bundle(generated_bundle).trial_id}")
    assert main(["decompress", str(bare), "--model", str(own_bundle), "-o", str(out)]) == 2
    _one_line_error(capsys, "was compressed with another compressor")
    magic, records = _records(carried)
    codec = next(i for i, record in enumerate(records) if record[:1] == CODEC)
    damaged = bytearray(records[codec])
    damaged[100] ^= 1
    (tmp_path / "damaged.hpcz").write_bytes(magic + b"".join([*records[:codec], bytes(damaged), *records[codec + 1 :]]))
    assert main(["decompress", str(tmp_path / "damaged.hpcz"), "-o", str(out)]) == 2
    _one_line_error(capsys, "damaged (checksum mismatch in the record")
    assert not out.exists()


def test_a_compressed_file_reads_as_its_decompressed_tree_chunk_by_chunk(own, own_bundle, tmp_path, monkeypatch):
    """hpcsweep.open / iterate give what decompress writes, as uproot reads it back: every branch, value and
    jaggedness; step_size re-chunks each file (a chunk never spans two); other branches alone decode nothing; a name no
    branch matches lists the branches, a glob that matches no file says so."""
    import hpcsweep
    from hpcsweep.codec import Compressor
    from hpcsweep.compress import apply
    from hpcsweep.errors import UserError

    packed, back = tmp_path / "a.hpcz", tmp_path / "back.root"
    apply.compress_file(own / "jets.root", load_bundle(own_bundle), 0.01, packed, step_size="50 kB", progress=False, embed=True)
    (tmp_path / "b.hpcz").write_bytes(packed.read_bytes())
    assert main(["decompress", str(packed), "-o", str(back)]) == 0
    events = hpcsweep.open(packed)
    tree = uproot.open(back)[events.tree]
    whole = events.arrays()
    assert events.keys() == ["run", "m", "pt", "eta", "phi", "weight", "track_pt"]
    assert len(whole) == tree.num_entries == events.num_entries
    for name in whole.fields:
        assert ak.to_list(whole[name]) == ak.to_list(tree[name].array()), name
    n = len(whole)
    assert len(list(events.iterate())) >= 2, "the file's own chunks"
    sizes = [len(chunk) for chunk in hpcsweep.iterate(str(tmp_path / "*.hpcz"), filter_name="p*", step_size=1000)]
    assert sizes == ([1000] * (n // 1000) + [n % 1000]) * 2
    monkeypatch.setattr(Compressor, "decode", lambda *args: pytest.fail("decoded for branches outside the model"))
    (chunk, *_) = events.iterate(filter_name=["run", "track_*"])
    assert chunk.fields == ["run", "track_pt"] and chunk.track_pt.ndim == 2
    with pytest.raises(UserError, match="no branch matches 'nope'; its branches: run, m, pt"):
        events.iterate("nope")
    with pytest.raises(UserError, match="step_size='100 MB': a number of entries"):
        events.iterate(step_size="100 MB")
    with pytest.raises(UserError, match="none.*.hpcz: no file matches"):
        list(hpcsweep.iterate(str(tmp_path / "none*.hpcz")))


def test_a_carried_compressor_is_read_as_numbers_only():
    """A received file is data: a compressor record that asks for Python objects is refused, never unpickled."""
    import zstandard

    from hpcsweep.compress.embed import unpack

    description = json.dumps({"compressor": {}, "arrays": [["x", "|O", [1], 0]]}).encode()
    payload = zstandard.ZstdCompressor().compress(struct.pack("<Q", len(description)) + description + bytes(8))
    with pytest.raises(ValueError, match="only numbers are read"):
        unpack(payload)


@pytest.fixture(scope="module")
def chunked(generated_bundle, qcd_file, tmp_path_factory) -> tuple[Path, Path]:
    """Two files of several chunks each, compressed from the same jets with the same bundle."""
    from hpcsweep.compress import apply

    bundle, folder = load_bundle(generated_bundle), tmp_path_factory.mktemp("chunked")
    for name in ("a.hpcz", "b.hpcz"):
        apply.compress_file(qcd_file, bundle, 0.01, folder / name, step_size="100 kB", progress=False)
    return folder / "a.hpcz", folder / "b.hpcz"


def _records(path: Path) -> tuple[bytes, list[bytes]]:
    """A compressed file's magic and its records, each as its bytes: type | length | payload | sha256."""
    from hpcsweep.compress.container import MAGIC

    data = path.read_bytes()
    at, records = len(MAGIC), []
    while at < len(data):
        (length,) = struct.unpack_from("<Q", data, at + 1)
        records.append(data[at : at + 9 + length + 32])
        at += 9 + length + 32
    return data[: len(MAGIC)], records


def _record(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<Q", len(payload)) + payload + hashlib.sha256(payload).digest()


def _miscounted(records: list[bytes]) -> list[bytes]:
    """The records with an end record (validly checksummed) that counts one entry more than the chunks hold."""
    end = json.loads(records[-1][9:-32])
    return [*records[:-1], _record(b"E", json.dumps(end | {"entries": end["entries"] + 1}).encode())]


def _long_length(records: list[bytes]) -> list[bytes]:
    """The records with a byte of the first chunk's length flipped: about 2^40, which was read in one call."""
    chunk = bytearray(records[1])
    chunk[1 + 4] ^= 0xFF
    return [records[0], bytes(chunk), *records[2:]]


# What is done to a file (its magic, its records, those of another file of the same jets and bundle) and the refusal
# ({n}: the file's chunks).
TAMPERING: dict[str, tuple[Callable[[bytes, list[bytes], list[bytes]], bytes], str]] = {
    "dropped chunk": (lambda magic, r, other: magic + b"".join(r[:2] + r[3:]), "chunk 1 of {n} is missing"),
    "duplicated chunk": (lambda magic, r, other: magic + b"".join(r[:3] + r[2:]), "chunk 1 of {n} appears twice"),
    "swapped chunks": (
        lambda magic, r, other: magic + b"".join([*r[:2], r[3], r[2], *r[4:]]),
        "chunks out of order (chunk 2 of {n} stands where chunk 1 belongs)",
    ),
    "spliced chunk": (lambda magic, r, other: magic + b"".join([*r[:2], other[2], *r[3:]]), "chunk 1 of {n} belongs to another file"),
    "appended garbage": (lambda magic, r, other: magic + b"".join(r) + b"garbage", "damaged (7 bytes after the end record)"),
    "flipped length byte": (lambda magic, r, other: magic + b"".join(_long_length(r)), "a record length runs past the end of the file"),
    "miscounted end": (lambda magic, r, other: magic + b"".join(_miscounted(r)), "its end record counts {n} chunks, 601 entries"),
    "older layout": (
        lambda magic, r, other: magic[:-1] + bytes([magic[-1] - 1]) + b"".join(r),
        f"written by an older hpcsweep, before its format was fixed (file format {OLDEST - 1}; this one reads formats {OLDEST} to {VERSION})",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(TAMPERING))
def test_a_tampered_compressed_file_is_refused_in_one_line_and_nothing_written(chunked, generated_bundle, tmp_path, capsys, case):
    """Chunks dropped, doubled, swapped or taken from another file of the same bundle (each would decode as valid
    data), bytes after the end, a length past the end, totals that do not add up, an older layout: exit 2, one line
    naming the file and the fault, no output, no temporary."""
    from hpcsweep.compress import read_compressed
    from hpcsweep.errors import UserError

    magic, records = _records(chunked[0])
    assert len(records) >= 5, "a header, three chunks or more, an end"
    tamper, expected = TAMPERING[case]
    tampered, out = tmp_path / "tampered.hpcz", tmp_path / "back.root"
    tampered.write_bytes(tamper(magic, records, _records(chunked[1])[1]))
    assert main(["decompress", str(tampered), "--model", str(generated_bundle), "-o", str(out)]) == 2
    _one_line_error(capsys, f"{tampered}: ", expected.format(n=len(records) - 2))
    assert not out.exists() and not list(tmp_path.glob(".*.tmp")), "nothing written, no temporary left"
    with pytest.raises(UserError, match="tampered.hpcz: "):
        list(read_compressed(tampered)[1])


@pytest.mark.slow
def test_the_next_run_removes_a_temporary_a_killed_run_left_for_the_same_output(chunked, generated_bundle, qcd_file, tmp_path):
    """A killed compress or decompress leaves its temporary (megabytes); the next one to the same output removes it
    (and another host's a day old), and leaves alone those of writers that may still be running."""
    from hpcsweep.files import OTHER_HOST_AGE_S

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    commands = {
        "back.root": ["decompress", str(chunked[0]), "--model", str(generated_bundle)],
        "again.hpcz": ["compress", str(qcd_file), "--model", str(generated_bundle)],
    }
    for name, command in commands.items():
        left, stale = tmp_path / f".{name}~{host}~{dead.pid}.tmp", tmp_path / f".{name}~elsewhere~1.tmp"
        running, recent = tmp_path / f".{name}~{host}~{os.getppid()}.tmp", tmp_path / f".{name}~elsewhere~2.tmp"
        for path in (left, stale, running, recent):
            path.write_bytes(b"half a file")
        os.utime(stale, (0, os.stat(stale).st_mtime - OTHER_HOST_AGE_S - 60))
        assert main([*command, "-o", str(tmp_path / name)]) == 0
        assert (tmp_path / name).is_file() and not left.exists() and not stale.exists()
        assert running.exists() and recent.exists()


@pytest.mark.slow
def test_a_bundle_loads_without_the_sweep_folder_and_says_what_it_holds(generated_bundle, tmp_path):
    moved = tmp_path / "elsewhere.h5"
    moved.write_bytes(generated_bundle.read_bytes())
    bundle = load_bundle(moved)
    assert bundle.bounds == [0.01, 0.001]
    assert bundle.varset.names == load_varset("generated").names
    assert bundle.texts["data"]["checksum"].startswith("sha256:") and len(bundle.trial_id) == 12
    assert set(bundle.texts["config"]) >= {"data", "model", "train"}
    assert any(k.startswith("weights/") for k in bundle.arrays) and any(k.startswith("discrete/") for k in bundle.arrays)


@pytest.mark.slow
def test_rank_by_bytes_ranks_trials_by_the_ae_as_a_bounded_compressor(own, tmp_path, capsys):
    sweep = own / "bytes.yaml"
    sweep.write_text(
        f"name: b\ndata: {{source: {own / 'jets.parquet'}, varset: atlas4.yaml}}\n"
        "model: {hidden: [32, 32]}\ntrain: {epochs: 4, batch_size: 128}\ncodec: {bounds: [0.005], steps: 100}\n"
        "grid:\n  z: [1, 3]\n  lr: [3.0e-3, 3.0e-2]\n"
        "dispatch: {executor: debug}\nevaluation: {timing_repeats: 1, max_error: 0.005}\nrank_by: bytes\n"
    )
    results = tmp_path / "results"
    assert main(["sweep", str(sweep), "--results", str(results), "--wide"]) == 0
    out = capsys.readouterr().out
    assert "Bytes/jet" in out, "the ranking's own figure is a column of the printed tables"
    summaries, _ = scan(results / "b")
    fewest = {}
    for summary in summaries.values():
        size, z = summary["metrics"]["bytes_per_jet"], summary["config"]["model"]["latent"]
        assert 0 < size < 16, "within 0.5 % a jet of four float32 values takes fewer than its 16 raw bytes"
        fewest[z] = min(fewest.get(z, np.inf), size)
    best = pd.read_csv(results / "b" / "tables" / "best_per_latent.csv")
    np.testing.assert_allclose(best["Bytes/jet"], [fewest[z] for z in best["Latent space dimensions"]], rtol=1e-3)
    compressors = pd.read_csv(results / "b" / "tables" / "compressors.csv")
    ours = compressors[compressors["trial"].notna()]
    assert set(ours["compressor"]) == {"AE z=1, no rate term", "AE z=3, no rate term"}
    np.testing.assert_allclose(sorted(ours["bytes/jet"]), sorted(fewest.values()), atol=0.006)
    assert set(compressors["bound on every value"]) == {"0.5 % (angles 0.005)", "none"}, "peers at the same bound (float16: none)"
    assert {"SZ3", "ZFP", "fpzip", "mantissa + zstd"} <= set(compressors["compressor"])
    assert "fewest bytes at 0.5 % (angles 0.005): AE z=" in out and "x SZ3's" in out, "the winner against SZ3, in one line"
    first = next(iter(summaries))
    measured = read_trial(results / "b" / "trials" / f"{first}.h5", weights=False).evaluation["validation"]["compressor"]
    assert all(measured["residuals"][name]["within_1pct"] == 1.0 for name in ("m", "pt", "eta", "phi")), "every value within 0.5 %"
    assert measured["largest_error"] <= 1.0 and measured["bound"] == 0.005


@pytest.mark.slow
def test_worker_processes_write_the_same_bytes_as_one_process(generated_bundle, qcd_file, tmp_path, monkeypatch):
    """Large files are coded by one worker process per core; the chunks, and so the file, do not depend on it."""
    from hpcsweep.compress import apply, read_compressed

    bundle = load_bundle(generated_bundle)
    apply.compress_file(qcd_file, bundle, 0.01, tmp_path / "one.hpcz", step_size="100 kB", progress=False)
    monkeypatch.setattr(apply, "PARALLEL_ABOVE", 0)
    monkeypatch.setattr("hpcsweep.allocation.allocated_cores", lambda: 2)
    summary = apply.compress_file(qcd_file, bundle, 0.01, tmp_path / "two.hpcz", step_size="100 kB", progress=False)
    one, two = (list(read_compressed(tmp_path / name)[1]) for name in ("one.hpcz", "two.hpcz"))
    assert summary.entries == 600 and one == two, "the same chunks (the files differ only by their random ids)"
    assert len(two) > 2, "several chunks, so both workers coded some"
    apply.decompress_file(tmp_path / "two.hpcz", bundle, tmp_path / "back.root", progress=False)
    _assert_same_tree(qcd_file, tmp_path / "back.root", "events", load_varset("generated"), 0.01)


@pytest.mark.slow
def test_the_onnx_encoder_and_decoder_reproduce_torch_on_validation_jets(onnx_bundles, qcd_file):
    """onnxruntime runs the exported halves (normalised jets in, latents out, and back) on real jets: the same
    numbers as torch to float32 precision, for any number of jets."""
    ort = pytest.importorskip("onnxruntime")
    import torch

    from hpcsweep.config import ModelConfig
    from hpcsweep.data.normalize import Normaliser
    from hpcsweep.trial.models import build_model

    generated_bundle = onnx_bundles[0]
    bundle = load_bundle(generated_bundle)
    config = bundle.texts["config"]
    model = build_model(ModelConfig.model_validate(config["model"]), len(bundle.varset.names), config["train"].get("rate_lambda", 0.0))
    model.load_state_dict(
        {k.removeprefix("weights/"): torch.from_numpy(np.asarray(v)) for k, v in bundle.arrays.items() if k.startswith("weights/")}
    )
    model.eval()
    x = Normaliser.from_dict(bundle.texts["normaliser"]["model"]).transform(load_jets(qcd_file, bundle.varset).matrix())
    encoder = ort.InferenceSession(str(generated_bundle.with_name("model.encoder.onnx")))
    decoder = ort.InferenceSession(str(generated_bundle.with_name("model.decoder.onnx")))
    assert [i.name for i in encoder.get_inputs()] == ["x"] and encoder.get_inputs()[0].shape == ["jets", 24]
    latent = encoder.run(["latent"], {"x": x})[0]
    decoded = decoder.run(["x"], {"latent": latent})[0]
    with torch.no_grad():
        expected_latent = model.encode(torch.from_numpy(x)).numpy()
        expected = model.decode(torch.from_numpy(latent)).numpy()
    assert latent.shape == (len(x), 4) and decoder.run(["x"], {"latent": latent[:3]})[0].shape == (3, 24)
    assert np.abs(latent - expected_latent).max() < 1e-4 and np.abs(decoded - expected).max() < 1e-4


@pytest.mark.slow
def test_the_onnx_score_takes_a_files_own_columns_by_name_and_gives_what_hpcsweep_score_writes(onnx_bundles, qcd_file, own, tmp_path):
    """A file's raw columns fed by variable name in any order: the scores of `hpcsweep score` to 1e-5 relative, NaN for
    exactly the same jets. The generated jets (jagged; the cut |eta| < 4.5, discrete tables, log floors) and a user's
    flat file in MeV (the set's unit_scale 0.001 inside the graph; negative masses of a positive m)."""
    ort = pytest.importorskip("onnxruntime")
    from hpcsweep.compress.score import SCORE

    for n, (bundle, source, tree) in enumerate(((onnx_bundles[0], qcd_file, "events"), (onnx_bundles[1], own / "jets.root", "jets"))):
        scored = tmp_path / f"scored{n}.root"
        assert main(["score", str(source), "--model", str(bundle), "-o", str(scored)]) == 0
        expected = ak.to_numpy(ak.flatten(uproot.open(scored)[tree][SCORE].array(), axis=None))
        session = ort.InferenceSession(str(bundle.with_name(f"{bundle.stem}.score.onnx")))
        varset = load_bundle(bundle).varset
        assert sorted(i.name for i in session.get_inputs()) == sorted(varset.names), "inputs are named by variable"
        branches = uproot.open(source)[tree]
        columns = {
            v.name: ak.to_numpy(ak.flatten(branches[p + v.branches[0]].array(), axis=None)).astype(np.float64)
            for v in varset.variables
            for p in varset.prefixes or ("",)
            if p + v.branches[0] in branches
        }
        (scores,) = session.run(["anomaly_score"], dict(reversed(columns.items())))
        assert np.array_equal(np.isnan(scores), np.isnan(expected)) and np.isnan(expected).any(), "NaN for the same jets"
        finite = ~np.isnan(expected)
        np.testing.assert_allclose(scores[finite], expected[finite], rtol=1e-5, atol=1e-9)


@pytest.mark.slow
def test_score_writes_each_jets_anomaly_score_beside_the_input_flat_or_jagged(
    generated_bundle, own, own_bundle, qcd_file, tmp_path, capsys
):
    """The score branch follows the jets (jagged with their counter, or flat); every input branch is kept; the
    scores are the evaluation's per-jet reference-space errors (their mean is the reference MSE); NaN outside cuts."""
    from hpcsweep.compress.score import SCORE, Scorer
    from hpcsweep.trial.evaluate import evaluate_dataset

    out = tmp_path / "scored.root"
    assert main(["score", str(qcd_file), "--model", str(generated_bundle), "-o", str(out)]) == 0
    source, scored = uproot.open(qcd_file)["events"], uproot.open(out)["events"]
    assert scored.keys() == [*source.keys(), SCORE] and scored[SCORE].count_branch.name == "njet"
    before, after = source.arrays(), scored.arrays()
    for name in before.fields:
        np.testing.assert_array_equal(ak.flatten(before[name], axis=None), ak.flatten(after[name], axis=None))
    scores = ak.to_numpy(ak.flatten(after[SCORE]))
    eta = ak.to_numpy(ak.flatten(before["jet_eta"]))
    assert np.array_equal(np.isnan(scores), np.abs(eta) >= 4.5), "NaN exactly for the jets outside the cuts"
    bundle = load_bundle(generated_bundle)
    scorer = Scorer(bundle)
    table = load_jets(qcd_file, bundle.varset).matrix()
    summary, _, _ = evaluate_dataset(scorer.model, scorer.normaliser, scorer.measure, table)
    assert np.nanmean(scores) == pytest.approx(summary["reference_mse"], rel=1e-4)

    flat = tmp_path / "scored.parquet"
    assert main(["score", str(own / "jets.parquet"), "--model", str(own_bundle), "-o", str(flat)]) == 0
    table = ak.from_parquet(flat)
    assert table.fields == [*ak.from_parquet(own / "jets.parquet").fields, SCORE] and table[SCORE].ndim == 1
    scores = ak.to_numpy(table[SCORE])
    assert np.flatnonzero(np.isnan(scores)).tolist() == [40, 50], "the negative masses of a positive m: NaN, never an error"
    assert np.isfinite(scores).sum() == len(load_jets(own / "jets.parquet", load_varset(own / "atlas4.yaml"))), "the jets a sweep reads"
    assert main(["score", str(qcd_file), "--model", str(own_bundle), "-o", str(tmp_path / "x.root")]) == 2
    _one_line_error(capsys, "has no branch for variable 'm'")
    assert not (tmp_path / "x.root").exists()


def test_a_received_bundle_whose_cut_is_code_is_refused_and_runs_nothing(generated_bundle, qcd_file, tmp_path, monkeypatch, capsys):
    """A bundle is data: one whose variable set carries a cut that would run code (validly signed: a checksum is not a
    signature) is refused in one line by every command that reads it, and the code never runs."""
    import json

    import h5py

    from hpcsweep.store import checksum

    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.h5"
    evil.write_bytes(generated_bundle.read_bytes())
    with h5py.File(evil, "r+") as handle:
        varset = json.loads(handle.attrs["varset"])
        varset["cuts"] = [{"name": "evil", "action": "keep", "expression": "pt.to_csv('MARK') or pt > 0"}]
        handle.attrs["varset"] = json.dumps(varset, sort_keys=True)
        texts = {key: str(value) for key, value in handle.attrs.items() if key not in ("kind", "schema", "checksum")}
        arrays: dict = {}
        handle.visititems(lambda name, node: arrays.__setitem__(name, node[()]) if isinstance(node, h5py.Dataset) else None)
        handle.attrs["checksum"] = checksum(texts, arrays)
    for command in (["compress", str(qcd_file), "-o", "x.hpcz"], ["score", str(qcd_file), "-o", "x.root"]):
        assert main([*command, "--model", str(evil)]) == 2
        _one_line_error(capsys, "cut 'evil': a call of '.to_csv' is not allowed in a cut")
    assert not (tmp_path / "MARK").exists() and not list(tmp_path.glob("x.*"))


def _validation_file(qcd_file: Path, folder: Path) -> tuple[Path, np.ndarray]:
    """A flat TTree of a trial's validation jets as the generated file holds them (GeV, float32; the variable set's
    prefixed branch names), in the order of the trial's split; and those jets."""
    varset = load_varset("generated")
    x = load_jets(qcd_file, varset).matrix()
    _, validation = split_indices(len(x), 0.2, 0)
    jets = x[validation]
    path = folder / "validation.root"
    with uproot.recreate(path) as handle:
        handle.mktree("events", {f"jet_{name}": np.float32 for name in varset.names}).extend(
            {f"jet_{name}": jets[:, i] for i, name in enumerate(varset.names)}
        )
    return path, jets


@pytest.mark.slow
def test_a_trials_recorded_bytes_are_what_compress_writes_for_its_validation_jets(generated_bundle, qcd_file, tmp_path):
    """The number a sweep ranks by is the number the shipped command produces: the trial's coded validation jets at each
    bound take exactly as many bytes as `hpcsweep compress` writes for them with the exported bundle, headers aside."""
    from hpcsweep.compress import apply

    results = Path((generated_bundle.parent / "results.txt").read_text())
    bundle = load_bundle(generated_bundle)
    record = read_trial(results / "trials" / f"{bundle.trial_id}.h5", weights=False)
    source, jets = _validation_file(qcd_file, tmp_path)
    for bound, measured in record.evaluation["validation"]["compressor"]["bounds"].items():
        packed = tmp_path / f"{bound}.hpcz"
        summary = apply.compress_file(source, bundle, float(bound), packed, progress=False)
        assert summary.jets == measured["n_jets"] == len(jets) and summary.lossless_jets == 0
        assert summary.model_bytes == measured["payload_bytes"], (bound, summary.model_bytes, measured["payload_bytes"])
        assert measured["kind"] == "autoencoder" and measured["latent_per_jet"] > 0, "a rate-trained AE's latents are coded"


@pytest.mark.slow
def test_the_learned_coder_alone_is_a_trial_exported_in_seconds_and_the_winner_by_bytes(qcd_file, tmp_path, capsys, monkeypatch):
    """A sweep of the coder alone (z = 0) beside a rate-aware AE: both fit and measure their compressors, the review ends
    with the compressors against the peers and one line for the winner, export --best bytes takes the fewest bytes, and
    the bundle of the coder alone compresses and gives back a file within the bound (and refuses to score)."""
    import time

    sweep = tmp_path / "c.yaml"
    sweep.write_text(
        f"name: c\ndata: {{events: {QCD.events}, generator_seed: {QCD.seed}}}\nmodel: {{hidden: [32, 32]}}\n"
        "train: {epochs: 5, batch_size: 256}\ncodec: {steps: 60}\nrank_by: bytes\nevaluation: {signals: [], timing_repeats: 1}\n"
        "points:\n  - {model.kind: codec}\n  - {model.latent: 4, train.rate_lambda: 1.0e-2}\n"
    )
    results = tmp_path / "results"
    assert main(["sweep", str(sweep), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "fewest bytes at 1 % (angles 0.01): " in out and "x SZ3's" in out
    frontier = pd.read_csv(results / "c" / "tables" / "rate_frontier.csv")
    assert list(frontier["kind"]) == ["codec", "ae"] and frontier["latents (B/jet)"].iloc[1] > 0
    assert (results / "c" / "figures" / "compression.png").is_file()
    summaries, _ = scan(results / "c")
    fewest = min(summaries, key=lambda t: summaries[t]["metrics"]["bytes_per_jet"])
    best = tmp_path / "best.h5"
    assert main(["export", "c", "--results", str(results), "--best", "bytes", "-o", str(best)]) == 0
    assert load_bundle(best).trial_id == fewest
    alone = tmp_path / "alone.h5"
    started = time.perf_counter()
    assert main(["export", "c", "--results", str(results), "--z", "0", "-o", str(alone)]) == 0
    assert time.perf_counter() - started < 10, "exporting a codec trial copies what it fitted"
    bundle = load_bundle(alone)
    assert bundle.compressor.kind == "codec" and not bundle.has_network and bundle.texts["trial"]["kind"] == "codec"
    back = _round_trip(qcd_file, alone, tmp_path, ".root")
    _assert_same_tree(qcd_file, back, "events", load_varset("generated"), 0.01)
    capsys.readouterr()
    assert main(["score", str(qcd_file), "--model", str(alone), "-o", str(tmp_path / "s.root")]) == 2
    _one_line_error(capsys, "holds no autoencoder to score jets with")
    assert main(["export", "c", "--results", str(results), "--z", "0", "--max-error", "0.1%", "-o", str(tmp_path / "x.h5")]) == 2
    _one_line_error(capsys, "was fitted at --max-error 1%, not 0.1%; add --refit")
    assert main(["export", "c", "--results", str(results), "--z", "0", "--refit", "--max-error", "0.1%", "-o", str(tmp_path / "r.h5")]) == 0
    refitted = load_bundle(tmp_path / "r.h5")
    assert refitted.bounds == [0.001] and refitted.texts["trial"]["refitted"]
    monkeypatch.setenv("HPCSWEEP_DATA", str(tmp_path / "elsewhere"))  # run from another folder: no sample under its data root
    assert main(["export", "c", "--results", str(results), "--z", "0", "--refit", "-o", str(tmp_path / "r2.h5")]) == 0
    assert not (tmp_path / "elsewhere" / "generated").exists(), "the trial's recorded sample is read, not simulated again"
    assert main(["export", "c", "--results", str(results), "--z", "0", "--steps", "5", "-o", str(tmp_path / "x.h5")]) == 2
    _one_line_error(capsys, "--steps sets how a compressor is fitted anew: it goes with --refit")
    assert not (tmp_path / "x.h5").exists()
    trial_file = results / "c" / "trials" / f"{bundle.trial_id}.h5"
    assert main(["evaluate", str(trial_file)]) == 0, "the stored compressor measured again"
    assert "validation: its compressor (codec) at 1 %: " in capsys.readouterr().out
    assert main(["evaluate", str(trial_file), "--source", str(qcd_file)]) == 2
    _one_line_error(capsys, "(model kind codec: no network)")


def test_a_full_disk_names_the_output_and_says_where_else_towrite_flat(generated_bundle, qcd_file, tmp_path, monkeypatch, capsys):
    """A write's ENOSPC names no file: the message names the output and suggests -o, not the sweeps' --results."""
    import errno

    from hpcsweep.compress.container import RecordWriter

    def full(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RecordWriter, "end", full)
    out = tmp_path / "x.hpcz"
    assert main(["compress", str(qcd_file), "--model", str(generated_bundle), "-o", str(out)]) == 2
    _one_line_error(capsys, f"{out}: No space left on device; free some space (or write -o elsewhere) and run again: nothing was written")
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))

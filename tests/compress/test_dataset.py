"""A dataset of many files compressed as one (hpcsweep.compress.dataset): a folder of outputs with a manifest, resumable
file by file, here or as a SLURM job array; a kill mid-way loses nothing; decompress takes the manifest the same way."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hpcsweep.cli import main
from hpcsweep.compress.container import read_compressed
from tests.helpers import QCD, coder_bundle

ROOT = Path(__file__).parents[2]
SITE = str(ROOT / "slurm_templates" / "local.yaml")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, qcd_file) -> Path:
    """The learned coder alone (no network: a few seconds to fit and export) on the session's jets."""
    return coder_bundle(tmp_path_factory.mktemp("bundle"), f"events: {QCD.events}, generator_seed: {QCD.seed}")


def _runs(qcd_file: Path, folder: Path, files: int, repeat: int = 1) -> Path:
    """The session's events (`repeat` times over) cut into `files` files of the generated layout (events/njet/jet_*)."""
    arrays = uproot.open(qcd_file)["events"].arrays()
    arrays = ak.concatenate([arrays] * repeat) if repeat > 1 else arrays
    names = [name for name in arrays.fields if name.startswith("jet_")]
    step = -(-len(arrays) // files)
    folder.mkdir()
    for i in range(files):
        part = arrays[i * step : (i + 1) * step]
        jets = ak.zip({name[4:]: part[name] for name in names})
        with uproot.recreate(folder / f"run{i}.root") as handle:
            handle.mktree("events", {"eventNumber": "int64", "jet": jets.type}).extend({"eventNumber": part["eventNumber"], "jet": jets})
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, qcd_file) -> Path:
    """Four small files of 150 events."""
    return _runs(qcd_file, tmp_path_factory.mktemp("runs") / "in", 4)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stats(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("*.hpcz")}


def _check_manifest(out: Path, inputs: list[Path]) -> dict:
    """The manifest lists every input with its bytes and sha256 as they are, its output's as they are, and the jets and
    entries the input holds; its compressor is the one the output's header names."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert [Path(e["input"]) for e in manifest["files"]] == [p.resolve() for p in inputs]
    for entry, source in zip(manifest["files"], inputs, strict=True):
        output = out / entry["output"]
        assert entry["output"] == f"{source.stem}.hpcz" and output.is_file()
        assert (entry["input_bytes"], entry["input_sha256"]) == (source.stat().st_size, _sha256(source))
        assert (entry["output_bytes"], entry["output_sha256"]) == (output.stat().st_size, _sha256(output))
        tree = uproot.open(source)["events"]
        assert (entry["entries"], entry["jets"]) == (tree.num_entries, int(np.sum(tree["njet"].array(library="np"))))
        header, _ = read_compressed(output)
        assert entry["codec"] == header["codec"] and entry["bound"] == header["bound"] == 0.01 and entry["seconds"] > 0
    assert manifest["totals"]["jets"] == sum(e["jets"] for e in manifest["files"]) and manifest["failed"] == []
    return manifest


def test_a_dataset_is_compressed_with_a_manifest_and_a_rerun_redoes_only_what_does_not_verify(bundle, runs, tmp_path, capsys):
    runs = Path(shutil.copytree(runs, tmp_path / "in"))  # its own copy: an input is changed below
    out, inputs = tmp_path / "out", sorted(runs.glob("*.root"))
    argv = ["compress", str(runs / "*.root"), "--model", str(bundle), "-o", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "compressed 4, skipped 0 (done before), failed 0" in printed and "[3/4]" in printed and " -> run2.hpcz: " in printed
    _check_manifest(out, inputs)
    before = _stats(out)
    assert main(argv) == 0
    assert "compressed 0, skipped 4 (done before), failed 0" in capsys.readouterr().out
    assert _stats(out) == before, "nothing rewritten"

    (out / "run1.hpcz").unlink()
    damaged = bytearray((out / "run2.hpcz").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # same size, one byte changed
    (out / "run2.hpcz").write_bytes(bytes(damaged))
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "compressed 2, skipped 2 (done before), failed 0" in printed
    assert {line.split(" -> ")[1].split(":")[0] for line in printed.splitlines() if line.startswith("[") and " -> " in line} == {
        "run1.hpcz",
        "run2.hpcz",
    }
    after = _stats(out)
    assert {name for name in after if after[name] == before[name]} == {"run0.hpcz", "run3.hpcz"}
    _check_manifest(out, inputs)

    shutil.rmtree(out / ".compress-records")  # the records lost: the manifest's entries verify the same way
    (runs / "run3.root").write_bytes((runs / "run0.root").read_bytes())  # an input changed since: redone
    before = _stats(out)
    assert main(argv) == 0
    assert "compressed 1, skipped 3 (done before), failed 0" in capsys.readouterr().out
    after = _stats(out)
    assert {name for name in after if after[name] != before[name]} == {"run3.hpcz"}
    _check_manifest(out, inputs)

    back = tmp_path / "back"
    assert main(["decompress", str(out / "manifest.json"), "--model", str(bundle), "-o", str(back)]) == 0
    assert "given back 4, skipped 0" in capsys.readouterr().out
    assert sorted(p.name for p in back.glob("*.root")) == [p.name for p in inputs]
    assert main(["decompress", str(out / "manifest.json"), "-o", str(back)]) == 0, "the bundle the manifest names"
    assert "given back 0, skipped 4" in capsys.readouterr().out


def test_a_dataset_goes_through_the_sweep_backends_as_packed_jobs(bundle, runs, tmp_path, capsys):
    """The debug executor (the driver's process, as SLURM's array tasks would run them): the same manifest."""
    out = tmp_path / "out"
    assert main(["compress", str(runs / "run*.root"), "--model", str(bundle), "-o", str(out), "--executor", "debug", "--pack", "2"]) == 0
    assert "compressed 4, skipped 0 (done before), failed 0" in capsys.readouterr().out
    _check_manifest(out, sorted(runs.glob("*.root")))


def _one_line_error(capsys, expected: str) -> None:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("hpcsweep: error:") and expected in err, err


def test_bad_input_to_a_dataset_is_one_line(bundle, runs, tmp_path, capsys):
    b = str(bundle)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "run0.root").write_bytes((runs / "run0.root").read_bytes())
    (tmp_path / "list.json").write_text('{"files": []}')
    (tmp_path / "broken.json").write_text("{not json")
    mistakes = [
        (["compress", str(tmp_path / "none" / "*.root"), "--model", b, "-o", str(tmp_path / "o")], "*.root: matches no file"),
        (["compress", str(runs / "*.root"), "--model", b, "-o", str(tmp_path / "a_file")], "a_file is a file; several files"),
        (
            ["compress", str(runs / "*.root"), "--model", b, "-o", str(tmp_path / "o.hpcz")],
            "o.hpcz: several files are written into a folder",
        ),
        (
            ["compress", str(runs / "run0.root"), str(tmp_path / "other" / "run0.root"), "--model", b, "-o", str(tmp_path / "o")],
            "would both be compressed as run0.hpcz",
        ),  # fmt: skip
        (["compress", str(runs / "run0.root"), "--model", b, "-o", str(tmp_path / "o.hpcz"), "--pack", "2"], "--pack: for several inputs"),
        (["decompress", str(tmp_path / "list.json"), "-o", str(tmp_path / "o")], "list.json: not a manifest of 'hpcsweep compress'"),
        (["decompress", str(tmp_path / "broken.json"), "-o", str(tmp_path / "o")], "broken.json: not a manifest"),
    ]
    for argv, expected in mistakes:
        assert main(argv) == 2, argv
        _one_line_error(capsys, expected)
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.hpcz").exists()


def _tree(path: Path) -> dict[str, ak.Array]:
    arrays = uproot.open(path)["events"].arrays()
    return {name: arrays[name] for name in arrays.fields}


def test_a_kill_mid_way_loses_nothing_and_the_rerun_redoes_only_the_unfinished_files(bundle, qcd_file, tmp_path, capsys):
    """kill -9 once the first output is there; the rerun skips (does not rewrite) the files finished before the kill,
    writes the others, and every file decodes through the manifest to the tree compressing it alone gives back."""
    runs = _runs(qcd_file, tmp_path / "in", 4, repeat=8)
    out = tmp_path / "out"
    argv = ["compress", str(runs / "*.root"), "--model", str(bundle), "-o", str(out)]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "hpcsweep", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(out.glob("*.hpcz")):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.time() < deadline, "no output appeared"
        time.sleep(0.01)
    process.kill()
    process.wait()
    records = out / ".compress-records"
    finished = {name: stat for name, stat in _stats(out).items() if (records / f"{name}.json").is_file()}
    assert 1 <= len(finished) < 4, f"killed mid-way: {sorted(finished)} of 4 were finished"

    assert main(argv) == 0
    assert f"compressed {4 - len(finished)}, skipped {len(finished)} (done before), failed 0" in capsys.readouterr().out
    after = _stats(out)
    assert all(after[name] == stat for name, stat in finished.items()), "the files finished before the kill were not rewritten"
    inputs = sorted(runs.glob("*.root"))
    _check_manifest(out, inputs)
    assert not list(out.rglob("*.tmp")) and not list((out / ".claims").iterdir()), "no temporary or claim of the killed run is left"

    back = tmp_path / "back"
    assert main(["decompress", str(out / "manifest.json"), "--model", str(bundle), "-o", str(back)]) == 0
    for source in inputs:
        alone = tmp_path / "alone" / source.stem
        assert main(["compress", str(source), "--model", str(bundle), "-o", str(alone.with_suffix(".hpcz"))]) == 0
        assert main(["decompress", str(alone.with_suffix(".hpcz")), "--model", str(bundle), "-o", str(alone.with_suffix(".root"))]) == 0
        ours, theirs = _tree(back / source.name), _tree(alone.with_suffix(".root"))
        assert list(ours) == list(theirs)
        for name in ours:
            if ours[name].ndim > 1:
                assert ak.to_list(ak.num(ours[name])) == ak.to_list(ak.num(theirs[name])), name
            np.testing.assert_array_equal(ak.flatten(ours[name], axis=None).to_numpy(), ak.flatten(theirs[name], axis=None).to_numpy())


@pytest.mark.slurm
def test_a_dataset_runs_as_a_slurm_array_of_two_files_per_task(bundle, runs, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["compress", str(runs / "*.root"), "--model", str(bundle), "-o", str(out), "--executor", "slurm", "--site", SITE, "--pack", "2"]
    assert main(argv) == 0
    assert "compressed 4, skipped 0 (done before), failed 0" in capsys.readouterr().out
    manifest = _check_manifest(out, sorted(runs.glob("*.root")))
    jobs = [entry["job"] for entry in manifest["files"]]
    assert len(set(jobs)) == 2 and all(jobs.count(job) == 2 for job in jobs), f"4 files, 2 per array task: {jobs}"
    assert len({job.split("_")[0] for job in jobs}) == 1 and jobs[0].split("_")[0].isdigit(), "one SLURM job array"
    assert main(argv) == 0
    assert "compressed 0, skipped 4 (done before), failed 0" in capsys.readouterr().out, "verified, not submitted again"


@pytest.mark.slurm
def test_a_rerun_after_the_driver_is_killed_follows_its_array_and_writes_each_file_once(bundle, runs, tmp_path, capsys):
    """kill -9 of the command once its array is submitted: the array goes on; the rerun at once verifies what is done,
    leaves the files the array's tasks hold to them, follows them to their end, and exits 0 with every file done."""
    out = tmp_path / "out"
    argv = ["compress", str(runs / "*.root"), "--model", str(bundle), "-o", str(out), "--executor", "slurm", "--site", SITE]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "hpcsweep", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list((out / ".jobs").glob("*_submitted.pkl")):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.time() < deadline, "nothing submitted"
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "failed 0;" in printed and "unfinished" not in printed and "lists 4 files" in printed, printed
    manifest = _check_manifest(out, sorted(runs.glob("*.root")))
    assert all(entry["job"].split("_")[0].isdigit() for entry in manifest["files"]), "SLURM's tasks wrote them"

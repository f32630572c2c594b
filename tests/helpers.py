"""What tests share besides fixtures (tests/conftest.py): the session's samples, a tiny sweep, small trials and the
checks several modules make. Tests import from here, never from conftest."""

from __future__ import annotations

import subprocess
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import uproot

from hpcsweep.config import TrialConfig, TrialSpec
from hpcsweep.data import cache_jets, load_varset
from hpcsweep.data.generate import Sample

QCD = Sample("qcd", 600, seed=7)
ZPRIME = Sample("zprime", 400, seed=3, zprime_mass=350.0)

#: The tiny real sweep of the end-to-end and review tests (tests/conftest.py `tiny_sweep` runs it once a session).
TINY_SWEEP = """\
name: tiny
data: {events: 600, generator_seed: 7, val_fraction: 0.25}
model: {hidden: [64, 64]}
train: {epochs: 30, batch_size: 256}
codec: {steps: 20}
grid:
  z: [3, 6]
  lr: [1.0e-2, 3.0e-2]
evaluation: {signals: [350], signal_events: 400, timing_repeats: 2}
"""


#: A user's variable set of the leading jet's four-momentum, in MeV in the file (the own-file tests).
ATLAS4 = """\
name: atlas4
description: leading-jet four-momentum, MeV in the file
four_momentum: {pt: pt, eta: eta, phi: phi, mass: m}
variables:
  - {name: m, unit: GeV, unit_scale: 0.001, positive: true, transform: {kind: log10, offset: 1, scale: 1.8}}
  - {name: pt, unit: GeV, unit_scale: 0.001, positive: true, transform: {kind: log10, shift: 1.3, scale: 1.2}}
  - {name: eta, transform: {scale: 5}}
  - {name: phi, unit: rad, residual: phi, transform: {scale: 3}}
"""


def write_flat(path: Path, columns: dict[str, np.ndarray], kind: str) -> Path:
    """Flat columns as a user's file of `kind`: an RNTuple ('rntuple', uproot's default), a TTree, or Parquet."""
    if kind == "rntuple":
        with uproot.recreate(path) as handle:
            handle["jets"] = columns
    elif kind == "ttree":
        with uproot.recreate(path) as handle:
            handle.mktree("jets", {k: v.dtype for k, v in columns.items()}).extend(columns)
    else:
        pd.DataFrame(columns).to_parquet(path)
    return path


def write_tree(path: Path, name: str, branches: dict[str, object]) -> Path:
    """Write a TTree with uproot; jagged branches are given as lists of lists."""
    arrays = {k: ak.values_astype(ak.Array(v), np.float32) if isinstance(v, list) else v for k, v in branches.items()}
    types = {k: (a.type.content if isinstance(a, ak.Array) else a.dtype) for k, a in arrays.items()}
    with uproot.recreate(path) as handle:
        handle.mktree(name, types).extend(arrays)
    return path


#: The compressor every test trial fits, when the test is not about it: few training steps (a second, not ten).
QUICK_CODEC = {"steps": 20}


def trial_spec(
    qcd_file: Path, results: Path, model: dict | None = None, train: dict | None = None, codec: dict | None = None, **spec
) -> TrialSpec:
    """A small trial on the session's QCD sample: 64-64 AE at z=4, 25 epochs, a quick compressor (override any part)."""
    config = TrialConfig.model_validate(
        {
            "data": {"events": QCD.events, "generator_seed": QCD.seed},
            "model": {"hidden": [64, 64], "latent": 4, **(model or {})},
            "train": {"epochs": 25, "batch_size": 256, "lr": 1e-2, **(train or {})},
            "codec": {**QUICK_CODEC, **(codec or {})},
        }
    )
    folder = cache_jets(qcd_file, load_varset("generated"), results.parent / "cache")
    spec = {"evaluation": {"timing_repeats": 1}, **spec}
    return TrialSpec(trial_id=config.identity(), sweep="unit", config=config, dataset=str(folder), results_dir=str(results), **spec)


def race_drivers(command: list[str], timeout: float) -> None:
    """Start two drivers, and a third with --wait-for-lease, at the same moment: at least one is refused (exit 2,
    naming the lease's holder), none fails, and the one that waited ends with 0."""
    drivers = [
        subprocess.Popen(command + extra, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for extra in ([], [], ["--wait-for-lease"])
    ]
    outputs = [driver.communicate(timeout=timeout)[0] for driver in drivers]
    codes = [driver.returncode for driver in drivers]
    refused = [out for code, out in zip(codes, outputs, strict=True) if code == 2]
    assert refused and all("is being run by another hpcsweep driver" in out for out in refused), outputs
    assert all(code in (0, 2) for code in codes) and codes[2] == 0, outputs


def assert_trained_once(folder: Path, trials: int) -> None:
    """Every trial of the folder is done, and its attempts log shows one attempt, which finished."""
    from hpcsweep.store import read_attempts, scan

    summaries, unreadable = scan(folder)
    assert not unreadable and len(summaries) == trials and {s["state"] for s in summaries.values()} == {"done"}
    for trial_id in summaries:
        assert [a.get("outcome") for a in read_attempts(folder, trial_id)] == ["done"], "trained exactly once"


def coder_bundle(folder: Path, data: str, codec: str = "steps: 20") -> Path:
    """The bundle of a one-trial sweep of the learned coder alone in `folder` (no network: seconds), exported by --z 0;
    `data` and `codec` are what the sweep file's mappings hold."""
    from hpcsweep.cli import main

    (folder / "coder.yaml").write_text(
        f"name: coder\ndata: {{{data}}}\nmodel: {{kind: codec}}\ncodec: {{{codec}}}\n"
        "dispatch: {executor: debug}\nevaluation: {signals: [], timing_repeats: 1}\n"
    )
    results = folder / "results"
    assert main(["sweep", str(folder / "coder.yaml"), "--results", str(results), "--no-review"]) == 0
    assert main(["export", "coder", "--results", str(results), "--z", "0", "-o", str(folder / "coder.h5")]) == 0
    return folder / "coder.h5"

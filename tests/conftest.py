"""Shared fixtures: small real samples (Pythia 8 + FastJet), generated once per test session."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hpcsweep import allocation
from hpcsweep.config import TrialConfig, TrialSpec
from hpcsweep.data import cache_jets, load_varset
from hpcsweep.data.generate import Sample, generate

QCD = Sample("qcd", 600, seed=7)
ZPRIME = Sample("zprime", 400, seed=3, zprime_mass=350.0)


def pytest_collection_modifyitems(config, items):
    """Tests marked `slurm` run against a real cluster when one answers, and are skipped with the reason otherwise."""
    from hpcsweep.sweep.slurm import cluster_answers

    if any("slurm" in item.keywords for item in items) and not cluster_answers():
        skip = pytest.mark.skip(reason="no SLURM controller answers (scontrol ping); start one with 'make slurm-up'")
        for item in items:
            if "slurm" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def data_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated samples and caches of the whole session live in one temporary folder."""
    path = tmp_path_factory.mktemp("data")
    os.environ["HPCSWEEP_DATA"] = str(path)
    return path


@pytest.fixture(scope="session")
def qcd_file(data_home: Path) -> Path:
    return generate(QCD, data_home / "generated", progress=False)


@pytest.fixture(scope="session")
def zprime_file(data_home: Path) -> Path:
    return generate(ZPRIME, data_home / "generated", progress=False)


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


@pytest.fixture
def worker_pools(monkeypatch) -> list[int]:
    """The sizes of the worker pools that `allocation.in_processes` starts from now on, in order (the pools are real)."""
    pools: list[int] = []

    class Pool(ProcessPoolExecutor):
        def __init__(self, processes: int, **options) -> None:
            pools.append(processes)
            super().__init__(processes, **options)

    monkeypatch.setattr(allocation, "ProcessPoolExecutor", Pool)
    return pools

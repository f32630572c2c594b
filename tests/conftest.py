"""Shared fixtures: small real samples (Pythia 8 + FastJet), generated once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hpcsweep.data.generate import Sample, generate

QCD = Sample("qcd", 600, seed=7)
ZPRIME = Sample("zprime", 400, seed=3, zprime_mass=350.0)


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

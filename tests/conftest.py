"""Shared fixtures: small real samples (Pythia 8 + FastJet) and a tiny real sweep, made once per test session.
What tests share besides fixtures lives in tests/helpers.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

from hpcsweep import allocation
from hpcsweep.data.generate import generate
from tests.helpers import QCD, TINY_SWEEP, ZPRIME


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


@pytest.fixture(scope="session", autouse=True)
def signal_sample(data_home: Path, request: pytest.FixtureRequest) -> Iterator[Future[Path] | None]:
    """The Z' sample simulated in the background from the session's start, when a collected test asks for it: the
    first tests wait for the QCD sample meanwhile, and the two single-chunk simulations share the cores (6 s less)."""
    if not any("zprime_file" in item.fixturenames for item in request.session.items):
        yield None
        return
    with ThreadPoolExecutor(1) as background:
        yield background.submit(generate, ZPRIME, data_home / "generated", progress=False)


@pytest.fixture(scope="session")
def qcd_file(data_home: Path) -> Path:
    return generate(QCD, data_home / "generated", progress=False)


@pytest.fixture(scope="session")
def zprime_file(signal_sample: Future[Path] | None, data_home: Path) -> Path:
    return signal_sample.result() if signal_sample else generate(ZPRIME, data_home / "generated", progress=False)


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory, qcd_file: Path) -> Path:
    """The folder of tiny.yaml (TINY_SWEEP) and results/tiny, swept once with its review; each module takes a copy
    (shutil.copytree), so that what one changes no other sees."""
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "tiny.yaml").write_text(TINY_SWEEP)
    from hpcsweep.cli import main

    assert main(["sweep", str(folder / "tiny.yaml"), "--results", str(folder / "results")]) == 0
    return folder


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

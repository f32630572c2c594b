"""The notebook API: docs/notebook.md runs as written on a real sweep; numbers come back as numbers; a missing
sweep is an error, not an empty table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import hpcsweep
from hpcsweep.cli import main
from hpcsweep.errors import UserError
from tests.helpers import QCD

DOC = Path(__file__).parents[2] / "docs" / "notebook.md"


@pytest.fixture(scope="module")
def swept(tmp_path_factory, qcd_file) -> Path:
    """A finished two-trial sweep named 'default' (as the doc's example names it) under <tmp>/results."""
    folder = tmp_path_factory.mktemp("notebook")
    sweep_file = folder / "default.yaml"
    sweep_file.write_text(
        f"name: default\ndata: {{events: {QCD.events}, generator_seed: {QCD.seed}}}\nmodel: {{hidden: [32]}}\n"
        "train: {epochs: 3, batch_size: 256}\ncodec: {steps: 20}\ngrid: {z: [2, 3], lr: [1.0e-2]}\nevaluation: {signals: [], timing_repeats: 1}\n"
        "dispatch: {executor: debug}\n"
    )
    assert main(["sweep", str(sweep_file), "--results", str(folder / "results"), "--no-review"]) == 0
    bundle = folder / "best.h5"  # and the generated jets compressed with its best trial, as the doc's last example reads
    assert main(["export", "default", "--results", str(folder / "results"), "--z", "3", "-o", str(bundle)]) == 0
    assert main(["compress", str(qcd_file), "--model", str(bundle), "--embed", "-o", str(folder / "jets.hpcz")]) == 0
    return folder


def test_the_notebook_doc_runs_as_written(swept, monkeypatch):
    """Every Python block of docs/notebook.md, in order, in one namespace, from the folder that holds results/."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(swept)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    assert (swept / "loss_vs_z.png").stat().st_size > 0
    assert tuple(namespace["latent"].shape) == (1000, 3), "the best trial at the largest z encodes 1000 jets into 3 numbers"
    assert 0 < namespace["measure"].reference_mse(namespace["jets"], namespace["decoded"]) < 10
    assert namespace["chunk"].fields == ["jet_pt", "jet_eta"] and 0 < len(namespace["chunk"]) <= 1000


def test_tables_are_numbers_with_snake_case_columns(swept):
    results = hpcsweep.load_sweep(swept / "results" / "default")
    best = results.table()["best"]
    assert list(best["latent"]) == [2, 3]
    for column in ("lr", "weight_decay", "val_loss", "reference_mse", "train_time_s", "pca_reference_mse", "pca_over_ae"):
        assert best[column].dtype == float, column
    assert all(re.fullmatch(r"[a-z0-9_]+", column) for column in best.columns)
    trials = results.trials()
    assert set(trials["state"]) == {"done"} and trials["reference_mse"].dtype == float


def test_a_missing_sweep_raises_saying_where_it_looked(swept, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a notebook in another folder
    with pytest.raises(UserError, match=r"no sweep results at .*results/default .*give the results folder's path"):
        hpcsweep.load_sweep("default")
    with pytest.raises(UserError, match="no sweep results"):
        hpcsweep.load_sweep(tmp_path / "nosuch")
    assert len(hpcsweep.load_sweep("default", results=swept / "results").trials()) == 2

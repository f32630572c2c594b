"""A tiny real sweep end to end: generated jets, submitit's local executor, HDF5 store, tables; then resume."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from hpcsweep.cli import main
from hpcsweep.config import TrialSpec, load_sweep
from hpcsweep.store import read_summary, scan, trial_path
from hpcsweep.sweep import plan
from hpcsweep.sweep.dispatch import record_failure
from tests.helpers import TINY_SWEEP

pytestmark = pytest.mark.slow  # real sweeps, end to end


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, tiny_sweep) -> tuple[Path, Path]:
    """A copy of the session's tiny sweep, swept with its review: this module's to rerun, fail and resume."""
    folder = tmp_path_factory.mktemp("sweep") / "tiny"
    shutil.copytree(tiny_sweep, folder)
    return folder / "tiny.yaml", folder / "results" / "tiny"


def _mtimes(results: Path) -> dict[str, int]:
    return {p.name: os.stat(p).st_mtime_ns for p in (results / "trials").glob("*.h5")}


def test_every_trial_is_done_and_the_ae_beats_pca(finished_sweep):
    _, results = finished_sweep
    summaries, unreadable = scan(results)
    assert not unreadable and len(summaries) == 4
    assert {s["state"] for s in summaries.values()} == {"done"}
    best = pd.read_csv(results / "tables" / "best_per_latent.csv", dtype=str)
    assert best["Latent space dimensions"].tolist() == ["3", "6"]
    ratio = best["PCA / AE"].astype(float)
    assert (ratio > 1).all(), f"the best AE beats PCA at every z: {best.to_dict('records')}"
    trials = pd.read_csv(results / "trials.csv")
    assert len(trials) == 4 and (trials["val_mse"] > 0).all()
    summary = (results / "summary.md").read_text()
    assert all(value in summary for value in best["Reference MSE"]), "the Markdown table shows the CSV's numbers"
    assert (results / "figures" / "loss_vs_latent.png").stat().st_size > 10_000
    assert (results / "sweep.yaml").read_text() == TINY_SWEEP


def test_running_again_reruns_nothing(finished_sweep, capsys):
    sweep_file, results = finished_sweep
    before = _mtimes(results)
    capsys.readouterr()
    assert main(["sweep", str(sweep_file), "--results", str(results.parent)]) == 0
    assert "4 trials; 4 finished, 0 in flight, 0 failed or lost to retry, 0 new" in capsys.readouterr().out
    assert _mtimes(results) == before


def test_a_failed_trial_is_retried_and_the_others_are_kept(finished_sweep):
    sweep_file, results = finished_sweep
    victim = plan(load_sweep(sweep_file), results).trials[0]
    spec = TrialSpec(trial_id=victim.trial_id, sweep="tiny", config=victim.config, dataset="", results_dir=str(results))
    record_failure(spec, RuntimeError("node on fire"))
    assert read_summary(trial_path(results, spec.trial_id))["state"] == "failed"
    before = _mtimes(results)
    assert main(["sweep", str(sweep_file), "--results", str(results.parent), "--executor", "debug"]) == 0
    after = _mtimes(results)
    assert read_summary(trial_path(results, spec.trial_id))["state"] == "done"
    assert {k for k in after if after[k] != before[k]} == {f"{spec.trial_id}.h5"}


def test_status_counts_trials_per_latent_dimension(finished_sweep, capsys):
    sweep_file, results = finished_sweep
    capsys.readouterr()
    assert main(["status", str(sweep_file), "--results", str(results.parent)]) == 0
    out = capsys.readouterr().out
    assert "tiny: 4 trials" in out and re.search(r"^all +4 ", out, flags=re.M), out

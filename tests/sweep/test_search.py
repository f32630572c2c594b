"""Optuna searches: budget, pruning, resume, and stale RUNNING trials of vanished workers."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from optuna.trial import TrialState

from hpcsweep.cli import main
from hpcsweep.config import load_sweep
from hpcsweep.store import scan
from hpcsweep.sweep.search import study_for
from tests.helpers import QCD

pytestmark = pytest.mark.slow  # real sweeps, end to end

SITE = str(Path(__file__).parents[2] / "slurm_templates" / "local.yaml")


def _search(tmp_path: Path, search: str = "tpe", budget: int = 6, pruner: str = "median") -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(
        f"name: searched\ndata: {{events: {QCD.events}, generator_seed: {QCD.seed}}}\n"
        "model: {hidden: [64, 64], latent: 4}\ntrain: {epochs: 30, batch_size: 256}\ncodec: {steps: 20}\n"
        f"search: {search}\nbudget: {budget}\npruner: {pruner}\n"
        "space:\n  lr: {low: 1.0e-3, high: 5.0e-2, log: true}\n  bs: [128, 256]\n"
        "evaluation: {signals: [], timing_repeats: 1}\n"
    )
    return path


def test_a_tpe_search_spends_its_budget_prunes_and_resumes_without_new_work(qcd_file, tmp_path, capsys):
    sweep_file = _search(tmp_path)
    assert main(["sweep", str(sweep_file), "--results", str(tmp_path)]) == 0
    study = study_for(load_sweep(sweep_file), tmp_path / "searched")
    told = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(told) >= 6
    summaries, _ = scan(tmp_path / "searched")
    for trial in told:
        stored = summaries[trial.user_attrs["trial_id"]]
        assert stored["state"] == ("done" if trial.state == TrialState.COMPLETE else "pruned")
        if trial.state == TrialState.COMPLETE:
            assert trial.value == stored["metrics"]["reference_mse"], "the objective is the sweep's yardstick"
        assert stored["config"]["train"]["lr"] == trial.params["train.lr"]
    pruned = [t for t in told if t.state == TrialState.PRUNED]
    assert pruned and all(summaries[t.user_attrs["trial_id"]]["metrics"]["epochs_run"] < 30 for t in pruned)
    capsys.readouterr()
    assert main(["sweep", str(sweep_file), "--results", str(tmp_path)]) == 0
    assert f"{len(told)}/6 trials finished" in capsys.readouterr().out
    assert len(study_for(load_sweep(sweep_file), tmp_path / "searched").trials) == len(study.trials), "nothing new was asked"


def test_a_running_trial_of_a_vanished_worker_is_failed_and_retried(qcd_file, tmp_path):
    sweep_file = _search(tmp_path, search="random", budget=2, pruner="none")
    study = study_for(load_sweep(sweep_file), tmp_path / "searched")
    orphan = study.ask()
    orphan.suggest_float("train.lr", 1e-3, 5e-2, log=True)
    orphan.suggest_categorical("train.batch_size", [128, 256])
    orphan.set_user_attr("job", f"local:{socket.gethostname()}:999999999")  # a worker that no longer exists
    orphan.set_user_attr("pid", 999999999)
    assert main(["sweep", str(sweep_file), "--results", str(tmp_path), "--executor", "debug"]) == 0
    trials = study_for(load_sweep(sweep_file), tmp_path / "searched").trials
    assert trials[orphan.number].state == TrialState.FAIL
    retried = [t for t in trials if t.params == trials[orphan.number].params and t.state == TrialState.COMPLETE]
    assert retried, "the orphan's parameters were run again"


@pytest.mark.slurm
def test_array_tasks_are_search_workers_on_slurm(qcd_file, tmp_path):
    sweep_file = _search(tmp_path, search="random", budget=4, pruner="none")
    assert main(["sweep", str(sweep_file), "--results", str(tmp_path), "--executor", "slurm", "--site", SITE, "--wait"]) == 0
    summaries, _ = scan(tmp_path / "searched")
    jobs = {s["provenance"]["attempts"][0]["job"] for s in summaries.values()}
    assert len(summaries) >= 4 and all("_" in job for job in jobs), jobs


def test_a_search_over_the_coder_alone_ranks_by_the_bytes_it_writes(qcd_file, tmp_path):
    """Codec trials go through Optuna like any other: their objective is the bytes per jet their compressor writes."""
    path = tmp_path / "codec.yaml"
    path.write_text(
        f"name: coder\ndata: {{events: {QCD.events}, generator_seed: {QCD.seed}}}\nmodel: {{kind: codec}}\n"
        "search: random\nbudget: 2\nspace:\n  codec.steps: [10, 30]\n  codec.classes: [4, 12]\nrank_by: bytes\n"
        "evaluation: {signals: [], timing_repeats: 1}\n"
    )
    assert main(["sweep", str(path), "--results", str(tmp_path)]) == 0
    study = study_for(load_sweep(path), tmp_path / "coder")
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    summaries, _ = scan(tmp_path / "coder")
    assert len(done) == 2 and len(summaries) == 2
    for trial in done:
        stored = summaries[trial.user_attrs["trial_id"]]
        assert stored["config"]["model"] == {"kind": "codec", "latent": 0}
        assert trial.value == stored["metrics"]["bytes_per_jet"] > 0
        assert stored["config"]["codec"]["steps"] == trial.params["codec.steps"]

"""Faults without SLURM: a sweep killed with SIGKILL resumes with nothing lost or done twice; concurrent writers."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hpcsweep.cli import main
from hpcsweep.config import load_sweep
from hpcsweep.store import TrialRecord, read_trial, scan, trial_path, trials_dir, write_trial
from hpcsweep.sweep.state import plan

from .conftest import QCD


def _sweep(tmp_path, epochs: int = 250):
    path = tmp_path / "faulty.yaml"
    path.write_text(
        f"name: faulty\ndata: {{events: {QCD.events}, generator_seed: {QCD.seed}}}\n"
        f"model: {{hidden: [128, 128, 128], latent: 4}}\ntrain: {{epochs: {epochs}, batch_size: 128}}\n"
        "grid: {lr: [1.0e-2, 2.0e-2, 3.0e-2, 4.0e-2]}\n"
        "dispatch: {workers: 2, checkpoint_every: 10}\nevaluation: {signals: [], timing_repeats: 1}\n"
    )
    return path


def test_a_sweep_killed_with_sigkill_resumes_with_nothing_lost_or_done_twice(qcd_file, tmp_path):
    sweep_file, results = _sweep(tmp_path), tmp_path / "results"
    driver = subprocess.Popen(
        [sys.executable, "-m", "hpcsweep", "sweep", str(sweep_file), "--results", str(results)],
        start_new_session=True,  # the driver and its local jobs share one process group
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    folder = results / "faulty"
    deadline = time.time() + 300
    while not (list(trials_dir(folder).glob("*.h5")) if trials_dir(folder).exists() else []) or not list(
        (folder / "checkpoints").glob("*.pt")
    ):
        assert driver.poll() is None and time.time() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    while _group_alive(driver.pid):  # SIGKILL is delivered, not yet done: until then the trials still look running
        time.sleep(0.1)
    sweep = load_sweep(sweep_file)
    states = {p.trial_id: p.state for p in plan(sweep, folder).trials}
    finished_before = {t for t, s in states.items() if s == "done"}
    assert finished_before and "lost" in states.values(), states
    stamps = {t: os.stat(trial_path(folder, t)).st_mtime_ns for t in finished_before}

    assert main(["sweep", str(sweep_file), "--results", str(results)]) == 0
    summaries, unreadable = scan(folder)
    assert not unreadable and {s["state"] for s in summaries.values()} == {"done"} and len(summaries) == 4
    assert {t: os.stat(trial_path(folder, t)).st_mtime_ns for t in finished_before} == stamps, "finished trials were not redone"
    resumed = [s["metrics"]["resumed_from_epoch"] for t, s in summaries.items() if t not in finished_before]
    assert any(epoch > 0 for epoch in resumed), "a killed trial resumed from its checkpoint"
    for summary in summaries.values():
        outcomes = [a.get("outcome") for a in summary["provenance"]["attempts"]]
        assert outcomes.count("done") == 1, outcomes
    assert not list((folder / "checkpoints").glob("*.pt"))


def _group_alive(group: int) -> bool:
    """Any process of the group that is not a zombie."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def _write_many(folder: str, writer: int) -> None:
    for k in range(5):
        for trial_id in (f"w{writer}-{k}", "shared"):
            write_trial(
                trial_path(folder, trial_id),
                TrialRecord(
                    trial_id=trial_id,
                    sweep="race",
                    state="done",
                    config={"writer": writer},
                    weights={"w": np.full((200, 200), writer, np.float32)},
                ),
            )


def test_eight_concurrent_writers_leave_a_readable_store(tmp_path):
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(tmp_path), w)) for w in range(8)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    summaries, unreadable = scan(tmp_path)
    assert not unreadable and len(summaries) == 41
    shared = read_trial(trial_path(tmp_path, "shared"))
    assert np.all(shared.weights["w"] == shared.config["writer"]), "the shared trial is one writer's whole file"
    assert not [p for p in trials_dir(tmp_path).iterdir() if p.suffix != ".h5"], "no temporary file is left"


def test_a_change_that_would_not_compare_is_refused_with_the_exact_difference(qcd_file, tmp_path, capsys):
    sweep_file = _sweep(tmp_path, epochs=2)
    assert main(["sweep", str(sweep_file), "--results", str(tmp_path), "--executor", "debug"]) == 0
    folder = tmp_path / "faulty"
    before = {p.name: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    original = sweep_file.read_text()
    sweep_file.write_text(original.replace("evaluation: {", "evaluation: {reference: standard, "))
    capsys.readouterr()
    assert main(["sweep", str(sweep_file), "--results", str(tmp_path), "--executor", "debug"]) == 2
    err = capsys.readouterr().err
    assert (
        "holds trials of sweep 'faulty' that would not compare with this definition's (evaluation.reference: 'auto' there, 'standard' here)"
        in err
    )
    assert "give this one another name" in err and len(err.strip().splitlines()) == 1
    sweep_file.write_text(original)
    assert main(["sweep", str(sweep_file), "--results", str(tmp_path), "--executor", "debug", "--set", "data.val_fraction=0.3"]) == 2, (
        "overrides do not hide it"
    )
    assert "(data.val_fraction: 0.2 there, 0.3 here)" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before, "nothing was written"

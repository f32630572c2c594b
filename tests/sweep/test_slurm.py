"""Real jobs on a real SLURM cluster (make slurm-up): arrays, time-outs, kills, GPUs, divergence."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcsweep.cli import main
from hpcsweep.config import load_sweep
from hpcsweep.store import jobs_path, read_attempts, read_trial, scan, trial_path
from hpcsweep.sweep import run_sweep
from hpcsweep.sweep.state import plan
from hpcsweep.trial import run_trial
from tests.helpers import QCD, assert_trained_once, race_drivers

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SITE = str(Path(__file__).parents[2] / "slurm_templates" / "local.yaml")


def _sweep_file(
    folder: Path, name: str, grid: str, train: str = "{epochs: 20, batch_size: 256}", model: str = "{hidden: [64, 64], latent: 4}"
) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n"
        f"data: {{events: {QCD.events}, generator_seed: {QCD.seed}}}\n"
        f"model: {model}\ntrain: {train}\ncodec: {{steps: 20}}\ngrid: {grid}\n"
        "evaluation: {signals: [], timing_repeats: 1}\n"
    )
    return path


def _wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def _on_slurm_and_locally(sweep_file: Path, tmp_path: Path) -> tuple[dict, dict]:
    """The summaries of one sweep run as SLURM job arrays (tmp_path/slurm) and through the local executor (tmp_path/local)."""
    runs = []
    for executor in ("slurm", "local"):
        options = ["--site", SITE, "--wait"] if executor == "slurm" else []
        assert main(["sweep", str(sweep_file), "--results", str(tmp_path / executor), "--executor", executor, *options]) == 0
        runs.append(scan(tmp_path / executor / sweep_file.stem)[0])
    return runs[0], runs[1]


def test_an_array_of_8_trials_finishes_like_the_local_executor(qcd_file, tmp_path, capsys):
    sweep_file = _sweep_file(tmp_path, "array", "{z: [2, 4], lr: [1.0e-2, 3.0e-2], wd: [0, 1.0e-4]}")
    slurm = tmp_path / "slurm"
    on_slurm, on_local = _on_slurm_and_locally(sweep_file, tmp_path)
    assert len(on_slurm) == 8 and {s["state"] for s in on_slurm.values()} == {"done"}
    jobs = {a["job"] for trial in on_slurm for a in on_slurm[trial]["provenance"]["attempts"]}
    assert len(jobs) == 8 and len({j.split("_")[0] for j in jobs}) == 1, "one job array of 8 tasks"
    for trial_id, summary in on_slurm.items():
        assert summary["metrics"]["best_val_mse"] == on_local[trial_id]["metrics"]["best_val_mse"], "same config and seed, same result"
    submissions = jobs_path(slurm / "array").read_text()
    capsys.readouterr()
    assert main(["sweep", str(sweep_file), "--results", str(slurm), "--executor", "slurm", "--site", SITE, "--wait"]) == 0
    assert "8 finished, 0 in flight, 0 failed or lost to retry, 0 new" in capsys.readouterr().out
    assert jobs_path(slurm / "array").read_text() == submissions, "nothing was submitted again"


def test_the_coder_alone_runs_as_an_array_task_like_any_trial(qcd_file, tmp_path):
    """A codec trial (no network) beside an AE in one array: both finish, and the coder's bytes are those of the same
    trial run locally (its fitting is seeded)."""
    on_slurm, on_local = _on_slurm_and_locally(_sweep_file(tmp_path, "coder", "{model.kind: [codec, ae], z: [2]}"), tmp_path)
    assert len(on_slurm) == 2 and {s["state"] for s in on_slurm.values()} == {"done"}
    (coder,) = [t for t, s in on_slurm.items() if s["config"]["model"]["kind"] == "codec"]
    assert on_slurm[coder]["metrics"]["bytes_per_jet"] == on_local[coder]["metrics"]["bytes_per_jet"]
    assert on_slurm[coder]["provenance"]["attempts"][0]["job"].split("_")[0].isdigit(), "a SLURM job ran it"


def test_two_drivers_started_at_once_on_slurm_train_every_trial_exactly_once(qcd_file, tmp_path):
    sweep_file = _sweep_file(tmp_path, "twice", "{z: [2, 4], lr: [1.0e-2, 3.0e-2]}", train="{epochs: 10, batch_size: 256}")
    command = [
        sys.executable,
        "-m",
        "hpcsweep",
        "sweep",
        str(sweep_file),
        "--results",
        str(tmp_path),
        "--executor",
        "slurm",
        "--site",
        SITE,
    ]
    race_drivers([*command, "--wait", "--no-review"], timeout=900)
    assert_trained_once(tmp_path / "twice", 4)
    assert len(jobs_path(tmp_path / "twice").read_text().splitlines()) == 1, "one driver submitted"


def test_packing_runs_several_trials_per_array_task(qcd_file, tmp_path):
    sweep_file = _sweep_file(tmp_path, "packed", "{z: [2, 4], lr: [1.0e-2, 3.0e-2]}")
    assert main(["sweep", str(sweep_file), "--results", str(tmp_path), "--executor", "slurm", "--site", SITE, "--pack", "2", "--wait"]) == 0
    summaries, _ = scan(tmp_path / "packed")
    jobs = [s["provenance"]["attempts"][0]["job"] for s in summaries.values()]
    assert len(summaries) == 4 and len(set(jobs)) == 2


def test_arrays_are_split_at_max_array(qcd_file, tmp_path):
    sweep_file = _sweep_file(tmp_path, "split", "{z: [2, 4], lr: [1.0e-2, 3.0e-2]}")
    sweep_file.write_text(sweep_file.read_text() + "dispatch: {max_array: 3}\n")
    assert main(["sweep", str(sweep_file), "--results", str(tmp_path), "--executor", "slurm", "--site", SITE, "--wait"]) == 0
    summaries, _ = scan(tmp_path / "split")
    arrays = {s["provenance"]["attempts"][0]["job"].split("_")[0] for s in summaries.values()}
    assert len(summaries) == 4 and len(arrays) == 2, "4 tasks as arrays of at most 3"


def test_a_trial_that_hits_its_time_limit_is_requeued_and_resumes_to_the_same_result(qcd_file, tmp_path):
    # ~60 s of training (on an idle core) against a 1-minute limit: SIGUSR2 20 s before it (slurmctld checks limits
    # every 30 s, so each run gets 10 to 50 s), checkpoint, requeue (up to 10 times here), resume
    sweep_file = _sweep_file(
        tmp_path, "timeout", "{z: [4]}", train="{epochs: 2000, batch_size: 128}", model="{hidden: [128, 128, 128], latent: 4}"
    )
    site = tmp_path / "site.yaml"
    site.write_text(Path(SITE).read_text().replace("max_requeue: 3", "max_requeue: 10"))
    definition = load_sweep(sweep_file).with_overrides(
        dispatch={"executor": "slurm", "site": str(site), "time": "1", "checkpoint_every": 50}
    )
    run_sweep(definition, tmp_path / "timeout", source=sweep_file, wait=False, progress=False, log=lambda _: None)
    trial = plan(definition, tmp_path / "timeout").trials[0].config  # with its data version
    reference = tmp_path / "reference"
    run_trial(_spec(definition, trial, reference), threads=1, log=lambda _: None)  # the uninterrupted run, meanwhile
    path = trial_path(tmp_path / "timeout", trial.identity())
    _wait_until(path.exists, 900, "the requeued trial to finish")
    record, expected = read_trial(path), read_trial(trial_path(reference, trial.identity()))
    attempts = record.provenance["attempts"]
    assert len(attempts) >= 2 and attempts[0]["outcome"] == "checkpointed: time limit"
    assert attempts[0]["job"] == attempts[-1]["job"], "requeued as the same array task"
    assert record.metrics["resumed_from_epoch"] > 0
    assert record.metrics["best_val_mse"] == pytest.approx(expected.metrics["best_val_mse"], rel=1e-6)


def _spec(sweep, trial, results: Path):
    """A spec like the driver's for `trial`, writing into `results`."""
    from hpcsweep.config import TrialSpec
    from hpcsweep.data import prepare

    return TrialSpec(trial_id=trial.identity(), sweep=sweep.name, config=trial, dataset=str(prepare(trial.data, progress=False)),
                     results_dir=str(results), checkpoint_every=50, evaluation=sweep.evaluation)  # fmt: skip


def test_a_killed_job_is_seen_lost_and_retried(qcd_file, tmp_path):
    sweep_file = _sweep_file(tmp_path, "killed", "{z: [4]}", train="{epochs: 3000, batch_size: 128}")
    results = tmp_path / "killed"
    definition = load_sweep(sweep_file).with_overrides(dispatch={"executor": "slurm", "site": SITE, "checkpoint_every": 20})
    run_sweep(definition, results, source=sweep_file, wait=False, progress=False, log=lambda _: None)
    trial_id = plan(definition, results).trials[0].trial_id
    _wait_until(lambda: (results / "checkpoints" / f"{trial_id}.pt").exists(), 120, "the first checkpoint")
    job = read_attempts(results, trial_id)[-1]["job"]
    assert plan(definition, results).trials[0].state == "running"
    subprocess.run(["scancel", "--signal=KILL", job], check=True)
    _wait_until(lambda: plan(definition, results).trials[0].state == "lost", 60, "the trial to be seen lost")
    assert plan(definition, results).trials[0].detail.startswith(job), "status names the vanished job (and its accounting state)"
    run_sweep(definition, results, source=sweep_file, wait=False, progress=False, log=lambda _: None)
    assert plan(definition, results).trials[0].state in ("queued", "running"), "the lost trial went out again"
    retry = [job for line in jobs_path(results).read_text().splitlines()[1:] for job in json.loads(line)["tasks"]]
    assert len(retry) == 1 and retry[0] != job
    subprocess.run(["scancel", retry[0]], check=False)


def test_a_gpu_partition_request_carries_the_gpu_gres(qcd_file, tmp_path):
    sweep_file = _sweep_file(tmp_path, "gpu", "{z: [4]}", train="{epochs: 2, batch_size: 256}")
    assert (
        main(["sweep", str(sweep_file), "--results", str(tmp_path), "--executor", "slurm", "--site", SITE, "--partition", "gpu", "--wait"])
        == 0
    )
    (summary,) = scan(tmp_path / "gpu")[0].values()
    (attempt,) = summary["provenance"]["attempts"]
    assert attempt["partition"] == "gpu", "the job ran in the gpu partition (SLURM_JOB_PARTITION)"
    assert summary["provenance"]["gpus_allocated"] != "", "SLURM allocated it a (fake) GPU"
    assert summary["provenance"]["device"] == "cpu", "no CUDA here: the trial fell back to the CPU"
    assert summary["provenance"]["gpus_allocated"] != "", "the job saw the GPU it was given"
    assert summary["provenance"]["device"] == "cpu", "no CUDA here: the device follows what is visible"


def test_a_diverging_trial_is_recorded_while_the_others_finish(qcd_file, tmp_path):
    sweep_file = _sweep_file(tmp_path, "diverging", "{lr: [1.0e-2, 1.0e+12, 3.0e-2]}")
    assert main(["sweep", str(sweep_file), "--results", str(tmp_path), "--executor", "slurm", "--site", SITE, "--wait"]) == 0
    states = sorted(s["state"] for s in scan(tmp_path / "diverging")[0].values())
    assert states == ["diverged", "done", "done"]


def test_slurm_mistakes_are_one_line_errors_before_anything_is_submitted(qcd_file, tmp_path, capsys):
    sweep_file = _sweep_file(tmp_path, "bad", "{z: [4]}")
    base = ["sweep", str(sweep_file), "--results", str(tmp_path), "--executor", "slurm"]
    cases = [
        (["--site", "atlantis"], "unknown site 'atlantis'"),
        (["--site", SITE, "--partition", "bigmem"], "unknown partition 'bigmem' for site"),
        (["--site", SITE, "--time", "2h"], "'2h' is not a SLURM time"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    huge = tmp_path / "huge.yaml"
    huge.write_text(sweep_file.read_text().replace("name: bad", "name: huge") + "dispatch: {max_array: 5000}\n")
    assert main(["sweep", str(huge), "--results", str(tmp_path), "--executor", "slurm", "--site", SITE]) == 2
    assert "dispatch.max_array = 5000 exceeds the cluster's MaxArraySize - 1; valid choices: 1..1000" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and not (tmp_path / "huge").exists(), "nothing was started"

"""Faults without SLURM: kills at any moment, damaged files, full disks, huge grids, failing trials, two drivers at once."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpcsweep.cli import main
from hpcsweep.config import load_sweep
from hpcsweep.store import TrialRecord, read_attempts, read_summary, read_trial, rebuild_index, scan, trial_path, trials_dir, write_trial
from hpcsweep.sweep.state import plan
from hpcsweep.trial import run_trial
from tests.helpers import QCD, assert_trained_once, race_drivers, trial_spec


def _sweep(tmp_path, epochs: int = 250):
    path = tmp_path / "faulty.yaml"
    path.write_text(
        f"name: faulty\ndata: {{events: {QCD.events}, generator_seed: {QCD.seed}}}\n"
        f"model: {{hidden: [128, 128, 128], latent: 4}}\ntrain: {{epochs: {epochs}, batch_size: 128}}\ncodec: {{steps: 20}}\n"
        "grid: {lr: [1.0e-2, 2.0e-2, 3.0e-2, 4.0e-2]}\n"
        "dispatch: {workers: 2, checkpoint_every: 10}\nevaluation: {signals: [], timing_repeats: 1}\n"
    )
    return path


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_driver_killed_alone_leaves_workers_that_the_next_driver_follows_to_the_end(qcd_file, tmp_path, capsys):
    """SIGKILL to the driver only: its local workers go on. The next `sweep` finds their trials running, follows them
    to their end (instead of returning at once with 'in flight' and exit 0), and exits 0 with every trial trained once."""
    sweep_file, results = _sweep(tmp_path, epochs=120), tmp_path / "results"
    driver = subprocess.Popen(
        [sys.executable, "-m", "hpcsweep", "sweep", str(sweep_file), "--results", str(results), "--no-review"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    folder = results / "faulty"
    deadline = time.time() + 300
    while not list((folder / "progress").glob("*.json")) if (folder / "progress").exists() else True:
        assert driver.poll() is None and time.time() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.2)
    os.kill(driver.pid, signal.SIGKILL)  # the driver alone: its workers, in its process group, go on
    driver.wait()
    assert _group_alive(driver.pid), "the workers outlive their driver"
    capsys.readouterr()
    assert main(["sweep", str(sweep_file), "--results", str(results), "--no-review"]) == 0
    assert "following them to their end" in capsys.readouterr().out
    assert_trained_once(folder, 4)
    os.killpg(driver.pid, signal.SIGKILL) if _group_alive(driver.pid) else None


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


@pytest.mark.slow
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


@pytest.mark.slow
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


def _tiny(tmp_path: Path, name: str = "tiny", grid: str = "{lr: [1.0e-2]}", extra: str = "", executor: str = "debug") -> Path:
    """A sweep of short trials on the session's sample (debug executor: they run inside the command)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\ndata: {{events: {QCD.events}, generator_seed: {QCD.seed}}}\n"
        f"model: {{hidden: [32, 32], latent: 3}}\ntrain: {{epochs: 4, batch_size: 256}}\ncodec: {{steps: 20}}\ngrid: {grid}\n"
        f"dispatch: {{executor: {executor}, workers: 2}}\nevaluation: {{signals: [], timing_repeats: 1}}\n{extra}"
    )
    return path


def _leftovers(folder: Path) -> list[Path]:
    """Temporary files and claims left in a results folder."""
    return [*folder.rglob("*.tmp"), *folder.rglob("*.claim")]


@pytest.mark.slow
def test_a_kill_between_the_trial_file_and_its_done_line_does_not_train_it_again(qcd_file, tmp_path):
    sweep_file, results = _tiny(tmp_path), tmp_path / "results"
    script = (
        "import os, signal, sys\nimport hpcsweep.trial.run as trial\n"
        "trial.close_attempt = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # killed right after the file is in place\n"
        "from hpcsweep.cli import main\nmain(sys.argv[1:])\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, "sweep", str(sweep_file), "--results", str(results), "--no-review"])
    assert killed.returncode == -signal.SIGKILL
    folder = results / "tiny"
    (path,) = trials_dir(folder).glob("*.h5")
    assert "end" not in read_attempts(folder, path.stem)[-1], "the attempt's end was never logged"
    stamp = path.stat().st_mtime_ns
    assert main(["sweep", str(sweep_file), "--results", str(results), "--no-review"]) == 0
    assert path.stat().st_mtime_ns == stamp and len(read_attempts(folder, path.stem)) == 1, "the finished trial was not trained again"
    assert [a["outcome"] for a in read_summary(path)["provenance"]["attempts"]] == ["done"]
    assert not _leftovers(folder), "the dead driver's lease and the trial's claim were tidied"


def test_a_trial_file_with_garbage_weights_fails_its_checksum_and_is_retrained(qcd_file, tmp_path, capsys):
    sweep_file, results = _tiny(tmp_path), tmp_path / "results"
    assert main(["sweep", str(sweep_file), "--results", str(results), "--no-review"]) == 0
    folder = results / "tiny"
    (path,) = trials_dir(folder).glob("*.h5")
    with h5py.File(path, "r+") as handle:  # still valid HDF5, wrong numbers
        weights = handle["weights"][next(iter(handle["weights"]))]
        weights[...] = np.random.default_rng(0).normal(size=weights.shape)
    summaries, unreadable = scan(folder)
    assert not summaries and "checksum mismatch" in unreadable[0]
    with pytest.raises(ValueError, match="checksum mismatch"):
        read_trial(path)
    capsys.readouterr()
    assert main(["sweep", str(sweep_file), "--results", str(results), "--no-review"]) == 0
    assert "unreadable trial file, it will be rerun" in capsys.readouterr().out
    assert read_trial(path).state == "done" and len(read_attempts(folder, path.stem)) == 2


def test_bit_rot_that_keeps_size_and_time_is_found_by_verify_and_by_the_next_sweep(qcd_file, tmp_path, capsys):
    """A byte of the weights flipped in place, the file's size and mtime kept: the index still trusts it, `status
    --verify` and `aggregate --verify` see the checksum fail, and the next sweep (which verifies as it starts) retrains it."""
    sweep_file, results = _tiny(tmp_path), tmp_path / "results"
    command = ["sweep", str(sweep_file), "--results", str(results), "--no-review"]
    assert main(command) == 0
    folder = results / "tiny"
    (path,) = trials_dir(folder).glob("*.h5")
    rebuild_index(folder)  # the index a review leaves
    with h5py.File(path, "r") as handle:
        dataset = handle["weights"][next(iter(handle["weights"]))]
        offset = dataset.id.get_offset()
    stat = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x40]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert scan(folder)[0], "without a new look the index trusts the file"
    capsys.readouterr()
    assert main(["status", str(sweep_file), "--results", str(results), "--verify"]) == 0
    assert "unreadable trial file" in capsys.readouterr().out and not scan(folder)[0]
    assert main(command) == 0
    assert read_trial(path).state == "done" and len(read_attempts(folder, path.stem)) == 2, "retrained"


def test_a_trial_file_replaced_by_another_trials_is_set_aside_and_the_trial_retrained(qcd_file, tmp_path, capsys):
    """`cp trials/B.h5 trials/A.h5`: a valid file of the wrong trial. It is reported (unreadable: which trial it holds),
    set aside to damaged/ with why, and A is trained again; the rerun ends with both trials in the tables."""
    sweep_file, results = _tiny(tmp_path, grid="{lr: [1.0e-2, 2.0e-2]}"), tmp_path / "results"
    command = ["sweep", str(sweep_file), "--results", str(results), "--no-review"]
    assert main(command) == 0
    folder = results / "tiny"
    first, second = sorted(trials_dir(folder).glob("*.h5"))
    shutil.copyfile(second, first)
    summaries, unreadable = scan(folder)
    assert set(summaries) == {second.stem} and f"holds trial {second.stem!r}, not {first.stem!r}" in unreadable[0]
    capsys.readouterr()
    assert main(command) == 0
    captured = capsys.readouterr()
    assert "unreadable trial file, it will be rerun" in captured.out and "set aside to" in captured.err
    assert read_trial(first).trial_id == first.stem and len(read_attempts(folder, first.stem)) == 2, "trained again"
    (aside,) = (folder / "damaged").glob("*.h5")
    assert aside.name.startswith(first.stem) and read_trial(aside).trial_id == second.stem, "the foreign file is kept"
    assert set(scan(folder)[0]) == {first.stem, second.stem} and not scan(folder)[1]
    edited = read_trial(first)
    edited.config = read_trial(second).config  # its own id, another trial's settings, a checksum that holds
    write_trial(first, edited)
    assert main(command) == 0
    assert "holds a config that hashes to" in capsys.readouterr().err and len(read_attempts(folder, first.stem)) == 3
    assert read_trial(first).config != read_trial(second).config, "retrained with its own settings"


def test_a_logs_folder_that_others_may_write_is_made_private_before_jobs_read_it(qcd_file, tmp_path, capsys):
    """submitit's job files in logs/ are unpickled by the jobs: a logs/ that others may write is an injection path."""
    import stat

    sweep_file, results = _tiny(tmp_path), tmp_path / "results"
    logs = results / "tiny" / "logs"
    logs.mkdir(parents=True)
    os.chmod(logs, 0o777)
    assert main(["sweep", str(sweep_file), "--results", str(results), "--no-review"]) == 0
    assert stat.S_IMODE(logs.stat().st_mode) & 0o022 == 0
    assert "writable by you alone (it was drwxrwxrwx)" in capsys.readouterr().out


def test_a_damaged_checkpoint_starts_the_trial_over(qcd_file, tmp_path, capsys):
    spec = trial_spec(qcd_file, tmp_path / "results", train={"epochs": 3})
    checkpoint = tmp_path / "results" / "checkpoints" / f"{spec.trial_id}.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"PK\x03\x04 not a checkpoint")
    assert run_trial(spec, threads=1) == "done"
    assert "is damaged" in capsys.readouterr().out
    assert read_summary(trial_path(tmp_path / "results", spec.trial_id))["metrics"]["resumed_from_epoch"] == 0


def test_a_grid_of_a_million_points_is_refused_in_under_a_second(tmp_path, capsys):
    axes = ["train.lr", "train.weight_decay", "train.batch_size", "train.seed", "model.latent", "train.epochs"]
    grid = "{" + ", ".join(f"{axis}: [{', '.join(str(v) for v in range(1, 11))}]" for axis in axes) + "}"
    sweep_file = _tiny(tmp_path, "huge", grid=grid)
    for command in ("sweep", "status"):
        began = time.perf_counter()
        assert main([command, str(sweep_file), "--results", str(tmp_path / "results")]) == 2
        assert time.perf_counter() - began < 1.0
        err = capsys.readouterr().err
        assert "the grid has 1,000,000 points, more than max_trials = 10,000" in err and "--allow-large" in err
    assert not (tmp_path / "results").exists()


def test_a_trial_that_always_fails_is_given_up_after_max_attempts_and_status_says_why(qcd_file, tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr("hpcsweep.trial.run.train", broken)  # a fault the trial cannot get past (debug executor: in this process)
    sweep_file, results = _tiny(tmp_path, "doomed", extra="max_attempts: 2\n"), tmp_path / "results"
    command = ["sweep", str(sweep_file), "--results", str(results), "--no-review"]
    assert main(command) == 1 and main(command) == 1
    capsys.readouterr()
    assert main(command) == 1, "given up: nothing was run, and the sweep is not a success"
    out = capsys.readouterr()
    assert "1 trials failed 2 times and are not retried" in out.out and "only with --retry-failed" in out.err
    folder = results / "doomed"
    (path,) = trials_dir(folder).glob("*.h5")
    assert len(read_attempts(folder, path.stem)) == 2
    assert main(["status", str(sweep_file), "--results", str(results), "--wide"]) == 0  # the reason on one line
    out = capsys.readouterr().out
    assert "exhausted" in out and "2/2" in out and "error: RuntimeError: CUDA error: an illegal memory access was encountered" in out
    assert main([*command, "--retry-failed"]) == 1
    assert len(read_attempts(folder, path.stem)) == 3, "--retry-failed gives it a fresh budget"


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs (root only): a disk that fills."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], capture_output=True).returncode
    ):
        pytest.skip("a small tmpfs needs root and permission to mount")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def _fill(folder: Path, leave: int) -> Path:
    """Fill the disk of `folder` until about `leave` bytes are free."""
    filler = folder / "filler"
    with open(filler, "wb") as handle:
        try:
            while shutil.disk_usage(folder).free > leave:
                handle.write(b"\0" * min(65536, shutil.disk_usage(folder).free - leave or 4096))
                handle.flush()
        except OSError:
            pass
    return filler


@pytest.mark.parametrize("checkpoint_every", [1, 1000], ids=["checkpoint", "trial file"])
def test_a_full_disk_keeps_the_files_there_leaves_no_temporaries_and_the_trial_runs_later(
    qcd_file, small_disk, tmp_path, capsys, checkpoint_every
):
    grid = "{lr: [1.0e-2, 2.0e-2]}"
    sweep_file = _tiny(
        tmp_path, "full", grid="{lr: [1.0e-2]}", extra=f"dispatch: {{executor: debug, checkpoint_every: {checkpoint_every}}}\n"
    )
    sweep_file.write_text(sweep_file.read_text().replace("dispatch: {executor: debug, workers: 2}\n", "").replace("[32, 32]", "[256, 256]"))
    command = ["sweep", str(sweep_file), "--results", str(small_disk), "--no-review"]
    assert main(command) == 0
    folder = small_disk / "full"
    (first,) = trials_dir(folder).glob("*.h5")
    before = read_trial(first)
    sweep_file.write_text(sweep_file.read_text().replace("{lr: [1.0e-2]}", grid))
    filler = _fill(small_disk, leave=64 * 1024)  # room for the driver's small files, not for a checkpoint or trial file
    capsys.readouterr()
    assert main(command) == 1
    assert "trials failed" in capsys.readouterr().err
    assert read_trial(first).metrics == before.metrics, "the finished trial's file is intact"
    assert not list(folder.rglob("*.tmp")), "no temporary is left"
    assert main(["status", str(sweep_file), "--results", str(small_disk)]) == 0
    assert "disk full" in capsys.readouterr().out, "status says why"
    filler.unlink()
    assert main(command) == 0
    summaries, unreadable = scan(folder)
    assert not unreadable and [s["state"] for s in summaries.values()] == ["done", "done"]


@pytest.mark.slow
def test_a_full_disk_during_aggregate_is_one_line_exit_2_and_leaves_no_half_file(qcd_file, small_disk, tmp_path, capsys):
    sweep_file = _tiny(tmp_path, "tables")
    assert main(["sweep", str(sweep_file), "--results", str(small_disk), "--no-review"]) == 0
    filler = _fill(small_disk, leave=0)
    capsys.readouterr()
    assert main(["aggregate", "tables", "--results", str(small_disk)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("hpcsweep: error: ")
        and err.count("\n") == 1
        and "No space left on device" in err
        and "finished trials are kept" in err
    )
    assert not list((small_disk / "tables").rglob("*.tmp")), "no temporary is left"
    filler.unlink()
    assert main(["aggregate", "tables", "--results", str(small_disk)]) == 0


@pytest.mark.slow
def test_two_drivers_started_at_once_train_every_trial_exactly_once(qcd_file, tmp_path):
    sweep_file, results = _tiny(tmp_path, "twice", grid="{lr: [1.0e-2, 2.0e-2, 3.0e-2, 4.0e-2]}", executor="local"), tmp_path / "results"
    race_drivers([sys.executable, "-m", "hpcsweep", "sweep", str(sweep_file), "--results", str(results), "--no-review"], timeout=600)
    folder = results / "twice"
    assert_trained_once(folder, 4)
    assert not _leftovers(folder)

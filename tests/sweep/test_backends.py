"""Backends: the plug-in point for where jobs run. A fake backend (no training: each trial's outcome is scripted)
pins the sweep's resume, retry and lost-job logic in seconds; a toy backend shows what adding one takes."""

from __future__ import annotations

import errno
import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hpcsweep.config import validate_sweep
from hpcsweep.errors import UserError
from hpcsweep.states import TrialState
from hpcsweep.store import TrialRecord, close_attempt, ended_attempts, read_attempts, trial_path, write_trial
from hpcsweep.sweep import Backend, backend, backend_names, plan, register, run_sweep
from hpcsweep.sweep.backends import JobTeller, unregister
from tests.helpers import QCD

GRID = {"z": [1, 2], "lr": [1e-3, 1e-2]}


class Vanished(BaseException):
    """The job died under the trial (kill -9, node failure): nothing in the trial catches it."""


class FakeJob:
    def __init__(self, job_id: str):
        self.job_id = job_id

    def done(self) -> bool:
        return True

    def result(self) -> None:
        return None

    def cancel(self, check: bool = True) -> None:
        return None


class FakeBackend(Backend):
    """Runs each job at once in this process under a job name of its own; `live` says which jobs still live."""

    name = "fake"
    live: set[str] = set()
    numbers = itertools.count()

    def submit(self, function, arguments, dispatch, log_dir):
        import hpcsweep.store

        jobs = []
        for args in arguments:
            job = FakeJob(f"fake:{next(self.numbers)}")
            self.live.add(job.job_id)
            saved, hpcsweep.store.this_job = hpcsweep.store.this_job, lambda job=job: job.job_id  # the job's name in the logs
            try:
                function(*args)
            except Vanished:
                self.live.discard(job.job_id)
            finally:
                hpcsweep.store.this_job = saved
            jobs.append(job)
        return jobs

    def job_name(self, job):
        return job.job_id

    @staticmethod
    def owns(job):
        return job.startswith("fake:")

    def alive(self, job, pid=None):
        return job in self.live


@pytest.fixture
def fake(monkeypatch, qcd_file):
    """The fake backend registered, and trials whose outcome the test scripts (trial id -> done | fail | disk full | vanish)."""
    script: dict[str, str] = {}
    ran: list[str] = []

    def run_trial(spec, threads=None, log=print, report=None, still_ours=None):
        ran.append(spec.trial_id)
        outcome = script.get(spec.trial_id, "done")
        if outcome == "fail":
            raise RuntimeError("scripted failure")
        if outcome == "disk full":
            raise OSError(errno.ENOSPC, "No space left on device")
        if outcome == "vanish":
            raise Vanished
        results = Path(spec.results_dir)
        record = TrialRecord(spec.trial_id, spec.sweep, TrialState.DONE, spec.config.model_dump(mode="json"), metrics={"best_val_mse": 1.0})
        record.provenance["attempts"] = ended_attempts(results, spec.trial_id, "done")
        write_trial(trial_path(results, spec.trial_id), record)
        close_attempt(results, spec.trial_id, "done")
        return TrialState.DONE

    monkeypatch.setattr("hpcsweep.trial.run_trial", run_trial)
    register(FakeBackend)
    FakeBackend.live.clear()
    yield script, ran
    unregister("fake")


def _sweep(executor: str, **extra):
    raw = {
        "name": "fake",
        "data": {"events": QCD.events, "generator_seed": QCD.seed},
        "model": {"hidden": [8]},
        "train": {"epochs": 1},
        "codec": {"steps": 20},
        "grid": GRID,
        "evaluation": {"signals": []},
        "dispatch": {"executor": executor, "workers": 4},  # one job per trial
        **extra,
    }
    return validate_sweep(raw, "test")


def _run(sweep, results: Path, **options):
    return run_sweep(sweep, results, progress=False, log=lambda _: None, **options)


def test_a_rerun_runs_only_what_is_not_finished(fake, tmp_path):
    script, ran = fake
    sweep = _sweep("fake")
    results = tmp_path / "fake"
    assert _run(sweep, results)[TrialState.DONE] == 4 and len(ran) == 4
    ran.clear()
    assert _run(sweep, results)[TrialState.DONE] == 4 and ran == [], "finished trials are never run again"


def test_a_failed_trial_is_retried_until_its_budget_is_spent(fake, tmp_path):
    script, ran = fake
    sweep = _sweep("fake", max_attempts=2)
    results = tmp_path / "fake"
    failing = plan(sweep, results).trials[0].trial_id
    script[failing] = "fail"
    counts = _run(sweep, results)
    assert counts[TrialState.FAILED] == 1 and counts[TrialState.DONE] == 3
    ran.clear()
    assert _run(sweep, results)[TrialState.EXHAUSTED] == 1 and ran == [failing], "retried once more, then given up"
    ran.clear()
    assert _run(sweep, results)[TrialState.EXHAUSTED] == 1 and ran == [], "an exhausted trial is left alone"
    script[failing] = "done"
    assert _run(sweep, results, retry_failed=True)[TrialState.DONE] == 4 and ran == [failing], "--retry-failed runs it again"


def _vanishing(fake, results: Path):
    """A sweep run once with the job of its second trial dying under it; the sweep, that trial and its attempt."""
    script, ran = fake
    sweep = _sweep("fake")
    victim = plan(sweep, results).trials[1].trial_id
    script[victim] = "vanish"
    counts = _run(sweep, results)
    assert counts[TrialState.LOST] == 1 and counts[TrialState.DONE] == 3
    (attempt,) = read_attempts(results, victim)
    del script[victim]
    ran.clear()
    return sweep, victim, attempt


def test_a_trial_whose_job_vanished_is_lost_and_run_again(fake, tmp_path):
    results = tmp_path / "fake"
    sweep, victim, attempt = _vanishing(fake, results)
    assert attempt["job"].startswith("fake:") and "end" not in attempt, "the attempt never ended: its job is gone"
    assert JobTeller().alive(attempt["job"]) is False
    assert _run(sweep, results)[TrialState.DONE] == 4 and fake[1] == [victim]
    assert [a.get("outcome") for a in read_attempts(results, victim)] == ["vanished", "done"]


def test_a_killed_attempt_is_not_a_failed_one(fake, tmp_path):
    """Kills, lost jobs and full disks are the machine's doing: with a budget of 2, a trial whose job vanishes three
    times (and whose fourth attempt meets a full disk) is lost each time, never exhausted, and finishes when let."""
    script, ran = fake
    sweep = _sweep("fake", max_attempts=2)
    results = tmp_path / "fake"
    victim = plan(sweep, results).trials[1].trial_id
    script[victim] = "vanish"
    for _ in range(3):
        assert _run(sweep, results)[TrialState.LOST] == 1
    (lost,) = [p for p in plan(sweep, results).trials if p.trial_id == victim]
    assert lost.state == TrialState.LOST and lost.failures == 0
    script[victim] = "disk full"
    assert _run(sweep, results)[TrialState.FAILED] == 1
    script[victim] = "done"
    assert _run(sweep, results)[TrialState.DONE] == 4
    assert [a.get("outcome") for a in read_attempts(results, victim)] == ["vanished"] * 3 + ["failed: disk full", "done"]


def test_a_sweep_that_ends_with_a_trial_lost_exits_3_and_names_it(fake, tmp_path, capsys, monkeypatch):
    """Not 0 for an incomplete sweep: `make sweep && make report` must not report a partial sweep as finished."""
    import yaml

    from hpcsweep.cli import main

    script, _ = fake
    sweep = _sweep("fake")
    victim = plan(sweep, tmp_path / "fake").trials[1].trial_id
    script[victim] = "vanish"
    path = tmp_path / "fake.yaml"
    path.write_text(yaml.safe_dump(sweep.model_dump(mode="json")))
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(path), "--results", str(tmp_path), "--no-review"]) == 3
    err = capsys.readouterr().err
    assert f"1 trials have no result: {victim} (lost" in err and "run the sweep again" in err
    del script[victim]
    assert main(["sweep", str(path), "--results", str(tmp_path), "--no-review"]) == 0


def test_a_trial_carried_by_a_live_job_is_left_to_it_and_followed_to_its_end(fake, tmp_path):
    """A job this run did not start still runs a trial (an earlier, killed driver's worker): the run neither starts the
    trial again nor returns while it runs; it follows it until the job ends, and counts what it left."""
    import threading

    results = tmp_path / "fake"
    sweep, victim, attempt = _vanishing(fake, results)
    FakeBackend.live.add(attempt["job"])  # the scheduler says it still runs (e.g. it only lost contact)
    threading.Timer(1.0, FakeBackend.live.discard, [attempt["job"]]).start()  # then it ends, leaving no file
    began = time.time()
    assert _run(sweep, results)[TrialState.LOST] == 1 and fake[1] == [] and time.time() - began >= 1.0


def test_the_executor_choices_come_from_the_registry(fake):
    assert backend_names()[:3] == ["local", "debug", "slurm"] and "fake" in backend_names()
    with pytest.raises(UserError, match="unknown executor 'nosuch'; valid choices: local, debug, slurm, fake"):
        backend("nosuch")
    with pytest.raises(UserError, match="dispatch.executor.*valid choices: local, debug, slurm, fake"):
        _sweep("nosuch")


def test_a_toy_backend_is_one_subclass(monkeypatch, qcd_file, tmp_path):
    """A thread-pool executor: `submit` is the only method it must write; everything else is inherited."""

    class ThreadJob(FakeJob):
        def __init__(self, job_id, future):
            super().__init__(job_id)
            self.future = future

        def done(self):
            return self.future.done()

    @register
    class Threads(Backend):
        name = "threads"

        def submit(self, function, arguments, dispatch, log_dir):
            pool = ThreadPoolExecutor(max_workers=2)
            return [ThreadJob(str(i), pool.submit(function, *args)) for i, args in enumerate(arguments)]

    monkeypatch.setattr("hpcsweep.trial.run_trial", lambda spec, *a, **k: _write_done(spec))
    try:
        counts = _run(_sweep("threads"), tmp_path / "fake")
    finally:
        unregister("threads")
    assert counts[TrialState.DONE] == 4


def _write_done(spec):
    results = Path(spec.results_dir)
    write_trial(trial_path(results, spec.trial_id), TrialRecord(spec.trial_id, spec.sweep, TrialState.DONE, spec.config.model_dump()))
    close_attempt(results, spec.trial_id, "done")
    return TrialState.DONE


@pytest.mark.parametrize(("n_tasks", "size"), [(10, 3), (9, 3), (1, 1000), (1000, 1000), (1001, 1000), (7, 1)])
def test_job_arrays_are_cut_at_the_cluster_limit(n_tasks, size):
    """Every array task is submitted exactly once, in order, in arrays of at most MaxArraySize - 1 tasks."""
    from hpcsweep.sweep.slurm import array_slices

    parts = array_slices(n_tasks, size)
    tasks = list(range(n_tasks))
    assert [i for part in parts for i in tasks[part]] == tasks
    assert all(0 < len(tasks[part]) <= size for part in parts)
    assert len(parts) == -(-n_tasks // size), "no more arrays than needed"

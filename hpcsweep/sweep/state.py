"""What each trial of a sweep is doing, from the store's files, the attempts logs and the scheduler.

| state | meaning | a rerun of the sweep |
|---|---|---|
| done, diverged, pruned | its trial file says so | skips it |
| failed | its trial file says so (error, out of memory, disk full, timeout exhausted) | runs it again |
| exhausted | failed or lost `max_attempts` times since the last reset | skips it (`--retry-failed` runs it again) |
| running | an attempt started and its job still lives | leaves it |
| queued | a live job or array task carries it and it has not started | leaves it |
| lost | it started, or was submitted, and its job is gone (killed, cancelled, node failure) | runs it again (resuming its checkpoint) |
| pending | never submitted | runs it |

The retry budget counts the attempts that ended in a failure or vanished
(killed, cancelled, node failure, out of memory by the scheduler); an attempt
stopped by a time limit or preemption after a checkpoint is a pause, not a
failure, and does not count.
"""

from __future__ import annotations

import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcsweep.config import SweepConfig, TrialConfig
from hpcsweep.files import pid_alive
from hpcsweep.store import read_attempts, read_submissions, scan
from hpcsweep.sweep.datasets import Datasets
from hpcsweep.sweep.grid import expand

RUN_AGAIN = ("failed", "lost", "pending")
IN_FLIGHT = ("running", "queued")
STATES = ("done", "diverged", "pruned", "failed", "exhausted", "running", "queued", "lost", "pending")


@dataclass(frozen=True)
class PlannedTrial:
    trial_id: str
    config: TrialConfig
    state: str
    detail: str = ""  # the failure class, or the job that runs or holds the trial
    failures: int = 0  # failed attempts counted against the retry budget (failed, lost, exhausted)


@dataclass
class Plan:
    """A sweep definition's trials with their states; and what else its results folder holds."""

    trials: list[PlannedTrial]
    unreadable: list[str] = field(default_factory=list)  # trial files that could not be read (rerun)
    others: dict[str, dict[str, Any]] = field(default_factory=dict)  # trial id -> summary, for files not of this definition
    data_problems: list[str] = field(default_factory=list)  # data that could not be read to learn its version

    def states(self) -> Counter:
        return Counter(p.state for p in self.trials)

    def describe_others(self) -> str:
        """'' or a line saying what the other trial files of the folder are (they stay out of tables and counts)."""
        if not self.others:
            return ""
        configs = {p.config.with_data_version("").identity() for p in self.trials}
        older = sum(1 for s in self.others.values() if _config_identity(s) in configs)
        kinds = [f"{n} of {what}" for n, what in ((older, "another data version"), (len(self.others) - older, "other configs")) if n]
        files = f"{len(self.others)} trial file{'s' if len(self.others) > 1 else ''}"
        return f"the folder also holds {files} not of this definition ({', '.join(kinds)}); left out of its tables and counts"


def _config_identity(summary: dict[str, Any]) -> str:
    try:
        return TrialConfig.model_validate(summary["config"]).with_data_version("").identity()
    except Exception:  # a file of an older hpcsweep whose config no longer validates
        return ""


def plan(sweep: SweepConfig, results_dir: Path, source: str = "sweep", datasets: Datasets | None = None) -> Plan:
    """The sweep's trials with their states (their data versions from `datasets`, by default looked up without generating)."""
    summaries, unreadable = scan(results_dir)
    flight = InFlight(results_dir)
    datasets = datasets or Datasets(results_dir, prepare=False, progress=False)
    if sweep.search != "grid":
        return Plan(_searched(summaries, flight, results_dir), unreadable)
    planned = []
    for trial in expand(sweep, source, datasets.version):
        trial_id = trial.identity()
        summary = summaries.get(trial_id)
        if summary is not None and summary["state"] != "failed":
            state, detail = summary["state"], summary.get("failure", "")
        elif summary is not None:  # failed, unless a retry runs now
            job = flight.running(trial_id)
            state, detail = ("running", job) if job else ("failed", summary.get("failure", ""))
        else:
            state, detail = flight.state(trial_id)
        planned.append(_budgeted(PlannedTrial(trial_id, trial, state, detail), results_dir, sweep.max_attempts))
    ids = {p.trial_id for p in planned}
    others = {trial_id: summary for trial_id, summary in summaries.items() if trial_id not in ids}
    return Plan(planned, unreadable, others, datasets.problems)


def _searched(summaries: dict, flight: InFlight, results_dir: Path) -> list[PlannedTrial]:
    """A search's trials: those with a file, and those started (running or lost) according to their attempts."""
    planned = [PlannedTrial(t, TrialConfig.model_validate(s["config"]), s["state"], s.get("failure", "")) for t, s in summaries.items()]
    for path in sorted((results_dir / "attempts").glob("*.jsonl")):
        attempts = read_attempts(results_dir, path.stem)
        if path.stem not in summaries and attempts and attempts[-1].get("config"):
            planned.append(PlannedTrial(path.stem, TrialConfig.model_validate(attempts[-1]["config"]), *flight.state(path.stem)))
    return planned


def _budgeted(trial: PlannedTrial, results_dir: Path, max_attempts: int) -> PlannedTrial:
    """A failed or lost trial with its failures counted; 'exhausted' once they reach `max_attempts`."""
    if trial.state not in ("failed", "lost"):
        return trial
    failures = failed_attempts(read_attempts(results_dir, trial.trial_id))
    return PlannedTrial(trial.trial_id, trial.config, "exhausted" if failures >= max_attempts else trial.state, trial.detail, failures)


def failed_attempts(attempts: list[dict[str, Any]]) -> int:
    """Attempts since the last reset that failed or vanished (an open last attempt of a lost trial vanished too)."""
    return sum(1 for a in attempts if a.get("counted", True) and _failed(a.get("outcome")))


def _failed(outcome: str | None) -> bool:
    return outcome is None or outcome == "vanished" or outcome.startswith("failed")


def _job_detail(job: str, why: str) -> str:
    """'<job>: <why>' for status: which job carried a lost trial, and how it ended if anyone knows."""
    return f"{job}: {why}" if why else job


class InFlight:
    """Answers 'running, queued, lost or pending?' for trials without a file; asks squeue at most once."""

    def __init__(self, results_dir: Path):
        self.results_dir = results_dir
        self._live: dict[str, str] | None = None
        self._asked = False
        self._queued: dict[str, str] | None = None

    def running(self, trial_id: str) -> str:
        """The job whose attempt at the trial has not ended and still lives (or cannot be told dead), else ''."""
        state, job = self.state(trial_id)
        return job if state == "running" else ""

    def state(self, trial_id: str) -> tuple[str, str]:
        attempts = read_attempts(self.results_dir, trial_id)
        if attempts and "end" not in attempts[-1]:
            last = attempts[-1]
            if self.alive(last["job"], last["pid"]) is False:
                return "lost", _job_detail(last["job"], self.outcome(last["job"]))
            return "running", last["job"]
        job = self.queued().get(trial_id)
        if job:
            return "queued", job
        if attempts:
            return "lost", _job_detail(attempts[-1]["job"], attempts[-1].get("outcome", ""))
        return "pending", ""

    def alive(self, job: str, pid: int | None = None) -> bool | None:
        """Whether a job lives; None when nobody here can tell (another host, no squeue)."""
        if job.startswith("local:"):
            _, host, job_pid = job.split(":")
            if host != socket.gethostname():
                return None
            if pid is None and not job_pid.isdigit():  # a debug job: it ran inside the call that submitted it, and ended
                return False
            return pid_alive(pid if pid is not None else int(job_pid))
        if not self._asked:
            from hpcsweep.sweep.slurm import live_jobs

            self._live, self._asked = live_jobs(), True
        return None if self._live is None else job in self._live

    def outcome(self, job: str) -> str:
        """How a vanished SLURM job ended according to accounting (CANCELLED, OUT_OF_MEMORY, NODE_FAIL...), if known."""
        if job.startswith("local:"):
            return ""
        from hpcsweep.sweep.slurm import job_outcomes

        return job_outcomes([job]).get(job, "")  # sacct -X names array tasks as squeue does: <array>_<index>

    def queued(self) -> dict[str, str]:
        """Trial id -> the live job that carries it, from the submissions log."""
        if self._queued is None:
            self._queued = {}
            for submission in read_submissions(self.results_dir):
                for job, trial_ids in submission["tasks"].items():
                    if self.alive(job) is not False:
                        self._queued.update(dict.fromkeys(trial_ids, job))
        return self._queued

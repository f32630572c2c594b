"""What each trial of a sweep is doing, from the store's files, the attempts logs and the scheduler (the states are
`hpcsweep.states.TrialState`), and so which trials a run of the sweep dispatches: its `Plan`.

The retry budget counts the attempts that failed of the trial's own doing:
an error in its code or data, out of memory, its time limit exhausted. An
attempt that vanished (SIGKILL, cancelled, preempted, node failure, a lost
worker), one stopped by a time limit or preemption after a checkpoint, and one
that met a full disk are the machine's doing, not the trial's: they never
count, and the trial runs again (from its checkpoint) on the next run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hpcsweep.config import EvaluationConfig, SweepConfig, TrialConfig
from hpcsweep.states import TrialState
from hpcsweep.store import attempts_dir, read_attempts, read_submissions, rebuild_index, scan
from hpcsweep.sweep.backends import JobTeller
from hpcsweep.sweep.datasets import Datasets
from hpcsweep.sweep.definition import check_definition
from hpcsweep.sweep.grid import identified


@dataclass(frozen=True)
class PlannedTrial:
    trial_id: str
    config: TrialConfig
    state: TrialState
    detail: str = ""  # the failure class, or the job that runs or holds the trial
    failures: int = 0  # failed attempts counted against the retry budget (failed, lost, exhausted)


@dataclass
class Plan:
    """A sweep definition's trials with their states, and so what a run dispatches (`todo`); what else its folder holds."""

    results_dir: Path
    trials: list[PlannedTrial]
    max_attempts: int = 3
    search: bool = False  # a search's trials are those its folder holds (no grid to expand)
    unreadable: list[str] = field(default_factory=list)  # trial files that could not be read (rerun)
    others: dict[str, dict[str, Any]] = field(default_factory=dict)  # trial id -> summary, for files not of this definition
    data_problems: list[str] = field(default_factory=list)  # data that could not be read to learn its version
    evaluation: EvaluationConfig | None = None  # its signals: a finished trial not yet evaluated on one is dispatched
    budget: int | None = None  # a search's: the trials it is to finish

    @property
    def todo(self) -> list[PlannedTrial]:
        """The trials a run dispatches: failed, lost and pending ones."""
        return [p for p in self.trials if p.state.runs_again()]

    def counts(self) -> Counter:
        """How many trials are in each state."""
        return Counter(p.state for p in self.trials)

    def finished(self) -> int:
        """How many trials ended for good (done, diverged, pruned)."""
        return sum(1 for p in self.trials if p.state.is_finished())

    def goal(self) -> int:
        """How many trials the sweep is to finish: a grid's every trial, a search's budget."""
        if not self.search:
            return len(self.trials)
        assert self.budget is not None  # a search without a budget is refused by the configuration
        return self.budget

    def refreshed(self) -> Plan:
        """The same trials surveyed again (after a run, or a reset of their retry budgets); the grid is not expanded again."""
        summaries, unreadable = scan(self.results_dir)
        flight = InFlight(self.results_dir)
        if self.search:
            trials = _searched(summaries, flight, self.results_dir)
        else:
            trials = [_survey(p.trial_id, p.config, summaries, flight, self.max_attempts, self._signals(p.config)) for p in self.trials]
        return replace(self, trials=trials, unreadable=unreadable).with_others(summaries)

    def with_others(self, summaries: dict[str, dict[str, Any]]) -> Plan:
        """The plan with `others`: the files among `summaries` not of its trials (a search's files are all its own)."""
        ids = set(summaries) if self.search else {p.trial_id for p in self.trials}
        return replace(self, others={trial_id: summary for trial_id, summary in summaries.items() if trial_id not in ids})

    def _signals(self, config: TrialConfig) -> set[str]:
        """The labels of the signals a trial of `config` is evaluated on (none for the coder alone: no score)."""
        if self.evaluation is None or not config.model.autoencoder:
            return set()
        return set(self.evaluation.signal_labels(config.data))

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


def plan(sweep: SweepConfig, results_dir: Path, source: str = "sweep", datasets: Datasets | None = None, verify: bool = False) -> Plan:
    """The sweep's trials with their states (their data versions from `datasets`, by default looked up without generating).
    With `verify`, every trial file's checksum is checked again first, not only those changed since the last look."""
    if verify:
        rebuild_index(results_dir, verify=True)
    return listed(sweep, results_dir, source, datasets).refreshed()


def preview(sweep: SweepConfig, results_dir: Path, source: str) -> Plan:
    """The plan a run of `sweep` would make, refused where the run would be (`check_definition`); nothing is run,
    generated or written (a dry run)."""
    check_definition(results_dir, sweep)
    return plan(sweep, results_dir, source)


def listed(sweep: SweepConfig, results_dir: Path, source: str = "sweep", datasets: Datasets | None = None) -> Plan:
    """The sweep's trials as its definition lists them, each pending until `refreshed` surveys it: no trial file is
    read and no scheduler asked, which is all the review needs to tell a definition's files from the others."""
    datasets = datasets or Datasets(results_dir, prepare=False, progress=False)
    search = sweep.search != "grid"
    trials = {} if search else identified(sweep, source, datasets.version)
    pending = [PlannedTrial(trial_id, t, TrialState.PENDING) for trial_id, t in trials.items()]
    return Plan(
        results_dir, pending, sweep.max_attempts, search, data_problems=datasets.problems, evaluation=sweep.evaluation, budget=sweep.budget
    )


def _survey(
    trial_id: str, config: TrialConfig, summaries: dict[str, dict[str, Any]], flight: InFlight, max_attempts: int, signals: set[str]
) -> PlannedTrial:
    """One trial's state from its file, else from its attempts and the jobs that carry it; its failures counted. A done
    trial not yet evaluated on one of its `signals` (added to the sweep since) is pending: its worker evaluates it on
    them, without training it again."""
    summary = summaries.get(trial_id)
    if summary is not None and _edited(summary, trial_id, config):
        summary = None  # damage, as if unreadable: its worker sets the file aside and trains the trial
    missing = sorted(signals - set(summary.get("evaluations") or [])) if summary is not None else []
    if summary is not None and summary["state"] == TrialState.DONE and missing:
        state, detail = TrialState.PENDING, f"to evaluate on {', '.join(missing)}"
    elif summary is not None and summary["state"] != TrialState.FAILED:
        state, detail = TrialState(summary["state"]), summary.get("failure", "")
    elif summary is not None:  # failed, unless a retry runs now
        job = flight.running(trial_id)
        state, detail = (TrialState.RUNNING, job) if job else (TrialState.FAILED, summary.get("failure", ""))
    else:
        state, detail = flight.state(trial_id)
    return _budgeted(PlannedTrial(trial_id, config, state, detail), flight.results_dir, max_attempts)


def _edited(summary: dict, trial_id: str, config: TrialConfig) -> bool:
    """`edited_config` of a planned trial's file, told without validating the stored config where it is the planned
    one as a trial file stores it (the usual case; its id is then the trial's): 0.09 ms a file, 0.09 s a status of 1000."""
    return summary.get("config") != config.model_dump(mode="json") and bool(edited_config(summary, trial_id))


def edited_config(summary: dict, trial_id: str) -> str:
    """'' unless the stored config hashes to another id than the trial's (edited after it was written): the driver then
    plans the trial again and its worker sets the file aside. A stored config that no longer validates (an older
    hpcsweep's) is let be: its id is all there is to check."""
    try:
        identity = TrialConfig.model_validate(summary["config"]).identity()
    except (KeyError, ValueError):
        return ""
    return "" if identity == trial_id else f"holds a config that hashes to {identity!r}, not {trial_id!r} (edited after it was written?)"


def _searched(summaries: dict, flight: InFlight, results_dir: Path) -> list[PlannedTrial]:
    """A search's trials: those with a file, and those started (running or lost) according to their attempts."""
    planned = [
        PlannedTrial(t, TrialConfig.model_validate(s["config"]), TrialState(s["state"]), s.get("failure", "")) for t, s in summaries.items()
    ]
    for path in sorted(attempts_dir(results_dir).glob("*.jsonl")):
        attempts = read_attempts(results_dir, path.stem)
        if path.stem not in summaries and attempts and attempts[-1].get("config"):
            planned.append(PlannedTrial(path.stem, TrialConfig.model_validate(attempts[-1]["config"]), *flight.state(path.stem)))
    return planned


def _budgeted(trial: PlannedTrial, results_dir: Path, max_attempts: int) -> PlannedTrial:
    """A failed or lost trial with its failures counted; 'exhausted' once they reach `max_attempts`."""
    if trial.state not in (TrialState.FAILED, TrialState.LOST):
        return trial
    failures = failed_attempts(read_attempts(results_dir, trial.trial_id))
    return replace(trial, state=TrialState.EXHAUSTED if failures >= max_attempts else trial.state, failures=failures)


#: Failure classes that are the machine's doing, not the trial's: they do not count against its retry budget.
NOT_ITS_OWN = ("disk full",)


def failed_attempts(attempts: list[dict[str, Any]]) -> int:
    """Attempts since the last reset that failed of the trial's own doing (see the module's doc)."""
    return sum(1 for a in attempts if a.get("counted", True) and _its_own_failure(a.get("outcome")))


def _its_own_failure(outcome: str | None) -> bool:
    """'failed: <class>' with a class of the trial's own (vanished or open attempts, pauses and full disks are not)."""
    if outcome is None or not outcome.startswith(f"{TrialState.FAILED}: "):
        return False
    return outcome.removeprefix(f"{TrialState.FAILED}: ") not in NOT_ITS_OWN


def _job_detail(job: str, why: str) -> str:
    """'<job>: <why>' for status: which job carried a lost trial, and how it ended if anyone knows."""
    return f"{job}: {why}" if why else job


class InFlight:
    """Answers 'running, queued, lost or pending?' for trials without a file; asks each scheduler at most once."""

    def __init__(self, results_dir: Path):
        self.results_dir = results_dir
        self.jobs = JobTeller()
        self._queued: dict[str, str] | None = None

    def running(self, trial_id: str) -> str:
        """The job whose attempt at the trial has not ended and still lives (or cannot be told dead), else ''."""
        state, job = self.state(trial_id)
        return job if state == TrialState.RUNNING else ""

    def state(self, trial_id: str) -> tuple[TrialState, str]:
        attempts = read_attempts(self.results_dir, trial_id)
        if attempts and "end" not in attempts[-1]:
            last = attempts[-1]
            if self.jobs.alive(last["job"], last["pid"]) is False:
                return TrialState.LOST, _job_detail(last["job"], self.jobs.outcome(last["job"]))
            return TrialState.RUNNING, last["job"]
        job = self.queued().get(trial_id)
        if job:
            return TrialState.QUEUED, job
        if attempts:
            return TrialState.LOST, _job_detail(attempts[-1]["job"], attempts[-1].get("outcome", ""))
        return TrialState.PENDING, ""

    def queued(self) -> dict[str, str]:
        """Trial id -> the live job that carries it, from the submissions log."""
        if self._queued is None:
            self._queued = {}
            for submission in read_submissions(self.results_dir):
                for job, trial_ids in submission["tasks"].items():
                    if self.jobs.alive(job) is not False:
                        self._queued.update(dict.fromkeys(trial_ids, job))
        return self._queued

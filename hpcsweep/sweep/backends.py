"""Where a sweep's jobs run: one `Backend` per executor, registered by name with `hpcsweep.executors`.

A backend packs trials into jobs, submits them (through submitit), names each
job as the attempts log and the claims know it, and answers whether a job
lives; it declares the checks of the dispatch keys it reads (`options`), which
the configuration runs through the registry. Everything that differs between
running here and running on a scheduler is in here (the SLURM side itself in
`hpcsweep.sweep.slurm`); the sweep, the state reader and the CLI ask the
backend of the sweep's `dispatch.executor` and never test its name. A new
executor is a subclass and a `register` call (see tests/sweep/test_backends.py).
"""

from __future__ import annotations

import re
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from hpcsweep.allocation import allocated_cores, local_job, local_job_name
from hpcsweep.config import DispatchConfig
from hpcsweep.errors import Log, UserError
from hpcsweep.executors import Options, executor, executor_names, executors, register
from hpcsweep.executors import unregister as unregister  # the registry's, as the sweep stage names it
from hpcsweep.files import pid_alive
from hpcsweep.sweep import slurm
from hpcsweep.terminal import TrialProgress, TrialsView

Unit = TypeVar("Unit")  # what a backend packs into jobs: a sweep's trials (TrialSpec), or the files of a compressed dataset


class Job(Protocol):
    """What the sweep needs of a submitted job (a submitit `Job`)."""

    @property
    def job_id(self) -> str: ...

    def done(self) -> bool: ...

    def result(self) -> Any: ...

    def cancel(self, check: bool = True) -> Any: ...


class Backend(ABC):
    """An executor: how trials become jobs, and what is known of a job by its name."""

    name: ClassVar[str]
    outlives_driver: ClassVar[bool] = False  # jobs go on when the driver stops (it may return once they are submitted)
    poll_s: ClassVar[float] = 0.5  # how often a following driver looks at its jobs
    job_word: ClassVar[str] = "jobs"
    options: ClassVar[Options] = {}  # the dispatch keys it checks when a sweep is validated (through the registry)

    def check(self, dispatch: DispatchConfig) -> None:
        """Refuse settings this backend cannot run, before any work is done (a `UserError`)."""
        return None

    def batches(self, specs: list[Unit], dispatch: DispatchConfig) -> list[list[Unit]]:
        """The trials (or other units of work) dealt round-robin into one batch per worker (default: cores // threads
        per trial)."""
        return deal(specs, self.workers(dispatch, len(specs)))

    def workers(self, dispatch: DispatchConfig, wanted: int) -> int:
        """How many jobs run at once for `wanted` units of work."""
        return dispatch.workers or max(1, allocated_cores() // dispatch.threads_per_trial)

    @abstractmethod
    def submit(self, function: Callable[..., Any], arguments: list[tuple], dispatch: DispatchConfig, log_dir: Path) -> Sequence[Job]:
        """One job per argument tuple, each calling `function(*arguments[i])`."""

    def job_name(self, job: Job) -> str:
        """The name the attempts log, the submissions log and the claims use for `job`."""
        return local_job_name(job.job_id)

    def follow(self, jobs: Sequence[Job]) -> None:
        """Called once before the driver polls: a backend that runs jobs only when asked runs them here."""
        return None

    def any_alive(self, jobs: Sequence[Job]) -> bool:
        """Whether any of the driver's jobs may still write results."""
        return not all(job.done() for job in jobs)

    def stop(self, jobs: Sequence[Job]) -> None:
        """The driver was interrupted: end its jobs, unless they outlive it."""
        if not self.outlives_driver:
            for job in jobs:
                job.cancel(check=False)

    @staticmethod
    def owns(job: str) -> bool:
        """Whether a job name (from a log) is one of this backend's."""
        return local_job(job) is not None

    def alive(self, job: str, pid: int | None = None) -> bool | None:
        """Whether a job of this backend lives; None when nobody here can tell (another host, no scheduler answer)."""
        host, job_id = local_job(job) or ("", "")
        if host != socket.gethostname():
            return None
        if pid is None and not job_id.isdigit():  # a debug job: it ran inside the call that submitted it, and ended
            return False
        return pid_alive(pid if pid is not None else int(job_id))

    def outcome(self, job: str) -> str:
        """How a vanished job ended, if the backend keeps accounts ('' otherwise)."""
        return ""


@register
class LocalBackend(Backend):
    """Processes on this machine (submitit's LocalExecutor). An interrupted driver (Ctrl-C) cancels them; a killed one
    (SIGKILL) cannot, and they go on: the next driver finds their trials running and follows them to their end."""

    name = "local"

    def submit(self, function: Callable[..., Any], arguments: list[tuple], dispatch: DispatchConfig, log_dir: Path) -> Sequence[Job]:
        import submitit

        executor = submitit.LocalExecutor(folder=log_dir)
        executor.update_parameters(timeout_min=dispatch.timeout_min)
        return executor.map_array(function, *_columns(arguments))


@register
class DebugBackend(LocalBackend):
    """Every job in the driver's own process, one after another, when the driver follows them (for debuggers)."""

    name = "debug"

    def submit(self, function: Callable[..., Any], arguments: list[tuple], dispatch: DispatchConfig, log_dir: Path) -> Sequence[Job]:
        import submitit

        return submitit.DebugExecutor(folder=log_dir).map_array(function, *_columns(arguments))

    def follow(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            job.result()


@register
class SlurmBackend(Backend):
    """Array tasks of a SLURM cluster (see `hpcsweep.sweep.slurm`); they outlive the driver and are requeued on time-outs."""

    name = "slurm"
    outlives_driver = True
    poll_s = 2.0  # one squeue call per poll
    job_word = "array tasks"
    options: ClassVar[Options] = {"time": slurm.slurm_time}

    def check(self, dispatch: DispatchConfig) -> None:
        if not slurm.cluster_answers():
            raise UserError("no SLURM controller answers here (scontrol ping); start the local one with 'make slurm-up'")
        slurm.slurm_parameters(dispatch)  # a wrong site, partition or array size stops here

    def batches(self, specs: list[Unit], dispatch: DispatchConfig) -> list[list[Unit]]:
        """`dispatch.pack` trials (or other units of work) one after another in each array task."""
        return [specs[i : i + dispatch.pack] for i in range(0, len(specs), dispatch.pack)]

    def workers(self, dispatch: DispatchConfig, wanted: int) -> int:
        """A search's workers (a grid's array tasks are its batches): one per trial left, at most 8."""
        return dispatch.workers or min(wanted, 8)

    def submit(self, function: Callable[..., Any], arguments: list[tuple], dispatch: DispatchConfig, log_dir: Path) -> Sequence[Job]:
        return slurm.submit_arrays(function, _columns(arguments), dispatch, log_dir)

    def job_name(self, job: Job) -> str:
        return job.job_id

    def any_alive(self, jobs: Sequence[Job]) -> bool:
        """squeue's answer (a cancelled job is seen gone; submitit without accounting would wait on it forever)."""
        live = slurm.live_jobs()
        return live is None or any(job.job_id in live for job in jobs)

    @staticmethod
    def owns(job: str) -> bool:
        """SLURM's names: a job id, or <array job id>_<task index>."""
        return re.fullmatch(r"\d+(_\d+)?", job) is not None

    def __init__(self) -> None:
        self._asked = False
        self._live: dict[str, str] | None = None

    def alive(self, job: str, pid: int | None = None) -> bool | None:
        if not self._asked:  # squeue is asked once per backend object (one state survey)
            self._live, self._asked = slurm.live_jobs(), True
        return None if self._live is None else job in self._live

    def outcome(self, job: str) -> str:
        return slurm.job_outcomes([job]).get(job, "")  # sacct -X names array tasks as squeue does: <array>_<index>


backend_names = executor_names


def backend(name: str) -> Backend:
    """A fresh backend object of that name (its answers about jobs are cached for its lifetime)."""
    kind = executor(name)
    assert issubclass(kind, Backend)  # every executor is a backend
    return kind()


class JobTeller:
    """Alive or not, and how it ended, for any job name in the logs: asks the backend that owns it (each asked once)."""

    def __init__(self) -> None:
        self._asked: dict[str, Backend] = {}

    def _owner(self, job: str) -> Backend | None:
        for name, kind in executors().items():
            if issubclass(kind, Backend) and kind.owns(job):
                return self._asked.setdefault(name, kind())
        return None

    def alive(self, job: str, pid: int | None = None) -> bool | None:
        owner = self._owner(job)
        return None if owner is None else owner.alive(job, pid)

    def outcome(self, job: str) -> str:
        owner = self._owner(job)
        return "" if owner is None else owner.outcome(job)


def job_alive(job: str) -> bool | None:
    """Whether any job named in a log lives, asked afresh (for claims that are checked again while waiting)."""
    return JobTeller().alive(job)


def deal(items: list, n_batches: int) -> list[list]:
    """Items dealt round-robin into at most `n_batches` non-empty batches."""
    n_batches = max(1, min(n_batches, len(items)))
    return [items[i::n_batches] for i in range(n_batches) if items[i::n_batches]]


def wait_for(
    backend: Backend,
    jobs: Sequence[Job],
    count: Callable[[], int],
    total: int,
    progress: bool,
    log: Log = print,
    running: Callable[[], list[TrialProgress]] = list,
) -> None:
    """Follow jobs until `count()` reaches `total` or none lives, showing the running trials; never waits on a job's result."""
    with TrialsView(total, enabled=progress) as view:
        try:
            backend.follow(jobs)
            while count() < total and backend.any_alive(jobs):
                view.update(count(), running())
                time.sleep(backend.poll_s)
        except KeyboardInterrupt:
            backend.stop(jobs)
            log("\ninterrupted: finished trials are kept; run the sweep again to continue")
            raise
        view.update(min(count(), total))


def _columns(arguments: list[tuple]) -> list[list]:
    """Argument tuples as map_array takes them: one list per parameter."""
    return [list(column) for column in zip(*arguments, strict=True)]

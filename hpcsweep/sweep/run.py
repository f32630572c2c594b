"""A sweep run, in one straight line: resolve -> plan -> hand the plan to a backend -> follow (no torch here).

`run_sweep` checks the definition against the folder's (`definition`), takes
the folder's lease, prepares each dataset once (its version, the checksum of
its jets as read, is part of every trial's identity), expands the grid once
into a `Plan` (which trial is doing what: the store, the attempts logs and the
scheduler say), and hands the plan's `todo` (failed, lost and pending trials;
never one that is running or queued) to the sweep's backend. It follows the
jobs until the store holds a file for each or no job lives; a backend whose
jobs outlive the driver (SLURM) may instead return once they are submitted.
A search (random, TPE) hands the backend workers that ask Optuna for trials (`hpcsweep.sweep.search.run_search`).
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hpcsweep.config import SweepConfig, TrialConfig, TrialSpec
from hpcsweep.errors import Log, UserError
from hpcsweep.provenance import git_commit
from hpcsweep.states import TrialState
from hpcsweep.store import read_progress, rebuild_index, record_submission, reset_attempts, trial_path
from hpcsweep.sweep.backends import Backend, Job, backend, wait_for
from hpcsweep.sweep.datasets import Datasets
from hpcsweep.sweep.definition import check_definition, keep_definition
from hpcsweep.sweep.dispatch import TrialBatch
from hpcsweep.sweep.lease import driver_lease, tidy
from hpcsweep.sweep.rank import loss_space_warning
from hpcsweep.sweep.state import Plan, plan
from hpcsweep.terminal import TrialProgress, TrialsView


def run_sweep(
    sweep: SweepConfig,
    results_dir: Path,
    source: Path | None = None,
    definition: SweepConfig | None = None,
    wait: bool = True,
    progress: bool = True,
    log: Log = print,
    wait_for_lease: bool = False,
    retry_failed: bool = False,
) -> Counter:
    """Dispatch every trial of `sweep` that is not finished or in flight; returns the count of states.

    `definition` is the sweep as its file defines it (before command-line
    overrides); its comparable part must match the one that made `results_dir`.
    One driver at a time holds the folder (`lease`); `retry_failed` gives trials
    that used up their retry budget a fresh one. `wait` False lets a backend whose
    jobs outlive the driver return once they are submitted.
    """
    check_definition(results_dir, sweep)
    if warning := loss_space_warning(sweep):
        log(f"warning: {warning}")
    runner = backend(sweep.dispatch.executor)
    runner.check(sweep.dispatch)  # wrong settings stop here, before any work
    with driver_lease(results_dir, wait_for_lease, log):
        tidy(results_dir, log)
        datasets = Datasets(results_dir, prepare=True, progress=progress, log=log)
        driver = Driver(
            sweep, results_dir, source, definition or sweep, datasets, runner, wait or not runner.outlives_driver, progress, log
        )
        if sweep.search != "grid":
            from hpcsweep.sweep.search import run_search  # Optuna is imported only for searches

            return run_search(driver)
        return driver.grid(retry_failed)


@dataclass
class Driver:
    """What one run of a sweep holds while it plans, dispatches and follows."""

    sweep: SweepConfig
    results_dir: Path
    source: Path | None
    definition: SweepConfig
    datasets: Datasets
    backend: Backend
    follows: bool
    progress: bool
    log: Log

    @property
    def label(self) -> str:
        return str(self.source or self.sweep.name)

    def grid(self, retry_failed: bool) -> Counter:
        rebuild_index(self.results_dir, verify=True)  # every file's checksum, so a file rotted in place runs again
        planned = plan(self.sweep, self.results_dir, self.label, self.datasets)  # data first: a bad source stops here
        if retry_failed:
            planned = self._reset_budgets(planned)
        self._describe(planned)
        if not planned.todo:
            if any(p.name != "claims" for p in self.results_dir.iterdir()):  # it now counts this definition (e.g. the full grid)
                self.keep()
            return (self.adopt(planned) if self.follows else planned).counts()
        specs = [self.spec(p.trial_id, p.config) for p in planned.todo]
        self.keep()
        batches = self.backend.batches(specs, self.sweep.dispatch)
        threads = self.sweep.dispatch.threads_per_trial
        self.log(f"dispatching {len(specs)} trials as {len(batches)} {self.backend.name} {self.backend.job_word}, "
                 f"{threads} thread(s) per trial")  # fmt: skip
        jobs = self.submit(TrialBatch(), [(batch, threads) for batch in batches], [[s.trial_id for s in b] for b in batches])
        if not self.follows:
            return planned.refreshed().counts()
        self._follow_files(jobs, specs)
        return self.adopt(planned.refreshed()).counts()

    def adopt(self, planned: Plan) -> Plan:
        """Follow to their end the trials that jobs this driver did not start still run or carry (those of an earlier
        driver that was killed, whose local workers go on; an earlier submission's array tasks): the sweep is over when
        they are, not before."""
        import time

        flying = {p.trial_id: p for p in planned.trials if p.state.in_flight()}
        if not flying:
            return planned
        jobs = sorted({p.detail.split("_")[0] for p in flying.values() if p.detail})
        self.log(f"{len(flying)} trials run in jobs this run did not start ({', '.join(jobs[:4])}{', ...' if len(jobs) > 4 else ''}); "
                 "following them to their end")  # fmt: skip
        labels = {t: _label(t, p.config) for t, p in flying.items()}
        with TrialsView(len(flying), enabled=self.progress) as view:
            while True:
                planned = planned.refreshed()
                left = [p.trial_id for p in planned.trials if p.trial_id in flying and p.state.in_flight()]
                beats = read_progress(self.results_dir, left)
                view.update(len(flying) - len(left), [TrialProgress(labels[t], b["epoch"], b["epochs"], b["best_val"], b["best_epoch"])
                                                      for t, b in beats.items()])  # fmt: skip
                if not left:
                    return planned
                time.sleep(self.backend.poll_s)

    def _describe(self, planned: Plan) -> None:
        for problem in planned.unreadable:
            self.log(f"warning: unreadable trial file, it will be rerun: {problem}")
        n = planned.counts()
        finished = sum(count for state, count in n.items() if state.is_finished())
        grown = sum(1 for p in planned.trials if p.state == TrialState.PENDING and p.detail.startswith("to evaluate on"))
        self.log(
            f"sweep {self.sweep.name!r}: {len(planned.trials)} trials; {finished} finished, "
            f"{n[TrialState.RUNNING] + n[TrialState.QUEUED]} in flight, {n[TrialState.FAILED] + n[TrialState.LOST]} failed or lost "
            f"to retry, {n[TrialState.PENDING] - grown} new" + (f", {grown} done to evaluate on new signals" if grown else "")
            + f" -> {self.results_dir}"
        )  # fmt: skip
        if n[TrialState.EXHAUSTED]:
            self.log(f"{n[TrialState.EXHAUSTED]} trials failed {self.sweep.max_attempts} times and are not retried; "
                     "see 'hpcsweep status', and run with --retry-failed to try them again")  # fmt: skip
        if planned.others:
            self.log(planned.describe_others())

    def _reset_budgets(self, planned: Plan) -> Plan:
        """--retry-failed: failed and exhausted trials start their retry budget afresh."""
        again = [p.trial_id for p in planned.trials if p.state in (TrialState.FAILED, TrialState.EXHAUSTED)]
        for trial_id in again:
            reset_attempts(self.results_dir, trial_id)
        if not again:
            return planned
        self.log(f"--retry-failed: {len(again)} failed trials get {self.sweep.max_attempts} attempts again")
        return planned.refreshed()

    def keep(self) -> None:
        """The definition this run counts, and the data versions it trains on, kept in the folder."""
        keep_definition(self.results_dir, self.definition, self.source)
        self.datasets.record()

    def spec(self, trial_id: str, config: TrialConfig) -> TrialSpec:
        """A trial bound to its prepared dataset, and to the signal samples it is evaluated on."""
        sweep = self.sweep
        signals = self.datasets.signal_folders(config.data, sweep.evaluation)
        return TrialSpec(
            trial_id=trial_id,
            sweep=sweep.name,
            config=config,
            dataset=str(self.datasets.folder(config.data)),
            results_dir=str(self.results_dir.resolve()),
            provenance={"git_commit": git_commit(), "sweep_file": str(Path(self.source).resolve()) if self.source else ""},
            evaluation=sweep.evaluation,
            signals=signals,
            checkpoint_every=sweep.dispatch.checkpoint_every,
            compile=sweep.dispatch.compile,
        )

    def submit(self, function: Callable, arguments: list[tuple], carried: list[list[str]]) -> Sequence[Job]:
        """Submit one job per argument tuple and log which trials each carries; say where to follow them if not followed."""
        jobs = self.backend.submit(function, arguments, self.sweep.dispatch, private_folder(self.results_dir / "logs", self.log))
        names = [self.backend.job_name(job) for job in jobs]
        record_submission(self.results_dir, self.backend.name, dict(zip(names, carried, strict=True)))
        if not self.follows:
            self.log(f"submitted {len(jobs)} {self.backend.job_word} ({', '.join(sorted({n.split('_')[0] for n in names}))}); "
                     f"follow with 'hpcsweep status {self.sweep.name}', or run again with --wait")  # fmt: skip
        return jobs

    def _follow_files(self, jobs: Sequence[Job], specs: list[TrialSpec]) -> None:
        """Follow until every dispatched trial has written its file (since now) or no job lives."""
        import time

        started = time.time()
        paths = [trial_path(self.results_dir, s.trial_id) for s in specs]

        def written() -> int:
            return sum(1 for p in paths if p.exists() and p.stat().st_mtime >= started)

        def running() -> list[TrialProgress]:
            beats = read_progress(self.results_dir, [s.trial_id for s in specs])
            return [TrialProgress(labels[t], b["epoch"], b["epochs"], b["best_val"], b["best_epoch"]) for t, b in beats.items()]

        labels = {s.trial_id: _label(s.trial_id, s.config) for s in specs}
        wait_for(self.backend, jobs, written, len(specs), self.progress, self.log, running)
        if written() < len(specs):
            self.log(f"{len(specs) - written()} trials left no result (job killed or cancelled?); logs in {self.results_dir / 'logs'}; "
                     "running the sweep again retries them")  # fmt: skip


def private_folder(folder: Path, log: Log = print) -> Path:
    """`folder` (made if missing) writable by its owner alone: submitit's job files there are unpickled by the jobs, so
    whoever could write them could run code as the user. A folder of this user's that others may write is made private
    (and said); one of another user is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    status = folder.stat()
    if status.st_uid != os.getuid():
        raise UserError(f"{folder} belongs to another user (uid {status.st_uid}): the jobs would unpickle files they can write; "
                        "give this sweep its own --results")  # fmt: skip
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.chmod(folder, stat.S_IMODE(status.st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))
        log(f"made {folder} writable by you alone (it was {stat.filemode(status.st_mode)}): the jobs unpickle the files in it")
    return folder


def _label(trial_id: str, config: TrialConfig) -> str:
    """How the driver names a running trial: its id and the keys a grid usually varies."""
    if not config.model.autoencoder:
        return f"{trial_id[:8]} the coder alone"
    train = config.train
    wd = f"{train.weight_decay:.0e}" if train.weight_decay else "0"
    return f"{trial_id[:8]} z={config.model.latent} bs={train.batch_size} lr={train.lr:.0e} wd={wd}"

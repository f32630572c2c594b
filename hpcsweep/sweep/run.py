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

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from hpcsweep.config import SweepConfig, TrialConfig, TrialSpec
from hpcsweep.errors import Log
from hpcsweep.states import TrialState
from hpcsweep.store import CLAIMS, logs_dir, read_progress, reset_attempts, trial_path
from hpcsweep.sweep.backends import Job, backend, wait_for
from hpcsweep.sweep.datasets import Datasets
from hpcsweep.sweep.definition import check_definition
from hpcsweep.sweep.dispatch import TrialBatch
from hpcsweep.sweep.driver import Driver
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
        return run_grid(driver, retry_failed)


def run_grid(driver: Driver, retry_failed: bool) -> Counter:
    """The grid's run: plan it once, dispatch what is to do as batches, follow the trial files, count the states."""
    # every file's checksum first, so a file rotted in place runs again; then the data: a bad source stops here
    planned = plan(driver.sweep, driver.results_dir, driver.label, driver.datasets, verify=True)
    if retry_failed:
        planned = _reset_budgets(driver, planned)
    _describe(driver, planned)
    if not planned.todo:
        if any(p.name != CLAIMS for p in driver.results_dir.iterdir()):  # it now counts this definition (e.g. the full grid)
            driver.keep()
        return (adopt(driver, planned) if driver.follows else planned).counts()
    specs = [driver.spec(p.trial_id, p.config) for p in planned.todo]
    driver.keep()
    batches = driver.backend.batches(specs, driver.sweep.dispatch)
    threads = driver.sweep.dispatch.threads_per_trial
    driver.log(f"dispatching {len(specs)} trials as {len(batches)} {driver.backend.name} {driver.backend.job_word}, "
               f"{threads} thread(s) per trial")  # fmt: skip
    jobs = driver.submit(TrialBatch(), [(batch, threads) for batch in batches], [[s.trial_id for s in b] for b in batches])
    if not driver.follows:
        return planned.refreshed().counts()
    _follow_files(driver, jobs, specs)
    return adopt(driver, planned.refreshed()).counts()


def adopt(driver: Driver, planned: Plan) -> Plan:
    """Follow to their end the trials that jobs this driver did not start still run or carry (those of an earlier
    driver that was killed, whose local workers go on; an earlier submission's array tasks): the sweep is over when
    they are, not before."""
    import time

    flying = {p.trial_id: p for p in planned.trials if p.state.in_flight()}
    if not flying:
        return planned
    jobs = sorted({p.detail.split("_")[0] for p in flying.values() if p.detail})
    driver.log(f"{len(flying)} trials run in jobs this run did not start ({', '.join(jobs[:4])}{', ...' if len(jobs) > 4 else ''}); "
               "following them to their end")  # fmt: skip
    labels = {t: _label(t, p.config) for t, p in flying.items()}
    with TrialsView(len(flying), enabled=driver.progress) as view:
        while True:
            planned = planned.refreshed()
            left = [p.trial_id for p in planned.trials if p.trial_id in flying and p.state.in_flight()]
            beats = read_progress(driver.results_dir, left)
            view.update(len(flying) - len(left), [TrialProgress(labels[t], b["epoch"], b["epochs"], b["best_val"], b["best_epoch"])
                                                  for t, b in beats.items()])  # fmt: skip
            if not left:
                return planned
            time.sleep(driver.backend.poll_s)


def _describe(driver: Driver, planned: Plan) -> None:
    for problem in planned.unreadable:
        driver.log(f"warning: unreadable trial file, it will be rerun: {problem}")
    n = planned.counts()
    finished = sum(count for state, count in n.items() if state.is_finished())
    grown = sum(1 for p in planned.trials if p.state == TrialState.PENDING and p.detail.startswith("to evaluate on"))
    driver.log(
        f"sweep {driver.sweep.name!r}: {len(planned.trials)} trials; {finished} finished, "
        f"{n[TrialState.RUNNING] + n[TrialState.QUEUED]} in flight, {n[TrialState.FAILED] + n[TrialState.LOST]} failed or lost "
        f"to retry, {n[TrialState.PENDING] - grown} new" + (f", {grown} done to evaluate on new signals" if grown else "")
        + f" -> {driver.results_dir}"
    )  # fmt: skip
    if n[TrialState.EXHAUSTED]:
        driver.log(f"{n[TrialState.EXHAUSTED]} trials failed {driver.sweep.max_attempts} times and are not retried; "
                   "see 'hpcsweep status', and run with --retry-failed to try them again")  # fmt: skip
    if planned.others:
        driver.log(planned.describe_others())


def _reset_budgets(driver: Driver, planned: Plan) -> Plan:
    """--retry-failed: failed and exhausted trials start their retry budget afresh."""
    again = [p.trial_id for p in planned.trials if p.state in (TrialState.FAILED, TrialState.EXHAUSTED)]
    for trial_id in again:
        reset_attempts(driver.results_dir, trial_id)
    if not again:
        return planned
    driver.log(f"--retry-failed: {len(again)} failed trials get {driver.sweep.max_attempts} attempts again")
    return planned.refreshed()


def _follow_files(driver: Driver, jobs: Sequence[Job], specs: list[TrialSpec]) -> None:
    """Follow until every dispatched trial has written its file (since now) or no job lives."""
    import time

    started = time.time()
    paths = [trial_path(driver.results_dir, s.trial_id) for s in specs]

    def written() -> int:
        return sum(1 for p in paths if p.exists() and p.stat().st_mtime >= started)

    def running() -> list[TrialProgress]:
        beats = read_progress(driver.results_dir, [s.trial_id for s in specs])
        return [TrialProgress(labels[t], b["epoch"], b["epochs"], b["best_val"], b["best_epoch"]) for t, b in beats.items()]

    labels = {s.trial_id: _label(s.trial_id, s.config) for s in specs}
    wait_for(driver.backend, jobs, written, len(specs), driver.progress, driver.log, running)
    if written() < len(specs):
        driver.log(f"{len(specs) - written()} trials left no result (job killed or cancelled?); logs in {logs_dir(driver.results_dir)}; "
                   "running the sweep again retries them")  # fmt: skip


def _label(trial_id: str, config: TrialConfig) -> str:
    """How the driver names a running trial: its id and the keys a grid usually varies."""
    if not config.model.autoencoder:
        return f"{trial_id[:8]} the coder alone"
    train = config.train
    wd = f"{train.weight_decay:.0e}" if train.weight_decay else "0"
    return f"{trial_id[:8]} z={config.model.latent} bs={train.batch_size} lr={train.lr:.0e} wd={wd}"

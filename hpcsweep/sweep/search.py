"""Optuna searches (non-grid sweeps): random and TPE sampling with pruning, from the driver (`run_search`) to the workers.

The study lives in `results/<sweep>/optuna.journal` (Optuna's JournalFileBackend:
no database server, safe on shared filesystems, unlike SQLite on NFS). Each
job or array task is a worker that asks for trials until the budget (trials
done or pruned) is spent; every trial is an ordinary hpcsweep trial, with its
identity, its HDF5 file, checkpoints and attempts. Per-epoch validation losses
feed the pruner. The objective is the sweep's `rank_by` (by default the MSE in the reference
space, so a search over normalisations compares like with like). Journal storage has no heartbeat, so a RUNNING trial whose
worker is gone (killed, cancelled) is failed and its parameters are enqueued
again; a requeued worker first resumes the trials it was running itself.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from submitit.helpers import Checkpointable

from hpcsweep.allocation import this_job
from hpcsweep.config import Range, SweepConfig, TrialSpec, trial_from_point
from hpcsweep.states import TrialState
from hpcsweep.store import read_summary, trial_path
from hpcsweep.sweep.backends import JobTeller, wait_for
from hpcsweep.sweep.grid import search_base
from hpcsweep.sweep.rank import rank_value, rank_variables
from hpcsweep.sweep.state import plan

if TYPE_CHECKING:
    import optuna

    from hpcsweep.sweep.driver import Driver
    from hpcsweep.trial.train import Report

#: A finished trial's state as Optuna is told it: COMPLETE (with the value), PRUNED or FAIL.
OPTUNA_STATE = {TrialState.DONE: "COMPLETE", TrialState.PRUNED: "PRUNED", TrialState.DIVERGED: "FAIL", TrialState.FAILED: "FAIL"}


def run_search(driver: Driver) -> Counter:
    """Workers that ask Optuna for trials until the budget is spent; the states of the search's trials."""
    sweep = driver.sweep
    assert sweep.budget is not None  # a search without a budget is refused by the configuration
    base = search_base(sweep, driver.label, driver.datasets.version)
    study = study_for(sweep, driver.results_dir)
    released = release_stale(study, JobTeller().alive)
    done = finished_count(study)
    driver.log(f"search {sweep.search!r} of sweep {sweep.name!r}: {done}/{sweep.budget} trials finished"
               + (f", {released} trials of vanished workers put back" if released else "") + f" -> {driver.results_dir}")  # fmt: skip
    if done < sweep.budget:
        template = driver.spec(base.identity(), base)
        driver.keep()
        workers = driver.backend.workers(sweep.dispatch, sweep.budget - done)
        threads = sweep.dispatch.threads_per_trial
        driver.log(f"starting {workers} {driver.backend.name} search workers, {threads} thread(s) each")
        arguments = [(sweep.model_dump_json(), template, threads, i) for i in range(workers)]
        jobs = driver.submit(SearchWorker(), arguments, [[] for _ in range(workers)])
        if driver.follows:
            wait_for(driver.backend, jobs, lambda: finished_count(study), sweep.budget, driver.progress, driver.log)
    return plan(sweep, driver.results_dir, driver.label, driver.datasets).counts()


def study_for(sweep: SweepConfig, results_dir: Path, worker: int = 0) -> optuna.Study:
    """The sweep's Optuna study in its results folder, created on first use.

    Each worker samples with its own seed (the sweep's + its index): workers with one
    seed would propose the same points.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results_dir.mkdir(parents=True, exist_ok=True)
    samplers = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}
    pruners = {
        "none": optuna.pruners.NopPruner(),
        "median": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=5),
        "hyperband": optuna.pruners.HyperbandPruner(min_resource=1, max_resource=sweep.train.epochs),
    }
    return optuna.create_study(
        study_name=sweep.name,
        storage=JournalStorage(JournalFileBackend(str(results_dir / "optuna.journal"))),
        sampler=samplers[sweep.search](seed=sweep.search_seed + worker),
        pruner=pruners[sweep.pruner],
        direction="minimize",
        load_if_exists=True,
    )


def finished_count(study: optuna.Study) -> int:
    """Trials that count against the budget: done or pruned."""
    from optuna.trial import TrialState as OptunaState

    return len(study.get_trials(deepcopy=False, states=(OptunaState.COMPLETE, OptunaState.PRUNED)))


def release_stale(study: optuna.Study, alive: Callable[[str, int | None], bool | None], me: str | None = None) -> int:
    """Fail RUNNING trials whose worker is gone, or that an earlier attempt of `me` left, and enqueue them again.

    The enqueued point has the same identity, so whoever asks for it next resumes its checkpoint.
    """
    from optuna.trial import TrialState as OptunaState

    released = 0
    for trial in study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
        job = trial.user_attrs.get("job")
        if job is not None and (job == me or alive(job, trial.user_attrs.get("pid")) is False):
            study.tell(trial.number, state=OptunaState.FAIL, skip_if_finished=True)
            study.enqueue_trial(trial.params, skip_if_exists=False)
            released += 1
    return released


def _suggest(trial: optuna.Trial, space: dict[str, Any]) -> dict[str, Any]:
    point = {}
    for path, spec in space.items():
        if not isinstance(spec, Range):
            point[path] = trial.suggest_categorical(path, spec)
        elif float(spec.low).is_integer() and float(spec.high).is_integer() and (spec.step is None or float(spec.step).is_integer()):
            point[path] = trial.suggest_int(path, int(spec.low), int(spec.high), log=spec.log, step=int(spec.step or 1))
        else:
            point[path] = trial.suggest_float(path, spec.low, spec.high, log=spec.log, step=spec.step)
    return point


class SearchWorker(Checkpointable):
    """One worker of a search: asks for trials until the budget is spent (requeued as a whole, like a batch)."""

    def __call__(self, sweep_json: str, template: TrialSpec, threads: int, worker: int) -> int:
        import os

        from optuna.trial import TrialState as OptunaState

        from hpcsweep.sweep.dispatch import run_one

        sweep = SweepConfig.model_validate_json(sweep_json)
        assert sweep.budget is not None  # a search without a budget is refused by the configuration
        variables = rank_variables(sweep)
        results_dir = Path(template.results_dir)
        study = study_for(sweep, results_dir, worker)
        me = this_job()
        ran = 0
        release_stale(study, JobTeller().alive, me)  # a requeued task: its own trial goes back in the queue
        while True:
            release_stale(study, JobTeller().alive)
            waiting = study.get_trials(deepcopy=False, states=(OptunaState.WAITING,))
            running = study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,))
            if not waiting and finished_count(study) + len(running) >= sweep.budget:
                return ran
            trial = study.ask()
            trial.set_user_attr("job", me)
            trial.set_user_attr("pid", os.getpid())
            config = trial_from_point(sweep.base_trial(), _suggest(trial, sweep.space), f"search {sweep.name}")
            config = config.with_data_version(template.config.data_version)
            trial.set_user_attr("trial_id", config.identity())
            spec = template.model_copy(update={"trial_id": config.identity(), "config": config})
            state = run_one(spec, threads, report=_pruning(trial))
            if state is None:  # another worker runs this very point: it tells its own trial
                study.tell(trial.number, None, state=OptunaState.FAIL, skip_if_finished=True)
                continue
            value = rank_value(read_summary(trial_path(results_dir, spec.trial_id))["metrics"], sweep.rank_by, variables)
            told = OPTUNA_STATE[state] if state != TrialState.DONE or math.isfinite(value) else "FAIL"  # Optuna takes no NaN objective
            study.tell(trial.number, value if told == "COMPLETE" else None, state=OptunaState[told], skip_if_finished=True)
            ran += 1


def _pruning(trial: optuna.Trial) -> Report:
    def report(epoch: int, val_loss: float) -> bool:
        trial.report(val_loss, epoch)
        return trial.should_prune()

    return report

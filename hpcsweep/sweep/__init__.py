"""Sweep stage: grid expansion, identities, data versions, dispatch and resume (no torch here).

`run_sweep` expands the grid, prepares each dataset (its version, the checksum
of its jets as read, is part of every trial's identity), asks the store (and
the scheduler) what each trial is doing, and dispatches what is not finished
or in flight: failed and lost trials again (a lost one resumes from its
checkpoint), never one that is running or queued. It follows the jobs until
the store holds a file for each, or, on SLURM without `wait`, returns once
they are submitted.

One rule for a results folder: a sweep may grow there (grid values, latent
dimensions, seeds, other model or training keys add trials), and a data file
replaced in place makes new trials of a new data version; what would make its
trials incomparable (the data as the sweep names them, the variable set, the
reference space or tolerance the trials are measured in) is refused with the
exact difference.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hpcsweep.config import GENERATOR_KEYS, SweepConfig, TrialSpec
from hpcsweep.errors import UserError
from hpcsweep.files import write_atomically
from hpcsweep.resources import allocated_cores
from hpcsweep.store import record_submission, reset_attempts, trial_path
from hpcsweep.sweep.datasets import Datasets, describe_dataset
from hpcsweep.sweep.dispatch import TrialBatch, pack, submit
from hpcsweep.sweep.grid import expand
from hpcsweep.sweep.lease import driver_lease, tidy
from hpcsweep.sweep.rank import loss_space_warning
from hpcsweep.sweep.state import RUN_AGAIN, Plan, PlannedTrial, plan

__all__ = ["Datasets", "Plan", "PlannedTrial", "check_definition", "describe_dataset", "expand", "kept_sweep", "plan", "run_sweep"]


def run_sweep(
    sweep: SweepConfig,
    results_dir: Path,
    source: Path | None = None,
    definition: SweepConfig | None = None,
    wait: bool = True,
    progress: bool = True,
    log=print,
    wait_for_lease: bool = False,
    retry_failed: bool = False,
) -> Counter:
    """Dispatch every trial of `sweep` that is not finished or in flight; returns the count of states.

    `definition` is the sweep as its file defines it (before command-line
    overrides); its comparable part must match the one that made `results_dir`.
    One driver at a time holds the folder (`lease`); `retry_failed` gives trials
    that used up their retry budget a fresh one.
    """
    check_definition(results_dir, sweep)
    warning = loss_space_warning(sweep)
    if warning:
        log(f"warning: {warning}")
    if sweep.dispatch.executor == "slurm":  # a wrong site, partition or array size stops here, before any work
        from hpcsweep.sweep.slurm import slurm_parameters

        slurm_parameters(sweep.dispatch)
    with driver_lease(results_dir, wait_for_lease, log):
        tidy(results_dir, log)
        datasets = Datasets(results_dir, prepare=True, progress=progress, log=log)
        if sweep.search != "grid":
            return _run_search(sweep, results_dir, source, definition or sweep, datasets, wait, progress, log)
        return _run_grid(sweep, results_dir, source, definition or sweep, datasets, wait, progress, log, retry_failed)


def _run_grid(
    sweep: SweepConfig,
    results_dir: Path,
    source: Path | None,
    definition: SweepConfig,
    datasets: Datasets,
    wait: bool,
    progress: bool,
    log,
    retry_failed: bool,
) -> Counter:
    planned = plan(sweep, results_dir, str(source or sweep.name), datasets)  # data first: a bad source stops here
    if retry_failed and _reset_budgets(planned, results_dir, sweep.max_attempts, log):
        planned = plan(sweep, results_dir, str(source or sweep.name), datasets)
    for problem in planned.unreadable:
        log(f"warning: unreadable trial file, it will be rerun: {problem}")
    todo = [p for p in planned.trials if p.state in RUN_AGAIN]
    states = planned.states()
    log(
        f"sweep {sweep.name!r}: {len(planned.trials)} trials; {states['done'] + states['diverged']} finished, "
        f"{states['running'] + states['queued']} in flight, {states['failed'] + states['lost']} failed or lost to retry, "
        f"{states['pending']} new -> {results_dir}"
    )
    if states["exhausted"]:
        log(f"{states['exhausted']} trials failed {sweep.max_attempts} times and are not retried; "
            "see 'hpcsweep status', and run with --retry-failed to try them again")  # fmt: skip
    if planned.others:
        log(planned.describe_others())
    if not todo:
        if any(p.name != "claims" for p in results_dir.iterdir()):  # it now counts this definition (e.g. the full grid after a smoke test)
            _keep_definition(results_dir, definition, source)
            datasets.record()
        return states
    specs = _specs(sweep, todo, results_dir, source, datasets)
    _keep_definition(results_dir, definition, source)
    datasets.record()
    dispatch = sweep.dispatch
    if dispatch.executor == "slurm":
        batches = pack(specs, per_batch=dispatch.pack)
    else:
        batches = pack(specs, n_batches=dispatch.workers or max(1, allocated_cores() // dispatch.threads_per_trial))
    log(f"dispatching {len(specs)} trials as {len(batches)} {dispatch.executor} {'array tasks' if dispatch.executor == 'slurm' else 'jobs'}, "
        f"{dispatch.threads_per_trial} thread(s) per trial")  # fmt: skip
    jobs = submit(TrialBatch(), [(batch, dispatch.threads_per_trial) for batch in batches], dispatch, results_dir / "logs")
    record_submission(
        results_dir,
        dispatch.executor,
        {_job_name(job, dispatch.executor): [s.trial_id for s in batch] for job, batch in zip(jobs, batches, strict=True)},
    )
    if dispatch.executor == "slurm" and not wait:
        log(f"submitted job array {jobs[0].job_id.split('_')[0]}; follow with 'hpcsweep status {sweep.name}', or run again with --wait")
        return plan(sweep, results_dir, str(source or sweep.name), datasets).states()
    started = time.time()
    paths = [trial_path(results_dir, s.trial_id) for s in specs]

    def written() -> int:
        return sum(1 for p in paths if p.exists() and p.stat().st_mtime >= started)

    _follow(jobs, written, len(specs), dispatch.executor, "trial", progress, log)
    if written() < len(specs):
        log(f"{len(specs) - written()} trials left no result (job killed or cancelled?); logs in {results_dir / 'logs'}; "
            "running the sweep again retries them")  # fmt: skip
    return plan(sweep, results_dir, str(source or sweep.name), datasets).states()


def _reset_budgets(planned: Plan, results_dir: Path, max_attempts: int, log) -> int:
    """--retry-failed: failed and exhausted trials start their retry budget afresh; return how many."""
    again = [p.trial_id for p in planned.trials if p.state in ("failed", "exhausted")]
    for trial_id in again:
        reset_attempts(results_dir, trial_id)
    if again:
        log(f"--retry-failed: {len(again)} failed trials get {max_attempts} attempts again")
    return len(again)


def _run_search(
    sweep: SweepConfig, results_dir: Path, source: Path | None, definition: SweepConfig, datasets: Datasets, wait: bool, progress: bool, log
) -> Counter:
    """An Optuna search: workers that ask for trials until the budget is spent (see sweep.search)."""
    from hpcsweep.sweep.search import SearchWorker, check_space, finished, release_stale, study_for
    from hpcsweep.sweep.state import InFlight

    check_space(sweep, str(source or sweep.name))
    study = study_for(sweep, results_dir)
    released = release_stale(study, InFlight(results_dir).alive)
    done = finished(study)
    log(f"search {sweep.search!r} of sweep {sweep.name!r}: {done}/{sweep.budget} trials finished"
        + (f", {released} trials of vanished workers put back" if released else "") + f" -> {results_dir}")  # fmt: skip
    if done < sweep.budget:
        base = expand(sweep.model_copy(update={"space": {}, "search": "grid"}), version=datasets.version)[0]
        (template,) = _specs(sweep, [PlannedTrial(base.identity(), base, "pending")], results_dir, source, datasets)
        _keep_definition(results_dir, definition, source)
        datasets.record()
        dispatch = sweep.dispatch
        local = max(1, allocated_cores() // dispatch.threads_per_trial)
        workers = dispatch.workers or (min(sweep.budget - done, 8) if dispatch.executor == "slurm" else local)
        log(f"starting {workers} {dispatch.executor} search workers, {dispatch.threads_per_trial} thread(s) each")
        arguments = [(sweep.model_dump_json(), template, dispatch.threads_per_trial, index) for index in range(workers)]
        jobs = submit(SearchWorker(), arguments, dispatch, results_dir / "logs")
        record_submission(results_dir, dispatch.executor, {_job_name(job, dispatch.executor): [] for job in jobs})
        if dispatch.executor == "slurm" and not wait:
            log(f"submitted job array {jobs[0].job_id.split('_')[0]}; follow with 'hpcsweep status {sweep.name}'")
        else:
            _follow(jobs, lambda: finished(study), sweep.budget, dispatch.executor, "trial", progress, log)
    return plan(sweep, results_dir, str(source or sweep.name), datasets).states()


def _job_name(job, executor: str) -> str:
    """The name the attempts log and the state module use: SLURM's job id, or local:<host>:<pid>."""
    return job.job_id if executor == "slurm" else f"local:{socket.gethostname()}:{job.job_id}"


def check_definition(results_dir: Path, sweep: SweepConfig) -> None:
    """Refuse a sweep whose trials would not compare with those its results folder holds (see the module's doc)."""
    kept = _read_definition(results_dir)
    if not kept:
        return
    before, now = comparable(kept), comparable(_definition(sweep))
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if changed:
        shown = "; ".join(f"{k}: {before.get(k)!r} there, {now.get(k)!r} here" for k in changed[:3])
        raise UserError(
            f"{results_dir} holds trials of sweep {sweep.name!r} that would not compare with this definition's ({shown}"
            f"{f'; and {len(changed) - 3} more' if len(changed) > 3 else ''}); give this one another name: in its file, "
            f"or move {results_dir} away"
        )


def comparable(definition: dict[str, Any]) -> dict[str, Any]:
    """What all trials of one results folder must share, as dotted keys down to single values.

    The data as the sweep names them (not their normalisation, and not the keys its grid
    varies: comparing those is the grid's purpose) and how trials are measured
    (evaluation.reference, evaluation.tolerance).
    """
    points = definition.get("points") or []
    points = points.get("all", []) if isinstance(points, dict) else points  # older folders kept {"all": [...]}
    varied = set(definition.get("grid", {})) | {key for point in points for key in point}
    data = {k: v for k, v in definition.get("data", {}).items() if k != "normalisation"}
    if data.get("source", "generated") != "generated":
        data = {k: v for k, v in data.items() if k not in GENERATOR_KEYS}
    shared = {f"data.{k}": v for k, v in data.items() if f"data.{k}" not in varied}
    evaluation = definition.get("evaluation", {})
    shared |= {f"evaluation.{k}": evaluation[k] for k in ("reference", "tolerance") if k in evaluation}
    return _leaves(shared)


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{'data.varset': {'variables': [{'name': 'm'}]}} -> {'data.varset.variables[0].name': 'm'}: exact differences."""
    if isinstance(tree, dict) and (tree or not prefix):
        return {k: v for key, value in tree.items() for k, v in _leaves(value, f"{prefix}.{key}" if prefix else key).items()}
    if isinstance(tree, list) and any(isinstance(item, dict | list) for item in tree):
        return {k: v for i, item in enumerate(tree) for k, v in _leaves(item, f"{prefix}[{i}]").items()}
    return {prefix: tree}


def _definition(sweep: SweepConfig) -> dict[str, Any]:
    """A sweep as resolved (paths absolute, variable sets inlined): what its folder keeps and compares against."""
    return sweep.model_dump(mode="json")


def _read_definition(results_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((results_dir / "definition.json").read_text())
    except (OSError, ValueError):
        return {}


def kept_sweep(results_dir: Path) -> SweepConfig | None:
    """The sweep as its results folder last ran it (definition.json), or None (none kept, or of an older hpcsweep)."""
    from hpcsweep.config import validate_sweep

    kept = _read_definition(results_dir)
    if "name" not in kept:
        return None
    try:
        return validate_sweep(kept, str(results_dir / "definition.json"))
    except UserError:
        return None


def _keep_definition(results_dir: Path, sweep: SweepConfig, source: Path | None) -> None:
    """The resolved definition (definition.json) and the sweep file's own text (sweep.yaml), for review and reruns.

    Written only when they change, so a rerun that finds everything done touches nothing.
    """
    kept = {"definition.json": json.dumps(_definition(sweep), indent=1, sort_keys=True)}
    if source is not None:
        kept["sweep.yaml"] = Path(source).read_text()
    for name, text in kept.items():
        path = results_dir / name
        if not (path.is_file() and path.read_text() == text):
            write_atomically(path, text)


def _specs(sweep: SweepConfig, todo: list[PlannedTrial], results_dir: Path, source: Path | None, datasets: Datasets) -> list[TrialSpec]:
    """Bind trials to their prepared datasets, and to the signal samples they are evaluated on."""
    provenance = {"git_commit": git_commit(), "sweep_file": str(Path(source).resolve()) if source else ""}
    specs = []
    for item in todo:
        data = item.config.data
        signals = {label: str(datasets.folder(signal)) for label, signal in sweep.evaluation.signal_data(data).items()}
        specs.append(
            TrialSpec(
                trial_id=item.trial_id,
                sweep=sweep.name,
                config=item.config,
                dataset=str(datasets.folder(data)),
                results_dir=str(results_dir.resolve()),
                provenance=provenance,
                evaluation=sweep.evaluation,
                signals=signals,
                checkpoint_every=sweep.dispatch.checkpoint_every,
            )
        )
    return specs


def _follow(jobs: list, count, total: int, executor: str, unit: str, progress: bool, log) -> None:
    """Wait until `count()` reaches `total` or no job lives, with a progress bar; never waits on a job's result.

    A cancelled SLURM job is seen gone by squeue (submitit without accounting would wait on it forever).
    """
    from tqdm import tqdm

    from hpcsweep.sweep.slurm import live_jobs

    def any_alive() -> bool:
        if executor != "slurm":
            return not all(job.done() for job in jobs)
        live = live_jobs()
        return live is None or any(job.job_id in live for job in jobs)

    with tqdm(total=total, unit=unit, desc=f"{unit}s", disable=not progress) as bar:
        try:
            if executor == "debug":  # the debug executor runs each job when its result is asked for
                for job in jobs:
                    job.result()
            while count() < total and any_alive():
                if count() > bar.n:  # only redraw on news: logs of non-terminals stay short
                    bar.update(count() - bar.n)
                time.sleep(2 if executor == "slurm" else 0.5)  # one squeue call per poll
        except KeyboardInterrupt:
            if executor != "slurm":  # SLURM jobs go on without the driver
                for job in jobs:
                    job.cancel(check=False)
            log("\ninterrupted: finished trials are kept; run the sweep again to continue")
            raise
        bar.update(max(0, min(count(), total) - bar.n))


def git_commit() -> str:
    """The commit of the hpcsweep checkout ('-dirty' if it has local changes), or '' outside git."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if head.returncode != 0:
        return ""
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")

"""Sweep stage: grid expansion, identities, dispatch and resume (no torch here).

`run_sweep` expands the grid, asks the store (and the scheduler) what each
trial is doing, makes sure the data exist, and dispatches what is not finished
or in flight: failed and lost trials again (a lost one resumes from its
checkpoint), never one that is running or queued. It follows the jobs until
the store holds a file for each, or, on SLURM without `wait`, returns once
they are submitted. A results folder made by a different definition of the
sweep is refused.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hpcsweep.config import DataConfig, SweepConfig, TrialSpec, dotted
from hpcsweep.errors import UserError
from hpcsweep.resources import allocated_cores
from hpcsweep.store import record_submission, trial_path
from hpcsweep.sweep.dispatch import TrialBatch, pack, submit
from hpcsweep.sweep.grid import expand
from hpcsweep.sweep.state import RUN_AGAIN, PlannedTrial, plan

__all__ = ["PlannedTrial", "check_definition", "expand", "plan", "run_sweep"]


def run_sweep(
    sweep: SweepConfig,
    results_dir: Path,
    source: Path | None = None,
    definition: SweepConfig | None = None,
    wait: bool = True,
    progress: bool = True,
    log=print,
) -> Counter:
    """Dispatch every trial of `sweep` that is not finished or in flight; returns the count of states.

    `definition` is the sweep as its file defines it (before command-line
    overrides): it must match the one that made `results_dir`.
    """
    check_definition(results_dir, definition or sweep)
    if sweep.dispatch.executor == "slurm":  # a wrong site, partition or array size stops here, before any work
        from hpcsweep.sweep.slurm import slurm_parameters

        slurm_parameters(sweep.dispatch)
    if sweep.search != "grid":
        return _run_search(sweep, results_dir, source, definition or sweep, wait, progress, log)
    planned, unreadable = plan(sweep, results_dir, str(source or sweep.name))
    for problem in unreadable:
        log(f"warning: unreadable trial file, it will be rerun: {problem}")
    todo = [p for p in planned if p.state in RUN_AGAIN]
    states = Counter(p.state for p in planned)
    log(
        f"sweep {sweep.name!r}: {len(planned)} trials; {states['done'] + states['diverged']} finished, "
        f"{states['running'] + states['queued']} in flight, {states['failed'] + states['lost']} failed or lost to retry, "
        f"{states['pending']} new -> {results_dir}"
    )
    if not todo:
        return states
    specs = _specs(sweep, todo, results_dir, source, progress, log)  # data first: a bad source stops here
    results_dir.mkdir(parents=True, exist_ok=True)
    _keep_definition(results_dir, definition or sweep, source)
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
        return Counter(p.state for p in plan(sweep, results_dir, str(source or sweep.name))[0])
    started = time.time()
    paths = [trial_path(results_dir, s.trial_id) for s in specs]

    def written() -> int:
        return sum(1 for p in paths if p.exists() and p.stat().st_mtime >= started)

    _follow(jobs, written, len(specs), dispatch.executor, "trial", progress, log)
    if written() < len(specs):
        log(f"{len(specs) - written()} trials left no result (job killed or cancelled?); logs in {results_dir / 'logs'}; "
            "running the sweep again retries them")  # fmt: skip
    return Counter(p.state for p in plan(sweep, results_dir, str(source or sweep.name))[0])


def _run_search(
    sweep: SweepConfig, results_dir: Path, source: Path | None, definition: SweepConfig, wait: bool, progress: bool, log
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
        base = expand(sweep.model_copy(update={"space": {}, "search": "grid"}))[0]
        (template,) = _specs(sweep, [PlannedTrial(base.identity(), base, "pending")], results_dir, source, progress, log)
        _keep_definition(results_dir, definition, source)
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
    return Counter(p.state for p in plan(sweep, results_dir, str(source or sweep.name))[0])


def _job_name(job, executor: str) -> str:
    """The name the attempts log and the state module use: SLURM's job id, or local:<host>:<pid>."""
    return job.job_id if executor == "slurm" else f"local:{socket.gethostname()}:{job.job_id}"


def check_definition(results_dir: Path, sweep: SweepConfig) -> None:
    """Refuse to mix trials of two different definitions of a sweep in one folder."""
    kept = results_dir / "definition.json"
    if not kept.exists():
        return
    before, now = dotted(json.loads(kept.read_text())), dotted(_definition(sweep))
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if changed:
        shown = "; ".join(f"{k}: {before.get(k)!r} there, {now.get(k)!r} here" for k in changed[:3])
        raise UserError(
            f"{results_dir} holds trials of another definition of sweep {sweep.name!r} ({shown}); "
            f"give this one another name: in its file, or move {results_dir} away"
        )


def _definition(sweep: SweepConfig) -> dict[str, Any]:
    """What a sweep's trials depend on: the base trial, the grid and listed points (not dispatch, evaluation, description)."""
    dumped = sweep.model_dump(mode="json")
    return {key: dumped[key] for key in ("data", "model", "train", "grid")} | (
        {"points": {"all": dumped["points"]}} if sweep.points else {}
    )


def _keep_definition(results_dir: Path, sweep: SweepConfig, source: Path | None) -> None:
    kept = results_dir / "definition.json"
    if not kept.exists():
        kept.write_text(json.dumps(_definition(sweep), indent=1, sort_keys=True))
    copy = results_dir / "sweep.yaml"
    if source is not None and not (copy.exists() and copy.samefile(source)):
        shutil.copyfile(source, copy)


def _specs(sweep: SweepConfig, todo: list[PlannedTrial], results_dir: Path, source: Path | None, progress: bool, log) -> list[TrialSpec]:
    """Prepare each distinct dataset once (generate, read, cache) and bind trials to it."""
    from hpcsweep.data import prepare

    datasets: dict[str, str] = {}

    def cached(data: DataConfig) -> str:
        key = data.model_dump_json()
        if key not in datasets:
            datasets[key] = str(prepare(data, progress=progress))
            log(describe_dataset(Path(datasets[key])))
        return datasets[key]

    provenance = {"git_commit": git_commit(), "sweep_file": str(source or "")}
    specs = []
    for item in todo:
        data = item.config.data
        signals = {}
        if data.source == "generated":  # Z' samples for the dijet-mass check, read like the training data
            for mass in sweep.evaluation.signals:
                signal = data.model_copy(update={"process": "zprime", "zprime_mass": mass, "events": sweep.evaluation.signal_events})
                signals[f"zprime{mass:g}"] = cached(signal)
        specs.append(
            TrialSpec(
                trial_id=item.trial_id,
                sweep=sweep.name,
                config=item.config,
                dataset=cached(data),
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


def describe_dataset(folder: Path) -> str:
    """One line: how many jets of which file, and what the cleaning removed."""
    meta = json.loads((folder / "meta.json").read_text())
    removed = ", ".join(f"{c['name']}: {c['removed']:,}" for c in meta["cuts"] if c["removed"])
    return (
        f"data: {meta['n_jets']:,} jets x {len(meta['names'])} variables ({meta['varset']}) from {Path(meta['source']).name}"
        f"; removed by cleaning: {removed or 'none'}"
    )


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

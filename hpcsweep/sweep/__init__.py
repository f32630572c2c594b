"""Sweep stage: grid expansion, identities, dispatch and resume (no torch here).

`run_sweep` expands the grid, asks the store what is already finished, makes
sure the data exist, dispatches the rest, and follows them until the store
holds a file for each. Running it again skips finished trials (done or
diverged) and retries failed ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hpcsweep.config import DataConfig, SweepConfig, TrialConfig, TrialSpec
from hpcsweep.resources import allocated_cores
from hpcsweep.store import FINISHED_STATES, scan, trial_path
from hpcsweep.sweep.dispatch import pack, submit
from hpcsweep.sweep.grid import expand

__all__ = ["PlannedTrial", "plan", "run_sweep", "expand"]


@dataclass(frozen=True)
class PlannedTrial:
    trial_id: str
    config: TrialConfig
    state: str  # a store state, or "pending" when no file exists


def plan(sweep: SweepConfig, results_dir: Path, source: str = "sweep") -> tuple[list[PlannedTrial], list[str]]:
    """The sweep's trials with their state in the store, and the store files that could not be read."""
    summaries, unreadable = scan(results_dir)
    planned = [
        PlannedTrial(trial.identity(), trial, summaries.get(trial.identity(), {}).get("state", "pending"))
        for trial in expand(sweep, source)
    ]
    return planned, unreadable


def run_sweep(
    sweep: SweepConfig,
    results_dir: Path,
    source: Path | None = None,
    progress: bool = True,
    log=print,
) -> Counter:
    """Run every unfinished trial of `sweep` and wait for them; returns the count of states at the end."""
    planned, unreadable = plan(sweep, results_dir, str(source or sweep.name))
    for problem in unreadable:
        log(f"warning: unreadable trial file, it will be rerun: {problem}")
    todo = [p for p in planned if p.state not in FINISHED_STATES]
    states = Counter(p.state for p in planned)
    log(
        f"sweep {sweep.name!r}: {len(planned)} trials; {len(planned) - len(todo)} finished, "
        f"{states['failed']} failed to retry, {states['pending']} new -> {results_dir}"
    )
    if not todo:
        return states
    specs = _specs(sweep, todo, results_dir, source, progress, log)  # data first: a bad source stops here
    results_dir.mkdir(parents=True, exist_ok=True)
    if source is not None:
        shutil.copyfile(source, results_dir / "sweep.yaml")
    workers = sweep.dispatch.workers or max(1, allocated_cores() // sweep.dispatch.threads_per_trial)
    batches = pack(specs, workers)
    log(
        f"dispatching {len(specs)} trials as {len(batches)} {sweep.dispatch.executor} jobs, {sweep.dispatch.threads_per_trial} thread(s) each"
    )
    jobs = submit(batches, sweep.dispatch, results_dir / "logs")
    _follow(jobs, specs, results_dir, sweep.dispatch.executor == "debug", progress, log)
    final, _ = plan(sweep, results_dir, str(source or sweep.name))
    return Counter(p.state for p in final)


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


def _follow(jobs: list, specs: list[TrialSpec], results_dir: Path, in_process: bool, progress: bool, log) -> None:
    """Wait for the jobs, with a progress bar fed by trial files appearing in the store."""
    from tqdm import tqdm

    started = time.time()
    paths = [trial_path(results_dir, s.trial_id) for s in specs]

    def written() -> int:
        return sum(1 for p in paths if p.exists() and p.stat().st_mtime >= started)

    with tqdm(total=len(specs), unit="trial", desc="trials", disable=not progress) as bar:
        try:
            if in_process:  # the debug executor runs each job when its result is asked for
                for job in jobs:
                    job.result()
            while not all(job.done() for job in jobs):
                if written() > bar.n:  # only redraw on news: logs of non-terminals stay short
                    bar.update(written() - bar.n)
                time.sleep(0.5)
        except KeyboardInterrupt:
            for job in jobs:
                job.cancel(check=False)
            log("\ninterrupted: finished trials are kept; run the sweep again to continue")
            raise
        bar.update(written() - bar.n)
    missing = [s.trial_id for s, p in zip(specs, paths, strict=True) if not (p.exists() and p.stat().st_mtime >= started)]
    if missing:
        log(f"{len(missing)} trials left no result (job killed?): {', '.join(missing[:5])}; logs in {results_dir / 'logs'}")


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

"""Dispatch of trials through submitit executors, and the worker that runs them.

Trials are packed into as many jobs as may run at once; each job runs its
trials one after another with a fixed number of threads, so a 2-core laptop
is not oversubscribed by torch's default of one thread per core per process.
The store, not the executor, says what is finished.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from hpcsweep.config import DispatchConfig, TrialSpec
from hpcsweep.store import TrialRecord, trial_path, write_trial


def run_batch(specs: list[TrialSpec], threads: int) -> list[str]:
    """Run trials one after another (inside a job); a failing trial is recorded and the next one starts."""
    from hpcsweep.trial import TrialInterrupted, run_trial  # torch is imported in the worker only

    states = []
    for spec in specs:
        try:
            states.append(run_trial(spec, threads))
        except TrialInterrupted:  # checkpointed on a stop signal: not a failure, the next run resumes it
            raise
        except Exception as error:  # recorded in the store as 'failed'; a rerun retries it
            record_failure(spec, error)
            states.append("failed")
    return states


def record_failure(spec: TrialSpec, error: BaseException) -> None:
    """Write a 'failed' trial file with the traceback."""
    write_trial(
        trial_path(Path(spec.results_dir), spec.trial_id),
        TrialRecord(
            trial_id=spec.trial_id,
            sweep=spec.sweep,
            state="failed",
            config=spec.config.model_dump(mode="json"),
            provenance=dict(spec.provenance),
            error="".join(traceback.format_exception(error)),
        ),
    )


def pack(specs: list[TrialSpec], n_jobs: int) -> list[list[TrialSpec]]:
    """Deal trials round-robin into at most `n_jobs` non-empty batches."""
    n_jobs = max(1, min(n_jobs, len(specs)))
    return [specs[i::n_jobs] for i in range(n_jobs) if specs[i::n_jobs]]


def submit(batches: list[list[TrialSpec]], dispatch: DispatchConfig, log_dir: Path) -> list:
    """Submit one job per batch; returns submitit jobs (the debug executor runs them on `.result()`)."""
    import submitit

    if dispatch.executor == "debug":
        executor = submitit.DebugExecutor(folder=log_dir)
    else:
        executor = submitit.LocalExecutor(folder=log_dir)
        executor.update_parameters(timeout_min=dispatch.timeout_min)
    return executor.map_array(run_batch, batches, [dispatch.threads_per_trial] * len(batches))

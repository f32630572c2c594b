"""Dispatch of trials through submitit executors, and the worker that runs them.

Trials are packed into batches; each batch is one job (local executor) or one
array task (SLURM) and runs its trials one after another with a fixed number
of threads. A batch is submitit-`Checkpointable`: when SLURM warns of the time
limit (SIGUSR2) or preempts it, the running trial checkpoints at the end of its
epoch, submitit requeues the batch, and the requeued batch skips the trials
already finished and resumes the interrupted one. The store, not the
executor, says what is finished.
"""

from __future__ import annotations

import signal
import traceback
from pathlib import Path

from submitit.helpers import Checkpointable

from hpcsweep.config import DispatchConfig, TrialSpec
from hpcsweep.store import FINISHED_STATES, TrialRecord, close_attempt, open_attempt, read_summary, trial_path, write_trial


class TrialBatch(Checkpointable):
    """Trials run one after another inside one job; requeued as a whole (see the module's doc)."""

    def __call__(self, specs: list[TrialSpec], threads: int) -> list[str]:
        return run_batch(specs, threads)


def run_batch(specs: list[TrialSpec], threads: int) -> list[str]:
    """Run the batch's unfinished trials; a failing trial is recorded and the next one starts."""
    return [finished_state(spec) or run_one(spec, threads) for spec in specs]  # a requeued batch skips what ended


def run_one(spec: TrialSpec, threads: int, report=None) -> str:
    """Run one trial inside a job: log the attempt, hand a stop signal over, record a failure; return its state."""
    from hpcsweep.trial import TrialInterrupted, run_trial  # torch is imported in the worker only

    open_attempt(Path(spec.results_dir), spec.trial_id, spec.config.model_dump(mode="json"))
    try:
        return run_trial(spec, threads, report=report)
    except TrialInterrupted as stop:
        close_attempt(Path(spec.results_dir), spec.trial_id, f"stopped by {signal.Signals(stop.signum).name}, checkpointed")
        _hand_over(spec, stop.signum)
        raise
    except Exception as error:  # recorded in the store as 'failed'; a rerun retries it
        record_failure(spec, error)
        return "failed"


def finished_state(spec: TrialSpec) -> str:
    path = trial_path(Path(spec.results_dir), spec.trial_id)
    try:
        state = read_summary(path)["state"] if path.exists() else ""
    except (OSError, KeyError):
        return ""
    return state if state in FINISHED_STATES else ""


def _hand_over(spec: TrialSpec, signum: int) -> None:
    """Pass a stop signal to the handler that was there before the trial's: submitit's requeues the batch.

    submitit ignores SIGTERM (SLURM's requeue after preemption follows) and, past
    its requeue cap, raises UncompletedJobError: the trial is then failed as
    'timeout exhausted'.
    """
    from submitit.core.utils import UncompletedJobError

    handler = signal.getsignal(signum)
    if not callable(handler) or handler is signal.default_int_handler:
        return
    try:
        handler(signum, None)
    except UncompletedJobError as error:
        record_failure(spec, error)
        raise


def failure_class(error: BaseException) -> str:
    """What kind of failure an exception is, for the status table and the retry policy."""
    name = type(error).__name__
    if isinstance(error, MemoryError) or "OutOfMemory" in name:
        return "out of memory"
    if name == "UncompletedJobError":
        return "timeout exhausted"
    return "error"


def record_failure(spec: TrialSpec, error: BaseException) -> None:
    """Write a 'failed' trial file with the failure's class and traceback, and close the attempt."""
    kind = failure_class(error)
    results = Path(spec.results_dir)
    attempts = close_attempt(results, spec.trial_id, f"failed: {kind}")
    write_trial(
        trial_path(results, spec.trial_id),
        TrialRecord(
            trial_id=spec.trial_id,
            sweep=spec.sweep,
            state="failed",
            config=spec.config.model_dump(mode="json"),
            provenance={**spec.provenance, "attempts": attempts},
            error="".join(traceback.format_exception(error)),
            failure=kind,
        ),
    )


def pack(specs: list[TrialSpec], n_batches: int | None = None, per_batch: int | None = None) -> list[list[TrialSpec]]:
    """Deal trials round-robin into `n_batches` (local: one per worker), or cut them `per_batch` at a time (SLURM)."""
    if per_batch:
        return [specs[i : i + per_batch] for i in range(0, len(specs), per_batch)]
    n_batches = max(1, min(n_batches or 1, len(specs)))
    return [specs[i::n_batches] for i in range(n_batches) if specs[i::n_batches]]


def submit(function, arguments: list[tuple], dispatch: DispatchConfig, log_dir: Path) -> list:
    """One job (local) or array task (SLURM) per argument tuple; the debug executor runs them on `.result()`."""
    import submitit

    columns = [list(column) for column in zip(*arguments, strict=True)]
    if dispatch.executor == "slurm":
        from hpcsweep.sweep.slurm import submit_arrays

        return submit_arrays(function, columns, dispatch, log_dir)
    if dispatch.executor == "debug":
        executor = submitit.DebugExecutor(folder=log_dir)
    else:
        executor = submitit.LocalExecutor(folder=log_dir)
        executor.update_parameters(timeout_min=dispatch.timeout_min)
    return executor.map_array(function, *columns)

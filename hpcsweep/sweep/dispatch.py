"""Dispatch of trials through submitit executors, and the worker that runs them.

Trials are packed into batches; each batch is one job (local executor) or one
array task (SLURM) and runs its trials one after another with a fixed number
of threads. A batch is submitit-`Checkpointable`: when SLURM warns of the time
limit (SIGUSR2) or preempts it, the running trial checkpoints at the end of its
epoch, submitit requeues the batch, and the requeued batch skips the trials
already finished and resumes the interrupted one. The store, not the
executor, says what is finished.

A worker claims a trial before it runs it (`hpcsweep.claims`), so two workers
never train one trial at once, whichever drivers or array tasks started them:
the second leaves it to the first; the claim of a dead worker is taken over
and the trial resumes from its checkpoint.
"""

from __future__ import annotations

import errno
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from submitit.helpers import Checkpointable

from hpcsweep.claims import Claim
from hpcsweep.config import TrialSpec
from hpcsweep.states import TrialState
from hpcsweep.store import (
    TrialRecord,
    claims_dir,
    clear_progress,
    close_attempt,
    foreign,
    open_attempt,
    read_summary,
    set_aside,
    trial_path,
    verify_trial,
    write_ended,
)
from hpcsweep.sweep.backends import JobTeller
from hpcsweep.sweep.state import edited_config

if TYPE_CHECKING:
    from hpcsweep.trial.train import Report

TRIAL_STALE_S = 300.0  # a trial's claim without a heartbeat for this long is taken over (the heartbeat beats every 30 s)
CHECKPOINTED: dict[int, str] = {signal.SIGUSR2: "time limit", signal.SIGTERM: "preempted"}  # submitit warns of the limit with USR2


class TrialBatch(Checkpointable):
    """Trials run one after another inside one job; requeued as a whole (see the module's doc)."""

    def __call__(self, specs: list[TrialSpec], threads: int) -> list[TrialState | None]:
        return run_batch(specs, threads)


def run_batch(specs: list[TrialSpec], threads: int) -> list[TrialState | None]:
    """Run the batch's unfinished trials; a failing trial is recorded and the next one starts."""
    return [run_one(spec, threads) for spec in specs]  # a requeued batch skips what ended


def run_one(spec: TrialSpec, threads: int, report: Report | None = None) -> TrialState | None:
    """Claim one trial and run it unless it is finished or claimed by a live worker; return its state (None: left to another).

    The attempt is logged, a stop signal handed over, a failure recorded.
    """
    results = Path(spec.results_dir)
    claim = Claim(claims_dir(results), spec.trial_id, TRIAL_STALE_S, JobTeller().alive)
    holder = claim.acquire()
    if holder is not None:
        print(f"trial {spec.trial_id}: left to {holder.describe()}, which runs it", file=sys.stderr)
        return None
    try:
        if finished := finished_state(spec):
            return _evaluated_on_new_signals(spec, finished)
        if claim.superseded is not None:
            print(f"trial {spec.trial_id}: taken over from {claim.superseded.describe()}, which is gone", file=sys.stderr)
        return _attempt(spec, threads, report, claim.held)
    finally:
        claim.release()


def _evaluated_on_new_signals(spec: TrialSpec, state: TrialState) -> TrialState:
    """A done trial of a sweep whose signals grew since it ran: evaluated on the new ones against its validation jets,
    as at the end of its training (AUC, rejections), not trained again."""
    if state != TrialState.DONE or not spec.signals:
        return state
    path = trial_path(Path(spec.results_dir), spec.trial_id)
    done = set(read_summary(path).get("evaluations") or [])
    new = {label: folder for label, folder in spec.signals.items() if label not in done}
    if new and spec.config.model.autoencoder:
        from hpcsweep.trial import evaluate_signals  # torch is imported in the worker only

        try:
            evaluate_signals(path, spec.dataset, new)
        except Exception as error:  # the trial stays done; the next run of the sweep tries the signals again
            print(f"trial {spec.trial_id}: evaluating it on {', '.join(new)} failed: {type(error).__name__}: {error}", file=sys.stderr)
    return state


def _attempt(spec: TrialSpec, threads: int, report: Report | None, still_ours: Callable[[], bool]) -> TrialState | None:
    from hpcsweep.trial import TrialInterrupted, run_trial  # torch is imported in the worker only

    open_attempt(Path(spec.results_dir), spec.trial_id, spec.config.model_dump(mode="json"))
    try:
        return run_trial(spec, threads, report=report, still_ours=still_ours)
    except TrialInterrupted as stop:
        close_attempt(Path(spec.results_dir), spec.trial_id, f"checkpointed: {checkpoint_reason(stop.signum)}")
        _hand_over(spec, stop.signum, still_ours)
        raise
    except Exception as error:  # recorded in the store as 'failed'; a rerun retries it (within the retry budget)
        record_failure(spec, error, still_ours)
        return TrialState.FAILED


def checkpoint_reason(signum: int) -> str:
    """Why a trial stopped and checkpointed: SLURM's time-limit warning (USR2), preemption (TERM), or the signal."""
    return CHECKPOINTED.get(signum, f"signal {signal.Signals(signum).name}")


def finished_state(spec: TrialSpec) -> TrialState | None:
    """The state of the trial's file if it is finished, whole (its checksum holds) and this trial's, else None.

    Another trial's file under this trial's name, or one whose config was edited, is damage: it is set aside
    (`damaged/`, with why) and the trial runs.
    """
    path = trial_path(Path(spec.results_dir), spec.trial_id)
    try:
        summary = verify_trial(path) if path.exists() else None
    except (OSError, KeyError, ValueError):
        return None
    if summary is None:
        return None
    problem = foreign(summary, spec.trial_id) or edited_config(summary, spec.trial_id)
    if problem:
        print(f"trial {spec.trial_id}: its file {problem}; set aside to {set_aside(path, problem)}, the trial runs again", file=sys.stderr)
        return None
    state = TrialState(summary["state"])
    return state if state.is_finished() else None


def _hand_over(spec: TrialSpec, signum: int, still_ours: Callable[[], bool]) -> None:
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
        record_failure(spec, error, still_ours)
        raise


def failure_class(error: BaseException) -> str:
    """What kind of failure an exception is, for status and the retry budget: its last line for a plain error."""
    name = type(error).__name__
    if isinstance(error, MemoryError) or "OutOfMemory" in name:
        return "out of memory"
    if name == "UncompletedJobError":
        return "timeout exhausted"
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    last = (str(error).strip().splitlines() or [""])[-1]
    return f"error: {name}: {last}"[:200].rstrip(": ")


def record_failure(spec: TrialSpec, error: BaseException, still_ours: Callable[[], bool] = lambda: True) -> None:
    """Write a 'failed' trial file with the failure's class and traceback, then close the attempt.

    Nothing is written for a trial another worker has taken over; when the disk is full the
    attempt still ends in the log if it can, and a later run retries the trial.
    """
    kind = failure_class(error)
    results = Path(spec.results_dir)
    if not still_ours():
        return
    try:
        trace = "".join(traceback.format_exception(error))
        config = spec.config.model_dump(mode="json")
        failed = TrialRecord(
            spec.trial_id, spec.sweep, TrialState.FAILED, config, provenance=dict(spec.provenance), error=trace, failure=kind
        )
        write_ended(results, failed, f"failed: {kind}")
    except OSError as write_error:
        print(f"trial {spec.trial_id}: {kind}; its failure could not be written either ({write_error})", file=sys.stderr)
    try:
        close_attempt(results, spec.trial_id, f"failed: {kind}")
        clear_progress(results, spec.trial_id)
    except OSError:
        print(f"trial {spec.trial_id}: the end of its attempt could not be logged; a later run retries it", file=sys.stderr)

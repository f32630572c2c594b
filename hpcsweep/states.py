"""The states a trial can be in: the one list that the store, the sweep, the search, dispatch and review share.

| state | meaning | a rerun of the sweep |
|---|---|---|
| done, diverged, pruned | its trial file says so | skips it |
| failed | its trial file says so (error, out of memory, disk full, timeout exhausted) | runs it again |
| exhausted | failed `max_attempts` times of its own doing (an error, out of memory, its time limit) since the last reset; kills, lost jobs and full disks do not count | skips it (`--retry-failed` runs it again) |
| running | an attempt started and its job still lives | leaves it |
| queued | a live job or array task carries it and it has not started | leaves it |
| lost | it started, or was submitted, and its job is gone (killed, cancelled, node failure) | runs it again (resuming its checkpoint) |
| pending | never submitted | runs it |

A trial file holds one of the first four; the others are what the sweep
learns from the attempts logs and the scheduler.
"""

from __future__ import annotations

from enum import StrEnum


class TrialState(StrEnum):
    """A trial's state; a `str`, so it is written to JSON and compared with text as is."""

    DONE = "done"
    DIVERGED = "diverged"
    PRUNED = "pruned"
    FAILED = "failed"
    EXHAUSTED = "exhausted"
    RUNNING = "running"
    QUEUED = "queued"
    LOST = "lost"
    PENDING = "pending"

    def is_finished(self) -> bool:
        """Ended for good: a rerun skips it and it counts in the tables (done, diverged, pruned)."""
        return self in _FINISHED

    def runs_again(self) -> bool:
        """A rerun of the sweep runs it (failed, lost, pending)."""
        return self in _RUN_AGAIN

    def in_flight(self) -> bool:
        """A job runs or carries it now (running, queued)."""
        return self in _IN_FLIGHT

    def is_stored(self) -> bool:
        """A state a trial file can hold."""
        return self in _FINISHED or self is TrialState.FAILED


_FINISHED = frozenset({TrialState.DONE, TrialState.DIVERGED, TrialState.PRUNED})
_RUN_AGAIN = frozenset({TrialState.FAILED, TrialState.LOST, TrialState.PENDING})
_IN_FLIGHT = frozenset({TrialState.RUNNING, TrialState.QUEUED})

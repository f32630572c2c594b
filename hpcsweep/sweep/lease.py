"""One driver per results folder at a time, and the folder tidied of what dead writers left.

Two `hpcsweep sweep` commands of one sweep started at once (two terminals, a
colleague resubmitting) would both dispatch every trial. The driver therefore
holds a lease on its results folder (`claims/driver.<n>.claim`, see
`hpcsweep.claims`: host, pid, job, start; heartbeat every minute). A second
driver says who holds it and stops, or with `--wait-for-lease` waits; the
lease of a driver that is gone (dead pid on this host, or no heartbeat for
ten minutes from another host) is taken over with a message. The claims of
trials keep two workers off one trial even without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hpcsweep.claims import Claim, sweep_claims
from hpcsweep.errors import Log, UserError
from hpcsweep.files import sweep_temporaries
from hpcsweep.store import checkpoints_dir, claims_dir, trials_dir
from hpcsweep.sweep.backends import JobTeller, job_alive
from hpcsweep.sweep.dispatch import TRIAL_STALE_S

DRIVER_STALE_S = 600.0  # a driver on another host without a heartbeat for this long is gone


@contextmanager
def driver_lease(results_dir: Path, wait: bool = False, log: Log = print) -> Iterator[None]:
    """Hold the results folder's lease while the block runs (see the module's doc).

    A folder made only to hold the lease is removed again when nothing else was written
    into it (a sweep refused for its data leaves no results folder).
    """
    results_dir = Path(results_dir)
    if results_dir.exists() and not results_dir.is_dir():
        raise UserError(f"{results_dir} is a file, not a results folder; give another --results, or move the file away")
    created = [folder for folder in (results_dir, *results_dir.parents) if not folder.exists()]  # deepest first
    lease = Claim(claims_dir(results_dir), "driver", DRIVER_STALE_S, job_alive)
    holder = lease.acquire()
    if holder is not None and not wait:
        raise UserError(
            f"{results_dir} is being run by another hpcsweep driver, {holder.describe()}; "
            "wait for it with --wait-for-lease, or follow it with 'hpcsweep status'"
        )
    if holder is not None:
        lease.waiting(log)
    if lease.superseded is not None:
        log(f"took over the lease of {results_dir} from {lease.superseded.describe()}, which is gone")
    try:
        yield
    finally:
        lease.release()
        if created:
            _remove_if_empty([claims_dir(results_dir), *created])


def tidy(results_dir: Path, log: Log = print) -> None:
    """Remove the temporaries and claims that writers and workers now gone left in the folder (the lease held)."""
    results_dir = Path(results_dir)
    folders = (results_dir, trials_dir(results_dir), checkpoints_dir(results_dir), claims_dir(results_dir))
    removed = [path for folder in folders for path in sweep_temporaries(folder)]
    claims = sweep_claims(claims_dir(results_dir), TRIAL_STALE_S, JobTeller().alive) if claims_dir(results_dir).is_dir() else []
    if removed or claims:
        log(f"tidied {results_dir}: {len(removed)} temporary files and {len(claims)} claims of writers and workers that are gone")


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty: the sweep wrote into it
            return

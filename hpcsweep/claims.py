"""Claims: one holder at a time for a piece of work (a results folder's driver, a trial, a sample being generated).

`flock` cannot be trusted on the shared filesystems of clusters (NFS, Lustre),
so a claim is a file made by hard-linking a written temporary to
`<folder>/<name>.<generation>.claim` (`link` fails if the name exists, and is
atomic there), saying who holds it (host, pid, job, start): a claim is whole
the moment it exists, so a full disk can fail to make one but never leaves an
empty one. Its mtime is the heartbeat, touched by a thread of the holder. The
newest generation holds; one that cannot be read (damaged) is taken over once
it is UNREADABLE_AFTER_S old.

A claim whose holder is gone (a dead pid on this host, a SLURM job no longer
in the queue) or whose heartbeat is older than `stale_after` is superseded by
creating the next generation, again by `link`: of two processes that judge
it stale at once, only one wins. A holder that finds a newer generation than
its own has lost its claim (it was thought dead) and must not write its result.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from hpcsweep.allocation import local_job, this_job
from hpcsweep.errors import Log
from hpcsweep.files import pid_alive, temp_path

JobAlive = Callable[[str], "bool | None"]  # a scheduler's answer for a job name: alive, gone, or None (cannot tell)
UNREADABLE_AFTER_S = 5.0  # a claim file that cannot be read is a holder only this long (a filesystem's lag), then taken over


@dataclass(frozen=True)
class Holder:
    """Who holds a claim, as its file says; `heartbeat` is the file's mtime."""

    host: str
    pid: int
    job: str
    start: float
    heartbeat: float
    generation: int

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.start))
        return f"{self.job} (pid {self.pid} on {self.host}, since {since}, heartbeat {max(0.0, time.time() - self.heartbeat):.0f} s ago)"


class Claim:
    """A claim on `name` in `folder` (see the module's doc); use `acquire`/`release`, or `with claim.waiting(log)`."""

    def __init__(self, folder: Path, name: str, stale_after: float = 300.0, job_alive: JobAlive | None = None):
        self.folder = Path(folder)
        self.name = name
        self.stale_after = stale_after
        self.job_alive = job_alive
        self.generation: int | None = None
        self.superseded: Holder | None = None  # the stale holder this claim replaced, if any
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> Holder | None:
        """Take the claim and start its heartbeat; None when taken, else the live holder that keeps it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            newest = self._newest()
            holder = None
            if newest is not None:
                holder = self._holder(newest)
                if holder is None and self._alive(holder, newest):  # unreadable a moment ago: read it again
                    time.sleep(0.05)
                    continue
                if holder is not None and self._alive(holder, newest):
                    return holder
            generation = 0 if newest is None else newest + 1
            try:
                self._create(generation)
            except FileExistsError:  # another process took it (or superseded it) first: look again
                continue
            except FileNotFoundError:  # the folder was removed meanwhile (an empty results folder tidied away)
                self.folder.mkdir(parents=True, exist_ok=True)
                continue
            self.generation, self.superseded = generation, holder
            self._remove(range(generation))
            self._start_heartbeat()
            return None

    def waiting(self, log: Log = print, poll_s: float = 2.0) -> Claim:
        """Acquire, waiting (and saying once for whom) while another live process holds the claim."""
        said = False
        while (holder := self.acquire()) is not None:
            if not said:
                log(f"waiting for {holder.describe()}, which holds {self.name!r}")
                said = True
            time.sleep(poll_s)
        return self

    def held(self) -> bool:
        """This process still holds the claim: its file exists and no newer generation does."""
        return self.generation is not None and self._path(self.generation).exists() and self._newest() == self.generation

    def release(self) -> None:
        """Stop the heartbeat and remove this claim's file (and older ones); a newer generation is left to its holder."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.generation is not None:
            self._remove(range(self.generation + 1))
            self.generation = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()

    def _path(self, generation: int) -> Path:
        return self.folder / f"{self.name}.{generation}.claim"

    def _create(self, generation: int) -> None:
        """Write who holds the claim to a temporary, then link it to the claim's name (FileExistsError: taken first)."""
        record = {"host": socket.gethostname(), "pid": os.getpid(), "job": this_job(), "start": time.time()}
        written = temp_path(self._path(generation))
        try:
            written.write_text(json.dumps(record))
            os.link(written, self._path(generation))
        finally:
            written.unlink(missing_ok=True)

    def _generations(self) -> list[int]:
        found = []
        for path in self.folder.glob("*.claim"):
            name, _, generation = path.name[: -len(".claim")].rpartition(".")
            if name == self.name and generation.isdigit():
                found.append(int(generation))
        return sorted(found)

    def _newest(self) -> int | None:
        generations = self._generations()
        return generations[-1] if generations else None

    def _holder(self, generation: int) -> Holder | None:
        """The holder its file names; None while the file is being written (or unreadable)."""
        path = self._path(generation)
        try:
            record = json.loads(path.read_text())
            return Holder(record["host"], record["pid"], record["job"], record["start"], path.stat().st_mtime, generation)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _alive(self, holder: Holder | None, generation: int) -> bool:
        if holder is None:  # unreadable (a claim is whole when it exists: damaged, or a filesystem's lag): alive a moment only
            try:
                return time.time() - self._path(generation).stat().st_mtime < UNREADABLE_AFTER_S
            except OSError:
                return False
        return holder_alive(holder, self.stale_after, self.job_alive)

    def _remove(self, generations: Iterable[int]) -> None:
        existing = set(self._generations())
        for generation in generations:
            if generation in existing:
                self._path(generation).unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        assert self.generation is not None  # set by `acquire` just before
        path, every = self._path(self.generation), max(0.05, self.stale_after / 10)

        def beat() -> None:
            while not self._stop.wait(every):
                try:
                    os.utime(path)
                except OSError:  # superseded and removed: `held` says so to whoever asks
                    return

        self._thread = threading.Thread(target=beat, name=f"heartbeat {self.name}", daemon=True)
        self._thread.start()


def holder_alive(holder: Holder, stale_after: float, job_alive: JobAlive | None = None) -> bool:
    """Alive unless its pid is dead on this host, the scheduler says its job is gone, or its heartbeat is stale.

    A holder with this process's SLURM job name is an earlier run of this very job (requeued): gone.
    """
    if holder.host == socket.gethostname() and not pid_alive(holder.pid):
        return False
    scheduled = local_job(holder.job) is None
    if scheduled and holder.job == this_job() and (holder.host, holder.pid) != (socket.gethostname(), os.getpid()):
        return False
    if scheduled and job_alive is not None and job_alive(holder.job) is False:
        return False
    return time.time() - holder.heartbeat < stale_after


def sweep_claims(folder: Path, stale_after: float, job_alive: JobAlive | None = None) -> list[str]:
    """Remove every claim whose newest generation's holder is gone; return their names (for a log line)."""
    names = {path.name[: -len(".claim")].rpartition(".")[0] for path in Path(folder).glob("*.claim")}
    removed = []
    for name in sorted(names):
        claim = Claim(folder, name, stale_after, job_alive)
        newest = claim._newest()
        if newest is not None and not claim._alive(claim._holder(newest), newest):
            claim._remove(range(newest + 1))
            removed.append(name)
    return removed

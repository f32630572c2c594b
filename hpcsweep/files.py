"""Files that survive a kill at any moment: temporary names that say who writes them, atomic replacement, sweeping.

Every file hpcsweep writes (trial files, checkpoints, indexes, generated
samples, data caches) is written under a temporary name in its final folder,
`.<name>~<host>~<pid>.tmp`, and renamed into place, so a reader sees the old
file or the new one, never half of one. A writer killed before the rename
leaves its temporary behind; the name says whose it was, so the next run
removes those of dead writers (`sweep_temporaries`): a dead pid on this host,
or a day old from another host (a write takes seconds). Every atomic write
first removes those of its own target, so a command rerun after a kill (compress,
decompress, score, export) leaves no debris of the killed run.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

OTHER_HOST_AGE_S = 86_400  # a temporary of another host's writer older than this is abandoned


def temp_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place (same folder, so the rename is atomic)."""
    return path.with_name(f".{path.name}~{socket.gethostname()}~{os.getpid()}.tmp")


@contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """The temporary to write `path` as; renamed into place when the block ends without error.

    A failed write (an exception, a full disk) leaves the old file as it was and no temporary behind; a full disk is
    reported as `path`'s (a write's OSError names no file, or names the temporary, which the user never sees).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries_of(path)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT) and err.filename in (None, str(tmp)):
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_atomically(path: Path, text: str) -> None:
    """A reader sees the old text or the new, never half (see `atomic`)."""
    with atomic(path) as tmp:
        tmp.write_text(text)


def sweep_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries (files or folders) of writers that are gone; return what was removed."""
    removed: list[Path] = []
    if not Path(folder).is_dir():
        return removed
    for path in Path(folder).glob(".*~*~*.tmp"):
        if _abandoned(path):
            _remove(path)
            removed.append(path)
    return removed


def sweep_temporaries_of(path: Path) -> None:
    """Remove the temporaries of `path` that writers killed before their rename left (a glob of that name only: cheap)."""
    own = f".{path.name}"
    for tmp in path.parent.glob(f"{glob.escape(own)}~*~*.tmp"):
        if tmp.name.rsplit("~", 2)[0] == own and _abandoned(tmp):
            _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _abandoned(path: Path) -> bool:
    _, host, pid = path.name[: -len(".tmp")].rsplit("~", 2)
    if host == socket.gethostname():
        return pid.isdigit() and not pid_alive(int(pid))
    try:
        return time.time() - path.stat().st_mtime > OTHER_HOST_AGE_S
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """A process with this pid exists on this host and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True

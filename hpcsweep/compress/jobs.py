"""A dataset's array task, apart from `dataset` so that importing the compression stage does not import submitit (a
tenth of a second of every compress command)."""

from __future__ import annotations

from submitit.helpers import Checkpointable

from hpcsweep.compress.dataset import FileTask, run_files


class FileBatch(Checkpointable):
    """A job's files (`run_files`), submitit-`Checkpointable`: an array task warned of its time limit is requeued with
    the same files, and the requeued task skips those its earlier run finished (their records verify)."""

    def __call__(self, tasks: list[FileTask]) -> list[str]:
        return run_files(tasks)

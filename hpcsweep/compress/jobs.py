"""A dataset's array task, apart from `dataset` so that importing the compression stage does not import submitit (a
tenth of a second of every compress command)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from submitit.helpers import Checkpointable


class FileBatch(Checkpointable):
    """A job's files, run by `run` (`dataset.run_files`), submitit-`Checkpointable`: an array task warned of its time
    limit is requeued with the same files, and the requeued task skips those its earlier run finished (their records
    verify)."""

    def __init__(self, run: Callable[[list[Any]], list[str]]) -> None:
        self.run = run

    def __call__(self, tasks: list[Any]) -> list[str]:
        return self.run(tasks)

"""What one run of a sweep holds while it plans, dispatches and follows: the `Driver`, which the grid's run
(`hpcsweep.sweep.run`) and a search's (`hpcsweep.sweep.search`) both hand their trials or workers to the backend with."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hpcsweep.config import SweepConfig, TrialConfig, TrialSpec
from hpcsweep.errors import Log, UserError
from hpcsweep.provenance import git_commit
from hpcsweep.store import logs_dir, record_submission
from hpcsweep.sweep.backends import Backend, Job
from hpcsweep.sweep.datasets import Datasets
from hpcsweep.sweep.definition import keep_definition


@dataclass
class Driver:
    """What one run of a sweep holds while it plans, dispatches and follows."""

    sweep: SweepConfig
    results_dir: Path
    source: Path | None
    definition: SweepConfig
    datasets: Datasets
    backend: Backend
    follows: bool
    progress: bool
    log: Log

    @property
    def label(self) -> str:
        return str(self.source or self.sweep.name)

    def keep(self) -> None:
        """The definition this run counts, and the data versions it trains on, kept in the folder."""
        keep_definition(self.results_dir, self.definition, self.source)
        self.datasets.record()

    def spec(self, trial_id: str, config: TrialConfig) -> TrialSpec:
        """A trial bound to its prepared dataset, and to the signal samples it is evaluated on."""
        sweep = self.sweep
        signals = self.datasets.signal_folders(config.data, sweep.evaluation)
        return TrialSpec(
            trial_id=trial_id,
            sweep=sweep.name,
            config=config,
            dataset=str(self.datasets.folder(config.data)),
            results_dir=str(self.results_dir.resolve()),
            provenance={"git_commit": git_commit(), "sweep_file": str(Path(self.source).resolve()) if self.source else ""},
            evaluation=sweep.evaluation,
            signals=signals,
            checkpoint_every=sweep.dispatch.checkpoint_every,
            compile=sweep.dispatch.compile,
        )

    def submit(self, function: Callable, arguments: list[tuple], carried: list[list[str]]) -> Sequence[Job]:
        """Submit one job per argument tuple and log which trials each carries; say where to follow them if not followed."""
        jobs = self.backend.submit(function, arguments, self.sweep.dispatch, private_folder(logs_dir(self.results_dir), self.log))
        names = [self.backend.job_name(job) for job in jobs]
        record_submission(self.results_dir, self.backend.name, dict(zip(names, carried, strict=True)))
        if not self.follows:
            self.log(f"submitted {len(jobs)} {self.backend.job_word} ({', '.join(sorted({n.split('_')[0] for n in names}))}); "
                     f"follow with 'hpcsweep status {self.sweep.name}', or run again with --wait")  # fmt: skip
        return jobs


def private_folder(folder: Path, log: Log = print) -> Path:
    """`folder` (made if missing) writable by its owner alone: submitit's job files there are unpickled by the jobs, so
    whoever could write them could run code as the user. A folder of this user's that others may write is made private
    (and said); one of another user is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    status = folder.stat()
    if status.st_uid != os.getuid():
        raise UserError(f"{folder} belongs to another user (uid {status.st_uid}): the jobs would unpickle files they can write; "
                        "give this sweep its own --results")  # fmt: skip
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.chmod(folder, stat.S_IMODE(status.st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))
        log(f"made {folder} writable by you alone (it was {stat.filemode(status.st_mode)}): the jobs unpickle the files in it")
    return folder

"""Rerun-best: the K best configs per latent dimension of a sweep as a child sweep with new seeds (see `stability`).

The child sweep gets its own results folder and file (`results/<parent>-top<K>-seeds<N>/sweep.yaml`); the
parent's finished trials of the original seeds are copied in, not retrained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hpcsweep.config import SweepConfig, validate_sweep
from hpcsweep.errors import UserError
from hpcsweep.files import write_atomically
from hpcsweep.review.aggregator import select
from hpcsweep.review.stability import rerun_best_sweep
from hpcsweep.review.tables import ranked, trials_frame
from hpcsweep.store import copy_trial, scan, trial_path
from hpcsweep.sweep import backend, check_definition, kept_sweep


@dataclass(frozen=True)
class Rerun:
    """A child sweep of seed reruns, ready to run."""

    parent_dir: Path
    results_dir: Path
    sweep_file: Path
    raw: dict[str, Any]  # the child sweep as its file holds it
    definition: SweepConfig
    originals: list[str]  # the parent's trials that the child reuses (its original seeds)

    @property
    def name(self) -> str:
        return str(self.raw["name"])

    def start(self, dispatch: dict[str, Any], made_by: str) -> SweepConfig:
        """The child sweep to run, with the command line's `dispatch` keys. Its executor's settings are checked before
        its folder is made; then its sweep file is written (saying it was `made_by`) and the parent's original-seed
        trials are copied into its folder."""
        sweep = self.definition.with_overrides(dispatch=dispatch)
        backend(sweep.dispatch.executor).check(sweep.dispatch)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.sweep_file, f"# made by: {made_by}\n" + yaml.safe_dump(self.raw, sort_keys=False))
        for trial_id in self.originals:
            copy_trial(trial_path(self.parent_dir, trial_id), self.results_dir)
        return sweep


def plan_rerun(parent_dir: Path, results_root: Path, top: int, seeds: int) -> Rerun:
    """The child sweep of the `top` best finished trials per latent dimension of `parent_dir` (as the parent ranks
    them) with `seeds` new seeds; refused if its folder holds trials it would not compare with."""
    if top < 1 or seeds < 1:
        raise UserError("--top and --seeds take a positive number")
    summaries, _ = scan(parent_dir)
    selection = select(parent_dir, summaries)
    frame = trials_frame(selection.summaries, selection.ranking)
    done = ranked(frame)
    if not len(done):
        raise UserError(f"{parent_dir}: no finished trial to rerun; run 'hpcsweep sweep {parent_dir.name}' first")
    best = [t for _, group in done.groupby("latent") for t in group["trial_id"][:top]]  # the frame is sorted by rank
    parent = kept_sweep(parent_dir)
    picks = [summaries[t]["config"] for t in best]
    raw = rerun_best_sweep(parent.model_dump(mode="json") if parent else {"name": parent_dir.name}, picks, top, seeds)
    child_dir = Path(results_root) / raw["name"]
    sweep_file = child_dir / "sweep.yaml"
    definition = validate_sweep(raw, source=str(sweep_file))
    check_definition(child_dir, definition)
    return Rerun(Path(parent_dir), child_dir, sweep_file, raw, definition, best)

"""Expansion of a sweep into trials with stable identities."""

from __future__ import annotations

import itertools

from hpcsweep.config import SweepConfig, TrialConfig, trial_from_point
from hpcsweep.data.varset import load_varset
from hpcsweep.errors import UserError


def expand(sweep: SweepConfig, source: str = "sweep") -> list[TrialConfig]:
    """Every (listed point x) grid point as a validated trial config, in order, without duplicates."""
    base = sweep.base_trial()
    axes = list(sweep.grid)
    trials: dict[str, TrialConfig] = {}
    for point, values in itertools.product(sweep.points or [{}], itertools.product(*(sweep.grid[a] for a in axes))):
        trial = trial_from_point(base, point | dict(zip(axes, values, strict=True)), source)
        _check_shapes(trial, source)
        trials.setdefault(trial.identity(), trial)
    return list(trials.values())


def _check_shapes(trial: TrialConfig, source: str) -> None:
    n_inputs = len(load_varset(trial.data.varset).variables)
    if trial.model.latent > n_inputs:
        raise UserError(
            f"{source}: model.latent = {trial.model.latent} is larger than the {n_inputs} inputs of "
            f"variable set {trial.data.varset!r}; valid choices: 1..{n_inputs}"
        )

"""Expansion of a sweep into trials with stable identities, each checked against its variable set (loaded once)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable

from hpcsweep.config import DataConfig, Range, SweepConfig, TrialConfig, trial_from_point
from hpcsweep.data.varset import VarSet, load_varset
from hpcsweep.errors import UserError


def expand(sweep: SweepConfig, source: str = "sweep", version: Callable[[DataConfig], str] | None = None) -> list[TrialConfig]:
    """Every (listed point x) grid point as a validated trial config, in order, without duplicates.

    `version` gives each trial's data version (the checksum of its jets as read), which
    is part of its identity; without it the identities are those of the configs alone.
    """
    return list(identified(sweep, source, version).values())


def identified(sweep: SweepConfig, source: str = "sweep", version: Callable[[DataConfig], str] | None = None) -> dict[str, TrialConfig]:
    """`expand`'s trials by their identities (in order), which the expansion computes anyway: a plan of 1000 trials
    computing them again spent 0.04 s."""
    size = grid_size(sweep)
    if sweep.max_trials is not None and size > sweep.max_trials:
        raise UserError(
            f"{source}: the grid has {size:,} points, more than max_trials = {sweep.max_trials:,}; "
            "narrow it, or raise max_trials in the sweep file, or pass --allow-large"
        )
    base = sweep.base_trial()
    axes = list(sweep.grid)
    trials: dict[str, TrialConfig] = {}
    varsets: dict[str, VarSet] = {}
    for point, values in itertools.product(sweep.points or [{}], itertools.product(*(sweep.grid[a] for a in axes))):
        trial = trial_from_point(base, point | dict(zip(axes, values, strict=True)), source)
        key = json.dumps(trial.data.varset, sort_keys=True)
        varsets.setdefault(key, load_varset(trial.data.varset))
        _check_against_varset(trial, sweep, varsets[key], source)
        if version is not None:
            trial = trial.with_data_version(version(trial.data))
        trials.setdefault(trial.identity(), trial)
    return trials


def grid_size(sweep: SweepConfig) -> int:
    """How many points the grid spans (listed points x grid values), counted without expanding it."""
    return len(sweep.points or [{}]) * math.prod(len(values) for values in sweep.grid.values())


def search_base(sweep: SweepConfig, source: str = "sweep", version: Callable[[DataConfig], str] | None = None) -> TrialConfig:
    """The trial a search's sampled points start from (with its data version); its space checked against the variable set."""
    (base,) = expand(sweep.model_copy(update={"space": {}, "search": "grid"}), source, version)
    spec = sweep.space.get("model.latent")
    if spec is not None:
        largest = spec.high if isinstance(spec, Range) else max(spec)
        check_latent(largest, load_varset(base.data.varset), f"{source}: space model.latent reaches {largest:g}")
    return base


def check_latent(latent: float, varset: VarSet, what: str) -> None:
    """A latent size larger than the variable set's inputs is an error before anything runs."""
    n_inputs = len(varset.variables)
    if latent > n_inputs:
        raise UserError(f"{what}, more than the {n_inputs} inputs of variable set {varset.name!r}; valid choices: 1..{n_inputs}")


def _check_against_varset(trial: TrialConfig, sweep: SweepConfig, varset: VarSet, source: str) -> None:
    """A latent size, ranking variable or tolerance that the variable set cannot have is an error before anything runs."""
    check_latent(trial.model.latent, varset, f"{source}: model.latent = {trial.model.latent}")
    bound = sweep.evaluation.max_error
    if not any(math.isclose(bound, b, rel_tol=1e-9) for b in trial.codec.bounds):
        raise UserError(
            f"{source}: evaluation.max_error = {bound:g} (where trials are ranked) is not among codec.bounds "
            f"({', '.join(f'{b:g}' for b in trial.codec.bounds)}); add it there"
        )
    named = {"rank_variables": sweep.rank_variables or []}
    if isinstance(sweep.evaluation.tolerance, dict):
        named["evaluation.tolerance"] = list(sweep.evaluation.tolerance)
    for key, names in named.items():
        unknown = [name for name in names if name not in varset.names]
        if unknown:
            raise UserError(
                f"{source}: {key}: {unknown[0]!r} is not a variable of {varset.name!r}; valid choices: {', '.join(varset.names)}"
            )

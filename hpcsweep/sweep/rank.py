"""How a sweep ranks its trials: one number per trial, smaller is better, comparable across the whole grid.

`reference_mse` (the default) is every trial's validation MSE measured in one
space fixed by the sweep, whatever normalisation the trial trained in;
`residual_width` is the mean 68 % half-width of chosen variables' residuals in
physical units; `val_loss` is the training loss in each trial's own
normalisation, comparable only while the grid keeps that space fixed. Each
choice of `rank_by` has its one `Measure` in `MEASURES`: its names, its number and how the review says it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hpcsweep.config import SweepConfig
from hpcsweep.data.normalize import reference_mode
from hpcsweep.data.varset import load_varset

#: Grid keys that change the space the training loss is measured in.
LOSS_SPACE_KEYS = ("data.normalisation", "data.varset")


@dataclass(frozen=True)
class Measure:
    """One choice of `rank_by`: how tables and figures name it, and the number it reads from a trial's metrics."""

    label: str  # a short column or axis label
    noun: str  # the label inside a sentence
    value: Callable[[dict[str, Any], list[str]], float]  # from a trial's metrics and the ranked variables; NaN when missing
    describe: Callable[[SweepConfig, list[str]], str]  # the line the review says it in, for a sweep
    own_figure: bool = True  # not one of the losses every table shows: its column of its own follows them
    per_variable: bool = False  # averaged over the ranked variables (`rank_variables`)


def _metric(name: str) -> Callable[[dict[str, Any], list[str]], float]:
    """The value of one metric of a trial's."""
    return lambda metrics, _: _number(metrics.get(name))


def _mean_width(metrics: dict[str, Any], variables: list[str]) -> float:
    widths = [_number(metrics.get("residual_width", {}).get(name)) for name in variables]
    return sum(widths) / len(widths) if widths else math.nan


def _one_minus_auc(metrics: dict[str, Any], _: list[str]) -> float:
    anomaly = metrics.get("anomaly")
    aucs = [_number(r.get("auc")) for r in anomaly.values() if isinstance(r, dict)] if isinstance(anomaly, dict) else []
    return 1 - sum(aucs) / len(aucs) if aucs else math.nan


def _reference_space(sweep: SweepConfig, _: list[str]) -> str:
    space = reference_mode(sweep.evaluation.reference, load_varset(sweep.data.varset))
    return f"MSE in the reference space ({space}, fitted on each trial's training split)"


#: Every choice of `rank_by`, in the order of `hpcsweep.config.RankBy` (its list of the choices).
MEASURES: dict[str, Measure] = {
    "reference_mse": Measure("Reference MSE", "reference MSE", _metric("reference_mse"), _reference_space, own_figure=False),
    "val_loss": Measure(
        "Validation loss",
        "validation loss",
        _metric("best_val_mse"),
        lambda *_: "validation loss in each trial's own normalisation",
        own_figure=False,
    ),
    "residual_width": Measure(
        "Mean residual width",
        "mean residual width",
        _mean_width,
        lambda _, variables: "mean residual 68 % half-width of " + ", ".join(variables),
        per_variable=True,
    ),
    "bytes": Measure(
        "Bytes/jet",
        "bytes per jet (bounded)",
        _metric("bytes_per_jet"),
        lambda sweep, _: (
            f"bytes per jet of the AE as an error-bounded compressor, every value within {100 * sweep.evaluation.max_error:g} %"
        ),
    ),
    "auc": Measure(
        "1 - AUC",
        "1 - mean signal AUC",
        _one_minus_auc,
        lambda *_: (
            "1 - ROC AUC of the per-jet reconstruction error (reference space), signal against validation jets, mean over the signals"
        ),
    ),
}


@dataclass(frozen=True)
class Ranking:
    """A sweep's yardstick: what `value` computes from a trial's metrics, and how tables name it."""

    rank_by: str = "reference_mse"
    variables: list[str] = field(default_factory=list)
    description: str = "MSE in the reference space"

    @classmethod
    def of(cls, sweep: SweepConfig) -> Ranking:
        measure = MEASURES[sweep.rank_by]
        variables = rank_variables(sweep) if measure.per_variable else []
        return cls(sweep.rank_by, variables, measure.describe(sweep, variables))

    def value(self, metrics: dict[str, Any]) -> float:
        return rank_value(metrics, self.rank_by, self.variables)

    @property
    def label(self) -> str:
        """A short column or axis label."""
        return self._measure.label

    @property
    def noun(self) -> str:
        """The label inside a sentence."""
        return self._measure.noun

    @property
    def own_figure(self) -> bool:
        """Whether the tables give the ranking's figure a column of its own (it is not one of the losses they show)."""
        return self._measure.own_figure

    @property
    def _measure(self) -> Measure:
        return MEASURES[self.rank_by]


def rank_variables(sweep: SweepConfig) -> list[str]:
    """The variables `residual_width` averages: the sweep's choice, else every continuous one."""
    return sweep.rank_variables or [v.name for v in load_varset(sweep.data.varset).variables if not v.discrete]


def rank_value(metrics: dict[str, Any], rank_by: str, variables: list[str]) -> float:
    """The number a trial is ranked by (NaN when its metrics lack it: an old trial file, a diverged trial)."""
    return MEASURES[rank_by].value(metrics, variables)


def loss_space_warning(sweep: SweepConfig) -> str | None:
    """One line when a sweep ranks on training losses that its grid measures in different spaces."""
    varied = [key for key in LOSS_SPACE_KEYS if key in sweep.grid or key in sweep.space or any(key in p for p in sweep.points)]
    if sweep.rank_by != "val_loss" or not varied:
        return None
    return (
        f"sweep {sweep.name!r} ranks on val_loss, but its grid varies {', '.join(varied)}: those losses are measured in different "
        "spaces and do not compare; rank_by: reference_mse (the default) compares like with like"
    )


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and value is not None else math.nan

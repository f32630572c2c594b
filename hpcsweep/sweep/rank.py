"""How a sweep ranks its trials: one number per trial, smaller is better, comparable across the whole grid.

`reference_mse` (the default) is every trial's validation MSE measured in one
space fixed by the sweep, whatever normalisation the trial trained in;
`residual_width` is the mean 68 % half-width of chosen variables' residuals in
physical units; `val_loss` is the training loss in each trial's own
normalisation, comparable only while the grid keeps that space fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hpcsweep.config import SweepConfig
from hpcsweep.data.normalize import reference_mode
from hpcsweep.data.varset import load_varset

#: Grid keys that change the space the training loss is measured in.
LOSS_SPACE_KEYS = ("data.normalisation", "data.varset")


@dataclass(frozen=True)
class Ranking:
    """A sweep's yardstick: what `value` computes from a trial's metrics, and how tables name it."""

    rank_by: str = "reference_mse"
    variables: list[str] = field(default_factory=list)
    description: str = "MSE in the reference space"

    @classmethod
    def of(cls, sweep: SweepConfig) -> Ranking:
        variables = rank_variables(sweep) if sweep.rank_by == "residual_width" else []
        if sweep.rank_by == "val_loss":
            description = "validation loss in each trial's own normalisation"
        elif sweep.rank_by == "residual_width":
            description = "mean residual 68 % half-width of " + ", ".join(variables)
        elif sweep.rank_by == "auc":
            description = (
                "1 - ROC AUC of the per-jet reconstruction error (reference space), signal against validation jets, mean over the signals"
            )
        elif sweep.rank_by == "bytes":
            description = (
                f"bytes per jet of the AE as an error-bounded compressor, every value within {100 * sweep.evaluation.max_error:g} %"
            )
        else:
            space = reference_mode(sweep.evaluation.reference, load_varset(sweep.data.varset))
            description = f"MSE in the reference space ({space}, fitted on each trial's training split)"
        return cls(sweep.rank_by, variables, description)

    def value(self, metrics: dict[str, Any]) -> float:
        return rank_value(metrics, self.rank_by, self.variables)

    @property
    def label(self) -> str:
        """A short column or axis label."""
        return {
            "val_loss": "Validation loss",
            "reference_mse": "Reference MSE",
            "residual_width": "Mean residual width",
            "bytes": "Bytes/jet",
            "auc": "1 - AUC",
        }[self.rank_by]

    @property
    def noun(self) -> str:
        """The label inside a sentence."""
        return {
            "val_loss": "validation loss",
            "reference_mse": "reference MSE",
            "residual_width": "mean residual width",
            "bytes": "bytes per jet (bounded)",
            "auc": "1 - mean signal AUC",
        }[self.rank_by]


def rank_variables(sweep: SweepConfig) -> list[str]:
    """The variables `residual_width` averages: the sweep's choice, else every continuous one."""
    return sweep.rank_variables or [v.name for v in load_varset(sweep.data.varset).variables if not v.discrete]


def rank_value(metrics: dict[str, Any], rank_by: str, variables: list[str]) -> float:
    """The number a trial is ranked by (NaN when its metrics lack it: an old trial file, a diverged trial)."""
    if rank_by == "val_loss":
        return _number(metrics.get("best_val_mse"))
    if rank_by == "reference_mse":
        return _number(metrics.get("reference_mse"))
    if rank_by == "bytes":
        return _number(metrics.get("bytes_per_jet"))
    if rank_by == "auc":
        anomaly = metrics.get("anomaly")
        aucs = [_number(r.get("auc")) for r in anomaly.values() if isinstance(r, dict)] if isinstance(anomaly, dict) else []
        return 1 - sum(aucs) / len(aucs) if aucs else math.nan
    widths = [_number(metrics.get("residual_width", {}).get(name)) for name in variables]
    return sum(widths) / len(widths) if widths else math.nan


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

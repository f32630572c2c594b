"""Are these the kind of jets a model learned? A robust profile of the training jets, compared with any file that meets
the model (a signal sample, `evaluate --signal`, `score`, `compress`).

A file in MeV where training saw GeV, or with phi in [0, 2pi) where training saw [-pi, pi), passes every cut and
every check of its own, and then yields nonsense quietly (an AUC of 1.000 for every trial). The profile keeps, per
variable in the set's units (after `unit_scale`), five quantiles of the training jets. Refused, in one line naming
the variable, both medians and the likely fix: a spread (IQR) that differs by REFUSED_FACTOR or more (no physics
moves a whole distribution's spread by 100x; units do, by 1000x), a continuous variable constant where training
varied, an angle mostly outside the training range (another convention). Signals are meant to differ: heavier jets
far outside the training range, a spread 10x wider, are notes only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hpcsweep.data.varset import Variable, VarSet
from hpcsweep.errors import UserError

QUANTILES = (0.001, 0.25, 0.5, 0.75, 0.999)
REFUSED_FACTOR = 100.0  # IQRs that differ by this factor or more: other units, not other physics
NOTED_FACTOR = 10.0
OUTSIDE_REFUSED = 0.25  # a quarter of an angle's values outside the training's 0.1-99.9 % range: another convention
OUTSIDE_NOTED = 0.02  # ten times the 0.2 % expected of the training jets themselves
SAMPLE = 200_000  # jets enough for five quantiles; more only costs time
SPREAD_FROM = 100  # finite values a spread is judged from: two close jets are 'constant', not a wrong branch


def profile_of(x: np.ndarray, names: Sequence[str]) -> dict[str, list[float]]:
    """Per variable, the QUANTILES of the jets' values (finite ones; at most SAMPLE jets, evenly spread)."""
    sample = _sample(x)
    return {name: _quantiles(sample[:, i]) for i, name in enumerate(names)}


def _sample(x: np.ndarray) -> np.ndarray:
    """At most about SAMPLE jets, evenly spread through the file (its order may follow runs or pt), in float64."""
    return np.asarray(x[:: max(1, len(x) // SAMPLE)], dtype=np.float64)


def _quantiles(values: np.ndarray) -> list[float]:
    finite = values[np.isfinite(values)]
    return [float(q) for q in np.quantile(finite, QUANTILES)] if len(finite) else [math.nan] * len(QUANTILES)


def compare(training: dict[str, list[float]], x: np.ndarray, varset: VarSet, what: str) -> list[str]:
    """Refuse `x` (its jets, in the set's units) when a variable is clearly not what training saw; else notes on the
    milder differences. `what` names the file and the model in messages."""
    if not training or not len(x):
        return []
    sample = _sample(x)
    here = profile_of(sample, varset.names)
    notes = []
    for i, variable in enumerate(varset.variables):
        if variable.name not in training:
            continue
        problem, note = _judge(variable, training[variable.name], here[variable.name], sample[:, i])
        if problem:
            raise UserError(f"{what}: {problem}; {units_fix(varset)}")
        notes += [note] if note else []
    return notes


def _judge(variable: Variable, trained: list[float], seen: list[float], values: np.ndarray) -> tuple[str, str]:
    """(why `values` of one variable are refused, or ''; a milder note, or '')."""
    name, (low, q1, median, q3, high) = variable.name, trained
    spread, spread_here = q3 - q1, seen[3] - seen[1]
    medians = f"median {_g(seen[2])} here, {_g(median)} in the training jets"
    enough = np.isfinite(values).sum() >= SPREAD_FROM
    ratio = spread_here / spread if spread > 0 and spread_here > 0 and enough else 1.0
    if ratio >= REFUSED_FACTOR or ratio <= 1 / REFUSED_FACTOR:
        return f"variable {name!r} is spread {_times(ratio)} as widely as in the training jets ({medians}): {_unit_hint(ratio)}", ""
    if enough and spread > 0 and seen[0] == seen[4] and not variable.discrete:
        return f"variable {name!r} is constant ({_g(seen[2])}) where the training jets vary ({medians}): a wrong branch?", ""
    finite = values[np.isfinite(values)]
    outside = float(np.mean((finite < low) | (finite > high))) if len(finite) and high > low else 0.0
    if outside >= OUTSIDE_REFUSED and variable.residual == "phi":
        return (
            f"{100 * outside:.0f} % of the values of angle {name!r} lie outside the training jets' range [{_g(low)}, {_g(high)}] "
            f"({medians}): another convention ([0, 2pi) where training had [-pi, pi)?)",
            "",
        )
    if ratio >= NOTED_FACTOR or ratio <= 1 / NOTED_FACTOR:
        return "", f"{name}: spread {_times(ratio)} the training jets' ({medians})"
    if outside >= OUTSIDE_NOTED:
        return "", f"{name}: {100 * outside:.1f} % of the jets outside the training range ({medians})"
    return "", ""


def _unit_hint(ratio: float) -> str:
    """The likely cause: a factor near a power of 1000 is a unit (MeV/GeV, mm/m)."""
    power = round(math.log10(ratio) / 3)
    if power and abs(math.log10(ratio) - 3 * power) < 0.5:
        cause = {1: "MeV where GeV was expected", -1: "GeV where MeV was expected"}.get(power, f"a factor {_times(ratio)}")
        return f"other units ({cause}?)"
    return "other units or another quantity"


def units_fix(varset: VarSet) -> str:
    """What to do about a file in other units: it is read with the model's variable set, as the training jets were."""
    scales = ", ".join(f"{v.name} x{v.unit_scale:g}" for v in varset.variables if v.unit_scale != 1) or "every unit_scale 1"
    return f"it is read with the model's variable set {varset.name!r} ({scales}), as the training file was: convert it to the training file's units"


def _times(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 1 else f"1/{1 / ratio:,.0f}x"


def _g(value: float) -> str:
    return f"{value:.4g}"

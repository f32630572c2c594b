"""Normalisers with exact inverses, fitted on the training split only.

A normaliser is a chain of steps (the variable set's custom per-variable
transforms, then optionally standard or min-max scaling). Arithmetic is done
in float64 so that `inverse(forward(x))` returns x to float32 precision; the
fitted parameters serialise to plain JSON so a stored trial can be applied to
new data exactly as it was trained.
"""

from __future__ import annotations

from typing import Any, Protocol, get_args

import numpy as np

from hpcsweep.config import Normalisation
from hpcsweep.data.varset import Transform, VarSet
from hpcsweep.errors import UserError

NORMALISATIONS = get_args(Normalisation)


class Step(Protocol):
    kind: str

    def fit(self, x: np.ndarray) -> None: ...
    def forward(self, x: np.ndarray) -> np.ndarray: ...
    def inverse(self, y: np.ndarray) -> np.ndarray: ...
    def params(self) -> dict[str, Any]: ...


class PerVariable:
    """The variable set's custom transforms, one per column.

    Nothing to fit, except with `clip`: then the smallest argument of each log seen in the
    training split becomes a floor, so that any decoded value has a place in the space
    (a reference space must measure every trial, whatever it decodes).
    """

    kind = "custom"

    def __init__(self, names: list[str], transforms: list[Transform], clip: bool = False, floor: list[float] | None = None):
        self.names = names
        self.transforms = transforms
        self.clip = clip
        self.floor = None if floor is None else np.asarray(floor, dtype=np.float64)
        self._log = np.array([t.kind == "log10" for t in transforms])
        self._scale = np.array([t.scale for t in transforms], dtype=np.float64)
        self._shift = np.array([t.shift for t in transforms], dtype=np.float64)
        self._offset = np.array([t.offset for t in transforms], dtype=np.float64)
        self._sign = np.array([t.sign for t in transforms], dtype=np.float64)

    def fit(self, x: np.ndarray) -> None:
        """Checks that the data lie in the transforms' domain (and, with `clip`, keeps the floor)."""
        self.floor = None
        self.forward(x)
        if self.clip and self._log.any():
            self.floor = (self._sign[self._log] * x[:, self._log] + self._offset[self._log]).min(axis=0)

    def forward(self, x: np.ndarray) -> np.ndarray:
        g = x.astype(np.float64, copy=True)
        if self._log.any():
            arg = self._sign[self._log] * g[:, self._log] + self._offset[self._log]
            if self.floor is not None:
                arg = np.maximum(arg, self.floor)
            else:
                self._check_domain(arg)
            g[:, self._log] = np.log10(arg)
        return (g - self._shift) / self._scale

    def inverse(self, y: np.ndarray) -> np.ndarray:
        g = y.astype(np.float64) * self._scale + self._shift
        if self._log.any():
            g[:, self._log] = (np.power(10.0, g[:, self._log]) - self._offset[self._log]) / self._sign[self._log]
        return g

    def _check_domain(self, arg: np.ndarray) -> None:
        bad = ~(arg > 0).all(axis=0)
        if bad.any():
            names = [str(n) for n in np.array(self.names)[self._log][bad]]
            column = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"custom transform of {names[0]!r} takes log10 of a non-positive value "
                f"(min of sign*x+offset is {arg[:, column].min():.4g}); "
                "choose another normalisation or fix the transform's offset in the variable set"
            )

    def columns(self) -> dict[str, np.ndarray]:
        """Per column: which take log10, and their sign, offset, shift, scale and floor (-inf: none): what a graph
        that computes the transforms elsewhere (the ONNX score) needs."""
        floor = np.full(len(self.names), -np.inf)
        if self.floor is not None:
            floor[self._log] = self.floor
        return {"log": self._log, "sign": self._sign, "offset": self._offset, "shift": self._shift, "scale": self._scale, "floor": floor}

    def params(self) -> dict[str, Any]:
        floor = {} if self.floor is None else {"clip": True, "floor": self.floor.tolist()}
        return {"transforms": [t.model_dump() for t in self.transforms], **floor}


class Affine:
    """(x - centre) / scale with the training split's mean and std ('standard') or min and range ('minmax').

    A constant column gets scale 1, so it maps to 0 instead of dividing by zero.
    """

    def __init__(self, kind: str, centre: list[float] | None = None, scale: list[float] | None = None):
        self.kind = kind
        self.centre = None if centre is None else np.asarray(centre, dtype=np.float64)
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float64)

    def fit(self, x: np.ndarray) -> None:
        if self.kind == "standard":
            self.centre, spread = x.mean(axis=0, dtype=np.float64), x.std(axis=0, dtype=np.float64)
        else:
            self.centre = x.min(axis=0).astype(np.float64)
            spread = x.max(axis=0).astype(np.float64) - self.centre
        self.scale = np.where(spread > 0, spread, 1.0)

    def forward(self, x: np.ndarray) -> np.ndarray:
        assert self.centre is not None and self.scale is not None, "fitted or loaded first"
        return (x - self.centre) / self.scale

    def inverse(self, y: np.ndarray) -> np.ndarray:
        assert self.centre is not None and self.scale is not None, "fitted or loaded first"
        return y.astype(np.float64) * self.scale + self.centre

    def params(self) -> dict[str, Any]:
        assert self.centre is not None and self.scale is not None, "fitted or loaded first"
        return {"centre": self.centre.tolist(), "scale": self.scale.tolist()}


class Normaliser:
    """A fitted chain of steps over named columns; `transform` and `inverse_transform` are exact inverses."""

    def __init__(self, mode: str, names: list[str], steps: list[Step]):
        self.mode = mode
        self.names = names
        self.steps = steps

    def fit(self, x: np.ndarray) -> Normaliser:
        """Fit each step on the output of the previous one (training split only)."""
        current = np.asarray(x, dtype=np.float64)
        for step in self.steps:
            step.fit(current)
            current = step.forward(current)
        return self

    def transform(self, x: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        """Physical values -> the normalised space, computed in float64 and given as `dtype` (float32: a network's input)."""
        current = np.asarray(x, dtype=np.float64)
        for step in self.steps:
            current = step.forward(current)
        return current.astype(dtype)

    def inverse_transform(self, y: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        current = np.asarray(y, dtype=np.float64)
        for step in reversed(self.steps):
            current = step.inverse(current)
        return current.astype(dtype)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON parameters (floats round-trip exactly through JSON)."""
        return {
            "mode": self.mode,
            "names": list(self.names),
            "steps": [{"kind": s.kind, **s.params()} for s in self.steps],
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Normaliser:
        steps: list[Step] = []
        for raw in state["steps"]:
            params = {k: v for k, v in raw.items() if k != "kind"}
            if raw["kind"] == "custom":
                steps.append(
                    PerVariable(
                        state["names"], [Transform(**t) for t in params["transforms"]], params.get("clip", False), params.get("floor")
                    )
                )
            else:
                steps.append(Affine(raw["kind"], **params))
        return cls(state["mode"], state["names"], steps)


def make_normaliser(mode: str, varset: VarSet, clip: bool = False) -> Normaliser:
    """An unfitted normaliser for `mode` ('standard', 'minmax', 'custom', 'custom+standard', 'custom+minmax')."""
    parts = mode.split("+")
    steps: list[Step] = []
    for part in parts:
        if part == "custom":
            steps.append(PerVariable(varset.names, [v.transform for v in varset.variables], clip))
        elif part in ("standard", "minmax"):
            steps.append(Affine(part))
        else:
            raise UserError(f"unknown normalisation {mode!r}; valid choices: {', '.join(NORMALISATIONS)}")
    return Normaliser(mode, varset.names, steps)


#: Spaces in which every trial of a sweep is compared, whatever its own normalisation.


def reference_mode(reference: str, varset: VarSet) -> str:
    """'auto': the variable set's custom transforms, standardised, when it declares any; else standardised physical values.

    Standardised, so that every variable weighs the same whatever scale its transform gives it;
    a trial trained in the default normalisation (custom+standard) is measured in its own space.
    """
    if reference != "auto":
        return reference
    return "custom+standard" if any(not v.transform.is_identity for v in varset.variables) else "standard"


def make_reference(reference: str, varset: VarSet, x_train: np.ndarray) -> Normaliser:
    """The sweep's reference space, fitted on a trial's training split (log arguments floored at the training minimum)."""
    return make_normaliser(reference_mode(reference, varset), varset, clip=True).fit(x_train)

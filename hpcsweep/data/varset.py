"""Variable sets: which branches make a jet, their units, transforms and cuts.

A set is data, given in one of three ways: the name of a set shipped with
hpcsweep (`hpcsweep/data/varsets/<name>.yaml`), the path of a YAML file of
one's own, or a mapping written inline in a sweep file. Whatever the form, it
is resolved once into one flat, validated mapping (`extends:` followed,
`drop:` applied); a trial stores that mapping, so its results never depend on
a file that may change later. Only pydantic and YAML are imported here, so
that configuration checks stay fast.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hpcsweep.data.cuts import CutError, parse_cut
from hpcsweep.errors import UserError, closest, one_line, read_yaml
from hpcsweep.paths import locate

VARSET_DIR = Path(__file__).parent / "varsets"
#: Coordinates a variable set's `four_momentum` may name (as `vector` spells them).
FOUR_MOMENTUM_KEYS = ("pt", "eta", "phi", "mass", "energy")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Transform(_Frozen):
    """y = (g(x) - shift) / scale with g(x) = x ('linear') or log10(sign*x + offset) ('log10')."""

    kind: Literal["linear", "log10"] = "linear"
    scale: float = 1.0
    shift: float = 0.0
    offset: float = 0.0
    sign: float = 1.0

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("a transform's scale must not be 0")
        return value

    @property
    def is_identity(self) -> bool:
        return self.kind == "linear" and self.scale == 1 and self.shift == 0


class Variable(_Frozen):
    """One per-jet column: its name, where it may be found, and how to treat it.

    `positive`: never negative (decoded values are clipped at 0; jets with a negative value are
    cut and counted when read). `discrete`: takes few values (decoded values are rounded to the
    nearest value seen in training). `residual`: relative, absolute or phi (wrapped); by default
    relative for positive continuous variables, absolute otherwise.
    """

    name: str
    branches: tuple[str, ...] = Field((), description="names to look for in the file (default: the variable's name)")
    unit_scale: float = Field(1.0, description="multiplies the file's values, e.g. 0.001 for MeV -> GeV")
    transform: Transform = Field(default_factory=Transform)
    discrete: bool = False
    positive: bool = False
    residual: Literal["relative", "absolute", "phi"] = "absolute"
    unit: str = Field("", description="for axis labels: GeV, rad, or nothing")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        name = raw.get("name")
        if isinstance(name, str) and not name.isidentifier():
            raise ValueError(f"variable name {name!r} must be an identifier (cuts refer to it by name); give the branch in branches:")
        if not raw.get("branches") and isinstance(name, str):
            raw["branches"] = [name]
        if raw.get("residual") is None:  # scale variables compare relatively, counts and angles absolutely
            raw["residual"] = "relative" if raw.get("positive") and not raw.get("discrete") else "absolute"
        return raw


class Cut(_Frozen):
    """A cleaning cut: jets for which `expression` (pandas syntax, variable names) is true are kept or dropped.

    The expression is data, not code (`hpcsweep.data.cuts`): checked here, whatever file it comes from.
    """

    name: str
    action: Literal["keep", "drop"]
    expression: str

    @model_validator(mode="after")
    def _allowed(self) -> Cut:
        try:
            parse_cut(self.expression)
        except CutError as err:
            raise ValueError(f"cut {self.name!r}: {err}") from None
        return self

    @model_validator(mode="before")
    @classmethod
    def _keep_or_drop(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or "action" in raw:
            return raw
        actions = [key for key in ("keep", "drop") if key in raw]
        if len(actions) != 1:
            raise ValueError(f"a cut takes either keep: EXPRESSION or drop: EXPRESSION, and an optional name: (got {sorted(raw)})")
        unknown = set(raw) - {"keep", "drop", "name"}
        if unknown:
            raise ValueError(f"unknown key {sorted(unknown)[0]!r} in a cut; valid keys: drop, keep, name")
        (action,) = actions
        return {"name": raw.get("name") or raw[action], "action": action, "expression": raw[action]}


class VarSet(_Frozen):
    """A resolved variable set: no `extends`, no `drop`."""

    name: str
    description: str = ""
    variables: tuple[Variable, ...] = Field(min_length=1)
    cuts: tuple[Cut, ...] = ()
    tree: str | None = Field(None, description="the tree or RNTuple to read (default: the file's only one)")
    prefixes: tuple[str, ...] = Field(("",), description="prefixes branch names may carry, tried in order")
    event_branches: tuple[str, ...] = Field((), description="flat per-jet files: a branch numbering events, so jets are ranked in them")
    rank_by: str | None = Field(None, description="the variable that orders jets within an event (rank 0 = leading)")
    four_momentum: dict[str, str] = Field(default_factory=dict, description="pt/eta/phi/mass or energy -> variable, for dijet masses")

    @model_validator(mode="after")
    def _consistent(self) -> VarSet:
        names = self.names
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"variable {repeated[0]!r} is listed twice")
        if self.rank_by is not None and self.rank_by not in names:
            raise ValueError(f"rank_by {self.rank_by!r} is not a variable; valid choices: {', '.join(names)}")
        for cut in self.cuts:
            try:
                parse_cut(cut.expression, names)
            except CutError as err:
                raise ValueError(f"cut {cut.name!r}: {err}") from None
        for coordinate, variable in self.four_momentum.items():
            if coordinate not in FOUR_MOMENTUM_KEYS:
                raise ValueError(f"four_momentum: unknown coordinate {coordinate!r}; valid choices: {', '.join(FOUR_MOMENTUM_KEYS)}")
            if variable not in names:
                raise ValueError(f"four_momentum {coordinate}: {variable!r} is not a variable; valid choices: {', '.join(names)}")
        return self

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variables]

    def selected(self, columns: Mapping[str, Any]) -> Any:
        """Which jets a model of this set is trained on and applied to (a boolean array): every value finite, every cut
        passed, no negative value of a variable declared positive. The one rule: a sweep reads these jets (and counts
        the others), `score` gives the others NaN, `compress` stores them losslessly. `columns`: variable -> values
        in the set's units (after `unit_scale`, as float32 like a read)."""
        import numpy as np

        from hpcsweep.data.cuts import cut_mask

        values = {name: np.asarray(columns[name], dtype=np.float32) for name in self.names}
        keep = np.logical_and.reduce([np.isfinite(v) for v in values.values()])
        for cut in self.cuts:
            passed = cut_mask(cut.expression, values, len(keep))
            keep &= passed if cut.action == "keep" else ~passed
        for variable in self.variables:
            if variable.positive:
                keep &= ~(values[variable.name] < 0)
        return keep

    def mapping(self) -> dict[str, Any]:
        """The flat mapping a trial stores (plain JSON types)."""
        return self.model_dump(mode="json")

    def key(self) -> str:
        """Canonical text of the set: equal for equal sets, whatever their source."""
        return json.dumps(self.mapping(), sort_keys=True, separators=(",", ":"))


def varset_names() -> list[str]:
    """Names of the variable sets shipped with hpcsweep."""
    return list(_shipped_names())


@cache
def _shipped_names() -> tuple[str, ...]:
    """The shipped sets, listed once per process: every trial config a grid expands or a status surveys asks (three
    times each, 1000 trials: 0.1 s of listing the same folder), and what ships does not change while hpcsweep runs."""
    return tuple(sorted(p.stem for p in VARSET_DIR.glob("*.yaml")))


def load_varset(value: str | Path | Mapping[str, Any], base: Path | None = None) -> VarSet:
    """A variable set from a built-in name, a YAML file (relative: beside `base`, else here) or a mapping."""
    if isinstance(value, Mapping):
        return _from_mapping(dict(value), f"variable set {value.get('name', 'inline')!r}", base)
    value = str(value)
    if value in varset_names():
        return _builtin(value)
    if value.endswith((".yaml", ".yml")) or "/" in value:
        return _from_file(value, base)
    hint = closest(value, varset_names())
    raise UserError(
        f"unknown variable set {value!r}"
        + (f" (did you mean {', '.join(hint)}?)" if hint else "")
        + f"; valid choices: {', '.join(varset_names())}, or the path of a YAML file (see 'hpcsweep data varsets')"
    )


def resolve_varset(value: str | Mapping[str, Any], base: Path | None = None) -> str | dict[str, Any]:
    """What a config stores: a built-in set's name as it is; a file's or an inline set's flat mapping."""
    if isinstance(value, str) and value in varset_names():
        return value
    return load_varset(value, base).mapping()


def varset_label(value: str | Mapping[str, Any]) -> str:
    """A set's name for tables: the built-in name, or the `name` in its mapping."""
    return value if isinstance(value, str) else str(value.get("name", "inline"))


@cache
def _builtin(name: str) -> VarSet:
    return _from_file(str(VARSET_DIR / f"{name}.yaml"), None)


def _from_file(value: str, base: Path | None) -> VarSet:
    path = Path(locate(value, base))
    if not path.is_file():
        where = f" (looked beside the sweep file, in {base}, and in the working directory)" if base else ""
        raise UserError(f"variable set {value}: no such file{where}")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a variable set is a mapping (name, variables, cuts, ...); see docs/data.md")
    raw.setdefault("name", path.stem)
    return _from_mapping(raw, str(path), path.parent)


def _from_mapping(raw: dict[str, Any], source: str, base: Path | None) -> VarSet:
    """Validate a set given as a mapping, after following its `extends` (a built-in name or a path)."""
    if "extends" in raw:
        raw = _extend(load_varset(raw["extends"], base).mapping(), raw, source)
    raw.setdefault("name", "inline")
    try:
        return VarSet.model_validate(raw)
    except ValidationError as err:
        raise UserError(_name_variables(one_line(err, source, VarSet), raw)) from None


def _extend(parent: dict[str, Any], child: dict[str, Any], source: str) -> dict[str, Any]:
    """The parent's mapping with the child's keys: `drop` removes variables, `variables` and `cuts` add to the parent's."""
    drop = set(child.get("drop", []))
    unknown = drop - {v["name"] for v in parent["variables"]}
    if unknown:
        raise UserError(f"{source}: drop names variables {sorted(unknown)} that {parent['name']!r} does not have")
    merged = {**parent, **{k: v for k, v in child.items() if k not in ("extends", "drop", "variables", "cuts")}}
    merged["variables"] = [v for v in parent["variables"] if v["name"] not in drop] + list(child.get("variables", []))
    merged["cuts"] = list(parent["cuts"]) + list(child.get("cuts", []))
    return merged


def _name_variables(message: str, raw: dict[str, Any]) -> str:
    """'variables.2.postive' -> "variable 'm': postive" in an error message."""
    variables: list[Any] = raw["variables"] if isinstance(raw.get("variables"), list) else []

    def named(match: re.Match) -> str:
        index = int(match.group(1))
        entry = variables[index] if index < len(variables) else None
        return f"variable {entry['name']!r}" if isinstance(entry, dict) and "name" in entry else match.group(0)

    return re.sub(r"variables\.(\d+)", named, message)

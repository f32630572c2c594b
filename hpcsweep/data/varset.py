"""Variable sets: which branches make a jet, their units, transforms and cuts.

They are data, not code: one YAML file per set in `hpcsweep/data/varsets/`
(a set may `extends:` another and `drop:` some of its variables). This module
only parses them; it imports nothing heavy so that configuration checks stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from hpcsweep.errors import UserError

VARSET_DIR = Path(__file__).parent / "varsets"


@dataclass(frozen=True)
class Transform:
    """y = (g(x) - shift) / scale with g(x) = x ('linear') or log10(sign*x + offset) ('log10')."""

    kind: Literal["linear", "log10"] = "linear"
    scale: float = 1.0
    shift: float = 0.0
    offset: float = 0.0
    sign: float = 1.0


@dataclass(frozen=True)
class Variable:
    """One per-jet column: its name, where it may be found, and how to treat it."""

    name: str
    branches: tuple[str, ...]
    unit_scale: float = 1.0
    transform: Transform = field(default_factory=Transform)
    discrete: bool = False
    positive: bool = False
    residual: Literal["relative", "absolute", "phi"] = "absolute"
    unit: str = ""  # for axis labels: GeV, rad, or nothing


@dataclass(frozen=True)
class Cut:
    """A cleaning cut: jets for which `expression` is true are kept ('keep') or removed ('drop')."""

    name: str
    action: Literal["keep", "drop"]
    expression: str


@dataclass(frozen=True)
class VarSet:
    name: str
    description: str
    variables: tuple[Variable, ...]
    cuts: tuple[Cut, ...] = ()
    tree: str | None = None
    prefixes: tuple[str, ...] = ("",)
    event_branches: tuple[str, ...] = ()
    rank_by: str | None = None
    four_momentum: dict[str, str] = field(default_factory=dict)
    source_text: str = ""

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variables]


def varset_names() -> list[str]:
    """Names of the variable sets shipped with hpcsweep."""
    return sorted(p.stem for p in VARSET_DIR.glob("*.yaml"))


@cache
def load_varset(name: str) -> VarSet:
    """Parse a named variable set (resolving `extends`/`drop`)."""
    path = VARSET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown variable set {name!r}; valid choices: {', '.join(varset_names())}")
    raw = yaml.safe_load(path.read_text())
    parent = load_varset(raw["extends"]) if "extends" in raw else None
    try:
        return _build(raw, parent, path)
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path}: malformed variable set ({err})") from None


def _build(raw: dict[str, Any], parent: VarSet | None, path: Path) -> VarSet:
    if parent is not None:
        drop = set(raw.get("drop", []))
        unknown = drop - set(parent.names)
        if unknown:
            raise ValueError(f"drop names unknown variables {sorted(unknown)}")
        variables = tuple(v for v in parent.variables if v.name not in drop)
        return replace(
            parent,
            name=raw["name"],
            description=raw.get("description", parent.description),
            variables=variables,
            source_text=parent.source_text + "\n---\n" + path.read_text(),
        )
    variables = tuple(_variable(entry) for entry in raw["variables"])
    cuts = tuple(_cut(entry) for entry in raw.get("cuts", []))
    return VarSet(
        name=raw["name"],
        description=raw.get("description", ""),
        variables=variables,
        cuts=cuts,
        tree=raw.get("tree"),
        prefixes=tuple(raw.get("prefixes", [""])),
        event_branches=tuple(raw.get("event_branches", [])),
        rank_by=raw.get("rank_by"),
        four_momentum=dict(raw.get("four_momentum", {})),
        source_text=path.read_text(),
    )


def _variable(entry: dict[str, Any]) -> Variable:
    spec = dict(entry)
    name = spec.pop("name")
    if not name.isidentifier():
        raise ValueError(f"variable name {name!r} must be an identifier (cuts refer to it by name)")
    transform = Transform(**spec.pop("transform", {}))
    if transform.scale == 0:
        raise ValueError(f"variable {name}: transform scale must not be 0")
    branches = tuple(spec.pop("branches", [name]))
    if "residual" not in spec:  # scale variables compare relatively, counts and angles absolutely
        spec["residual"] = "relative" if spec.get("positive") and not spec.get("discrete") else "absolute"
    return Variable(name=name, branches=branches, transform=transform, **spec)


def _cut(entry: dict[str, Any]) -> Cut:
    (action,) = [key for key in ("keep", "drop") if key in entry]
    return Cut(name=entry.get("name", entry[action]), action=action, expression=entry[action])

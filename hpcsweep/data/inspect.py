"""What a jet file holds before any variable set is written: its tables, branches, types and ranges;
and a first variable set drafted from them, to edit and confirm.

Every table of a ROOT file (TTrees and RNTuples) or the table of a Parquet file
is read in chunks (memory flat), one pass over the numeric branches: count,
non-finite values, negative values, min, max, whether all values are
integers, how many distinct values (up to a limit), and a typical value (the
geometric mean of x + 1).

The draft guesses, from names and values: angles (phi: absolute residual,
wrapped; eta: absolute), energy-like variables (pt, E, m, ...: positive,
relative residual, log10(x + 1) transform), integers with few values
(discrete), the four-momentum, the event-number branch of a flat file and a
common branch prefix. Its transforms hold in any unit (the default
normalisation standardises after them), so confirming units is one edit.
Units are left for the user: values that look like MeV are pointed out in a
comment, never converted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from hpcsweep.data.read import DEFAULT_STEP, DISCRETE_LIMIT, POSITIVE_CUT_LIMIT, TABLE_CLASSES, InputFile, file_format
from hpcsweep.errors import UserError

if TYPE_CHECKING:
    import awkward as ak

#: Branch names of a flat per-jet file that number events rather than describe jets.
EVENT_NAMES = ("eventNumber", "EventNumber", "event_number", "event", "evt", "eventID", "EventID")
#: Lower-case variable names read as energy-like (positive, relative residual, log transform).
ENERGY_NAMES = {"pt", "e", "energy", "m", "mass", "et", "mt", "px_abs"}
MEV_HINT = 1000.0  # an energy-like variable whose typical value is above this is probably in MeV


@dataclass
class Branch:
    """One numeric branch: its type, shape and what one pass over its values showed."""

    name: str
    dtype: str
    jagged: bool
    count: int = 0
    nonfinite: int = 0
    negative: int = 0
    low: float = math.inf
    high: float = -math.inf
    integer: bool = True
    distinct: set = field(default_factory=set)
    log_sum: float = 0.0  # of log10(max(x, 0) + 1): the typical value

    def add(self, values: np.ndarray) -> None:
        finite = values[np.isfinite(values)]
        self.nonfinite += len(values) - len(finite)
        self.count += len(finite)
        if not len(finite):
            return
        self.low, self.high = min(self.low, float(finite.min())), max(self.high, float(finite.max()))
        self.negative += int((finite < 0).sum())
        self.integer = self.integer and bool(np.all(finite == np.round(finite)))
        if len(self.distinct) <= DISCRETE_LIMIT:
            self.distinct.update(np.unique(finite[:100_000]).tolist())
        self.log_sum += float(np.log10(np.maximum(finite, 0) + 1).sum())

    @property
    def typical(self) -> float:
        """The geometric mean of x + 1, less 1: what 'values look like MeV' is judged by."""
        return 10 ** (self.log_sum / max(self.count, 1)) - 1

    @property
    def few_values(self) -> bool:
        return len(self.distinct) <= DISCRETE_LIMIT


@dataclass
class Table:
    """A TTree, RNTuple or Parquet table and its numeric branches."""

    file: Path
    name: str
    kind: str
    entries: int
    branches: list[Branch]
    skipped: list[str] = field(default_factory=list)  # branches that are not numbers (strings, records)


def inspect_file(path: str | Path, tree: str | None = None, max_entries: int | None = None, progress: bool = False) -> list[Table]:
    """Every table of `path` (or only `tree`) with one pass of statistics over its numeric branches."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    fmt = file_format(path)
    names = [tree] if tree else _table_names(path) if fmt == "ROOT" else [None]
    return [_inspect_table(path, name, max_entries, progress) for name in names]


def _table_names(path: Path) -> list[str]:
    import uproot

    try:
        handle = uproot.open(path)
    except Exception as err:  # uproot raises many kinds for a damaged file
        raise UserError(f"{path}: not a readable ROOT file ({err})") from None
    names = sorted({key.split(";")[0] for key, cls in handle.classnames(recursive=True).items() if cls in TABLE_CLASSES})
    if not names:
        raise UserError(f"{path}: holds no TTree or RNTuple; it holds: {', '.join(handle.classnames()) or 'nothing'}")
    return names


def _inspect_table(path: Path, name: str | None, max_entries: int | None, progress: bool) -> Table:
    import awkward as ak
    from tqdm import tqdm

    source = InputFile(path, name)
    readable, skipped = _plain_branches(source)
    branches: dict[str, Branch] = {}
    limit = min(source.n_entries, max_entries or source.n_entries)
    with tqdm(total=limit, unit="entry", desc=f"inspecting {path.name}:{source.tree}", disable=not progress) as bar:
        for arrays, start, stop in source.iterate(readable, DEFAULT_STEP):
            chunk = arrays[: max(0, limit - start)]
            for field_name in ak.fields(chunk):
                values = chunk[field_name]
                leaf = _numbers(values)
                if leaf is None:
                    if field_name not in skipped:
                        skipped.append(field_name)
                    continue
                if field_name not in branches:
                    branches[field_name] = Branch(field_name, str(leaf.dtype), values.ndim > 1)
                branches[field_name].add(leaf.astype(np.float64))
            bar.update(min(stop, limit) - start)
            if stop >= limit:
                break
    return Table(path, source.tree, source.kind, source.n_entries, list(branches.values()), [s for s in skipped if s not in branches])


def _plain_branches(source: InputFile) -> tuple[list[str], list[str]]:
    """Branches uproot reads as plain arrays, and the others (objects of a class, which no jet variable is)."""
    if source.kind != "TTree":
        return list(source.available), []
    import uproot

    table = uproot.open(source.path)[source.tree]
    plain = {b.name for b in table.itervalues(recursive=True) if isinstance(b.interpretation, uproot.AsDtype | uproot.AsJagged)}
    return [n for n in source.available if n in plain], [n for n in source.available if n not in plain]


def _numbers(values: ak.Array) -> np.ndarray | None:
    """All values of a branch as one flat array of its own type (missing ones as NaN), or None if they are not numbers."""
    import awkward as ak

    try:
        flat = ak.to_numpy(ak.fill_none(ak.flatten(values, axis=None), np.nan))
    except Exception:  # strings, records, unions: not a jet variable
        return None
    return flat if flat.dtype.kind in "iufb" else None


def describe(tables: list[Table]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) per table, for printing."""
    out = []
    for table in tables:
        rows = [
            [
                b.name,
                b.dtype + (" (jagged)" if b.jagged else ""),
                f"{b.count:,}",
                f"{b.low:.5g}" if b.count else "",
                f"{b.high:.5g}" if b.count else "",
                f"{b.nonfinite:,}",
                f"{b.negative:,}",
                f"{len(b.distinct):,}" if b.few_values else f"> {DISCRETE_LIMIT:,}",
            ]
            for b in table.branches
        ]
        shape = "jagged (jets per event)" if any(b.jagged for b in table.branches) else "flat (one entry per jet)"
        title = f"{table.file.name}: {table.kind} {table.name!r}, {table.entries:,} entries, {shape}"
        if table.skipped:
            title += f"; not numbers, skipped: {', '.join(table.skipped)}"
        out.append((title, ["branch", "type", "values", "min", "max", "NaN/inf", "negative", "distinct"], rows))
    return out


def draft_varset(table: Table, name: str) -> str:
    """A variable set for `table` as commented YAML: runnable as it is, to be checked and edited."""
    jagged = [b for b in table.branches if b.jagged]
    per_jet = jagged or [b for b in table.branches if b.name not in EVENT_NAMES]
    if not table.entries:
        raise UserError(f"{table.file}: {table.name!r} holds no entries; a variable set is drafted from the values of a file's branches")
    if not per_jet:
        raise UserError(f"{table.file}: {table.name!r} has no numeric branch that could be a jet variable")
    event = next((b.name for b in table.branches if b.name in EVENT_NAMES and not b.jagged), None) if not jagged else None
    prefix = _common_prefix([b.name for b in per_jet])
    variables, notes = [], []
    for branch in per_jet:
        entry, note = _variable(branch, prefix)
        variables.append(entry)
        notes += note
    names = [v["name"] for v in variables]
    mapping: dict = {"name": name, "description": f"drafted by 'hpcsweep data inspect' from {table.file.name}:{table.name}"}
    if table.kind != "Parquet":
        mapping["tree"] = table.name
    if prefix:
        mapping["prefixes"] = [prefix]
    if event:
        mapping["event_branches"] = [event]
    four = _four_momentum(names)
    if "pt" in four:
        mapping["rank_by"] = four["pt"]
    if four.keys() >= {"pt", "eta", "phi"} and four.keys() & {"mass", "energy"}:
        mapping["four_momentum"] = four
    mapping["variables"] = variables
    header = [
        f"# Variable set drafted from {table.file} ({table.kind} {table.name!r}, {table.entries:,} entries).",
        "# Check before you trust it: the guesses below come from names and values only.",
        "#  - units: nothing is converted; unit_scale: 0.001 on a MeV variable works in GeV (labels, dijet mass)",
        "#  - positive: never negative; up to 1 % negative jets are cut and counted when read, more is refused",
        "#  - discrete: rounded to values seen in training after decoding; residual: relative | absolute | phi",
        "#  - transform: the 'custom' normalisation, y = (g(x) - shift) / scale, g = x or log10(sign*x + offset);",
        "#    the default normalisation (custom+standard) standardises after it, so these hold in any unit",
        "#  - cuts: e.g.  cuts: [{name: central, keep: 'abs(eta) < 2.5'}]",
        *[f"# {note}" for note in notes],
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(mapping, sort_keys=False, width=140)


def write_draft(file: str, tables: list[Table], out: Path) -> None:
    """Draft a variable set for the one table of `file` (`tables`, as `inspect_file` read them) into `out`; refused
    when the file holds several (one is chosen with --tree) or `out` exists (a draft never overwrites a file)."""
    if len(tables) > 1:
        raise UserError(f"{file} holds {len(tables)} tables ({', '.join(t.name for t in tables)}); choose one with --tree")
    if out.exists():
        raise UserError(f"{out} exists; give another name (a draft never overwrites a file)")
    out.write_text(draft_varset(tables[0], out.stem))


def _variable(branch: Branch, prefix: str) -> tuple[dict, list[str]]:
    """A variable set entry guessed for one branch, and notes for the user."""
    short = branch.name[len(prefix) :]
    name = re.sub(r"\W", "_", short)
    if not name.isidentifier():
        name = f"v_{name}"
    entry: dict = {"name": name}
    if name != short:
        entry["branches"] = [short]
    lowered = name.lower().rstrip("_")
    notes: list[str] = []
    if lowered.endswith("phi"):
        entry |= {"residual": "phi", "unit": "rad", "transform": {"scale": 3}}
    elif lowered.endswith("eta") or lowered in ("y", "rapidity"):
        entry |= {"transform": {"scale": 5}}
    elif branch.integer and branch.few_values:
        entry |= {"discrete": True, "positive": branch.negative == 0}
    elif lowered in ENERGY_NAMES or lowered.endswith(("pt", "energy", "mass")):
        entry |= {"positive": True, "transform": {"kind": "log10", "offset": 1}}
        if branch.negative:
            share = branch.negative / max(branch.count, 1)
            verdict = "cut and counted when read" if share <= POSITIVE_CUT_LIMIT else "too many: remove positive: true, or cut them"
            notes.append(f"{name}: {branch.negative:,} negative values ({100 * share:.2f} %): {verdict}")
        if branch.typical > MEV_HINT:
            notes.append(f"{name}: typical value {branch.typical:,.0f}: MeV? add unit_scale: 0.001 (and unit: GeV) to work in GeV")
    return entry, notes


def _four_momentum(names: list[str]) -> dict[str, str]:
    lowered = {n.lower().rstrip("_"): n for n in names}
    wanted = {"pt": ("pt",), "eta": ("eta",), "phi": ("phi",), "mass": ("m", "mass"), "energy": ("e", "energy")}
    four = {key: next(lowered[c] for c in options if c in lowered) for key, options in wanted.items() if any(c in lowered for c in options)}
    if "mass" in four:
        four.pop("energy", None)  # vector takes one of the two
    return four


def _common_prefix(names: list[str]) -> str:
    """A prefix every name shares, up to and including its last '_' or '.' (e.g. 'jet_'); '' if none or one name."""
    if len(names) < 2:
        return ""
    shared = names[0]
    for name in names[1:]:
        while not name.startswith(shared):
            shared = shared[:-1]
    cut = max(shared.rfind("_"), shared.rfind("."))
    return shared[: cut + 1] if cut >= 0 else ""

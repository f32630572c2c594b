"""The files compress, decompress and score read and write: an input opened for a bundle, and a writer per file kind.

An input is a ROOT TTree or RNTuple, or a Parquet table (`data.read.InputFile`
tells them apart); what is carried from it, each branch's type and jaggedness,
goes into the compressed file's header. The output's kind is its name's suffix:
one `Writer` per kind in `WRITERS`, so a new kind is one class here. ROOT files
are written as a TTree, jagged branches grouped by their counter as in the
input (uproot writes a group's counter, as int32).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from hpcsweep.errors import UserError

if TYPE_CHECKING:
    from collections.abc import Iterator

    import awkward as ak
    import pyarrow.parquet as pq
    import uproot

    from hpcsweep.compress.bundle import Bundle
    from hpcsweep.data.read import InputFile
    from hpcsweep.data.varset import Variable, VarSet

STEP = "4 MB"  # of input per chunk: ~40k flat jets of 24 variables; a worker codes one in some 0.2 GB


# --- the input -------------------------------------------------------------------------------------
@dataclass
class Input:
    """An input file opened for a bundle: its branch for each of the bundle's variables (`model`), the branches to
    carry, jagged branch -> counter, and notes on how its jets differ from the training jets."""

    file: InputFile
    model: dict[str, Variable]
    branches: list[str]
    counters: dict[str, str]
    notes: list[str]

    def chunks(self, step_size: str) -> Iterator[tuple[ak.Array, int, int]]:
        """(arrays of the carried branches, first entry, entry after the last) per chunk."""
        return self.file.iterate(self.branches, step_size)

    def header(self, arrays: ak.Array, bundle: Bundle, bound: float) -> dict[str, Any]:
        """What a written file must know of the input, from its first chunk: its kind, tree and branches (type,
        jaggedness, counter, whether values may be missing; a model branch's variable and unit scale)."""
        branches = []
        for name in arrays.fields:
            array = arrays[name]
            jagged = _jagged(array)
            entry = {
                "name": name,
                "dtype": _leaf_dtype(array),
                "jagged": jagged,
                "counter": self.counters.get(name) if jagged else None,
                "optional": _optional(array),
                "absent": array.ndim > 1 and _entries_optional(array),
                "size": _fixed_size(array),
            }
            if name in self.model:
                entry["variable"] = self.model[name].name
                entry["unit_scale"] = self.model[name].unit_scale
            branches.append(entry)
        return {
            "bundle": bundle.checksum,
            "trial": bundle.trial_id,
            "bound": bound,
            "format": _format_name(self.file),
            "tree": self.file.tree,
            "source": self.file.path.name,
            "branches": branches,
        }


def open_input(source: Path, bundle: Bundle, tree: str | None, verb: str) -> Input:
    """The input opened for `bundle` (a missing variable's branch named with the nearest). Refused before any work: an
    input without entries, or one whose first chunk is not the kind of jets the model learned (other units:
    `Bundle.check_jets`)."""
    from hpcsweep.data.read import InputFile, find_branch

    varset = bundle.varset
    file = InputFile(Path(source), tree or varset.tree)
    if not file.n_entries:
        raise UserError(f"{file.path}: holds no entries to {verb}")
    model = {find_branch(v.name, v.branches, varset.prefixes, file.available, file.path, file.tree): v for v in varset.variables}
    first, _, _ = next(iter(file.iterate(list(model), STEP)))
    physical, kept = in_set_units(model_columns(first, model)[0], model, varset)
    notes = bundle.check_jets(physical[kept], file.path)
    return Input(file, model, *_carried(file), notes)


def in_set_units(raw: np.ndarray, model: dict[str, Variable], varset: VarSet) -> tuple[np.ndarray, np.ndarray]:
    """A chunk's model columns in the variable set's units, and which of its jets the model applies to
    (`VarSet.selected`)."""
    physical = raw * np.array([v.unit_scale for v in model.values()])
    return physical, varset.selected(dict(zip(varset.names, physical.T, strict=True)))


def model_columns(arrays: ak.Array, model: dict[str, Variable]) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """A chunk's model branches as (jets x variables) float64 file values, the jets per entry (None: flat; -1: an entry
    missing as a whole, a Parquet list column's null row), and where optional branches miss a value (coded as NaN)."""
    import awkward as ak

    names = list(model)
    missing: dict[str, np.ndarray] = {}
    first = arrays[names[0]]
    counts = _jets_per_entry(first) if first.ndim > 1 else None
    columns = []
    for name in names:
        array = arrays[name]
        if counts is not None and not np.array_equal(_jets_per_entry(array), counts):
            raise UserError(f"branches {names[0]!r} and {name!r} hold different numbers of jets per entry: they are not one jet collection")
        flat = ak.flatten(array) if counts is not None else array
        columns.append(ak.to_numpy(ak.fill_none(flat, np.nan) if _optional(array) else flat).astype(np.float64))
        if _optional(array):
            missing[name] = ak.to_numpy(ak.is_none(flat))
    return (np.stack(columns, axis=1) if columns else np.zeros((0, 0))), counts, missing


def _carried(file: InputFile) -> tuple[list[str], dict[str, str]]:
    """The branches to carry, and jagged branch -> counter. A TTree's counters are left out of the branches: uproot
    writes them back for their jagged groups."""
    if file.kind == "Parquet":
        return file.available, {}
    import uproot

    table = uproot.open(file.path)[file.tree]
    if file.kind == "RNTuple":
        return list(table.keys(recursive=False)), {}
    counters = {b.name: b.count_branch.name for b in table.itervalues() if b.count_branch is not None}
    return [name for name in table.keys(recursive=False) if name not in set(counters.values())], counters


def _format_name(file: InputFile) -> str:
    """'ROOT TTree', 'ROOT RNTuple' or 'Parquet', as a compressed file's header records it."""
    return file.kind if file.kind == file.format else f"{file.format} {file.kind}"


def _jets_per_entry(array: ak.Array) -> np.ndarray:
    """The jets of each entry of a jagged branch, -1 where the entry itself is missing."""
    import awkward as ak

    return ak.to_numpy(ak.fill_none(ak.num(array), -1)).astype(np.int64)


def unflattened(column: ak.Array, counts: np.ndarray, entries_optional: bool = False, size: int | None = None) -> ak.Array:
    """Per-jet values back in their entries (`counts` as `model_columns` gives them); an entry counted -1 comes back
    missing, and `entries_optional` keeps the branch's type one whose entries may be missing, in every chunk. With a
    `size`, the jets were a fixed-size array (float[3]): they come back as one (a missing entry padded, then masked)."""
    import awkward as ak

    absent = counts < 0
    out = ak.unflatten(column, np.where(absent, 0, counts))
    if size is not None:
        padded = ak.pad_none(out, size, axis=1, clip=True)  # regular; every value optional
        leaf = ak.to_numpy(ak.drop_none(column)).dtype
        out = padded if _optional(column) else ak.fill_none(padded, np.zeros((), leaf)[()], axis=-1)
    return ak.mask(out, ~absent) if entries_optional or absent.any() else out


def _jagged(array: ak.Array) -> bool:
    """Whether a branch holds lists of varying length per entry (a TTree writes them with a counter). A fixed-size array
    (a TTree's float[3], Parquet's fixed_size_list) is not: it goes back as one branch of its own type, no counter
    (grouped with a counter, uproot cannot write it)."""

    return array.ndim > 1 and _fixed_size(array) is None


def _fixed_size(array: ak.Array) -> int | None:
    """The size of a branch's fixed-size arrays (a TTree's float[3]), None for any other branch."""
    import awkward as ak

    content = array.type.content
    if isinstance(content, ak.types.OptionType):
        content = content.content
    return content.size if isinstance(content, ak.types.RegularType) else None


def _optional(array: ak.Array) -> bool:
    """Whether values may be missing (Parquet columns written by pandas are)."""
    return "?" in str(array.type.content)


def _entries_optional(array: ak.Array) -> bool:
    """Whether a jagged branch's entries may be missing as a whole (a Parquet list column that may be null)."""
    return str(array.type.content).startswith("option[")


def _leaf_dtype(array: ak.Array) -> str:
    import awkward as ak

    flat = ak.flatten(array, axis=None) if array.ndim > 1 else array
    try:
        return str(ak.to_numpy(flat[:0]).dtype)
    except Exception:  # strings, records: carried as awkward buffers whatever they are
        return "object"


# --- the output ------------------------------------------------------------------------------------
class Writer(Protocol):
    """Writes a file chunk by chunk to `path` (opened at the first chunk), its tree and branches as `header` says."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None: ...

    def write(self, arrays: dict[str, Any]) -> None:
        """Append a chunk's branches (name -> awkward array)."""

    def close(self) -> None:
        """Finish the file (nothing to do if no chunk was written)."""


class RootWriter:
    """Writes chunks into one TTree, jagged branches grouped by their counter as in the input."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path, self.header = path, header
        self.tree = header["tree"] if header["format"] != "Parquet" else "jets"
        self.file: uproot.WritableDirectory | None = None
        groups: dict[str, list[str]] = {}
        for branch in header["branches"]:
            if branch["jagged"]:
                groups.setdefault(branch["counter"] or f"n{branch['name']}", []).append(branch["name"])
        self.groups = {f"__group{i}": members for i, members in enumerate(groups.values())}
        self.counters = {f"__group{i}": counter for i, counter in enumerate(groups)}

    def write(self, arrays: dict[str, Any]) -> None:
        import awkward as ak
        import uproot

        chunk: dict[str, Any] = {}
        placed = set()
        for branch in self.header["branches"]:
            name = branch["name"]
            group = next((g for g, members in self.groups.items() if name in members), None)
            if group is None:
                chunk[name] = _without_nulls(arrays[name], name)
            elif group not in placed:
                placed.add(group)
                chunk[group] = ak.zip({m: _without_nulls(arrays[m], m) for m in self.groups[group]})
        if self.file is None:
            self.file = uproot.recreate(self.path)
            self.file.mktree(
                self.tree,
                {k: v.type for k, v in chunk.items()},
                counter_name=lambda group: self.counters[group],
                field_name=lambda outer, inner: inner,
            )
        self.file[self.tree].extend(chunk)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _without_nulls(array: ak.Array, name: str) -> ak.Array:
    """A branch for a TTree, which holds no missing value: a Parquet column that may be null but is not, as a plain
    one; one that is null somewhere is refused (the caller's temporary goes, nothing is written)."""
    import awkward as ak

    if not _optional(array) and not _entries_optional(array):
        return array
    if any(bool(ak.any(ak.is_none(array, axis=axis))) for axis in range(array.ndim)):
        raise UserError(
            f"branch {name!r} has missing values (nulls of the input's Parquet table), which a ROOT TTree cannot hold: write .parquet"
        )
    return ak.drop_none(array)


class ParquetWriter:
    """Writes chunks as row groups of one Parquet table (its schema from the first chunk)."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.writer: pq.ParquetWriter | None = None

    def write(self, arrays: dict[str, Any]) -> None:
        import awkward as ak
        import pyarrow.parquet as pq

        table = ak.to_arrow_table(ak.zip(arrays, depth_limit=1), extensionarray=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


#: The output kinds, by the suffix of the file's name.
WRITERS: dict[str, type[Writer]] = {".root": RootWriter, ".parquet": ParquetWriter}


def writer_for(output: Path) -> type[Writer]:
    """The writer of `output`'s kind; another suffix is refused before anything is written."""
    if output.suffix not in WRITERS:
        raise UserError(f"{output}: write {' or '.join(WRITERS)} (by the name's suffix)")
    return WRITERS[output.suffix]

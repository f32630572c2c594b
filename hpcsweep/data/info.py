"""A jet file read as a sweep would read it, for a look before sweeping it (`hpcsweep data info`): its jets and events,
each variable's range, what each cleaning step removed, and the dijet-mass peak when the variable set has a
four-momentum."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpcsweep.data.physics import MIN_PEAK_EVENTS, dijet_mass, peak_and_width
from hpcsweep.data.read import JetTable, load_jets
from hpcsweep.data.varset import VarSet, load_varset
from hpcsweep.paths import locate


@dataclass(frozen=True)
class FileInfo:
    """The jets of a file as `varset` reads them: after its cuts (`table.cuts` says what each removed) and checks."""

    varset: VarSet
    table: JetTable

    def events(self) -> int:
        """Events with at least one jet."""
        return len(np.unique(self.table.event))

    def ranges(self) -> dict[str, tuple[float, float, float] | None]:
        """Each variable's (min, mean, max); None when no jet is left."""
        return {name: _range(np.asarray(self.table.columns[name], dtype=np.float64)) for name in self.table.names}

    def dijet_peak(self) -> tuple[int, float, float] | None:
        """(events, peak, Gaussian-equivalent width) of the two leading jets' mass, in GeV; None without a
        four-momentum, or with too few events to locate a peak."""
        if not self.varset.four_momentum:
            return None
        mass = dijet_mass(self.table.columns, self.table.event, self.table.rank, self.varset.four_momentum)
        return (len(mass), *peak_and_width(mass)) if len(mass) >= MIN_PEAK_EVENTS else None


def _range(column: np.ndarray) -> tuple[float, float, float] | None:
    return (column.min(), column.mean(), column.max()) if len(column) else None


def file_info(file: str, varset: str, tree: str | None = None) -> FileInfo:
    """`file` (a path or a glob, from the working directory) read with `varset` (a built-in set's name or a YAML file)."""
    chosen = load_varset(varset, Path.cwd())
    return FileInfo(chosen, load_jets(locate(file, None), chosen, tree=tree))

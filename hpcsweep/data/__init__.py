"""Data stage: jet files (generated, or ROOT/Parquet of one's own) -> cleaned per-jet tables -> normalised arrays.

Public names are imported on first use, so that `import hpcsweep.data` (and the
configuration, which reads variable-set names) stays light.
"""

from __future__ import annotations

from hpcsweep.exports import lazy_exports

_EXPORTS = {
    "data_root": "dataset",
    "prepare": "dataset",
    "prepared": "dataset",
    "recorded_files": "dataset",
    "trained_data": "dataset",
    "source_files": "dataset",
    "file_info": "info",
    "Sample": "generate",
    "generate": "generate",
    "JetTable": "read",
    "load_jets": "read",
    "cache_jets": "read",
    "open_cache": "read",
    "data_version": "read",
    "load_varset": "varset",
    "varset_names": "varset",
    "Normaliser": "normalize",
    "make_normaliser": "normalize",
    "dijet_mass": "physics",
    "peak_and_width": "physics",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)

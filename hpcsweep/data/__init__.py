"""Data stage: ROOT files (generated or given) -> cleaned per-jet tables -> normalised arrays.

Public names are imported on first use, so that `import hpcsweep.data` (and the
configuration, which reads variable-set names) stays light.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpcsweep.config import DataConfig

_EXPORTS = {
    "Sample": "generate",
    "generate": "generate",
    "JetTable": "read",
    "load_jets": "read",
    "cache_jets": "read",
    "open_cache": "read",
    "load_varset": "varset",
    "varset_names": "varset",
    "Normaliser": "normalize",
    "make_normaliser": "normalize",
    "dijet_mass": "physics",
    "peak_and_width": "physics",
}

__all__ = sorted(_EXPORTS) + ["data_root", "prepare", "source_path"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"hpcsweep.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'hpcsweep.data' has no attribute {name!r}")


def data_root() -> Path:
    """Where generated samples and caches live: $HPCSWEEP_DATA, else ./data."""
    return Path(os.environ.get("HPCSWEEP_DATA", "data")).resolve()


def source_path(config: DataConfig, progress: bool = True) -> Path:
    """The ROOT file a data config reads, generating it first if it is a generated sample."""
    if config.source != "generated":
        return Path(config.source)
    from hpcsweep.data.generate import Sample, generate

    sample = Sample(config.process, config.events, config.generator_seed, config.zprime_mass)
    return generate(sample, data_root() / "generated", progress=progress)


def prepare(config: DataConfig, progress: bool = True) -> Path:
    """Make sure the cleaned, cached table of `config` exists; return its folder."""
    from hpcsweep.data.read import cache_jets
    from hpcsweep.data.varset import load_varset

    return cache_jets(
        source_path(config, progress),
        load_varset(config.varset),
        data_root() / "cache",
        tree=config.tree,
        leading_only=config.leading_only,
        progress=progress,
    )

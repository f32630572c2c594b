"""Prepared data: the cleaned, cached jet table of a data config, generated or read first when missing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpcsweep.config import DataConfig
    from hpcsweep.data.generate import Sample


def data_root() -> Path:
    """Where generated samples and caches live: $HPCSWEEP_DATA, else ./data."""
    return Path(os.environ.get("HPCSWEEP_DATA", "data")).resolve()


def _sample(config: DataConfig) -> Sample:
    from hpcsweep.data.generate import Sample

    process, events, seed, mass = config.process, config.events, config.generator_seed, config.zprime_mass
    assert process is not None and events is not None and seed is not None and mass is not None  # DataConfig: generated data has them
    return Sample(process, events, seed, mass)


def source_files(config: DataConfig, progress: bool = True, root: Path | None = None) -> str | list[str]:
    """The files a data config reads, generating the sample first (under `root`, default data_root()) if it is a
    generated one."""
    if not config.generated:
        return config.source
    from hpcsweep.data.generate import generate

    return str(generate(_sample(config), (root or data_root()) / "generated", progress=progress))


def trained_data(config: dict, provenance: dict, what: str) -> Path:
    """The cache of the data a stored trial trained on (its config and provenance as stored), read from the files it
    recorded wherever this runs; refused when the data changed since it was trained (`what`: what then cannot be done)."""
    from hpcsweep.config import DataConfig
    from hpcsweep.data.read import data_version, open_cache
    from hpcsweep.errors import UserError

    folder = prepare(DataConfig.model_validate(config["data"]), recorded=recorded_files(provenance))
    trained_on, now = config.get("data_version", ""), data_version(open_cache(folder).meta)
    if trained_on and trained_on != now:
        raise UserError(f"the trial's data changed since it was trained (version {trained_on}, now {now}): {what}")
    return folder


def recorded_files(provenance: dict) -> list[str]:
    """The paths of the files a trial recorded it read (`provenance.data_files`)."""
    return [entry["path"] for entry in provenance.get("data_files", []) if isinstance(entry, dict) and "path" in entry]


def _root_of(config: DataConfig, recorded: Sequence[str]) -> Path:
    """data_root(), unless the generated sample is missing there and one of the `recorded` files is it: then that
    file's data root (the folder above its `generated/`)."""
    root = data_root()
    if not config.generated or (root / "generated" / _sample(config).filename).exists():
        return root
    found = [Path(p) for p in recorded if Path(p).name == _sample(config).filename and Path(p).is_file()]
    return found[0].parent.parent if found and found[0].parent.name == "generated" else root


def prepare(config: DataConfig, progress: bool = True, recorded: Sequence[str] = ()) -> Path:
    """Make sure the cleaned, cached table of `config` exists (generate, read, check, cache); return its folder.

    `recorded`: the files a trial recorded it read. A generated sample missing under data_root() but present there
    is read where it is (with the cache beside it): an export or evaluation run from another folder must not
    simulate the trial's events again.
    """
    from hpcsweep.data.read import cache_jets
    from hpcsweep.data.varset import load_varset

    root = _root_of(config, recorded)
    return cache_jets(
        source_files(config, progress, root),
        load_varset(config.varset),
        root / "cache",
        tree=config.tree,
        leading_only=config.leading_only,
        progress=progress,
    )


def prepared(config: DataConfig) -> Path | None:
    """The cached table of `config` if its files were read as they are now; None otherwise (nothing is read or generated)."""
    from hpcsweep.data.read import cached
    from hpcsweep.data.varset import load_varset
    from hpcsweep.errors import UserError

    if config.generated:
        sample_file = data_root() / "generated" / _sample(config).filename
        if not sample_file.exists():
            return None
        files: str | list[str] = str(sample_file)
    else:
        files = config.source
    try:
        return cached(files, load_varset(config.varset), data_root() / "cache", tree=config.tree, leading_only=config.leading_only)
    except UserError:  # a file is missing: nothing can be said about its content
        return None

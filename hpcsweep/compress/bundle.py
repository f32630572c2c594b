"""A bundle: one self-contained HDF5 file with what a trial's model and its compressor need, without the sweep.

It holds the AE's best weights (none for a trial of model kind `codec`), its
configuration and normaliser, the resolved variable set, the discrete tables,
the trial id, the dataset's checksum and source, and the trial's compressor
(one coder per error bound, and an autoencoder's latents). A sha256 of all of
it (the same recipe as a trial file's) identifies the bundle; a compressed
file records it for information, and is decompressed by any bundle holding the
compressor it names (`embed.identity`), or by the one it carries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hpcsweep.codec import Compressor
from hpcsweep.data.varset import VarSet, load_varset
from hpcsweep.errors import UserError
from hpcsweep.files import atomic
from hpcsweep.store import checksum

KIND = "hpcsweep bundle"
SCHEMA = 3  # 3: predictions in integers; 2: the trial's compressor as it was trained (1: compressors fitted at export)
TEXTS = ("trial", "varset", "config", "normaliser", "data", "compressor")


@dataclass
class Bundle:
    """A loaded bundle: its identity, variable set and compressors by bound; the rest stays in `texts`/`arrays`."""

    path: Path
    checksum: str
    texts: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def varset(self) -> VarSet:
        return load_varset(self.texts["varset"])

    @property
    def trial_id(self) -> str:
        return self.texts["trial"]["trial_id"]

    @property
    def compressor(self) -> Compressor:
        if "_compressor" not in self.__dict__:
            prefix = "compressor/"
            self.__dict__["_compressor"] = Compressor.from_state(
                self.texts["compressor"], {k.removeprefix(prefix): v for k, v in self.arrays.items() if k.startswith(prefix)}
            )
        return self.__dict__["_compressor"]

    @property
    def bounds(self) -> list[float]:
        return self.compressor.bounds

    def check_bound(self, bound: float) -> None:
        """A bound the bundle's compressor was not fitted at is one line listing those it was."""
        try:
            self.compressor.coder(bound)
        except KeyError:
            raise UserError(
                f"{self.path}: holds compressors for --max-error {', '.join(bound_label(b) for b in self.bounds)}, not {bound_label(bound)}; "
                f"export one with hpcsweep export ... --refit --max-error {bound_label(bound)}"
            ) from None

    def check_jets(self, x: np.ndarray, source: Path) -> list[str]:
        """Jets of `source` (in the set's units) that are not the kind the trial learned are refused in one line (a file
        in MeV for a model of GeV); milder differences come back as notes. A bundle of an older hpcsweep has no profile."""
        from hpcsweep.data.profile import compare

        what = f"{source}: compared with the training jets of the bundle's trial {self.trial_id}"
        return compare(self.texts["data"].get("profile", {}), x, self.varset, what)

    @property
    def has_network(self) -> bool:
        """Whether the bundle holds an autoencoder (a trial of model kind `codec` has none)."""
        return any(k.startswith("weights/") for k in self.arrays)


def bound_label(bound: float) -> str:
    """0.01 -> '1%'."""
    return f"{100 * bound:g}%"


def write_bundle(
    path: Path, texts: dict[str, Any], weights: dict[str, np.ndarray], discrete: dict[str, np.ndarray], compressor: Compressor
) -> str:
    """Write a bundle atomically; return its checksum. `texts` holds trial, varset, config, normaliser and data."""
    meta, named = compressor.state()
    texts = texts | {"compressor": meta}
    encoded = {key: json.dumps(texts[key], sort_keys=True) for key in TEXTS}
    arrays = {f"weights/{k}": np.asarray(v) for k, v in weights.items()}
    arrays |= {f"discrete/{k}": np.asarray(v) for k, v in discrete.items()}
    arrays |= {f"compressor/{name}": np.asarray(a) for name, a in named.items()}
    digest = checksum(encoded, arrays)
    with atomic(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs.update({"kind": KIND, "schema": SCHEMA, "checksum": digest} | encoded)
        for name, array in arrays.items():
            handle.create_dataset(name, data=array)
    return digest


def load_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle; anything else (a missing, foreign or damaged file) is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such bundle (make one with hpcsweep export SWEEP --z Z -o {path.name})")
    try:
        with h5py.File(path, "r") as handle:
            if handle.attrs.get("kind") != KIND:
                raise UserError(f"{path}: not an hpcsweep bundle (made by hpcsweep export)")
            if handle.attrs.get("schema") != SCHEMA:
                raise UserError(f"{path}: a bundle of an older hpcsweep (schema {handle.attrs.get('schema')}); export the trial again")
            encoded = {key: str(handle.attrs[key]) for key in TEXTS}
            stored = str(handle.attrs["checksum"])
            arrays: dict[str, np.ndarray] = {}
            handle.visititems(lambda name, node: arrays.__setitem__(name, node[()]) if isinstance(node, h5py.Dataset) else None)
    except OSError as err:
        raise UserError(f"{path}: not a readable bundle ({err})") from None
    if checksum(encoded, arrays) != stored:
        raise UserError(f"{path}: the bundle was changed or damaged after export (checksum mismatch)")
    return Bundle(path, stored, {key: json.loads(text) for key, text in encoded.items()}, arrays)

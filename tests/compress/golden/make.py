"""Make the golden compressed file of this layout version: `PYTHONPATH=. python tests/compress/golden/make.py`.

Run once per layout version, by the version that introduces it; never again for a version already here: every later
hpcsweep must decode each golden file to the checksum pinned beside it (tests/compress/test_golden.py). The file
carries its compressor (the learned coder alone, fitted by a tiny sweep, some variables predicted) and holds jets of
the project's own generated sample with the odd jets of real files: a negative pt, a NaN eta, E = 0, a pt of 1e30
(an escape), a float64 weight and an integer event number beside them.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

HERE = Path(__file__).parent
EVENTS = 120


def canonical(arrays: dict[str, ak.Array]) -> str:
    """sha256 of a tree's branches, by name: for each, its name, its jets per entry (jagged) and its flat values with
    their dtype, little-endian; every bit counts (NaN payloads, -0.0)."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = arrays[name]
        digest.update(name.encode() + b"\0")
        if array.ndim > 1:
            digest.update(ak.to_numpy(ak.num(array)).astype("<i8").tobytes())
        flat = ak.to_numpy(ak.flatten(array, axis=None))
        digest.update(flat.dtype.newbyteorder("<").str.encode() + b"\0" + flat.astype(flat.dtype.newbyteorder("<")).tobytes())
    return digest.hexdigest()


def checksum_of(opened: Any) -> str:
    """`canonical` of a compressed file's branches, decoded once (`hpcsweep.open`'s CompressedFile)."""
    arrays = opened.arrays()
    return canonical({name: arrays[name] for name in arrays.fields})


def _inputs(source: Path, out: Path) -> None:
    events = uproot.open(source)["events"].arrays()[:EVENTS]
    jets = {name: events[f"jet_{name}"] for name in ("pt", "eta", "phi", "E")}
    counts = ak.num(jets["pt"])
    for name, index, value in (("pt", 5, -1.5), ("eta", 7, np.nan), ("E", 9, 0.0), ("pt", 11, 1e30)):
        flat = ak.to_numpy(ak.flatten(jets[name])).astype(np.float64)
        flat[index] = value
        jets[name] = ak.unflatten(flat, counts)
    rng = np.random.default_rng(5)
    branches = {"eventNumber": events["eventNumber"], "weight": rng.normal(1, 0.1, len(events)), "jet": ak.zip(jets)}
    with uproot.recreate(out) as handle:
        handle.mktree(
            "events",
            {k: v.type.content if isinstance(v, ak.Array) else v.dtype for k, v in branches.items()},
            counter_name=lambda group: "njet",
            field_name=lambda outer, inner: f"{outer}_{inner}",
        )
        handle["events"].extend(branches)


def main() -> int:
    from hpcsweep.cli import main as hpcsweep
    from hpcsweep.compress import load_bundle, open_compressed
    from hpcsweep.compress.container import VERSION
    from hpcsweep.data.generate import generate
    from tests.helpers import QCD, coder_bundle

    target = HERE / f"v{VERSION}.hpcz"
    if target.exists():
        print(f"{target} exists: a golden file is made once, by the version that introduces its layout", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        source = generate(QCD, work / "generated", progress=False)
        bundle = coder_bundle(work, f"events: {QCD.events}, generator_seed: {QCD.seed}, varset: fourvec", "steps: 300")
        predicted = load_bundle(bundle).compressor.coder(0.01).predictors
        assert any(p is not None for p in predicted), "a golden file pins the predictors' arithmetic: some variable is predicted"
        _inputs(source, work / "jets.root")
        assert hpcsweep(["compress", str(work / "jets.root"), "--model", str(bundle), "--embed", "-o", str(target)]) == 0
    opened = open_compressed(target)
    pinned = {
        "layout": VERSION,
        "checksum": checksum_of(opened),
        "branches": opened.keys(),
        "entries": opened.num_entries,
        "predicted": [p is not None for p in predicted],
    }
    target.with_suffix(".json").write_text(json.dumps(pinned, indent=1) + "\n")
    print(f"written: {target} ({target.stat().st_size:,} bytes) and {target.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

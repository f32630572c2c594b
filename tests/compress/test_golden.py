"""Golden files: a compressed file of each layout version, made once by the version that introduced it
(tests/compress/golden/make.py) and committed, decodes to the checksum pinned beside it, in this version and every
later one: by `hpcsweep.open`, without BLAS (`exact.reference`), and through `hpcsweep decompress` to a ROOT file.
Nothing else is needed: each file carries its compressor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import uproot

from hpcsweep.cli import main
from hpcsweep.codec import exact
from hpcsweep.compress import open_compressed
from hpcsweep.compress.container import VERSION
from tests.compress.golden.make import canonical, checksum_of

GOLDEN = sorted((Path(__file__).parent / "golden").glob("v*.hpcz"))


def test_there_is_a_golden_file_of_this_layout_version():
    assert [int(path.stem[1:]) for path in GOLDEN][-1] == VERSION, "a new layout version brings its golden file: run golden/make.py"


@pytest.mark.parametrize("path", GOLDEN, ids=[path.stem for path in GOLDEN])
def test_a_golden_file_decodes_to_its_pinnedchecksum_of(path, tmp_path):
    pinned = json.loads(path.with_suffix(".json").read_text())
    opened = open_compressed(path)
    assert opened.keys() == pinned["branches"] and opened.num_entries == pinned["entries"]
    assert checksum_of(opened) == pinned["checksum"]
    assert any(pinned["predicted"]), "the file pins the predictors' arithmetic"
    with exact.reference():
        assert checksum_of(opened) == pinned["checksum"]
    assert main(["decompress", str(path), "-o", str(tmp_path / "back.root")]) == 0
    tree = uproot.open(tmp_path / "back.root")["events"]
    assert canonical({name: tree[name].array() for name in pinned["branches"]}) == pinned["checksum"]

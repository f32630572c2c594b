"""Cleaning cuts: declarative per variable set, applied in GeV, each one's removals counted."""

from __future__ import annotations

import numpy as np
import pytest

from hpcsweep.data import load_jets, load_varset
from hpcsweep.errors import UserError
from tests.conftest import write_tree

ATLAS_PREFIX = "HLT_xAOD__JetContainer_TrigHLTJetDSSelectorCollectionAuxDyn."
GOOD = {  # a clean central jet, energies in MeV as in the ATLAS files
    "pt": 50e3, "eta": 0.5, "phi": 0.1, "m": 5e3, "ActiveArea": 0.5, "ActiveArea4vec_eta": 0.5,
    "ActiveArea4vec_m": 0.05, "ActiveArea4vec_phi": 0.1, "ActiveArea4vec_pt": 0.5, "AverageLArQF": 0.1,
    "NegativeE": -1e3, "HECQuality": 0.0, "LArQuality": 0.1, "Width": 0.1, "WidthPhi": 0.1, "CentroidR": 2000.0,
    "DetectorEta": 0.5, "LeadingClusterCenterLambda": 300.0, "LeadingClusterPt": 20e3, "LeadingClusterSecondLambda": 5e3,
    "LeadingClusterSecondR": 5e3, "N90Constituents": 5.0, "EMFrac": 0.5, "HECFrac": 0.0, "Timing": 1.0,
    "OotFracClusters10": 0.0, "OotFracClusters5": 0.0,
}  # fmt: skip
# One jet failing each thesis cut in turn (in the order of the variable set), then a NaN.
BAD = [
    {"EMFrac": 6.0},
    {"EMFrac": 0.01, "eta": 2.5},
    {"AverageLArQF": 0.9, "EMFrac": 0.96, "LArQuality": 0.9},
    {"NegativeE": -400e3},
    {"AverageLArQF": 0.9, "HECQuality": 0.6, "HECFrac": 0.6},
    {"OotFracClusters5": -0.2},
    {"Width": -1.0},
    {"Timing": 130.0},
    {"pt": float("nan")},
]


def test_thesis_cleaning_cuts_remove_exactly_the_bad_jets(tmp_path):
    varset = load_varset("atlas27")
    rows = [GOOD, *({**GOOD, **bad} for bad in BAD), GOOD]
    branches = {ATLAS_PREFIX + name: np.array([row[name] for row in rows], dtype=np.float32) for name in GOOD}
    path = write_tree(tmp_path / "tla.root", "CollectionTree", branches)
    table = load_jets(path, varset, step_size=3)
    assert len(table) == 2
    assert table.columns["pt"].tolist() == [50.0, 50.0], "MeV are converted to GeV"
    assert table.columns["NegativeE"].tolist() == [-1.0, -1.0]
    assert [c.removed for c in table.cuts] == [1, 1, 1, 1, 1, 1, 1, 1, 1, 0], "the last step: declared-positive values"
    assert table.cuts[0].name == "finite values"


def test_cut_expressions_see_physical_units_and_keep_or_drop(qcd_file):
    base = load_varset("fourvec")
    keep = load_varset({**base.mapping(), "cuts": [{"name": "hard", "keep": "pt > 50"}]})
    drop = load_varset({**base.mapping(), "cuts": [{"name": "hard", "drop": "pt > 50"}]})
    everything = load_jets(qcd_file, base)
    kept, dropped = load_jets(qcd_file, keep), load_jets(qcd_file, drop)
    assert len(kept) + len(dropped) == len(everything)
    removed = {c.name: c.removed for c in kept.cuts}
    assert removed["hard"] == len(dropped) and np.all(kept.columns["pt"] > 50)


def test_a_broken_cut_names_the_cut_and_the_variables(qcd_file):
    base = load_varset("fourvec")
    broken = load_varset({**base.mapping(), "cuts": [{"name": "typo", "keep": "ptt > 50"}]})
    with pytest.raises(UserError, match=r"cannot evaluate cut 'ptt > 50'.*variables: pt, eta, phi, E"):
        load_jets(qcd_file, broken)

"""The generator: real Pythia 8 + FastJet jets, deterministic, cached, physically sane."""

from __future__ import annotations

import os
import time

import awkward as ak
import numpy as np
import pytest
import uproot

from hpcsweep.data import dijet_mass, load_jets, load_varset, peak_and_width
from hpcsweep.data.generate import JET_FLOATS, JET_INTS, Sample, generate
from hpcsweep.errors import UserError
from tests.helpers import QCD


def _arrays(path):
    return uproot.open(path)["events"].arrays(library="ak")


@pytest.mark.slow
def test_same_seed_gives_the_same_file_whatever_the_worker_count(tmp_path):
    sample = Sample("qcd", 60, seed=11, chunk_events=20)
    one = _arrays(generate(sample, tmp_path / "one", workers=1, progress=False))
    two = _arrays(generate(sample, tmp_path / "two", workers=3, progress=False))
    other = _arrays(generate(Sample("qcd", 60, seed=12, chunk_events=20), tmp_path / "three", workers=2, progress=False))
    assert one.fields == two.fields
    for field in one.fields:
        assert ak.all(one[field] == two[field]), field
    assert not ak.all(ak.num(one["jet_pt"]) == ak.num(other["jet_pt"])) or not ak.all(one["jet_pt"] == other["jet_pt"])
    assert ak.all(one["eventNumber"] == np.arange(60))


def test_second_run_is_served_from_the_cache(qcd_file):
    mtime = os.stat(qcd_file).st_mtime_ns
    start = time.perf_counter()
    again = generate(QCD, qcd_file.parent, progress=False)
    assert again == qcd_file
    assert time.perf_counter() - start < 0.5
    assert os.stat(qcd_file).st_mtime_ns == mtime
    assert not list(qcd_file.parent.glob(".*.tmp"))


def test_jets_are_physical(qcd_file):
    jets = _arrays(qcd_file)
    assert len(JET_FLOATS) + len(JET_INTS) >= 20
    for name in JET_INTS:
        assert jets[f"jet_{name}"].type.content.content.primitive == "int32"
    pt = jets["jet_pt"]
    assert ak.all(pt > 20)
    assert ak.all(pt[:, :-1] >= pt[:, 1:]), "jets are written leading first"
    assert 2.0 < ak.mean(ak.num(pt)) < 6.0, "QCD dijets with pTHat > 100 GeV give a few jets per event"
    flat = {name: ak.to_numpy(ak.flatten(jets[f"jet_{name}"])).astype(np.float64) for name in JET_FLOATS + JET_INTS}
    species = sum(flat[f"m{s}Energy"] for s in ("ChargedHadron", "NeutralHadron", "Photon", "Electron", "Muon"))
    np.testing.assert_allclose(species, flat["E"], rtol=1e-4)
    assert np.all(flat["E"] >= flat["pt"])
    assert np.all((flat["EMFrac"] >= 0) & (flat["EMFrac"] <= 1 + 1e-6))
    assert np.all(flat["N90Constituents"] >= 1)
    assert np.all(flat["N90Constituents"] <= flat["mChargedMultiplicity"] + flat["mNeutralMultiplicity"])
    assert np.all(flat["mPhotonMultiplicity"] <= flat["mNeutralMultiplicity"])
    assert np.all((flat["ptD"] > 0) & (flat["ptD"] <= 1 + 1e-6))
    assert np.all(flat["LeadingConstituentPt"] <= flat["pt"] * (1 + 1e-5))
    assert 0.4 < flat["ActiveArea"].mean() < 0.6, "anti-kt R=0.4 jets have an area near pi R^2 = 0.50"
    assert np.all(flat["Width"] >= 0) and np.all(flat["Width"] < 0.4)


def test_zprime_350_dijet_mass_peaks_near_its_mass(zprime_file):
    varset = load_varset("generated")
    table = load_jets(zprime_file, varset)
    mass = dijet_mass(table.columns, table.event, table.rank, varset.four_momentum)
    peak, width = peak_and_width(mass)
    assert 300 < peak < 360, "FSR and out-of-cone losses put the peak a little below 350 GeV"
    assert 10 < width < 60


def test_unknown_process_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="valid choices: qcd, zprime"):
        generate(Sample("ttbar", 10), tmp_path, progress=False)

"""The loader: chunked reading, event index and rank, cache, and its error messages."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import uproot

from hpcsweep.data import cache_jets, load_jets, load_varset, open_cache
from hpcsweep.data.read import DISCRETE_LIMIT, file_checksum
from hpcsweep.errors import UserError
from tests.helpers import write_tree


def test_chunked_read_equals_reading_at_once(qcd_file):
    varset = load_varset("generated")
    whole = load_jets(qcd_file, varset, step_size=10**9)
    chunked = load_jets(qcd_file, varset, step_size=37)
    assert len(whole) > 1000
    np.testing.assert_array_equal(whole.matrix(), chunked.matrix())
    np.testing.assert_array_equal(whole.event, chunked.event)
    np.testing.assert_array_equal(whole.rank, chunked.rank)
    assert [c.removed for c in whole.cuts] == [c.removed for c in chunked.cuts]
    assert whole.matrix().dtype == np.float32


def test_rank_orders_jets_by_pt_within_their_event(qcd_file):
    table = load_jets(qcd_file, load_varset("generated"))
    pt = table.columns["pt"]
    for event in np.unique(table.event)[:200]:
        rows = np.flatnonzero(table.event == event)
        ranks = table.rank[rows]
        assert len(set(ranks)) == len(ranks)
        assert np.all(np.diff(pt[rows][np.argsort(ranks)]) <= 0)


def test_leading_only_keeps_one_jet_per_event(qcd_file):
    varset = load_varset("generated")
    full = load_jets(qcd_file, varset)
    leading = load_jets(qcd_file, varset, leading_only=True)
    assert len(np.unique(leading.event)) == len(leading)
    assert np.all(leading.rank == 0)
    np.testing.assert_array_equal(leading.matrix(), full.matrix()[full.rank == 0])
    total = sum(len(jets) for jets in uproot.open(qcd_file)["events"]["jet_pt"].array(library="np"))
    for table in (full, leading):  # every jet is either kept or counted by exactly one cleaning step
        assert len(table) + sum(c.removed for c in table.cuts) == total
    assert leading.cuts[1].name == "leading jet only" and leading.cuts[1].removed > len(leading)


def test_cache_is_memory_mapped_and_written_once(qcd_file, tmp_path):
    varset = load_varset("generated")
    folder = cache_jets(qcd_file, varset, tmp_path, step_size=50)
    cached = open_cache(folder)
    direct = load_jets(qcd_file, varset)
    assert isinstance(cached.columns["pt"], np.memmap)
    np.testing.assert_array_equal(cached.matrix(), direct.matrix())
    np.testing.assert_array_equal(cached.event, direct.event)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["files"][0]["sha256"] == file_checksum(qcd_file)
    assert meta["n_jets"] == len(direct)
    other = cache_jets(qcd_file, varset, tmp_path / "other", step_size=10**9)
    assert json.loads((other / "meta.json").read_text())["checksum"] == meta["checksum"], "the content checksum ignores chunking"
    stamp = os.stat(folder / "meta.json").st_mtime_ns
    assert cache_jets(qcd_file, varset, tmp_path) == folder
    assert os.stat(folder / "meta.json").st_mtime_ns == stamp
    assert cache_jets(qcd_file, varset, tmp_path, leading_only=True) != folder


def test_flat_per_jet_tree_ranks_jets_within_events(tmp_path):
    path = write_tree(
        tmp_path / "flat.root",
        "jets",
        {
            "eventNumber": np.array([5, 5, 5, 9, 9], dtype=np.int64),
            "pt": np.array([30.0, 90.0, 50.0, 25.0, 40.0], dtype=np.float32),
            "eta": np.zeros(5, dtype=np.float32),
            "phi": np.zeros(5, dtype=np.float32),
            "E": np.array([31.0, 95.0, 52.0, 26.0, 41.0], dtype=np.float32),
        },
    )
    table = load_jets(path, load_varset("fourvec"), step_size=2)
    assert table.event.tolist() == [0, 0, 0, 1, 1], "events are numbered in order of appearance"
    assert table.rank.tolist() == [2, 0, 1, 1, 0]


def test_missing_branch_names_the_variable_and_the_nearest_branches(tmp_path):
    path = write_tree(tmp_path / "typo.root", "jets", {"jet_ptt": [[30.0]], "jet_eta": [[0.1]], "jet_phi": [[0.2]], "jet_E": [[40.0]]})
    with pytest.raises(UserError) as error:
        load_jets(path, load_varset("fourvec"))
    message = str(error.value)
    assert "variable 'pt'" in message and "jet_ptt" in message and "\n" not in message


def test_missing_file_lists_the_files_that_exist(tmp_path):
    write_tree(tmp_path / "there.root", "jets", {"pt": np.ones(2, dtype=np.float32)})
    with pytest.raises(UserError, match="no such data file.*there.root"):
        load_jets(tmp_path / "nothere.root", load_varset("fourvec"))


def test_several_trees_need_a_choice(tmp_path):
    with uproot.recreate(tmp_path / "two.root") as handle:
        handle.mktree("a", {"pt": np.float32}).extend({"pt": np.ones(1, dtype=np.float32)})
        handle.mktree("b", {"pt": np.float32}).extend({"pt": np.ones(1, dtype=np.float32)})
    with pytest.raises(UserError, match=r"several trees \(a, b\); choose one with data.tree"):
        load_jets(tmp_path / "two.root", load_varset("fourvec"))
    with pytest.raises(UserError, match="no tree or RNTuple 'c'; in the file: a, b"):
        load_jets(tmp_path / "two.root", load_varset("fourvec"), tree="c")


def test_cms_pf_jet_branches_and_outlier_cuts(tmp_path):
    cms24 = load_varset("cms24")
    prefix = "recoPFJets_ak5PFJets__RECO.obj."
    jets_per_event = [[100.0, 9000.0], [50.0]]  # the 9 TeV jet is an outlier
    branches = {}
    for variable in cms24.variables:
        values = [[1.0 for _ in event] for event in jets_per_event]
        if variable.name == "pt_":
            values = jets_per_event
        if variable.name == "mass_":
            values = [[10.0, 20.0], [900.0]]  # the 900 GeV mass is an outlier
        branches[prefix + variable.branches[0]] = values
    path = write_tree(tmp_path / "aod.root", "Events", branches)
    table = load_jets(path, cms24)
    assert len(table) == 1 and table.columns["pt_"].tolist() == [100.0]
    assert {c.name: c.removed for c in table.cuts} == {"finite values": 0, "pt < 8000 GeV": 1, "mass < 800 GeV": 1, "declared positive": 0}
    assert len(load_jets(path, load_varset("cms19")).names) == 19


def test_missing_values_of_parquet_are_counted_per_variable(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"pt": [30.0, None, 50.0, 60.0], "eta": [0.1, 0.2, np.nan, 0.4], "phi": [0.0] * 4, "E": [31.0, 41.0, 51.0, 61.0]})
    frame.to_parquet(tmp_path / "holes.parquet")
    table = load_jets(tmp_path / "holes.parquet", load_varset("fourvec"))
    assert len(table) == 2 and table.cuts[0].removed == 2 and table.cuts[0].by_variable == {"pt": 1, "eta": 1}


def test_a_continuous_variable_declared_discrete_is_refused(tmp_path):
    varset = load_varset({**load_varset("fourvec").mapping(), "name": "wrong"} | {"variables": [
        {"name": "pt", "positive": True, "discrete": True}, {"name": "eta"}, {"name": "phi"}, {"name": "E", "positive": True}]})  # fmt: skip
    values = np.linspace(20, 500, 3000, dtype=np.float32)
    path = write_tree(tmp_path / "many.root", "jets", {"pt": values, "eta": values * 0, "phi": values * 0, "E": values})
    with pytest.raises(UserError, match=r"variable 'pt' is declared discrete .* more than 1,000 distinct values: it is continuous"):
        cache_jets(path, varset, tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir()), "nothing is cached"


@pytest.mark.parametrize("distinct", [DISCRETE_LIMIT, DISCRETE_LIMIT + 1])
def test_the_discrete_check_read_in_chunks_answers_as_the_whole_column_does(tmp_path, distinct):
    """The check keeps the distinct values seen so far, chunk after chunk, never the column: it must give the whole
    column's answer, also where no chunk alone holds more than the limit's values, right at the limit."""
    varset = load_varset({**load_varset("fourvec").mapping(), "name": "counts"} | {"variables": [
        {"name": "pt", "positive": True, "discrete": True}, {"name": "eta"}, {"name": "phi"}, {"name": "E", "positive": True}]})  # fmt: skip
    values = np.random.default_rng(2).permutation(np.repeat(np.arange(20, 20 + distinct, dtype=np.float32), 3))
    path = write_tree(tmp_path / "counts.root", "jets", {"pt": values, "eta": values * 0, "phi": values * 0, "E": values})
    continuous = len(np.unique(values)) > DISCRETE_LIMIT  # the answer of the whole column at once
    for step in (10**9, 250):  # one chunk; 13 chunks of at most 250 distinct values each
        if continuous:
            with pytest.raises(UserError, match=r"variable 'pt' is declared discrete .* more than 1,000 distinct values"):
                load_jets(path, varset, step_size=step)
        else:
            np.testing.assert_array_equal(np.unique(load_jets(path, varset, step_size=step).columns["pt"]), np.unique(values))


def test_a_file_that_is_neither_root_nor_parquet_is_named_as_such(tmp_path):
    (tmp_path / "jets.csv").write_text("pt,eta\n1,2\n")
    with pytest.raises(UserError, match=r"jets.csv: neither a ROOT nor a Parquet file \(it starts with b'pt,e'\)"):
        load_jets(tmp_path / "jets.csv", load_varset("fourvec"))


def _fourvec_jets(path, **replace) -> object:
    """A flat tree of 5,000 jets (jet_pt, jet_eta, jet_phi, jet_E) with some branches replaced."""
    rng = np.random.default_rng(1)
    pt = rng.uniform(20, 500, 5000).astype(np.float32)
    branches = {
        "jet_pt": pt,
        "jet_eta": rng.uniform(-2, 2, 5000).astype(np.float32),
        "jet_phi": np.zeros(5000, np.float32),
        "jet_E": 2 * pt,
    }
    return write_tree(path, "jets", branches | replace)


def test_a_variable_that_is_nan_in_every_jet_is_refused_naming_it_and_the_file(tmp_path):
    path = _fourvec_jets(tmp_path / "empty_eta.root", jet_eta=np.full(5000, np.nan, np.float32))
    with pytest.raises(UserError) as error:
        cache_jets(path, load_varset("fourvec"), tmp_path / "cache")
    message = str(error.value)
    assert "empty_eta.root: variable 'eta' (branch jet_eta) is NaN or inf in every one of the 5,000 jets" in message and "\n" not in message
    assert not list((tmp_path / "cache").iterdir()), "nothing is cached"


def test_cuts_that_leave_fewer_than_two_jets_are_refused_naming_the_cut(tmp_path):
    path = _fourvec_jets(tmp_path / "soft.root")
    varset = load_varset({**load_varset("fourvec").mapping(), "cuts": [{"name": "very hard", "keep": "pt > 1000"}]})
    with pytest.raises(UserError, match=r"soft.root: the cleaning leaves 0 of the 5,000 jets \(at least 2 .*removed by very hard: 5,000"):
        cache_jets(path, varset, tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir()), "nothing is cached"


def test_a_float32_max_sentinel_is_refused_and_the_cut_it_suggests_removes_it(tmp_path):
    eta = np.random.default_rng(2).uniform(-2, 2, 5000).astype(np.float32)
    eta[[10, 20]] = [np.finfo(np.float32).max, -1e20]  # FLT_MAX marks a missing value in some ntuples
    path = _fourvec_jets(tmp_path / "sentinel.root", jet_eta=eta)
    varset = load_varset("fourvec")
    with pytest.raises(UserError) as error:
        cache_jets(path, varset, tmp_path / "cache")
    message = str(error.value)
    assert "sentinel.root: variable 'eta' (branch jet_eta) has |value| >= 1e18 in 2 jets (largest 3.403e+38)" in message, message
    assert not list((tmp_path / "cache").iterdir()), "nothing is cached"
    suggested = re.search(r'\{drop: "(.*)"\}', message).group(1)
    cut = load_varset({**varset.mapping(), "cuts": [{"name": "missing eta", "drop": suggested}]})
    table = open_cache(cache_jets(path, cut, tmp_path / "cache"))
    assert len(table) == 4998 and {c.name: c.removed for c in table.cuts}["missing eta"] == 2

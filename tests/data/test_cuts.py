"""Cleaning cuts: declarative per variable set, applied in GeV, each one's removals counted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hpcsweep.data import load_jets, load_varset
from hpcsweep.data.read import evaluate_cut
from hpcsweep.data.varset import varset_names
from hpcsweep.errors import UserError
from tests.helpers import write_tree

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


def test_a_broken_cut_names_the_cut_and_the_variables():
    base = load_varset("fourvec")
    with pytest.raises(UserError, match=r"cut 'typo': unknown variable 'ptt' \(did you mean pt\?\); variables: pt, eta, phi, E"):
        load_varset({**base.mapping(), "cuts": [{"name": "typo", "keep": "ptt > 50"}]})


# --- cuts are data, not code ------------------------------------------------------------------------
# The two payloads of the security probe (issue 22): a shell command through the globals of a method, and a file
# written by a DataFrame method. Both ran with pandas' eval; neither may now get as far as an evaluation.
PAYLOADS = [
    "pt < 0 or pt.__class__.__init__.__globals__.get('__builtins__').get('exec')(\"import os; os.system('touch MARK')\")",
    "pt.to_csv('MARK')",
]
ESCAPES = [
    ("__import__('os').system('touch MARK')", "a call of '.system'"),
    ("__import__('os') == 0", "a call of '__import__'"),
    ("pt.__class__", "attribute access '.__class__'"),
    ("(pt).__class__.__mro__", "attribute access"),
    ("pt.values", "attribute access '.values'"),
    ("abs.__self__", "attribute access '.__self__'"),
    ("eval('1') > 0", "a call of 'eval'"),
    ("exec('x=1')", "a call of 'exec'"),
    ("open('MARK', 'w')", "a call of 'open'"),
    ("getattr(pt, 'to_csv')('MARK')", "a call"),
    ("pt[0] > 1", "a subscript"),
    ("(lambda: 1)() > 0", "a call"),
    ("(lambda x: x)", "a lambda"),
    ("[x for x in (1,)]", "a comprehension"),
    ("{x for x in (1,)}", "a comprehension"),
    ("sum(x for x in (1,)) > 0", "a call of 'sum'"),
    ("'abc' < pt", "a str constant"),
    ("f'{pt}' == 1", "an f-string"),
    ("(y := 1) > 0", "an assignment"),
    ("pt if eta else phi", "a conditional expression"),
    ("pt in (1, 2)", "'in' and 'is'"),
    ("__builtins__ > 0", "name '__builtins__' is not allowed"),
    ("os > 0", "unknown variable 'os'"),
    ("pt << 2 > 0", "the operator LShift"),
    ("abs(pt, eta) > 0", "abs\\(\\) takes 1 plain argument"),
    ("max(pt, key=eta) > 0", "max\\(\\) takes 2 plain arguments"),
    ("abs(*pt) > 0", "abs\\(\\) takes 1"),
    ("pt > 1; import os", "not a valid expression"),
    ("(" * 300 + "pt" + ")" * 300 + " > 0", "not a valid expression|nested more than"),
    ("-" * 100 + "pt > 0", "nested more than"),
    ("pt > 0 & " * 300 + "pt > 0", "characters long"),
    ("pt + " * 250 + "pt > 0", "parts; at most"),
]


@pytest.mark.parametrize("expression", PAYLOADS)
def test_the_probes_payloads_are_refused_before_anything_runs(expression, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = load_varset("fourvec")
    with pytest.raises(UserError, match=r"cut 'evil': (attribute access|a call)"):
        load_varset({**base.mapping(), "cuts": [{"name": "evil", "keep": expression}]})
    with pytest.raises(UserError, match="is not allowed in a cut"):
        evaluate_cut({"pt": np.ones(3, np.float32)}, expression, "fourvec")
    assert not (tmp_path / "MARK").exists()


@pytest.mark.parametrize(("expression", "said"), ESCAPES)
def test_escapes_are_refused_in_one_line_naming_the_cut_and_the_construct(expression, said, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = load_varset("fourvec")
    with pytest.raises(UserError, match=said) as refused:
        load_varset({**base.mapping(), "cuts": [{"name": "c", "keep": expression}]})
    message = str(refused.value)
    assert "\n" not in message and "cut 'c'" in message and len(message) < 400
    assert not (tmp_path / "MARK").exists()


def test_every_shipped_cut_parses_and_selects_as_pandas_did():
    """The expressions of the shipped sets give the same rows as pandas' eval (the old evaluator) on odd values."""
    rng = np.random.default_rng(0)
    for name in varset_names():
        varset = load_varset(name)
        n = 4000
        frame = pd.DataFrame({v: rng.choice([-1.0, -0.05, 0.0, 0.05, 0.5, 0.8, 0.95, 2.0, 2.8, 4.5, 5.0, 130.0, 400.0, 9000.0], n).astype(np.float32)
                              for v in varset.names})  # fmt: skip
        frame.iloc[:5] = np.nan
        for cut in varset.cuts:
            ours = evaluate_cut({c: frame[c].to_numpy() for c in frame}, cut.expression, name)
            theirs = np.asarray(frame.eval(cut.expression, engine="python"), dtype=bool)
            assert np.array_equal(ours, theirs), (name, cut.expression)
            assert 0 < ours.sum() < n, f"{name}: {cut.expression} selects something and not everything"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("pt > 1 & eta < 0", [False, False, True, False]),  # pandas: & binds looser than the comparisons
        ("(pt > 1) | (eta < 0)", [True, True, True, True]),
        ("~(pt > 1)", [True, False, False, False]),
        ("not pt > 1 and eta < 0", [True, False, False, False]),
        ("0 < pt < 3", [True, True, False, False]),
        ("sqrt(pt**2) == abs(pt) & log(exp(pt)) > 0.5", [True, True, True, True]),
        ("where(eta < 0, pt, -pt) > 0", [True, False, True, False]),
        ("min(pt, 2) + max(eta, 0) >= 2", [False, True, True, True]),
        ("pt % 2 == 0 and log10(100) == 2", [False, True, False, True]),
        ("9**9**9 > 0", [True, True, True, True]),  # numbers are floats: inf, not a computation without end
        ("pt / 0 > 1", [True, True, True, True]),
    ],
)
def test_allowed_constructs_evaluate_elementwise(expression, expected):
    columns = {"pt": np.array([1.0, 2.0, 3.0, 4.0]), "eta": np.array([-1.0, 1.0, -1.0, 1.0])}
    assert evaluate_cut(columns, expression, "test").tolist() == expected

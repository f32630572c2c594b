"""Are these the jets a model learned? The profile refuses files in other units or conventions and lets signals differ."""

from __future__ import annotations

import numpy as np
import pytest

from hpcsweep.data import load_jets, load_varset
from hpcsweep.data.profile import compare, profile_of
from hpcsweep.errors import UserError


@pytest.fixture(scope="module")
def halves(qcd_file) -> tuple[np.ndarray, np.ndarray]:
    """The session's Pythia jets (24 variables, GeV), split in two: training jets and others of the same kind."""
    x = load_jets(qcd_file, load_varset("generated")).matrix().astype(np.float64)
    return x[::2], x[1::2]


def _with(x: np.ndarray, name: str, change) -> np.ndarray:
    out = x.copy()
    column = load_varset("generated").names.index(name)
    out[:, column] = change(out[:, column])
    return out


def test_jets_of_the_same_kind_pass_without_a_note(halves):
    train, other = halves
    assert compare(profile_of(train, load_varset("generated").names), other, load_varset("generated"), "other.root") == []


@pytest.mark.parametrize(
    ("name", "change", "expected"),
    [
        ("pt", lambda v: v * 1000, ["other.root", "'pt' is spread", "MeV where GeV was expected", "convert it"]),
        ("m", lambda v: v / 1000, ["'m' is spread 1/", "GeV where MeV was expected"]),
        ("phi", lambda v: np.mod(v, 2 * np.pi), ["of angle 'phi' lie outside the training jets' range", "[0, 2pi)"]),
        ("eta", lambda v: np.zeros_like(v), ["'eta' is constant (0) where the training jets vary", "a wrong branch?"]),
    ],
)
def test_other_units_or_conventions_are_refused_naming_the_variable_both_medians_and_the_fix(halves, name, change, expected):
    train, other = halves
    varset = load_varset("generated")
    with pytest.raises(UserError) as refused:
        compare(profile_of(train, varset.names), _with(other, name, change), varset, "other.root")
    message = str(refused.value)
    assert all(part in message for part in expected) and "median" in message and "\n" not in message, message


def test_a_signal_may_differ_from_the_training_jets_its_differences_are_notes(halves):
    """Heavier jets, far outside the training range, and a constant multiplicity are physics, not a mistake."""
    train, other = halves
    varset = load_varset("generated")
    heavy = _with(_with(other, "pt", lambda v: v * 20), "mChargedMultiplicity", lambda v: np.zeros_like(v))
    notes = compare(profile_of(train, varset.names), heavy, varset, "signal.root")
    assert any(note.startswith("pt: spread 20x") for note in notes), notes
    assert compare({}, heavy, varset, "signal.root") == [], "a trial of an older hpcsweep has no profile: nothing to compare"

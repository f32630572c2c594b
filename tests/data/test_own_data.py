"""A physicist's own jets: a flat file of m, pt, eta, phi in MeV (RNTuple, TTree, Parquet), a variable set
next to the sweep file, tables of residual widths, a folder that grows and keeps data versions apart."""

from __future__ import annotations

import json
import os
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import pytest
import uproot

from hpcsweep.cli import main
from hpcsweep.data import cache_jets, load_jets, load_varset, open_cache
from hpcsweep.errors import UserError
from hpcsweep.store import read_attempts, read_summary, read_trial, scan
from tests.helpers import ATLAS4, write_flat


#: The variable set a user writes for their file: MeV in the file, GeV inside, m may be 0 or slightly negative.
def _sweep_text(source: Path, grid: str = "  lr: [1.0e-2, 3.0e-2]\n", extra: str = "") -> str:
    return (
        f"name: mine\ndata: {{source: {source}, varset: atlas4.yaml}}\n"
        "model: {hidden: [32, 32], latent: 3}\ntrain: {epochs: 15, batch_size: 128}\ncodec: {steps: 20}\n"
        f"grid:\n{grid}dispatch: {{executor: debug}}\nevaluation: {{timing_repeats: 1, tolerance: 0.02}}\n{extra}"
    )


@pytest.fixture(scope="module")
def jets(qcd_file) -> dict[str, np.ndarray]:
    """Real simulated jets (the session's Pythia sample) as a user's file has them: m, pt, eta, phi in MeV,
    with a few massless jets and two slightly negative masses, as real reconstructed jets have."""
    table = load_jets(qcd_file, load_varset("generated"))
    columns = {name: np.asarray(table.columns[name], dtype=np.float32) for name in ("m", "pt", "eta", "phi")}
    columns["m"] = columns["m"] * 1000
    columns["pt"] = columns["pt"] * 1000
    columns["m"][[10, 20, 30, 40, 50]] = 0.0
    columns["m"][[60, 70]] = -0.5
    return columns


@pytest.fixture(scope="module")
def own(tmp_path_factory, jets) -> Path:
    """A folder as a user has it: their jet files, their variable set, and their sweep file."""
    folder = tmp_path_factory.mktemp("own")
    (folder / "atlas4.yaml").write_text(ATLAS4)
    for kind, name in (("rntuple", "jets.root"), ("ttree", "jets_ttree.root"), ("parquet", "jets.parquet")):
        write_flat(folder / name, jets, kind)
    return folder


def test_the_same_jets_read_alike_from_an_rntuple_a_ttree_and_parquet(own, jets):
    varset = load_varset(own / "atlas4.yaml")
    tables = [load_jets(own / name, varset) for name in ("jets.root", "jets_ttree.root", "jets.parquet")]
    for table in tables:
        np.testing.assert_array_equal(table.matrix(), tables[0].matrix())
    assert len(tables[0]) == len(jets["pt"]) - 2, "the two negative masses are cut"
    assert {c.name: c.removed for c in tables[0].cuts} == {"finite values": 0, "declared positive": 2}
    assert tables[0].cuts[-1].by_variable == {"m": 2}
    assert tables[0].matrix()[:, 1].max() < 5000, "MeV became GeV"
    checksums = {
        json.loads((cache_jets(own / n, varset, own / "cache") / "meta.json").read_text())["checksum"]
        for n in ("jets.root", "jets_ttree.root", "jets.parquet")
    }
    assert len(checksums) == 1, "the data version is the content, whatever the format"


def test_jagged_files_of_every_format_and_several_files_make_one_dataset(own, jets, tmp_path):
    events = np.repeat(np.arange(len(jets["pt"]) // 3 + 1), 3)[: len(jets["pt"])]
    counts = np.bincount(events)
    jagged = {k: ak.unflatten(v, counts) for k, v in jets.items()}
    with uproot.recreate(tmp_path / "rn.root") as handle:
        handle["events"] = jagged
    with uproot.recreate(tmp_path / "tt.root") as handle:
        handle.mktree("events", {k: v.type.content for k, v in jagged.items()}).extend(jagged)
    ak.to_parquet(ak.Array(jagged), tmp_path / "events.parquet")
    half = len(jets["pt"]) // 2
    for i, rows in enumerate((slice(0, half), slice(half, None))):
        pd.DataFrame({k: v[rows] for k, v in jets.items()}).to_parquet(tmp_path / f"part{i}.parquet")
    varset = load_varset(own / "atlas4.yaml")
    tables = [load_jets(tmp_path / name, varset) for name in ("rn.root", "tt.root", "events.parquet")]
    for table in tables:
        np.testing.assert_array_equal(table.matrix(), tables[0].matrix())
        np.testing.assert_array_equal(table.event, tables[0].event)
    assert set(tables[0].rank.tolist()) == {0, 1, 2}, "jets are ranked in their events"
    whole = load_jets(own / "jets.parquet", varset)
    parts = load_jets(str(tmp_path / "part*.parquet"), varset)
    np.testing.assert_array_equal(parts.matrix(), whole.matrix())
    assert len(np.unique(parts.event)) == len(parts), "events are numbered across files"


@pytest.fixture(scope="module")
def swept(own, tmp_path_factory) -> dict[str, Path]:
    """A tiny sweep on each format, from a sweep file beside the variable set."""
    results = {}
    for name in ("jets.root", "jets_ttree.root", "jets.parquet"):
        folder = tmp_path_factory.mktemp("swept")
        sweep = own / f"mine_{Path(name).stem}.yaml"
        sweep.write_text(_sweep_text(own / name))
        assert main(["sweep", str(sweep), "--results", str(folder)]) == 0
        results[name] = folder / "mine"
    return results


@pytest.mark.slow
def test_a_tiny_sweep_on_each_format_tables_residual_widths_and_fractions(swept):
    for name, folder in swept.items():
        residuals = pd.read_csv(folder / "tables" / "residuals_per_latent.csv", dtype=str)
        assert residuals["Variable"].tolist() == ["m", "pt", "eta", "phi"], name
        widths = residuals["best: 68 % half-width"]
        assert widths[0].endswith(" %") and widths[1].endswith(" %") and not widths[2].endswith("%"), "relative in %, angles absolute"
        for column in ("best: within 1 %", "median: within 1 %"):
            fractions = residuals[column].str.rstrip(" %").astype(float)
            assert ((fractions >= 0) & (fractions <= 100)).all()
        assert residuals["Tolerance"].tolist() == ["2 %", "2 %", "0.02", "0.02"], "relative for m and pt, absolute for the angles"
        within = residuals["best: within tolerance"].str.rstrip(" %").astype(float)
        assert (within >= residuals["best: within 1 %"].str.rstrip(" %").astype(float)).all(), "a wider tolerance holds more jets"
        data = pd.read_csv(folder / "tables" / "data_versions.csv", dtype=str)
        assert data["Files"].tolist() == [name] and "declared positive: 2 (m 2)" in data["Removed by cleaning"][0]


@pytest.mark.slow
def test_a_file_trial_records_what_was_read_not_generator_settings(swept, own):
    folder = swept["jets.root"]
    summary = next(iter(scan(folder)[0].values()))
    data = summary["config"]["data"]
    assert not {"process", "events", "zprime_mass", "generator_seed"} & set(data), data
    assert data["source"] == str(own / "jets.root") and data["varset"]["name"] == "atlas4"
    assert summary["config"]["data_version"] and summary["provenance"]["data_tree"] == "jets"
    assert summary["provenance"]["data_files"][0]["format"] == "ROOT"
    record = read_trial(folder / "trials" / f"{summary['trial_id']}.h5", weights=False)
    assert record.varset["name"] == "atlas4" and [v["name"] for v in record.varset["variables"]] == ["m", "pt", "eta", "phi"]
    assert 0 < record.metrics["within_1pct"]["pt"] <= 1 and record.metrics["tolerance"]["pt"] == 0.02


@pytest.mark.slow
def test_inspect_drafts_a_variable_set_that_runs_after_one_edit(own, tmp_path, capsys):
    draft = tmp_path / "drafted.yaml"
    assert main(["data", "inspect", str(own / "jets.root"), "--draft-varset", str(draft)]) == 0
    out = capsys.readouterr().out
    assert "RNTuple 'jets'" in out and "flat (one entry per jet)" in out
    text = draft.read_text()
    assert "m: typical value" in text and "MeV?" in text, "magnitudes hint at MeV, nothing is converted"
    mapping = load_varset(draft).mapping()
    kinds = {v["name"]: (v["residual"], v["positive"]) for v in mapping["variables"]}
    assert kinds == {"m": ("relative", True), "pt": ("relative", True), "eta": ("absolute", False), "phi": ("phi", False)}
    assert mapping["four_momentum"] == {"pt": "pt", "eta": "eta", "phi": "phi", "mass": "m"}
    edited = text.replace("  positive: true\n", "  positive: true\n  unit_scale: 0.001\n  unit: GeV\n")  # the one edit: confirm MeV
    assert edited != text
    draft.write_text(edited)
    sweep = tmp_path / "drafted_sweep.yaml"
    sweep.write_text(_sweep_text(own / "jets.root").replace("atlas4.yaml", draft.name).replace("name: mine", "name: drafted"))
    assert main(["sweep", str(sweep), "--results", str(tmp_path / "results")]) == 0
    assert len(scan(tmp_path / "results" / "drafted")[0]) == 2
    assert main(["data", "inspect", str(own / "jets.root"), "--draft-varset", str(draft)]) == 2, "a draft never overwrites a file"


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: os.stat(p).st_mtime_ns for p in (folder / "trials").glob("*.h5")}


@pytest.mark.slow
def test_a_finished_sweep_grows_by_a_latent_dimension_and_a_seed_running_only_the_new_trials(own, tmp_path, capsys):
    sweep = own / "growing.yaml"
    sweep.write_text(_sweep_text(own / "jets.root").replace("name: mine", "name: growing"))
    results = tmp_path / "results"
    assert main(["sweep", str(sweep), "--results", str(results)]) == 0
    before = _mtimes(results / "growing")
    assert len(before) == 2
    sweep.write_text(
        _sweep_text(own / "jets.root", grid="  lr: [1.0e-2, 3.0e-2]\n  z: [3, 2]\n  seed: [0, 1]\n").replace("name: mine", "name: growing")
    )
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "8 trials; 2 finished, 0 in flight, 0 failed or lost to retry, 6 new" in out
    after = _mtimes(results / "growing")
    assert len(after) == 8 and {k: after[k] for k in before} == before, "the first trials were not retrained"
    assert main(["status", str(sweep), "--results", str(results)]) == 0
    assert "growing: 8 trials, 8 of 8 finished" in capsys.readouterr().out


@pytest.mark.slow
def test_a_signal_added_to_a_finished_sweep_is_evaluated_on_the_next_run_without_training_again(own, tmp_path, capsys):
    sweep = own / "signals.yaml"
    sweep.write_text(_sweep_text(own / "jets.root").replace("name: mine", "name: signals"))
    results = tmp_path / "results"
    assert main(["sweep", str(sweep), "--results", str(results), "--no-review"]) == 0
    trials = sorted((results / "signals" / "trials").glob("*.h5"))
    attempts = {t.stem: len(read_attempts(results / "signals", t.stem)) for t in trials}
    sweep.write_text(sweep.read_text().replace("evaluation: {", f"evaluation: {{signals: [{own / 'jets.parquet'}], "))
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--results", str(results)]) == 0
    assert "0 new, 2 done to evaluate on new signals" in capsys.readouterr().out
    for trial in trials:
        record = read_trial(trial, weights=False)
        assert 0 <= record.evaluation["jets"]["anomaly"]["auc"] <= 1 and record.metrics["anomaly"]["jets"], "AUC as at training"
        assert len(read_attempts(results / "signals", trial.stem)) == attempts[trial.stem], "not trained again"
    assert "auc_jets" in pd.read_csv(results / "signals" / "trials.csv").columns
    assert main(["sweep", str(sweep), "--results", str(results), "--no-review"]) == 0
    assert "2 finished, 0 in flight, 0 failed or lost to retry, 0 new ->" in capsys.readouterr().out


@pytest.mark.slow
def test_a_replaced_data_file_trains_anew_and_the_tables_keep_the_versions_apart(own, jets, tmp_path, capsys):
    data = write_flat(tmp_path / "jets.root", jets, "rntuple")
    (tmp_path / "atlas4.yaml").write_text(ATLAS4)
    sweep = tmp_path / "mine.yaml"
    sweep.write_text(_sweep_text(data))
    results = tmp_path / "results"
    assert main(["sweep", str(sweep), "--results", str(results)]) == 0
    first = _mtimes(results / "mine")
    half = {k: v[: len(v) // 2] for k, v in jets.items()}
    write_flat(data, half, "rntuple")  # the same path, other jets
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--results", str(results), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("pending") == 2 and "the folder also holds 2 trial files not of this definition (2 of another data version)" in out
    assert main(["sweep", str(sweep), "--results", str(results)]) == 0
    everything = _mtimes(results / "mine")
    assert len(everything) == 4 and {k: everything[k] for k in first} == first, "the old version's trials stay"
    versions = pd.read_csv(results / "mine" / "tables" / "data_versions.csv", dtype=str)
    assert versions["In the tables"].tolist() == ["no", "yes"] and versions["Trial files"].tolist() == ["2", "2"]
    assert int(versions["Jets"][1].replace(",", "")) < int(versions["Jets"][0].replace(",", ""))
    trials = pd.read_csv(results / "mine" / "trials.csv")
    assert len(trials) == 2 and trials["data_version"].nunique() == 1
    old = results / "mine" / "trials" / next(iter(first))  # a trial of the replaced jets
    capsys.readouterr()
    assert main(["evaluate", str(old)]) == 2, "an old version's trial: its validation split is gone with its jets"
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"hpcsweep: error: {old}: the trial's data changed since it was trained") and "--source FILE" in err


@pytest.mark.slow
def test_tables_follow_the_reference_space_when_the_grid_varies_normalisation(own, tmp_path, capsys):
    sweep = tmp_path / "norms.yaml"
    text = _sweep_text(own / "jets.root", grid="  data.normalisation: [minmax, custom+standard]\n  lr: [1.0e-2, 3.0e-2]\n")
    sweep.write_text(text.replace("varset: atlas4.yaml", f"varset: {own / 'atlas4.yaml'}").replace("name: mine", "name: norms"))
    results = tmp_path / "results"
    assert main(["sweep", str(sweep), "--results", str(results)]) == 0
    summaries = scan(results / "norms")[0]
    by_loss = min(summaries, key=lambda t: summaries[t]["metrics"]["best_val_mse"])
    by_reference = min(summaries, key=lambda t: summaries[t]["metrics"]["reference_mse"])
    assert summaries[by_loss]["config"]["data"]["normalisation"] == "minmax", "min-max losses look small: another space"
    assert by_loss != by_reference, "the raw losses disagree with the reference ranking"
    best = pd.read_csv(results / "norms" / "tables" / "best_per_latent.csv", dtype=str)
    assert best["data.normalisation"].tolist() == [summaries[by_reference]["config"]["data"]["normalisation"]]
    assert best["Reference MSE"].tolist() == [f"{summaries[by_reference]['metrics']['reference_mse']:.3e}"]
    by_norm = pd.read_csv(results / "norms" / "tables" / "by_data_normalisation.csv", dtype=str)
    assert set(by_norm["data.normalisation"]) == {"minmax", "custom+standard"}
    sweep.write_text(sweep.read_text() + "rank_by: val_loss\n")
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--results", str(results), "--dry-run"]) == 0
    assert main(["sweep", str(sweep), "--results", str(results)]) == 0
    out = capsys.readouterr()
    assert "ranks on val_loss, but its grid varies data.normalisation" in out.out + out.err


@pytest.mark.parametrize(
    "case, expected",
    [
        ("unknown varset path", ["data.varset", "variable set nosuch.yaml: no such file"]),
        ("variable the file lacks", ["has no branch for variable 'mass'", "nearest existing branches", "m"]),
        ("neither ROOT nor Parquet", ["neither a ROOT nor a Parquet file", "docs/data.md"]),
        ("eta declared positive", ["variable 'eta' is declared positive", "are negative", "remove positive: true"]),
        ("generator key for a file", ["data.events describes generated samples", "data.max_jets"]),
        ("a variable NaN in every jet", ["variable 'm'", "is NaN or inf in every one of the"]),
        ("a missing-value sentinel", ["variable 'pt'", "in 2 jets", "abs(pt) >= 1e18"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(own, jets, tmp_path, capsys, case, expected):
    text = _sweep_text(own / "jets.root").replace("varset: atlas4.yaml", f"varset: {own / 'atlas4.yaml'}")
    if case == "unknown varset path":
        text = text.replace(str(own / "atlas4.yaml"), "nosuch.yaml")
    elif case == "variable the file lacks":
        (tmp_path / "wrong.yaml").write_text(ATLAS4.replace("{name: m,", "{name: mass,").replace("mass: m}", "mass: mass}"))
        text = text.replace(str(own / "atlas4.yaml"), "wrong.yaml")
    elif case == "neither ROOT nor Parquet":
        pd.DataFrame({"m": [1.0], "pt": [2.0]}).to_csv(tmp_path / "jets.csv")
        text = text.replace(str(own / "jets.root"), str(tmp_path / "jets.csv"))
    elif case == "eta declared positive":
        (tmp_path / "eta.yaml").write_text(ATLAS4.replace("{name: eta,", "{name: eta, positive: true,"))
        text = text.replace(str(own / "atlas4.yaml"), "eta.yaml")
    elif case == "a variable NaN in every jet":
        write_flat(tmp_path / "nan.root", jets | {"m": np.full_like(jets["m"], np.nan)}, "ttree")
        text = text.replace(str(own / "jets.root"), str(tmp_path / "nan.root"))
    elif case == "a missing-value sentinel":  # FLT_MAX where a value is missing
        write_flat(
            tmp_path / "max.root",
            jets | {"pt": np.where(np.isin(np.arange(len(jets["pt"])), [5, 9]), np.finfo(np.float32).max, jets["pt"])},
            "ttree",
        )
        text = text.replace(str(own / "jets.root"), str(tmp_path / "max.root"))
    else:
        text = text.replace("data: {", "data: {events: 5000, ")
    sweep = tmp_path / "bad.yaml"
    sweep.write_text(text)
    results = tmp_path / "results"
    before = sorted(p.name for p in (Path(os.environ["HPCSWEEP_DATA"]) / "cache").iterdir())
    assert main(["sweep", str(sweep), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar of a read, if the file was read
    assert err.startswith("hpcsweep: error:"), err
    for part in expected:
        assert part in err, err
    assert not results.exists()
    assert sorted(p.name for p in (Path(os.environ["HPCSWEEP_DATA"]) / "cache").iterdir()) == before, "no cache was left"


@pytest.mark.slow
def test_evaluate_a_file_trial_on_a_signal_file_or_refuse_a_generated_one_or_one_in_other_units(swept, own, jets, capsys):
    folder = swept["jets.root"]
    trial = sorted((folder / "trials").glob("*.h5"))[0]
    stamp = os.stat(trial).st_mtime_ns
    assert main(["evaluate", str(trial), "--signal", "350"]) == 2
    err = capsys.readouterr().err
    assert "trial of file data" in err and "--signal FILE" in err and len(err.strip().splitlines()) == 1
    assert os.stat(trial).st_mtime_ns == stamp, "nothing written"
    gev = own / "jets_in_gev.parquet"  # the same jets in GeV, read with the set's unit_scale 0.001: 1000x too small
    pd.DataFrame({k: v / 1000 if k in ("m", "pt") else v for k, v in jets.items()}).to_parquet(gev)
    assert main(["evaluate", str(trial), "--signal", str(gev)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar of its read
    assert err.startswith("hpcsweep: error:") and "compared with the training jets of trial" in err and "GeV where MeV was expected" in err
    assert os.stat(trial).st_mtime_ns == stamp, "nothing written"
    assert main(["evaluate", str(trial), "--signal", str(own / "jets.parquet")]) == 0
    printed = capsys.readouterr().out
    record = read_trial(trial, weights=False)
    auc = record.evaluation["jets"]["anomaly"]["auc"]
    assert 0.3 < auc < 0.7, "the training file's own jets against its validation jets: no separation"
    assert record.metrics["anomaly"]["jets"]["auc"] == auc and f"AUC {auc:.3f}" in printed and " pass)" in printed
    assert main(["evaluate", str(trial), "--source", str(own / "jets.parquet")]) == 0  # the same label, not as a signal
    again = read_trial(trial, weights=False)
    assert "anomaly" not in again.evaluation["jets"] and "jets" not in again.metrics["anomaly"], "metrics follow the evaluations"
    assert main(["evaluate", str(trial), "--signal", str(own / "jets.parquet")]) == 0
    record = read_trial(trial, weights=False)
    every_jet = len(open_cache(cache_jets(own / "jets.parquet", load_varset(own / "atlas4.yaml"), own / "cache")))
    assert record.evaluation["jets"]["n_jets"] == every_jet, "every jet of the signal file is evaluated"
    assert list(read_summary(trial)["evaluations"]) == ["jets"], "the summary names it: tables need not open the file"
    assert main(["aggregate", str(folder)]) == 0
    evaluations = pd.read_csv(folder / "tables" / "evaluations.csv", dtype=str)
    assert evaluations["Evaluation"].tolist() == ["jets"] and evaluations["Source"].tolist() == ["jets.parquet"]


def test_a_signal_file_in_other_units_stops_the_sweep_before_any_trial_runs(own, jets, tmp_path, capsys):
    """Not an AUC of 1.000 for every trial: one line naming the signal, the variable, both medians and the cause."""
    gev = tmp_path / "signal_in_gev.parquet"
    pd.DataFrame({k: v / 1000 if k in ("m", "pt") else v for k, v in jets.items()}).to_parquet(gev)
    sweep = tmp_path / "mine.yaml"
    sweep.write_text(
        _sweep_text(own / "jets.parquet")
        .replace("evaluation: {", f"evaluation: {{signals: [{gev}], ")
        .replace("atlas4.yaml", str(own / "atlas4.yaml"))
    )
    results = tmp_path / "results"
    assert main(["sweep", str(sweep), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("hpcsweep: error: evaluation.signals: signal_in_gev") and "GeV where MeV was expected" in err, err
    assert not list(results.rglob("*.h5")), "no trial ran"


def test_a_variable_set_file_with_a_typo_names_the_file_the_variable_and_the_valid_keys(tmp_path):
    (tmp_path / "typo.yaml").write_text(
        ATLAS4.replace("positive: true, transform: {kind: log10, offset", "postive: true, transform: {kind: log10, offset")
    )
    with pytest.raises(UserError) as error:
        load_varset("typo.yaml", tmp_path)
    message = str(error.value)
    assert "typo.yaml" in message and "variable 'm'" in message and "did you mean positive" in message and "\n" not in message

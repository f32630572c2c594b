"""The command line: help everywhere, data inspection, and clean errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hpcsweep.cli import main


def test_top_level_help_lists_the_commands():
    done = subprocess.run([sys.executable, "-m", "hpcsweep", "--help"], capture_output=True, text=True, check=True)
    for command in ("sweep", "status", "aggregate", "data"):
        assert command in done.stdout


@pytest.mark.parametrize(
    "command",
    [["sweep"], ["status"], ["aggregate"], ["data"], ["data", "generate"], ["data", "info"], ["data", "varsets"], ["data", "inspect"]],
)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*command, "--help"])
    assert stop.value.code == 0
    assert "usage: hpcsweep " + " ".join(command) in capsys.readouterr().out


def test_data_info_describes_a_signal_sample(zprime_file, capsys):
    assert main(["data", "info", str(zprime_file)]) == 0
    out = capsys.readouterr().out
    assert "variable set 'generated' (24 variables)" in out
    assert "dijet mass of the two leading jets" in out and "peak" in out


def test_data_varsets_lists_every_set(capsys):
    assert main(["data", "varsets"]) == 0
    out = capsys.readouterr().out
    for name in ("atlas27", "cms19", "cms24", "fourvec", "generated"):
        assert name in out


def test_data_info_on_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "missing.root")]) == 2
    assert capsys.readouterr().err.strip().startswith("hpcsweep: error:")


def test_aggregate_without_trials_says_what_to_run(tmp_path, capsys):
    assert main(["aggregate", "nothing", "--results", str(tmp_path)]) == 2
    assert "run 'hpcsweep sweep nothing' first" in capsys.readouterr().err


def test_a_dry_run_shows_no_trial_id_before_the_data_is_read_and_the_real_ones_after(qcd_file, tmp_path, monkeypatch, capsys):
    """An id is the hash of a config with its data's version: a dry run before the data is read must not print ids
    that the sweep will not use."""
    import shutil

    from tests.helpers import QCD

    monkeypatch.setenv("HPCSWEEP_DATA", str(tmp_path / "data"))  # a fresh data root: nothing read here yet
    sweep = tmp_path / "dr.yaml"
    sweep.write_text(
        f"name: dr\ndata: {{events: {QCD.events}, generator_seed: {QCD.seed}}}\nmodel: {{hidden: [16]}}\n"
        "train: {epochs: 1, batch_size: 256}\ncodec: {steps: 5}\ngrid: {z: [2, 3]}\nevaluation: {signals: [], timing_repeats: 1}\n"
        "dispatch: {executor: debug}\n"
    )
    command = ["sweep", str(sweep), "--results", str(tmp_path / "results")]
    assert main([*command, "--dry-run"]) == 0
    before = capsys.readouterr().out
    assert before.count("(once read)") == 2 and "known once the sweep has" in before.replace("\n", " ")
    (tmp_path / "data" / "generated").mkdir(parents=True)
    shutil.copyfile(qcd_file, tmp_path / "data" / "generated" / qcd_file.name)  # the sample, not simulated again
    assert main([*command, "--no-review"]) == 0
    ids = sorted(p.stem for p in (tmp_path / "results" / "dr" / "trials").glob("*.h5"))
    capsys.readouterr()
    assert main([*command, "--dry-run", "--wide"]) == 0
    after = capsys.readouterr().out
    assert len(ids) == 2 and all(trial_id in after for trial_id in ids) and "(once read)" not in after

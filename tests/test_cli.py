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

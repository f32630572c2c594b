"""What the terminal shows: tables that fit 80 columns (full with --wide), a labelled bar, running trials' epochs."""

from __future__ import annotations

import contextlib
import io

from rich.console import Console

from hpcsweep.cli import main
from hpcsweep.store import progress_path, read_progress, trial_path
from hpcsweep.terminal import TrialProgress, TrialsView, labelled_bar, print_table
from hpcsweep.trial import run_trial
from tests.helpers import trial_spec

THESIS = ["Latent space dimensions", "Batch size", "Learning rate", "Weight decay", "Validation loss (own normalisation)",
          "Reference MSE", "Epoch of best", "Training time", "PCA reference MSE", "PCA / AE"]  # fmt: skip
ROW = [18, 256, "1e-02", "1e-04", "1.588e-03", "1.450e-03", 92, "0:01:19", "2.314e-03", "1.60"]


def _printed(width: int, **options) -> str:
    console = Console(file=io.StringIO(), width=width)
    print_table("Best performing networks per latent dimension", THESIS, [ROW, ROW], console=console, **options)
    return console.file.getvalue()


def test_a_thesis_table_fits_80_columns_with_short_headings_named_below_it():
    text = _printed(80)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert "1.588e-03" in text and "0:01:19" in text, "numbers are not folded"
    assert "z: Latent space dimensions" in text and "ref MSE: Reference MSE" in text
    assert "Latent space dimensions" not in _printed(80, legend=False)


def test_a_table_too_wide_for_short_headings_becomes_a_block_per_row_and_splits_no_number_or_word():
    """The compressors table (13 columns) in a pipe or log at 80 columns: every cell whole on one line."""
    headings = ["Latent space dimensions", "kind", "rate_lambda", "bytes/jet at 1 %", "latents (B/jet)", "residuals (B/jet)",
                "compressor (B/jet)", "x SZ3", "largest error / bound", "trial", "reference MSE", "custom+standard", "epochs"]  # fmt: skip
    rows = [[16, "ae", "1.000e-01", "11.52", "0.36", "10.91", "0.24", "0.539", "0.998", "27dc9aa4e506", "1.111e-02", "yes", 40],
            [0, "codec", "", "11.20", "0.00", "10.96", "0.24", "0.524", "0.997", "2102e6a5d4ff", "", "no", 0]]  # fmt: skip
    console = Console(file=io.StringIO(), width=80)
    print_table("compressors", headings, rows, console=console)
    lines = console.file.getvalue().splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    for row in rows:
        for heading, cell in zip(headings, row, strict=True):
            if cell != "":
                assert any(heading in line and line.rstrip().endswith(f" {cell}") for line in lines), (heading, cell)
    assert _printed(80).count("1.588e-03") == 2, "a table that fits with short headings keeps its rows"


def test_a_wide_terminal_and_wide_get_the_full_headings():
    assert "Validation loss (own normalisation)" in _printed(200).splitlines()[2]
    assert "z: Latent" not in _printed(200)
    wide = io.StringIO()
    print_table("t", THESIS, [ROW], wide=True, console=Console(file=wide, width=80))
    assert "Latent space dimensions" in wide.getvalue() and "z: Latent" not in wide.getvalue(), "--wide ignores the terminal"


def test_status_bar_is_labelled():
    console = Console(file=io.StringIO(), width=80)
    labelled_bar("finished", 6, 8, console)
    assert console.file.getvalue().startswith("finished ") and "6/8 (75 %)" in console.file.getvalue()


def test_the_driver_shows_each_running_trials_epoch_and_best_loss():
    console = Console(file=io.StringIO(), width=120)
    with TrialsView(4, console=console) as view:
        view.update(1, [TrialProgress("abc z=18", 37, 100, 1.6e-3, 35)])
        (row,) = [task for task in view.progress.tasks if "abc z=18" in task.description]
        assert (row.completed, row.total) == (37, 100) and "best 0.0016 (ep 35)" in row.fields["note"]
        view.update(2, [])
        assert len(view.progress.tasks) == 1, "a trial that ended leaves the view"
    shown = console.file.getvalue()
    assert "trials finished" in shown and "2/4" in shown


def test_a_running_trial_beats_its_epoch_and_best_loss_and_clears_it_when_done(qcd_file, tmp_path):
    """The heartbeat the driver reads (on any host: it lives in the results folder) is there after every epoch."""
    spec = trial_spec(qcd_file, tmp_path / "results", train={"epochs": 3})
    seen = []

    def report(epoch: int, val_loss: float) -> bool:
        seen.append(read_progress(tmp_path / "results", [spec.trial_id])[spec.trial_id])
        return False

    run_trial(spec, threads=1, log=lambda _: None, report=report)
    assert [(b["epoch"], b["epochs"]) for b in seen] == [(1, 3), (2, 3), (3, 3)]
    assert seen[-1]["best_val"] == min(b["best_val"] for b in seen)
    assert trial_path(tmp_path / "results", spec.trial_id).exists() and not progress_path(tmp_path / "results", spec.trial_id).exists()


def test_every_command_has_a_description(capsys):
    for command in (["status"], ["aggregate"], ["data"], ["data", "info"], ["sweep"], ["evaluate"]):
        with contextlib.suppress(SystemExit):
            main([*command, "--help"])
        usage, _, rest = capsys.readouterr().out.partition("\n\n")
        assert rest and not rest.startswith(("positional arguments", "options")), f"{command} has no description"

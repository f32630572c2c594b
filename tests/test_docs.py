"""Docs that run: every shell, Python and YAML block of README.md and docs/*.md is run (or validated) here as written,
on small generated inputs in a work folder of its own, or is listed in NOT_RUN with the reason. A new block that is
neither fails `test_every_block_is_run_or_says_why_not`."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import uproot
import yaml

from hpcsweep.cli import main
from hpcsweep.config import load_sweep
from hpcsweep.data import load_jets, load_varset
from tests.helpers import QCD

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Lines of shell blocks that no test runs, and why.
NOT_RUN = {
    "make test": "the test suite itself (.ci/run runs it)",
    "make test-fast": "the fast tests, this one among them (a test cannot run the suite it is part of)",
    "make lint": "ruff and mypy: CI's lint step, not a test",
    "make slurm-up": "starts a SLURM cluster: .ci/run does, and tests/sweep/test_slurm.py runs sweeps on it",
    "make sweep LATENT=18 EXECUTOR=slurm": "on the cluster: tests/sweep/test_slurm.py",
    ".venv/bin/hpcsweep sweep default --executor slurm --site lunarc-aurora --partition snic": "a site that is not here",
    ".venv/bin/hpcsweep status default": "on the cluster: tests/sweep/test_slurm.py",
    "make slurm-down": "stops the cluster CI started",
    "hpcsweep compress 'runs/*.root' --model best.h5 -o runs_hpcz/ --executor slurm --site local --pack 2": "on the cluster: "
    "tests/compress/test_dataset.py (4 files, 2 per array task)",
    "make sweep SWEEP=sweeps/jets.yaml": "the user's own file (/data/atlas/jets.root); the same target runs on the tiny sweeps here",
    "make report SWEEP=jets": "the sweep of the line before; `make report` runs here",
    "hpcsweep sweep default --epochs 50": "a changed definition, which a finished folder refuses (tests/sweep/test_faults.py)",
    "hpcsweep sweep default --set lr=1e-3 --set data.events=2000": "a changed definition, as above (tests/test_cli.py sets keys)",
    "hpcsweep sweep huge --allow-large": "a grid past max_trials, run on purpose: hours of trials (tests/test_cli.py counts it)",
    "pip install -e '.[tracking]'": "installs packages (make dev installs the dev extra, which holds them)",
    "hpcsweep export-tracking results/default --to mlflow -o /scratch/me/mlruns-default": "writes to a site's scratch disk",
    "tensorboard --logdir results/<sweep>/tensorboard": "a web UI that runs until stopped",
    "pip install mlflow==3.17.2": "installs a package",
    "mlflow ui --backend-store-uri sqlite:///results/<sweep>/mlruns/mlflow.db": "a web UI that runs until stopped",
    "pip install optuna-dashboard": "installs a package",
    "optuna-dashboard results/<sweep>/optuna.journal": "a web UI that runs until stopped",
}
#: Python blocks another test runs: docs/notebook.md's, in order, on a real sweep.
RUN_ELSEWHERE = {"docs/notebook.md": "tests/review/test_notebook.py"}


def _blocks(language: str) -> list[tuple[str, int, str]]:
    """(file relative to the root, line, text) of every ```language block."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in re.finditer(rf"^```{language}\n(.*?)^```", text, re.S | re.M):
            found.append((str(path.relative_to(ROOT)), text[: match.start()].count("\n") + 1, match.group(1)))
    return found


def _commands(block: str) -> list[str]:
    """The command lines of a shell block, without their comments."""
    lines = (line.split("  #")[0].split("\t#")[0].strip() for line in block.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_every_block_is_run_or_says_why_not():
    """Shell lines: run by `test_the_shell_blocks_run_as_written` or in NOT_RUN; Python and YAML blocks: each has a
    test below (by file), or another test runs it."""
    shell = {line for _, _, block in _blocks("bash") for line in _commands(block)}
    assert shell - set(NOT_RUN) == set(RUN_HERE), f"shell lines neither run nor listed: {sorted(shell - set(NOT_RUN) - set(RUN_HERE))}"
    assert set(NOT_RUN) <= shell, f"NOT_RUN lists lines no doc has any more: {sorted(set(NOT_RUN) - shell)}"
    python = {(name, line) for name, line, _ in _blocks("python") if name not in RUN_ELSEWHERE}
    assert python == set(PYTHON_RUN), f"Python blocks without a runner: {sorted(python - set(PYTHON_RUN))}"
    assert {(name, line) for name, line, _ in _blocks("yaml")} == set(YAML_CHECKED), "YAML blocks without a check"
    assert not {language for language in re.findall(r"^```(\w+)$", "\n".join(p.read_text() for p in DOCS), re.M)} - {
        "bash",
        "python",
        "yaml",
    }, "a block of another language: give it a runner"


# --- the work folder: a user's folder with tiny sweeps and a jet file --------------------------------------------------
TINY = (
    f"data: {{events: {QCD.events}, generator_seed: {QCD.seed}}}\nmodel: {{hidden: [32]}}\ntrain: {{epochs: 3, batch_size: 256}}\n"
    "codec: {steps: 20}\nevaluation: {signals: [], timing_repeats: 1}\n"
)


@pytest.fixture(scope="module")
def work(tmp_path_factory, qcd_file) -> Path:
    """sweeps/default.yaml and sweeps/compress.yaml as tiny sweeps of the session's Pythia jets, and jets.root (those
    jets), in a folder the commands run from, as a user runs them from the project's root."""
    folder = tmp_path_factory.mktemp("docs")
    (folder / "sweeps").mkdir()
    (folder / "sweeps" / "default.yaml").write_text(f"name: default\n{TINY}grid: {{z: [18], lr: [1.0e-2]}}\n")
    (folder / "sweeps" / "compress.yaml").write_text(
        f"name: compress\n{TINY}rank_by: bytes\npoints:\n  - {{model.kind: codec}}\n  - {{model.latent: 4, train.rate_lambda: 1.0e-2}}\n"
    )
    shutil.copyfile(qcd_file, folder / "jets.root")
    (folder / "runs").mkdir()
    for run in ("run1.root", "run2.root"):  # a dataset of files, for 'compress runs/*.root'
        shutil.copyfile(qcd_file, folder / "runs" / run)
    return folder


def _run(line: str, folder: Path) -> None:
    """One line as written: hpcsweep commands through the CLI; make targets as the Makefile runs them (the hpcsweep
    commands `make -n` prints for them, from this folder)."""
    if line.startswith("make "):
        dry = ["make", "-s", "-n", "-o", ".venv/.installed", "-f", str(ROOT / "Makefile")]  # the venv is this one
        printed = subprocess.run([*dry, *shlex.split(line)[1:]], cwd=folder, capture_output=True, text=True, check=True).stdout
        commands = [shlex.split(c)[1:] for c in printed.replace("\\\n", " ").splitlines() if c.startswith(".venv/bin/hpcsweep ")]
        assert commands, f"{line}: make runs no hpcsweep command ({printed!r})"
    else:
        commands = [shlex.split(line.removeprefix(".venv/bin/"))[1:]]
    for argv in commands:
        assert main(argv) == 0, f"{line}: hpcsweep {' '.join(argv)}"


#: The shell lines run here, in this order (each block's lines in order; blocks in an order where each finds what it needs).
RUN_HERE = [
    "make sweep LATENT=18",
    "hpcsweep sweep default --latent 18",
    "hpcsweep sweep default --executor debug --workers 1 --threads 2",
    "hpcsweep sweep default --dry-run",
    "hpcsweep sweep default --no-review",
    "hpcsweep sweep default --wait-for-lease",
    "hpcsweep sweep default --retry-failed",
    "make aggregate",
    "hpcsweep aggregate default",
    "hpcsweep aggregate default --detail",
    "hpcsweep aggregate default --no-detail",
    "make report",
    "make rerun-best SEEDS=3",
    "hpcsweep aggregate default --pdf",
    "hpcsweep export default --z 18 -o z18.h5",
    "hpcsweep score jets.root --model z18.h5 -o jets_scored.root",
    "hpcsweep export-tracking default --to tensorboard",
    "hpcsweep export-tracking default --to mlflow",
    "make sweep SWEEP=compress",
    "hpcsweep export compress --best bytes -o best.h5",
    "hpcsweep compress jets.root --model best.h5 --max-error 1% -o jets.hpcz",
    "hpcsweep decompress jets.hpcz --model best.h5 -o jets_back.root",
    "hpcsweep compress 'runs/*.root' --model best.h5 -o runs_hpcz/",
    "hpcsweep decompress runs_hpcz/manifest.json --model best.h5 -o runs_back/",
    "make inspect FILE=jets.root DRAFT=sweeps/jets_vars.yaml",
]


@pytest.mark.slow
def test_the_shell_blocks_run_as_written(work, monkeypatch):
    """Each line exits 0 and leaves what the docs say it leaves."""
    monkeypatch.chdir(work)
    for line in RUN_HERE:
        _run(line, work)
    default = work / "results" / "default"
    assert (default / "report" / "index.html").is_file() and list((default / "figures").glob("*.pdf"))
    assert (default / "tensorboard").is_dir() and (default / "mlruns" / "mlflow.db").is_file()
    assert "anomaly_score" in uproot.open(work / "jets_scored.root")["events"].keys(filter_name="anomaly_*")
    assert uproot.open(work / "jets_back.root")["events"].num_entries == uproot.open(work / "jets.root")["events"].num_entries
    assert [entry["output"] for entry in json.loads((work / "runs_hpcz" / "manifest.json").read_text())["files"]] == [
        "run1.hpcz",
        "run2.hpcz",
    ]
    assert sorted(p.name for p in (work / "runs_back").glob("*.root")) == ["run1.root", "run2.root"]
    assert load_varset(work / "sweeps" / "jets_vars.yaml").names, "the drafted variable set loads"


# --- Python blocks ---------------------------------------------------------------------------------------------------
def _python(name: str, line: int) -> str:
    return next(text for file, at, text in _blocks("python") if (file, at) == (name, line))


def _challenge_lines(jets: pd.DataFrame) -> list[str]:
    """Events in the challenge format: id;process;weight;MET;METphi; then 'kind,E,pt,eta,phi' per object, in MeV, each
    line ending in ';' as the real files do; the leading jet of every third event a b-jet, and an electron per event."""
    lines = []
    for number, (_, group) in enumerate(jets.groupby("event")):
        objects = []
        for rank, jet in enumerate(group.itertuples()):
            kind = "b" if rank == 0 and number % 3 == 0 else "j"
            objects.append(f"{kind},{jet.E * 1000:.1f},{jet.pt * 1000:.1f},{jet.eta:.4f},{jet.phi:.4f}")
        objects.append("e-,25000.0,24000.0,0.5,1.0")
        lines.append(f"{number};ttbar;1.0;30000.0;0.1;" + ";".join(objects) + ";\n")
    return lines


@pytest.fixture(scope="module")
def generated_jets(qcd_file) -> pd.DataFrame:
    table = load_jets(qcd_file, load_varset("generated"))
    names = table.names
    frame = pd.DataFrame({name: table.matrix()[:, names.index(name)] for name in ("E", "pt", "eta", "phi", "m")})
    frame["event"] = np.asarray(table.event)
    return frame


def test_the_csv_conversion_writes_parquet_an_rntuple_and_a_ttree(generated_jets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    generated_jets.to_csv("jets.csv", index=False)
    exec(_python("docs/data.md", 140), {})
    assert len(pd.read_parquet("jets.parquet")) == len(generated_jets)
    with uproot.open("jets.root") as handle:
        assert handle["jets_tree"].num_entries == len(generated_jets) and "jets" in handle


def test_the_challenge_converter_reads_lines_ending_in_a_semicolon_and_keeps_b_jets(generated_jets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = _challenge_lines(generated_jets)
    Path("challenge.csv").write_text("".join(lines))
    exec(_python("docs/data.md", 154), {})
    jets = pd.read_parquet("jets.parquet")
    assert len(jets) == len(generated_jets), "every jet, b-jets included; the electrons left out"
    assert set(jets.columns) >= {"event", "kind", "E", "pt", "eta", "phi", "m"} and set(jets["kind"]) == {"j", "b"}
    np.testing.assert_allclose(jets["pt"].to_numpy() / 1000, generated_jets["pt"].to_numpy(), rtol=1e-5)


@pytest.mark.slow
def test_the_results_api_block_runs_from_the_folder_that_holds_results(work, monkeypatch):
    monkeypatch.chdir(work)
    if not (work / "results" / "default").is_dir():
        assert main(["sweep", "default", "--no-review"]) == 0
    namespace: dict = {}
    exec(_python("docs/results.md", 69), namespace)
    assert len(namespace["sweep"].trials()) >= 1


PYTHON_RUN = {("docs/data.md", 140), ("docs/data.md", 154), ("docs/results.md", 69)}


# --- YAML blocks: each is what the docs say it is (a sweep file, a fragment of one, a variable set) --------------------
def _yaml(name: str, line: int) -> dict:
    return yaml.safe_load(next(text for file, at, text in _blocks("yaml") if (file, at) == (name, line)))


def _validated(mapping: dict, folder: Path) -> None:
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(mapping))
    load_sweep(path)


YAML_CHECKED = {
    ("docs/sweeps.md", 6): "a whole sweep file",
    ("docs/sweeps.md", 98): "points and grid, onto the sweep file above",
    ("docs/compression.md", 107): "codec, evaluation and rank_by, onto it",
    ("docs/review.md", 125): "review, onto it",
    ("docs/slurm.md", 82): "a search, onto it",
    ("docs/data.md", 63): "a drafted variable set",
    ("docs/data.md", 108): "a sweep file of one's own file, with that variable set beside it",
}


def test_every_yaml_block_is_a_valid_sweep_file_fragment_or_variable_set(generated_jets, tmp_path):
    base = _yaml("docs/sweeps.md", 6)
    _validated(base, tmp_path)
    without_grid = {key: value for key, value in base.items() if key not in ("grid", "points")}
    for name, line in (("docs/sweeps.md", 98), ("docs/compression.md", 107), ("docs/review.md", 125), ("docs/slurm.md", 82)):
        _validated(without_grid | _yaml(name, line), tmp_path)
    drafted = _yaml("docs/data.md", 63)
    (tmp_path / "jets_vars.yaml").write_text(yaml.safe_dump(drafted))
    assert load_varset(tmp_path / "jets_vars.yaml").name == "jets_vars"
    own = _yaml("docs/data.md", 108)
    with uproot.recreate(tmp_path / "jets.root") as handle:  # a file with the drafted set's branches, at the doc's path's place
        handle[drafted.get("tree", "jets")] = {
            branch: generated_jets["pt"].to_numpy() for v in drafted["variables"] for branch in v.get("branches", [v["name"]])[:1]
        }
    own["data"]["source"] = str(tmp_path / "jets.root")
    _validated(own, tmp_path)

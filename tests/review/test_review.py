"""Reviewing a sweep: best/median selection, comparisons, seed stability, and the HTML report."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hpcsweep import allocation
from hpcsweep.cli import main
from hpcsweep.config import TrialConfig, validate_sweep
from hpcsweep.errors import UserError
from hpcsweep.review import aggregate
from hpcsweep.review.stability import outliers, rerun_best_sweep, stability_table
from hpcsweep.review.tables import best_and_median, comparison_table, trials_frame, varied_axes
from hpcsweep.store import TrialRecord, read_trial, scan, trial_path, write_trial
from hpcsweep.sweep import expand, kept_sweep


def _summary(trial_id: str, latent: int, loss: float | None, state: str = "done", seed: int = 0, **config) -> dict:
    trial = TrialConfig.model_validate(
        {"model": {"latent": latent, **config.get("model", {})}, "train": {"seed": seed, "lr": config.get("lr", 1e-2)}}
    )
    return {
        "trial_id": trial_id,
        "state": state,
        "config": trial.model_dump(mode="json"),
        "metrics": {"best_val_mse": loss, "reference_mse": loss, "best_epoch": 3, "train_time_s": 1.0, "pca_val_mse": 1.0},
        "provenance": {"data_checksum": "abc"},
    }


def test_best_and_median_with_odd_counts_even_counts_and_ties():
    summaries = {
        # z=4: three done trials (odd) and a failed one, which is never picked
        "a4": _summary("a4", 4, 0.3), "b4": _summary("b4", 4, 0.1), "c4": _summary("c4", 4, 0.2), "d4": _summary("d4", 4, None, "failed"),
        # z=8: four done trials (even): the median is the worse of the two middle ones; a tie at the top goes to the smaller id
        "y8": _summary("y8", 8, 0.1), "x8": _summary("x8", 8, 0.1), "w8": _summary("w8", 8, 0.5), "v8": _summary("v8", 8, 0.4),
    }  # fmt: skip
    best, median = best_and_median(trials_frame(summaries))
    assert best["trial_id"].tolist() == ["b4", "x8"]
    assert median["trial_id"].tolist() == ["c4", "v8"]
    single = best_and_median(trials_frame({"only": _summary("only", 2, 0.7)}))
    assert single[0]["trial_id"].tolist() == single[1]["trial_id"].tolist() == ["only"], "one trial is its own median"


def test_a_varied_axis_gets_its_comparison_table():
    summaries = {
        "ae": _summary("ae", 4, 0.2, model={"kind": "ae"}),
        "ae2": _summary("ae2", 4, 0.4, model={"kind": "ae"}, lr=3e-2),
        "vae": _summary("vae", 4, 0.9, model={"kind": "vae", "beta": 1e-3}),
    }
    assert "model.kind" in varied_axes(summaries) and "train.lr" not in varied_axes(summaries), "lr is in the main tables"
    table = comparison_table(trials_frame(summaries), "model.kind")
    assert table.to_dict("records") == [
        {"model.kind": "ae", "z=4 best": "2.000e-01", "z=4 median": "4.000e-01"},
        {"model.kind": "vae", "z=4 best": "9.000e-01", "z=4 median": "9.000e-01"},
    ]


def test_outliers_are_runs_above_one_and_a_half_times_the_median():
    assert outliers(np.array([1.0, 1.1, 0.9, 2.0, 1.0])).tolist() == [False, False, False, True, False]
    assert outliers(np.array([1.0, 1.5, 1.0])).tolist() == [False, False, False], "exactly 1.5x the median is not flagged"
    assert outliers(np.array([1.0, np.nan, 1.0])).tolist() == [False, True, False], "a diverged run is flagged"


def test_stability_table_summarises_each_config_over_its_seeds():
    losses = {0: 1.0e-3, 1: 1.1e-3, 2: 0.9e-3, 3: 1.0e-3, 4: 2.1e-3}  # the thesis' five reruns: one ended at twice the loss
    summaries = {f"s{seed}": _summary(f"s{seed}", 18, loss, seed=seed) for seed, loss in losses.items()}
    summaries["other"] = _summary("other", 12, 5e-3)  # run once: not a stability group
    (row,) = stability_table(summaries).to_dict("records")
    assert row["Runs"] == 5 and row["Seeds"] == "0 1 2 3 4"
    assert float(row["Mean"]) == pytest.approx(np.mean(list(losses.values())), rel=1e-3)
    assert float(row["Std"]) == pytest.approx(np.std(list(losses.values()), ddof=1), rel=1e-2)
    assert (row["Min"], row["Max"]) == ("9.000e-04", "2.100e-03")
    assert row["Runs > 1.5x median (seed)"] == "4"


def test_the_child_sweep_of_rerun_best_holds_the_original_trials_and_new_seeds():
    parent = validate_sweep({"name": "p", "grid": {"z": [4, 8], "lr": [1e-2, 3e-2], "wd": [0, 1e-4]}}, "test")
    trials = expand(parent)
    picks = [trials[1], trials[6]]  # say the best at z=4 and at z=8
    child = validate_sweep(rerun_best_sweep({"name": "p"}, [t.model_dump(mode="json") for t in picks], 1, 3), "test")
    assert child.name == "p-top1-seeds3"
    children = expand(child)
    assert len(children) == 2 * 4
    ids = {t.identity() for t in children}
    assert {t.identity() for t in picks} <= ids, "the original seed's trials are the parent's: reused, not retrained"
    assert sorted({t.train.seed for t in children}) == [0, 1, 2, 3]
    with pytest.raises(UserError, match="points: is for grid sweeps"):
        validate_sweep({"name": "s", "search": "random", "budget": 2, "space": {"lr": [1e-2]}, "points": [{"z": 4}]}, "test")


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory, tiny_sweep) -> Path:
    """A copy of the session's tiny real sweep with its report: the results root."""
    folder = tmp_path_factory.mktemp("review") / "tiny"
    shutil.copytree(tiny_sweep, folder)
    results = folder / "results"
    assert main(["report", "tiny", "--results", str(results)]) == 0
    return results


FIGURES = {
    "loss_vs_latent",
    "grid_summary",
    "training_curves",
    "residuals_vs_latent",
    "timing_vs_latent",
    "rate_distortion",
    "roc",
    "compression",
}
PER_TRIAL = {"inputs", "residuals", "corner", "dijet"}


@pytest.mark.slow
def test_aggregate_writes_every_table_in_three_formats_and_every_figure_as_png(reviewed):
    folder = reviewed / "tiny"
    stems = {
        "best_per_latent",
        "median_per_latent",
        "residuals_per_latent",
        "baselines_per_latent",
        "compression_per_latent",
        "compressors",
        "rate_frontier",
        "anomaly_per_latent",
        "data_versions",
        "evaluations",
    }
    assert {p.name for p in (folder / "tables").iterdir()} == {f"{s}.{e}" for s in stems for e in ("md", "csv", "tex")}
    expected = FIGURES | {f"{stem}_z{z}" for stem in PER_TRIAL for z in (3, 6)}
    assert {p.name for p in (folder / "figures").glob("*.p*")} == {f"{s}.png" for s in expected}, "PDFs only when asked"
    assert "\\begin{table}" in (folder / "tables" / "best_per_latent.tex").read_text()
    compression = pd.read_csv(folder / "tables" / "compression_per_latent.csv")
    assert (compression["latent float16"] == 2 * compression["Latent space dimensions"]).all()
    compressors = pd.read_csv(folder / "tables" / "compressors.csv").set_index("compressor")
    ours = ["AE z=3, no rate term", "AE z=6, no rate term"]
    assert list(compressors.index) == [*ours, "float16", "SZ3", "ZFP", "fpzip", "mantissa + zstd"]
    bounded = [*ours, "SZ3", "ZFP", "fpzip", "mantissa + zstd"]
    assert (compressors.loc[bounded, "values within 1 %"] == "100.0 %").all()
    assert (compressors.loc[bounded, "bound on every value"] == "1 % (angles 0.01)").all()
    assert compressors.loc["float16", "bytes/jet"] == 48 and compressors.loc["float16", "bound on every value"] == "none"
    frontier = pd.read_csv(folder / "tables" / "rate_frontier.csv")
    assert len(frontier) == 2 and (frontier["latents (B/jet)"] > 0).all(), "per z the fewest-bytes trial's latents"


@pytest.mark.slow
def test_the_report_holds_every_table_figure_state_and_trial_link(reviewed):
    folder = reviewed / "tiny"
    page = (folder / "report" / "index.html").read_text()
    images = re.findall(r"<img src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == len(FIGURES) + 2 * len(PER_TRIAL) and all(len(i) > 1000 for i in images)
    for title in ("Best performing networks per latent dimension", "Median performing networks", "Compression of the best AE"):
        assert title in page
    assert "<h2 id='definition'>" in page and "lr: [1.0e-2, 3.0e-2]" in page
    assert "<td>done</td><td>4</td>" in page
    links = re.findall(r"href='\.\./trials/([0-9a-f]+)\.h5'", page)
    assert sorted(links) == sorted(scan(folder)[0]) and all((folder / "trials" / f"{i}.h5").exists() for i in links)
    assert "http://" not in page and "https://" not in page, "nothing is fetched from the internet"


@pytest.mark.slow
def test_rerun_best_reuses_the_originals_and_reports_stability(reviewed, capsys):
    assert main(["rerun-best", "tiny", "--top", "1", "--seeds", "2", "--results", str(reviewed)]) == 0
    child = reviewed / "tiny-top1-seeds2"
    summaries, _ = scan(child)
    assert len(summaries) == 2 * 3 and {s["state"] for s in summaries.values()} == {"done"}
    parent, _ = scan(reviewed / "tiny")
    reused = set(summaries) & set(parent)
    assert len(reused) == 2 and all(summaries[t]["metrics"] == parent[t]["metrics"] for t in reused)
    table = pd.read_csv(child / "tables" / "stability.csv", dtype=str)
    assert table["Runs"].tolist() == ["3", "3"] and table["Latent space dimensions"].tolist() == ["3", "6"]
    assert (child / "figures" / "stability_curves.png").stat().st_size > 10_000
    assert "Seed stability" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["rerun-best", "tiny", "--top", "1", "--seeds", "2", "--results", str(reviewed)]) == 0
    assert "6 finished, 0 in flight, 0 failed or lost to retry, 0 new" in capsys.readouterr().out, "a second call runs nothing"
    assert main(["report", "tiny", "--results", str(reviewed)]) == 0
    page = (reviewed / "tiny" / "report" / "index.html").read_text()
    assert "Seed stability of the best configs (sweep tiny-top1-seeds2)" in page, "the parent's report shows its reruns"
    assert "href='../../tiny-top1-seeds2/tables/stability.csv'" in page


def _copy_sweep(reviewed: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    shutil.copytree(reviewed / "tiny", folder, ignore=shutil.ignore_patterns("report", "tables"))  # figures kept: not redrawn
    return folder


@pytest.mark.slow
def test_a_missing_trial_file_is_shown_pending_in_a_partial_report(reviewed, tmp_path, capsys):
    folder = _copy_sweep(reviewed, tmp_path)
    removed = sorted((folder / "trials").glob("*.h5"))
    removed[0].unlink()  # ran, then its file was removed: lost
    removed[1].unlink()
    (folder / "attempts" / f"{removed[1].stem}.jsonl").unlink()  # never ran: pending
    assert main(["report", str(folder)]) == 0
    page = (folder / "report" / "index.html").read_text()
    assert "<td>done</td><td>2</td>" in page and "<td>lost</td><td>1</td>" in page and "<td>pending</td><td>1</td>" in page
    assert "<li>1 pending: never started" in page and "<li>1 lost: started, but" in page


@pytest.mark.slow
def test_a_sweep_without_finished_trials_gets_a_report_that_says_so(reviewed, tmp_path, capsys):
    folder = _copy_sweep(reviewed, tmp_path)
    for path in (folder / "trials").glob("*.h5"):
        record = read_trial(path)
        record.state, record.failure, record.error = "failed", "error", "RuntimeError: node on fire"
        write_trial(path, record)
    assert main(["report", str(folder)]) == 0
    assert "no finished trial yet: 4 failed" in capsys.readouterr().err
    page = (folder / "report" / "index.html").read_text()
    assert "no finished trial yet" in page and "<img" not in page and "<td>error</td>" in page


@pytest.mark.slow
def test_trial_files_not_of_the_definition_are_left_out_and_counted(reviewed, tmp_path):
    folder = _copy_sweep(reviewed, tmp_path)
    stranger = read_trial(sorted((folder / "trials").glob("*.h5"))[0])  # say, a smoke test with --epochs 3 into this folder
    stranger.trial_id = "0000stranger"
    stranger.config["train"]["epochs"] = 3
    write_trial(trial_path(folder, stranger.trial_id), stranger)
    review = aggregate(folder, plot=False)
    assert len(review.frame) == 4 and "0000stranger" not in set(review.frame["trial_id"])
    assert "the folder also holds 1 trial file not of this definition (1 of other configs)" in " ".join(review.warnings)
    versions = pd.read_csv(folder / "tables" / "data_versions.csv", dtype=str)
    assert versions["Trial files"].tolist() == ["5"] and versions["In the tables"].tolist() == ["yes"]


@pytest.mark.slow
def test_aggregate_never_asks_a_scheduler(reviewed, tmp_path, monkeypatch):
    """Aggregating needs the definition's trial ids, not their states: a trial without a file is not surveyed (which
    would ask squeue, or whether a pid lives) even with no scheduler that answers."""
    from hpcsweep.sweep import slurm
    from hpcsweep.sweep.backends import JobTeller

    folder = _copy_sweep(reviewed, tmp_path)
    sorted((folder / "trials").glob("*.h5"))[0].unlink()  # its state would be asked of the job that carried it

    def asked(*args: object, **kwargs: object) -> None:
        raise AssertionError("the scheduler was asked")

    for owner, name in ((JobTeller, "alive"), (JobTeller, "outcome"), (slurm, "_run")):
        monkeypatch.setattr(owner, name, asked)
    review = aggregate(folder, plot=False)
    assert len(review.frame) == 3 and not [w for w in review.warnings if "asked" in w]


@pytest.mark.slow
def test_reading_a_report_needs_no_weights(reviewed, monkeypatch):
    """Aggregation reads summaries and the best trials without their networks."""
    import hpcsweep.review.aggregator as review

    seen = []
    monkeypatch.setattr(review, "read_trial", lambda path, weights=True: seen.append(weights) or read_trial(path, weights))
    aggregate(reviewed / "tiny", plot=False)
    assert seen and not any(seen)


@pytest.mark.slow
def test_the_report_opens_in_headless_chromium_with_every_image_loaded(reviewed):
    """Debian's chromium through selenium; the full-page screenshot is kept in test-artifacts/ (or $HPCSWEEP_ARTIFACTS)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium chromium-driver; .ci/run does it)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=webdriver.ChromeService(executable_path=chromedriver), options=options)
    try:
        browser.get((reviewed / "tiny" / "report" / "index.html").resolve().as_uri())
        images = browser.execute_script("return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        assert len(images) == len(FIGURES) + 2 * len(PER_TRIAL)
        assert all(complete and width > 300 for _, complete, width in images), [i for i in images if not (i[1] and i[2] > 300)]
        headings = browser.execute_script("return Array.from(document.querySelectorAll('h3')).map(h => h.textContent)")
        assert any(h.startswith("Best performing networks per latent dimension, ranked by") for h in headings) and len(headings) >= 4
        rows = browser.execute_script("return document.querySelectorAll('#table-best-per-latent + p + table tr').length")
        assert rows == 3, "header and one row per latent dimension"
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1400, min(height, 20_000))
        artifacts = Path(os.environ.get("HPCSWEEP_ARTIFACTS", "test-artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(artifacts / "report.png"))
        assert (artifacts / "report.png").stat().st_size > 100_000
    finally:
        browser.quit()


@pytest.mark.slow
def test_reviewing_never_imports_torch(reviewed):
    import subprocess
    import sys

    code = f"import sys; from hpcsweep.cli import main; main(['report', {str(reviewed / 'review')!r}]); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().endswith("False"), done.stdout


@pytest.mark.slow
def test_a_trial_file_with_odd_anomaly_figures_does_not_stop_the_review(reviewed, tmp_path):
    """A trial file made elsewhere (crafted, or of another version) whose anomaly figures lack the background's size, or
    are not figures at all: the review is written, the table says '> ?' where it cannot say more."""
    folder = _copy_sweep(reviewed, tmp_path)
    paths = sorted((folder / "trials").glob("*.h5"))
    for i, path in enumerate(paths):
        record = read_trial(path)
        record.metrics["anomaly"] = ["not", "a", "mapping"] if i == 0 else {"zprime350": {"auc": 0.9, "rejection_at_50": None}}
        write_trial(path, record)
    table = aggregate(folder, detail="none").tables["anomaly_per_latent"][1]
    assert len(table) and set(table["rejection at 50 %"]) == {"> ?"} and set(table["AUC"]) == {"0.900"}


@pytest.mark.slow
def test_figures_are_redrawn_only_when_their_trials_change(reviewed, tmp_path):
    folder = _copy_sweep(reviewed, tmp_path)  # with its figures and what they were drawn from
    figures = folder / "figures"

    def stamps() -> dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for p in figures.glob("*.png")}

    before = stamps()
    aggregate(folder)
    assert stamps() == before, "nothing changed: nothing redrawn"
    best = pd.read_csv(folder / "trials.csv").sort_values("val_mse").iloc[0]
    path = trial_path(folder, best["trial_id"])
    write_trial(path, read_trial(path))  # the same trial, rewritten
    aggregate(folder)
    redrawn = {name for name, mtime in stamps().items() if mtime != before[name]}
    z = int(best["latent"])
    compressors = pd.read_csv(reviewed / "tiny" / "tables" / "compressors.csv")
    sweep_figures = FIGURES - ({"compression"} if best["trial_id"] not in set(compressors["trial"]) else set())
    assert redrawn == {f"{name}.png" for name in sweep_figures | {f"{stem}_z{z}" for stem in PER_TRIAL}}, (
        "the sweep figures and that z's own"
    )


@pytest.mark.slow
def test_a_first_aggregate_draws_the_best_trials_own_figures_and_names_the_other_zs(reviewed, tmp_path, capsys):
    """`hpcsweep aggregate` draws the per-trial figures of the sweep's best trial only (each trial's cost seconds);
    `--detail` draws those of the best trial per z; an out-of-date figure that is not redrawn is removed."""
    folder = _copy_sweep(reviewed, tmp_path)
    frame = pd.read_csv(folder / "trials.csv")
    done = frame[frame["state"] == "done"].sort_values(["rank", "trial_id"])
    best_z = int(done.iloc[0]["latent"])
    other_z = next(int(z) for z in sorted(done["latent"].unique()) if z != best_z)
    shutil.rmtree(folder / "figures")
    capsys.readouterr()
    assert main(["aggregate", str(folder)]) == 0
    own = {p.stem for p in (folder / "figures").glob("*_z*.png")}
    assert own == {f"{stem}_z{best_z}" for stem in PER_TRIAL}
    assert f"those of the best trial at z = {other_z}: 'hpcsweep aggregate {folder} --detail'" in capsys.readouterr().out
    assert main(["aggregate", str(folder), "--detail"]) == 0
    assert {p.stem for p in (folder / "figures").glob("*_z*.png")} == {f"{s}_z{z}" for s in PER_TRIAL for z in (best_z, other_z)}
    assert "--detail'" not in capsys.readouterr().out, "every z's figures are current: nothing left to ask for"
    other = done[done["latent"] == other_z].iloc[0]["trial_id"]
    write_trial(trial_path(folder, other), read_trial(trial_path(folder, other)))  # that z's best trial changed
    assert main(["aggregate", str(folder)]) == 0
    assert {p.stem for p in (folder / "figures").glob("*_z*.png")} == {f"{stem}_z{best_z}" for stem in PER_TRIAL}, (
        "figures that no longer show their trial's file are removed, not left out of date"
    )


@pytest.mark.slow
def test_review_pdf_in_the_sweep_file_adds_a_pdf_of_every_figure_and_the_report_links_them(reviewed, tmp_path):
    folder = _copy_sweep(reviewed, tmp_path)
    assert not list((folder / "figures").glob("*.pdf")) and "PDF</a>" not in (reviewed / "tiny" / "report" / "index.html").read_text()
    kept = json.loads((folder / "definition.json").read_text())
    kept.setdefault("review", {})["pdf"] = True  # as a sweep file with review: {pdf: true} leaves it
    (folder / "definition.json").write_text(json.dumps(kept))
    assert kept_sweep(folder).review.pdf
    assert main(["report", str(folder)]) == 0
    names = {p.stem for p in (folder / "figures").glob("*.png")}
    assert {p.stem for p in (folder / "figures").glob("*.pdf")} == names and len(names) == len(FIGURES) + 2 * len(PER_TRIAL)
    assert all(p.read_bytes().startswith(b"%PDF-") for p in (folder / "figures").glob("*.pdf"))
    page = (folder / "report" / "index.html").read_text()
    assert sorted(re.findall(r"href='\.\./figures/([^']+)\.pdf'>PDF</a>", page)) == sorted(names)


def _written(folder: Path) -> Path:
    """A results folder of three finished trials written directly (no training): enough for three sweep figures."""
    for i, (latent, loss) in enumerate([(3, 0.2), (3, 0.3), (6, 0.1)]):
        _write(folder, f"t{i}", latent, loss, lr=1e-2 * (i + 1))
    return folder


def _write(folder: Path, trial_id: str, latent: int, loss: float, lr: float) -> None:
    config = TrialConfig.model_validate({"model": {"latent": latent}, "train": {"lr": lr}}).model_dump(mode="json")
    metrics = {"best_val_mse": loss, "reference_mse": loss, "pca_reference_mse": 1.0, "best_epoch": 1, "train_time_s": 1.0}
    history = {"val_loss": np.array([1.0, loss]), "train_loss": np.array([1.0, loss])}
    write_trial(trial_path(folder, trial_id), TrialRecord(trial_id, "written", "done", config, metrics, history))


SWEEP_FIGURES = {"loss_vs_latent", "grid_summary", "training_curves"}  # of trials without evaluations


@pytest.mark.slow  # three figures drawn three times, as PNG and PDF: seconds
def test_figures_are_pngs_and_a_pdf_only_when_asked(tmp_path):
    folder = _written(tmp_path / "written")
    figures = folder / "figures"
    review = aggregate(folder)
    assert {f.path.name for f in review.figures} == SWEEP_FIGURES
    assert {p.name for p in figures.iterdir()} == {f"{name}.png" for name in SWEEP_FIGURES} | {".drawn.json"}
    assert not [key for key in review.paths if key.endswith(".pdf")]
    assert main(["aggregate", str(folder), "--pdf"]) == 0  # nothing changed but the PDFs are missing: drawn
    assert {p.name for p in figures.glob("*.pdf")} == {f"{name}.pdf" for name in SWEEP_FIGURES}
    assert all(p.read_bytes().startswith(b"%PDF-") for p in figures.glob("*.pdf"))
    drawn = {p.name: p.stat().st_mtime_ns for p in figures.glob("*.p*")}
    review = aggregate(folder)
    assert {p.name: p.stat().st_mtime_ns for p in figures.glob("*.p*")} == drawn, "nothing changed: nothing drawn, the PDFs kept"
    assert sorted(key for key in review.paths if key.endswith(".pdf")) == sorted(f"figures/{name}.pdf" for name in SWEEP_FIGURES)
    _write(folder, "t3", 6, 0.05, lr=1e-3)  # a new best: the sweep figures are redrawn, without a PDF
    aggregate(folder)
    assert all(figures.joinpath(name + ".png").stat().st_mtime_ns != drawn[name + ".png"] for name in SWEEP_FIGURES)
    assert not list(figures.glob("*.pdf")), "a PDF drawn from other data is removed with its figure's redrawing"


def test_figures_drawn_in_worker_processes_are_the_figures_drawn_in_one(tmp_path, monkeypatch, worker_pools):
    monkeypatch.setattr(allocation, "allocated_cores", lambda: 1)
    here = aggregate(_written(tmp_path / "here"), pdf=True)
    assert worker_pools == [], "one core: drawn in this process"
    monkeypatch.setattr(allocation, "allocated_cores", lambda: 2)
    there = aggregate(_written(tmp_path / "there"), pdf=True)
    assert worker_pools == [2], "two cores: two worker processes"
    assert [f.title for f in here.figures] == [f.title for f in there.figures]
    drawn_here, drawn_there = ({p.name: p.read_bytes() for p in (r.results_dir / "figures").glob("*.png")} for r in (here, there))
    assert drawn_here == drawn_there and len(drawn_here) == len(SWEEP_FIGURES), "the same files, pixel for pixel"
    assert sorted(p.name for p in (tmp_path / "there" / "figures").glob("*.pdf")) == sorted(f"{n}.pdf" for n in SWEEP_FIGURES)


HOSTILE = {  # config keys and values, and an evaluation label, as anybody sharing a results folder could write them
    "key": "<img src=x onerror=alert(1)>",
    "attribute": '" onmouseover="x',
    "value": "<script>alert(2)</script>",
    "label": "<i onclick='y'>z350</i>",
}
PATH_KEY = "lr/../../x"  # a config key that, as a file name, would leave the tables folder


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    """A results folder of three finished trials (written, not trained) whose configs carry hostile keys and values;
    aggregated and reported through the command line."""
    folder = tmp_path_factory.mktemp("hostile") / "results" / "hostile"
    for i, (latent, loss) in enumerate([(3, 0.2), (3, 0.3), (6, 0.1)]):
        config = TrialConfig.model_validate({"model": {"latent": latent}, "train": {"lr": 1e-2 * (i + 1)}}).model_dump(mode="json")
        config["model"][HOSTILE["key"]] = f"{HOSTILE['value']}{i}"
        config["data"][HOSTILE["attribute"]] = i
        config["train"][PATH_KEY] = i
        metrics = {"best_val_mse": loss, "reference_mse": loss, "pca_reference_mse": 1.0, "best_epoch": 1, "train_time_s": 1.0}
        history = {"val_loss": np.array([1.0, loss]), "train_loss": np.array([1.0, loss])}
        evaluation = {HOSTILE["label"]: {"n_jets": 10, "source": "signal.root", "mse": loss}}
        write_trial(trial_path(folder, f"t{i}"), TrialRecord(f"t{i}", "<b>sweep", "done", config, metrics, history, evaluation=evaluation))
    assert main(["aggregate", str(folder), "--no-detail"]) == 0
    assert main(["report", str(folder)]) == 0
    return folder


@pytest.mark.slow
def test_values_of_trial_files_are_escaped_everywhere_in_the_report(hostile):
    page = (hostile / "report" / "index.html").read_text()
    for raw in HOSTILE.values():
        assert raw not in page, raw
        assert html.escape(raw) in page, html.escape(raw)
    ids = re.findall(r"\sid=('[^']*'|\S+)", page)
    assert all(re.fullmatch(r"'[a-z0-9-]+'", i) for i in ids) and len(set(ids)) == len(ids), ids
    assert "<h3 id='table-best-per-latent'>" in page
    for link in re.findall(r"href='([^']*)'", page):
        assert re.fullmatch(r"#[a-z0-9-]+|\.\./(tables|figures|trials)/[A-Za-z0-9_.-]+", link), link


@pytest.mark.slow
def test_a_config_key_with_a_slash_gets_its_table_files_inside_the_folder(hostile):
    (csv,) = (hostile / "tables").glob("by_train_lr*.csv")
    assert re.fullmatch(r"by_train_lr-__-__-x-[0-9a-f]{8}\.csv", csv.name), csv.name
    assert pd.read_csv(csv)[f"train.{PATH_KEY}"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in hostile.parent.iterdir()) == ["hostile"], "nothing is written beside the folder"
    tex = csv.with_suffix(".tex").read_text()
    assert f"\\label{{tab:{csv.stem}}}" in tex and f"\\caption{{Best and median reference MSE by train.{PATH_KEY}}}" in tex
    assert "(68 \\% half-width; jets within 1 \\%)" in (hostile / "tables" / "residuals_per_latent.tex").read_text(), "LaTeX text"


@pytest.mark.slow
def test_rank_by_auc_picks_the_best_detector_per_z_beside_the_mse_ranking(reviewed, tmp_path):
    """The same trials ranked as anomaly detectors (1 - AUC of the reconstruction error, Z' 350 against the
    validation jets) instead of by reference MSE: each z's best is its trial of highest AUC."""
    folder = tmp_path / "tiny"
    shutil.copytree(reviewed / "tiny", folder)
    summaries, _ = scan(folder)
    frame = pd.DataFrame(
        {"z": s["config"]["model"]["latent"], "auc": s["metrics"]["anomaly"]["zprime350"]["auc"], "mse": s["metrics"]["reference_mse"]}
        for s in summaries.values()
    )
    assert frame["auc"].between(0, 1).all() and len(frame) == 4
    aggregate(folder, plot=False, definition=kept_sweep(folder).model_copy(update={"rank_by": "auc"}))
    best = pd.read_csv(folder / "tables" / "best_per_latent.csv")
    for z, group in frame.groupby("z"):
        row = best[best["Latent space dimensions"] == z]
        assert row["1 - AUC"].item() == pytest.approx(1 - group["auc"].max(), abs=1e-3), "the best detector at each z"
        assert float(row["Reference MSE"].item()) == pytest.approx(group.loc[group["auc"].idxmax(), "mse"], rel=1e-3)
    table = pd.read_csv(folder / "tables" / "anomaly_per_latent.csv")
    assert set(table["signal"]) == {"zprime350"} and len(table) == 4  # best and median at two z
    assert table["rejection at 50 %"].str.contains(r" of [\d,]+ pass\)").all(), "each rejection with the jets it rests on"
    trials = pd.read_csv(folder / "trials.csv").set_index("trial_id")
    assert trials["auc_zprime350"].to_dict() == pytest.approx(
        {t: s["metrics"]["anomaly"]["zprime350"]["auc"] for t, s in summaries.items()}
    )
    assert table["AUC"].between(0, 1).all()

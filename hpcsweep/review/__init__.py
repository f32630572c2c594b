"""Review stage: tables, figures and the report of a sweep, built from its trial files (no torch, no weights read).

`aggregate` writes into the sweep's results folder: `tables/` (Markdown, CSV, LaTeX), `figures/` (PNG, PDF),
`summary.md` (every table) and `trials.csv`; `write_report` adds `report/index.html`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpcsweep import __version__
from hpcsweep.data.varset import VarSet, load_varset
from hpcsweep.review import plots
from hpcsweep.review.report import write_report
from hpcsweep.review.stability import rerun_groups, stability_table
from hpcsweep.review.tables import (
    baselines_table,
    best_and_median,
    comparison_table,
    compression_table,
    markdown,
    thesis_table,
    trials_frame,
    varied_axes,
    write_table,
)
from hpcsweep.store import TrialRecord, read_trial, rebuild_index, scan, trial_path

__all__ = ["Figure", "Review", "SweepResults", "aggregate", "write_report"]


class SweepResults:
    """A finished or running sweep's results folder, for notebooks and the CLI."""

    def __init__(self, results_dir: Path):
        self.results_dir = Path(results_dir)

    @classmethod
    def open(cls, where: str | Path) -> SweepResults:
        """A results folder, or a sweep name under ./results."""
        path = Path(where)
        return cls(path if path.is_dir() else Path("results") / str(where))

    def trials(self) -> pd.DataFrame:
        summaries, _ = scan(self.results_dir)
        return trials_frame(summaries)

    def table(self) -> dict[str, pd.DataFrame]:
        """Best and median trial per latent dimension, in the thesis' table layout."""
        best, median = best_and_median(self.trials())
        return {"best": thesis_table(best), "median": thesis_table(median)}


@dataclass
class Figure:
    section: str
    title: str
    path: Path  # without suffix: <path>.png and <path>.pdf exist


@dataclass
class Review:
    """What `aggregate` made of a sweep: its trials, tables (stem -> title, table), figures and what is missing."""

    results_dir: Path
    frame: pd.DataFrame
    tables: dict[str, tuple[str, pd.DataFrame]] = field(default_factory=dict)
    table_files: dict[str, Path] = field(default_factory=dict)  # stem -> <folder>/<name> of its .md, .csv, .tex
    figures: list[Figure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)


def aggregate(results_dir: Path, plot: bool = True, detail: bool = True) -> Review:
    """Write a sweep's tables and figures; `detail` adds the per-trial figures of the best trial per z.

    Only summaries (the sweep index) and the best trials' evaluations and histories are read.
    Whatever cannot be built (no finished trial, old trial files, mixed data) becomes a warning.
    """
    results_dir = Path(results_dir)
    summaries, unreadable = rebuild_index(results_dir)
    review = Review(results_dir, trials_frame({}), unreadable=unreadable)
    review.warnings += [f"unreadable trial file (left out): {problem}" for problem in unreadable]
    summaries = _one_dataset(summaries, results_dir, review.warnings)
    review.frame = frame = trials_frame(summaries)
    review.paths["trials.csv"] = results_dir / "trials.csv"
    results_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(review.paths["trials.csv"], index=False)
    best, median = best_and_median(frame)
    if not len(best):
        counts = Counter(frame["state"])
        review.warnings.append("no finished trial yet" + (": " + ", ".join(f"{n} {s}" for s, n in counts.items()) if counts else ""))
    records = _best_records(best, results_dir, review.warnings)
    evaluations = {trial_id: record.evaluation for trial_id, record in records.items()}
    _add_tables(review, frame, best, median, evaluations, summaries)
    if plot and len(best):
        _add_figures(review, frame, best, median, records, detail)
    _add_stability(review, summaries, plot)
    for figure in review.figures:
        for suffix in (".png", ".pdf"):
            review.paths[f"figures/{figure.path.name}{suffix}"] = figure.path.with_suffix(suffix)
    summary = results_dir / "summary.md"
    summary.write_text(
        f"# Sweep {results_dir.name}\n\n"
        + "".join(f"## {title}\n\n{markdown(table)}\n\n" for title, table in review.tables.values())
        + "".join(f"- warning: {w}\n" for w in review.warnings)
    )
    review.paths["summary.md"] = summary
    return review


def _one_dataset(summaries: dict[str, dict[str, Any]], results_dir: Path, warnings: list[str]) -> dict[str, dict[str, Any]]:
    """Trials of one dataset only, unless the sweep's own grid varies the data: the largest group is kept."""
    definition = _kept_definition(results_dir)
    if any(key.startswith("data.") for key in [*definition.get("grid", {}), *_point_keys(definition)]):
        return summaries
    groups: dict[tuple[str, str], list[str]] = {}
    unread: list[str] = []  # trials that failed before reading their data: they join the kept group by variable set
    for trial_id, summary in summaries.items():
        checksum = summary.get("provenance", {}).get("data_checksum", "")[:12]
        if checksum:
            groups.setdefault((summary["config"]["data"]["varset"], checksum), []).append(trial_id)
        else:
            unread.append(trial_id)
    if len(groups) < 2:
        return summaries
    ranked = sorted(groups.items(), key=lambda item: -len(item[1]))
    (kept_key, kept), others = ranked[0], ranked[1:]
    kept = kept + [t for t in unread if summaries[t]["config"]["data"]["varset"] == kept_key[0]]
    shown = "; ".join(
        f"{len(ids)} of variable set {k[0]!r}, data {k[1]} ({', '.join(ids[:3])}{'...' if len(ids) > 3 else ''})" for k, ids in others
    )
    warnings.append(
        f"trials from different data are mixed in this sweep: kept the {len(kept)} of variable set {kept_key[0]!r}, "
        f"data {kept_key[1]}; left out {shown}"
    )
    return {trial_id: summaries[trial_id] for trial_id in kept}


def _kept_definition(results_dir: Path) -> dict[str, Any]:
    return _read_json(results_dir / "definition.json")


def _point_keys(definition: dict[str, Any]) -> list[str]:
    return [key for point in definition.get("points", {}).get("all", []) for key in point]


def _best_records(best: pd.DataFrame, results_dir: Path, warnings: list[str]) -> dict[str, TrialRecord]:
    """The best trials' records without weights (evaluation, history, histograms)."""
    records = {}
    for trial_id in best["trial_id"]:
        try:
            records[trial_id] = read_trial(trial_path(results_dir, trial_id), weights=False)
        except (OSError, KeyError, ValueError) as err:
            warnings.append(f"trial file of {trial_id} cannot be read ({err}); its evaluation is missing")
    return records


def _add_tables(review: Review, frame: pd.DataFrame, best: pd.DataFrame, median: pd.DataFrame, evaluations, summaries) -> None:
    tables = {
        "best_per_latent": ("Best performing networks per latent dimension", thesis_table(best)),
        "median_per_latent": ("Median performing networks per latent dimension", thesis_table(median)),
    }
    for axis in varied_axes(summaries):
        tables[f"by_{axis.replace('.', '_')}"] = (f"Best and median validation loss by {axis}", comparison_table(frame, axis))
    if len(best):
        tables["baselines_per_latent"] = ("Best AE against PCA and float16 truncation (normalised MSE)", baselines_table(best, evaluations))
        tables["compression_per_latent"] = (
            "Compression of the best AE per latent dimension (bytes per jet)",
            compression_table(best, evaluations),
        )
    for stem, (title, table) in tables.items():
        _add_table(review, stem, title, table)


def _add_table(review: Review, stem: str, title: str, table: pd.DataFrame) -> None:
    """Write a table of this sweep (tables/<stem>.{md,csv,tex}) and list it for the report."""
    review.tables[stem] = (title, table)
    review.table_files[stem] = review.results_dir / "tables" / stem
    for path in write_table(table, review.results_dir / "tables", stem, title):
        review.paths[f"tables/{path.name}"] = path


def _add_figures(review: Review, frame, best, median, records: dict[str, TrialRecord], detail: bool) -> None:
    folder = review.results_dir / "figures"
    evaluations = {trial_id: record.evaluation for trial_id, record in records.items()}
    varset = load_varset(Counter(best["varset"]).most_common(1)[0][0])
    sweep_figures = [
        ("Figures of the sweep", "Validation loss versus latent dimension", lambda p: plots.loss_vs_latent(best, median, p), "loss_vs_latent"),
        ("Figures of the sweep", "Grid search: validation loss versus learning rate", lambda p: plots.grid_summary(frame, best, p), "grid_summary"),
        ("Figures of the sweep", "Training and validation loss of the best trial per latent dimension",
         lambda p: plots.training_curves({f"z={int(t.latent)}": records[t.trial_id].history for t in best.itertuples() if t.trial_id in records}, p),
         "training_curves"),
    ]  # fmt: skip
    if all("residuals" in e.get("validation", {}) for e in evaluations.values()) and evaluations:
        sweep_figures += [
            ("Figures of the sweep", "Residual mean and standard deviation versus latent dimension",
             lambda p: plots.residuals_vs_latent(best, evaluations, varset, p), "residuals_vs_latent"),
            ("Figures of the sweep", "Encode and decode time per jet", lambda p: plots.timing_vs_latent(best, evaluations, p), "timing_vs_latent"),
            ("Figures of the sweep", "Rate and distortion: bytes per jet versus residual width",
             lambda p: plots.rate_distortion(best, evaluations, varset, p), "rate_distortion"),
        ]  # fmt: skip
    else:
        review.warnings.append("the best trials have no stored evaluation: no residual, timing or rate-distortion figures")
    done = frame[frame["state"] == "done"].drop(columns=["failure"]).to_json()
    stamp = [done, {t: _mtime(review, t) for t in records}, __version__]  # what the sweep figures show
    for section, title, draw, stem in sweep_figures:
        _draw(review, Figure(section, title, folder / stem), draw, stamp)
    if detail:
        for trial in best.itertuples():
            if trial.trial_id in records:
                _trial_figures(review, records[trial.trial_id], int(trial.latent), folder)


def _mtime(review: Review, trial_id: str) -> int:
    return trial_path(review.results_dir, trial_id).stat().st_mtime_ns


def _draw(review: Review, figure: Figure, draw, stamp: Any) -> None:
    """Draw `figure` unless it was drawn from the same data (`stamp`) before (figures/.drawn.json).

    Re-aggregating a sweep whose files did not change draws nothing; a new best trial at
    one z redraws the sweep figures and that z's per-trial figures only.
    """
    stamps_path = figure.path.parent / ".drawn.json"
    stamps = _read_json(stamps_path)
    key = hashlib.sha256(json.dumps(stamp, sort_keys=True, default=str).encode()).hexdigest()
    if stamps.get(figure.path.name) != key or not all(figure.path.with_suffix(s).exists() for s in (".png", ".pdf")):
        draw(figure.path)
        stamps[figure.path.name] = key
        tmp = stamps_path.with_name(f".drawn.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stamps, indent=1))
        os.replace(tmp, stamps_path)
    review.figures.append(figure)


def _trial_figures(review: Review, record: TrialRecord, latent: int, folder: Path) -> None:
    """Inputs versus decoded, residuals, their correlations and the dijet mass of one trial (redrawn when its file changes)."""
    varset: VarSet = load_varset(record.config["data"]["varset"])
    section = f"Best trial at z = {latent} ({record.trial_id})"
    title = f"z = {latent}, trial {record.trial_id}"
    validation = {k.split("/", 1)[1]: v for k, v in record.arrays.items() if k.startswith("validation/")}
    drawn: list[tuple[str, str, Any]] = []
    if "hist_edges" in validation:
        drawn.append(
            ("Input and decoded distributions (validation jets)", "inputs", lambda p: plots.inputs_vs_decoded(validation, varset, p, title))
        )
    if "residual_counts" in validation:
        drawn += [
            ("Residual distributions", "residuals", lambda p: plots.residual_histograms(validation, varset, p, title)),
            ("Residual correlations", "corner", lambda p: plots.residual_corner(validation, varset, p, title)),
        ]
    else:
        review.warnings.append(
            f"trial {record.trial_id} (z={latent}) has no residual histograms or correlations (written by an older hpcsweep); "
            f"'hpcsweep evaluate {review.results_dir / 'trials' / record.trial_id}.h5' adds them"
        )
    signals = {label: summary["dijet"] for label, summary in record.evaluation.items() if isinstance(summary, dict) and "dijet" in summary}
    if signals:
        arrays = {label: {name: record.arrays[f"{label}/{name}"] for name in ("dijet_original", "dijet_decoded")} for label in signals}
        drawn.append(
            ("Dijet mass of the two leading jets, input and decoded", "dijet", lambda p: plots.dijet_mass(arrays, signals, p, title))
        )
    stamp = [record.trial_id, _mtime(review, record.trial_id), __version__]
    for caption, stem, draw in drawn:
        _draw(review, Figure(section, caption, folder / f"{stem}_z{latent}"), draw, stamp)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _add_stability(review: Review, summaries: dict[str, dict[str, Any]], plot: bool) -> None:
    """The stability table and the reruns' validation curves, when configs were run with several seeds."""
    for child in sorted(review.results_dir.parent.glob(f"{review.results_dir.name}-top*-seeds*/tables/stability.csv")):
        name = child.parent.parent.name  # rerun-best's child sweeps of this one: their tables, as made when they ran
        if not re.fullmatch(rf"{re.escape(review.results_dir.name)}-top\d+-seeds\d+", name):
            continue
        review.tables[f"stability_{name}"] = (
            f"Seed stability of the best configs (sweep {name})",
            pd.read_csv(child, dtype=str).fillna(""),
        )
        review.table_files[f"stability_{name}"] = child.with_suffix("")
    groups = rerun_groups(summaries)
    if not groups:
        return
    _add_table(review, "stability", "Seed stability: val loss of each config over its runs", stability_table(summaries))
    if plot:
        figure = Figure(
            "Seed stability",
            "Validation loss of each run of the best rerun config per latent dimension",
            review.results_dir / "figures" / "stability_curves",
        )
        stamp = [sorted((i, _mtime(review, i)) for ids in groups.values() for i in ids), __version__]
        _draw(review, figure, lambda p: plots.rerun_curves(_rerun_histories(review.results_dir, summaries, groups), p), stamp)


def _rerun_histories(results_dir: Path, summaries: dict[str, dict[str, Any]], groups: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Config label -> 'seed N' -> training history of the best rerun config of each z, for the stability figure."""

    def config(trial_id: str) -> dict[str, Any]:
        return summaries[trial_id]["config"]

    def median_loss(ids: list[str]) -> float:
        return float(np.nanmedian([summaries[i]["metrics"].get("best_val_mse") or np.nan for i in ids]))

    best_per_z: dict[int, list[str]] = {}  # one panel per latent dimension: its config with the lowest median loss
    for ids in groups.values():
        z = config(ids[0])["model"]["latent"]
        if z not in best_per_z or median_loss(ids) < median_loss(best_per_z[z]):
            best_per_z[z] = ids
    curves = {}
    for _, ids in sorted(best_per_z.items()):
        train = config(ids[0])["train"]
        label = f"z={config(ids[0])['model']['latent']}, bs {train['batch_size']}, lr {train['lr']:g}, wd {train['weight_decay']:g}"
        runs = sorted(ids, key=lambda i: config(i)["train"]["seed"])
        curves[label] = {f"seed {config(i)['train']['seed']}": read_trial(trial_path(results_dir, i), weights=False).history for i in runs}
    return curves

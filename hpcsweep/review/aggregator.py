"""The aggregator: a sweep's trial files -> its review (tables, figures, warnings), and the notebook view of its results."""

from __future__ import annotations

import gc
import hashlib
import json
import re
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from hpcsweep import __version__
from hpcsweep.allocation import in_processes
from hpcsweep.config import SweepConfig
from hpcsweep.data.varset import VarSet, load_varset
from hpcsweep.errors import Log
from hpcsweep.files import write_atomically
from hpcsweep.review import plots
from hpcsweep.review.stability import rerun_groups, stability_table
from hpcsweep.review.tables import (
    anomaly_table,
    baselines_table,
    best_and_median,
    comparison_table,
    compression_table,
    compression_verdict,
    compressor_picks,
    compressors_table,
    data_versions_table,
    evaluations_table,
    frontier_table,
    markdown,
    residuals_table,
    thesis_table,
    trials_frame,
    varied_axes,
    write_table,
)
from hpcsweep.states import TrialState
from hpcsweep.store import TrialRecord, read_trial, rebuild_index, trial_path
from hpcsweep.sweep import Datasets, kept_sweep, listed
from hpcsweep.sweep.datasets import data_versions
from hpcsweep.sweep.rank import Ranking, loss_space_warning


@dataclass
class Selection:
    """The trials a sweep's tables count (those of its current definition), how they are ranked, and what was left out."""

    summaries: dict[str, dict[str, Any]]
    ranking: Ranking
    definition: SweepConfig | None
    notes: list[str] = field(default_factory=list)


def select(results_dir: Path, summaries: dict[str, dict[str, Any]], definition: SweepConfig | None = None) -> Selection:
    """The trial files of `definition` (default: the one the folder keeps) among `summaries`.

    Files of earlier grids, of overrides or of another data version stay in the folder and out
    of the tables, counted in a note. A folder that keeps no definition counts every file.
    """
    definition = definition or kept_sweep(results_dir)
    if definition is None:
        return Selection(summaries, Ranking(), None, ["no sweep definition is kept with these results: every trial file is counted"])
    listing = listed(definition, results_dir, datasets=Datasets(results_dir, prepare=False, progress=False)).with_others(summaries)
    notes = [n for n in (listing.describe_others(), loss_space_warning(definition)) if n]
    notes += [f"data not read ({problem}): trials counted with the version last recorded" for problem in listing.data_problems]
    return Selection({t: s for t, s in summaries.items() if t not in listing.others}, Ranking.of(definition), definition, notes)


#: The per-trial figures `aggregate` draws: of no trial, of the best trial of the sweep, or of the best trial per z. Each
#: trial's four cost 5-6 s of a core (the 24-panel ones most): the first review of a sweep draws the best trial's only
#: and lists the others as a command away (`Review.undrawn`); the end of a sweep and the report draw them all.
Detail = Literal["none", "best", "all"]


@dataclass
class Figure:
    section: str
    title: str
    path: Path  # without suffix: <path>.png exists, and <path>.pdf where PDFs were asked for


class _Drawing(Protocol):
    """What draws a figure: a plot function with its data bound (`functools.partial`), which pickles, so that another
    process may draw it."""

    def __call__(self, path: Path, *, pdf: bool) -> object: ...


@dataclass
class _ToDraw:
    figure: Figure
    draw: _Drawing
    key: str  # the hash of what it is drawn from, kept in figures/.drawn.json once it is drawn


@dataclass
class Review:
    """What `aggregate` made of a sweep: its trials, tables (stem -> title, table), figures and what is missing."""

    results_dir: Path
    frame: pd.DataFrame
    tables: dict[str, tuple[str, pd.DataFrame]] = field(default_factory=dict)
    table_files: dict[str, Path] = field(default_factory=dict)  # stem -> <folder>/<name> of its .md, .csv, .tex
    figures: list[Figure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    headlines: list[str] = field(default_factory=list)  # findings in one line each (the compression winner), printed first
    unreadable: list[str] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)
    drawing: Log = field(default=lambda _: None, repr=False)  # told the title of each figure it draws
    pdf: bool = False  # figures are also written as PDF
    rank_by: str = "reference_mse"  # what ranks the trials
    to_draw: list[_ToDraw] = field(default_factory=list, repr=False)  # figures whose data changed, drawn at the end
    undrawn: list[int] = field(default_factory=list)  # latent dimensions whose best trial's figures were not asked for


def aggregate(
    results_dir: Path,
    plot: bool = True,
    detail: Detail = "all",
    definition: SweepConfig | None = None,
    drawing: Log | None = None,
    pdf: bool | None = None,
    verify: bool = False,
) -> Review:
    """Write a sweep's tables and figures; `detail`: the per-trial figures of no trial, of the sweep's best trial or of
    the best trial per z (those of the others that are on disk and current are kept and listed); `verify` checks
    every trial file's checksum again (not only those the index has not seen).
    `drawing` is told the title of each figure before it is drawn (those drawn before from the same data are not).
    Figures are PNGs; `pdf` adds a PDF of each (default: the sweep's `review.pdf`).

    The tables count the trials of `definition` (default: the sweep as its folder keeps it), ranked
    by its `rank_by`. Only summaries (the sweep index) and the chosen trials' evaluations and histories
    are read. Whatever cannot be built (no finished trial, old trial files) becomes a warning. Figures
    are drawn in worker processes, one per allocated core: a script that calls this must keep its own
    work under `if __name__ == "__main__":` (Python's rule for such processes), a notebook need not.
    """
    results_dir = Path(results_dir)
    everything, unreadable = rebuild_index(results_dir, verify)
    selection = select(results_dir, everything, definition)
    summaries, ranking = selection.summaries, selection.ranking
    if pdf is None:
        pdf = selection.definition is not None and selection.definition.review.pdf
    review = Review(
        results_dir, trials_frame({}), unreadable=unreadable, drawing=drawing or (lambda _: None), pdf=pdf, rank_by=ranking.rank_by
    )
    review.warnings += [f"unreadable trial file (left out): {problem}" for problem in unreadable] + selection.notes
    review.frame = frame = trials_frame(summaries, ranking)
    review.paths["trials.csv"] = results_dir / "trials.csv"
    results_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(review.paths["trials.csv"], frame.to_csv(index=False))
    best, median = best_and_median(frame)
    unranked = int(((frame["state"] == TrialState.DONE) & frame["rank"].isna()).sum())
    if unranked:
        review.warnings.append(f"{unranked} finished trials have no {ranking.noun} (written by an older hpcsweep): "
                               "left out of the rankings; 'hpcsweep evaluate TRIAL' adds it")  # fmt: skip
    if not len(best):
        counts = Counter(frame["state"])
        review.warnings.append("no finished trial yet" + (": " + ", ".join(f"{n} {s}" for s, n in counts.items()) if counts else ""))
    picks = compressor_picks(frame)
    records = _records(list(dict.fromkeys([*best["trial_id"], *picks["trial_id"]])), results_dir, review.warnings)
    evaluations = {trial_id: record.evaluation for trial_id, record in records.items()}
    varset = _varset_of([*best["trial_id"], *picks["trial_id"]], summaries, records)
    ranked = _Ranked(frame, best, median, summaries, ranking)
    _add_tables(review, ranked, evaluations, varset)
    bound = selection.definition.evaluation.max_error if selection.definition is not None else 0.01
    _add_compression(review, picks, evaluations, varset, bound)
    _add_data_tables(review, ranked, everything, selection.definition)
    label = _experiment_label(selection.definition, records)
    if plot and (best["kind"] != "codec").any() and varset is not None:
        _add_figures(review, ranked, records, detail, varset, label)
    if plot and len(picks) and varset is not None:
        draw = partial(plots.compression, picks, frame, evaluations, bound, label=label)
        stamp = [frame.drop(columns=["failure"]).to_json(), {t: _mtime(review, t) for t in picks["trial_id"]}, __version__, plots.STYLE,
                 repr(label), bound]  # fmt: skip
        title = "Compression: bytes per jet versus latent dimension, and the latents' bytes against the residuals'"
        _draw(review, Figure("Figures of the sweep", title, results_dir / "figures" / "compression"), draw, stamp)
    _add_stability(review, summaries, plot, ranking, label)
    _draw_figures(review)
    for figure in review.figures:
        for path in (figure.path.with_suffix(".png"), figure.path.with_suffix(".pdf")):
            if path.suffix == ".png" or path.exists():
                review.paths[f"figures/{path.name}"] = path
    summary = results_dir / "summary.md"
    write_atomically(
        summary,
        f"# Sweep {results_dir.name}\n\n"
        + "".join(f"**{line}**\n\n" for line in review.headlines)
        + "".join(f"## {title}\n\n{markdown(table)}\n\n" for title, table in review.tables.values())
        + "".join(f"- warning: {w}\n" for w in review.warnings),
    )
    review.paths["summary.md"] = summary
    return review


def _varset_of(trial_ids: list[str], summaries: dict[str, dict[str, Any]], records: dict[str, TrialRecord]) -> VarSet | None:
    """The variable set of the best trials (the one stored with them; older files: by its name)."""
    for trial_id in trial_ids:
        record = records.get(trial_id)
        return load_varset(record.varset if record is not None and record.varset else summaries[trial_id]["config"]["data"]["varset"])
    return None


def _records(trial_ids: list[str], results_dir: Path, warnings: list[str]) -> dict[str, TrialRecord]:
    """The chosen trials' records without weights (evaluation, history, histograms)."""
    records = {}
    for trial_id in trial_ids:
        try:
            records[trial_id] = read_trial(trial_path(results_dir, trial_id), weights=False)
        except (OSError, KeyError, ValueError) as err:
            warnings.append(f"trial file of {trial_id} cannot be read ({err}); its evaluation is missing")
    return records


@dataclass(frozen=True)
class _Ranked:
    """The trials a review counts, ranked: their frame, the best and median trial per z, their summaries and the ranking."""

    frame: pd.DataFrame
    best: pd.DataFrame
    median: pd.DataFrame
    summaries: dict[str, dict[str, Any]]
    ranking: Ranking


def _add_tables(review: Review, ranked: _Ranked, evaluations: dict[str, dict[str, Any]], varset: VarSet | None) -> None:
    frame, best, median, summaries, ranking = ranked.frame, ranked.best, ranked.median, ranked.summaries, ranked.ranking
    axes = varied_axes(summaries)
    by = f"ranked by {ranking.description}"
    tables = {
        "best_per_latent": (f"Best performing networks per latent dimension, {by}", thesis_table(best, axes, ranking)),
        "median_per_latent": (f"Median performing networks per latent dimension, {by}", thesis_table(median, axes, ranking)),
    }
    if len(best) and varset is not None:
        tables["residuals_per_latent"] = (
            "Residuals of the best and the median network per latent dimension (68 % half-width; jets within 1 %)",
            residuals_table(best, median, summaries, varset),
        )
    for axis in axes:
        tables[f"by_{axis.replace('.', '_')}"] = (f"Best and median {ranking.noun} by {axis}", comparison_table(frame, axis))
    if len(best):
        tables["baselines_per_latent"] = ("Best AE against PCA and float16 truncation", baselines_table(best, evaluations))
        tables["compression_per_latent"] = (
            "Compression of the best AE per latent dimension (bytes per jet)",
            compression_table(best, evaluations),
        )
    if len(best) and any(summaries[t]["metrics"].get("anomaly") for t in best["trial_id"]):
        tables["anomaly_per_latent"] = (
            "Anomaly detection: the per-jet reconstruction error (reference space) of each signal's jets against the "
            "validation jets, for the best and the median network per latent dimension",
            anomaly_table(best, median, summaries),
        )
    for stem, (title, table) in tables.items():
        _add_table(review, stem, title, table)


def _add_compression(
    review: Review, picks: pd.DataFrame, evaluations: dict[str, dict[str, Any]], varset: VarSet | None, bound: float
) -> None:
    """What `hpcsweep compress` would write with each kind of compressor the sweep found, beside the peers; the rate
    frontier (latents against coded residuals per z and rate weight); and, in one line, the winner against SZ3."""
    if not len(picks) or varset is None:
        return
    _add_table(
        review,
        "compressors",
        f"Bytes per jet that hpcsweep compress writes at {100 * bound:g} %, per latent dimension and kind (the fewest-bytes "
        "trial of each; z = 0: the learned coder alone), beside the error-bounded compressors physicists have (SZ3, ZFP, "
        "fpzip, mantissa rounding + zstd) on the same validation jets; bytes/jet counts the compressor itself spread over 1M jets",
        compressors_table(picks, evaluations, varset, bound),
    )
    _add_table(
        review,
        "rate_frontier",
        "The rate frontier: per latent dimension, kind and rate weight, the fewest bytes per jet split into latents, "
        "coded residuals and the compressor itself (over 1M jets)",
        frontier_table(review.frame),
    )
    verdict = compression_verdict(picks, evaluations, bound)
    if verdict:
        review.headlines.append(verdict)


def _add_data_tables(review: Review, ranked: _Ranked, everything: dict[str, dict[str, Any]], definition: SweepConfig | None) -> None:
    """Which data the trials read (files, tree, checksums, cuts and counts), and evaluations beyond the validation
    split: those of the best and median trials, and any added to other trials by `hpcsweep evaluate`."""
    frame, best, median, summaries = ranked.frame, ranked.best, ranked.median, ranked.summaries
    versions = data_versions(review.results_dir)
    if versions:
        current = set(frame["data_version"].dropna())
        table = data_versions_table(versions, trials_frame(everything), current)
        _add_table(review, "data_versions", "Data read by the trials of this folder (a version is the checksum of the jets as read)", table)
    own = set(definition.evaluation.signal_labels(definition.data)) if definition else set()
    picked = list(dict.fromkeys([*best["trial_id"], *median["trial_id"]]))
    picked += [t for t, s in summaries.items() if t not in picked and set(s.get("evaluations", {})) - own]
    if any(summaries[t].get("evaluations") for t in picked):
        title = "Evaluations besides the validation split (signals, other files) of the best and median trials, and any added later"
        _add_table(review, "evaluations", title, evaluations_table(summaries, picked))


def _add_table(review: Review, stem: str, title: str, table: pd.DataFrame) -> None:
    """Write a table of this sweep (tables/<stem>.{md,csv,tex}, the stem made a safe file name) and list it for the report."""
    review.tables[stem] = (title, table)
    paths = write_table(table, review.results_dir / "tables", stem, title)
    review.table_files[stem] = paths[0].with_suffix("")
    for path in paths:
        review.paths[f"tables/{path.name}"] = path


def _experiment_label(definition: SweepConfig | None, records: dict[str, TrialRecord]) -> plots.ExperimentLabel | None:
    """The label over the figures: the sweep's `review.label`, else "Simulation" (at 13 TeV) when the best trials read
    generated data, and none for files. A folder without a kept definition (older hpcsweep) has no review.label: its
    trials' data decide."""
    generated = bool(records) and all(r.config.get("data", {}).get("source", "generated") == "generated" for r in records.values())
    return plots.ExperimentLabel.of(definition.review.label if definition is not None else None, generated)


def _add_figures(
    review: Review, ranked: _Ranked, records: dict[str, TrialRecord], detail: Detail, varset: VarSet, label: plots.ExperimentLabel | None
) -> None:
    networks = [ranked.frame, ranked.best, ranked.median]  # the autoencoders' figures: the coder alone (z = 0) has its own
    frame, best, median = (table[table["kind"] != "codec"] for table in networks)
    ranking = ranked.ranking
    folder = review.results_dir / "figures"
    evaluations = {trial_id: records[trial_id].evaluation for trial_id in best["trial_id"] if trial_id in records}
    noun = ranking.noun
    histories = {f"$z$ = {int(t.latent)}": records[t.trial_id].history for t in best.itertuples() if t.trial_id in records}
    sweep_figures: list[tuple[str, str, _Drawing, str]] = [
        ("Figures of the sweep", f"{ranking.label} versus latent dimension",
         partial(plots.loss_vs_latent, best, median, ranking=ranking, label=label), "loss_vs_latent"),
        ("Figures of the sweep", f"Grid search: {noun} versus learning rate",
         partial(plots.grid_summary, frame, best, ranking=ranking, label=label), "grid_summary"),
        ("Figures of the sweep", "Training and validation loss of the best trial per latent dimension",
         partial(plots.training_curves, histories, label=label), "training_curves"),
    ]  # fmt: skip
    if all("residuals" in e.get("validation", {}) for e in evaluations.values()) and evaluations:
        sweep_figures += [
            ("Figures of the sweep", "Residual median and 68 % half-width versus latent dimension",
             partial(plots.residuals_vs_latent, best, evaluations, varset, label=label), "residuals_vs_latent"),
            ("Figures of the sweep", "Encode and decode time per jet",
             partial(plots.timing_vs_latent, best, evaluations, label=label), "timing_vs_latent"),
            ("Figures of the sweep", "Rate and distortion: bytes per jet versus residual width",
             partial(plots.rate_distortion, best, evaluations, varset, label=label), "rate_distortion"),
        ]  # fmt: skip
    else:
        review.warnings.append("the best trials have no stored evaluation: no residual, timing or rate-distortion figures")
    curves = {t.latent: records[t.trial_id].arrays for t in best.itertuples() if t.trial_id in records}
    if any(k.endswith("/roc_signal_efficiency") for arrays in curves.values() for k in arrays):
        sweep_figures.append(("Figures of the sweep", "Anomaly detection: ROC of the reconstruction error, best trial per latent dimension",
                              partial(plots.roc_curves, curves, label=label), "roc"))  # fmt: skip
    done = frame[frame["state"] == TrialState.DONE].drop(columns=["failure"]).to_json()
    # what the sweep figures show, and how they are drawn
    stamp = [done, {t: _mtime(review, t) for t in records}, ranking.description, __version__, plots.STYLE, repr(label)]
    for section, title, draw, stem in sweep_figures:
        _draw(review, Figure(section, title, folder / stem), draw, stamp)
    drawn = _detailed(best, detail)
    for trial in best.itertuples():
        shown = trial.trial_id not in records or _trial_figures(
            review, records[trial.trial_id], int(trial.latent), folder, label, trial.trial_id in drawn
        )
        if not shown:
            review.undrawn.append(int(trial.latent))


def _detailed(best: pd.DataFrame, detail: Detail) -> set[str]:
    """The trials whose own figures are drawn where missing or out of date: none, the best trial of the sweep (the
    first in rank), or the best trial per z."""
    chosen = {"none": best.iloc[:0], "best": best.sort_values(["rank", "trial_id"]).head(1), "all": best}[detail]
    return set(chosen["trial_id"])


def _mtime(review: Review, trial_id: str) -> int:
    return trial_path(review.results_dir, trial_id).stat().st_mtime_ns


def _draw(review: Review, figure: Figure, draw: _Drawing, stamp: Any, redraw: bool = True) -> bool:
    """List `figure`, to be drawn unless it was drawn from the same data (`stamp`) before (figures/.drawn.json) and
    its files are there (the PDF too, when asked); say whether it is listed. Without `redraw`, a figure that is not
    current is not drawn and its files go: they show a trial that is no longer the one its name says.

    Re-aggregating a sweep whose files did not change draws nothing; a new best trial at
    one z redraws the sweep figures and that z's per-trial figures only.
    """
    key = hashlib.sha256(json.dumps(stamp, sort_keys=True, default=str).encode()).hexdigest()
    suffixes = (".png", ".pdf") if review.pdf else (".png",)
    current = _read_json(figure.path.parent / ".drawn.json").get(figure.path.name) == key
    if not (current and all(figure.path.with_suffix(s).exists() for s in suffixes)):
        if not redraw:
            if not current:
                for suffix in (".png", ".pdf"):
                    figure.path.with_suffix(suffix).unlink(missing_ok=True)
            return False
        review.to_draw.append(_ToDraw(figure, draw, key))
    review.figures.append(figure)
    return True


def _draw_figures(review: Review) -> None:
    """Draw the figures whose data changed: in worker processes, one per allocated core, where there are several
    (matplotlib keeps one core busy per figure, 2-3 s for one of 24 panels). `review.drawing` is told each title in
    turn, and each figure's stamp is kept as soon as it is written."""
    with closing(in_processes(_draw_one, [(item.draw, item.figure.path, review.pdf) for item in review.to_draw])) as drawn:
        for item in review.to_draw:
            review.drawing(item.figure.title)
            next(drawn)
            _keep_stamp(item, review.pdf)
    review.to_draw.clear()


#: Allocations between two runs of the cyclic garbage collector while a figure is drawn (Python's default: 700): a
#: figure makes matplotlib objects by the hundred thousand, and the default cost a tenth of the drawing time (the 35
#: figures of a 7-z sweep: 52 s -> 47 s in one process).
DRAWING_GC_THRESHOLD = 100_000


def _draw_one(task: tuple[_Drawing, Path, bool]) -> None:
    """Draw one figure as PNG (and PDF): in a worker process, or here, the collector slowed down meanwhile."""
    draw, path, pdf = task
    threshold = gc.get_threshold()
    gc.set_threshold(DRAWING_GC_THRESHOLD, *threshold[1:])
    try:
        draw(path, pdf=pdf)
    finally:
        gc.set_threshold(*threshold)


def _keep_stamp(item: _ToDraw, pdf: bool) -> None:
    """Remember what a figure was drawn from (figures/.drawn.json); without `pdf`, a PDF of it drawn from other data
    before is removed: it no longer shows what the PNG shows."""
    path = item.figure.path
    if not pdf:
        path.with_suffix(".pdf").unlink(missing_ok=True)
    stamps_path = path.parent / ".drawn.json"
    stamps = _read_json(stamps_path)
    stamps[path.name] = item.key
    write_atomically(stamps_path, json.dumps(stamps, indent=1))


def _trial_figures(
    review: Review, record: TrialRecord, latent: int, folder: Path, label: plots.ExperimentLabel | None = None, redraw: bool = True
) -> bool:
    """Inputs versus decoded, residuals, their correlations and the dijet mass of one trial (redrawn when its file
    changes; without `redraw` only those on disk and current are listed); whether every one is listed."""
    varset: VarSet = load_varset(record.varset or record.config["data"]["varset"])
    section = f"Best trial at z = {latent} ({record.trial_id})"
    title = f"Best AE at $z$ = {latent} (trial {record.trial_id})"
    validation = {k.split("/", 1)[1]: v for k, v in record.arrays.items() if k.startswith("validation/")}
    discrete = {k.removeprefix("discrete/"): v for k, v in record.arrays.items() if k.startswith("discrete/")}
    drawn: list[tuple[str, str, _Drawing]] = []
    if "hist_edges" in validation:
        drawn.append(
            ("Input and decoded distributions (validation jets)", "inputs",
             partial(plots.inputs_vs_decoded, validation, varset, title=title, discrete=discrete, label=label))
        )  # fmt: skip
    if "residual_counts" in validation:
        drawn += [
            ("Residual distributions", "residuals",
             partial(plots.residual_histograms, validation, varset, title=title, discrete=discrete, label=label)),
            ("Residual correlations", "corner", partial(plots.residual_corner, validation, varset, title=title, label=label)),
        ]  # fmt: skip
    elif redraw:
        review.warnings.append(
            f"trial {record.trial_id} (z={latent}) has no residual histograms or correlations (written by an older hpcsweep); "
            f"'hpcsweep evaluate {trial_path(review.results_dir, record.trial_id)}' adds them"
        )
    signals = {name: summary["dijet"] for name, summary in record.evaluation.items() if isinstance(summary, dict) and "dijet" in summary}
    if signals:
        arrays = {name: {key: record.arrays[f"{name}/{key}"] for key in ("dijet_original", "dijet_decoded")} for name in signals}
        drawn.append(
            ("Dijet mass of the two leading jets, input and decoded", "dijet",
             partial(plots.dijet_mass, arrays, signals, title=title, label=label))
        )  # fmt: skip
    stamp = [record.trial_id, _mtime(review, record.trial_id), __version__, plots.STYLE, repr(label)]
    shown = [_draw(review, Figure(section, caption, folder / f"{stem}_z{latent}"), draw, stamp, redraw) for caption, stem, draw in drawn]
    return all(shown)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _add_stability(
    review: Review, summaries: dict[str, dict[str, Any]], plot: bool, ranking: Ranking, label: plots.ExperimentLabel | None
) -> None:
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
    _add_table(review, "stability", f"Seed stability: {ranking.noun} of each config over its runs", stability_table(summaries, ranking))
    if plot:
        figure = Figure(
            "Seed stability",
            "Validation loss of each run of the best rerun config per latent dimension",
            review.results_dir / "figures" / "stability_curves",
        )
        stamp = [sorted((i, _mtime(review, i)) for ids in groups.values() for i in ids), __version__, plots.STYLE, repr(label)]
        _draw(review, figure, partial(_rerun_figure, review.results_dir, summaries, groups, ranking, label=label), stamp)


def _rerun_figure(
    results_dir: Path,
    summaries: dict[str, dict[str, Any]],
    groups: dict[str, list[str]],
    ranking: Ranking,
    path: Path,
    *,
    label: plots.ExperimentLabel | None,
    pdf: bool,
) -> None:
    """The stability figure; the reruns' histories are read only when it is drawn."""
    plots.rerun_curves(_rerun_histories(results_dir, summaries, groups, ranking), path, label=label, pdf=pdf)


def _rerun_histories(
    results_dir: Path, summaries: dict[str, dict[str, Any]], groups: dict[str, list[str]], ranking: Ranking
) -> dict[str, dict[str, Any]]:
    """Config label -> 'seed N' -> training history of the best rerun config of each z, for the stability figure."""

    def config(trial_id: str) -> dict[str, Any]:
        return summaries[trial_id]["config"]

    def median_loss(ids: list[str]) -> float:
        return float(np.nanmedian([ranking.value(summaries[i]["metrics"]) for i in ids]))

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

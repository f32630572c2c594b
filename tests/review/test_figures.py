"""Figures fit for a paper: no text drawn over other text for 1, 4, 24 and 27 variables; one bin per value for discrete
variables; under- and overflow shown; symbols on the axes; integer ticks for z and epochs; the experiment label.

The figure functions are drawn on stored-like arrays made here (no training, no torch); each figure is checked as
laid out for its PNG, instead of being saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hpcsweep.config import validate_sweep
from hpcsweep.data.varset import Variable, VarSet, load_varset
from hpcsweep.review import plots
from hpcsweep.review.aggregator import _experiment_label
from hpcsweep.sweep.definition import comparable, kept_sweep, resolved_definition

SIMULATION = plots.ExperimentLabel("Simulation", plots.GENERATED_ENERGY)
ONE = VarSet(name="one", variables=(Variable.model_validate({"name": "jet_pt", "unit": "GeV", "positive": True}),))


# --- what is checked: every visible text of a drawn figure ------------------------------------------------------------


def texts(fig: Any) -> list[Any]:
    """Every visible, non-empty text of a drawn figure: titles, axis labels, tick labels (major and minor, as drawn),
    offset texts, texts and annotations, legend entries and titles, the figure's title and texts (the label's)."""
    found = [fig._suptitle, fig._supxlabel, fig._supylabel, *fig.texts]
    for legend in fig.legends:
        found += [*legend.get_texts(), legend.get_title()]
    stack = list(fig.axes)
    while stack:
        ax = stack.pop()
        if not ax.get_visible():
            continue
        stack += ax.child_axes  # inset axes (ratio panels)
        found += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        for axis in (ax.xaxis, ax.yaxis) if ax.axison else ():  # an axes drawn without axes (a header) draws no ticks
            if axis.get_visible():  # the ticks drawn (get_ticklabels would add those beyond the view), both sides
                found += [axis.label, axis.offsetText, *(label for tick in axis._update_ticks() for label in (tick.label1, tick.label2))]
        legend = ax.get_legend()
        if legend is not None:
            found += [*legend.get_texts(), legend.get_title()]
    unique = {id(t): t for t in found if t is not None}.values()  # the figure's title is one of its texts too
    return [t for t in unique if t.get_visible() and t.get_text().strip()]


def overlaps(fig: Any, tolerance: float = 1.0) -> list[str]:
    """Pairs of texts whose boxes overlap by more than `tolerance` pixels both ways (touching is fine), and texts that
    stick out of the figure."""
    renderer = fig.canvas.get_renderer()
    shown = texts(fig)
    boxes = np.array([t.get_window_extent(renderer).extents for t in shown])  # x0, y0, x1, y1
    if not len(boxes):
        return []
    wide = np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    high = np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    found = [
        f"{shown[i].get_text()!r} over {shown[j].get_text()!r}"
        for i, j in zip(*np.nonzero((wide > tolerance) & (high > tolerance)), strict=True)
        if i < j
    ]
    width, height = fig.canvas.get_width_height()
    out = (boxes[:, 0] < -tolerance) | (boxes[:, 1] < -tolerance) | (boxes[:, 2] > width + tolerance) | (boxes[:, 3] > height + tolerance)
    return found + [f"{shown[i].get_text()!r} outside the figure" for i in np.nonzero(out)[0]]


def _capture(figures: list[Any]) -> Any:
    """A stand-in for plots._save: lays out and draws each figure as for its PNG, checks it (`figure.problems`) and
    keeps it in `figures`; nothing is written."""

    def save(fig: Any, path: Path, **options: Any) -> None:
        if path.suffix == ".png":
            fig.set_dpi(options.get("dpi", plots.DPI))
            fig.canvas.draw()  # constrained layout, then the drawing
            fig.problems = overlaps(fig)
            fig.checked = len(texts(fig))
            fig.name = path.stem
            figures.append(fig)

    return save


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures the plot functions make in a test, laid out, drawn and checked."""
    figures: list[Any] = []
    monkeypatch.setattr(plots, "_save", _capture(figures))
    return figures


@pytest.fixture(scope="module")
def trial_figures(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The figures of one trial (inputs, residuals, corner, residuals_vs_latent) for a variable set and a label,
    drawn once for the tests of this module."""
    cache: dict[tuple[str, Any], list[Any]] = {}

    def draw(varset: VarSet, label: plots.ExperimentLabel | None = SIMULATION) -> list[Any]:
        if (varset.name, label) not in cache:
            figures: list[Any] = []
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(plots, "_save", _capture(figures))
                _trial_figures(varset, tmp_path_factory.mktemp("figures"), label)
            cache[varset.name, label] = figures
        return cache[varset.name, label]

    return draw


TRIAL_FIGURES = ["inputs", "residuals", "corner", "residuals_vs_latent"]


def _assert_clean(figures: list[Any], least: int, names: list[str] = TRIAL_FIGURES) -> None:
    """No text over text in the figures `names` (the trial's four), each of which had at least `least` texts to check."""
    assert [f.name for f in figures] == names
    assert min(f.checked for f in figures) >= least, {f.name: f.checked for f in figures}
    problems = {fig.name: fig.problems for fig in figures if fig.problems}
    assert not problems, problems


# --- stored-like arrays, as the trial stage writes them ---------------------------------------------------------------


def _jets(varset: VarSet, rng: np.random.Generator, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Input and decoded jets: counts for discrete variables (decoded off by one now and then), smooth values else."""
    columns, decoded = [], []
    for variable in varset.variables:
        if variable.discrete:
            x = rng.poisson(12, n).astype(np.float32)
            y = x + rng.choice([-1, 0, 0, 0, 1], n)
        else:
            x = (rng.lognormal(3, 0.6, n) if variable.positive else rng.normal(0, 1.5, n)).astype(np.float32)
            y = x * (1 + 0.03 * rng.normal(size=n)) + 0.01 * rng.normal(size=n)
        columns.append(x)
        decoded.append(np.maximum(y, 0) if variable.positive else y)
    return np.column_stack(columns), np.column_stack(decoded).astype(np.float32)


def stored(varset: VarSet, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A trial's validation arrays (hpcsweep.trial.evaluate: histograms, residual_arrays) and discrete values."""
    rng = np.random.default_rng(seed)
    x, y = _jets(varset, rng)
    edges, before, after, r_edges, r_counts, table = [], [], [], [], [], []
    for i, variable in enumerate(varset.variables):
        low, high = np.percentile(x[:, i], [0.5, 99.5])
        edges.append(np.linspace(low, high, 51))
        before.append(np.histogram(x[:, i], edges[-1])[0])
        after.append(np.histogram(y[:, i], edges[-1])[0])
        residual = (y[:, i] - x[:, i]) / x[:, i] if variable.residual == "relative" else y[:, i] - x[:, i]
        table.append(np.where(np.isfinite(residual), residual, np.nan))
        low, high = np.nanpercentile(table[-1], [0.5, 99.5])
        low, high = (low - 0.5, high + 0.5) if high <= low else (low, high)
        r_edges.append(np.linspace(low, high, 51))
        r_counts.append(np.histogram(table[-1][np.isfinite(table[-1])], r_edges[-1])[0])
    residuals = np.column_stack(table)
    arrays = {
        "hist_edges": np.array(edges),
        "hist_original": np.array(before),
        "hist_decoded": np.array(after),
        "residual_edges": np.array(r_edges),
        "residual_counts": np.array(r_counts),
        "residual_correlation": pd.DataFrame(residuals).corr().to_numpy(),
        "residual_sample": residuals[:1000].astype(np.float32),
    }
    discrete = {v.name: np.unique(x[:, i]) for i, v in enumerate(varset.variables) if v.discrete}
    return arrays, discrete


def sweep(varset: VarSet, latents: list[int]) -> tuple[pd.DataFrame, dict[str, dict[str, Any]], dict[str, Any]]:
    """The best trial per z, its evaluation (residuals, timing, compression, baselines) and its history."""
    rows, evaluations, histories = [], {}, {}
    for k, z in enumerate(latents):
        trial_id = f"t{z:03d}"
        width = 0.05 / (1 + k)
        residuals = {v.name: {"kind": v.residual, "width": width, "median": 0.1 * width, "mean": 0.0} for v in varset.variables}
        evaluations[trial_id] = {
            "validation": {
                "residuals": residuals,
                "timing": {"encode_us_per_jet": 1 + 0.1 * z, "decode_us_per_jet": 0.8 + 0.1 * z, "threads": 1},
                "compression": {"latent_float16": 2 * z},
                "baselines": {
                    "pca": {"residuals": {n: {"width": 2 * r["width"]} for n, r in residuals.items()}},
                    "float16": {"bytes_per_jet": 2 * len(varset.variables), "residuals": {n: {"width": 1e-4} for n in residuals}},
                    "truncation": [
                        {
                            "bytes_per_jet": len(varset.variables) * (9 + b) / 8,
                            "mantissa_bits": b,
                            "width": dict.fromkeys(residuals, 2.0**-b),
                        }
                        for b in (2, 7, 14)
                    ],
                },
            }
        }
        histories[trial_id] = {"val_loss": np.geomspace(1, 0.01, 3 + k), "train_loss": np.geomspace(1.2, 0.012, 3 + k)}
        for lr in (1e-3, 1e-2):
            for bs in (256, 1024):
                rank = width * (1 + lr * 10) * (1 + bs / 4096)
                rows.append({"trial_id": trial_id if (lr, bs) == (1e-3, 256) else f"{trial_id}-{lr}-{bs}", "latent": z, "lr": lr,
                             "batch_size": bs, "weight_decay": 0.0, "rank": rank, "pca_reference_mse": 3 * width, "state": "done"})  # fmt: skip
    frame = pd.DataFrame(rows)
    best = frame.sort_values("rank").groupby("latent", as_index=False).first()
    return frame, evaluations, {"best": best, "histories": histories}


def _trial_figures(varset: VarSet, path: Path, label: plots.ExperimentLabel | None = SIMULATION) -> None:
    arrays, discrete = stored(varset)
    title = "Best AE at $z$ = 12 (trial e01c11898a00)"
    plots.inputs_vs_decoded(arrays, varset, path / "inputs", title, discrete=discrete, label=label)
    plots.residual_histograms(arrays, varset, path / "residuals", title, discrete=discrete, label=label)
    plots.residual_corner(arrays, varset, path / "corner", title, label=label)
    frame, evaluations, extra = sweep(varset, [4, 8, 12, 18])
    plots.residuals_vs_latent(extra["best"], evaluations, varset, path / "residuals_vs_latent", label=label)


# --- no text over text --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "varset", [ONE, load_varset("fourvec"), pytest.param(load_varset("generated"), marks=pytest.mark.slow)], ids=["1", "4", "24"]
)
def test_no_text_of_a_trial_figure_overlaps_another(varset, trial_figures):
    _assert_clean(trial_figures(varset), least=2 * len(varset.variables))  # each variable: an axis label and more


@pytest.mark.slow
def test_no_text_overlaps_with_27_variables(trial_figures):
    _assert_clean(trial_figures(load_varset("atlas27")), least=54)


def test_the_grid_summary_shows_every_varied_key_as_its_own_series(drawn, tmp_path):
    """A grid over the normalisation too: its trials are series of their own, named once in the figure's legend (a
    colour per batch size, a marker per the rest), the same look in every panel, not hidden behind the best one."""
    frame, _, extra = sweep(load_varset("fourvec"), [4, 8])
    frame = frame.copy()
    frame["data.normalisation"] = np.where(np.arange(len(frame)) % 2, "standard", "custom+standard")
    plots.grid_summary(frame, extra["best"], tmp_path / "grid_summary", label=SIMULATION)
    (figure,) = drawn
    (legend,) = figure.legends
    names = [text.get_text() for text in legend.get_texts()]
    assert any("normalisation standard" in n for n in names) and any("normalisation custom+standard" in n for n in names), names
    keys = ["batch_size", "weight_decay", "data.normalisation"]
    for ax in figure.axes:
        if not ax.get_title().startswith("$z$"):
            continue  # the label's header
        z = int(ax.get_title().split("=")[1].strip())
        series = frame[frame["latent"] == z].groupby(keys).ngroups
        looks = {(line.get_color(), line.get_marker()) for line in ax.get_lines() if line.get_marker() != "*"}
        assert len(looks) == series > 1, (z, looks)


def test_no_text_of_a_sweep_figure_overlaps_another(drawn, tmp_path):
    varset = load_varset("fourvec")
    frame, evaluations, extra = sweep(varset, [2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 18, 20, 24])
    best, histories = extra["best"], extra["histories"]
    plots.loss_vs_latent(best, best, tmp_path / "loss_vs_latent", label=SIMULATION)
    plots.grid_summary(frame[frame["latent"].isin([4, 8, 12, 18])], best, tmp_path / "grid_summary", label=SIMULATION)
    plots.training_curves({f"$z$ = {z}": histories[f"t{z:03d}"] for z in (4, 8, 12)}, tmp_path / "training_curves", label=SIMULATION)
    plots.timing_vs_latent(best, evaluations, tmp_path / "timing_vs_latent", label=SIMULATION)
    plots.rate_distortion(best[best["latent"].isin([4, 12, 24])], evaluations, varset, tmp_path / "rate_distortion", label=SIMULATION)
    efficiency = np.linspace(0, 1, 101, dtype=np.float32)
    roc = {f"{s}/roc_{k}_efficiency": efficiency**p for s in ("zprime350", "zprime600") for k, p in (("signal", 0.5), ("background", 2))}
    plots.roc_curves({4: roc, 12: roc}, tmp_path / "roc", label=SIMULATION)
    plots.rerun_curves({"$z$ = 12, bs 256, lr 0.01, wd 0.0001": {f"seed {s}": histories["t012"] for s in (0, 1, 2)}},
                       tmp_path / "stability_curves", label=SIMULATION)  # fmt: skip
    dijet, closures = _dijet(["zprime350", "zprime600"])
    plots.dijet_mass(dijet, closures, tmp_path / "dijet", "Best AE at $z$ = 12 (trial e01c11898a00)", label=SIMULATION)
    _assert_no_legend_over_a_point(drawn[4])  # rate_distortion: the most markers
    names = ["loss_vs_latent", "grid_summary", "training_curves", "timing_vs_latent", "rate_distortion", "roc", "stability_curves", "dijet"]
    _assert_clean(drawn, least=5, names=names)


def _assert_no_legend_over_a_point(fig) -> None:
    """Every legend of `fig` (its axes' and its own) lies outside every panel, so it hides no marker, whatever the
    data (inside a panel, 'best' placement only does what it can: the review's data had a point under it)."""
    fig.canvas.draw()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    assert legends, "a legend to check"
    for legend in legends:
        assert not any(legend.get_window_extent().overlaps(ax.get_window_extent()) for ax in fig.axes), "a legend over a panel"


def _dijet(signals: list[str]) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, float]]]:
    rng = np.random.default_rng(1)
    arrays = {}
    for signal in signals:
        mass = np.concatenate([rng.normal(330, 30, 1600), rng.uniform(60, 800, 400)]).astype(np.float32)  # a peak, wide tails
        arrays[signal] = {"dijet_original": mass, "dijet_decoded": mass * (1 + 0.01 * rng.normal(size=2000)).astype(np.float32)}
    keys = ("peak_original", "peak_decoded", "peak_shift_pct", "width_original", "width_decoded", "width_change_pct")
    return arrays, {s: dict(zip(keys, (350.0, 351.0, 0.29, 40.0, 41.0, 2.5), strict=True)) for s in signals}


def test_the_check_finds_text_over_text_in_a_fixed_margin_layout():
    """The check fails on what the issue saw: fixed margins (those of the earlier plots.py), a title taller than its
    margin drawn over the panels, and tick labels running into the next row."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(6, 4, figsize=(14.4, 18.4))
    fig.subplots_adjust(left=0.9 / 14.4, right=1 - 0.25 / 14.4, bottom=0.75 / 18.4, top=1 - 0.45 / 18.4, hspace=0.1)
    for ax in axes.flat:
        ax.set(title="$p_{T}$", xlabel="$\\Delta p_{T} / p_{T}$ [%]", ylabel="Jets")
    fig.suptitle("Best AE at $z$ = 12\n(trial e01c11898a00)", y=1 - 0.2 / 18.4, va="top")
    fig.canvas.draw()
    found = overlaps(fig)
    plt.close(fig)
    assert any(problem.startswith("'Best AE") for problem in found), found
    assert "'1.0' over '0.0'" in found, found


# --- what the figures show ----------------------------------------------------------------------------------------


def test_discrete_variables_get_one_bin_per_integer_value(trial_figures):
    generated = load_varset("generated")  # a count and a continuous variable of it: two panels, drawn in a second
    pair = VarSet(name="pair", variables=tuple(v for v in generated.variables if v.name in ("pt", "N90Constituents")))
    inputs, residuals, *_ = trial_figures(pair)
    for fig in (inputs, residuals):
        # inputs: a cell per variable holds the distribution (named by its ratio panel's x label) over the ratio panel
        named = {cell.child_axes[1].get_xlabel(): cell.child_axes[0] for cell in fig.axes if cell.child_axes} or {
            ax.get_title(): ax for ax in fig.axes if ax.axison
        }
        counts, continuous = named["N90Constituents"], named["$p_{T}$ [GeV]" if fig is inputs else "$p_{T}$"]
        edges = counts.patches[0].get_data().edges
        assert np.allclose(np.diff(edges), 1) and np.allclose(edges % 1, 0.5), edges  # unit bins centred on the integers
        assert len(continuous.patches[0].get_data().edges) == 51  # the stored uniform bins
        assert counts.get_ylabel() == "Jets" and continuous.get_ylabel().startswith("Jets / ")
        ticks = [t for t in counts.get_xticks() if counts.get_xlim()[0] <= t <= counts.get_xlim()[1]]
        assert ticks and np.allclose(ticks, np.round(ticks))


def test_stored_bins_become_one_bin_per_value_only_when_exact():
    edges = np.linspace(0.0, 30.0, 51)  # bins 0.6 wide: each holds at most one integer
    values = np.arange(0, 31, dtype=float)
    counts = np.histogram(np.repeat(values, 3), edges)[0]
    exact = plots._stored(edges, [counts], plots._candidates(values, 1.0, 0, 30))
    assert exact.integers and exact.hists[0].values().sum() == counts.sum() and np.allclose(exact.hists[0].axes[0].centers, values)
    wide = np.linspace(0.0, 30.0, 21)  # 1.5 wide: some bins hold two integers, which stored counts cannot split
    coarse = plots._stored(wide, [np.histogram(np.repeat(values, 3), wide)[0]], plots._candidates(values, 1.0, 0, 30))
    assert not coarse.per_value and len(coarse.hists[0].axes[0]) == 20
    area = 0.00997 * np.arange(26, 62, dtype=np.float32)  # jet areas in units of a ghost's: a regular grid, not integers
    grid = np.linspace(float(area[0]), float(area[-1]), 51)
    on_grid = plots._stored(grid, [np.histogram(area, grid)[0]], plots._candidates(area, plots._grid_step(area), grid[0], grid[-1]))
    assert on_grid.per_value and not on_grid.integers and len(on_grid.hists[0].axes[0]) == len(area)


def test_under_and_overflow_are_shown(drawn, tmp_path):
    dijet, closures = _dijet(["zprime350"])  # masses beyond the 1-99 % range: in the flow bins
    plots.dijet_mass(dijet, closures, tmp_path / "dijet", "t")
    varset = ONE
    arrays, _ = stored(varset)
    counts = arrays["hist_original"]
    arrays["hist_original"] = np.column_stack([[7], counts, [9]])  # stored with flow bins: bins + 2 entries
    arrays["hist_decoded"] = np.column_stack([[6], arrays["hist_decoded"], [10]])
    plots.inputs_vs_decoded(arrays, varset, tmp_path / "inputs", "t")
    for fig in drawn:
        labels = [t.get_text() for ax in fig.axes for child in [ax, *ax.child_axes] for t in child.get_xticklabels()]
        assert any(x.startswith("<") for x in labels) and any(x.startswith(">") for x in labels), labels
        flows = [x for x in labels if x[:1] in ("<", ">")]
        assert all(float(x[1:]) == float(f"{float(x[1:]):.3g}") for x in flows), f"flow labels of 3 digits at most: {flows}"
    top = drawn[1].axes[0].child_axes[0]
    heights = [patch.get_data().values for patch in top.patches]
    assert [h[0] for h in heights] == [7, 6] and [h[-1] for h in heights] == [9, 10]  # the flow bins, drawn


def test_axes_name_jet_variables_by_their_symbols(trial_figures):
    for name, symbol in [("jet_eta", "$\\eta$"), ("HLT_jet_pt", "$p_{T}$"), ("eta", "$\\eta$"), ("pt", "$p_{T}$"), ("jet_phi", "$\\phi$"),
                         ("m", "$m$"), ("E", "$E$"), ("jet_e", "$E$"), ("ActiveArea4vec_eta", "ActiveArea4vec $\\eta$"), ("Width", "Width")]:  # fmt: skip
        assert plots._symbol(name) == symbol, name
    inputs, residuals, *_ = trial_figures(load_varset("fourvec"))
    assert [cell.child_axes[1].get_xlabel() for cell in inputs.axes if cell.child_axes] == [
        "$p_{T}$ [GeV]",
        "$\\eta$",
        "$\\phi$ [rad]",
        "$E$ [GeV]",
    ]
    assert [ax.get_xlabel() for ax in residuals.axes if ax.axison] == ["$\\Delta p_{T} / p_{T}$ [%]", "$\\Delta \\eta$", "$\\Delta \\phi$ [rad]",
                                                         "$\\Delta E / E$ [%]"]  # fmt: skip
    panels = [ax for fig in trial_figures(load_varset("fourvec")) if fig.name != "corner" for ax in _drawn_axes(fig)]  # corner: names
    assert all(ax.get_ylabel() for ax in panels), "a y label on every panel"
    assert plots._residual_label(Variable.model_validate({"name": "Width", "positive": True})) == "(out $-$ in) / in [%]"


def _drawn_axes(fig: Any) -> list[Any]:
    """The panels drawn with axes: a figure's and their insets (a header or a cell of insets draws none itself)."""
    every = [*fig.axes, *(child for ax in fig.axes for child in ax.child_axes)]
    return [ax for ax in every if ax.axison and ax.get_visible()]


def test_latent_sizes_and_epochs_are_integer_ticks(drawn, tmp_path):
    varset = load_varset("fourvec")
    frame, evaluations, extra = sweep(varset, [4, 5])  # two z close together: a default locator ticks 4.5
    plots.timing_vs_latent(extra["best"], evaluations, tmp_path / "timing", label=SIMULATION)
    plots.loss_vs_latent(extra["best"], extra["best"], tmp_path / "loss", label=SIMULATION)
    plots.residuals_vs_latent(extra["best"], evaluations, varset, tmp_path / "residuals_vs_latent")
    plots.training_curves({"$z$ = 4": {"val_loss": np.array([1.0, 0.5]), "train_loss": np.array([1.1, 0.6])}}, tmp_path / "curves")
    checked = {}
    for fig in drawn:
        for ax in _drawn_axes(fig):
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and np.allclose(ticks, np.round(ticks)), (fig.name, ticks)
            assert not len(ax.xaxis.get_minorticklocs()), fig.name
            checked[fig.name] = checked.get(fig.name, 0) + 1
    assert checked == {"timing": 1, "loss": 1, "residuals_vs_latent": 4, "curves": 1}, "every figure's panels were checked"


def test_the_experiment_label_is_drawn_once_per_figure(trial_figures):
    drawn = trial_figures(load_varset("fourvec")) + trial_figures(ONE, plots.ExperimentLabel("ATLAS Open Data")) + trial_figures(ONE, None)
    for fig, (left, right) in zip(
        drawn, [("Simulation", "13 TeV")] * 4 + [("ATLAS Open Data", None)] * 4 + [(None, None)] * 4, strict=True
    ):
        shown = [t.get_text() for t in texts(fig)]
        assert shown.count(left) == (1 if left else 0) and ("Simulation" in shown) == (left == "Simulation"), (fig.name, shown)
        assert sum("13 TeV" in t for t in shown) == (1 if right else 0), (fig.name, shown)
    assert plots.ExperimentLabel.of(None, generated=True) == SIMULATION
    assert plots.ExperimentLabel.of(None, generated=False) is None
    assert plots.ExperimentLabel.of("CMS Open Data", generated=False) == plots.ExperimentLabel("CMS Open Data")
    assert plots.ExperimentLabel.of("", generated=True) is None


def test_signals_are_titled_as_physicists_name_them(drawn, tmp_path):
    assert plots._signal_name("zprime350") == "Z$'$ (350 GeV)" and plots._signal_name("zprime600.5") == "Z$'$ (600.5 GeV)"
    assert plots._signal_name("my_signal") == "my_signal"  # a file's signal: its stem
    dijet, closures = _dijet(["zprime350", "my_signal"])
    plots.dijet_mass(dijet, closures, tmp_path / "dijet", "t")
    (fig,) = drawn
    shown = [t.get_text() for t in texts(fig)]
    assert "Z$'$ (350 GeV)" in shown and "my_signal" in shown and not any("zprime" in t for t in shown)


def test_the_review_label_is_a_sweep_key_outside_what_a_folder_compares(tmp_path):
    sweep_file = validate_sweep({"name": "labelled", "review": {"label": "ATLAS Simulation Internal"}}, "test")
    assert sweep_file.review.label == "ATLAS Simulation Internal"
    plain = validate_sweep({"name": "labelled"}, "test")
    assert comparable(resolved_definition(sweep_file)) == comparable(resolved_definition(plain))
    assert not any(key.startswith("review") for key in comparable(resolved_definition(sweep_file)))
    kept = resolved_definition(plain)
    del kept["review"]  # a folder of an hpcsweep before the key
    (tmp_path / "definition.json").write_text(pd.Series(kept).to_json())
    old = kept_sweep(tmp_path)
    assert old is not None and old.review.label is None
    generated, files = _Record({"source": "generated"}), _Record({"source": "/data/jets.root"})
    assert _experiment_label(sweep_file, {"a": generated}) == plots.ExperimentLabel("ATLAS Simulation Internal", plots.GENERATED_ENERGY)
    assert _experiment_label(None, {"a": generated}) == SIMULATION  # no kept definition: the trials' data decide
    assert _experiment_label(None, {"a": files}) is None and _experiment_label(plain, {"a": files}) is None


class _Record:
    def __init__(self, data: dict[str, Any]) -> None:
        self.config = {"data": data}


def test_the_compression_figure_labels_only_the_trials_no_other_beats_in_both():
    """Hundreds of trials would bury the scatter under their labels: only the front (fewer latent and fewer residual
    bytes than any trial left of it) is labelled, each place once."""
    latents = pd.Series([0.0, 1.0, 2.0, 1.0, 3.0, 3.0])
    residuals = pd.Series([5.0, 3.0, 4.0, 3.0, 1.0, 2.0])
    rates = pd.Series([0.0, 0.1, 0.2, 0.1, 1.0, 0.5])
    assert plots._frontier(latents, residuals, rates) == [(0.0, 5.0, 0.0), (1.0, 3.0, 0.1), (3.0, 1.0, 1.0)]

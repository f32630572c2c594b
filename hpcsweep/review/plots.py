"""Figures of a sweep in HEP style (mplhep), each written as PNG (for the report and the terminal) and, when asked,
PDF (for papers: `pdf=True`).

Sweep-level figures read only the summaries and the chosen trials' evaluations;
the per-trial ones read a trial's stored histograms, residual sample and dijet
masses. Nothing here loads a network.

Every figure is laid out by matplotlib's constrained layout, so that no text
overlaps whatever the number of panels; histograms are `hist.Hist`s drawn by
`mplhep.histplot`, their under- and overflow shown where they are known; each
figure carries the sweep's experiment-style label once (`ExperimentLabel`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpcsweep.data.varset import Variable, VarSet
from hpcsweep.files import atomic
from hpcsweep.review.tables import ranked
from hpcsweep.states import TrialState
from hpcsweep.sweep.rank import Ranking

#: Bumped whenever the figures change: the review's stamps hold it, so results drawn by an earlier style are redrawn.
STYLE = 3
DPI = 90
#: Trial id -> its stored evaluation (as `TrialRecord.evaluation`): what the figures of the best trials per z read.
Evaluations = dict[str, dict[str, Any]]
#: A trial's stored arrays by name (its `validation/...` histograms, its `discrete/...` values).
Arrays = dict[str, np.ndarray]
#: mplhep's ROOT style is made for one plot per page; figures of many panels need smaller type and ticks.
_COMPACT = {"font.size": 15, "xtick.major.size": 6, "xtick.minor.size": 3, "ytick.major.size": 6, "ytick.minor.size": 3}
#: The generator's beams (hpcsweep.data.generate: Pythia 8 at 13 TeV).
GENERATED_ENERGY = "$\\sqrt{s}$ = 13 TeV"
#: Figures of more panels than this leave out the minor ticks of linear axes.
_MINOR_PANELS = 8
#: Height of the header row (the experiment label of a figure of several panels), relative to a row of panels.
_HEADER = 0.001

#: How common jet variables are written on axes (mathtext, without the dollars), by the name or its last `_` part.
_SYMBOLS = {"pt": "p_{T}", "eta": "\\eta", "phi": "\\phi", "m": "m", "mass": "m", "e": "E", "energy": "E"}
#: Parts of a name that only say "a jet" (jet_pt, HLT_jet_eta): the symbol alone names the variable.
_JET_WORDS = {"jet", "jets", "j", "hlt", "reco", "truth", "ak4", "ak8", "akt4", "akt10"}


@dataclass(frozen=True)
class ExperimentLabel:
    """The experiment-style label over a figure: `left` (in italics: "Simulation", or the sweep's own `review.label`)
    and `right` (the centre-of-mass energy of generated data)."""

    left: str = ""
    right: str = ""

    @classmethod
    def of(cls, label: str | None, generated: bool) -> ExperimentLabel | None:
        """A sweep's label: its `review.label` ("" for none), else "Simulation" for generated data and none for files;
        generated data add the centre-of-mass energy on the right."""
        left = ("Simulation" if generated else "") if label is None else label
        return cls(left, GENERATED_ENERGY if generated else "") if left else None


#: A figure's label, or none (a folder of the user's own jets whose sweep names no `review.label`).
Label = ExperimentLabel | None


def _parts(name: str) -> tuple[str, str | None]:
    """A variable's name as (qualifier, mathtext symbol): pt -> ('', 'p_{T}'), HLT_jet_eta -> ('', '\\eta'),
    ActiveArea4vec_phi -> ('ActiveArea4vec', '\\phi'), Width -> ('Width', None)."""
    bare = name.rstrip("_")
    if bare.lower() in _SYMBOLS:
        return "", _SYMBOLS[bare.lower()]
    head, _, last = bare.rpartition("_")
    if head and last.lower() in _SYMBOLS:
        jet_only = all(word.lower() in _JET_WORDS for word in head.split("_") if word)
        return ("" if jet_only else head), _SYMBOLS[last.lower()]
    return name, None


def _symbol(name: str) -> str:
    """A variable's name as an axis label: pt -> $p_{T}$, jet_eta -> $\\eta$, ActiveArea4vec_m -> ActiveArea4vec $m$."""
    qualifier, symbol = _parts(name)
    if symbol is None:
        return qualifier
    return f"{qualifier} ${symbol}$".strip()


def _unit(unit: str) -> str:
    return f" [{unit}]" if unit else ""


def _axis_label(variable: Variable) -> str:
    return _symbol(variable.name) + _unit(variable.unit)


def _residual_label(variable: Variable) -> str:
    """Axis label of a variable's residual (decoded - input): $\\Delta p_{T} / p_{T}$ [%], $\\Delta\\phi$ [rad] for the jet
    variables with a symbol, (out - in) / in [%] or out - in [unit] for the others (their panel's title names them)."""
    qualifier, symbol = _parts(variable.name)
    relative = variable.residual == "relative"
    if symbol and not qualifier:
        return f"$\\Delta {symbol}" + (f" / {symbol}$ [%]" if relative else "$" + _unit(variable.unit))
    return "(out $-$ in) / in [%]" if relative else "out $-$ in" + _unit(variable.unit)


def _percent(kind: str) -> float:
    """Relative residuals are stored as fractions and shown in percent."""
    return 100.0 if kind == "relative" else 1.0


def _signal_name(label: str) -> str:
    """A signal sample as a physicist names it: zprime350 -> Z' (350 GeV); a file's signal is named by its stem."""
    match = re.fullmatch(r"zprime(\d+(?:\.\d+)?)", label)
    return f"Z$'$ ({match.group(1)} GeV)" if match else label


def _number(value: float) -> str:
    """A bin width as an axis label writes it: 5.2, 0.04, 120."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2g}"


def _per_bin(noun: str, width: float, unit: str) -> str:
    """'Jets / 5.2 GeV': what a bin of `width` holds."""
    return f"{noun} / {_number(width)}{' ' + unit if unit else ''}"


# --- figures: constrained layout, a label, PNG (and PDF) ---------------------------------------------------------


@contextmanager
def _figure(path: Path, figsize: tuple[float, float], title: str = "", minor: bool = True, pdf: bool = False) -> Iterator[Any]:
    """A figure in mplhep's ROOT style under constrained layout, with `title` over everything, saved as <path>.png (and
    <path>.pdf with `pdf`) and closed; `minor`: minor ticks on linear axes (log axes keep theirs).

    The PDF is left out unless asked: only papers use it, and it costs two thirds of the PNG's time again. The layout
    is made once, for the PNG, and kept for the PDF: constrained layout measures every text of every panel, which on a
    24-panel figure costs as much as drawing it. Figures of many small panels leave out the minor ticks of linear
    axes, too small to read there, and a third of the time a 24-panel figure takes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    mathtext = logging.getLogger("matplotlib.mathtext")
    level = mathtext.level
    mathtext.setLevel(logging.ERROR)  # the sized radical of sqrt(s) is found in the fallback font, after a warning
    try:
        with plt.style.context([mplhep.style.ROOT, _COMPACT, {"xtick.minor.visible": minor, "ytick.minor.visible": minor}]):
            fig = plt.figure(figsize=figsize, layout="constrained")
            try:
                yield fig
                if title:
                    fig.suptitle(title, fontsize="medium")
                path.parent.mkdir(parents=True, exist_ok=True)
                _lay_out(fig, DPI)
                _save(fig, path.with_suffix(".png"), dpi=DPI)
                if pdf:
                    _save(fig, path.with_suffix(".pdf"))
            finally:
                plt.close(fig)
    finally:
        mathtext.setLevel(level)


def _lay_out(fig: Any, dpi: float) -> None:
    """Place the panels by constrained layout once, at the PNG's `dpi` (text extents are measured in its pixels), and
    keep them there for every file; the figure keeps its own dpi (a PDF's rasterized parts).

    `savefig` of a figure that still has a layout engine draws the whole figure once without rendering, only to run
    the layout, and then again to render it. That pass costs a 24-panel figure 0.2-0.4 s of CPU; the render after it
    reuses some of its work, so the net saving measured is a few per cent (the same pixels).
    """
    own = fig.dpi
    fig.set_dpi(dpi)
    fig.get_layout_engine().execute(fig)
    fig.set_layout_engine("none")
    fig.set_dpi(own)


def _save(fig: Any, path: Path, **options: Any) -> None:
    """Save under a temporary name, then rename: a full disk leaves the previous figure, not half of one."""
    with atomic(path) as tmp:
        fig.savefig(tmp, format=path.suffix[1:], **options)


def _experiment(ax: Any, label: ExperimentLabel | None, size: float = 1.0) -> None:
    """`label` over `ax`: its left text over the left corner (in italics), its right one over the right corner."""
    if label is None:
        return
    import matplotlib
    import mplhep

    points = size * matplotlib.rcParams["font.size"]
    mplhep.label.exp_label(
        ax=ax,
        exp=label.left,
        llabel="",
        rlabel=label.right,
        loc=0,
        fontsize=(points, points, 0.85 * points, 0.85 * points),
        fontweight=("normal", "normal", "normal", "normal"),
        fontstyle=("italic", "normal", "normal", "normal"),
        scilocator_adjust=False,
    )


def _single(fig: Any, label: ExperimentLabel | None) -> Any:
    """The one panel of a figure, with the label over it."""
    ax = fig.add_subplot()
    _experiment(ax, label)
    return ax


def _shape(n: int, columns: int) -> tuple[int, int]:
    columns = max(1, min(columns, n))
    return columns, max(1, -(-n // columns))


def _size(n: int, columns: int, width: float, height: float) -> tuple[float, float]:
    """Figure size of `n` panels of `width` x `height` inches in rows of `columns`, with room for the title."""
    columns, rows = _shape(n, columns)
    return width * columns, height * rows + 0.6


def _grid(fig: Any, n: int, columns: int, label: ExperimentLabel | None) -> list[Any]:
    """`n` panels in rows of `columns` (no more columns than panels), under a header row that carries the label once
    across the whole width: its left text over the first column, its right one over the last."""
    columns, rows = _shape(n, columns)
    if label is None:
        grid = fig.add_gridspec(rows, columns)
        return [fig.add_subplot(grid[i // columns, i % columns]) for i in range(n)]
    grid = fig.add_gridspec(rows + 1, columns, height_ratios=[_HEADER] + [1] * rows)
    header = fig.add_subplot(grid[0, :])
    header.axis("off")
    _experiment(header, label, size=0.85)
    return [fig.add_subplot(grid[1 + i // columns, i % columns]) for i in range(n)]


def _integer_ticks(axis: Any) -> None:
    """Ticks at integers only (latent sizes, epochs): no z = 4.5."""
    from matplotlib.ticker import MaxNLocator, NullLocator

    axis.set_major_locator(MaxNLocator(nbins="auto", integer=True, steps=[1, 2, 5, 10]))
    axis.set_minor_locator(NullLocator())


def _integer_axis(ax: Any, values: list[int]) -> None:
    """An x axis of latent sizes: integer ticks, with room on either side even for a single value."""
    ticks = sorted(set(values))
    if ticks:
        ax.set_xlim(ticks[0] - 1, ticks[-1] + 1)
    _integer_ticks(ax.xaxis)


# --- histograms: hist.Hist from stored bin contents, drawn by mplhep -------------------------------------------------


def _grid_step(values: np.ndarray) -> float | None:
    """The spacing of a discrete variable's values: 1 for integers, the common step of values on a regular grid
    (areas in units of a ghost's), None for other sets."""
    v = np.unique(np.asarray(values, dtype=float))
    if len(v) and np.all(v == np.round(v)):
        return 1.0
    if len(v) < 2:
        return None
    step = float(np.min(np.diff(v)))
    k = (v - v[0]) / step
    return step if np.allclose(k, np.round(k), atol=1e-3) else None


def _candidates(values: np.ndarray, step: float | None, low: float, high: float) -> np.ndarray:
    """Every value a discrete variable may take in [low, high]: the points of its grid (`step`) through its known
    values, each snapped to the known value it stands for; without a grid, the known values."""
    v = np.unique(np.asarray(values, dtype=float))
    if step is None:
        return v[(v >= low) & (v <= high)]
    origin = v[0] if len(v) else 0.0
    k = np.arange(np.ceil((low - origin) / step - 1e-3), np.floor((high - origin) / step + 1e-3) + 1)  # float32 values: near the grid
    points = origin + step * k
    if len(v):
        nearest = v[np.clip(np.searchsorted(v, points), 0, len(v) - 1)]
        below = v[np.clip(np.searchsorted(v, points) - 1, 0, len(v) - 1)]
        nearest = np.where(np.abs(below - points) < np.abs(nearest - points), below, nearest)
        points = np.where(np.abs(nearest - points) < 1e-3 * step, nearest, points)
    return points


def _on_values(edges: np.ndarray, counts: Sequence[np.ndarray], candidates: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """Counts per discrete value from stored uniform bins, when every filled bin holds exactly one of the values
    (`np.histogram`'s bins: [a, b), the last one closed); None when a filled bin holds none or several."""
    inside = candidates[(candidates >= edges[0]) & (candidates <= edges[-1])]
    if not len(inside):
        return None
    index = np.minimum(np.searchsorted(edges, inside, side="right") - 1, len(edges) - 2)
    held = np.bincount(index, minlength=len(edges) - 1)
    filled = np.any(np.asarray(counts) > 0, axis=0)
    if np.any(held[filled] != 1):
        return None
    return inside, [np.asarray(c)[index] for c in counts]


def _value_axis(values: np.ndarray, step: float | None) -> Any:
    """One bin per discrete value, centred on it (integers: unit-wide bins from k - 1/2 to k + 1/2), with flow bins.

    A `hist.axis.Integer` would hold the same bins, but mplhep draws its bin k from k to k + 1: the value at a
    bin's left edge instead of its centre."""
    import hist

    if step is not None:
        return hist.axis.Regular(len(values), values[0] - step / 2, values[-1] + step / 2, underflow=True, overflow=True)
    if len(values) == 1:
        return hist.axis.Regular(1, values[0] - 0.5, values[0] + 0.5, underflow=True, overflow=True)
    middle = (values[1:] + values[:-1]) / 2
    edges = np.concatenate([[2 * values[0] - middle[0]], middle, [2 * values[-1] - middle[-1]]])
    return hist.axis.Variable(edges, underflow=True, overflow=True)


def _edges_axis(edges: np.ndarray) -> Any:
    """The stored binning as a hist axis with under- and overflow: regular when the edges are uniform."""
    import hist

    widths = np.diff(edges)
    if np.allclose(widths, widths[0], rtol=1e-6):
        return hist.axis.Regular(len(widths), edges[0], edges[-1], underflow=True, overflow=True)
    return hist.axis.Variable(edges, underflow=True, overflow=True)


def _hist(axis: Any, contents: np.ndarray, under: float = 0.0, over: float = 0.0, index: np.ndarray | None = None) -> Any:
    """A `hist.Hist` on `axis` holding `contents` (at the bins `index`, default all) and the flow given."""
    import hist

    h = hist.Hist(axis, storage=hist.storage.Double())
    view = np.zeros(len(axis) + 2)
    view[1 + (np.arange(len(axis)) if index is None else index)] = contents
    view[0], view[-1] = under, over
    h.view(flow=True)[...] = view
    return h


@dataclass
class _Stored:
    """Stored histograms of one variable as `hist.Hist`s on one axis, and the discrete values of its bins (if one per value)."""

    hists: list[Any]
    values: np.ndarray | None
    width: float  # the stored bins' width (one bin per value: the values' spacing, 0 if irregular)

    @property
    def per_value(self) -> bool:
        return self.values is not None

    @property
    def integers(self) -> bool:
        return self.values is not None and bool(np.all(self.values == np.round(self.values)))


def _stored(edges: np.ndarray, counts: Sequence[np.ndarray], candidates: np.ndarray | None = None, scale: float = 1.0) -> _Stored:
    """Stored bin contents (a trial's `hist_*`, `residual_counts`) as `hist.Hist`s.

    The trial stage keeps 50 uniform bins on the input's 0.5-99.5 % range with under- and overflow around them
    (counts of bins + 2 entries; older trial files have none). A discrete variable (its possible values in
    `candidates`) gets one bin per value when each filled stored bin holds exactly one value: exact, without the
    comb that uniform bins cut from integers.
    """
    edges = scale * np.asarray(edges, dtype=float)
    counts = [np.asarray(c, dtype=float) for c in counts]
    flow = len(counts[0]) == len(edges) + 1
    inner = [c[1:-1] for c in counts] if flow else counts
    under = [float(c[0]) if flow else 0.0 for c in counts]
    over = [float(c[-1]) if flow else 0.0 for c in counts]
    if candidates is not None:
        found = _on_values(edges, inner, scale * candidates)
        if found is not None:
            values, contents = found
            step = _regular_step(values)
            axis = _value_axis(values, step)
            index = axis.index(values)
            hists = [_hist(axis, c, u, o, index) for c, u, o in zip(contents, under, over, strict=True)]
            return _Stored(hists, values, step or 0.0)
    axis = _edges_axis(edges)
    return _Stored([_hist(axis, c, u, o) for c, u, o in zip(inner, under, over, strict=True)], None, float(edges[1] - edges[0]))


def _regular_step(values: np.ndarray) -> float | None:
    """The step of values that lie on a complete regular grid (consecutive integers, ghost-area units), else None."""
    if len(values) < 2:
        return 1.0 if len(values) and values[0] == np.round(values[0]) else None
    steps = np.diff(values)
    return float(np.mean(steps)) if np.allclose(steps, steps[0], rtol=1e-3) else None


def _draw_hists(ax: Any, hists: Sequence[Any], **style: Any) -> None:
    """Histograms drawn by mplhep, under- and overflow shown as extra bins beyond the axis where there are any."""
    import warnings

    import mplhep

    with warnings.catch_warnings():  # mplhep estimates errors it is not asked to draw, and warns that scipy is missing
        warnings.filterwarnings("ignore", message="Integer weights indicate poissonian data")
        mplhep.histplot(list(hists), ax=ax, flow="show", yerr=False, **style)
    _flow_ticks(ax)


def _flow_ticks(ax: Any) -> None:
    """mplhep labels a shown flow bin '<low' or '>high' at its centre, next to the regular ticks, whose labels it may
    then touch ('<80' '100'): the regular ticks are chosen again, none closer to a flow bin than 0.6 of their spacing."""
    from matplotlib.ticker import MaxNLocator

    labels = [t.get_text() for t in ax.get_xticklabels()]
    flow = {label[0]: (x, label) for x, label in zip(ax.get_xticks(), labels, strict=False) if label[:1] in ("<", ">")}
    if not flow:
        return
    low = float(flow["<"][1][1:]) if "<" in flow else ax.get_xlim()[0]
    high = float(flow[">"][1][1:]) if ">" in flow else ax.get_xlim()[1]
    regular = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)
    spacing = regular[1] - regular[0] if len(regular) > 1 else high - low
    kept = [x for x in regular if low <= x <= high and all(abs(x - centre) >= 0.6 * spacing for centre, _ in flow.values())]
    ticks = sorted([*kept, *(centre for centre, _ in flow.values())])
    names = {centre: f"{label[0]}{float(label[1:]):.3g}" for centre, label in flow.values()}  # '<12.3', not '<12.34567
    ax.set_xticks(ticks, [names.get(x, f"{x:g}") for x in ticks])


# --- the sweep's figures ------------------------------------------------------------------------------------------


def loss_vs_latent(
    best: pd.DataFrame, median: pd.DataFrame, path: Path, ranking: Ranking | None = None, *, label: Label = None, pdf: bool = False
) -> Path:
    """The sweep's yardstick (default: the reference-space MSE) of the best and median AE, and of PCA, versus z."""
    ranking = ranking or Ranking()
    pca = {"reference_mse": "pca_reference_mse", "val_loss": "pca_val_mse"}.get(ranking.rank_by)
    with _figure(path, (8, 6.5), pdf=pdf) as fig:
        ax = _single(fig, label)
        ax.plot(best["latent"], best["rank"], "o-", label="AE, best trial")
        ax.plot(median["latent"], median["rank"], "s--", label="AE, median trial")
        if pca:
            ax.plot(best["latent"], best[pca], "^:", color="grey", label="PCA")
        ax.set_yscale("log")
        ax.set_xlabel("Latent space dimension $z$")
        ax.set_ylabel(f"{ranking.label} (validation)")
        _integer_axis(ax, best["latent"].astype(int).tolist())
        ax.legend()
    return path


def grid_summary(
    frame: pd.DataFrame, best: pd.DataFrame, path: Path, ranking: Ranking | None = None, *, label: Label = None, pdf: bool = False
) -> Path:
    """Per latent dimension: the yardstick versus lr, one series per (bs, wd and any other key the grid varies, such
    as the normalisation), the best trial starred (thesis Fig. 2.13).

    A series keeps its look in every panel: its colour says the batch size, its marker the rest; one legend below
    the panels names each once (a legend per panel of 16 series hid the points and cost a third of the drawing)."""
    from matplotlib.lines import Line2D

    ranking = ranking or Ranking()
    done = ranked(frame)
    latents = sorted(done["latent"].astype(int).unique())
    axes = [column for column in done.columns if "." in column]  # the grid's other varied keys (dotted)
    colours, markers = _series_looks(done, axes)
    columns = min(3, len(latents))
    with _figure(path, _size(len(latents), columns, 6.0, 5.0), pdf=pdf) as fig:
        for ax, z in zip(_grid(fig, len(latents), columns, label), latents, strict=True):
            trials = done[done["latent"] == z]
            for key, series in trials.groupby(["batch_size", *_REST, *axes], sort=True, dropna=False):
                series = series.groupby("lr")["rank"].min()  # the seeds: the best trial at each lr
                ax.plot(series.index, series.values, "-", marker=markers[str(key[1:])][1], ms=5, color=colours[str(key[0])][1])
            star = best[best["latent"] == z]
            ax.plot(star["lr"], star["rank"], "*", ms=18, color="gold", markeredgecolor="k", zorder=5)
            losses = trials["rank"].dropna()
            wide = len(losses) and losses.max() > 10 * losses.min()  # log only where the values span decades
            ax.set(xscale="log", yscale="log" if wide else "linear", xlabel="Learning rate", ylabel=ranking.label)
            if not wide:
                ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
            ax.set_title(f"$z$ = {z}", fontsize="small")
        handles = [Line2D([], [], color=colour, label=name) for name, colour in colours.values()]
        handles += [Line2D([], [], ls="none", color="k", marker=marker, label=name) for name, marker in markers.values()]
        handles.append(Line2D([], [], ls="none", marker="*", ms=14, color="gold", markeredgecolor="k", label="best"))
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize="x-small")
    return path


#: What a grid-summary series' marker tells apart, besides the grid's own dotted keys: the weight decay.
_REST = ("weight_decay",)
_MARKERS = "osD^vPXph<>"


def _series_looks(done: pd.DataFrame, axes: list[str]) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """The name and colour of each batch size, and the name and marker of each combination of the other keys
    (cycled beyond ten of each), by the text of its key: a key may hold NaN, never equal to itself."""
    import matplotlib

    palette = [matplotlib.colors.to_hex(matplotlib.colormaps["tab10"](i)) for i in range(10)]
    keys = list(done.groupby(["batch_size", *_REST, *axes], sort=True, dropna=False).groups)
    sizes = {str(key[0]): f"bs {key[0]:g}" for key in keys}
    rests = {str(key[1:]): _series_name(key[1:], axes) for key in keys}
    colours = {text: (name, palette[i % len(palette)]) for i, (text, name) in enumerate(sizes.items())}
    return colours, {text: (name, _MARKERS[i % len(_MARKERS)]) for i, (text, name) in enumerate(rests.items())}


def _series_name(rest: tuple[Any, ...], axes: list[str]) -> str:
    """'wd 0.0001', then each other varied key ('wd 0, normalisation minmax')."""
    others = [f"{axis.split('.')[-1]} {value}" for axis, value in zip(axes, rest[1:], strict=True)]
    return ", ".join([f"wd {rest[0]:g}", *others])


def residuals_vs_latent(
    best: pd.DataFrame, evaluations: Evaluations, varset: VarSet, path: Path, *, label: Label = None, pdf: bool = False
) -> Path:
    """Per variable: median (marker) and 68 % half-width (bar) of the best AE's residual versus z (Fig. 2.18).

    Robust statistics: the mean and standard deviation of a relative residual explode on a few
    near-zero values (near-massless jets), and say nothing of the bulk.
    """
    n = len(varset.variables)
    with _figure(path, _size(n, 4, 3.8, 3.4), minor=n <= _MINOR_PANELS, pdf=pdf) as fig:
        for i, (ax, variable) in enumerate(zip(_grid(fig, n, 4, label), varset.variables, strict=True)):
            z, centre, width = [], [], []
            for _, trial in best.iterrows():
                stats = evaluations.get(trial["trial_id"], {}).get("validation", {}).get("residuals", {}).get(variable.name, {})
                if "width" in stats:
                    scale = _percent(stats["kind"])
                    z.append(int(trial["latent"]))
                    centre.append(scale * stats.get("median", stats["mean"]))
                    width.append(scale * stats["width"])
            ax.errorbar(z, centre, yerr=width, fmt="o", capsize=4, label="median $\\pm$ 68 % half-width")
            ax.axhline(0, color="grey", lw=0.8)
            _integer_axis(ax, z)
            ax.set_title(_symbol(variable.name), fontsize="small")
            ax.set_xlabel("$z$", fontsize="small")
            ax.set_ylabel(_residual_label(variable), fontsize="x-small")
            ax.tick_params(labelsize="x-small")
            if i == 0:
                ax.legend(fontsize="xx-small")
    return path


def training_curves(
    histories: dict[str, dict[str, np.ndarray]], path: Path, title: str = "", *, label: Label = None, pdf: bool = False
) -> Path:
    """Training (dashed) and validation (solid) loss per epoch of chosen trials (thesis Fig. 2.14)."""
    with _figure(path, (9, 6.5), title, pdf=pdf) as fig:
        ax = _single(fig, label)
        for name, history in histories.items():
            if "val_loss" not in history:
                continue
            epochs = np.arange(1, len(history["val_loss"]) + 1)
            (line,) = ax.plot(epochs, history["val_loss"], label=f"{name} validation")
            ax.plot(epochs, history["train_loss"], "--", color=line.get_color(), alpha=0.7, label=f"{name} training")
        ax.set(yscale="log", xlabel="Epoch", ylabel="MSE (normalised inputs)")
        _integer_ticks(ax.xaxis)
        ax.legend(fontsize="x-small", ncol=2)
    return path


def timing_vs_latent(best: pd.DataFrame, evaluations: Evaluations, path: Path, *, label: Label = None, pdf: bool = False) -> Path:
    """Encode and decode time per jet of the best AE versus z (thesis Fig. 2.19)."""
    rows = [(int(t["latent"]), evaluations.get(t["trial_id"], {}).get("validation", {}).get("timing", {})) for _, t in best.iterrows()]
    rows = [(z, timing) for z, timing in rows if timing]
    with _figure(path, (8, 6.5), pdf=pdf) as fig:
        ax = _single(fig, label)
        ax.plot([z for z, _ in rows], [t["encode_us_per_jet"] for _, t in rows], "o-", label="encode")
        ax.plot([z for z, _ in rows], [t["decode_us_per_jet"] for _, t in rows], "s--", label="decode")
        threads = sorted({t.get("threads") for _, t in rows}, key=str)
        ax.set(xlabel="Latent space dimension $z$", ylabel="Time per jet [$\\mu$s]", ylim=(0, None))
        _integer_axis(ax, [z for z, _ in rows])
        noun = "thread" if threads == [1] else "threads"
        ax.legend(title=f"batched, {', '.join(str(n) for n in threads)} CPU {noun}", title_fontsize="small")
    return path


def rate_distortion(
    best: pd.DataFrame, evaluations: Evaluations, varset: VarSet, path: Path, *, label: Label = None, pdf: bool = False
) -> Path:
    """Bytes per jet versus residual width of pt and m: AE and PCA per z (float16 latents), each best trial's own
    compressor (what `hpcsweep compress` writes), float truncation, and the error-bounded compressors (SZ3, ZFP,
    fpzip, mantissa + zstd) when the evaluation holds them."""
    momentum = [varset.four_momentum.get("pt"), varset.four_momentum.get("mass")]
    shown = [name for name in momentum if name] or varset.names[:2]
    with _figure(path, _size(len(shown), len(shown), 6.5, 6.0), pdf=pdf) as fig:
        for ax, name in zip(_grid(fig, len(shown), len(shown), label), shown, strict=True):
            variable = next(v for v in varset.variables if v.name == name)
            scale = _percent(variable.residual)
            ae, pca, cut, bounded = [], [], [], []
            for _, trial in best.iterrows():
                validation = evaluations.get(trial["trial_id"], {}).get("validation", {})
                if "residuals" not in validation or "compression" not in validation:
                    continue
                latent_bytes = validation["compression"]["latent_float16"]
                ae.append((latent_bytes, scale * validation["residuals"][name]["width"], int(trial["latent"])))
                pca.append((latent_bytes, scale * validation["baselines"]["pca"]["residuals"][name]["width"]))
                if "compressor" in validation:
                    result = validation["compressor"]
                    bounded.append((result["bytes_per_jet"], scale * result["residuals"][name]["width"], result["bound"]))
                cut = [
                    (b["bytes_per_jet"], scale * b["width"][name], b["mantissa_bits"])
                    for b in validation["baselines"].get("truncation", [])
                ]
                half = validation["baselines"]["float16"]
            if ae:
                ax.plot([p[0] for p in ae], [p[1] for p in ae], "o-", label="AE (best per $z$)")
                for x, y, z in ae:
                    ax.annotate(f"$z$ = {z}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
                ax.plot([p[0] for p in pca], [p[1] for p in pca], "^:", color="grey", label="PCA, same $z$")
                if bounded:
                    ax.plot([p[0] for p in bounded], [p[1] for p in bounded], "o--", mfc="none",
                            label=f"its compressor (hpcsweep compress), every value within {100 * bounded[0][2]:g} %")  # fmt: skip
                if cut:
                    ax.plot([p[0] for p in cut], [p[1] for p in cut], "s--", label="float32, mantissa rounded")
                ax.plot([half["bytes_per_jet"]], [scale * half["residuals"][name]["width"]], "D", label="float16")
                for (peer, result), marker in zip(validation["baselines"].get("peers", {}).items(), "Pvhp", strict=False):
                    width = scale * result["residuals"][name]["width"]
                    ax.plot([result["bytes_per_jet"]], [width], marker, label=f"{peer}, every value within {100 * result['bound']:g} %")
            ax.set(yscale="log", xlabel="Bytes per jet")
            ax.set_title(_symbol(name), fontsize="small")
            ax.set_ylabel(f"68 % half-width of {_residual_label(variable)}", fontsize="small")
        handles, names = ax.get_legend_handles_labels()  # the same entries in every panel: one legend, below them all
        fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize="x-small")  # never over a point
    return path


def compression(
    picks: pd.DataFrame, frame: pd.DataFrame, evaluations: Evaluations, bound: float, path: Path, *, label: Label = None, pdf: bool = False
) -> Path:
    """What `hpcsweep compress` writes at `bound`, in bytes per jet (the compressor itself spread over 1M jets).

    Left: versus z, the fewest-bytes trial of each autoencoder kind per z, the learned coder alone (z = 0, a line
    across), and the peers on the same jets (dashed; those beyond 1.2x SZ3 named in the legend only). Right: every
    autoencoder trial's latents against its coded residuals, coloured by z, with lines of equal total through the
    coder alone: where the latents pay for themselves. The trials no other beats in both are labelled by rate weight
    (a label per trial buried a sweep of hundreds under its text).
    """
    done = frame[(frame["state"] == TrialState.DONE) & frame["bytes_per_jet"].notna()]
    networks = done[done["kind"] != "codec"]
    alone = picks[picks["kind"] == "codec"]
    peers: dict[str, Any] = next(
        (e["validation"].get("baselines", {}).get("peers", {}) for e in evaluations.values() if "validation" in e), {}
    )
    peers = {peer: result for peer, result in peers.items() if abs(result["bound"] - bound) <= 1e-12}
    ceiling = 1.2 * max([peers["SZ3"]["bytes_per_jet"]] if "SZ3" in peers else [*done["bytes_per_jet"].astype(float), 1.0])
    with _figure(path, _size(2, 2, 7.0, 6.0), pdf=pdf) as fig:
        left, right = _grid(fig, 2, 2, label)
        for kind, trials in networks.groupby("kind", sort=True):
            fewest = trials.groupby("latent")["bytes_per_jet"].min()
            left.plot(
                fewest.index,
                fewest.values,
                "o-",
                label=f"{'sparse AE' if kind == 'sparse' else kind.upper()}: rounded latents + coded residuals",
            )
        if len(alone):
            size = float(alone["bytes_per_jet"].min())
            left.axhline(size, color="k", lw=2, label=f"learned coder alone ({size:.2f})")
            left.plot([0], [size], "ks")
        for (peer, result), style in zip(peers.items(), ("--", "-.", ":", (0, (5, 2, 1, 2))), strict=False):
            size = result["bytes_per_jet"]
            if size <= ceiling:
                left.axhline(size, ls=style, color="grey", label=f"{peer} ({size:.2f})")
            else:
                left.plot([], [], ls=style, color="grey", label=f"{peer} ({size:.2f}, off the scale)")
        left.set(xlabel="Latent space dimension $z$ (0: no autoencoder)", ylabel=f"Bytes per jet, every value within {100 * bound:g} %",
                 ylim=(0, ceiling))  # fmt: skip
        _integer_axis(left, [0, *networks["latent"].astype(int).tolist()])
        left.legend(fontsize="x-small", loc="lower right")
        if len(networks):
            latents = networks["latent_per_jet"].astype(float)
            residuals = networks["payload_per_jet"].astype(float) - latents
            dots = right.scatter(latents, residuals, c=networks["latent"].astype(float), cmap="viridis", s=30, zorder=3)
            fig.colorbar(dots, ax=right, label="$z$")
            for x, y, rate in _frontier(latents, residuals, networks["rate_lambda"].fillna(0.0)):
                right.annotate(f"{rate:g}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize="xx-small")
        reference = float(alone["payload_per_jet"].min()) if len(alone) else float(done["payload_per_jet"].min())
        if len(alone):
            right.plot([0], [reference], "ks", ms=9, label="learned coder alone", zorder=4)
            right.legend(fontsize="x-small", title="labels: rate weight", title_fontsize="x-small")
        high = max(1.0, float(networks["latent_per_jet"].max()) * 1.1 if len(networks) else 1.0)
        for extra in (0.0, 0.5, 1.0):
            total = reference + extra
            right.plot([0, high], [total, total - high], ":", color="grey", lw=1)
            right.annotate(f"{total:.1f} B/jet in all", (high, total - high), fontsize="xx-small", color="grey", ha="right", va="bottom")
        right.set(xlabel="Latents (bytes per jet)", ylabel="Coded residuals (bytes per jet)", xlim=(-0.05 * high, high))
    return path


def _frontier(x: pd.Series, y: pd.Series, labels: pd.Series) -> list[tuple[float, float, Any]]:
    """The points (x, y, label) that no other point beats in both x and y (fewer bytes of latents and of residuals),
    each place and label once."""
    points = sorted(set(zip(x.astype(float), y.astype(float), labels, strict=True)), key=lambda p: (p[0], p[1], str(p[2])))
    front, lowest = [], np.inf
    for point in points:  # by x: a point is on the front when it is below every point left of it
        if point[1] < lowest:
            front.append(point)
            lowest = point[1]
    return front


def roc_curves(curves: dict[int, dict[str, np.ndarray]], path: Path, *, label: Label = None, pdf: bool = False) -> Path:
    """Background rejection (1/efficiency) versus signal efficiency of the reconstruction error, one panel per
    signal, one curve per latent dimension (the best trial's)."""
    signals = sorted({k.split("/")[0] for arrays in curves.values() for k in arrays if k.endswith("/roc_signal_efficiency")})
    columns = min(len(signals), 3)
    with _figure(path, _size(len(signals), columns, 5.5, 5.0), pdf=pdf) as fig:
        for ax, signal in zip(_grid(fig, len(signals), columns, label), signals, strict=True):
            for latent, arrays in sorted(curves.items()):
                if f"{signal}/roc_signal_efficiency" not in arrays:
                    continue
                efficiency, background = arrays[f"{signal}/roc_signal_efficiency"], arrays[f"{signal}/roc_background_efficiency"]
                keep = background > 0
                ax.plot(efficiency[keep], 1 / background[keep], label=f"$z$ = {int(latent)}")
            ax.plot([0, 1], [1, 1], ":", color="grey", label="no separation")
            ax.set(yscale="log", xlabel="Signal efficiency", ylabel="Background rejection (1/efficiency)", xlim=(0, 1))
            ax.legend(fontsize="x-small", title=_signal_name(signal), title_fontsize="small")
    return path


# --- one trial's figures ------------------------------------------------------------------------------------------


def _candidates_of(variable: Variable, discrete: dict[str, np.ndarray] | None, low: float, high: float) -> np.ndarray | None:
    """The values a discrete variable's input may take in [low, high] (None: continuous, or values not stored)."""
    if not variable.discrete or not discrete or variable.name not in discrete:
        return None
    values = np.asarray(discrete[variable.name], dtype=float)
    return _candidates(values, _grid_step(values), low, high)


def _residual_candidates(variable: Variable, discrete: dict[str, np.ndarray] | None, low: float, high: float) -> np.ndarray | None:
    """The values an absolute residual of a discrete variable may take: multiples of its values' spacing."""
    if variable.residual != "absolute" or not variable.discrete or not discrete or variable.name not in discrete:
        return None
    step = _grid_step(np.asarray(discrete[variable.name], dtype=float))
    return None if step is None else _candidates(np.zeros(1), step, low, high)


def inputs_vs_decoded(
    arrays: Arrays, varset: VarSet, path: Path, title: str, *, discrete: Arrays | None = None, label: Label = None, pdf: bool = False
) -> Path:
    """Input and decoded distributions of every variable, with a decoded/input ratio panel (Figs. 2.15/2.16).

    `discrete`: the values of the discrete variables (a trial's `discrete/<name>` arrays), which then get one bin
    per value."""
    from matplotlib.ticker import NullLocator

    edges, before, after = arrays["hist_edges"], arrays["hist_original"], arrays["hist_decoded"]
    n = len(varset.variables)
    with _figure(path, _size(n, 4, 4.2, 4.3), title, minor=n <= _MINOR_PANELS, pdf=pdf) as fig:
        for i, (cell, variable) in enumerate(zip(_grid(fig, n, 4, label), varset.variables, strict=True)):
            stored = _stored(edges[i], [before[i], after[i]], _candidates_of(variable, discrete, edges[i][0], edges[i][-1]))
            # The layout places the cell; the distribution and its ratio panel fill it, touching. (A ratio panel hung
            # below the distribution's axes would grow with them, which constrained layout does not converge on.)
            cell.axis("off")
            top = cell.inset_axes((0.0, 0.27, 1.0, 0.73))
            ratio_panel = cell.inset_axes((0.0, 0.0, 1.0, 0.27), sharex=top)
            top.tick_params(labelbottom=False, labelsize="x-small")
            _draw_hists(top, stored.hists, label=["Input", "Decoded"], color=["k", "tab:red"])
            top.set_yscale("log")
            top.yaxis.set_minor_locator(NullLocator())
            noun = "Jets" if stored.per_value else _per_bin("Jets", stored.width, variable.unit)
            top.set_ylabel(noun, fontsize="small")
            source, decoded = (h.values(flow=True) for h in stored.hists)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(source > 0, decoded / source, np.nan)
            ratio[[0, -1]] = np.nan_to_num(ratio[[0, -1]])  # no flow: no flow bin
            ratio_hist = stored.hists[0].copy()
            ratio_hist.view(flow=True)[...] = ratio
            _draw_hists(ratio_panel, [ratio_hist], color="tab:red", edges=False)
            ratio_panel.axhline(1, color="grey", lw=0.8)
            ratio_panel.set_ylim(0.5, 1.5)
            ratio_panel.set_yticks([0.75, 1.0, 1.25])
            ratio_panel.set_xlabel(_axis_label(variable), fontsize="small")
            ratio_panel.set_ylabel("Out / in", fontsize="x-small")
            ratio_panel.tick_params(labelsize="x-small")
            if stored.integers:
                _integer_ticks(ratio_panel.xaxis)
            if i == 0:
                top.legend(fontsize="x-small")
    return path


def residual_histograms(
    arrays: Arrays, varset: VarSet, path: Path, title: str, *, discrete: Arrays | None = None, label: Label = None, pdf: bool = False
) -> Path:
    """Residual distribution of every variable (0.5-99.5 % range), relative ones in percent; integer-valued
    discrete variables (whose residuals are integers) get one bin per value."""
    n = len(varset.variables)
    with _figure(path, _size(n, 4, 3.8, 3.2), title, minor=n <= _MINOR_PANELS, pdf=pdf) as fig:
        for i, (ax, variable) in enumerate(zip(_grid(fig, n, 4, label), varset.variables, strict=True)):
            edges = arrays["residual_edges"][i]
            candidates = _residual_candidates(variable, discrete, edges[0], edges[-1])
            stored = _stored(edges, [arrays["residual_counts"][i]], candidates, scale=_percent(variable.residual))
            _draw_hists(ax, stored.hists, histtype="fill", color="tab:blue", alpha=0.6)
            ax.set_title(_symbol(variable.name), fontsize="small")
            ax.set_xlabel(_residual_label(variable), fontsize="x-small")
            unit = "%" if variable.residual == "relative" else variable.unit
            ax.set_ylabel("Jets" if stored.per_value else _per_bin("Jets", stored.width, unit), fontsize="x-small")
            ax.tick_params(labelsize="x-small")
            if stored.integers:
                _integer_ticks(ax.xaxis)
    return path


def residual_corner(
    arrays: dict[str, np.ndarray], varset: VarSet, path: Path, title: str, *, label: Label = None, pdf: bool = False
) -> Path:
    """Corner plot of residual pairs over a sample of jets; each cell's background is the correlation
    coefficient on the whole validation set (thesis Figs. 2.7/2.17). Drawn in one axes: fast at 27 variables."""
    correlation, sample = arrays["residual_correlation"], arrays["residual_sample"].astype(float)
    n = len(varset.variables)
    low, high = arrays["residual_edges"][:, 0], arrays["residual_edges"][:, -1]
    unit = np.clip((sample - low) / np.where(high > low, high - low, 1), 0, 1)  # each variable's range -> [0, 1]
    with _figure(path, (0.55 * n + 4, 0.55 * n + 3), title, pdf=pdf) as fig:
        ax = _single(fig, label)
        shown = np.where(np.tril(np.ones((n, n), bool), -1), correlation, np.nan)
        image = ax.imshow(shown, extent=(0, n, n, 0), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        xs, ys = [], []
        for row in range(n):
            for column in range(row):
                keep = np.isfinite(unit[:, column]) & np.isfinite(unit[:, row])
                xs.append(column + 0.05 + 0.9 * unit[keep, column])
                ys.append(row + 0.95 - 0.9 * unit[keep, row])
        if xs:
            ax.scatter(np.concatenate(xs), np.concatenate(ys), s=0.3, c="k", alpha=0.4, linewidths=0, rasterized=True)
        for i in range(n):
            counts = arrays["residual_counts"][i].astype(float)
            counts = counts[1:-1] if len(counts) == arrays["residual_edges"].shape[1] + 1 else counts  # stored with flow bins
            heights = 0.9 * counts / counts.max() if counts.max() > 0 else counts
            ax.stairs(i + 0.95 - heights, i + np.linspace(0.05, 0.95, len(counts) + 1), baseline=i + 0.95, color="tab:blue")
        names = [_symbol(v.name) for v in varset.variables]
        ax.set_xticks(np.arange(n) + 0.5, names, rotation=90, fontsize="x-small")
        ax.set_yticks(np.arange(n) + 0.5, names, fontsize="x-small")
        ax.set(xlim=(0, n), ylim=(n, 0))
        ax.tick_params(which="minor", length=0)
        fig.colorbar(image, ax=ax, shrink=0.6, label="Correlation of residuals")
    return path


def _nice_step(span: float, bins: int) -> float:
    """A round bin width (1, 2, 2.5 or 5 times a power of ten) near span / bins."""
    raw = span / bins if span > 0 else 1.0
    power = 10 ** np.floor(np.log10(raw))
    return float(power * min((m for m in (1, 2, 2.5, 5, 10) if m * power >= raw), default=10))


def dijet_mass(
    arrays: dict[str, Arrays], closures: dict[str, dict[str, float]], path: Path, title: str, *, label: Label = None, pdf: bool = False
) -> Path:
    """Dijet mass of the two leading jets before and after compression, per signal sample (Figs. 2.20/2.21): round
    bins over the input's 1-99 % range, the events beyond it in under- and overflow bins."""
    import hist

    signals = sorted(arrays)
    with _figure(path, _size(len(signals), len(signals), 7.0, 6.0), title, pdf=pdf) as fig:
        for ax, signal in zip(_grid(fig, len(signals), len(signals), label), signals, strict=True):
            before, after, closure = arrays[signal]["dijet_original"], arrays[signal]["dijet_decoded"], closures[signal]
            low, high = np.percentile(before, [1, 99]) if len(before) else (0.0, 1.0)
            width = _nice_step(high - low, 60)
            low, high = width * np.floor(low / width), width * np.ceil(high / width)
            axis = hist.axis.Regular(max(1, round((high - low) / width)), low, high, underflow=True, overflow=True)
            filled: list[Any] = [hist.Hist(axis).fill(before), hist.Hist(axis).fill(after)]
            _draw_hists(ax, filled, color=["k", "tab:red"], lw=1.5, label=[
                f"Input: peak {closure['peak_original']:.1f} GeV, width {closure['width_original']:.1f} GeV",
                f"Decoded: peak {closure['peak_decoded']:.1f} GeV ({closure['peak_shift_pct']:+.2f} %),\n"
                f"width {closure['width_decoded']:.1f} GeV ({closure['width_change_pct']:+.1f} %)",
            ])  # fmt: skip
            ax.set(xlabel="$m_{jj}$ [GeV]", ylabel=_per_bin("Events", width, "GeV"))
            ax.set_ylim(0, 1.5 * ax.get_ylim()[1])
            ax.legend(fontsize="x-small", loc="upper left", title=_signal_name(signal), title_fontsize="small")
    return path


def rerun_curves(curves: dict[str, dict[str, dict[str, np.ndarray]]], path: Path, *, label: Label = None, pdf: bool = False) -> Path:
    """Validation loss per epoch of each rerun (seed) of each config, one panel per config."""
    columns = min(3, len(curves))
    with _figure(path, _size(len(curves), columns, 5.5, 5.0), pdf=pdf) as fig:
        for ax, (config, runs) in zip(_grid(fig, len(curves), columns, label), curves.items(), strict=True):
            for seed, history in runs.items():
                ax.plot(np.arange(1, len(history["val_loss"]) + 1), history["val_loss"], label=seed)
            ax.set(yscale="log", xlabel="Epoch", ylabel="Validation MSE")
            _integer_ticks(ax.xaxis)
            ax.legend(fontsize="x-small", title=config, title_fontsize="x-small")
    return path

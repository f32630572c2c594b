"""One self-contained HTML page per sweep: tables, figures (embedded PNG), definition, states, trial links.

It opens from disk with no server and no internet: the figures are data URIs, the style is inline,
and the links (PDF figures, CSV/LaTeX tables, trial files) are relative to `report/`.
"""

from __future__ import annotations

import base64
import html
import os
import re
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from hpcsweep import __version__
from hpcsweep.config import SweepConfig
from hpcsweep.files import write_atomically
from hpcsweep.review.aggregator import Review, aggregate
from hpcsweep.states import TrialState
from hpcsweep.store import TRIALS
from hpcsweep.sweep import kept_sweep, plan

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; } th { background: #f2f2f2; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0 2em; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
.headline { background: #eef6ee; border-left: 4px solid #2a8a2a; padding: 0.5em 1em; margin: 0.4em 0; }
.warning { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.5em 1em; margin: 0.4em 0; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; } nav a { margin-right: 1em; }
"""


def report_sweep(results_dir: Path) -> tuple[Review, Path]:
    """Aggregate a sweep's folder and write its report (`write_report`) with the sweep file it keeps (sweep.yaml) and
    its trials' states: those of the definition it keeps, else those of its files. Returns the review and the page."""
    review = aggregate(results_dir)
    definition = kept_sweep(results_dir)
    states = _definition_states(definition, results_dir) if definition else dict(Counter(review.frame["state"]))
    kept = results_dir / "sweep.yaml"
    return review, write_report(review, kept.read_text() if kept.is_file() else "", states)


def _definition_states(sweep: SweepConfig, results_dir: Path) -> dict[str, int]:
    """The sweep definition's trials counted by state (pending: no trial file yet)."""
    counts = plan(sweep, results_dir).counts()
    return {str(state): counts[state] for state in TrialState if counts[state]}


def write_report(review: Review, definition: str, states: dict[str, int]) -> Path:
    """Write `report/index.html` for `review` (atomically) and return its path.

    `definition` is the sweep file's text, `states` the count of the definition's trials by state. Whatever
    comes from a trial file (config keys and values, names, labels) is escaped: anybody sharing the folder writes them.
    """
    folder = review.results_dir / "report"
    folder.mkdir(parents=True, exist_ok=True)
    ids: set[str] = set()  # the tables' heading ids, unique on the page
    data = {stem for stem in ("data_versions", "evaluations") if stem in review.tables}  # what was read, and what else was evaluated
    sections = [
        ("states", "Trials by state", _states(states)),
        *[("data", "Data", "".join(_table(stem, *review.tables[stem], review.table_files.get(stem), folder, ids) for stem in sorted(data)))]
        * bool(data),
        (
            "tables",
            "Tables",
            "".join(
                _table(stem, title, table, review.table_files.get(stem), folder, ids)
                for stem, (title, table) in review.tables.items()
                if stem not in data
            )
            or "<p>No tables yet.</p>",
        ),
        *_figure_sections(review),
        ("definition", "Sweep definition", f"<pre>{html.escape(definition or '(no sweep file kept with the results)')}</pre>"),
        ("trials", "Trial files", _trials(review.frame)),
    ]
    name = html.escape(review.results_dir.name)
    page = (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>hpcsweep report: {name}</title>"
        f"<style>{_STYLE}</style></head><body>\n<h1>Sweep {name}</h1>\n"
        f"<p>Made by hpcsweep {__version__} on {time.strftime('%Y-%m-%d %H:%M')} from {len(review.frame)} trial files.</p>\n"
        + "".join(f"<p class='headline'><strong>{html.escape(line)}</strong></p>\n" for line in review.headlines)
        + "".join(f"<div class='warning'>{html.escape(w)}</div>\n" for w in review.warnings)
        + "<nav>" + "".join(f"<a href='#{key}'>{html.escape(title)}</a>" for key, title, _ in sections) + "</nav>\n"
        + "".join(f"<h2 id='{key}'>{html.escape(title)}</h2>\n{body}\n" for key, title, body in sections)
        + "</body></html>\n"
    )  # fmt: skip
    path = folder / "index.html"
    write_atomically(path, page)
    return path


def _states(states: dict[str, int]) -> str:
    rows = "".join(f"<tr><td>{html.escape(s)}</td><td>{n}</td></tr>" for s, n in states.items())
    missing = {
        TrialState.PENDING: "never started: no trial file yet",
        TrialState.LOST: "started, but their job ended without a trial file (killed, or the file was removed)",
        TrialState.FAILED: "failed: their files say why",
    }
    notes = "".join(f"<li>{states[s]} {s}: {why}</li>" for s, why in missing.items() if states.get(s))
    again = f"<p>Missing from the tables:</p><ul>{notes}</ul><p>Running the sweep again runs these.</p>" if notes else ""
    return f"<table><tr><th>state</th><th>trials</th></tr>{rows}</table>{again}"


def _table(stem: str, title: str, table: pd.DataFrame, files: Path | None, report: Path, ids: set[str]) -> str:
    """A table with links to its CSV, LaTeX and Markdown files (relative to the report's folder)."""
    links = " ".join(
        f"<a href='{_href(*Path(os.path.relpath(files.with_suffix('.' + ext), report)).parts)}'>{ext.upper()}</a>" for ext in ("csv", "tex", "md")
    ) if files else ""  # fmt: skip
    body = _html_table(table) if len(table) else "<p>(no rows)</p>"
    return f"<h3 id='{_unique_id(f'table-{stem}', ids)}'>{html.escape(title)}</h3><p>{links}</p>{body}"


def _html_table(table: pd.DataFrame) -> str:
    """A table with every header and cell escaped, quotes included (pandas' `to_html` leaves them)."""
    header = "".join(f"<th>{_text(column)}</th>" for column in table.columns)
    rows = "".join("<tr>" + "".join(f"<td>{_text(value)}</td>" for value in row) + "</tr>" for row in table.itertuples(index=False))
    return f"<table><tr>{header}</tr>{rows}</table>"


def _text(value: object) -> str:
    """A cell's value as escaped text; missing (None, NaN) as nothing."""
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else html.escape(str(value))


def _unique_id(text: str, taken: set[str]) -> str:
    """An HTML id made of `text` (a table's stem holds a config key of a trial file): lower-case letters, digits
    and '-' only, so nothing breaks out of the attribute; a counter tells apart texts that give the same id."""
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "id"
    found, n = base, 1
    while found in taken:
        n += 1
        found = f"{base}-{n}"
    taken.add(found)
    return found


def _href(*parts: str) -> str:
    """A relative link of path `parts`, each percent-encoded (a '/' in a trial id stays in its part) and the whole
    escaped for a quoted attribute."""
    return html.escape("/".join(quote(part, safe="") for part in parts))


def _figure_sections(review: Review) -> list[tuple[str, str, str]]:
    """Each figure embedded as its PNG, captioned, with a link to its PDF where one was written (`aggregate --pdf`)."""
    sections: dict[str, list[str]] = {}
    for figure in review.figures:
        png = figure.path.with_suffix(".png")
        data = base64.b64encode(png.read_bytes()).decode()
        pdf = figure.path.with_suffix(".pdf")
        link = f" (<a href='{_href('..', 'figures', pdf.name)}'>PDF</a>)" if pdf.exists() else ""
        sections.setdefault(figure.section, []).append(
            f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(figure.title)}'>"
            f"<figcaption>{html.escape(figure.title)}{link}</figcaption></figure>"
        )
    return [(f"figures-{i}", title, "".join(items)) for i, (title, items) in enumerate(sections.items())]


def _trials(frame: pd.DataFrame) -> str:
    """Every trial file with its state, grid values (every varied axis included) and yardstick."""
    if not len(frame):
        return "<p>No trial files.</p>"
    axes = [column for column in frame.columns if "." in column]  # varied config keys, e.g. data.normalisation
    rows = "".join(
        f"<tr><td><a href='{_href('..', TRIALS, str(t['trial_id']) + '.h5')}'>{_text(t['trial_id'])}</a></td><td>{_text(t['state'])}</td>"
        f"<td>{_number(t['latent'], 'd')}</td><td>{_number(t['batch_size'], 'd')}</td><td>{_number(t['lr'], 'g')}</td>"
        f"<td>{_number(t['weight_decay'], 'g')}</td><td>{_number(t['seed'], 'd')}</td>"
        + "".join(f"<td>{_text(t[a])}</td>" for a in axes)
        + f"<td>{_number(t['val_mse'], '.3e')}</td><td>{_number(t['reference_mse'], '.3e')}</td><td>{html.escape(str(t['failure'] or ''))}</td></tr>"
        for _, t in frame.iterrows()
    )
    names = (
        "trial file",
        "state",
        "z",
        "batch size",
        "lr",
        "wd",
        "seed",
        *axes,
        "val loss (own normalisation)",
        "reference MSE",
        "failure",
    )
    header = "".join(f"<th>{html.escape(h)}</th>" for h in names)
    return f"<details open><summary>{len(frame)} trial files</summary><table><tr>{header}</tr>{rows}</table></details>"


def _number(value: float | None, spec: str) -> str:
    if value is None or pd.isna(value):
        return ""
    return format(int(value) if spec == "d" else float(value), spec)

"""Review stage: tables, figures and the report of a sweep, built from its trial files (no torch; weights are read
only once per new or changed file, when the store's scan checks its checksum).

`aggregate` writes into the sweep's results folder: `tables/` (Markdown, CSV, LaTeX), `figures/` (PNG, PDF),
`summary.md` (every table) and `trials.csv`; `write_report` adds `report/index.html` (`report_sweep`: both).
"""

from hpcsweep.review.aggregator import Figure, Review, Selection, aggregate, select
from hpcsweep.review.report import report_sweep, write_report
from hpcsweep.review.results import SweepResults

__all__ = ["Figure", "Review", "Selection", "SweepResults", "aggregate", "report_sweep", "select", "write_report"]

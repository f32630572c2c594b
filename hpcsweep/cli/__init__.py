"""The command line: parses, calls one stage, prints. User mistakes exit with status 2 in one line.

`app` assembles the parser from the command groups, one module each: `sweep` (sweep, status, rerun-best), `review`
(aggregate, report, export-tracking), `evaluate`, `compress` (export, compress, decompress, score) and `data`; the
options several take are in `options`, what their commands share in `common`. Stage code is imported inside each
command, so that `hpcsweep --help` (and this import) stays light.
"""

from hpcsweep.cli.app import build_parser, main

__all__ = ["build_parser", "main"]

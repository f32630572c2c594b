"""The data commands: data generate (Pythia + FastJet), inspect (a file of one's own), info (as a sweep reads it), varsets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import get_args

from hpcsweep.cli.common import print_rows
from hpcsweep.cli.options import add_command, input_file
from hpcsweep.config import Process
from hpcsweep.errors import UserError


def add_data(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="generate and inspect jet data",
                               description="Jets for sweeps: simulate them (generate), see what a ROOT or Parquet file of one's "
                                           "own holds and draft a variable set for it (inspect), read it as a sweep would (info), "
                                           "list the built-in sets (varsets).")  # fmt: skip
    data_commands = data.add_subparsers(title="data commands", metavar="COMMAND")
    for add in (_add_generate, _add_inspect, _add_info, _add_varsets):
        add(data_commands)

    def data_help(_: argparse.Namespace) -> int:
        data.print_help()
        return 2

    data.set_defaults(handler=data_help)


def _add_generate(commands: argparse._SubParsersAction) -> None:
    generate = add_command(commands, "generate", "simulate jets with Pythia 8 + FastJet into a ROOT file", cmd_generate)
    generate.add_argument("--process", choices=get_args(Process), default="qcd", help="QCD dijets (background) or Z' -> q qbar (signal)")
    generate.add_argument("--mass", type=float, default=350.0, metavar="GEV", help="Z' mass (default 350)")
    generate.add_argument("--events", type=int, default=10000, metavar="N", help="events to simulate (default 10000)")
    generate.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    generate.add_argument("--workers", type=int, metavar="N", help="parallel processes (default: all cores)")
    generate.add_argument("--out", metavar="DIR", help="output folder (default: $HPCSWEEP_DATA/generated, else data/generated)")


def _add_inspect(commands: argparse._SubParsersAction) -> None:
    inspect = add_command(
        commands,
        "inspect",
        "what a ROOT or Parquet file holds: tables, branches, types, ranges; --draft-varset writes a variable set to edit",
        cmd_inspect,
    )
    inspect.add_argument("file", type=input_file, help="a ROOT or Parquet file")
    inspect.add_argument("--tree", help="only this TTree or RNTuple")
    inspect.add_argument("--max-entries", type=int, metavar="N", help="statistics of the first N entries of each table (default: all)")
    inspect.add_argument("--draft-varset", metavar="OUT.yaml", help="write a variable set drafted from the (only, or --tree) table")


def _add_info(commands: argparse._SubParsersAction) -> None:
    info = add_command(commands, "info", "describe a jet file as a variable set sees it (counts, ranges, cuts, dijet mass)", cmd_info)
    info.add_argument("file", help="a ROOT or Parquet file, or a glob of several")
    info.add_argument(
        "--varset", default="generated", help="a built-in set (see 'hpcsweep data varsets') or a YAML file; default generated"
    )
    info.add_argument("--tree", help="tree name (default: the variable set's, or the only tree)")


def _add_varsets(commands: argparse._SubParsersAction) -> None:
    add_command(commands, "varsets", "list the built-in variable sets", cmd_varsets)


def cmd_generate(args: argparse.Namespace) -> int:
    """pp at 13 TeV, anti-kt R=0.4 jets with pt > 20 GeV, 24 variables per jet. Cached: the same sample is generated once."""
    from pydantic import ValidationError

    from hpcsweep.config import DataConfig
    from hpcsweep.data import data_root
    from hpcsweep.data.generate import Sample, generate
    from hpcsweep.errors import one_line

    try:
        DataConfig.model_validate({"events": args.events})  # at least 1, and not years of generation
    except ValidationError as err:
        raise UserError(one_line(err, "--events", DataConfig).replace("--events: events: ", "--events: ")) from None
    sample = Sample(args.process, args.events, args.seed, args.mass)
    out = Path(args.out) if args.out else data_root() / "generated"
    path = generate(sample, out, workers=args.workers)
    print(path)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Every TTree and RNTuple of a ROOT file (or the table of a Parquet file): entries, branches with types, jagged or
    flat, and one pass of statistics (values, min, max, NaN/inf, negative, distinct). With --draft-varset, a variable
    set guessed from names and values, to check and edit."""
    from hpcsweep.data.inspect import describe, inspect_file, write_draft

    tables = inspect_file(args.file, tree=args.tree, max_entries=args.max_entries, progress=sys.stderr.isatty())
    for title, header, rows in describe(tables):
        print_rows(title, header, rows)
    if args.draft_varset:
        out = Path(args.draft_varset)
        write_draft(args.file, tables, out)
        print(f"drafted {out}: check it (the comments at its top say what to check), then use it in a sweep as data.varset: {out}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Read a ROOT or Parquet file (or several: a glob) with a variable set, as a sweep would: jets and events, each
    variable's range, what each cleaning step removed, and the dijet-mass peak when the set has a four-momentum."""
    from hpcsweep.data import file_info

    info = file_info(args.file, args.varset, args.tree)
    print(f"{args.file}: {len(info.table):,} jets in {info.events():,} events with jets; "
          f"variable set {info.varset.name!r} ({len(info.varset.names)} variables)")  # fmt: skip
    rows = [[name, *(f"{x:.4g}" for x in at)] if at else [name, "", "", ""] for name, at in info.ranges().items()]
    print_rows("variables", ["variable", "min", "mean", "max"], rows)
    cuts = [[c.name, c.expression, c.removed, ", ".join(f"{k}: {n:,}" for k, n in c.by_variable.items())] for c in info.table.cuts]
    print_rows("cleaning", ["step", "rule", "jets removed", "by variable"], cuts)
    if peak := info.dijet_peak():
        print(f"dijet mass of the two leading jets ({peak[0]:,} events): peak {peak[1]:.1f} GeV, "
              f"Gaussian-equivalent width {peak[2]:.1f} GeV (FWHM/2.355)")  # fmt: skip
    return 0


def cmd_varsets(_: argparse.Namespace) -> int:
    """The variable sets shipped with hpcsweep. A sweep's data.varset also takes the path of a YAML file of one's own, or a
    mapping inline (docs/data.md)."""
    from hpcsweep.data.varset import load_varset, varset_names

    rows = [[name, len(load_varset(name).variables), load_varset(name).description] for name in varset_names()]
    print_rows("built-in variable sets", ["name", "variables", "description"], rows)
    print("A sweep's data.varset also takes the path of a YAML file of your own (relative to the sweep file) or an inline "
          "mapping; 'hpcsweep data inspect FILE --draft-varset mine.yaml' drafts one. See docs/data.md.")  # fmt: skip
    return 0

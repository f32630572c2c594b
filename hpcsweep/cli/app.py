"""`hpcsweep`: the parser assembled from the command groups, and `main`, which turns user mistakes into one line and exit
status 2."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from hpcsweep import __version__
from hpcsweep.cli import compress, data, evaluate, review, sweep
from hpcsweep.errors import PATH_FAULTS, UserError, path_fault

#: Each command's builder, in the order `hpcsweep --help` lists them.
COMMANDS = (
    sweep.add_sweep,
    sweep.add_status,
    review.add_aggregate,
    review.add_report,
    sweep.add_rerun_best,
    evaluate.add_evaluate,
    compress.add_export,
    compress.add_compress,
    compress.add_decompress,
    compress.add_score,
    review.add_export_tracking,
    data.add_data,
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except UserError as err:
        print(f"hpcsweep: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in PATH_FAULTS:
            raise
        print(f"hpcsweep: error: {path_fault(err, output=getattr(args, 'output', None) is not None)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hpcsweep: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="hpcsweep",
        description="Run, survive and review hyperparameter sweeps of autoencoders that compress jet data.",
        epilog="Start with: hpcsweep sweep default --latent 18   (or: make sweep LATENT=18)",
    )
    parser.add_argument("--version", action="version", version=f"hpcsweep {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return parser


class OneLineParser(argparse.ArgumentParser):
    """A mistake on the command line is one line and exit status 2, like every other user mistake (argparse's own
    error prints the whole usage first); its subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} ('{self.prog} --help' shows the options)\n")

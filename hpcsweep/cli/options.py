"""The arguments several commands take, and the types that refuse a bad value before any work (exit status 2)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from hpcsweep.config import MAX_BOUND, is_bound

SWEEP_HELP = "a sweep file, or the name of one in sweeps/ (e.g. 'default')"
WRITE_HELP = "the file to write (.root or .parquet)"
RESULTS_HELP = "a sweep name (folder under --results), a results folder, or a sweep file"

#: What runs a command: its parsed arguments in, its exit status out.
Handler = Callable[[argparse.Namespace], int]


def add_command(commands: argparse._SubParsersAction, name: str, help: str, handler: Handler, **options: Any) -> argparse.ArgumentParser:
    """A command's parser, run by `handler`, whose docstring is the command's description in --help (argparse fills
    its lines anew): what a command does is written once."""
    parser = commands.add_parser(name, help=help, description=handler.__doc__, **options)
    parser.set_defaults(handler=handler)
    return parser


def input_file(text: str) -> str:
    """A file to read: refused at once when it is missing or a folder (a URL such as root://... is uproot's to open)."""
    if "://" not in text and not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: {'a folder, not a file' if Path(text).is_dir() else 'no such file'}")
    return text


def input_files(text: str) -> str:
    """A file to read, or a glob of files (quoted, so that the command expands it: 'in/*.root'), which may match none
    yet: that is said in one line when the command expands it."""
    return text if is_glob(text) else input_file(text)


def is_glob(text: str) -> bool:
    """A glob the shell left (quoted) for the command to expand: a wildcard, and no file of that very name."""
    return re.search(r"[*?\[]", text) is not None and not Path(text).exists()


def output_file(text: str) -> str:
    """A file to write: a folder is refused before any work (not after, when the finished output cannot take its name)."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the name of the file to write (e.g. {Path(text) / 'NAME'})")
    return text


def bound(text: str) -> float:
    """'1%' -> 0.01, '0.001' -> 0.001; anything else or outside (0, 50 %) is refused by argparse."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a bound; write e.g. 1% or 0.001") from None
    if not is_bound(value):
        raise argparse.ArgumentTypeError(f"{text!r}: a bound lies between 0 and {100 * MAX_BOUND:g}%")
    return value


def add_bundle_io(
    parser: argparse.ArgumentParser,
    input_help: str,
    model_help: str,
    output: str,
    output_help: str,
    model_required: bool = True,
    several: bool = False,
    folder: bool = False,
) -> None:
    """The input file, the bundle (--model) and the output (-o) of compress, decompress and score; `several`: inputs
    (files or globs) rather than one; `folder`: -o may be a folder, which the command checks against its input."""
    if several:
        parser.add_argument("input", nargs="+", type=input_files, help=input_help)
    else:
        parser.add_argument("input", type=input_file, help=input_help)
    parser.add_argument("--model", required=model_required, metavar="BUNDLE.h5", help=model_help)
    parser.add_argument("-o", "--output", required=True, type=str if folder else output_file, metavar=output, help=output_help)


#: The dispatch keys a dataset of files takes (compress, decompress): the executor, and where SLURM runs its array.
DATASET_DISPATCH = ("--executor", "--site", "--partition", "--time", "--pack")


def add_dataset_dispatch_options(parser: argparse.ArgumentParser, unit: str) -> None:
    """--executor and the SLURM settings of a command over many files (the sweep's keys, with their checks)."""
    from hpcsweep.config import DispatchConfig
    from hpcsweep.sweep import backend_names

    for option in DATASET_DISPATCH:
        key, kind, metavar = DISPATCH_OPTIONS[option]
        field = DispatchConfig.model_fields[key]
        description = (field.description or key).replace("trials", unit)
        if key == "executor":
            description = f"where the {unit} run: local (one after another in this process), slurm (a job array), debug"
        otherwise = f"; default: {field.default}" if field.default is not None else ""
        parser.add_argument(option, type=kind, metavar=metavar, choices=backend_names() if key == "executor" else None, dest=key,
                            help=f"with several {unit}, {description}{otherwise}")  # fmt: skip


def dataset_dispatch(args: argparse.Namespace) -> dict[str, Any]:
    """The dispatch keys of a command over many files set on the command line."""
    return {
        key: getattr(args, key) for key, _, _ in (DISPATCH_OPTIONS[o] for o in DATASET_DISPATCH) if getattr(args, key, None) is not None
    }


def add_definition_options(parser: argparse.ArgumentParser) -> None:
    """What changes a sweep's definition: --latent, --epochs, --set, --allow-large (sweep and status)."""
    parser.add_argument(
        "--latent", "-z", type=int, nargs="+", metavar="Z", help="only these latent dimensions (replaces the grid's z axis)"
    )
    parser.add_argument("--epochs", type=int, metavar="N", help="train every trial for N epochs")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="fix any trial key, e.g. --set lr=1e-3 --set data.events=2000"
    )
    parser.add_argument("--allow-large", action="store_true", help="accept a grid of more than max_trials points (default 10,000)")


def add_wide_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wide", action="store_true", help="print tables at full width with their full headings, whatever the terminal")


def add_verify_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verify", action="store_true", help="check every trial file's checksum again, not only those changed since the "
                                                              "last look (damage that kept a file's size and time; a sweep does it as it starts)")  # fmt: skip


def add_results_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default="results", metavar="DIR", help="results root (default: results)")


#: Options that set a key of the sweep's `dispatch` section: option -> (key, type, metavar); help from the key's description.
DISPATCH_OPTIONS: dict[str, tuple[str, type, str | None]] = {
    "--executor": ("executor", str, None),
    "--site": ("site", str, "SITE"),
    "--partition": ("partition", str, "NAME"),
    "--time": ("time", str, "LIMIT"),
    "--pack": ("pack", int, "K"),
    "--workers": ("workers", int, "N"),
    "--threads": ("threads_per_trial", int, "N"),
    "--compile": ("compile", str, None),
}


def add_dispatch_options(parser: argparse.ArgumentParser) -> None:
    """The dispatch keys (choices and help from the configuration and the executor registry) and how the driver waits."""
    from hpcsweep.config import DispatchConfig
    from hpcsweep.sweep import backend_names

    for option, (key, kind, metavar) in DISPATCH_OPTIONS.items():
        field = DispatchConfig.model_fields[key]
        choices = (
            backend_names() if key == "executor" else list(get_args(field.annotation)) if get_origin(field.annotation) is Literal else None
        )
        otherwise = f", else {field.default}" if field.default is not None else ""
        parser.add_argument(option, type=kind, metavar=metavar, choices=choices, dest=key,
                            help=f"{field.description or key}; default: the sweep file's{otherwise}")  # fmt: skip
    parser.add_argument("--wait", action="store_true", help="slurm: follow the jobs until they end (default: return once submitted)")
    parser.add_argument(
        "--wait-for-lease", action="store_true", help="another driver runs this results folder: wait for it (default: stop)"
    )
    parser.add_argument("--retry-failed", action="store_true", help="give trials that failed max_attempts times a fresh retry budget")


def dispatch_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The dispatch keys set on the command line."""
    keys = [key for key, _, _ in DISPATCH_OPTIONS.values()]
    return {key: getattr(args, key) for key in keys if getattr(args, key, None) is not None}


def driver_options(args: argparse.Namespace) -> dict[str, Any]:
    """How the driver waits: for jobs that outlive it (--wait; others always), for another driver's lease; --retry-failed."""
    return {"wait": args.wait, "wait_for_lease": args.wait_for_lease, "retry_failed": args.retry_failed}

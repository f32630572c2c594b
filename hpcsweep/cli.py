"""The command line: parses, calls one stage, prints. User mistakes exit with status 2 in one line."""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, get_args, get_origin

import yaml

from hpcsweep import __version__
from hpcsweep.config import MAX_BOUND, Process, RankBy, is_bound
from hpcsweep.errors import PATH_FAULTS, UserError, path_fault
from hpcsweep.states import TrialState

if TYPE_CHECKING:
    from hpcsweep.config import SweepConfig
    from hpcsweep.review import Review
    from hpcsweep.review.aggregator import Detail

SWEEP_HELP = "a sweep file, or the name of one in sweeps/ (e.g. 'default')"
WRITE_HELP = "the file to write (.root or .parquet)"
RESULTS_HELP = "a sweep name (folder under --results), a results folder, or a sweep file"


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

    sweep = commands.add_parser("sweep", help="run the unfinished trials of a sweep, then print its tables",
                                description="Expand a sweep's grid, skip finished trials, run the rest (and follow any "
                                            "an earlier, killed driver left running), and print the best/median trial per "
                                            "latent dimension.",
                                epilog="Exit status (when it follows its trials to the end): 0 every trial finished; 1 some "
                                       "failed or were given up; 2 a mistake in what was asked (nothing run); 3 some trials "
                                       "have no result (lost, killed): run it again.")  # fmt: skip
    sweep.add_argument("sweep", help=SWEEP_HELP)
    _add_definition_options(sweep)
    _add_dispatch_options(sweep)
    _add_results_option(sweep)
    sweep.add_argument("--dry-run", action="store_true", help="list the trials and their states; run nothing")
    sweep.add_argument(
        "--no-review", action="store_true", help="run the trials only: no tables or figures ('hpcsweep aggregate' makes them)"
    )
    _add_wide_option(sweep)
    sweep.set_defaults(handler=cmd_sweep)

    status = commands.add_parser("status", help="count a sweep's trials by state and latent dimension",
                                 description="The trials of a sweep file (with the same overrides as 'sweep') by state and "
                                             "latent dimension: done, diverged, pruned, failed, running, queued, lost, pending; "
                                             "and what else its results folder holds.")  # fmt: skip
    status.add_argument("sweep", help=SWEEP_HELP)
    _add_definition_options(status)
    _add_results_option(status)
    _add_verify_option(status)
    _add_wide_option(status)
    status.set_defaults(handler=cmd_status)

    aggregate = commands.add_parser("aggregate", help="write a sweep's tables (Markdown, CSV, LaTeX) and figures (PNG; PDF with --pdf)",
                                    description="Best and median trial per latent dimension, comparisons by every other axis the "
                                                "sweep varied, baselines, compression, seed stability; the figures of the thesis' "
                                                "chapter 2.3. Reads summaries and the best trials' evaluations, never weights.")  # fmt: skip
    aggregate.add_argument("sweep", help=RESULTS_HELP)
    _add_results_option(aggregate)
    detail = aggregate.add_mutually_exclusive_group()
    detail.add_argument("--detail", action="store_true", help="the per-trial figures of the best trial per z, not only of the best trial")
    detail.add_argument("--no-detail", action="store_true", help="no per-trial figures")
    aggregate.add_argument(
        "--pdf", action="store_true", help="also write each figure as PDF, for papers (default: the sweep file's review.pdf, else PNG only)"
    )
    _add_verify_option(aggregate)
    _add_wide_option(aggregate)
    aggregate.set_defaults(handler=cmd_aggregate)

    report = commands.add_parser("report", help="write results/<sweep>/report/index.html: every table and figure on one page",
                                 description="Aggregate the sweep, then write one self-contained HTML page (figures embedded) "
                                             "with its tables, figures, definition, state counts and links to each trial file.")  # fmt: skip
    report.add_argument("sweep", help=RESULTS_HELP)
    _add_results_option(report)
    report.set_defaults(handler=cmd_report)

    rerun = commands.add_parser("rerun-best", help="retrain the K best configs per latent dimension with N new seeds",
                                description="Make the child sweep <sweep>-top<K>-seeds<N> (the best configs, their original "
                                            "trials reused, N new seeds each), dispatch it like any sweep, and print the "
                                            "stability table: mean, std, min, max val loss; runs above 1.5x the median flagged.")  # fmt: skip
    rerun.add_argument("sweep", help="the sweep whose best trials are rerun (a name under --results)")
    rerun.add_argument("--top", type=int, default=1, metavar="K", help="best configs per latent dimension (default 1)")
    rerun.add_argument("--seeds", type=int, default=3, metavar="N", help="new seeds per config (default 3)")
    _add_results_option(rerun)
    _add_dispatch_options(rerun)
    _add_wide_option(rerun)
    rerun.set_defaults(handler=cmd_rerun_best)

    evaluate = commands.add_parser("evaluate", help="(re)compute a stored trial's evaluation, on its own data or another sample",
                                   description="Residuals in physical units, histograms, baselines, compression and timing for the "
                                               "trial's validation split; or residuals and the dijet-mass closure on another sample "
                                               "(a model trained on QCD jets tested on a signal it never saw).")  # fmt: skip
    evaluate.add_argument("trial", help="a trial file, results/<sweep>/trials/<id>.h5")
    on = evaluate.add_mutually_exclusive_group()
    on.add_argument("--source", metavar="FILE", help="a ROOT or Parquet file (or glob), read with the trial's variable set")
    on.add_argument("--signal", metavar="GEV|FILE", help="a signal file (as --source), or, for a trial of generated data, "
                                                        "a generated Z' -> q qbar sample of this mass")  # fmt: skip
    evaluate.add_argument("--events", type=int, default=2000, metavar="N", help="events of a generated --signal sample (default 2000)")
    evaluate.add_argument("--label", help="name of the result in the trial file (default: validation, zprime<GEV> or the file's stem)")
    evaluate.set_defaults(handler=cmd_evaluate)

    export = commands.add_parser("export", help="write one trial's model and compressor into a self-contained bundle",
                                 description="The best trial at --z (or --trial, or the best of the sweep by --best): its "
                                             "weights, normaliser, variable set, discrete tables, trial id and data checksum, "
                                             "and the compressor it fitted and measured, as it was (--refit fits one anew). "
                                             "Loadable without the sweep folder; 'hpcsweep compress' uses it.")  # fmt: skip
    export.add_argument("sweep", help=RESULTS_HELP)
    export.add_argument(
        "--z", type=int, metavar="Z", help="take the best finished trial at this latent dimension (0: the compressor alone)"
    )
    export.add_argument("--trial", metavar="ID", help="take this trial instead (an id in results/<sweep>/trials/)")
    export.add_argument("--best", choices=get_args(RankBy), metavar="MEASURE",
                        help="take the best trial of the whole sweep by this measure, any z and kind (e.g. bytes); "
                             f"choices: {', '.join(get_args(RankBy))}")  # fmt: skip
    export.add_argument("-o", "--output", required=True, type=_output_file, metavar="BUNDLE.h5", help="the bundle to write")
    export.add_argument("--max-error", action="append", type=_bound, metavar="BOUND",
                        help="ship the trial's compressor at these bounds only: '1%%' (relative for scale variables, absolute "
                             "0.01 for angles and signed ones); repeat for several (default: every bound it was fitted at)")  # fmt: skip
    export.add_argument("--refit", action="store_true", help="fit a compressor of the trial's kind anew on its training jets, at "
                                                            "--max-error (default: the trial's bounds); for other bounds, or "
                                                            "a trial file of an older hpcsweep")  # fmt: skip
    export.add_argument("--steps", type=int, metavar="N", help="--refit: training steps of each predictor (default: the trial's)")
    export.add_argument("--onnx", action="store_true", help="also write BUNDLE.encoder.onnx and BUNDLE.decoder.onnx (normalised "
                                                           "inputs/outputs) and BUNDLE.score.onnx (a file's own columns by name "
                                                           "-> anomaly_score, as 'hpcsweep score'); needs the extra 'onnx'")  # fmt: skip
    _add_results_option(export)
    export.set_defaults(handler=cmd_export)

    compress = commands.add_parser("compress", help="compress a jet file with a bundle, every model value within --max-error",
                                   description="Reads a ROOT (TTree or RNTuple, flat or jagged) or Parquet file in chunks; the "
                                               "bundle's variables are coded within the bound, jets outside its cuts and every "
                                               "other branch losslessly. The bundle's checksum is recorded.")  # fmt: skip
    _add_bundle_io(compress, "a ROOT or Parquet file", "a bundle made by 'hpcsweep export'", "OUT.hpcz", "the compressed file to write")
    compress.add_argument("--max-error", type=_bound, default=0.01, metavar="BOUND", help="'1%%' (default) or '0.1%%': one of the bundle's")
    compress.add_argument("--tree", help="tree or RNTuple to read (default: the variable set's, or the only one)")
    compress.set_defaults(handler=cmd_compress)

    decompress = commands.add_parser("decompress", help="give back a compressed file's tree as ROOT or Parquet",
                                     description="The input's tree, branch names, types and jaggedness (a jagged group's "
                                                 "counter is written as int32); needs the bundle it was compressed with.")  # fmt: skip
    _add_bundle_io(decompress, "a file made by 'hpcsweep compress'", "the bundle it was compressed with", "RECO.root", WRITE_HELP)
    decompress.set_defaults(handler=cmd_decompress)

    score = commands.add_parser("score", help="write each jet's anomaly score (the AE's reconstruction error) beside a file's branches",
                                description="The bundle's AE applied to a ROOT or Parquet file (flat or jagged), chunk by chunk: "
                                            "the output is the input's tree with one more branch, anomaly_score, each jet's "
                                            "mean squared reconstruction error in the trial's reference space (NaN outside "
                                            "the variable set's cuts). Larger: less like the jets the AE learned.")  # fmt: skip
    _add_bundle_io(score, "a ROOT or Parquet file", "a bundle made by 'hpcsweep export'", "OUT.root", WRITE_HELP)
    score.add_argument("--tree", help="tree or RNTuple to read (default: the variable set's, or the only one)")
    score.set_defaults(handler=cmd_score)

    tracking = commands.add_parser("export-tracking", help="write a sweep's trials as TensorBoard or MLflow runs",
                                   description="One run per trial file (failed ones with their state): per-epoch train_loss, "
                                               "val_loss and lr, the final metrics, the config as hyperparameters (TensorBoard's "
                                               "HParams tab, MLflow params). Running it again replaces the last export; needs "
                                               "the extra 'tracking'.")  # fmt: skip
    tracking.add_argument("sweep", help=RESULTS_HELP)
    tracking.add_argument("--to", required=True, choices=("tensorboard", "mlflow"), help="a TensorBoard log dir, or a local MLflow "
                                                                                       "store (SQLite, no server)")  # fmt: skip
    tracking.add_argument("-o", "--output", metavar="DIR", help="the folder to write (default: results/<sweep>/tensorboard or "
                                                                "results/<sweep>/mlruns); replaced whole by each export")  # fmt: skip
    _add_results_option(tracking)
    tracking.set_defaults(handler=cmd_export_tracking)

    data = commands.add_parser("data", help="generate and inspect jet data")
    data_commands = data.add_subparsers(title="data commands", metavar="COMMAND")
    generate = data_commands.add_parser("generate", help="simulate jets with Pythia 8 + FastJet into a ROOT file",
                                        description="pp at 13 TeV, anti-kt R=0.4 jets with pt > 20 GeV, 24 variables per jet. "
                                                    "Cached: the same sample is generated once.")  # fmt: skip
    generate.add_argument("--process", choices=get_args(Process), default="qcd", help="QCD dijets (background) or Z' -> q qbar (signal)")
    generate.add_argument("--mass", type=float, default=350.0, metavar="GEV", help="Z' mass (default 350)")
    generate.add_argument("--events", type=int, default=10000, metavar="N", help="events to simulate (default 10000)")
    generate.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    generate.add_argument("--workers", type=int, metavar="N", help="parallel processes (default: all cores)")
    generate.add_argument("--out", metavar="DIR", help="output folder (default: $HPCSWEEP_DATA/generated, else data/generated)")
    generate.set_defaults(handler=cmd_generate)
    inspect = data_commands.add_parser("inspect", help="what a ROOT or Parquet file holds: tables, branches, types, ranges; "
                                                       "--draft-varset writes a variable set to edit",
                                       description="Every TTree and RNTuple of a ROOT file (or the table of a Parquet file): "
                                                   "entries, branches with types, jagged or flat, and one pass of statistics "
                                                   "(values, min, max, NaN/inf, negative, distinct). With --draft-varset, a "
                                                   "variable set guessed from names and values, to check and edit.")  # fmt: skip
    inspect.add_argument("file", type=_input_file, help="a ROOT or Parquet file")
    inspect.add_argument("--tree", help="only this TTree or RNTuple")
    inspect.add_argument("--max-entries", type=int, metavar="N", help="statistics of the first N entries of each table (default: all)")
    inspect.add_argument("--draft-varset", metavar="OUT.yaml", help="write a variable set drafted from the (only, or --tree) table")
    inspect.set_defaults(handler=cmd_inspect)
    info = data_commands.add_parser("info", help="describe a jet file as a variable set sees it (counts, ranges, cuts, dijet mass)",
                                    description="Read a ROOT or Parquet file (or several: a glob) with a variable set, as a sweep "
                                                "would: jets and events, each variable's range, what each cleaning step removed, "
                                                "and the dijet-mass peak when the set has a four-momentum.")  # fmt: skip
    info.add_argument("file", help="a ROOT or Parquet file, or a glob of several")
    info.add_argument(
        "--varset", default="generated", help="a built-in set (see 'hpcsweep data varsets') or a YAML file; default generated"
    )
    info.add_argument("--tree", help="tree name (default: the variable set's, or the only tree)")
    info.set_defaults(handler=cmd_info)
    varsets = data_commands.add_parser("varsets", help="list the built-in variable sets",
                                       description="The variable sets shipped with hpcsweep. A sweep's data.varset also takes the "
                                                   "path of a YAML file of one's own, or a mapping inline (docs/data.md).")  # fmt: skip
    varsets.set_defaults(handler=cmd_varsets)

    def data_help(_: argparse.Namespace) -> int:
        data.print_help()
        return 2

    data.description = (
        "Jets for sweeps: simulate them (generate), see what a ROOT or Parquet file of one's own holds and "
        "draft a variable set for it (inspect), read it as a sweep would (info), list the built-in sets (varsets)."
    )
    data.set_defaults(handler=data_help)
    return parser


class OneLineParser(argparse.ArgumentParser):
    """A mistake on the command line is one line and exit status 2, like every other user mistake (argparse's own
    error prints the whole usage first); its subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} ('{self.prog} --help' shows the options)\n")


def _add_bundle_io(parser: argparse.ArgumentParser, input_help: str, model_help: str, output: str, output_help: str) -> None:
    """The input file, the bundle (--model) and the output (-o) of compress, decompress and score."""
    parser.add_argument("input", type=_input_file, help=input_help)
    parser.add_argument("--model", required=True, metavar="BUNDLE.h5", help=model_help)
    parser.add_argument("-o", "--output", required=True, type=_output_file, metavar=output, help=output_help)


def _input_file(text: str) -> str:
    """A file to read: refused at once when it is missing or a folder (a URL such as root://... is uproot's to open)."""
    if "://" not in text and not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: {'a folder, not a file' if Path(text).is_dir() else 'no such file'}")
    return text


def _output_file(text: str) -> str:
    """A file to write: a folder is refused before any work (not after, when the finished output cannot take its name)."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the name of the file to write (e.g. {Path(text) / 'NAME'})")
    return text


def _add_definition_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--latent", "-z", type=int, nargs="+", metavar="Z", help="only these latent dimensions (replaces the grid's z axis)"
    )
    parser.add_argument("--epochs", type=int, metavar="N", help="train every trial for N epochs")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="fix any trial key, e.g. --set lr=1e-3 --set data.events=2000"
    )
    parser.add_argument("--allow-large", action="store_true", help="accept a grid of more than max_trials points (default 10,000)")


def _add_wide_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wide", action="store_true", help="print tables at full width with their full headings, whatever the terminal")


def _add_verify_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verify", action="store_true", help="check every trial file's checksum again, not only those changed since the "
                                                              "last look (damage that kept a file's size and time; a sweep does it as it starts)")  # fmt: skip


def _add_results_option(parser: argparse.ArgumentParser) -> None:
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


def _add_dispatch_options(parser: argparse.ArgumentParser) -> None:
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


def _dispatch_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The dispatch keys set on the command line."""
    keys = [key for key, _, _ in DISPATCH_OPTIONS.values()]
    return {key: getattr(args, key) for key in keys if getattr(args, key, None) is not None}


def resolve_sweep_file(name: str) -> Path:
    """A sweep file path, or sweeps/<name>.yaml."""
    path = Path(name)
    if path.is_file():
        return path
    candidate = Path("sweeps") / f"{name}.yaml"
    if candidate.is_file():
        return candidate
    found = sorted(p.stem for p in Path("sweeps").glob("*.yaml")) if Path("sweeps").is_dir() else []
    raise UserError(f"{name}: no such sweep file" + (f"; sweeps/ has: {', '.join(found)}" if found else ""))


def _overridden_sweep(args: argparse.Namespace, path: Path) -> tuple[SweepConfig, SweepConfig]:
    """The definition the results folder keeps (the sweep file with --epochs and --set), and what runs (also --latent and dispatch)."""
    from hpcsweep.config import load_sweep

    sets: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lr=1e-3")
        sets[key.strip()] = yaml.safe_load(value)
    definition = load_sweep(path)
    if args.epochs is not None or sets:
        definition = definition.with_overrides(epochs=args.epochs, sets=sets)
    if args.allow_large:
        definition = definition.model_copy(update={"max_trials": None})
    dispatch = _dispatch_overrides(args)
    return definition, definition.with_overrides(latent=args.latent, dispatch=dispatch) if args.latent or dispatch else definition


def _driver_options(args: argparse.Namespace) -> dict[str, Any]:
    """How the driver waits: for jobs that outlive it (--wait; others always), for another driver's lease; --retry-failed."""
    return {"wait": args.wait, "wait_for_lease": args.wait_for_lease, "retry_failed": args.retry_failed}


def _followed(args: argparse.Namespace, sweep: SweepConfig) -> bool:
    """Whether the driver followed its jobs to the end (not when they outlive it and --wait was not given)."""
    from hpcsweep.sweep import backend

    return args.wait or not backend(sweep.dispatch.executor).outlives_driver


def cmd_sweep(args: argparse.Namespace) -> int:
    from hpcsweep.sweep import expand, run_sweep

    path = resolve_sweep_file(args.sweep)
    definition, sweep = _overridden_sweep(args, path)
    results_dir = Path(args.results) / sweep.name
    if args.dry_run:
        return _dry_run(sweep, results_dir, path, args.wide)
    states = run_sweep(sweep, results_dir, source=path, definition=definition, **_driver_options(args))
    if not _followed(args, sweep):
        return 0
    if not args.no_review:
        _show_tables(results_dir, sorted({trial.model.latent for trial in expand(sweep)}), wide=args.wide)
    return _exit_status(states, sweep, results_dir, args.sweep)


#: The exit status of `sweep` (and `rerun-best`) that followed its trials to the end (docs/sweeps.md).
EXIT_FAILED, EXIT_UNFINISHED = 1, 3


def _exit_status(states: Counter, sweep: SweepConfig, results_dir: Path, name: str) -> int:
    """0 when every trial of the definition finished; 1 when some failed (or were given up); 3 when some are left
    without a result (lost, in flight, pending), naming them; a line on stderr says what to do."""
    from hpcsweep.sweep import plan

    if states[TrialState.FAILED] or states[TrialState.EXHAUSTED]:
        print(f"{states[TrialState.FAILED] + states[TrialState.EXHAUSTED]} trials failed; see 'hpcsweep status {name}'; a rerun retries them "
              f"(those that failed {sweep.max_attempts} times only with --retry-failed)", file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    unfinished = sum(n for state, n in states.items() if not state.is_finished())
    if not unfinished:
        return 0
    left = [p for p in plan(sweep, results_dir).trials if not p.state.is_finished()]
    shown = ", ".join(f"{p.trial_id} ({p.state}{f': {p.detail}' if p.detail else ''})" for p in left[:5])
    print(f"{unfinished} trials have no result: {shown}{', ...' if len(left) > 5 else ''}; run the sweep again (finished trials are "
          f"kept, lost ones resume from their checkpoints), or see 'hpcsweep status {name}'", file=sys.stderr)  # fmt: skip
    return EXIT_UNFINISHED


def _dry_run(sweep: SweepConfig, results_dir: Path, path: Path, wide: bool = False) -> int:
    """The trials of a sweep with every varied axis and their states; nothing is run, generated or written."""
    from hpcsweep.review.tables import config_value, varied_axes
    from hpcsweep.sweep import check_definition, plan

    check_definition(results_dir, sweep)  # what the sweep itself would refuse, the dry run refuses too
    planned = plan(sweep, results_dir, str(path))
    configs = {p.trial_id: {"config": p.config.model_dump(mode="json")} for p in planned.trials}
    axes = varied_axes(configs) + (["train.seed"] if len({p.config.train.seed for p in planned.trials}) > 1 else [])
    rows: list[list[Any]] = []
    for p in planned.trials:
        train = p.config.train
        values = [config_value(configs[p.trial_id]["config"], axis) for axis in axes]
        network = [train.batch_size, train.lr, train.weight_decay, train.epochs] if p.config.model.autoencoder else [""] * 4
        rows.append([p.trial_id if p.config.data_version else "(once read)", p.config.model.latent, *network, *values, p.state])
    versions = sorted({p.config.data_version or "not read yet" for p in planned.trials})
    title = f"{sweep.name}: {len(planned.trials)} trials (data version {', '.join(versions)})"
    if "not read yet" in versions:  # an id is the hash of the config with its data's version: none to show before
        title += "; trial ids take the data's version: they are known once the sweep has generated or read it"
    _print_rows(title, ["trial", "z", "bs", "lr", "wd", "epochs", *axes, "state"], rows, wide)
    for line in [planned.describe_others(), *planned.data_problems]:
        if line:
            print(line)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from hpcsweep.sweep import plan
    from hpcsweep.terminal import labelled_bar

    path = _sweep_definition(args.sweep, Path(args.results))
    _, sweep = _overridden_sweep(args, path)
    if args.verify:
        from hpcsweep.store import rebuild_index

        rebuild_index(Path(args.results) / sweep.name, verify=True)
    planned = plan(sweep, Path(args.results) / sweep.name, str(path))
    counts = Counter((p.config.model.latent, p.state) for p in planned.trials)
    rows: list[list[Any]] = [[z, *(counts[(z, s)] for s in TrialState)] for z in sorted({p.config.model.latent for p in planned.trials})]
    total = planned.counts()
    rows.append(["all", *(total[s] for s in TrialState)])
    finished = sum(n for state, n in total.items() if state.is_finished())
    goal = sweep.budget if sweep.search != "grid" else len(planned.trials)
    assert goal is not None  # a search without a budget is refused by the configuration
    _print_rows(
        f"{sweep.name}: {len(planned.trials)} trials, {finished} of {goal} finished ({sweep.search} search)",
        ["z", *TrialState],
        rows,
        args.wide,
    )
    labelled_bar("finished", min(finished, goal), goal)
    for state in (s for s in TrialState if s.in_flight()):
        details = Counter(p.detail or "?" for p in planned.trials if p.state == state)
        if details:
            print(f"{state}: " + ", ".join(f"{detail} ({n})" for detail, n in details.most_common(8)))
    retried = [p for p in planned.trials if p.state in (TrialState.FAILED, TrialState.LOST, TrialState.EXHAUSTED)]
    if retried:
        rows = [[p.trial_id, p.config.model.latent, p.state, f"{p.failures}/{sweep.max_attempts}", p.detail or "?"] for p in retried[:20]]
        more = f" (the first 20 of {len(retried)})" if len(retried) > 20 else ""
        _print_rows(f"failed, lost and given-up trials{more}", ["trial", "z", "state", "attempts", "last reason"], rows, args.wide)
    for line in [planned.describe_others(), *planned.data_problems]:
        if line:
            print(line)
    for problem in planned.unreadable:
        print(f"unreadable trial file: {problem}")
    return 0


def _sweep_definition(name: str, results_root: Path) -> Path:
    """The sweep file for `name`, falling back to the resolved definition kept in its results folder."""
    try:
        return resolve_sweep_file(name)
    except UserError:
        kept = results_root / name / "definition.json"
        if kept.is_file():
            return kept
        raise


def _results_dir(sweep: str, results_root: str) -> Path:
    """The results folder of a sweep given by name, folder or sweep file."""
    given = Path(sweep)
    if given.is_dir():
        return given
    if given.is_file():
        from hpcsweep.config import load_sweep

        return Path(results_root) / load_sweep(given).name
    return Path(results_root) / sweep


def cmd_aggregate(args: argparse.Namespace) -> int:
    from hpcsweep.store import trials_dir

    results_dir = _results_dir(args.sweep, args.results)
    if not trials_dir(results_dir).is_dir():
        raise UserError(f"{results_dir}: no trials yet; run 'hpcsweep sweep {args.sweep}' first")
    detail: Detail = "all" if args.detail else "none" if args.no_detail else "best"
    _show_tables(results_dir, detail=detail, wide=args.wide, pdf=args.pdf or None, verify=args.verify)
    return 0


def _show_tables(
    results_dir: Path,
    latents: list[int] | None = None,
    detail: Detail = "all",
    wide: bool = False,
    pdf: bool | None = None,
    verify: bool = False,
) -> Review:
    """Aggregate (saying so while it draws), print the best/median (residuals, stability) tables and the warnings.
    `pdf`: also PDFs of the figures (None: as the sweep's review.pdf says)."""
    from rich.console import Console

    from hpcsweep.review import aggregate

    with Console(stderr=True).status(f"aggregating {results_dir}: tables") as status:
        drawn = itertools.count(1)
        review = aggregate(
            results_dir,
            detail=detail,
            pdf=pdf,
            drawing=lambda title: status.update(f"drawing figure {next(drawn)}: {title}"),
            verify=verify,
        )
    shown = ["best_per_latent", "median_per_latent", "stability"]
    residuals = review.tables.get("residuals_per_latent")
    if residuals is not None and residuals[1]["Variable"].nunique() <= 8:  # a few variables: their residuals fit a terminal
        shown.insert(2, "residuals_per_latent")
    if review.rank_by == "bytes":  # a sweep for a compressor ends with the frontier and the compressors against the peers
        shown += ["rate_frontier", "compressors"]
    named: set[str] = set()
    for stem in shown:
        if stem not in review.tables:
            continue
        title, table = review.tables[stem]
        if latents is not None and "Latent space dimensions" in table:
            table = table[table["Latent space dimensions"].isin(latents)]
        _print_rows(title, list(table.columns), table.values.tolist(), wide, legend=not set(table.columns) <= named)
        named |= set(table.columns)
    for line in review.headlines:
        print(line)
    if review.undrawn:
        print(f"per-trial figures drawn for the best trial; those of the best trial at z = {', '.join(map(str, review.undrawn))}: "
              f"'hpcsweep aggregate {results_dir} --detail'")  # fmt: skip
    for warning in review.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"written: {len(review.paths)} files under {results_dir}: summary.md, tables/, figures/")
    return review


def cmd_report(args: argparse.Namespace) -> int:
    from collections import Counter

    from hpcsweep.review import aggregate, write_report
    from hpcsweep.sweep import kept_sweep

    results_dir = _results_dir(args.sweep, args.results)
    if not results_dir.is_dir():
        raise UserError(f"{results_dir}: no such sweep results; run 'hpcsweep sweep {args.sweep}' first")
    review = aggregate(results_dir)
    definition = kept_sweep(results_dir)
    states = _definition_states(definition, results_dir) if definition else dict(Counter(review.frame["state"]))
    kept = results_dir / "sweep.yaml"
    path = write_report(review, kept.read_text() if kept.is_file() else "", states)
    for warning in review.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report: {path} ({len(review.tables)} tables, {len(review.figures)} figures); open it in a browser, no server needed")
    return 0


def _definition_states(sweep: SweepConfig, results_dir: Path) -> dict[str, int]:
    """The sweep definition's trials counted by state (pending: no trial file yet)."""
    from hpcsweep.sweep import plan

    counts = plan(sweep, results_dir).counts()
    return {str(state): counts[state] for state in TrialState if counts[state]}


def cmd_rerun_best(args: argparse.Namespace) -> int:
    from hpcsweep.review.rerun import plan_rerun
    from hpcsweep.sweep import backend, run_sweep

    rerun = plan_rerun(_results_dir(args.sweep, args.results), Path(args.results), args.top, args.seeds)
    sweep = rerun.definition.with_overrides(dispatch=_dispatch_overrides(args))
    backend(sweep.dispatch.executor).check(sweep.dispatch)  # before the child's folder is made
    rerun.write(f"hpcsweep rerun-best {args.sweep} --top {args.top} --seeds {args.seeds}")
    print(f"{len(rerun.originals)} configs x {args.seeds} new seeds -> sweep {rerun.name!r} ({rerun.sweep_file})")
    states = run_sweep(sweep, rerun.results_dir, source=rerun.sweep_file, definition=rerun.definition, **_driver_options(args))
    if not _followed(args, sweep):
        print(f"when it is done: hpcsweep aggregate {rerun.name}")
        return 0
    _show_tables(rerun.results_dir, detail="none", wide=args.wide)
    return _exit_status(states, sweep, rerun.results_dir, rerun.name)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from hpcsweep.config import DataConfig
    from hpcsweep.data import prepare
    from hpcsweep.data.read import open_cache
    from hpcsweep.store import read_summary, read_trial
    from hpcsweep.trial import evaluate_stored

    path = Path(args.trial)
    if not path.is_file():
        raise UserError(f"{path}: no such trial file (they live in results/<sweep>/trials/)")
    config = read_summary(path)["config"]
    data = DataConfig.model_validate(config["data"])
    signals, background = None, None  # re-evaluating the validation split also re-evaluates the trial's signal samples
    other = args.source or (args.signal if args.signal and not _is_number(args.signal) else None)
    if other:  # another file, read with the trial's variable set
        folder = prepare(DataConfig.model_validate({**data.model_dump(), "source": other}, context={"base": Path.cwd()}))
        label, split = args.label or Path(other).stem, False
    elif args.signal:
        if not data.generated:
            raise UserError(
                f"{path}: trial of file data ({data.source}): --signal {args.signal} would be a generated Z' sample, which a model "
                "of other jets was not trained to compare with; give a signal file instead: --signal FILE"
            )
        mass = float(args.signal)
        folder = prepare(data.model_copy(update={"process": "zprime", "zprime_mass": mass, "events": args.events}))
        label, split = args.label or f"zprime{mass:g}", False
    else:
        folder = _own_data(path, config)
        label, split = args.label or "validation", True
        signals = {  # the samples it was evaluated on before, read again from their files: anomaly figures of merit
            name: str(prepare(DataConfig.model_validate({**data.model_dump(), "source": result["source"]}, context={"base": Path.cwd()})))
            for name, result in read_trial(path, weights=False).evaluation.items()
            if name != "validation" and Path(result.get("source") or "/nonexistent").is_file()
        }
    if args.signal:  # a signal is scored against the trial's validation jets, as in a sweep
        background = open_cache(_own_data(path, config))
    try:
        summary = evaluate_stored(path, label, open_cache(folder), split, signals=signals, background=background)
    except ValueError as err:
        raise UserError(str(err)) from None
    _print_evaluation(label, summary)
    print(f"written into {path} under evaluation[{label!r}]")
    return 0


def _own_data(path: Path, config: dict[str, Any]) -> Path:
    """The cache of the data a trial trained on (`data.trained_data`), its refusal naming the trial file."""
    from hpcsweep.data import trained_data
    from hpcsweep.store import read_summary

    what = "its validation split cannot be rebuilt; evaluate another file with --source FILE"
    try:
        return trained_data(config, read_summary(path).get("provenance", {}), what)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _print_evaluation(label: str, summary: dict[str, Any]) -> None:
    if "compressor" in summary:
        c = summary["compressor"]
        print(f"{label}: its compressor ({c['kind']}) at {100 * c['bound']:g} %: {c['bytes_per_jet']:.2f} bytes/jet "
              f"({c['payload_per_jet']:.2f} coded, of which latents {c['latent_per_jet']:.2f}; the compressor itself "
              f"{c['model_bytes'] / 1e3:.0f} kB over {c['amortised_over']:,} jets), largest error {c['largest_error']:.3f} of the bound")  # fmt: skip
    if "mse" not in summary:  # the coder alone: no network to measure
        return
    print(f"{label}: {summary['n_jets']:,} jets, reconstruction MSE {summary['mse']:.4g} (normalised)")
    rows = [
        [name, r["kind"], f"{r['mean']:+.3g}", f"{r['width']:.3g}", f"{r['q005']:+.3g}", f"{r['q995']:+.3g}"]
        for name, r in summary["residuals"].items()
        if r["n"]
    ]
    _print_rows(
        "residuals (relative for scale variables, absolute otherwise)",
        ["variable", "kind", "mean", "width (16-84 %)/2", "0.5 %", "99.5 %"],
        rows,
    )
    if "dijet" in summary:
        d = summary["dijet"]
        print(f"dijet mass ({d['n_events']:,} events): peak {d['peak_original']:.1f} -> {d['peak_decoded']:.1f} GeV "
              f"({d['peak_shift_pct']:+.2f} %), width {d['width_original']:.1f} -> {d['width_decoded']:.1f} GeV ({d['width_change_pct']:+.1f} %)")  # fmt: skip
    if summary.get("anomaly"):
        from hpcsweep.review.tables import rejection_text

        a = summary["anomaly"]
        print(f"{label} against the trial's validation jets: AUC {a['auc']:.3f}; background rejection at 50 % signal efficiency "
              f"{rejection_text(a, 50)}, at 10 % {rejection_text(a, 10)}")  # fmt: skip
    if "compression" in summary:
        c = summary["compression"]
        print(f"bytes per jet: raw float32 {c['raw_float32']:.1f} (lzma {c['raw_float32_lzma']:.1f}); latent float16+lzma "
              f"{c['latent_float16_lzma']:.1f} + model {c['model_per_jet']:.2f} -> ratio {c['ratio_vs_raw_float32']:.2f} "
              f"({c['ratio_vs_raw_float32_lzma']:.2f} against lzma'd raw; {c['ratio_large_dataset']:.2f} and "
              f"{c['ratio_large_dataset_vs_lzma']:.2f} for a dataset large enough to hide the model); "
              f"MSE with float16 latents {c['mse_float16_latent']:.4g}")  # fmt: skip
    if "timing" in summary:
        t = summary["timing"]
        print(f"encode {t['encode_us_per_jet']:.2f} us/jet, decode {t['decode_us_per_jet']:.2f} us/jet ({t['threads']} threads)")


def _bound(text: str) -> float:
    """'1%' -> 0.01, '0.001' -> 0.001; anything else or outside (0, 50 %) is refused by argparse."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a bound; write e.g. 1% or 0.001") from None
    if not is_bound(value):
        raise argparse.ArgumentTypeError(f"{text!r}: a bound lies between 0 and {100 * MAX_BOUND:g}%")
    return value


def cmd_export(args: argparse.Namespace) -> int:
    from hpcsweep.codec import AMORTISED_OVER
    from hpcsweep.compress import best_trial, export_bundle, export_onnx
    from hpcsweep.store import trial_path

    if sum(option is not None for option in (args.z, args.trial, args.best)) != 1:
        raise UserError("give one of --z Z (the best trial at that latent dimension), --trial ID or --best MEASURE")
    if args.steps is not None and not args.refit:
        raise UserError("--steps sets how a compressor is fitted anew: it goes with --refit")
    results_dir = _results_dir(args.sweep, args.results)
    trial_id = args.trial or best_trial(results_dir, args.z, args.best)
    path = trial_path(results_dir, trial_id)
    if not path.is_file():
        raise UserError(f"{path}: no such trial in {results_dir}")
    bounds = tuple(dict.fromkeys(args.max_error)) if args.max_error else None
    if args.onnx:
        for written in export_onnx(path, Path(args.output).with_suffix("")):
            print(f"written: {written}")
    digest, compressor = export_bundle(path, Path(args.output), bounds, refit=args.refit, steps=args.steps)
    model = compressor.model_bytes()
    print(f"trial {trial_id} -> {args.output} ({Path(args.output).stat().st_size / 1e6:.2f} MB, {digest[:19]}...), "
          f"{'refitted ' if args.refit else ''}compressor ({compressor.kind}, {model / 1e3:.0f} kB: {model / AMORTISED_OVER:.2f} "
          f"bytes/jet over 1M jets) at {', '.join(f'{100 * b:g}%' for b in compressor.bounds)}")  # fmt: skip
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from hpcsweep.compress import compress_file, load_bundle

    summary = compress_file(Path(args.input), load_bundle(args.model), args.max_error, Path(args.output), tree=args.tree)
    size, bundle = Path(args.input).stat().st_size, Path(args.model).stat().st_size
    print(f"{summary.jets:,} jets in {summary.entries:,} entries -> {args.output}: {summary.total_bytes / 1e6:.2f} MB, "
          f"{size / max(summary.total_bytes, 1):.2f}x smaller than the input; {size / (summary.total_bytes + bundle):.2f}x counting "
          f"the bundle it needs to be read ({bundle / 1e6:.2f} MB, once for every file compressed with it); model variables "
          f"{summary.model_bytes / max(summary.jets, 1):.2f} bytes/jet, {summary.jets / summary.seconds:,.0f} jets/s")  # fmt: skip
    for note in summary.notes:
        print(f"note: {note}")
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    from hpcsweep.compress import decompress_file, load_bundle

    summary = decompress_file(Path(args.input), load_bundle(args.model), Path(args.output))
    print(f"{summary.jets:,} jets in {summary.entries:,} entries -> {args.output} ({summary.total_bytes / 1e6:.2f} MB), "
          f"{summary.jets / summary.seconds:,.0f} jets/s")  # fmt: skip
    for note in summary.notes:
        print(f"note: {note}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from hpcsweep.compress import load_bundle, score_file

    summary = score_file(Path(args.input), load_bundle(args.model), Path(args.output), tree=args.tree)
    print(f"{summary.jets:,} jets in {summary.entries:,} entries scored -> {args.output}, {summary.jets / summary.seconds:,.0f} jets/s")
    for note in summary.notes:
        print(f"note: {note}")
    return 0


def cmd_export_tracking(args: argparse.Namespace) -> int:
    from hpcsweep.review.tracking import export_tracking
    from hpcsweep.store import trials_dir

    results_dir = _results_dir(args.sweep, args.results)
    if not trials_dir(results_dir).is_dir():
        raise UserError(f"{results_dir}: no trials yet; run 'hpcsweep sweep {args.sweep}' first")
    exported = export_tracking(results_dir, args.to, Path(args.output) if args.output else None)
    for problem in exported.unreadable:
        print(f"warning: left out {problem}", file=sys.stderr)
    states = ", ".join(f"{count} {state}" for state, count in sorted(exported.states.items()))
    print(f"{sum(exported.states.values())} runs ({states}) -> {exported.folder}; open with: {exported.open_with}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
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
    from hpcsweep.data.inspect import describe, draft_varset, inspect_file

    tables = inspect_file(args.file, tree=args.tree, max_entries=args.max_entries, progress=sys.stderr.isatty())
    for title, header, rows in describe(tables):
        _print_rows(title, header, rows)
    if args.draft_varset:
        if len(tables) > 1:
            raise UserError(f"{args.file} holds {len(tables)} tables ({', '.join(t.name for t in tables)}); choose one with --tree")
        out = Path(args.draft_varset)
        if out.exists():
            raise UserError(f"{out} exists; give another name (a draft never overwrites a file)")
        out.write_text(draft_varset(tables[0], out.stem))
        print(f"drafted {out}: check it (the comments at its top say what to check), then use it in a sweep as data.varset: {out}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    from hpcsweep.data.physics import MIN_PEAK_EVENTS, dijet_mass, peak_and_width
    from hpcsweep.data.read import load_jets
    from hpcsweep.data.varset import load_varset
    from hpcsweep.paths import locate

    varset = load_varset(args.varset, Path.cwd())
    table = load_jets(locate(args.file, None), varset, tree=args.tree)
    n_events = len(np.unique(table.event))
    print(
        f"{args.file}: {len(table):,} jets in {n_events:,} events with jets; variable set {varset.name!r} ({len(varset.names)} variables)"
    )
    rows = []
    for name in table.names:
        column = np.asarray(table.columns[name], dtype=np.float64)
        rows.append([name, f"{column.min():.4g}", f"{column.mean():.4g}", f"{column.max():.4g}"] if len(column) else [name, "", "", ""])
    _print_rows("variables", ["variable", "min", "mean", "max"], rows)
    cuts = [[c.name, c.expression, c.removed, ", ".join(f"{k}: {n:,}" for k, n in c.by_variable.items())] for c in table.cuts]
    _print_rows("cleaning", ["step", "rule", "jets removed", "by variable"], cuts)
    if varset.four_momentum:
        mass = dijet_mass(table.columns, table.event, table.rank, varset.four_momentum)
        if len(mass) >= MIN_PEAK_EVENTS:
            peak, width = peak_and_width(mass)
            print(f"dijet mass of the two leading jets ({len(mass):,} events): peak {peak:.1f} GeV, "
                  f"Gaussian-equivalent width {width:.1f} GeV (FWHM/2.355)")  # fmt: skip
    return 0


def cmd_varsets(_: argparse.Namespace) -> int:
    from hpcsweep.data.varset import load_varset, varset_names

    rows = [[name, len(load_varset(name).variables), load_varset(name).description] for name in varset_names()]
    _print_rows("built-in variable sets", ["name", "variables", "description"], rows)
    print("A sweep's data.varset also takes the path of a YAML file of your own (relative to the sweep file) or an inline "
          "mapping; 'hpcsweep data inspect FILE --draft-varset mine.yaml' drafts one. See docs/data.md.")  # fmt: skip
    return 0


def _print_rows(title: str, header: list[str], rows: list[list[Any]], wide: bool = False, legend: bool = True) -> None:
    from hpcsweep.terminal import print_table

    print_table(title, header, rows, wide, legend)


if __name__ == "__main__":
    sys.exit(main())

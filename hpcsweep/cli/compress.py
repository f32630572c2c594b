"""The compression's commands: export (a trial -> a bundle), compress, decompress and score (a bundle applied to a file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from hpcsweep.cli.common import print_notes, results_dir
from hpcsweep.cli.options import (
    RESULTS_HELP,
    WRITE_HELP,
    add_bundle_io,
    add_command,
    add_dataset_dispatch_options,
    add_results_option,
    bound,
    dataset_dispatch,
    is_glob,
    output_file,
)
from hpcsweep.config import RankBy
from hpcsweep.errors import UserError

if TYPE_CHECKING:
    from hpcsweep.compress.dataset import DatasetSummary
    from hpcsweep.config import DispatchConfig


def add_export(commands: argparse._SubParsersAction) -> None:
    export = add_command(commands, "export", "write one trial's model and compressor into a self-contained bundle", cmd_export)
    export.add_argument("sweep", help=RESULTS_HELP)
    export.add_argument(
        "--z", type=int, metavar="Z", help="take the best finished trial at this latent dimension (0: the compressor alone)"
    )
    export.add_argument("--trial", metavar="ID", help="take this trial instead (an id in results/<sweep>/trials/)")
    export.add_argument("--best", choices=get_args(RankBy), metavar="MEASURE",
                        help="take the best trial of the whole sweep by this measure, any z and kind (e.g. bytes); "
                             f"choices: {', '.join(get_args(RankBy))}")  # fmt: skip
    export.add_argument("-o", "--output", required=True, type=output_file, metavar="BUNDLE.h5", help="the bundle to write")
    export.add_argument("--max-error", action="append", type=bound, metavar="BOUND",
                        help="ship the trial's compressor at these bounds only: '1%%' (relative for scale variables, absolute "
                             "0.01 for angles and signed ones); repeat for several (default: every bound it was fitted at)")  # fmt: skip
    export.add_argument("--refit", action="store_true", help="fit a compressor of the trial's kind anew on its training jets, at "
                                                            "--max-error (default: the trial's bounds); for other bounds, or "
                                                            "a trial file of an older hpcsweep")  # fmt: skip
    export.add_argument("--steps", type=int, metavar="N", help="--refit: training steps of each predictor (default: the trial's)")
    export.add_argument("--onnx", action="store_true", help="also write BUNDLE.encoder.onnx and BUNDLE.decoder.onnx (normalised "
                                                           "inputs/outputs) and BUNDLE.score.onnx (a file's own columns by name "
                                                           "-> anomaly_score, as 'hpcsweep score'); needs the extra 'onnx'")  # fmt: skip
    add_results_option(export)


def add_compress(commands: argparse._SubParsersAction) -> None:
    compress = add_command(commands, "compress", "compress a jet file with a bundle, every model value within --max-error", cmd_compress)
    add_bundle_io(compress, "a ROOT or Parquet file; or several, or a quoted glob ('in/*.root'): a dataset, written into the folder -o",
                  "a bundle made by 'hpcsweep export'", "OUT.hpcz",
                  "the compressed file to write; for several inputs a folder, which gets each file's .hpcz and manifest.json",
                  several=True, folder=True)  # fmt: skip
    compress.add_argument("--max-error", type=bound, default=0.01, metavar="BOUND", help="'1%%' (default) or '0.1%%': one of the bundle's")
    compress.add_argument("--tree", help="tree or RNTuple to read (default: the variable set's, or the only one)")
    compress.add_argument("--embed", action=argparse.BooleanOptionalAction,
                          help="carry the compressor that decodes the file (some 100 kB), so that decompress needs nothing "
                               "else (default: unless it would make more than 10%% of the file)")  # fmt: skip
    add_dataset_dispatch_options(compress, "files")


def add_decompress(commands: argparse._SubParsersAction) -> None:
    decompress = add_command(commands, "decompress", "give back a compressed file's tree as ROOT or Parquet", cmd_decompress)
    add_bundle_io(decompress, "a file made by 'hpcsweep compress', or the manifest.json of a folder it compressed several into",
                  "a bundle holding the compressor it was compressed with (the same trial exported again will do); "
                  "needed only for a file that does not carry it", "RECO.root",
                  f"{WRITE_HELP}; for a manifest, the folder to write every file into", model_required=False, folder=True)  # fmt: skip
    add_dataset_dispatch_options(decompress, "files")


def add_score(commands: argparse._SubParsersAction) -> None:
    score = add_command(
        commands, "score", "write each jet's anomaly score (the AE's reconstruction error) beside a file's branches", cmd_score
    )
    add_bundle_io(score, "a ROOT or Parquet file", "a bundle made by 'hpcsweep export'", "OUT.root", WRITE_HELP)
    score.add_argument("--tree", help="tree or RNTuple to read (default: the variable set's, or the only one)")


def cmd_export(args: argparse.Namespace) -> int:
    """The best trial at --z (or --trial, or the best of the sweep by --best): its weights, normaliser, variable set,
    discrete tables, trial id and data checksum, and the compressor it fitted and measured, as it was (--refit fits one
    anew). Loadable without the sweep folder; 'hpcsweep compress' uses it."""
    from hpcsweep.codec import AMORTISED_OVER
    from hpcsweep.compress import export_bundle, export_onnx, trial_to_export

    if sum(option is not None for option in (args.z, args.trial, args.best)) != 1:
        raise UserError("give one of --z Z (the best trial at that latent dimension), --trial ID or --best MEASURE")
    if args.steps is not None and not args.refit:
        raise UserError("--steps sets how a compressor is fitted anew: it goes with --refit")
    trial_id, path = trial_to_export(results_dir(args.sweep, args.results), args.z, args.trial, args.best)
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
    """Reads a ROOT (TTree or RNTuple, flat or jagged) or Parquet file in chunks; the bundle's variables are coded within
    the bound, jets outside its cuts and every other branch losslessly. The file names the compressor that decodes it,
    and carries it unless it would make more than 10 % of the file (--embed, --no-embed). Several inputs (or a glob)
    are a dataset: each file into the folder -o with a manifest.json, resumable (a file done before is verified and
    skipped), here one after another or as a SLURM job array (--executor slurm)."""
    from hpcsweep.compress import compress_file, load_bundle

    if len(args.input) > 1 or is_glob(args.input[0]):
        return _compress_dataset(args)
    _one_file(args)
    args.input = args.input[0]
    summary = compress_file(Path(args.input), load_bundle(args.model), args.max_error, Path(args.output), tree=args.tree, embed=args.embed)
    size, codec = Path(args.input).stat().st_size, summary.codec_bytes
    needs = (f"its compressor ({codec / 1e3:.0f} kB) carried" if summary.embedded else
             f"{size / (summary.total_bytes + codec):.2f}x counting the compressor it needs to be read ({codec / 1e3:.0f} kB, "
             f"not carried: keep {args.model}, or a bundle of the same trial)")  # fmt: skip
    print(f"{summary.jets:,} jets in {summary.entries:,} entries -> {args.output}: {summary.total_bytes / 1e6:.2f} MB, "
          f"{size / max(summary.total_bytes, 1):.2f}x smaller than the input, {needs}; model variables "
          f"{summary.model_bytes / max(summary.jets, 1):.2f} bytes/jet, {summary.jets / summary.seconds:,.0f} jets/s")  # fmt: skip
    print_notes(summary.notes)
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    """The input's tree, branch names, types and jaggedness (a jagged group's counter is written as int32); decoded by
    the compressor the file carries, or by --model's when it does not carry one. A manifest (the manifest.json of a
    folder 'compress' wrote several files into) gives back each of its files into the folder -o, resumable."""
    from hpcsweep.compress import decompress_file, load_bundle

    if _is_manifest(Path(args.input)):
        return _decompress_dataset(args)
    _one_file(args)
    summary = decompress_file(Path(args.input), load_bundle(args.model) if args.model else None, Path(args.output))
    print(f"{summary.jets:,} jets in {summary.entries:,} entries -> {args.output} ({summary.total_bytes / 1e6:.2f} MB), "
          f"{summary.jets / summary.seconds:,.0f} jets/s")  # fmt: skip
    print_notes(summary.notes)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """The bundle's AE applied to a ROOT or Parquet file (flat or jagged), chunk by chunk: the output is the input's tree
    with one more branch, anomaly_score, each jet's mean squared reconstruction error in the trial's reference space
    (NaN outside the variable set's cuts). Larger: less like the jets the AE learned."""
    from hpcsweep.compress import load_bundle, score_file

    summary = score_file(Path(args.input), load_bundle(args.model), Path(args.output), tree=args.tree)
    print(f"{summary.jets:,} jets in {summary.entries:,} entries scored -> {args.output}, {summary.jets / summary.seconds:,.0f} jets/s")
    print_notes(summary.notes)
    return 0


def _one_file(args: argparse.Namespace) -> None:
    """One input into one output file, as ever: a folder for -o, or a setting of several files' dispatch, is refused."""
    try:
        output_file(args.output)
    except argparse.ArgumentTypeError as err:
        raise UserError(str(err)) from None
    given = [f"--{key.replace('_', '-')}" for key in dataset_dispatch(args)]
    if given:
        raise UserError(f"{', '.join(given)}: for several inputs (a list or a glob, written into a folder); one file runs here")


def _is_manifest(path: Path) -> bool:
    """A manifest of a compressed dataset (JSON) rather than a compressed file, by its name or its first byte."""
    if path.suffix == ".json":
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(1) == b"{"
    except OSError:
        return False


def _dispatch(args: argparse.Namespace) -> DispatchConfig | None:
    from pydantic import ValidationError

    from hpcsweep.config import DispatchConfig
    from hpcsweep.errors import one_line

    given = dataset_dispatch(args)
    try:
        return DispatchConfig.model_validate(given) if given else None
    except ValidationError as err:
        raise UserError(one_line(err, "the command line", DispatchConfig)) from None


def _compress_dataset(args: argparse.Namespace) -> int:
    from hpcsweep.compress.dataset import compress_dataset, expand_inputs, output_folder

    inputs = expand_inputs(args.input)
    folder = output_folder(Path(args.output))
    summary = compress_dataset(inputs, Path(args.model), args.max_error, folder, tree=args.tree, embed=args.embed, dispatch=_dispatch(args))
    return _dataset_status(summary, "compressed")


def _decompress_dataset(args: argparse.Namespace) -> int:
    from hpcsweep.compress.dataset import decompress_dataset

    summary = decompress_dataset(Path(args.input), Path(args.output), Path(args.model) if args.model else None, _dispatch(args))
    return _dataset_status(summary, "given back")


def _dataset_status(summary: DatasetSummary, verb: str) -> int:
    """The summary line; exit status 0 when every file is done, 1 when some failed, 3 when some have no result."""
    from hpcsweep.cli.sweep import EXIT_FAILED, EXIT_UNFINISHED

    print(summary.line(verb))
    if summary.failed:
        print(f"{len(summary.failed)} files failed (above, and in {summary.manifest}); run the command again to redo them", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_UNFINISHED if summary.unfinished else 0

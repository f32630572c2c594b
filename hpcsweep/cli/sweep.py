"""The sweep's commands: sweep (run the unfinished trials, then the tables), status, rerun-best; and their exit status."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hpcsweep.cli.common import print_rows, resolve_sweep_file, results_dir, sweep_definition
from hpcsweep.cli.options import (
    SWEEP_HELP,
    add_command,
    add_definition_options,
    add_dispatch_options,
    add_results_option,
    add_verify_option,
    add_wide_option,
    dispatch_overrides,
    driver_options,
)
from hpcsweep.cli.review import show_tables
from hpcsweep.errors import UserError
from hpcsweep.states import TrialState

if TYPE_CHECKING:
    from hpcsweep.config import SweepConfig
    from hpcsweep.sweep import Plan

#: The exit status of `sweep` (and `rerun-best`) that followed its trials to the end (docs/sweeps.md), as --help says it.
EXIT_FAILED, EXIT_UNFINISHED = 1, 3
EXIT_HELP = (
    "Exit status (when it follows its trials to the end): 0 every trial finished; 1 some failed or were given up; 2 a "
    "mistake in what was asked (nothing run); 3 some trials have no result (lost, killed): run it again."
)


def add_sweep(commands: argparse._SubParsersAction) -> None:
    sweep = add_command(commands, "sweep", "run the unfinished trials of a sweep, then print its tables", cmd_sweep, epilog=EXIT_HELP)
    sweep.add_argument("sweep", help=SWEEP_HELP)
    add_definition_options(sweep)
    add_dispatch_options(sweep)
    add_results_option(sweep)
    sweep.add_argument("--dry-run", action="store_true", help="list the trials and their states; run nothing")
    sweep.add_argument(
        "--no-review", action="store_true", help="run the trials only: no tables or figures ('hpcsweep aggregate' makes them)"
    )
    add_wide_option(sweep)


def add_status(commands: argparse._SubParsersAction) -> None:
    status = add_command(commands, "status", "count a sweep's trials by state and latent dimension", cmd_status)
    status.add_argument("sweep", help=SWEEP_HELP)
    add_definition_options(status)
    add_results_option(status)
    add_verify_option(status)
    add_wide_option(status)


def add_rerun_best(commands: argparse._SubParsersAction) -> None:
    rerun = add_command(commands, "rerun-best", "retrain the K best configs per latent dimension with N new seeds", cmd_rerun_best)
    rerun.add_argument("sweep", help="the sweep whose best trials are rerun (a name under --results)")
    rerun.add_argument("--top", type=int, default=1, metavar="K", help="best configs per latent dimension (default 1)")
    rerun.add_argument("--seeds", type=int, default=3, metavar="N", help="new seeds per config (default 3)")
    add_results_option(rerun)
    add_dispatch_options(rerun)
    add_wide_option(rerun)


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
    dispatch = dispatch_overrides(args)
    return definition, definition.with_overrides(latent=args.latent, dispatch=dispatch) if args.latent or dispatch else definition


def cmd_sweep(args: argparse.Namespace) -> int:
    """Expand a sweep's grid, skip finished trials, run the rest (and follow any an earlier, killed driver left running),
    and print the best/median trial per latent dimension."""
    from hpcsweep.sweep import expand, preview

    path = resolve_sweep_file(args.sweep)
    definition, sweep = _overridden_sweep(args, path)
    folder = Path(args.results) / sweep.name
    if args.dry_run:
        _print_preview(sweep.name, preview(sweep, folder, str(path)), args.wide)
        return 0
    states = _run(args, sweep, folder, path, definition)
    if states is None:
        return 0
    if not args.no_review:
        show_tables(folder, sorted({trial.model.latent for trial in expand(sweep)}), wide=args.wide)
    return _exit_status(states, sweep, folder, args.sweep)


def cmd_rerun_best(args: argparse.Namespace) -> int:
    """Make the child sweep <sweep>-top<K>-seeds<N> (the best configs, their original trials reused, N new seeds each),
    dispatch it like any sweep, and print the stability table: mean, std, min, max val loss; runs above 1.5x the median
    flagged."""
    from hpcsweep.review.rerun import plan_rerun

    rerun = plan_rerun(results_dir(args.sweep, args.results), Path(args.results), args.top, args.seeds)
    sweep = rerun.start(dispatch_overrides(args), f"hpcsweep rerun-best {args.sweep} --top {args.top} --seeds {args.seeds}")
    print(f"{len(rerun.originals)} configs x {args.seeds} new seeds -> sweep {rerun.name!r} ({rerun.sweep_file})")
    states = _run(args, sweep, rerun.results_dir, rerun.sweep_file, rerun.definition)
    if states is None:
        print(f"when it is done: hpcsweep aggregate {rerun.name}")
        return 0
    show_tables(rerun.results_dir, detail="none", wide=args.wide)
    return _exit_status(states, sweep, rerun.results_dir, rerun.name)


def _run(args: argparse.Namespace, sweep: SweepConfig, folder: Path, source: Path, definition: SweepConfig) -> Counter | None:
    """`run_sweep` as the options say; the count of states, or None when the driver did not follow its jobs to the
    end (they outlive it and --wait was not given)."""
    from hpcsweep.sweep import backend, run_sweep

    states = run_sweep(sweep, folder, source=source, definition=definition, **driver_options(args))
    return states if args.wait or not backend(sweep.dispatch.executor).outlives_driver else None


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


def _print_preview(name: str, planned: Plan, wide: bool) -> None:
    """A dry run: the trials with every varied axis and their states."""
    from hpcsweep.review.tables import config_value, varied_axes

    configs = {p.trial_id: {"config": p.config.model_dump(mode="json")} for p in planned.trials}
    axes = varied_axes(configs) + (["train.seed"] if len({p.config.train.seed for p in planned.trials}) > 1 else [])
    rows: list[list[Any]] = []
    for p in planned.trials:
        train = p.config.train
        values = [config_value(configs[p.trial_id]["config"], axis) for axis in axes]
        network = [train.batch_size, train.lr, train.weight_decay, train.epochs] if p.config.model.autoencoder else [""] * 4
        rows.append([p.trial_id if p.config.data_version else "(once read)", p.config.model.latent, *network, *values, p.state])
    versions = sorted({p.config.data_version or "not read yet" for p in planned.trials})
    title = f"{name}: {len(planned.trials)} trials (data version {', '.join(versions)})"
    if "not read yet" in versions:  # an id is the hash of the config with its data's version: none to show before
        title += "; trial ids take the data's version: they are known once the sweep has generated or read it"
    print_rows(title, ["trial", "z", "bs", "lr", "wd", "epochs", *axes, "state"], rows, wide)
    _print_others(planned)


def cmd_status(args: argparse.Namespace) -> int:
    """The trials of a sweep file (with the same overrides as 'sweep') by state and latent dimension: done, diverged,
    pruned, failed, running, queued, lost, pending; and what else its results folder holds."""
    from hpcsweep.sweep import plan

    path = sweep_definition(args.sweep, Path(args.results))
    _, sweep = _overridden_sweep(args, path)
    planned = plan(sweep, Path(args.results) / sweep.name, str(path), verify=args.verify)
    _print_counts(sweep, planned, args.wide)
    retried = [p for p in planned.trials if p.state in (TrialState.FAILED, TrialState.LOST, TrialState.EXHAUSTED)]
    if retried:
        rows = [[p.trial_id, p.config.model.latent, p.state, f"{p.failures}/{sweep.max_attempts}", p.detail or "?"] for p in retried[:20]]
        more = f" (the first 20 of {len(retried)})" if len(retried) > 20 else ""
        print_rows(f"failed, lost and given-up trials{more}", ["trial", "z", "state", "attempts", "last reason"], rows, args.wide)
    _print_others(planned)
    for problem in planned.unreadable:
        print(f"unreadable trial file: {problem}")
    return 0


def _print_counts(sweep: SweepConfig, planned: Plan, wide: bool) -> None:
    """The trials by latent dimension and state, how many of the goal finished, and what carries those in flight."""
    from hpcsweep.terminal import labelled_bar

    counts = Counter((p.config.model.latent, p.state) for p in planned.trials)
    rows: list[list[Any]] = [[z, *(counts[(z, s)] for s in TrialState)] for z in sorted({p.config.model.latent for p in planned.trials})]
    total = planned.counts()
    rows.append(["all", *(total[s] for s in TrialState)])
    finished, goal = planned.finished(), planned.goal()
    print_rows(
        f"{sweep.name}: {len(planned.trials)} trials, {finished} of {goal} finished ({sweep.search} search)", ["z", *TrialState], rows, wide
    )
    labelled_bar("finished", min(finished, goal), goal)
    for state in (s for s in TrialState if s.in_flight()):
        details = Counter(p.detail or "?" for p in planned.trials if p.state == state)
        if details:
            print(f"{state}: " + ", ".join(f"{detail} ({n})" for detail, n in details.most_common(8)))


def _print_others(planned: Plan) -> None:
    """What else the folder holds, and the data that could not be read to learn its version."""
    for line in [planned.describe_others(), *planned.data_problems]:
        if line:
            print(line)

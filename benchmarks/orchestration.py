"""The orchestration section of `make bench`: hpcsweep's dispatch against Hydra + hydra-submitit-launcher.

1. `hpcsweep status` on a sweep of 1000 trial files, without and with the sweep index;
2. on the local SLURM cluster (make slurm-up), the same N short trials (N = 16 and 64) through hpcsweep (one
   trial per array task, and 4 per task) and through a Hydra multirun with the submitit launcher
   (benchmarks/peers/hydra_app.py, one trial per array task, the same trial function): wall time against the
   trials' own time per core;
3. what an array task pays before its first trial (interpreter, imports, data), in fresh processes.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sections import verdict

from hpcsweep.allocation import allocated_cores

HERE = Path(__file__).parent
STATUS_SWEEP = (
    "name: big\ngrid: {z: [4, 6, 8, 10, 12], lr: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], wd: [0, 1.0e-5, 1.0e-4, 1.0e-3], seed: [0, 1, 2, 3, 4]}\n"
)
LR = [1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2]
WD = [0, 1.0e-5, 1.0e-4, 1.0e-3]
SEEDS = {16: [0], 64: [0, 1, 2, 3]}
PACK = 4


def short_sweep(seeds: list[int]) -> str:
    """A sweep of short trials (a few seconds each): 16 grid points per seed."""
    return (
        "name: short\ndata: {events: 600}\nmodel: {hidden: [64, 64], latent: 4}\ntrain: {epochs: 20, batch_size: 256}\n"
        f"grid: {{lr: {LR}, wd: {WD}, seed: {seeds}}}\nevaluation: {{signals: [], timing_repeats: 1}}\n"
    )


def section() -> list[str]:
    """The Markdown lines of the orchestration section."""
    from hpcsweep.sweep.slurm import cluster_answers

    lines = [
        "Targets: `hpcsweep status` under 1 s for 1000 trials; on SLURM, hpcsweep's packed dispatch ahead of Hydra's and",
        "a start-up cost under 1 s per trial.",
        "",
        *status_rows(),
    ]
    if not cluster_answers():
        return [*lines, "", "No SLURM cluster answered (make slurm-up): the dispatch was not measured against Hydra."]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        os.environ["HPCSWEEP_DATA"] = str(root / "data")
        dispatch, walls = dispatch_table(root)
        startup, per_trial = startup_table(root)
    ours_packed, peer = ({n: walls[n][label] for n in SEEDS} for label in (PACKED, HYDRA))
    ahead = all(ours_packed[n] < peer[n] for n in SEEDS)
    lines += [
        "",
        "### Dispatch on SLURM: hpcsweep against Hydra + hydra-submitit-launcher",
        "",
        f"The local cluster (`make slurm-up`: one node, {allocated_cores()} cores, 1 CPU per task, 16 tasks at once for both). The trials",
        "are those of one short sweep (20 epochs of about 1,900 jets each). Hydra's task (`benchmarks/peers/hydra_app.py`) and",
        "hpcsweep's both run `hpcsweep.sweep.dispatch.run_one`, which logs each trial's start and end: the busy time is their sum.",
        "wall / busy per core is 1.00 when nothing but the trials costs time.",
        "",
        *dispatch,
        "",
        "### What an array task pays before its first trial",
        "",
        "Fresh processes on this machine, median of 3; the data load is the cached table opened (memory-mapped), the split",
        "and the normalisation of one trial.",
        "",
        *startup,
        "",
        f"Goals: hpcsweep's packed dispatch ahead of Hydra's: {verdict(ahead)} "
        f"({'; '.join(f'N = {n}: {ours_packed[n]:.1f} s against {peer[n]:.1f} s' for n in SEEDS)}); "
        f"start-up under 1 s per trial: {verdict(per_trial < 1)} ({per_trial:.2f} s per trial in tasks of {PACK}; a task of one "
        "trial pays the whole start-up, most of it importing torch).",
    ]
    return lines


def status_rows() -> list[str]:
    from hpcsweep.config import load_sweep
    from hpcsweep.store import TrialRecord, rebuild_index, trial_path, write_trial
    from hpcsweep.sweep import expand

    lines = ["| what | seconds |", "|---|---:|"]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "big.yaml").write_text(STATUS_SWEEP)
        for trial in expand(load_sweep(root / "big.yaml")):
            record = TrialRecord(
                trial_id=trial.identity(), sweep="big", state="done", config=trial.model_dump(mode="json"), metrics={"best_val_mse": 0.1}
            )
            write_trial(trial_path(root / "results" / "big", trial.identity()), record)
        status = [sys.executable, "-m", "hpcsweep", "status", str(root / "big.yaml"), "--results", str(root / "results")]
        index = root / "results" / "big" / "index.json"
        unindexed = statistics.median(_timed(status, before=lambda: index.unlink(missing_ok=True)) for _ in range(3))
        lines.append(f"| `hpcsweep status`, 1000 trial files, no index (target: under 1 s) | {unindexed:.2f}: {verdict(unindexed < 1)} |")
        rebuild_index(root / "results" / "big")
        indexed = statistics.median(_timed(status) for _ in range(3))
        lines.append(f"| the same once the aggregator built the index | {indexed:.2f} |")
    return lines


def _timed(command: list[str], before: Callable[[], object] = lambda: None) -> float:
    """Seconds `command` takes, from start to exit, after `before`."""
    before()
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True)
    return time.perf_counter() - start


UNPACKED, PACKED, HYDRA = "hpcsweep, 1 trial per task", f"hpcsweep, {PACK} trials per task", "Hydra + submitit launcher"


def dispatch_table(root: Path) -> tuple[list[str], dict[int, dict[str, float]]]:
    """Wall and busy time of N trials through hpcsweep (unpacked, packed) and Hydra; the walls by N and dispatch."""
    from hpcsweep.config import load_sweep
    from hpcsweep.data import prepare

    cores = allocated_cores()
    lines = [
        "| N trials | dispatch | array tasks | wall (s) | busy per core (s) | wall / busy per core |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    walls: dict[int, dict[str, float]] = {}
    for n, seeds in SEEDS.items():
        sweep_file = root / f"short{n}.yaml"
        sweep_file.write_text(short_sweep(seeds))
        dataset = prepare(load_sweep(sweep_file).data, progress=False)  # generated and cached before anything is timed
        runs: dict[str, tuple[int, Callable[[Path], None]]] = {
            UNPACKED: (n, lambda results, f=sweep_file: run_hpcsweep(f, results, 1)),
            PACKED: (n // PACK, lambda results, f=sweep_file: run_hpcsweep(f, results, PACK)),
            HYDRA: (n, lambda results, f=sweep_file, d=dataset, s=seeds: run_hydra(f, d, results, s)),
        }
        walls[n] = {}
        for i, (label, (tasks, run)) in enumerate(runs.items()):
            results = root / f"n{n}_{i}"
            began = time.perf_counter()
            run(results)
            wall = walls[n][label] = time.perf_counter() - began
            busy = busy_seconds(results, n)
            lines.append(f"| {n} | {label} | {tasks} | {wall:.1f} | {busy / cores:.1f} | **{wall / (busy / cores):.2f}** |")
            print(lines[-1], flush=True)
    return lines, walls


def run_hpcsweep(sweep_file: Path, results: Path, pack: int) -> None:
    from hpcsweep.config import load_sweep
    from hpcsweep.sweep import run_sweep

    sweep = load_sweep(sweep_file).with_overrides(dispatch={"executor": "slurm", "pack": pack})
    run_sweep(sweep, results / "short", wait=True, progress=False, log=lambda _: None)


def run_hydra(sweep_file: Path, dataset: Path, results: Path, seeds: list[int]) -> None:
    """The Hydra multirun over the same grid: it returns when every array task has ended."""
    command = [
        sys.executable, str(HERE / "peers" / "hydra_app.py"), "--multirun",
        f"lr={','.join(map(str, LR))}", f"wd={','.join(map(str, WD))}", f"seed={','.join(map(str, seeds))}",
        f"sweep_file={sweep_file}", f"dataset={dataset}", f"results={results / 'short'}", f"hydra.sweep.dir={results / 'multirun'}",
    ]  # fmt: skip
    subprocess.run(command, capture_output=True, check=True, text=True)


def busy_seconds(results: Path, n: int) -> float:
    """The sum of the trials' own times (attempt start to end) of the sweep's folder; all n must have ended done."""
    from hpcsweep.store import read_attempts, scan

    folder = results / "short"
    summaries, _ = scan(folder)
    assert len(summaries) == n and all(s["state"] == "done" for s in summaries.values()), f"{len(summaries)} of {n} trials done"
    return sum(a["end"] - a["start"] for t in summaries for a in read_attempts(folder, t) if "end" in a)


STARTUPS = {
    "interpreter (`python -c pass`)": "pass",
    "hpcsweep task: interpreter and imports (submitit, the dispatch, the trial stage with torch)": "import submitit, hpcsweep.sweep.dispatch, hpcsweep.trial.run",
    "Hydra task: interpreter and imports (Hydra, its submitit launcher, the same trial stage)": (
        "import hydra, hydra_plugins.hydra_submitit_launcher.submitit_launcher, hpcsweep.sweep.dispatch, hpcsweep.trial.run"
    ),
}
DATA_LOAD = """
import sys, time
from hpcsweep.config import load_sweep
from hpcsweep.data.normalize import make_normaliser
from hpcsweep.data.read import open_cache
from hpcsweep.data.varset import load_varset
from hpcsweep.trial.run import split_indices
began = time.perf_counter()
config = load_sweep(sys.argv[1]).data
x = open_cache(sys.argv[2]).matrix(slice(0, config.max_jets))
train, val = split_indices(len(x), config.val_fraction, config.split_seed)
normaliser = make_normaliser(config.normalisation, load_varset(config.varset)).fit(x[train])
normaliser.transform(x[train]), normaliser.transform(x[val])
print(time.perf_counter() - began)
"""


def startup_table(root: Path) -> tuple[list[str], float]:
    """Seconds of each start-up part in fresh processes; and the start-up per trial of a packed hpcsweep task."""
    from hpcsweep.config import load_sweep
    from hpcsweep.data import prepare

    sweep_file = root / "short16.yaml"
    dataset = prepare(load_sweep(sweep_file).data, progress=False)
    seconds = {label: median_seconds([sys.executable, "-c", code]) for label, code in STARTUPS.items()}
    loads = [subprocess.run([sys.executable, "-c", DATA_LOAD, str(sweep_file), str(dataset)], capture_output=True, text=True, check=True)
             for _ in range(3)]  # fmt: skip
    data = statistics.median(float(done.stdout.split()[-1]) for done in loads)
    ours = list(seconds.values())[1]
    per_trial = ours / PACK + data  # imports once per task, the data once per trial
    lines = ["| part | seconds |", "|---|---:|"]
    lines += [f"| {label} | {s:.2f} |" for label, s in seconds.items()]
    lines += [
        f"| data load of one trial (open the cache, split, normalise) | {data:.3f} |",
        f"| hpcsweep, 1 trial per task: start-up per trial | {ours + data:.2f} |",
        f"| hpcsweep, {PACK} trials per task: start-up per trial (imports once per task) | {per_trial:.2f} |",
        f"| Hydra: start-up per trial | {list(seconds.values())[2] + data:.2f} |",
    ]
    return lines, per_trial


def median_seconds(command: list[str], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)

"""Chaos: a sweep killed with SIGKILL at random moments, restarted each time, until it completes.

    python benchmarks/chaos.py [--executor local|slurm] [--trials 12] [--kills 15] [--seed 0] [--out docs/results.md]
    (make chaos [EXECUTOR=slurm])

Runs a sweep of short checkpointing trials once without interruption (the
reference), then again in another folder while killing, at seeded random
moments, the driver (SIGKILL) or a worker running a trial (SIGKILL of its pid;
on SLURM `scancel --signal=KILL` of its array task), restarting the driver
after each kill, until the sweep completes. Then it counts: every trial has
one readable file; no trial was trained to completion twice (attempts logs);
final metrics and curves equal the reference's (resume equivalence); no
temporary files or claims are left. Every kill is logged with its moment.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hpcsweep.files import pid_alive
from hpcsweep.store import claims_dir, read_attempts, read_trial, scan, trial_path

TRIAL_LEARNING_RATES = (3e-3, 1e-2, 3e-2)


@dataclass
class ChaosReport:
    executor: str
    trials: int
    kills: list[dict] = field(default_factory=list)  # {"at_s", "victim": driver|worker, "target"}
    restarts: int = 0
    lost: int = 0  # trials without a readable finished file at the end
    trained_twice: int = 0  # trials whose attempts log shows two completed trainings
    differ_from_reference: int = 0  # trials whose metrics or curves differ from the uninterrupted run's
    temporaries_left: int = 0
    claims_left: int = 0
    wall_s: float = 0.0
    reference_s: float = 0.0

    def ok(self) -> bool:
        return not (self.lost or self.trained_twice or self.differ_from_reference or self.temporaries_left or self.claims_left)

    def markdown(self) -> str:
        drivers = sum(1 for k in self.kills if k["victim"] == "driver")
        return (
            f"| executor | trials | kills (driver / worker) | driver restarts | lost | trained twice | differ from an uninterrupted run "
            f"| temporaries, claims left | wall time (uninterrupted) |\n|---|---|---|---|---|---|---|---|---|\n"
            f"| {self.executor} | {self.trials} | {len(self.kills)} ({drivers} / {len(self.kills) - drivers}) | {self.restarts} "
            f"| {self.lost} | {self.trained_twice} | {self.differ_from_reference} | {self.temporaries_left}, {self.claims_left} "
            f"| {self.wall_s:.0f} s ({self.reference_s:.0f} s) |\n"
        )


def sweep_file(folder: Path, trials: int, events: int, seed: int, epochs: int, executor: str, site: str | None = None) -> Path:
    """A grid of `trials` short trials (learning rate x latent size) that checkpoint every epoch."""
    latents = list(range(2, 2 + -(-trials // len(TRIAL_LEARNING_RATES))))
    points = [{"train.lr": lr, "model.latent": z} for z in latents for lr in TRIAL_LEARNING_RATES][:trials]
    dispatch = {"executor": executor, "checkpoint_every": 1, "workers": 2, "pack": 2} | ({"site": site} if site else {})
    definition = {
        "name": "chaos",
        "data": {"events": events, "generator_seed": seed},
        "model": {"hidden": [64, 64], "latent": 2},
        "train": {"epochs": epochs, "batch_size": 64},
        "codec": {"steps": 20},
        "points": points,
        "dispatch": dispatch,
        "evaluation": {"signals": [], "timing_repeats": 1},
    }
    path = folder / "chaos.yaml"
    path.write_text(json.dumps(definition))  # JSON is YAML
    return path


def _driver(sweep: Path, results: Path, log_file) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "hpcsweep",
        "sweep",
        str(sweep),
        "--results",
        str(results),
        "--wait",
        "--wait-for-lease",
        "--no-review",
    ]
    return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)


def _workers(folder: Path) -> list[dict]:
    """Holders of the trials' claims now: {'pid', 'job', 'trial'}."""
    found = []
    for path in claims_dir(folder).glob("*.claim") if claims_dir(folder).is_dir() else []:
        if path.name.startswith("driver."):
            continue
        try:
            holder = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if holder["host"] == socket.gethostname() and not pid_alive(holder["pid"]):
            continue  # a claim its killed worker left: the next driver tidies it
        found.append({"pid": holder["pid"], "job": holder["job"], "trial": path.name.split(".")[0]})
    return found


def _kill(victim: dict, executor: str) -> str:
    """SIGKILL a worker ('' if it was gone already): its pid, or on SLURM its array task's every process."""
    if executor == "slurm" and not victim["job"].startswith("local:"):
        done = subprocess.run(["scancel", "--signal=KILL", "--full", victim["job"]], check=False, capture_output=True)
        return f"array task {victim['job']} (trial {victim['trial']})" if done.returncode == 0 else ""
    try:
        os.kill(victim["pid"], signal.SIGKILL)
    except ProcessLookupError:
        return ""
    return f"worker pid {victim['pid']} (trial {victim['trial']})"


def _strike(rng: random.Random, driver: subprocess.Popen, workers: list[dict], executor: str) -> tuple[str, str] | None:
    """SIGKILL the driver or a worker (two to one for workers, when any runs); what was struck, or None."""
    victims = (["driver"] if driver.poll() is None else []) + (["worker", "worker"] if workers else [])
    if not victims:
        return None
    if rng.choice(victims) == "worker":
        struck = _kill(rng.choice(workers), executor)
        return ("worker", struck) if struck else None
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    return "driver", f"driver pid {driver.pid}"


def _finished(folder: Path, trials: int) -> bool:
    summaries, unreadable = scan(folder)
    return not unreadable and len(summaries) == trials and all(s["state"] == "done" for s in summaries.values())


def run_chaos(
    root: Path,
    trials: int = 12,
    kills: int = 15,
    seed: int = 0,
    events: int = 600,
    generator_seed: int = 7,
    epochs: int = 60,
    executor: str = "local",
    site: str | None = None,
    timeout_s: float = 1800,
    pause_s: tuple[float, float] = (0.5, 4.0),
    log=print,
) -> ChaosReport:
    """Run the reference sweep, then the killed one (a kill every `pause_s` seconds, uniform); count what the module's doc says."""
    root.mkdir(parents=True, exist_ok=True)
    sweep = sweep_file(root, trials, events, generator_seed, epochs, executor, site)
    report = ChaosReport(executor, trials)
    with open(root / "reference.log", "w") as log_file:
        began = time.time()
        code = _driver(sweep, root / "reference", log_file).wait()
        report.reference_s = time.time() - began
    if code != 0 or not _finished(root / "reference" / "chaos", trials):
        raise RuntimeError(f"the uninterrupted reference run failed (exit {code}); see {root / 'reference.log'}")
    rng = random.Random(seed)
    folder = root / "killed" / "chaos"
    began = time.time()
    driver = None
    with open(root / "killed.log", "w") as log_file:
        while time.time() - began < timeout_s:
            if driver is None or driver.poll() is not None:
                if driver is not None and driver.returncode == 0 and _finished(folder, trials):
                    break
                driver = _driver(sweep, root / "killed", log_file)
                report.restarts += 1
            if len(report.kills) >= kills or _finished(folder, trials):
                driver.wait()
                continue
            time.sleep(rng.uniform(*pause_s))
            target = _strike(rng, driver, _workers(folder), executor)
            if target:
                report.kills.append({"at_s": round(time.time() - began, 2), "victim": target[0], "target": target[1]})
                log(f"kill {len(report.kills)} at {report.kills[-1]['at_s']} s: {target[1]}")
        if driver is not None and driver.poll() is None:
            driver.kill()
    report.wall_s = time.time() - began
    _count(report, folder, root / "reference" / "chaos")
    return report


def _count(report: ChaosReport, folder: Path, reference: Path) -> None:
    summaries, unreadable = scan(folder)
    done = {t for t, s in summaries.items() if s["state"] == "done"}
    report.lost = report.trials - len(done)
    for trial_id in done:
        outcomes = [a.get("outcome") for a in read_attempts(folder, trial_id)]
        report.trained_twice += outcomes.count("done") > 1
        ours, theirs = read_trial(trial_path(folder, trial_id)), read_trial(trial_path(reference, trial_id))
        same = ours.metrics["best_val_mse"] == theirs.metrics["best_val_mse"] and all(
            np.array_equal(ours.history[k], theirs.history[k]) for k in ("train_loss", "val_loss")
        )
        report.differ_from_reference += not same
    report.temporaries_left = sum(1 for _ in folder.rglob(".*.tmp"))
    report.claims_left = sum(1 for _ in claims_dir(folder).glob("*.claim")) if claims_dir(folder).is_dir() else 0


def _write_section(path: Path, executor: str, text: str) -> None:
    """Replace (or add) the chaos section of this executor in a Markdown file."""
    start, end = f"<!-- chaos:{executor} -->", f"<!-- /chaos:{executor} -->"
    body = path.read_text() if path.exists() else ""
    block = f"{start}\n{text}{end}"
    if start in body and end in body:
        body = body[: body.index(start)] + block + body[body.index(end) + len(end) :]
    else:
        body = body.rstrip() + "\n\n" + block + "\n"
    path.write_text(body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor", choices=["local", "slurm"], default="local")
    parser.add_argument("--site", help="slurm: the site template (default: slurm_templates/local.yaml)")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--kills", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=150, help="per trial (long enough for 15 kills before the sweep completes)")
    parser.add_argument("--root", default="results/.chaos", help="working folder (emptied first)")
    parser.add_argument("--out", help="a Markdown file whose chaos section is replaced with the counts")
    args = parser.parse_args()
    import shutil

    root = Path(args.root) / args.executor
    shutil.rmtree(root, ignore_errors=True)
    site = args.site or (str(Path("slurm_templates/local.yaml").resolve()) if args.executor == "slurm" else None)
    report = run_chaos(root, args.trials, args.kills, args.seed, epochs=args.epochs, executor=args.executor, site=site)
    table = report.markdown()
    print(table)
    (root / "report.json").write_text(json.dumps(asdict(report), indent=1))
    if args.out:
        kills = "\n".join(f"- {k['at_s']} s: {k['target']}" for k in report.kills)
        when = time.strftime("%Y-%m-%d")
        _write_section(Path(args.out), args.executor, f"Measured {when} by `make chaos EXECUTOR={args.executor}` (seed {args.seed}):\n\n"
                       f"{table}\n<details><summary>the kills</summary>\n\n{kills}\n</details>\n")  # fmt: skip
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())

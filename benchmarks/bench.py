"""hpcsweep benchmarks: every figure is a ratio of two things measured in this one run.

    make bench                     (or: python benchmarks/bench.py --out docs/benchmarks.md)

1. float32 matmul rate of this machine (torch.mm, all threads this process may use);
2. training throughput of our loop (`hpcsweep.trial.train.train`) against a plain
   `DataLoader(TensorDataset)` loop, same model, data and threads, at several batch
   sizes, and the FLOP rate each achieves as a fraction of (1);
3. encode / decode time per jet for z = 8..20 against the FLOP bound of (1);
4. peak memory (max RSS of a child process) of reading and caching ROOT files of
   1M, 2M and 4M synthetic jets, which must not grow with the file;
5. orchestration: `hpcsweep status` on a sweep of 1000 trial files, and, when a SLURM
   cluster answers (make slurm-up), 16 short trials as job arrays: wall time against
   the sum of the trials' own times divided by the cores, with and without packing;
6. review: `hpcsweep aggregate` on 1000 trial files (first, again, after one new best);
7. compression (benchmarks/compression.py): bytes per jet of the learned error-bounded compressor against SZ3, ZFP,
   fpzip and truncation at 1 % and 0.1 %, and compress/decompress throughput and memory on 1M and 4M jets.
   `--only compression` reruns this section alone and replaces it in --out.
"""

from __future__ import annotations

import argparse
import itertools
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hpcsweep.allocation import allocated_cores
from hpcsweep.config import ModelConfig, TrainConfig
from hpcsweep.trial.evaluate import EVAL_BATCH, timing
from hpcsweep.trial.models import build_model
from hpcsweep.trial.train import train

N_VARIABLES = 27
HIDDEN = [200, 200, 200]


def matmul_rate(size: int = 2048, repeats: int = 10) -> float:
    """Best float32 GFLOP/s of an n x n matmul."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def linear_flops(model: torch.nn.Module) -> int:
    """Multiply-adds x 2 of the Linear layers for one jet (forward)."""
    return sum(2 * m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))


def our_loop(x: torch.Tensor, x_val: torch.Tensor, batch_size: int, epochs: int) -> float:
    """Jets per second of hpcsweep's own training loop (constant rate, no checkpoints)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden=HIDDEN, latent=12), N_VARIABLES)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-3, schedule="constant")
    result = train(model, x, x_val, config, log=lambda _: None)
    return len(x) * epochs / result.train_time_s


def dataloader_loop(x: torch.Tensor, x_val: torch.Tensor, batch_size: int, epochs: int) -> float:
    """Jets per second of the textbook loop: DataLoader(TensorDataset), shuffle, same model, default AdamW."""
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden=HIDDEN, latent=12), N_VARIABLES)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x), batch_size=batch_size, shuffle=True, drop_last=len(x) % batch_size == 1)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for (batch,) in loader:
            loss = torch.nn.functional.mse_loss(model(batch), batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            torch.nn.functional.mse_loss(model(x_val), x_val).item()
    return len(x) * epochs / (time.perf_counter() - start)


def verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def training_table(peak: float, n_jets: int) -> list[str]:
    x = torch.randn(n_jets, N_VARIABLES)
    x_val = torch.randn(4096, N_VARIABLES)
    train_flops = 3 * linear_flops(build_model(ModelConfig(hidden=HIDDEN, latent=12), N_VARIABLES))  # forward + backward
    lines = [
        f"Model {N_VARIABLES}-{'-'.join(map(str, HIDDEN))}-12-mirror (LeakyReLU + BatchNorm), {n_jets:,} synthetic jets, "
        f"{train_flops / 1e6:.2f} MFLOP per jet per training step (Linear layers, forward + backward).",
        "",
        "Ours is `hpcsweep.trial.train.train` as shipped (tensor slices of one shuffled copy per epoch, fused AdamW,",
        "per-batch divergence check, schedule); the DataLoader loop is the textbook one (per-sample `__getitem__` and",
        "collation, default AdamW). Both validate on 4,096 jets after each epoch.",
        "",
        "| batch size | ours (jets/s) | DataLoader (jets/s) | ours / DataLoader | ours: GFLOP/s | fraction of matmul rate |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    ratios, fraction = [], 0.0
    for batch_size in (256, 1024, 4096):
        epochs = 2 if batch_size < 4096 else 3
        dataloader_loop(x[:8192], x_val, batch_size, 1)  # warm up both paths
        ours = our_loop(x, x_val, batch_size, epochs)
        plain = dataloader_loop(x, x_val, batch_size, epochs)
        rate = ours * train_flops / 1e9
        ratios.append(ours / plain)
        fraction = rate / peak
        lines.append(f"| {batch_size} | {ours:,.0f} | {plain:,.0f} | {ours / plain:.2f} | {rate:.1f} | {fraction:.0%} |")
        print(lines[-1], flush=True)
    lines += [
        "",
        f"Targets: faster than the DataLoader loop at every batch size: {verdict(min(ratios) > 1)} (lowest ratio {min(ratios):.2f}); "
        f"at least 60 % of the matmul rate at batch 4096: {verdict(fraction >= 0.6)} ({fraction:.0%}). Between the GEMMs of a "
        "step lie BatchNorm, LeakyReLU, the loss and the optimiser update, elementwise work that a 2048 x 2048 matmul does not "
        "have; 4096 x 200 x 200 GEMMs are also smaller than the one that sets the rate.",
    ]
    return lines


def timing_table(peak: float, n_jets: int) -> list[str]:
    x = torch.randn(n_jets, N_VARIABLES)
    lines = [
        f"Encode/decode of {n_jets:,} jets by the evaluation's own `timing()` (chunks of {EVAL_BATCH}, median of 20);",
        "the bound is the Linear layers' FLOPs at the matmul rate.",
        "",
        "| z | encode (us/jet) | bound | encode / bound | decode (us/jet) | bound | decode / bound |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    worst = 0.0
    for latent in range(8, 21, 2):
        model = build_model(ModelConfig(hidden=HIDDEN, latent=latent), N_VARIABLES)
        measured = timing(model, x, repeats=20)
        encode, decode = measured["encode_us_per_jet"], measured["decode_us_per_jet"]
        bound_encode = linear_flops(model.encoder) / (peak * 1e9) * 1e6
        bound_decode = linear_flops(model.decoder) / (peak * 1e9) * 1e6
        worst = max(worst, encode / bound_encode, decode / bound_decode)
        lines.append(
            f"| {latent} | {encode:.3f} | {bound_encode:.3f} | {encode / bound_encode:.2f} | {decode:.3f} | {bound_decode:.3f} | {decode / bound_decode:.2f} |"
        )
        print(lines[-1], flush=True)
    lines += ["", f"Target: within 2x of the bound: {verdict(worst <= 2)} (worst {worst:.2f}x)."]
    return lines


MEMORY_CHILD = """
import resource, sys
from pathlib import Path
from hpcsweep.data.read import cache_jets
from hpcsweep.data.varset import load_varset
cache_jets(sys.argv[1], load_varset("generated"), Path(sys.argv[2]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory_table(sizes: tuple[int, ...] = (1_000_000, 2_000_000, 4_000_000)) -> list[str]:
    lines = [
        "Max RSS of a fresh process that reads a jagged ROOT file with uproot.iterate, applies the cuts and writes the",
        "`.npy` cache (generated variable set, 24 float32 columns; synthetic jets, 3.5 per event).",
        "",
        "| jets in file | file size (MB) | table size (MB) | peak RSS (MB) | time (s) |",
        "|---:|---:|---:|---:|---:|",
    ]
    peaks: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for n_jets in sizes:
            path = Path(folder) / f"synthetic_{n_jets}.root"
            write_synthetic(path, n_jets)
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", MEMORY_CHILD, str(path), str(Path(folder) / "cache")], capture_output=True, text=True, check=True
            )
            elapsed = time.perf_counter() - start
            rss_mb = int(done.stdout.split()[-1]) / 1024
            peaks.append(rss_mb)
            lines.append(f"| {n_jets:,} | {path.stat().st_size / 1e6:.0f} | {n_jets * 24 * 4 / 1e6:.0f} | {rss_mb:.0f} | {elapsed:.1f} |")
            print(lines[-1], flush=True)
    growth = peaks[-1] / peaks[0]
    lines += [
        "",
        f"Target: peak memory does not grow with the file: {verdict(growth < 1.1)} ({growth:.2f}x for a {sizes[-1] // sizes[0]}x larger file).",
    ]
    return lines


def write_synthetic(path: Path, n_jets: int, chunk_events: int = 100_000) -> None:
    """A ROOT file shaped like the generator's (events tree, jagged jet_* branches) with random jets."""
    import awkward as ak
    import uproot

    from hpcsweep.data.generate import JET_FLOATS, JET_INTS

    rng = np.random.default_rng(0)
    n_events = n_jets * 2 // 7
    counts = np.full(n_events, n_jets // n_events)
    counts[: n_jets - counts.sum()] += 1
    with uproot.recreate(path, compression=uproot.LZ4(1)) as handle:
        tree = None
        for first in range(0, n_events, chunk_events):
            per_event = counts[first : first + chunk_events]
            n = int(per_event.sum())
            fields = {name: rng.uniform(1, 100, n).astype(np.float32) for name in JET_FLOATS}
            fields["eta"] = rng.uniform(-4, 4, n).astype(np.float32)
            fields["phi"] = rng.uniform(-3, 3, n).astype(np.float32)
            fields.update({name: rng.integers(1, 40, n).astype(np.int32) for name in JET_INTS})
            jets = ak.unflatten(ak.zip(fields), per_event)
            if tree is None:
                tree = handle.mktree("events", {"eventNumber": "int64", "jet": jets.type})
            tree.extend({"eventNumber": np.arange(first, first + len(per_event), dtype=np.int64), "jet": jets})


STATUS_SWEEP = (
    "name: big\ngrid: {z: [4, 6, 8, 10, 12], lr: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], wd: [0, 1.0e-5, 1.0e-4, 1.0e-3], seed: [0, 1, 2, 3, 4]}\n"
)
SHORT_SWEEP = (
    "name: short\ndata: {events: 600}\nmodel: {hidden: [64, 64], latent: 4}\ntrain: {epochs: 20, batch_size: 256}\n"
    "grid: {lr: [1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2], wd: [0, 1.0e-5, 1.0e-4, 1.0e-3]}\nevaluation: {signals: [], timing_repeats: 1}\n"
)


def orchestration_table() -> list[str]:
    import os

    from hpcsweep.config import load_sweep
    from hpcsweep.data import prepare
    from hpcsweep.store import TrialRecord, read_attempts, rebuild_index, scan, trial_path, write_trial
    from hpcsweep.sweep import expand, run_sweep
    from hpcsweep.sweep.slurm import cluster_answers

    lines = ["| what | figure |", "|---|---:|"]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "big.yaml").write_text(STATUS_SWEEP)
        for trial in expand(load_sweep(root / "big.yaml")):
            record = TrialRecord(
                trial_id=trial.identity(), sweep="big", state="done", config=trial.model_dump(mode="json"), metrics={"best_val_mse": 0.1}
            )
            write_trial(trial_path(root / "results" / "big", trial.identity()), record)
        status = [sys.executable, "-m", "hpcsweep", "status", str(root / "big.yaml"), "--results", str(root / "results")]
        for label in ("`hpcsweep status`, 1000 trial files, no index (s)", "the same once the aggregator built the index (s)"):
            start = time.perf_counter()
            subprocess.run(status, capture_output=True, check=True)
            lines.append(f"| {label} | {time.perf_counter() - start:.2f} |")
            rebuild_index(root / "results" / "big")
        if not cluster_answers():
            lines += ["", "No SLURM cluster answered (make slurm-up): the job-array overhead was not measured."]
            return lines
        os.environ["HPCSWEEP_DATA"] = str(root / "data")
        (root / "short.yaml").write_text(SHORT_SWEEP)
        prepare(load_sweep(root / "short.yaml").data, progress=False)  # generated and cached before anything is timed
        cores = allocated_cores()
        for pack in (1, 4):
            sweep = load_sweep(root / "short.yaml").with_overrides(dispatch={"executor": "slurm", "pack": pack})
            results = root / f"pack{pack}"
            start = time.perf_counter()
            run_sweep(sweep, results, wait=True, progress=False, log=lambda _: None)
            wall = time.perf_counter() - start
            summaries, _ = scan(results)
            busy = sum(a["end"] - a["start"] for t in summaries for a in read_attempts(results, t) if "end" in a)
            lines.append(
                f"| 16 short trials, {16 // pack} array tasks of {pack}: wall (s) / sum of trial times per core (s) | "
                f"{wall:.1f} / {busy / cores:.1f} = **{wall / (busy / cores):.2f}** |"
            )
            print(lines[-1], flush=True)
    return lines


REVIEW_SWEEP = (
    "name: one\ndata: {events: 600}\nmodel: {hidden: [64, 64], latent: 4}\ntrain: {epochs: 5, batch_size: 256}\n"
    "evaluation: {signals: [350], signal_events: 400, timing_repeats: 1}\n"
)
REVIEW_LATENTS = (8, 10, 12, 14, 16, 18, 20)


def review_table(n_trials: int = 1000) -> list[str]:
    """`hpcsweep aggregate` on 1000 trial files: copies of one real trial with thesis-sized weights
    (27-200-200-200-z) on a thesis-like grid over 7 latent dimensions, with made-up losses."""
    import os

    from hpcsweep.store import read_trial, trial_path, write_trial

    lines = ["| what | seconds |", "|---|---:|"]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        os.environ["HPCSWEEP_DATA"] = str(root / "data")
        (root / "one.yaml").write_text(REVIEW_SWEEP)
        hpcsweep = [sys.executable, "-m", "hpcsweep"]
        subprocess.run([*hpcsweep, "sweep", str(root / "one.yaml"), "--results", str(root / "real")], capture_output=True, check=True)
        (template,) = (root / "real" / "one" / "trials").glob("*.h5")
        record = read_trial(template)
        results = root / "results" / "big"
        grid = itertools.product(REVIEW_LATENTS, [1024, 2048, 4096, 8192], [0, 1e-4, 1e-2, 1e-1], np.geomspace(1e-4, 1e-1, 10))
        for i, (z, bs, wd, lr) in zip(range(n_trials), grid, strict=False):  # a grid of 1120 points, the first 1000
            record.trial_id = f"{i:012x}"
            record.config["model"]["latent"] = z
            record.config["train"].update(lr=float(lr), batch_size=bs, weight_decay=wd)
            record.metrics["best_val_mse"] = record.metrics["reference_mse"] = float(rng.lognormal(np.log(5e-4 * 0.7 ** (z - 8)), 0.3))
            record.weights = {f"layer{k}": rng.normal(size=shape).astype(np.float32) for k, shape in enumerate(thesis_shapes(z))}
            write_trial(trial_path(results, record.trial_id), record)
        size = sum(p.stat().st_size for p in (results / "trials").glob("*.h5"))
        lines.insert(0, f"{n_trials} trial files, {size / 1e6:.0f} MB (weights of a 27-200-200-200-z AE each), z in {REVIEW_LATENTS}:\n")
        aggregate = [*hpcsweep, "aggregate", str(results)]

        def new_best() -> None:
            record.trial_id, record.config["model"]["latent"] = "new0best0z12", 12
            record.metrics["best_val_mse"] = record.metrics["reference_mse"] = 1e-9
            write_trial(trial_path(results, record.trial_id), record)

        steps = [
            ("first aggregate: sweep index built, every table and figure drawn (7 z x 4 per-trial figures)", aggregate, None),
            ("again, nothing changed: index and every figure reused", aggregate, None),
            ("one new trial file, the new best at z=12: sweep figures and its 4 per-trial figures redrawn", aggregate, new_best),
            ("tables and the 6 sweep figures drawn afresh, `--no-detail` (no per-trial figures)", [*aggregate, "--no-detail"],
             (results / "figures" / ".drawn.json").unlink),
        ]  # fmt: skip
        for label, command, before in steps:
            if before:
                before()
            start = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            lines.append(f"| {label} | {time.perf_counter() - start:.1f} |")
            print(lines[-1], flush=True)
    return lines


def thesis_shapes(latent: int) -> list[tuple[int, ...]]:
    widths = [N_VARIABLES, *HIDDEN, latent, *HIDDEN[::-1], N_VARIABLES]
    return [shape for a, b in zip(widths, widths[1:], strict=False) for shape in ((b, a), (b,))]


COMPRESSION_TITLE = "## Compressing jets: the learned error-bounded compressor against the peers"


def compression_lines() -> list[str]:
    sys.path.insert(0, str(Path(__file__).parent))
    from compression import section

    return section()


def replace_section(path: Path, title: str, lines: list[str]) -> None:
    """Put `lines` under `title` in the Markdown file at `path`, in place of what was there (up to the next section)."""
    old = path.read_text().splitlines() if path.exists() else []
    if title in old:
        start = old.index(title) + 1
        end = next((i for i in range(start, len(old)) if old[i].startswith("## ") or old[i].startswith("Total benchmark time")), len(old))
        new = old[:start] + ["", *lines] + old[end:]
    else:
        new = old + ["", title, "", *lines]
    path.write_text("\n".join(new) + "\n")


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    return f"{cpu}; {allocated_cores()} cores allocated, torch {torch.__version__} with {torch.get_num_threads()} threads; Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--jets", type=int, default=200_000, help="synthetic jets for the training benchmark")
    parser.add_argument("--only", choices=["compression"], help="run one section and replace it in --out")
    args = parser.parse_args()
    torch.set_num_threads(allocated_cores())
    began = time.perf_counter()
    if args.only:
        replace_section(args.out, COMPRESSION_TITLE, [*compression_lines(), ""])
        print(f"written: {args.out} ({time.perf_counter() - began:.0f} s)")
        return
    peak = matmul_rate()
    print(f"matmul: {peak:.1f} GFLOP/s", flush=True)
    sections = [
        "# Benchmarks",
        "",
        "Made by `make bench` (`python benchmarks/bench.py --out docs/benchmarks.md`); every ratio compares two",
        "things measured in the same run. Speed targets live here, not in tests.",
        "",
        f"Machine: {machine()}.",
        f"float32 matmul rate (torch.mm 2048 x 2048, best of 10): **{peak:.1f} GFLOP/s**.",
        "",
        "## Training throughput: our loop against a DataLoader loop",
        "",
        *training_table(peak, args.jets),
        "",
        "## Encode and decode time per jet (thesis Table 2.5)",
        "",
        *timing_table(peak, 100_000),
        "",
        "## Peak memory of reading and caching a ROOT file",
        "",
        *memory_table(),
        "",
        "## Orchestration",
        "",
        "Target: `hpcsweep status` under 1 s for 1000 trials. The array overhead is what SLURM scheduling, job start-up",
        "(Python, torch import) and the driver cost on top of the trials' own time (1.00 = none).",
        "",
        *orchestration_table(),
        "",
        "## Reviewing a large sweep",
        "",
        "Target: `hpcsweep aggregate` of 1000 trial files under 10 s. Weights are read once per new or changed file, when the",
        "scan checks its checksum (the sweep index remembers the files it checked), never to draw. Per-trial figures (inputs vs decoded, residuals, corner, dijet) are drawn for the best trial of",
        "each z and redrawn only when that trial's file changes.",
        "",
        *review_table(),
        "",
        COMPRESSION_TITLE,
        "",
        *compression_lines(),
        "",
        f"Total benchmark time: {time.perf_counter() - began:.0f} s.",
        "",
    ]
    args.out.write_text("\n".join(sections))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()

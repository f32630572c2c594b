"""hpcsweep benchmarks: every figure is a ratio of two things measured in this one run.

    make bench                     (or: python benchmarks/bench.py --out docs/benchmarks.md)
    python benchmarks/bench.py --only training orchestration      (rerun sections, replaced in --out)
    python benchmarks/bench.py --rows status                      (rerun rows of a section, replaced in --out)

Sections (SECTIONS below), each against a peer or a bound measured in the same run:
- training (benchmarks/training.py): our loop against PyTorch Lightning and a DataLoader loop at batch 256,
  1024 and 4096 as a fraction of this machine's matmul rate; a profiled step; each optimisation on and off;
- gpu (benchmarks/training.py): K models stacked into batched matmuls against K one after another;
- timing: encode / decode time per jet for z = 8..20 against the FLOP bound of the matmul rate;
- memory: peak memory (max RSS of a child process) of reading and caching ROOT files of 1M, 2M and 4M jets;
- orchestration (benchmarks/orchestration.py): `hpcsweep status` on 1000 trial files; on the local SLURM
  cluster, N = 16 and 64 short trials through hpcsweep (unpacked, packed) and Hydra + submitit; start-up costs;
- review: `hpcsweep aggregate` on 1000 trial files (first, again, after one new best);
- compression (benchmarks/compression.py): the shipped compression sweep (the learned coder alone and rate-aware
  AEs, bytes per jet as `hpcsweep compress` writes them) against SZ3, ZFP, fpzip and mantissa + zstd; the same on a
  user-shaped four-variable file; compress/decompress throughput and memory on 1M and 4M jets.
The peers (Lightning, Hydra and its launcher, SZ3, ZFP, fpzip) are the `bench` and `compare` extras; `make bench`
installs them.
"""

from __future__ import annotations

import argparse
import itertools
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from hpcsweep.allocation import allocated_cores
from hpcsweep.config import ModelConfig
from hpcsweep.trial.evaluate import EVAL_BATCH, timing
from hpcsweep.trial.models import build_model

sys.path.insert(0, str(Path(__file__).parent))  # the sections of this folder: training, orchestration, compression

from sections import replace_rows, replace_section, verdict  # noqa: E402
from training import HIDDEN, N_VARIABLES, linear_flops  # noqa: E402


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


#: The child prints its own peak RSS in kB: VmHWM, the high-water mark of its memory since its exec. Not ru_maxrss: Linux
#: carries the RSS of the process that forked it (this benchmark's, 1.6 GB after the training sections) into the
#: child's ru_maxrss, which then reads the same whatever the child does.
MEMORY_CHILD = """
import sys
from pathlib import Path
from hpcsweep.data.read import cache_jets
from hpcsweep.data.varset import load_varset
cache_jets(sys.argv[1], load_varset("generated"), Path(sys.argv[2]))
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def memory_table(sizes: tuple[int, ...] = (1_000_000, 2_000_000, 4_000_000)) -> list[str]:
    lines = [
        "Peak RSS (VmHWM) of a fresh process that reads a jagged ROOT file with uproot.iterate, applies the cuts and the",
        "property checks and writes the `.npy` cache (generated variable set, 24 float32 columns; synthetic jets, 3.5 per",
        "event).",
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
        f"Target: peak memory does not grow with the file: {verdict(growth < 1.1)} ({growth:.2f}x for a {sizes[-1] // sizes[0]}x larger file); "
        f"and stays within the {BEFORE_CHECK_MB} MB it took before the discrete-value check: {verdict(max(peaks) <= BEFORE_CHECK_MB)} "
        f"({max(peaks):.0f} MB at most).",
    ]
    return lines


#: Peak RSS of caching a 1-4M-jet file before the discrete-value check was added (issue 26 measured 1576 MB after it).
BEFORE_CHECK_MB = 550


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
            fields["ActiveArea"] = rng.integers(40, 60, n).astype(np.float32) * 0.01  # discrete in the variable set: few values
            fields["eta"] = rng.uniform(-4, 4, n).astype(np.float32)
            fields["phi"] = rng.uniform(-3, 3, n).astype(np.float32)
            fields.update({name: rng.integers(1, 40, n).astype(np.int32) for name in JET_INTS})
            jets = ak.unflatten(ak.zip(fields), per_event)
            if tree is None:
                tree = handle.mktree("events", {"eventNumber": "int64", "jet": jets.type})
            tree.extend({"eventNumber": np.arange(first, first + len(per_event), dtype=np.int64), "jet": jets})


REVIEW_SWEEP = (
    "name: one\ndata: {events: 600}\nmodel: {hidden: [64, 64], latent: 4}\ntrain: {epochs: 5, batch_size: 256}\n"
    "evaluation: {signals: [350], signal_events: 400, timing_repeats: 1}\n"
)
REVIEW_LATENTS = (8, 10, 12, 14, 16, 18, 20)


def review_table(n_trials: int = 1000) -> list[str]:
    """`hpcsweep aggregate` on 1000 trial files: copies of one real trial with thesis-sized weights
    (27-200-200-200-z) on a thesis-like grid over 7 latent dimensions, with made-up losses."""
    import os

    from hpcsweep.store import index_path, read_trial, trial_path, write_trial

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
        objects = _hdf5_objects(template)
        lines.insert(0, f"{n_trials} trial files, {size / 1e6:.0f} MB (weights of a 27-200-200-200-z AE each; {objects} HDF5 objects a file), "
                        f"z in {REVIEW_LATENTS}:\n")  # fmt: skip
        aggregate = [*hpcsweep, "aggregate", str(results)]

        def new_best() -> None:
            record.trial_id, record.config["model"]["latent"] = "new0best0z12", 12
            record.metrics["best_val_mse"] = record.metrics["reference_mse"] = 1e-9
            write_trial(trial_path(results, record.trial_id), record)

        def forget() -> None:
            shutil.rmtree(results / "figures")
            index_path(results).unlink()

        steps = [
            ("first aggregate: sweep index built, every table, the 7 sweep figures and the best trial's 4 figures drawn as PNG",
             aggregate, None),
            ("again, nothing changed: index and every figure reused", aggregate, None),
            ("one new trial file, the new best (at z=12): sweep figures and its 4 per-trial figures redrawn", aggregate, new_best),
            ("tables and the sweep figures drawn afresh, `--no-detail` (no per-trial figures)", [*aggregate, "--no-detail"],
             (results / "figures" / ".drawn.json").unlink),
            ("first aggregate again (index and figures removed), `--detail`: the best trial's figures at each of the 7 z",
             [*aggregate, "--detail"], forget),
            ("first aggregate again, `--detail --pdf`: every figure also as PDF", [*aggregate, "--detail", "--pdf"], forget),
        ]  # fmt: skip
        seconds: list[float] = []
        for label, command, before in steps:
            if before:
                before()
            start = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            seconds.append(time.perf_counter() - start)
            lines.append(f"| {label} | {seconds[-1]:.1f} |")
            print(lines[-1], flush=True)
    lines += [
        "",
        f"Target: the first aggregate under 10 s: {verdict(seconds[0] < 10)} ({seconds[0]:.1f} s). The sweep index "
        f"checks each new file's seal (a sha256 of its bytes, whatever its {objects} HDF5 objects); once it is built, the "
        f"tables and sweep figures take {seconds[3]:.1f} s; a first aggregate with the figures of the best trial per z "
        f"(`--detail`, 28 figures of up to 24 panels, as the end of a sweep and the report draw them) {seconds[4]:.1f} s.",
    ]
    return lines


def _hdf5_objects(path: Path) -> int:
    """Groups and datasets of an HDF5 file: what reading it whole costs, object by object."""
    import h5py

    names: list[str] = []
    with h5py.File(path, "r") as handle:
        handle.visit(names.append)
    return len(names)


def thesis_shapes(latent: int) -> list[tuple[int, ...]]:
    widths = [N_VARIABLES, *HIDDEN, latent, *HIDDEN[::-1], N_VARIABLES]
    return [shape for a, b in zip(widths, widths[1:], strict=False) for shape in ((b, a), (b,))]


def training_lines(peak: float, n_jets: int) -> list[str]:
    import training

    peers = training.peers_table(peak, n_jets)
    profile, gemm_rate = training.step_profile(training.BATCH_SIZES[-1])
    return [
        f"float32 matmul rate in this run (torch.mm 2048 x 2048, best of 10): {peak:.1f} GFLOP/s.",
        "",
        *peers,
        "",
        "### Where a step's time goes",
        "",
        "Self time of each operator in 30 steps of our step (forward, loss, backward, fused AdamW), torch.profiler:",
        "",
        *profile,
        "",
        f"The GEMMs of the step run at {gemm_rate / peak:.0%} of the matmul rate ({gemm_rate:.0f} GFLOP/s; 4096 x 200 x 200 and thinner",
        "products against one 2048 x 2048): with every other part removed, the step could not reach more than that. The",
        "rest is memory-bound elementwise work: BatchNorm, LeakyReLU and their backward passes read and write every activation.",
        "",
        "### What each change gained",
        "",
        "Our step alone (slices of one tensor, AdamW, schedule, loss sum), one change on and off, interleaved, median of 3 "
        "(ratio > 1: the change is faster):",
        "",
        *training.gains_table(n_jets),
    ]


def gpu_lines() -> list[str]:
    import training

    return [
        "How trials would share one GPU. A trial of the thesis' net (27-200-200-200-z, batch 1024-8192) keeps a GPU busy",
        "for microseconds per layer: launch latency, not arithmetic, bounds it. Two ways to fill the GPU:",
        "",
        "- **several trial processes per GPU**: nothing to change in hpcsweep (`dispatch.gpus: 1` and `pack`, or several",
        "  array tasks per GPU with CUDA MPS); each trial keeps its own CUDA context (~500 MB) and its own launches;",
        "- **a batched ensemble of K models**: K grid points with the same shapes stacked into batched matmuls (`torch.bmm`,",
        "  or `torch.func.stack_module_state` + `vmap`), one launch for K models: it pays where launches bound the step.",
        "",
        "On this CPU, where arithmetic bounds the step, the ensemble measured here:",
        "",
        *training.ensemble_table(),
        "",
        "A gain here comes from fewer, larger GEMMs; on a GPU the larger gain is fewer launches, which this CPU cannot show.",
        "The CUDA path of a trial (device chosen from the allocation, training, evaluation, the trial file) is tested by",
        "`tests/trial/test_cuda.py`, which runs when a GPU is visible and is skipped with its reason otherwise.",
    ]


def review_lines() -> list[str]:
    return [
        "Target: the first `hpcsweep aggregate` of 1000 trial files under 10 s. Figures are PNG unless `--pdf` (or `review.pdf`)",
        "asks for PDF too, and are drawn in one worker process per core; files new to the index are checked in workers too. A new or changed file is read once, when the",
        "scan checks its seal (the sweep index remembers the files it checked); weights are never read to draw. Per-trial figures (inputs",
        "vs decoded, residuals, corner, dijet) are drawn for the sweep's best trial (`--detail`: the best trial of each z, as the",
        "end of a sweep and the report draw them) and redrawn only when that trial's file changes.",
        "",
        *review_table(),
    ]


def orchestration_lines() -> list[str]:
    import orchestration

    return orchestration.section()


def compression_lines() -> list[str]:
    from compression import section

    return section()


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    return f"{cpu}; {allocated_cores()} cores allocated, torch {torch.__version__} with {torch.get_num_threads()} threads; Python {platform.python_version()}"


SECTIONS: dict[str, tuple[str, Callable[[float, argparse.Namespace], list[str]]]] = {
    "training": ("## Training throughput: our loop against Lightning and a DataLoader loop", lambda peak, a: training_lines(peak, a.jets)),
    "gpu": ("## GPU readiness: sharing one GPU between trials", lambda peak, a: gpu_lines()),
    "timing": ("## Encode and decode time per jet (thesis Table 2.5)", lambda peak, a: timing_table(peak, 100_000)),
    "memory": ("## Peak memory of reading and caching a ROOT file", lambda peak, a: memory_table()),
    "orchestration": ("## Orchestration", lambda peak, a: orchestration_lines()),
    "review": ("## Reviewing a large sweep", lambda peak, a: review_lines()),
    "compression": ("## Compressing jets: the compressors a sweep finds against the peers", lambda peak, a: compression_lines()),
}


def status_rows() -> list[str]:
    import orchestration

    return orchestration.status_rows()[2:]  # the rows, not the table's header


#: Table rows measured again on their own (`--rows`), in place of theirs: those of a section whose rest takes long
#: or needs what is not always there (the orchestration's dispatch needs a SLURM cluster and minutes of both cores).
ROWS: dict[str, Callable[[], list[str]]] = {"status": status_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--jets", type=int, default=100_000, help="synthetic jets for the training benchmark")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run these sections and replace them in --out")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), help="measure these rows again and replace them in --out")
    args = parser.parse_args()
    if args.rows:
        for name in args.rows:
            replace_rows(args.out, ROWS[name]())
        print(f"written: {args.out}")
        return
    torch.set_num_threads(allocated_cores())
    began = time.perf_counter()
    peak = matmul_rate()
    print(f"matmul: {peak:.1f} GFLOP/s", flush=True)
    if args.only:
        for name in args.only:
            title, lines = SECTIONS[name]
            replace_section(args.out, title, [*lines(peak, args), ""])
        print(f"written: {args.out} ({time.perf_counter() - began:.0f} s)")
        return
    parts = [
        "# Benchmarks",
        "",
        "Made by `make bench` (`python benchmarks/bench.py --out docs/benchmarks.md`); every ratio compares two",
        "things measured in the same run. Speed targets live here, not in tests. `--only SECTION ...` reruns sections.",
        "",
        f"Machine: {machine()}.",
        f"float32 matmul rate (torch.mm 2048 x 2048, best of 10): **{peak:.1f} GFLOP/s**.",
    ]
    for title, lines in SECTIONS.values():
        parts += ["", title, "", *lines(peak, args)]
        print(f"done: {title}", flush=True)
    parts += ["", f"Total benchmark time: {time.perf_counter() - began:.0f} s.", ""]
    args.out.write_text("\n".join(parts))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()

"""The training section of `make bench`: our loop against its peers, where a step's time goes, what each change gained.

1. jets per second of `hpcsweep.trial.train.train` (eager, and compiled as `compile: auto` does for long trials)
   against a PyTorch Lightning `Trainer` and a textbook `DataLoader` loop: same net, data, epochs and threads,
   at batch 256, 1024 and 4096, as a fraction of the machine's matmul rate;
2. a profiled training step, its time split between GEMMs, BatchNorm, activation, optimiser, loss and copies;
3. each change to the step, measured on and off in this run (optimiser kernel, divergence check, compile,
   BatchNorm folded for encode/decode);
4. GPU readiness: K models stacked into batched matmuls against K models one after another.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch
from sections import verdict
from torch import nn

from hpcsweep.config import Compile, ModelConfig, TrainConfig
from hpcsweep.trial.evaluate import timing
from hpcsweep.trial.models import Autoencoder, build_model
from hpcsweep.trial.train import COMPILE_FROM_JETS, train

N_VARIABLES = 27
HIDDEN = [200, 200, 200]
LATENT = 12
BATCH_SIZES = (256, 1024, 4096)
EPOCHS = 3  # the rate is taken over the epochs after the first (warm-up, and the compile when there is one)
ROUNDS = 3  # each loop runs this many times, interleaved; the best round counts (other processes on the machine)


def thesis_model() -> Autoencoder:
    torch.manual_seed(0)
    return build_model(ModelConfig(hidden=HIDDEN, latent=LATENT), N_VARIABLES)


def linear_flops(model: nn.Module) -> int:
    """Multiply-adds x 2 of the Linear layers for one jet (forward)."""
    return sum(2 * m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))


class EpochClock:
    """Times epochs: the rate over every epoch after the first."""

    def __init__(self) -> None:
        self.ends: list[float] = [time.perf_counter()]

    def tick(self, *_: object) -> None:
        self.ends.append(time.perf_counter())

    def jets_per_s(self, jets_per_epoch: int) -> float:
        return jets_per_epoch * (len(self.ends) - 2) / (self.ends[-1] - self.ends[1])


def ours(x: torch.Tensor, x_val: torch.Tensor, batch_size: int, compile: Compile = "never") -> float:
    """hpcsweep's loop as shipped; `compile='always'` is what `compile: auto` chooses for a long trial."""
    clock = EpochClock()
    config = TrainConfig(epochs=EPOCHS, batch_size=batch_size, lr=1e-3, schedule="constant")
    train(thesis_model(), x, x_val, config, log=lambda _: None, heartbeat=clock.tick, compile=compile)
    return clock.jets_per_s(len(x))


def dataloader(x: torch.Tensor, x_val: torch.Tensor, batch_size: int) -> float:
    """The textbook loop: DataLoader(TensorDataset) with shuffling, default AdamW, validation after each epoch."""
    from torch.utils.data import DataLoader, TensorDataset

    model = thesis_model()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x), batch_size=batch_size, shuffle=True)
    clock = EpochClock()
    for _ in range(EPOCHS):
        model.train()
        for (batch,) in loader:
            loss = nn.functional.mse_loss(model(batch), batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            nn.functional.mse_loss(model(x_val), x_val).item()
        clock.tick()
    return clock.jets_per_s(len(x))


def lightning(x: torch.Tensor, x_val: torch.Tensor, batch_size: int) -> float:
    """What most users would write today: a LightningModule and `Trainer.fit` (no logger, checkpoints or progress bar)."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = thesis_model()

        def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
            return nn.functional.mse_loss(self.model(batch[0]), batch[0])

        def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
            self.log("val_loss", nn.functional.mse_loss(self.model(batch[0]), batch[0]))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.clock = EpochClock()

        def on_validation_epoch_end(self, *_: object) -> None:
            self.clock.tick()

    clock = Clock()
    trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[clock])  # fmt: skip
    loaders = DataLoader(TensorDataset(x), batch_size=batch_size, shuffle=True), DataLoader(TensorDataset(x_val), batch_size=len(x_val))
    trainer.fit(Module(), *loaders)
    return clock.clock.jets_per_s(len(x))


LOOPS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], float]] = {
    "ours": ours,
    "ours, compiled": lambda x, v, b: ours(x, v, b, compile="always"),
    "Lightning": lightning,
    "DataLoader": dataloader,
}


def best_of(rounds: int, runs: dict[str, Callable[[], float]]) -> dict[str, float]:
    """The best of `rounds` interleaved runs of each: a neighbour's load hits every loop alike."""
    measured: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            measured[name].append(run())
    return {name: max(values) for name, values in measured.items()}


def peers_table(peak: float, n_jets: int) -> list[str]:
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # its hints about DataLoader workers
    x, x_val = torch.randn(n_jets, N_VARIABLES), torch.randn(4096, N_VARIABLES)
    flops = 3 * linear_flops(thesis_model())  # forward + backward
    lines = [
        f"Model {N_VARIABLES}-{'-'.join(map(str, HIDDEN))}-{LATENT}-mirror (LeakyReLU + BatchNorm), {n_jets:,} synthetic jets, "
        f"{flops / 1e6:.2f} MFLOP per jet per training step (Linear layers, forward + backward); {torch.get_num_threads()} threads.",
        "",
        "- **ours**: `hpcsweep.trial.train.train` as shipped (slices of one shuffled copy per epoch, fused AdamW, schedule,",
        "  divergence checked once per epoch); **ours, compiled**: the same with the step compiled (`dispatch.compile: always`;",
        f"  `auto` compiles GPU trials of at least {COMPILE_FROM_JETS:,} jet passes);",
        "- **Lightning**: a `LightningModule` with `Trainer.fit` over `DataLoader(TensorDataset, shuffle=True)`, default AdamW;",
        "- **DataLoader**: the textbook loop over the same `DataLoader`, default AdamW.",
        "",
        f"Each validates on 4,096 jets after each epoch; jets/s over epochs 2-{EPOCHS} (after warm-up and compile), best of {ROUNDS} "
        "interleaved rounds.",
        "",
        "| batch | ours | ours, compiled | Lightning | DataLoader | ours / Lightning | ours / DataLoader | ours: % of matmul rate |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rates: dict[int, dict[str, float]] = {}
    for batch_size in BATCH_SIZES:
        r = rates[batch_size] = best_of(ROUNDS, {name: (lambda loop=loop, b=batch_size: loop(x, x_val, b)) for name, loop in LOOPS.items()})
        mine = max(r["ours"], r["ours, compiled"])
        lines.append(
            f"| {batch_size} | {r['ours']:,.0f} | {r['ours, compiled']:,.0f} | {r['Lightning']:,.0f} | {r['DataLoader']:,.0f} | "
            f"{mine / r['Lightning']:.2f} | {mine / r['DataLoader']:.2f} | {mine * flops / 1e9 / peak:.0%} |"
        )
        print(lines[-1], flush=True)
    ahead = min(max(r["ours"], r["ours, compiled"]) / max(r["Lightning"], r["DataLoader"]) for r in rates.values())
    top = max(rates[BATCH_SIZES[-1]]["ours"], rates[BATCH_SIZES[-1]]["ours, compiled"]) * flops / 1e9 / peak
    lines += [
        "",
        "jets/s; the ratios and the matmul fraction take the faster of ours and ours compiled.",
        "",
        f"Targets: ahead of every peer at every batch size: {verdict(ahead > 1)} (lowest ratio to the faster peer {ahead:.2f}); "
        f"at least 80 % of the matmul rate at batch {BATCH_SIZES[-1]}: {verdict(top >= 0.8)} ({top:.0%}).",
    ]
    return lines


ELSE = "everything else (autograd, allocation, Python)"
CATEGORIES = (  # (label, test on an operator's name); the first that matches takes it
    ("GEMMs (Linear forward and backward)", lambda n: n in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")),
    ("BatchNorm forward and backward", lambda n: "batch_norm" in n),
    ("LeakyReLU forward and backward", lambda n: "leaky_relu" in n),
    ("optimiser (AdamW kernel and its Python)", lambda n: "adam" in n.lower() or n.startswith("Optimizer.")),
    ("loss (MSE forward and backward)", lambda n: "mse_loss" in n),
    ("copies, sums and indexing", lambda n: n in ("aten::copy_", "aten::sum", "aten::index", "aten::slice", "aten::fill_", "aten::add_")),
)
TARGET_STEP_OVER_GEMMS = 1.15


def step_profile(batch_size: int, steps: int = 30) -> tuple[list[str], float]:
    """Where a training step's time goes: self time of each operator, summed by category (torch.profiler); the step
    timed without the profiler against its GEMMs' time (the target); and the GFLOP/s of the step's GEMMs alone."""
    from torch.profiler import ProfilerActivity, profile

    model = thesis_model()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    x = torch.randn(batch_size * steps, N_VARIABLES)

    def run() -> None:
        for start in range(0, len(x), batch_size):
            loss, _ = model.objective(x[start : start + batch_size])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

    run()  # warm-up
    step_s = min(timed(run) for _ in range(3)) / steps
    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        run()
    totals = dict.fromkeys([label for label, _ in CATEGORIES] + [ELSE], 0.0)
    for event in profiled.key_averages():
        totals[next((label for label, test in CATEGORIES if test(event.key)), ELSE)] += event.self_cpu_time_total
    whole = sum(totals.values())
    lines = [f"| part of a step at batch {batch_size} | ms per step | share |", "|---|---:|---:|"]
    lines += [f"| {label} | {us / steps / 1e3:.2f} | {us / whole:.0%} |" for label, us in totals.items()]
    gemm_s = totals[CATEGORIES[0][0]] * 1e-6 / steps
    ratio = step_s / gemm_s
    lines += [
        "",
        f"The step without the profiler (best of 3 passes of {steps} steps): {step_s * 1e3:.2f} ms, {ratio:.2f}x its GEMMs' "
        f"{gemm_s * 1e3:.2f} ms. Target: within {TARGET_STEP_OVER_GEMMS}x of its GEMMs' time at batch {batch_size}: "
        f"{verdict(ratio <= TARGET_STEP_OVER_GEMMS)} ({ratio:.2f}x).",
    ]
    return lines, 3 * linear_flops(model) * batch_size / gemm_s / 1e9


def timed(run: Callable[[], None]) -> float:
    """Seconds of one call of `run`."""
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def step_rate(
    batch_size: int,
    n_jets: int,
    fused: bool | None = True,
    check_each_batch: bool = False,
    compile: bool = False,
    gather: bool = False,
    out_of_place: bool = False,
) -> float:
    """Jets/s of our step alone (slices, AdamW, schedule, loss sum), with one change switched; the second pass is timed.

    `gather`: each batch indexed out of the unshuffled data by its share of a permutation, instead of a slice of one
    shuffled copy. `out_of_place`: the activations write fresh tensors instead of the Linear layers' outputs."""
    model = thesis_model()
    for module in model.modules():
        if isinstance(module, nn.LeakyReLU):
            module.inplace = not out_of_place
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _: 1.0)
    objective = torch.compile(model.objective, dynamic=False) if compile else model.objective
    x = torch.randn(n_jets, N_VARIABLES)

    def epoch() -> float:
        total = torch.zeros((), dtype=torch.float64)
        order = torch.randperm(n_jets)
        shuffled = x if gather else x[order]
        for start in range(0, n_jets, batch_size):
            loss, mse = objective(x[order[start : start + batch_size]] if gather else shuffled[start : start + batch_size])
            if check_each_batch and not torch.isfinite(loss):
                return math.nan
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += mse.detach()
        return float(total)

    epoch()
    began = time.perf_counter()
    epoch()
    return n_jets / (time.perf_counter() - began)


COLD_COMPILE = """
import sys, time, torch
from hpcsweep.config import ModelConfig
from hpcsweep.trial.models import build_model
torch.set_num_threads(int(sys.argv[2]))
objective = torch.compile(build_model(ModelConfig(hidden={hidden}, latent={latent}), {n}).objective, dynamic=False)
began = time.perf_counter()
objective(torch.randn(int(sys.argv[1]), {n}))[0].backward()
print(time.perf_counter() - began)
"""


def compile_seconds(batch_size: int) -> float:
    """Seconds of the first compiled step in a fresh process with an empty compile cache: what a new trial pays."""
    import os
    import subprocess
    import sys
    import tempfile

    code = COLD_COMPILE.format(hidden=HIDDEN, latent=LATENT, n=N_VARIABLES)
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        done = subprocess.run([sys.executable, "-c", code, str(batch_size), str(torch.get_num_threads())], env=env,
                              capture_output=True, text=True, check=True)  # fmt: skip
    return float(done.stdout.split()[-1])


def gains_table(n_jets: int) -> list[str]:
    """Each change to the step on and off, interleaved; the median of 3 rounds."""
    changes: dict[str, tuple[dict[str, bool | None], dict[str, bool | None]]] = {
        "fused AdamW kernel (against the default one)": ({"fused": None}, {"fused": True}),
        "foreach AdamW (against the default one)": ({"fused": None}, {"fused": False}),
        "divergence checked once per epoch (against each batch)": ({"check_each_batch": True}, {}),
        "slices of one shuffled copy per epoch (against gathering each batch)": ({"gather": True}, {}),
        "activations in place (against out of place)": ({"out_of_place": True}, {}),
        "torch.compile of the step (against eager)": ({}, {"compile": True}),
    }
    lines = ["| change | " + " | ".join(f"batch {b}" for b in (BATCH_SIZES[0], BATCH_SIZES[-1])) + " |", "|---|---:|---:|"]
    for label, (before, after) in changes.items():
        cells = []
        for batch_size in (BATCH_SIZES[0], BATCH_SIZES[-1]):
            jets = n_jets if batch_size > 256 else n_jets // 4
            ratios = [step_rate(batch_size, jets, **after) / step_rate(batch_size, jets, **before) for _ in range(3)]
            cells.append(f"{statistics.median(ratios):.2f}x")
        lines.append(f"| {label} | {' | '.join(cells)} |")
        print(lines[-1], flush=True)
    seconds = {b: compile_seconds(b) for b in (BATCH_SIZES[0], BATCH_SIZES[-1])}
    lines.append(
        f"| compile time of the step (s; a new process, empty compile cache) | {' | '.join(f'{s:.1f}' for s in seconds.values())} |"
    )
    model = thesis_model().eval()
    x = torch.randn(100_000, N_VARIABLES)
    folded, plain = timing(model, x, repeats=10), plain_timing(model, x)
    lines.append(
        f"| BatchNorm folded into the next Linear layer, encode / decode 100,000 jets | "
        f"encode {plain['encode'] / folded['encode_us_per_jet']:.2f}x | decode {plain['decode'] / folded['decode_us_per_jet']:.2f}x |"
    )
    return lines


def plain_timing(model: Autoencoder, x: torch.Tensor, repeats: int = 10) -> dict[str, float]:
    """Encode and decode us/jet of the model as it is (BatchNorm not folded), in the chunks `timing` uses."""
    from hpcsweep.trial.evaluate import in_batches

    latent = in_batches(model, x, "encode")
    out = {}
    for part, data in (("encode", x), ("decode", latent)):
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            in_batches(model, data, part)
            times.append(time.perf_counter() - began)
        out[part] = 1e6 * statistics.median(times) / len(x)
    return out


def ensemble_table(k: int = 8, batch_size: int = 1024, steps: int = 40) -> list[str]:
    """K models trained one after another against the same K stacked into batched matmuls (torch.bmm), on this CPU."""
    widths = [N_VARIABLES, *HIDDEN, LATENT, *HIDDEN[::-1], N_VARIABLES]
    x = torch.randn(k, batch_size, N_VARIABLES)
    weights = [(torch.randn(k, a, b) / math.sqrt(a)).requires_grad_() for a, b in zip(widths, widths[1:], strict=False)]
    singles = [[w[i].detach().clone().requires_grad_() for w in weights] for i in range(k)]

    def forward(ws: list[torch.Tensor], data: torch.Tensor, batched: bool) -> torch.Tensor:
        out = data
        for i, w in enumerate(ws):
            out = torch.bmm(out, w) if batched else out @ w
            if i < len(ws) - 1:
                out = nn.functional.leaky_relu(out)
        return nn.functional.mse_loss(out, data)

    optimisers = [torch.optim.AdamW(weights, fused=True)] + [torch.optim.AdamW(s, fused=True) for s in singles]

    def one_by_one() -> None:
        for i in range(k):
            optimisers[i + 1].zero_grad()
            forward(singles[i], x[i], batched=False).backward()
            optimisers[i + 1].step()

    def stacked() -> None:
        optimisers[0].zero_grad()
        forward(weights, x, batched=True).backward()
        optimisers[0].step()

    rates: dict[str, list[float]] = {"one by one": [], "stacked": []}
    for _ in range(3):
        for name, step in (("one by one", one_by_one), ("stacked", stacked)):
            step()
            began = time.perf_counter()
            for _ in range(steps):
                step()
            rates[name].append(k * batch_size * steps / (time.perf_counter() - began))
    one, many = statistics.median(rates["one by one"]), statistics.median(rates["stacked"])
    return [
        f"| {k} models, batch {batch_size} each (no BatchNorm) | jets/s |",
        "|---|---:|",
        f"| one after another | {one:,.0f} |",
        f"| stacked into batched matmuls | {many:,.0f} |",
        f"| stacked / one after another | {many / one:.2f} |",
    ]

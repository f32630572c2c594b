"""The training loop: AdamW over tensor slices, a schedule, best-validation weights, resumable.

Data sit in one tensor on the device; each epoch draws one permutation and
trains on contiguous slices of the shuffled copy, so the hot loop has no
per-sample Python (no `Dataset.__getitem__`).

Every `checkpoint_every` epochs, and at the end of the epoch in which
SIGTERM, SIGUSR1 or SIGUSR2 arrives, the whole training state (model,
optimiser, schedule, random generators, epoch, best-so-far, history) is
written atomically; a trial started again with the same checkpoint continues
where it stopped and ends exactly as an uninterrupted run would (same
threads, CPU).
"""

from __future__ import annotations

import io
import math
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpcsweep.config import Compile, TrainConfig
from hpcsweep.errors import Log
from hpcsweep.files import atomic
from hpcsweep.states import TrialState
from hpcsweep.trial.evaluate import validation_loss
from hpcsweep.trial.models import Autoencoder

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

#: Jets through the training step (epochs x training jets) from which `compile: auto` compiles it on a GPU. There a
#: small MLP's step is bound by kernel launches, which the compiled step fuses; the compile costs 10-20 s, repaid after
#: a few minutes of training. On the CPU the compiled step showed no stable gain over the eager one (docs/benchmarks.md,
#: "What each change gained"): auto leaves CPU trials eager.
COMPILE_FROM_JETS = 20_000_000

Objective = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class TrialInterrupted(Exception):
    """A stop signal arrived and a checkpoint was written: run the trial again to resume it."""

    def __init__(self, signum: int, epoch: int, checkpoint: Path):
        super().__init__(f"signal {signal.Signals(signum).name} at epoch {epoch}; checkpoint written to {checkpoint}")
        self.signum = signum


Heartbeat = Callable[[int, int, float, int], None]  # told (epoch, epochs, best val loss, its epoch) every epoch
Report = Callable[[int, float], bool]  # told (epoch, val loss) every epoch; True stops the trial as pruned (Optuna)


@dataclass
class TrainResult:
    state: TrialState  # done, diverged or pruned
    best_val_mse: float
    best_epoch: int  # 1-based; 0 if no epoch finished
    epochs_run: int
    train_time_s: float
    history: dict[str, list[float]] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    stopped_early: bool = False
    resumed_from: int = 0


def select_device() -> torch.device:
    """CUDA when a GPU is visible to this process, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def learning_rate_schedule(
    optimiser: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-batch scheduler: fastai's 1cycle (rate and momentum), constant, or piecewise by epoch."""
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimiser,
            max_lr=config.lr,
            total_steps=config.epochs * steps_per_epoch,
            pct_start=0.25,
            div_factor=25.0,
            final_div_factor=1e5,
            base_momentum=0.85,
            max_momentum=0.95,
        )
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1.0)
    boundaries, rates = [], []
    total: float = 0
    for epochs, rate in config.piecewise:
        total = math.inf if epochs is None else total + epochs
        boundaries.append(total)
        rates.append(rate)

    def factor(step: int) -> float:
        epoch = step // steps_per_epoch
        return next((r for b, r in zip(boundaries, rates, strict=True) if epoch < b), rates[-1]) / config.lr

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def train(
    model: Autoencoder,
    x_train: torch.Tensor,
    x_val: torch.Tensor,
    config: TrainConfig,
    checkpoint: Path | None = None,
    checkpoint_every: int = 10,
    log: Log = print,
    report: Report | None = None,
    heartbeat: Heartbeat | None = None,
    compile: Compile = "auto",
) -> TrainResult:
    """Train `model` to reconstruct its input; resume from `checkpoint` if it exists.

    `report(epoch, val_loss)` is told every epoch's validation loss (an Optuna
    pruner listens there); when it answers True the trial ends as 'pruned'.
    `heartbeat(epoch, epochs, best_val, best_epoch)` is told where training stands after every epoch.
    `compile`: torch.compile the training step always, never, or (auto) when the trial is long enough.
    """
    generator = torch.Generator().manual_seed(config.seed)
    n = len(x_train)
    starts = _batch_starts(n, config.batch_size)
    seen = sum(min(config.batch_size, n - start) for start in starts)
    # the fused kernel updates all parameters in one pass: +43 % jets/s at batch 256 on CPU (docs/benchmarks.md)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    schedule = learning_rate_schedule(optimiser, config, len(starts))
    result = TrainResult(TrialState.DONE, math.inf, 0, 0, 0.0, {"train_loss": [], "val_loss": [], "lr": []})
    snapshot = _load(checkpoint, log) if checkpoint is not None else None
    if snapshot is not None:
        _restore(snapshot, model, optimiser, schedule, generator, result)
        result.resumed_from = result.epochs_run
        log(f"resuming from the checkpoint of epoch {result.epochs_run}")
    report_every = max(1, config.epochs // 10)
    objective = training_objective(model, compile, seen * (config.epochs - result.epochs_run), log)
    with _stop_signals(enabled=checkpoint is not None) as stop:
        for epoch in range(result.epochs_run + 1, config.epochs + 1):
            began = time.perf_counter()
            result.history["lr"].append(optimiser.param_groups[0]["lr"])
            shuffled = x_train[torch.randperm(n, generator=generator).to(x_train.device)]
            train_loss = _epoch(model, objective, optimiser, schedule, shuffled, starts, config.batch_size) / seen
            val_loss = validation_loss(model, x_val) if math.isfinite(train_loss) else math.nan
            result.history["train_loss"].append(train_loss)
            result.history["val_loss"].append(val_loss)
            result.epochs_run = epoch
            result.train_time_s += time.perf_counter() - began
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                result.state = TrialState.DIVERGED
                log(f"epoch {epoch}: the loss is not finite; the trial diverged")
                break
            if val_loss < result.best_val_mse:
                result.best_val_mse, result.best_epoch = val_loss, epoch
                result.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if epoch % report_every == 0 or epoch == config.epochs:
                log(
                    f"epoch {epoch}/{config.epochs}: train {train_loss:.4g}  val {val_loss:.4g}  best {result.best_val_mse:.4g} (epoch {result.best_epoch})"
                )
            if heartbeat is not None:
                heartbeat(epoch, config.epochs, result.best_val_mse, result.best_epoch)
            if report is not None and report(epoch, val_loss):
                result.state = TrialState.PRUNED
                log(f"epoch {epoch}: pruned (val {val_loss:.4g})")
                break
            if config.patience and epoch - result.best_epoch >= config.patience:
                result.stopped_early = True
                log(f"epoch {epoch}: no better val loss for {config.patience} epochs; stopping early")
                break
            if checkpoint is not None and (stop.signal or epoch % checkpoint_every == 0):
                _save(checkpoint, _snapshot(model, optimiser, schedule, generator, result))
            if stop.signal:
                assert checkpoint is not None  # signals are caught only when there is a checkpoint to write
                raise TrialInterrupted(stop.signal, epoch, checkpoint)
    return result


def training_objective(model: Autoencoder, compile: Compile, jet_passes: int, log: Log) -> Objective:
    """`model.objective`, compiled when asked or, on auto, when the model is on a GPU and `jet_passes` repay the
    compile (COMPILE_FROM_JETS).

    Compiled with static shapes (the last batch of an epoch compiles once more) and eager random
    numbers (a VAE draws the same samples either way); a compile that fails (no C++ compiler on
    the node) is logged and the step runs eagerly.
    """
    on_gpu = next(model.parameters()).device.type == "cuda"
    if compile == "never" or (compile == "auto" and not (on_gpu and jet_passes >= COMPILE_FROM_JETS)):
        return model.objective
    import torch._inductor.config

    torch._inductor.config.fallback_random = True
    log(f"compiling the training step (compile: {compile}, {jet_passes:,} jet passes to train)")
    return _Compiled(model, log)


class _Compiled:
    """A compiled objective that falls back to the eager one when the compile fails."""

    def __init__(self, model: Autoencoder, log: Log) -> None:
        self.eager: Objective = model.objective
        self.compiled: Objective | None = torch.compile(model.objective, dynamic=False)
        self.log = log

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.compiled is not None:
            try:
                return self.compiled(batch)
            except torch._dynamo.exc.BackendCompilerFailed as err:
                self.log(f"torch.compile failed ({type(err).__name__}: {str(err).splitlines()[0]}); training on without it")
                self.compiled = None
        return self.eager(batch)


def _epoch(
    model: Autoencoder,
    objective: Objective,
    optimiser: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    shuffled: torch.Tensor,
    starts: list[int],
    batch_size: int,
) -> float:
    """One pass over the shuffled data; the summed reconstruction loss (NaN or inf if any batch diverged).

    Finiteness is checked once per epoch, on the sum: a check per batch waits for the device at
    every step; a diverged batch makes every later loss NaN, so the epoch ends NaN either way.
    """
    model.train()
    total = torch.zeros((), dtype=torch.float64, device=shuffled.device)
    for start in starts:
        batch = shuffled[start : start + batch_size]
        loss, mse = objective(batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        total += mse.detach() * len(batch)
    return float(total)


def _batch_starts(n: int, batch_size: int) -> list[int]:
    """Start of each batch; a last batch of one jet is dropped (BatchNorm cannot train on it)."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return starts


class _StopFlag:
    signal: int = 0


@contextmanager
def _stop_signals(enabled: bool) -> Iterator[_StopFlag]:
    """Turn SIGTERM/SIGUSR1/SIGUSR2 into a flag checked at the end of each epoch.

    Only when there is a checkpoint to write; and Python only installs handlers
    from the main thread: elsewhere (a trial run from a thread) signals keep their
    default action and periodic checkpoints remain.
    """
    flag = _StopFlag()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda number, frame: setattr(flag, "signal", number))
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _snapshot(
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    result: TrainResult,
) -> dict[str, Any]:
    snapshot = {
        "model": model.state_dict(),
        "optimiser": optimiser.state_dict(),
        "schedule": schedule.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "epochs_run": result.epochs_run,
        "best_val_mse": result.best_val_mse,
        "best_epoch": result.best_epoch,
        "best_state": result.best_state,
        "history": result.history,
        "train_time_s": result.train_time_s,
    }
    if torch.cuda.is_available():
        snapshot["cuda_rng"] = torch.cuda.get_rng_state_all()
    return snapshot


def _restore(
    snapshot: dict[str, Any],
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    result: TrainResult,
) -> None:
    model.load_state_dict(snapshot["model"])
    optimiser.load_state_dict(snapshot["optimiser"])
    schedule.load_state_dict(snapshot["schedule"])
    generator.set_state(snapshot["generator"])
    torch.set_rng_state(snapshot["torch_rng"])
    if "cuda_rng" in snapshot and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(snapshot["cuda_rng"])
    for key in ("epochs_run", "best_val_mse", "best_epoch", "best_state", "history", "train_time_s"):
        setattr(result, key, snapshot[key])


def _load(path: Path, log: Log) -> dict[str, Any] | None:
    """The checkpoint's snapshot; None if there is none, or if it is damaged (it is removed: the trial starts over)."""
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as err:
        log(f"checkpoint {path} is damaged ({type(err).__name__}: {err}); starting the trial over")
        path.unlink(missing_ok=True)
        return None


def _save(path: Path, snapshot: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a reader (or a restart) never sees half of one; a full disk leaves the last one."""
    buffer = io.BytesIO()
    torch.save(snapshot, buffer)  # to memory first: a full disk is then an OSError (ENOSPC), not a RuntimeError of torch's writer
    with atomic(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())

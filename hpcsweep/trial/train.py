"""The training loop: AdamW + 1cycle over tensor slices, best-validation weights kept.

Data sit in one tensor on the device; each epoch draws one permutation and
trains on contiguous slices of the shuffled copy, so the hot loop has no
per-sample Python (no `Dataset.__getitem__`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from hpcsweep.config import TrainConfig
from hpcsweep.trial.evaluate import reconstruction_mse


@dataclass
class TrainResult:
    state: str  # "done" or "diverged"
    best_val_mse: float
    best_epoch: int  # 1-based; 0 if no epoch finished
    epochs_run: int
    train_time_s: float
    history: dict[str, list[float]] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)


def select_device() -> torch.device:
    """CUDA when a GPU is visible to this process, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(
    model: nn.Module,
    x_train: torch.Tensor,
    x_val: torch.Tensor,
    config: TrainConfig,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train `model` to reconstruct its input; stop at the first non-finite loss."""
    generator = torch.Generator().manual_seed(config.seed)
    n = len(x_train)
    starts = _batch_starts(n, config.batch_size)
    seen = sum(min(config.batch_size, n - start) for start in starts)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=config.epochs * len(starts))
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "lr": []}
    best = TrainResult("done", math.inf, 0, 0, 0.0, history)
    report_every = max(1, config.epochs // 10)
    began = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        shuffled = x_train[torch.randperm(n, generator=generator).to(x_train.device)]
        total = torch.zeros((), dtype=torch.float64, device=x_train.device)
        history["lr"].append(optimiser.param_groups[0]["lr"])
        for start in starts:
            batch = shuffled[start : start + config.batch_size]
            loss = nn.functional.mse_loss(model(batch), batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.detach() * len(batch)
        train_loss = float(total) / seen
        val_loss = reconstruction_mse(model, x_val)
        history["train_loss"].append(train_loss)
        history["val_loss"].append(val_loss)
        best.epochs_run = epoch
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            best.state = "diverged"
            log(f"epoch {epoch}: loss is not finite (train {train_loss}, val {val_loss}); stopping")
            break
        if val_loss < best.best_val_mse:
            best.best_val_mse, best.best_epoch = val_loss, epoch
            best.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if epoch % report_every == 0 or epoch == config.epochs:
            log(
                f"epoch {epoch}/{config.epochs}: train {train_loss:.4g}  val {val_loss:.4g}  best {best.best_val_mse:.4g} (epoch {best.best_epoch})"
            )
    best.train_time_s = time.perf_counter() - began
    return best


def _batch_starts(n: int, batch_size: int) -> list[int]:
    """Start of each batch; a last batch of one jet is dropped (BatchNorm cannot train on it)."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return starts

"""The CUDA path of a trial: the device chosen from the allocation, training, evaluation and the trial file.

Runs where a GPU is visible to this process (a SLURM GPU partition, the device machine); skipped with the
reason elsewhere. The CPU runs of the rest of the suite cover the same code with device = cpu.
"""

from __future__ import annotations

import math

import pytest
import torch

from hpcsweep.config import ModelConfig
from hpcsweep.store import read_trial, trial_path
from hpcsweep.trial import run_trial
from hpcsweep.trial.models import build_model
from hpcsweep.trial.train import COMPILE_FROM_JETS, select_device, training_objective
from tests.helpers import trial_spec

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU visible to this process (torch.cuda.is_available() is False)"
)


def test_a_trial_on_the_gpu_trains_as_on_the_cpu(qcd_file, tmp_path):
    assert select_device().type == "cuda"
    gpu = trial_spec(qcd_file, tmp_path / "gpu")
    assert run_trial(gpu, threads=1, log=lambda _: None) == "done"
    record = read_trial(trial_path(tmp_path / "gpu", gpu.trial_id))
    assert record.provenance["device"] == "cuda"
    assert record.evaluation["validation"]["timing"]["encode_us_per_jet"] > 0
    assert all(w.dtype.kind == "f" for w in record.weights.values())
    cpu = trial_spec(qcd_file, tmp_path / "cpu")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", lambda: False)
        assert run_trial(cpu, threads=1, log=lambda _: None) == "done"
    on_cpu = read_trial(trial_path(tmp_path / "cpu", cpu.trial_id)).metrics["best_val_mse"]
    assert math.isfinite(record.metrics["best_val_mse"])
    assert record.metrics["best_val_mse"] == pytest.approx(on_cpu, rel=0.2), "same data, seed and steps: the same loss up to rounding"


def test_auto_compiles_a_long_gpu_trial_only():
    model = build_model(ModelConfig(hidden=[16], latent=2), 4).to(select_device())
    said: list[str] = []
    assert training_objective(model, "auto", COMPILE_FROM_JETS - 1, said.append) == model.objective
    compiled = training_objective(model, "auto", COMPILE_FROM_JETS, said.append)
    assert said == [f"compiling the training step (compile: auto, {COMPILE_FROM_JETS:,} jet passes to train)"]
    x = torch.randn(64, 4, device=select_device())
    loss, mse = compiled(x)
    assert torch.allclose(loss, model.objective(x)[0], rtol=1e-4) and not any("failed" in line for line in said)

"""The training engine: schedules, early stopping, divergence, and resume after SIGKILL or SIGTERM."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from hpcsweep.config import ModelConfig, TrainConfig, TrialSpec
from hpcsweep.store import read_trial, trial_path
from hpcsweep.trial import checkpoint_path, run_trial
from hpcsweep.trial.models import build_model
from hpcsweep.trial.train import COMPILE_FROM_JETS, learning_rate_schedule, train, training_objective
from tests.helpers import trial_spec


def _rates(config: TrainConfig, steps_per_epoch: int) -> tuple[list[float], list[float]]:
    model = torch.nn.Linear(2, 2)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr)
    schedule = learning_rate_schedule(optimiser, config, steps_per_epoch)
    rates, momenta = [], []
    for _ in range(config.epochs * steps_per_epoch):
        rates.append(optimiser.param_groups[0]["lr"])
        momenta.append(optimiser.param_groups[0]["betas"][0])
        optimiser.step()
        schedule.step()
    return rates, momenta


def test_onecycle_warms_up_for_a_quarter_then_anneals_with_inverse_momentum():
    rates, momenta = _rates(TrainConfig(epochs=20, lr=1e-2, schedule="onecycle"), 10)
    peak = int(np.argmax(rates))
    assert peak == pytest.approx(0.25 * 200, abs=1) and max(rates) == pytest.approx(1e-2)
    assert rates[0] == pytest.approx(1e-2 / 25) and rates[-1] < 1e-2 / 25 / 1e4
    assert momenta[0] == pytest.approx(0.95) and momenta[peak] == pytest.approx(0.85) and momenta[-1] > 0.94


def test_constant_schedule_keeps_the_rate():
    rates, _ = _rates(TrainConfig(epochs=3, lr=3e-3, schedule="constant"), 4)
    assert rates == [pytest.approx(3e-3)] * 12


def test_piecewise_schedule_follows_the_thesis_segments():
    config = TrainConfig(epochs=25, lr=1e-3, schedule="piecewise", piecewise=[(10, 1e-7), (10, 1e-4), (None, 1e-6)])
    rates, _ = _rates(config, 3)
    per_epoch = rates[::3]
    assert per_epoch[:10] == [pytest.approx(1e-7)] * 10
    assert per_epoch[10:20] == [pytest.approx(1e-4)] * 10
    assert per_epoch[20:] == [pytest.approx(1e-6)] * 5


def _spec(qcd_file, results, **train) -> TrialSpec:
    return trial_spec(qcd_file, results, train={"epochs": 40, "batch_size": 128, **train}, checkpoint_every=4)


def test_early_stopping_ends_after_patience_epochs_without_improvement(qcd_file, tmp_path):
    spec = _spec(qcd_file, tmp_path, schedule="constant", lr=0.3, patience=2)
    run_trial(spec, threads=1, log=lambda _: None)
    metrics = read_trial(trial_path(tmp_path, spec.trial_id)).metrics
    assert metrics["stopped_early"] and metrics["epochs_run"] < 40
    assert metrics["epochs_run"] - metrics["best_epoch"] == 2


def test_divergence_stops_at_once_and_is_recorded(qcd_file, tmp_path):
    spec = _spec(qcd_file, tmp_path, lr=1e12)
    assert run_trial(spec, threads=1, log=lambda _: None) == "diverged"
    record = read_trial(trial_path(tmp_path, spec.trial_id))
    history = record.history["train_loss"]
    assert record.state == "diverged" and record.metrics["epochs_run"] == len(history) < 40
    assert math.isnan(history[-1]) and np.isfinite(history[:-1]).all()
    assert not checkpoint_path(spec).exists()


def test_auto_leaves_a_cpu_trial_eager_however_long():
    model = build_model(ModelConfig(hidden=[8], latent=2), 4)
    said: list[str] = []
    for choice in ("auto", "never"):
        assert training_objective(model, choice, 10 * COMPILE_FROM_JETS, said.append) == model.objective
    assert not said
    assert training_objective(model, "always", 1, said.append) != model.objective
    assert said == ["compiling the training step (compile: always, 1 jet passes to train)"]


def _train_small(compile: str, log=lambda _: None) -> list[float]:
    """Train and validation losses of a small AE, epoch by epoch."""
    torch.manual_seed(0)
    x = torch.randn(1000, 6)
    model = build_model(ModelConfig(hidden=[16, 16], latent=3), 6)
    config = TrainConfig(epochs=3, batch_size=300, lr=1e-2, schedule="constant")  # the last batch (100) compiles once more
    result = train(model, x[:900], x[900:], config, log=log, compile=compile)
    return result.history["train_loss"] + result.history["val_loss"]


@pytest.mark.slow
def test_a_compiled_step_trains_as_the_eager_one():
    said: list[str] = []
    compiled, eager = _train_small("always", said.append), _train_small("never")
    assert compiled == pytest.approx(eager, rel=1e-4)
    assert said[0] == "compiling the training step (compile: always, 2,700 jet passes to train)"
    assert not any("failed" in line for line in said)


NO_COMPILER = """
import torch
from hpcsweep.config import ModelConfig, TrainConfig
from hpcsweep.trial.models import build_model
from hpcsweep.trial.train import train
torch.manual_seed(0)
x = torch.randn(1000, 6)
model = build_model(ModelConfig(hidden=[16, 16], latent=3), 6)
result = train(model, x[:900], x[900:], TrainConfig(epochs=3, batch_size=300, lr=1e-2, schedule="constant"), compile="always")
print(result.history["train_loss"] + result.history["val_loss"])
"""


@pytest.mark.slow
def test_a_compile_that_fails_is_said_and_training_goes_on_eagerly(tmp_path):
    """On a node without a C++ compiler (nothing on PATH, nothing compiled before in the cache), the step runs eagerly."""
    (tmp_path / "bin").mkdir()
    env = {"PATH": str(tmp_path / "bin"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", NO_COMPILER], env=env, capture_output=True, text=True, timeout=300, check=True)
    said = done.stdout.splitlines()
    assert said[1].startswith("torch.compile failed (InductorError: InvalidCxxCompiler") and said[1].endswith("training on without it")
    assert [float(v) for v in said[-1].strip("[]").split(",")] == pytest.approx(_train_small("never"), rel=1e-6)


RUNNER = (
    "import sys; from hpcsweep.config import TrialSpec; from hpcsweep.trial import run_trial;"
    "run_trial(TrialSpec.model_validate_json(open(sys.argv[1]).read()), threads=1)"
)


def _start_and_stop(spec: TrialSpec, tmp_path, signum: int) -> subprocess.Popen:
    """Run the trial in a child process and send it `signum` once its first checkpoint exists."""
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.model_dump_json())
    child = subprocess.Popen([sys.executable, "-c", RUNNER, str(spec_file)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not checkpoint_path(spec).exists():
        assert child.poll() is None and time.time() < deadline, "the trial ended before its first checkpoint"
        time.sleep(0.02)
    child.send_signal(signum)
    child.wait(timeout=60)
    return child


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_stopped_trial_resumes_to_the_same_result(qcd_file, tmp_path, signum):
    reference = _spec(qcd_file, tmp_path / "reference")
    run_trial(reference, threads=1, log=lambda _: None)
    expected = read_trial(trial_path(reference.results_dir, reference.trial_id))

    stopped = _spec(qcd_file, tmp_path / "stopped")
    child = _start_and_stop(stopped, tmp_path, signum)
    output = child.stdout.read()
    assert child.returncode != 0 and not trial_path(stopped.results_dir, stopped.trial_id).exists()
    if signum == signal.SIGTERM:
        assert "TrialInterrupted" in output, output
    saved_epoch = torch.load(checkpoint_path(stopped), weights_only=True)["epochs_run"]
    assert 4 <= saved_epoch < 40

    lines: list[str] = []
    run_trial(stopped, threads=1, log=lines.append)
    resumed = read_trial(trial_path(stopped.results_dir, stopped.trial_id))
    assert f"resuming from the checkpoint of epoch {saved_epoch}" in lines
    assert resumed.metrics["resumed_from_epoch"] == saved_epoch
    assert resumed.metrics["best_val_mse"] == pytest.approx(expected.metrics["best_val_mse"], rel=1e-6)
    assert resumed.metrics["best_epoch"] == expected.metrics["best_epoch"]
    np.testing.assert_allclose(resumed.history["val_loss"], expected.history["val_loss"], rtol=1e-6)
    assert not checkpoint_path(stopped).exists(), "the checkpoint goes once the trial file is written"

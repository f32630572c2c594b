"""export-tracking: a real sweep's trials written as TensorBoard and MLflow runs, then read back with those tools' own
readers and compared, value for value, with the trial files."""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from hpcsweep.cli import main
from hpcsweep.states import TrialState
from hpcsweep.store import TrialRecord, read_trial, scan, trial_path, write_trial
from hpcsweep.trial import run_trial
from tests.helpers import trial_spec

#: Three real trials (two learning rates, a second latent dimension; 3 and 4 epochs): (model, train) overrides.
TRAINED = [({}, {"epochs": 3, "lr": 1e-2}), ({}, {"epochs": 4, "lr": 3e-3}), ({"latent": 2}, {"epochs": 3, "lr": 1e-2})]


@pytest.fixture(scope="module")
def sweep(qcd_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder with three trained trials and one failed trial file (as the store writes one)."""
    results = tmp_path_factory.mktemp("tracking") / "results" / "unit"
    for model, train in TRAINED:
        assert run_trial(trial_spec(qcd_file, results, model=model, train=train), threads=1, log=lambda _: None) == TrialState.DONE
    failed = trial_spec(qcd_file, results, train={"epochs": 3, "lr": 0.5})
    config = failed.config.model_dump(mode="json")
    record = TrialRecord(failed.trial_id, "unit", TrialState.FAILED, config, failure="error: RuntimeError: boom", error="Traceback ...")
    write_trial(trial_path(results, failed.trial_id), record)
    return results


@pytest.fixture(scope="module")
def records(sweep: Path) -> dict[str, TrialRecord]:
    summaries, unreadable = scan(sweep)
    assert len(summaries) == 4 and not unreadable
    return {trial_id: read_trial(trial_path(sweep, trial_id), weights=False) for trial_id in summaries}


def _export(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["export-tracking", *args]) == 0
    return capsys.readouterr().out


def _tensorboard_runs(folder: Path) -> dict[str, object]:
    """Each run of a log dir as TensorBoard's own event reader loads it, by trial id (the end of the run's name)."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, TENSORS, EventAccumulator

    runs = sorted(path for path in folder.iterdir() if path.is_dir())
    return {run.name.rsplit("-", 1)[1]: EventAccumulator(str(run), size_guidance={SCALARS: 0, TENSORS: 0}).Reload() for run in runs}


def _hparams(run) -> dict[str, object]:
    from tensorboard.plugins.hparams import metadata

    content = run.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content
    values = metadata.parse_session_start_info_plugin_data(content).hparams
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in values.items()}


def _session_status(run) -> str:
    from tensorboard.plugins.hparams import api_pb2, metadata

    content = run.SummaryMetadata(metadata.SESSION_END_INFO_TAG).plugin_data.content
    return api_pb2.Status.Name(metadata.parse_session_end_info_plugin_data(content).status)


def test_tensorboard_holds_every_trial_curve_hyperparameter_and_final_metric(sweep, records, capsys):
    for _ in range(2):  # the second export replaces the first
        out = _export(["unit", "--results", str(sweep.parent), "--to", "tensorboard"], capsys)
    folder = sweep / "tensorboard"
    assert f"4 runs (3 done, 1 failed) -> {folder}; open with: tensorboard --logdir {folder}" in out
    assert all(len(list(run.glob("events.out.tfevents.*"))) == 1 for run in folder.iterdir() if run.is_dir())
    runs = _tensorboard_runs(folder)
    assert set(runs) == set(records)
    for trial_id, record in records.items():
        run, config = runs[trial_id], record.config
        assert (folder / f"z{config['model']['latent']}-lr{config['train']['lr']:g}-{trial_id}").is_dir()
        hparams = _hparams(run)
        assert hparams["train.lr"] == config["train"]["lr"] and hparams["model.latent"] == config["model"]["latent"]
        assert hparams["state"] == record.state and hparams["model.hidden"] == "[64, 64]"
        if record.state == TrialState.FAILED:
            assert run.Tags()["scalars"] == [] and _session_status(run) == "STATUS_FAILURE"
            continue
        assert _session_status(run) == "STATUS_SUCCESS"
        for curve in ("val_loss", "train_loss", "lr"):
            events = run.Scalars(f"epoch/{curve}")
            expected = record.history[curve].astype(np.float32).tolist()  # a TensorBoard scalar is a float32
            assert [e.step for e in events] == list(range(1, config["train"]["epochs"] + 1))
            assert [e.value for e in events] == expected, curve
        assert [e.value for e in run.Scalars("final/best_val_mse")] == [np.float32(record.metrics["best_val_mse"])]
        assert run.Scalars("final/residual_width.pt")[0].value == np.float32(record.metrics["residual_width"]["pt"])
        assert "final/anomaly" not in run.Tags()["scalars"] and "final/stopped_early" not in run.Tags()["scalars"]


def _mlflow_runs(folder: Path, tmp_path: Path) -> dict[str, object]:
    """The store's runs as MLflow's client reads them, by run name. A copy is read: MLflow keeps its database
    connections by address, so a second read of the same address after a re-export would see the first file."""
    from mlflow.tracking import MlflowClient

    copy = tmp_path / f"{uuid.uuid4().hex}.db"
    shutil.copyfile(folder / "mlflow.db", copy)
    client = MlflowClient(tracking_uri=f"sqlite:///{copy}")
    experiment = client.get_experiment_by_name("unit")
    runs = client.search_runs([experiment.experiment_id])
    assert len({run.info.run_name for run in runs}) == len(runs), "one run per trial"
    return {run.info.run_name: (client, run) for run in runs}


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")  # inside MLflow's own tables
def test_mlflow_holds_every_trial_and_a_second_export_replaces_the_first(sweep, records, capsys, tmp_path):
    for _ in range(2):
        out = _export([str(sweep), "--to", "mlflow"], capsys)
        assert f"open with: mlflow ui --backend-store-uri sqlite:///{sweep / 'mlruns' / 'mlflow.db'}" in out
        runs = _mlflow_runs(sweep / "mlruns", tmp_path)
        assert set(runs) == set(records), "one run per trial, however often it is exported"
        for trial_id, record in records.items():
            client, run = runs[trial_id]
            config, data = record.config, run.data
            assert data.params["train.lr"] == str(config["train"]["lr"]) and data.params["model.latent"] == str(config["model"]["latent"])
            assert data.tags["state"] == record.state and data.tags["trial_id"] == trial_id and data.tags["sweep"] == "unit"
            if record.state == TrialState.FAILED:
                assert run.info.status == "FAILED" and data.metrics == {} and data.tags["failure"] == record.failure
                continue
            assert run.info.status == "FINISHED"
            for curve in ("val_loss", "train_loss", "lr"):
                history = sorted(client.get_metric_history(run.info.run_id, f"epoch/{curve}"), key=lambda m: m.step)
                assert [m.step for m in history] == list(range(1, config["train"]["epochs"] + 1))
                assert [m.value for m in history] == record.history[curve].tolist(), curve
            assert data.metrics["final/best_val_mse"] == record.metrics["best_val_mse"]
            assert data.metrics["final/within_1pct.pt"] == record.metrics["within_1pct"]["pt"]
    assert not [path for path in sweep.iterdir() if path.name.startswith(".mlruns")], "no temporary left behind"


@pytest.mark.parametrize("target", ["tensorboard", "mlflow"])
def test_a_missing_extra_is_one_line_naming_it(sweep, tmp_path, monkeypatch, capsys, target):
    for name in [name for name in sys.modules if name.startswith(f"{target}.")] + [target]:
        monkeypatch.setitem(sys.modules, name, None)  # what an import finds when the package is not installed
    assert main(["export-tracking", str(sweep), "--to", target, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--to {target} needs {target}" in err[0] and "pip install 'hpcsweep[tracking]'" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_not_an_export_is_never_replaced(sweep, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["export-tracking", str(sweep), "--to", "tensorboard", "-o", str(mine)]) == 2
    assert "is not a tensorboard export of hpcsweep" in capsys.readouterr().err
    assert [path.name for path in mine.iterdir()] == ["notes.txt"]

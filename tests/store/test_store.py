"""The store: one HDF5 file per trial, written atomically, summaries without weights."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from hpcsweep import allocation
from hpcsweep.store import (
    CHECKED_PER_TASK,
    USER_BLOCK,
    TrialRecord,
    close_attempt,
    index_path,
    open_attempt,
    read_attempts,
    read_summary,
    read_trial,
    rebuild_index,
    reset_attempts,
    scan,
    trial_path,
    verify_trial,
    write_trial,
)
from hpcsweep.sweep.state import failed_attempts


def _record(trial_id: str = "abc123", state: str = "done") -> TrialRecord:
    return TrialRecord(
        trial_id=trial_id,
        sweep="unit",
        state=state,
        config={"model": {"latent": 4}, "train": {"lr": 0.01}},
        metrics={"best_val_mse": 1.5e-3, "best_epoch": 7},
        history={"val_loss": np.linspace(1, 0.1, 10)},
        weights={"encoder.0.weight": np.arange(12, dtype=np.float32).reshape(3, 4)},
        normaliser={"mode": "standard", "names": ["pt"], "steps": []},
        provenance={"git_commit": "deadbeef", "data_checksum": "sha256:00"},
    )


def test_round_trip_keeps_everything(tmp_path):
    path = trial_path(tmp_path, "abc123")
    write_trial(path, _record())
    back = read_trial(path)
    assert back.state == "done" and back.config == _record().config and back.metrics == _record().metrics
    np.testing.assert_array_equal(back.weights["encoder.0.weight"], _record().weights["encoder.0.weight"])
    np.testing.assert_array_equal(back.history["val_loss"], _record().history["val_loss"])
    assert back.provenance["git_commit"] == "deadbeef"
    assert read_summary(path)["metrics"]["best_epoch"] == 7
    assert [p.name for p in path.parent.iterdir()] == ["abc123.h5"], "no temporary file is left behind"


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path):
    path = trial_path(tmp_path, "abc123")
    write_trial(path, _record())
    broken = _record()
    broken.weights = {"bad": np.array([object()])}  # h5py cannot store Python objects
    with pytest.raises(TypeError):
        write_trial(path, broken)
    assert read_trial(path).weights.keys() == {"encoder.0.weight"}
    assert [p.name for p in path.parent.iterdir()] == ["abc123.h5"]


def test_unknown_state_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot hold state"):
        write_trial(trial_path(tmp_path, "x"), _record(state="great"))


def test_scan_reads_summaries_and_reports_unreadable_files(tmp_path):
    write_trial(trial_path(tmp_path, "one"), _record("one"))
    write_trial(trial_path(tmp_path, "two"), _record("two", "failed"))
    (tmp_path / "trials" / "junk.h5").write_bytes(b"not hdf5")
    summaries, unreadable = scan(tmp_path)
    assert {k: v["state"] for k, v in summaries.items()} == {"one": "done", "two": "failed"}
    assert len(unreadable) == 1 and unreadable[0].startswith("junk.h5")


def test_arrays_of_every_kind_come_back_as_written_with_their_checksum(tmp_path):
    record = _record()
    record.arrays = {
        "flags": np.array([True, False, True]),
        "counts": np.arange(6, dtype=np.int8).reshape(2, 3),
        "ids": np.array([2**63 + 5], dtype=np.uint64),
        "half": np.linspace(0, 1, 5, dtype=np.float16),
        "big_endian": np.arange(4, dtype=">f4"),
        "complex": np.array([1 + 2j, -3j]),
        "scalar": np.array(3.5),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "cube": np.arange(24.0).reshape(2, 3, 4),
        "names": np.array([b"ab", b"c"]),
        "with_nan": np.array([np.nan, 1.0]),
        "validation/deep": np.ones(2, dtype=np.int64),  # a subgroup
    }
    path = trial_path(tmp_path, "abc123")
    write_trial(path, record)
    back = read_trial(path)  # weights and all: the checksum is checked
    assert back.arrays.keys() == record.arrays.keys()
    for name, array in record.arrays.items():
        assert back.arrays[name].dtype == array.dtype and back.arrays[name].shape == array.shape, name
        np.testing.assert_array_equal(back.arrays[name], array)


def test_a_first_index_checks_many_files_in_worker_processes_and_finds_the_damaged_ones(tmp_path, monkeypatch, worker_pools):
    for i in range(2 * CHECKED_PER_TASK + 1):
        write_trial(trial_path(tmp_path, f"t{i:03d}"), _record(f"t{i:03d}"))
    with h5py.File(trial_path(tmp_path, "t007"), "r+") as handle:  # still valid HDF5, wrong numbers
        handle["weights/encoder.0.weight"][0, 0] = 99
    (tmp_path / "trials" / "junk.h5").write_bytes(b"not hdf5")
    monkeypatch.setattr(allocation, "allocated_cores", lambda: 2)
    here = scan(tmp_path)  # no index yet: every file checked in this process
    assert worker_pools == []
    assert rebuild_index(tmp_path) == here and worker_pools == [2], "the same summaries and problems, from two processes"
    summaries, unreadable = here
    assert len(summaries) == 2 * CHECKED_PER_TASK and "t007" not in summaries
    assert [u.split(":")[0] for u in unreadable] == ["junk.h5", "t007.h5"] and "checksum mismatch" in unreadable[1]
    assert len(json.loads(index_path(tmp_path).read_text())) == 2 * CHECKED_PER_TASK, "the damaged file stays out of the index"
    assert rebuild_index(tmp_path) == here and worker_pools == [2], "indexed: only the two unreadable files are read again, here"


def test_a_sealed_file_is_checked_by_its_bytes_and_one_without_a_seal_by_its_checksum(tmp_path):
    """Schema 4 seals a file (the sha256 of its bytes in HDF5's user block): one flipped byte anywhere after the block
    is a mismatch. A file without the seal (schema 3, or a damaged block) is checked by its arrays' checksum."""
    path = trial_path(tmp_path, "abc123")
    write_trial(path, _record())
    data = bytearray(path.read_bytes())
    assert data.startswith(b"hpcsweep trial file") and verify_trial(path)["trial_id"] == "abc123"
    weights = data.index(np.arange(12, dtype=np.float32).tobytes())
    for where in (USER_BLOCK, weights, len(data) - 1):
        damaged = data.copy()
        damaged[where] ^= 1
        path.write_bytes(damaged)
        with pytest.raises(ValueError, match="checksum mismatch"):
            verify_trial(path)
    unsealed = bytes(USER_BLOCK) + data[USER_BLOCK:]
    path.write_bytes(unsealed)
    assert verify_trial(path)["trial_id"] == "abc123", "unsealed: checked by the checksum, which holds"
    damaged = bytearray(unsealed)
    damaged[weights] ^= 1
    path.write_bytes(damaged)
    with pytest.raises(ValueError, match="checksum mismatch"):
        verify_trial(path)


def test_files_of_schema_1_are_still_read(tmp_path):
    """Trial files written before the summary attribute (one attribute per field)."""
    import json

    import h5py

    path = trial_path(tmp_path, "old")
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as handle:
        for key, value in {"schema_version": 1, "trial_id": "old", "sweep": "s", "state": "done", "error": ""}.items():
            handle.attrs[key] = value
        for key in ("config", "metrics", "provenance", "normaliser", "evaluation"):
            handle.attrs[key] = json.dumps({"metrics": {"best_val_mse": 0.5}}.get(key, {}))
        for group in ("history", "weights", "arrays"):
            handle.create_group(group)
    summary = read_summary(path)
    assert summary["state"] == "done" and summary["metrics"] == {"best_val_mse": 0.5} and summary["failure"] == ""
    assert read_trial(path).trial_id == "old"


def test_attempts_say_how_each_ended_and_a_reset_starts_the_retry_budget_afresh(tmp_path):
    open_attempt(tmp_path, "t", {})
    close_attempt(tmp_path, "t", "checkpointed: time limit")
    close_attempt(tmp_path, "t", "failed: timeout exhausted")  # submitit refused the requeue after the checkpoint
    open_attempt(tmp_path, "t", {})  # killed: never ends
    open_attempt(tmp_path, "t", {})
    close_attempt(tmp_path, "t", "failed: error: ValueError: boom")
    attempts = read_attempts(tmp_path, "t")
    assert [a["outcome"] for a in attempts] == ["failed: timeout exhausted", "vanished", "failed: error: ValueError: boom"]
    assert failed_attempts(attempts) == 2, "the vanished attempt (killed) is the machine's doing, not the trial's"
    reset_attempts(tmp_path, "t")
    open_attempt(tmp_path, "t", {})
    close_attempt(tmp_path, "t", "checkpointed: preempted")
    attempts = read_attempts(tmp_path, "t")
    assert failed_attempts(attempts) == 0 and [a.get("counted", True) for a in attempts] == [False, False, False, True]


def test_a_changed_text_attribute_of_any_kind_is_a_checksum_mismatch(tmp_path):
    """The attributes are read as h5py reads them, whatever their kind: a text rewritten, or replaced by fixed-length
    bytes or a number, no longer matches the checksum, and the file is reported, never taken."""
    changes = {"text": "{}", "fixed": np.bytes_(b"{}"), "number": 3}
    for name, value in changes.items():
        write_trial(trial_path(tmp_path, name), _record(name))
        with h5py.File(trial_path(tmp_path, name), "r+") as handle:
            handle.attrs["normaliser"] = value
    write_trial(trial_path(tmp_path, "kept"), _record("kept"))
    summaries, unreadable = scan(tmp_path)
    assert list(summaries) == ["kept"]
    assert sorted(u.split(":")[0] for u in unreadable) == sorted(f"{name}.h5" for name in changes)
    assert all("checksum mismatch" in u for u in unreadable)
    assert read_trial(trial_path(tmp_path, "kept")).normaliser == _record().normaliser

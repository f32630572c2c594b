"""The state survey: which trial files a plan takes, and which it tells damaged, from real trial files."""

from __future__ import annotations

from hpcsweep.config import TrialConfig, validate_sweep
from hpcsweep.states import TrialState
from hpcsweep.store import TrialRecord, trial_path, write_trial
from hpcsweep.sweep import expand, plan
from hpcsweep.sweep.state import edited_config


def _sweep():
    grid = {"z": [2, 4], "lr": [1e-3, 1e-2], "seed": [0, 1]}
    return validate_sweep({"name": "survey", "grid": grid, "evaluation": {"signals": []}}, "test")  # no signal to evaluate them on


def test_every_planned_config_stored_as_a_trial_file_stores_it_hashes_to_its_trial():
    """The survey takes a stored config equal to the planned one without validating it: that needs the round trip."""
    for trial in expand(_sweep()):
        stored = trial.model_dump(mode="json")
        assert TrialConfig.model_validate(stored).identity() == trial.identity()
        assert edited_config({"config": stored}, trial.identity()) == ""


def test_a_stored_config_is_damage_exactly_when_it_hashes_to_another_trial(tmp_path):
    planned = plan(_sweep(), tmp_path).trials
    same, older, edited = planned[:3]
    for trial, config in (
        (same, same.config.model_dump(mode="json")),  # as the trial wrote it
        (older, {k: v for k, v in older.config.model_dump(mode="json").items() if k != "codec"}),  # defaults left out: same id
        (edited, planned[3].config.model_dump(mode="json")),  # another trial's settings under this id
    ):
        write_trial(trial_path(tmp_path, trial.trial_id), TrialRecord(trial_id=trial.trial_id, sweep="survey", state="done", config=config))
    states = {p.trial_id: p.state for p in plan(_sweep(), tmp_path).trials}
    assert [states[t.trial_id] for t in (same, older, edited)] == [TrialState.DONE, TrialState.DONE, TrialState.PENDING]
    assert list(states) == [p.trial_id for p in planned], "the plan's trials, in the grid's order"


def test_the_definitions_listing_sorts_out_the_plans_files_without_asking_a_scheduler(tmp_path, monkeypatch):
    """What the review selects by (`listed`): the plan's trials and the folder's other files, no trial's state surveyed."""
    from hpcsweep.store import record_submission, scan
    from hpcsweep.sweep import listed
    from hpcsweep.sweep.backends import JobTeller

    sweep = _sweep()
    first = plan(sweep, tmp_path).trials[0]
    for trial_id in (first.trial_id, "0000stranger"):
        record = TrialRecord(trial_id=trial_id, sweep="survey", state="done", config=first.config.model_dump(mode="json"))
        write_trial(trial_path(tmp_path, trial_id), record)
    surveyed = plan(sweep, tmp_path)
    record_submission(tmp_path, "slurm", {"4242_0": [surveyed.trials[1].trial_id]})  # a survey would ask squeue about it

    def asked(*args: object) -> None:
        raise AssertionError("the scheduler was asked")

    monkeypatch.setattr(JobTeller, "alive", asked)
    monkeypatch.setattr(JobTeller, "outcome", asked)
    listing = listed(sweep, tmp_path).with_others(scan(tmp_path)[0])
    assert [p.trial_id for p in listing.trials] == [p.trial_id for p in surveyed.trials]
    assert set(listing.others) == set(surveyed.others) == {"0000stranger"}

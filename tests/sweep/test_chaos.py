"""The chaos test, bounded: 12 checkpointing trials, 15 SIGKILLs of the driver or a worker, restarts until done."""

from __future__ import annotations

import pytest

from benchmarks.chaos import run_chaos
from tests.helpers import QCD

pytestmark = pytest.mark.slow  # real sweeps, end to end


@pytest.mark.slow
def test_a_sweep_killed_15_times_loses_nothing_trains_nothing_twice_and_ends_as_an_uninterrupted_run(qcd_file, tmp_path):
    report = run_chaos(
        tmp_path, trials=12, kills=15, seed=1, events=QCD.events, generator_seed=QCD.seed, epochs=80, pause_s=(0.3, 2.0), log=lambda _: None
    )
    assert len(report.kills) == 15 and {k["victim"] for k in report.kills} <= {"driver", "worker"}
    assert report.restarts > 1
    assert report.lost == 0, "every trial has one readable finished file"
    assert report.trained_twice == 0
    assert report.differ_from_reference == 0, "metrics and curves equal the uninterrupted run's"
    assert report.temporaries_left == 0 and report.claims_left == 0

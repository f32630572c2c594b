"""Sweep stage: grid expansion, identities, data versions, plans, backends, dispatch and resume (no torch here).

The way through, in order: `expand` a definition into trials, `plan` which of
them a run dispatches, hand the plan to the `backend` of the sweep's executor,
follow; `run_sweep` does all of it (see `hpcsweep.sweep.run`).
"""

from hpcsweep.sweep.backends import Backend, backend, backend_names, register
from hpcsweep.sweep.datasets import Datasets, describe_dataset
from hpcsweep.sweep.definition import check_definition, kept_sweep
from hpcsweep.sweep.grid import expand
from hpcsweep.sweep.run import run_sweep
from hpcsweep.sweep.state import Plan, PlannedTrial, plan

__all__ = [
    "Backend",
    "Datasets",
    "Plan",
    "PlannedTrial",
    "backend",
    "backend_names",
    "check_definition",
    "describe_dataset",
    "expand",
    "kept_sweep",
    "plan",
    "register",
    "run_sweep",
]

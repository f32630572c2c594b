"""Sweep stage: grid expansion, identities, data versions, plans, backends, dispatch and resume (no torch here).

The way through, in order: `expand` a definition into trials, `plan` which of
them a run dispatches, hand the plan to the `backend` of the sweep's executor,
follow; `run_sweep` does all of it (see `hpcsweep.sweep.run`).

Public names are imported on first use, so that what only reads a sweep's state (`hpcsweep status`, the
configuration's check of an executor name) does not import the dispatch and submitit with it.
"""

from __future__ import annotations

from hpcsweep.exports import lazy_exports

_EXPORTS = {
    "Backend": "backends",
    "backend": "backends",
    "backend_names": "backends",
    "register": "backends",
    "Datasets": "datasets",
    "describe_dataset": "datasets",
    "check_definition": "definition",
    "kept_sweep": "definition",
    "expand": "grid",
    "run_sweep": "run",
    "Plan": "state",
    "PlannedTrial": "state",
    "listed": "state",
    "plan": "state",
    "preview": "state",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)

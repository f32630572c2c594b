"""Trial stage: one autoencoder trained and evaluated on one dataset, written to the store.

This package imports torch; the orchestration side (sweep, review, CLI) only
imports it inside the worker that runs a trial.
"""

from hpcsweep.trial.reevaluate import reevaluate
from hpcsweep.trial.run import (
    assemble_trained,
    checkpoint_path,
    evaluate_signals,
    evaluate_stored,
    load_trained,
    run_trial,
    split_indices,
    stored_compressor,
)
from hpcsweep.trial.train import TrialInterrupted

__all__ = [
    "TrialInterrupted",
    "assemble_trained",
    "checkpoint_path",
    "evaluate_signals",
    "evaluate_stored",
    "load_trained",
    "reevaluate",
    "run_trial",
    "split_indices",
    "stored_compressor",
]

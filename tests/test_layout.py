"""The pipeline's layering: orchestration (sweep, review, store, CLI) and the compressor's coding side never import
torch at import time."""

from __future__ import annotations

import subprocess
import sys


def test_orchestration_side_does_not_import_torch():
    code = (
        "import sys, hpcsweep.cli, hpcsweep.sweep, hpcsweep.review, hpcsweep.store, hpcsweep.config, hpcsweep.data;"
        "import hpcsweep.compress.apply, hpcsweep.compress.bundle, hpcsweep.compress.codec;"
        "from hpcsweep.sweep import expand, plan;"
        "heavy = sorted(m for m in ('torch', 'uproot', 'pythia8mc', 'fastjet', 'matplotlib') if m in sys.modules);"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_threads_follow_the_allocation(monkeypatch):
    import os

    from hpcsweep.resources import allocated_cores

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert allocated_cores() == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", str(cores + 7))
    assert allocated_cores() == cores, "never more threads than the cores this process may use"
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert allocated_cores() == cores

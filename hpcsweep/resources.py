"""What this process was allocated: the one place that reads SLURM's and the OS's limits."""

from __future__ import annotations

import os


def allocated_cores() -> int:
    """SLURM's cpus-per-task when set (capped by the affinity mask), else the affinity mask."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return max(1, min(int(slurm), cores)) if slurm.isdigit() else cores

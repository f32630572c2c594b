"""What this process was allocated and which job it is: the one reader of SLURM's environment and the OS's limits."""

from __future__ import annotations

import os
import socket

LOCAL_JOB = "local"  # a job that is a process here: named local:<host>:<id>


def allocated_cores() -> int:
    """SLURM's cpus-per-task when set (capped by the affinity mask), else the affinity mask."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return max(1, min(int(slurm), cores)) if slurm.isdigit() else cores


def this_job() -> str:
    """The scheduler's name for the running job: SLURM array task ('123_4') or job, else local:<host>:<pid>."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    if env.get("SLURM_JOB_ID"):
        return env["SLURM_JOB_ID"]
    return local_job_name(os.getpid())


def local_job_name(job_id: int | str, host: str | None = None) -> str:
    """local:<host>:<id>: a process of this host (its pid), or a job of the debug executor (a non-numeric id)."""
    return f"{LOCAL_JOB}:{host or socket.gethostname()}:{job_id}"


def local_job(name: str) -> tuple[str, str] | None:
    """(host, id) of a local job's name; None for a scheduler's job."""
    kind, _, rest = name.partition(":")
    if kind != LOCAL_JOB:
        return None
    host, _, job_id = rest.rpartition(":")
    return host, job_id


def job_partition() -> str:
    """The SLURM partition this job runs in ('' outside SLURM)."""
    return os.environ.get("SLURM_JOB_PARTITION", "")


def allocated_gpus() -> str:
    """The GPUs this job was given (SLURM's, else CUDA_VISIBLE_DEVICES), as the scheduler writes them."""
    return os.environ.get("SLURM_JOB_GPUS") or os.environ.get("CUDA_VISIBLE_DEVICES", "")

"""What this process was allocated and which job it is: the one reader of SLURM's environment and the OS's limits."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

LOCAL_JOB = "local"  # a job that is a process here: named local:<host>:<id>
#: The most worker processes `in_processes` starts: each holds its own matplotlib or HDF5 (100-200 MB), and the cores of
#: a login node, where a sweep is often reviewed, are everybody's.
MAX_PROCESSES = 8

Item = TypeVar("Item")
Result = TypeVar("Result")


def allocated_cores() -> int:
    """SLURM's cpus-per-task when set (capped by the affinity mask), else the affinity mask."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return max(1, min(int(slurm), cores)) if slurm.isdigit() else cores


def in_processes(function: Callable[[Item], Result], items: Sequence[Item], chunk: int = 1) -> Generator[Result, None, None]:
    """`function` of each item, in order, computed in worker processes (one per allocated core, at most MAX_PROCESSES,
    each given `chunk` items at a time), or in this process where the items make no more than one chunk or there is
    one core. `function` and the items must pickle (a module-level function, plain data).

    CPU-bound Python (matplotlib drawing, HDF5 reading) holds one core per process whatever the threads. The workers
    start from a fork server (a fresh interpreter, forked per worker): a plain fork would copy this process's threads
    (the terminal's status line) in the middle of a write. An error of one item is raised when its turn comes; the
    items not yet started are then dropped.
    """
    processes = min(allocated_cores(), -(-len(items) // chunk), MAX_PROCESSES)
    if processes < 2:
        yield from map(function, items)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_worker_started)
    try:
        yield from pool.map(function, items, chunksize=chunk)
    finally:
        pool.shutdown(cancel_futures=True)


def _worker_started() -> None:
    """A worker leaves Ctrl-C to the process that started it, which stops the pool (instead of one traceback per worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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

"""The SLURM side: a site's file (`slurm_templates/<site>.yaml`) and the dispatch settings turned into a submitit
executor, and what the cluster says.

Nothing here waits on a job: the sweep asks `squeue` which of its jobs live and
reads the store for what is done, so a cancelled job (which submitit without
accounting would wait on forever) is simply seen as gone.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt, ValidationError, field_validator, model_validator

from hpcsweep.config import DispatchConfig, Section
from hpcsweep.errors import UserError, one_line, read_yaml

if TYPE_CHECKING:
    from submitit import Job

_SLURM_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")


def slurm_minutes(value: str) -> int:
    """Minutes (rounded up) of a SLURM time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS."""
    match = _SLURM_TIME.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a SLURM time; valid forms: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS")
    days, a, b, c = (int(g) if g is not None else None for g in match.group("d", "a", "b", "c"))
    assert a is not None  # the pattern's one group that is not optional
    if days is None:
        seconds = a * 60 + (b or 0) if c is None else a * 3600 + (b or 0) * 60 + c
    else:
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    return max(1, -(-seconds // 60))


def slurm_time(value: str | None) -> str | None:
    """`dispatch.time` as given, once it reads as a SLURM time (the check the slurm backend declares to the registry)."""
    if value is not None:
        slurm_minutes(value)
    return value


class PartitionSettings(Section):
    """What one array task asks of a partition."""

    cpus_per_task: PositiveInt = 1
    mem_gb: PositiveFloat = 4.0
    time: str = "01:00:00"
    gpus: int = Field(0, ge=0)

    @field_validator("time")
    @classmethod
    def _slurm_time(cls, value: str) -> str:
        slurm_minutes(value)
        return value


class SiteConfig(Section):
    """A SLURM site: its partitions and how its jobs must be asked for (slurm_templates/<site>.yaml)."""

    description: str = ""
    default_partition: str
    partitions: dict[str, PartitionSettings] = Field(min_length=1)
    gpu_request: Literal["gres", "gpus_per_node"] = Field("gres", description="--gres=gpu:N or --gpus-per-node=N")
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    extra_sbatch: list[str] = Field(default_factory=list, description="more #SBATCH options, e.g. --exclusive or --mail-type=END")
    setup: list[str] = Field(default_factory=list, description="shell lines run before the job (module loads, environment)")
    array_parallelism: PositiveInt = 64
    signal_delay_s: PositiveInt = Field(90, description="seconds before the time limit at which SIGUSR2 asks for a checkpoint")
    max_requeue: int = Field(3, ge=0, description="requeues after a time-out (preemptions are always requeued)")

    @model_validator(mode="after")
    def _default_exists(self) -> SiteConfig:
        if self.default_partition not in self.partitions:
            raise ValueError(f"default_partition {self.default_partition!r} is not among partitions: {', '.join(self.partitions)}")
        for line in self.extra_sbatch:
            if not line.startswith("--"):
                raise ValueError(f"extra_sbatch {line!r} must be an sbatch option starting with --")
        return self


SITE_DIR = Path("slurm_templates")


def load_site(name: str, folder: Path = SITE_DIR) -> SiteConfig:
    """Read and validate slurm_templates/<name>.yaml (or a site file given by its path)."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else folder / f"{name}.yaml"
    if not path.is_file():
        found = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        raise UserError(f"unknown site {name!r} (no {path}); valid choices: {', '.join(found) or 'none found'}")
    try:
        return SiteConfig.model_validate(read_yaml(path))
    except ValidationError as err:
        raise UserError(one_line(err, str(path), SiteConfig)) from None


def _run(command: list[str], timeout: float = 20) -> str | None:
    """stdout of a SLURM command, or None when it is missing or fails."""
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def cluster_answers() -> bool:
    """True when a SLURM controller answers here."""
    out = _run(["scontrol", "ping"], timeout=10)
    return out is not None and "UP" in out


def max_array_size() -> int:
    """The cluster's MaxArraySize (array indices must stay below it)."""
    out = _run(["scontrol", "show", "config"]) or ""
    for line in out.splitlines():
        if line.split("=")[0].strip() == "MaxArraySize":
            return int(line.split("=", 1)[1])
    return 1001  # SLURM's default


def cluster_partitions() -> list[str]:
    out = _run(["sinfo", "-h", "-o", "%P"]) or ""
    return sorted({line.strip().rstrip("*") for line in out.splitlines() if line.strip()})


def live_jobs() -> dict[str, str] | None:
    """State of every job of this user that SLURM still knows ('123_4' for array tasks); None without squeue."""
    out = _run(["squeue", "-h", "-r", "--me", "-o", "%i %T"])
    if out is None:
        return None
    jobs = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            jobs[parts[0]] = parts[1]
    return jobs


def job_outcomes(job_ids: list[str]) -> dict[str, str]:
    """Final states from accounting (TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, CANCELLED, ...); empty without sacct."""
    if not job_ids:
        return {}
    out = _run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(sorted({j.split("_")[0] for j in job_ids}))])
    outcomes = {}
    for line in (out or "").splitlines():
        if "|" in line:
            job, state = line.split("|", 1)
            outcomes[job] = state.split()[0]
    return outcomes


def slurm_parameters(dispatch: DispatchConfig) -> dict:
    """submitit parameters for the dispatch settings; every mistake is a UserError, before anything is submitted."""
    site = load_site(dispatch.site)
    partition = dispatch.partition or site.default_partition
    if partition not in site.partitions:
        raise UserError(f"unknown partition {partition!r} for site {dispatch.site!r}; valid choices: {', '.join(site.partitions)}")
    existing = cluster_partitions()
    if existing and partition not in existing:
        raise UserError(
            f"partition {partition!r} is in site {dispatch.site!r} but not on this cluster; the cluster has: {', '.join(existing)}"
        )
    limit = max_array_size() - 1
    if dispatch.max_array is not None and dispatch.max_array > limit:
        raise UserError(f"dispatch.max_array = {dispatch.max_array} exceeds the cluster's MaxArraySize - 1; valid choices: 1..{limit}")
    settings = site.partitions[partition]
    gpus = settings.gpus if dispatch.gpus is None else dispatch.gpus
    parameters = {
        "partition": partition,
        "time": slurm_minutes(dispatch.time or settings.time),
        "cpus_per_task": dispatch.cpus_per_task or settings.cpus_per_task,
        "mem": f"{int((dispatch.mem_gb or settings.mem_gb) * 1024)}M",
        "array_parallelism": dispatch.array_parallelism or site.array_parallelism,
        "signal_delay_s": site.signal_delay_s,
        "setup": ["export HDF5_USE_FILE_LOCKING=BEST_EFFORT", *site.setup],
        "job_name": "hpcsweep",
        "additional_parameters": _sbatch_options(site.extra_sbatch),
        "max_array": dispatch.max_array or limit,
        "max_requeue": site.max_requeue,
    }
    if gpus and site.gpu_request == "gres":
        parameters["gres"] = f"gpu:{gpus}"
    elif gpus:
        parameters["gpus_per_node"] = gpus
    for key in ("account", "qos", "constraint"):
        if getattr(site, key):
            parameters[key] = getattr(site, key)
    return parameters


def submit_arrays(function: Callable[..., Any], columns: list[list], dispatch: DispatchConfig, log_dir: Path) -> list[Job[Any]]:
    """Submit one array task per argument (columns as map_array takes them), in arrays no larger than the cluster allows."""
    import submitit

    parameters = slurm_parameters(dispatch)
    size, requeues = parameters.pop("max_array"), parameters.pop("max_requeue")
    executor = submitit.SlurmExecutor(folder=log_dir, max_num_timeout=requeues)
    executor.update_parameters(**parameters)
    return [job for part in array_slices(len(columns[0]), size) for job in executor.map_array(function, *(c[part] for c in columns))]


def array_slices(n_tasks: int, size: int) -> list[slice]:
    """`n_tasks` array tasks cut into job arrays of at most `size` tasks, in order."""
    return [slice(start, min(start + size, n_tasks)) for start in range(0, n_tasks, size)]


def _sbatch_options(lines: list[str]) -> dict[str, str | bool]:
    """'--key=value' / '--flag' lines as submitit's additional_parameters."""
    options: dict[str, str | bool] = {}
    for line in lines:
        key, sep, value = line[2:].partition("=")
        options[key.replace("-", "_")] = value if sep else True
    return options

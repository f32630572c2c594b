"""Typed configuration of trials and sweeps: loaded from YAML, validated in one place.

A *trial* is fully described by a `TrialConfig` (data, model, training); its
identity is a hash of that resolved config, so the same point of a grid gets
the same id on every run and finished trials are never redone. A *sweep* is a
base trial plus a grid of values for some of its keys, plus how to dispatch.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from hpcsweep.data.generate import PROCESSES
from hpcsweep.data.normalize import NORMALISATIONS
from hpcsweep.data.varset import varset_names
from hpcsweep.errors import UserError, closest

#: Short names a physicist types for the usual grid axes.
GRID_ALIASES = {
    "bs": "train.batch_size",
    "lr": "train.lr",
    "wd": "train.weight_decay",
    "z": "model.latent",
    "latent": "model.latent",
    "epochs": "train.epochs",
    "seed": "train.seed",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    """Where the jets come from and how they become normalised tensors."""

    source: str = Field("generated", description="'generated' (Pythia 8 + FastJet) or a ROOT file path")
    process: Literal[PROCESSES] = "qcd"  # type: ignore[valid-type]
    zprime_mass: PositiveFloat = 350.0
    events: PositiveInt = 10000
    generator_seed: int = Field(1, ge=0)
    varset: str = "generated"
    tree: str | None = None
    leading_only: bool = False
    max_jets: PositiveInt | None = None
    val_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0
    normalisation: Literal[NORMALISATIONS] = "custom+standard"  # type: ignore[valid-type]

    @field_validator("varset")
    @classmethod
    def _known_varset(cls, value: str) -> str:
        names = varset_names()
        if value not in names:
            raise ValueError(f"unknown variable set {value!r}; valid choices: {', '.join(names)}")
        return value


class ModelConfig(_Section):
    """An MLP autoencoder, hidden widths mirrored around the latent layer: plain, sparse or variational."""

    kind: Literal["ae", "sparse", "vae"] = "ae"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [200, 200, 200], min_length=1)
    latent: PositiveInt = 18
    activation: Literal["tanh", "leaky_relu", "relu"] = "leaky_relu"
    batchnorm: bool = True
    dropout: float = Field(0.0, ge=0, lt=1)
    sparsity: Literal["l1", "kl"] = Field("l1", description="sparse AE: L1 on hidden activations, or KL to a target rate")
    sparsity_lambda: NonNegativeFloat = Field(1e-3, description="sparse AE: weight of the sparsity penalty")
    sparsity_rho: float = Field(0.05, gt=0, lt=1, description="sparse AE, KL: target mean activation")
    beta: NonNegativeFloat | None = Field(None, description="VAE: weight of the KL term (required)")

    @model_validator(mode="after")
    def _vae_needs_beta(self) -> ModelConfig:
        if self.kind == "vae" and self.beta is None:
            raise ValueError("a VAE needs its KL weight: set model.beta (e.g. 1.0e-3)")
        return self


class TrainConfig(_Section):
    """AdamW with a learning-rate schedule; best-validation weights are kept."""

    epochs: PositiveInt = 100
    batch_size: PositiveInt = 1024
    lr: PositiveFloat = Field(3e-3, description="the 1cycle maximum, or the constant rate")
    weight_decay: NonNegativeFloat = 0.0
    schedule: Literal["onecycle", "constant", "piecewise"] = "onecycle"
    piecewise: list[tuple[PositiveInt | None, PositiveFloat]] = Field(
        default_factory=lambda: [(10, 1e-7), (10, 1e-4), (None, 1e-6)],
        description="[epochs, lr] segments; the last may have epochs null (until the end)",
    )
    patience: PositiveInt | None = Field(None, description="stop after this many epochs without a better val loss")
    seed: int = 0

    @field_validator("piecewise")
    @classmethod
    def _open_end_last(cls, segments: list[tuple[int | None, float]]) -> list[tuple[int | None, float]]:
        if not segments:
            raise ValueError("give at least one [epochs, lr] segment")
        if any(epochs is None for epochs, _ in segments[:-1]):
            raise ValueError("only the last segment may run until the end (epochs null)")
        return segments


class EvaluationConfig(_Section):
    """What a finished trial is evaluated on besides its validation split (not part of its identity)."""

    signals: list[PositiveFloat] = Field(default_factory=lambda: [350.0, 600.0], description="Z' masses (GeV) for the dijet check")
    signal_events: PositiveInt = 2000
    timing_repeats: PositiveInt = 20


class TrialConfig(_Section):
    """Everything that determines a trial's result, and nothing else."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def identity(self) -> str:
        """Stable short id: the hash of the canonical JSON of the resolved config."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class TrialSpec(_Section):
    """A trial as dispatched: its config plus where its data is and where its result goes."""

    trial_id: str
    sweep: str
    config: TrialConfig
    dataset: str = Field(description="folder of the cached, cleaned jet table")
    results_dir: str
    provenance: dict[str, Any] = Field(default_factory=dict)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    signals: dict[str, str] = Field(default_factory=dict, description="label -> cached signal sample (e.g. zprime350)")
    checkpoint_every: PositiveInt = 10


class DispatchConfig(_Section):
    """How trials are run; not part of a trial's identity."""

    executor: Literal["local", "debug", "slurm"] = "local"
    workers: PositiveInt | None = Field(None, description="local: trials at once (default: cores // threads)")
    threads_per_trial: PositiveInt = 1
    timeout_min: PositiveInt = Field(24 * 60, description="local: time limit of a job")
    checkpoint_every: PositiveInt = Field(10, description="epochs between checkpoints (also written on SIGTERM/SIGUSR1/SIGUSR2)")
    site: str = Field("local", description="slurm: slurm_templates/<site>.yaml")
    partition: str | None = Field(None, description="slurm: a partition of the site (default: the site's default)")
    time: str | None = Field(None, description="slurm: time limit per array task, e.g. 02:00:00 (default: the partition's)")
    cpus_per_task: PositiveInt | None = None
    mem_gb: PositiveFloat | None = None
    gpus: int | None = Field(None, ge=0)
    pack: PositiveInt = Field(1, description="slurm: trials run one after another in each array task")
    array_parallelism: PositiveInt | None = Field(None, description="slurm: array tasks running at once (default: the site's)")
    max_array: PositiveInt | None = Field(None, description="slurm: array tasks per job array (default: the cluster's MaxArraySize - 1)")

    @field_validator("time")
    @classmethod
    def _slurm_time(cls, value: str | None) -> str | None:
        if value is not None:
            slurm_minutes(value)
        return value


_SLURM_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")


def slurm_minutes(value: str) -> int:
    """Minutes (rounded up) of a SLURM time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS."""
    match = _SLURM_TIME.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a SLURM time; valid forms: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS")
    days, a, b, c = (int(g) if g is not None else None for g in match.group("d", "a", "b", "c"))
    if days is None:
        seconds = a * 60 + (b or 0) if c is None else a * 3600 + b * 60 + c
    else:
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    return max(1, -(-seconds // 60))


class PartitionSettings(_Section):
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


class SiteConfig(_Section):
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
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({getattr(err, 'problem', err)})") from None
    try:
        return SiteConfig.model_validate(raw)
    except ValidationError as err:
        raise UserError(_one_line(err, str(path), SiteConfig)) from None


class Range(_Section):
    """A range to sample for a random or TPE search (integers when the key is an integer)."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


#: Data keys that change which jets are read: a search may not vary them (the data are prepared once).
_DATASET_KEYS = {
    "data.source",
    "data.process",
    "data.zprime_mass",
    "data.events",
    "data.generator_seed",
    "data.varset",
    "data.tree",
    "data.leading_only",
}


class SweepConfig(_Section):
    """A base trial and a grid over some of its keys, or a search space for Optuna."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    points: list[dict[str, Any]] = Field(
        default_factory=list, description="listed points (key -> value), each crossed with the grid; rerun-best writes these"
    )
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    search: Literal["grid", "random", "tpe"] = "grid"
    budget: PositiveInt | None = Field(None, description="random/tpe: trials to finish (done or pruned)")
    space: dict[str, Any] = Field(default_factory=dict, description="random/tpe: key -> list of choices or {low, high, log, step}")
    pruner: Literal["none", "median", "hyperband"] = "none"
    search_seed: int = 0

    @field_validator("space")
    @classmethod
    def _known_space(cls, space: dict[str, Any]) -> dict[str, list[Any] | Range]:
        resolved: dict[str, list[Any] | Range] = {}
        for key, values in space.items():
            path = grid_path(key)
            if path in _DATASET_KEYS:
                raise ValueError(f"a search cannot vary {path} (the data are prepared once); use a grid, or one sweep per dataset")
            if isinstance(values, list) and values:
                resolved[path] = values
            elif isinstance(values, dict):
                try:
                    resolved[path] = Range.model_validate(values)
                except ValidationError as err:
                    raise ValueError(f"{key!r}: {_one_line(err, 'range', Range).removeprefix('range: ')}") from None
            else:
                raise ValueError(f"{key!r} takes a non-empty list of choices or a range {{low, high, log, step}} (got {values!r})")
        return resolved

    @model_validator(mode="after")
    def _grid_or_search(self) -> SweepConfig:
        if self.search == "grid" and self.space:
            raise ValueError("space: is for search: random or tpe; a grid search takes grid:")
        if self.search != "grid" and self.points:
            raise ValueError(f"points: is for grid sweeps; search: {self.search} samples space:")
        if self.search != "grid" and (self.grid or not self.space or self.budget is None):
            raise ValueError(f"search: {self.search} takes space: (key -> choices or range) and budget:, not grid:")
        return self

    @field_validator("grid")
    @classmethod
    def _known_axes(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        resolved: dict[str, list[Any]] = {}
        for key, values in grid.items():
            path = grid_path(key)
            if not values:
                raise ValueError(f"axis {key!r} has no values; give at least one")
            if path in resolved:
                raise ValueError(f"axis {key!r} repeats {path!r}")
            resolved[path] = values
        return resolved

    @field_validator("points")
    @classmethod
    def _known_point_keys(cls, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{grid_path(key): value for key, value in point.items()} for point in points]

    def base_trial(self) -> dict[str, Any]:
        """The trial every grid point starts from, as a plain dict."""
        return {"data": self.data.model_dump(), "model": self.model.model_dump(), "train": self.train.model_dump()}

    def with_overrides(
        self,
        latent: list[int] | None = None,
        epochs: int | None = None,
        sets: dict[str, Any] | None = None,
        dispatch: dict[str, Any] | None = None,
    ) -> SweepConfig:
        """A copy with command-line overrides: `latent` replaces the z axis, others fix a key."""
        raw = self.model_dump()
        raw["dispatch"].update(dispatch or {})
        fixed = dict(sets or {})
        if epochs is not None:
            fixed["train.epochs"] = epochs
        for key, value in fixed.items():
            try:
                path = grid_path(key)
            except ValueError as err:
                raise UserError(f"--set {key}: {err}") from None
            raw["grid"].pop(path, None)
            for point in raw["points"]:
                point.pop(path, None)
            _set_path(raw, path, value)
        if latent:
            raw["grid"]["model.latent"] = list(latent)
        return validate_sweep(raw, source="command-line overrides")


def grid_valid_keys() -> list[str]:
    """Every key a grid axis (or `--set`) may name: aliases and dotted paths."""
    paths = [f"{section}.{name}" for section, model in _SECTIONS.items() for name in model.model_fields]
    return sorted(GRID_ALIASES) + paths


def grid_path(key: str) -> str:
    """Resolve an alias or a dotted path to the dotted path of a trial field."""
    path = GRID_ALIASES.get(key, key)
    section, _, name = path.partition(".")
    if section not in _SECTIONS or name not in _SECTIONS[section].model_fields:
        hint = closest(key, grid_valid_keys())
        raise ValueError(
            f"unknown axis {key!r}"
            + (f" (did you mean {', '.join(hint)}?)" if hint else "")
            + f"; valid choices: {', '.join(grid_valid_keys())}"
        )
    return path


_SECTIONS: dict[str, type[BaseModel]] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def dotted(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{'train': {'lr': x}, 'model': {...}} -> {'train.lr': x, ...}: the keys grids, points and --set name."""
    return {f"{section}.{key}": value for section, values in sections.items() for key, value in values.items()}


def _set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    section, name = path.split(".", 1)
    tree.setdefault(section, {})[name] = value


def trial_from_point(base: dict[str, Any], point: dict[str, Any], source: str) -> TrialConfig:
    """Validate one grid point (base config with the point's values set)."""
    raw = json.loads(json.dumps(base))
    for path, value in point.items():
        _set_path(raw, path, value)
    try:
        return TrialConfig.model_validate(raw)
    except ValidationError as err:
        raise UserError(_one_line(err, source, TrialConfig, prefix="grid point ")) from None


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and validate a sweep file; any mistake becomes one `UserError` line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such sweep file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of keys (name, data, model, train, grid, dispatch)")
    raw.setdefault("name", path.stem)
    return validate_sweep(raw, source=str(path))


def validate_sweep(raw: dict[str, Any], source: str) -> SweepConfig:
    """Validate a sweep given as a dict; `source` names it in error messages."""
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as err:
        raise UserError(_one_line(err, source, SweepConfig)) from None


def _one_line(err: ValidationError, source: str, root: type[BaseModel], prefix: str = "") -> str:
    """The first pydantic error as `file: key: problem; valid choices: ...`."""
    errors = err.errors()
    first = errors[0]
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc)
    if first["type"] == "extra_forbidden":
        valid = sorted(_model_at(root, loc[:-1]).model_fields)
        hint = closest(loc[-1], valid)
        message = (
            f"unknown key {loc[-1]!r}"
            + (f" in {'.'.join(loc[:-1])}" if len(loc) > 1 else "")
            + (f" (did you mean {', '.join(hint)}?)" if hint else "")
            + f"; valid keys: {', '.join(valid)}"
        )
    else:
        text = first["msg"].removeprefix("Value error, ")
        message = f"{prefix}{key}: {text}" if key else text
        if "input" in first and first["type"] not in ("missing",) and not isinstance(first["input"], dict):
            message += f" (got {first['input']!r})"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{source}: {message}{more}"


def _model_at(root: type[BaseModel], loc: list[str]) -> type[BaseModel]:
    model = root
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return model

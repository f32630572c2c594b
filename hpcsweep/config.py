"""Typed configuration of trials and sweeps: loaded from YAML, validated in one place.

A *trial* is fully described by a `TrialConfig` (data, model, training); its
identity is a hash of that resolved config, so the same point of a grid gets
the same id on every run and finished trials are never redone. A *sweep* is a
base trial plus a grid of values for some of its keys, plus how to dispatch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from hpcsweep.data.varset import resolve_varset
from hpcsweep.errors import UserError, closest, one_line, read_yaml
from hpcsweep.executors import check_option, known
from hpcsweep.paths import locate

#: The choices of the typed keys; the data stage reads its lists from here (typing.get_args).
Process = Literal["qcd", "zprime"]
Normalisation = Literal["standard", "minmax", "custom", "custom+standard", "custom+minmax"]
Reference = Literal["auto", "custom", "standard", "custom+standard"]
SearchKind = Literal["grid", "random", "tpe"]
RankBy = Literal["reference_mse", "val_loss", "residual_width", "bytes", "auc"]
Compile = Literal["auto", "always", "never"]

#: Short names a physicist types for the usual grid axes.
GRID_ALIASES = {
    "bs": "train.batch_size",
    "lr": "train.lr",
    "wd": "train.weight_decay",
    "z": "model.latent",
    "latent": "model.latent",
    "epochs": "train.epochs",
    "seed": "train.seed",
    "rate_lambda": "train.rate_lambda",
}


class Section(BaseModel):
    """A part of a configuration: unknown keys are refused, and values do not change once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: Keys that describe a generated sample; a file source has none of them.
GENERATOR_KEYS = ("process", "zprime_mass", "events", "generator_seed")
#: The most events one sample is generated with (about a day on 2 cores, at some 65 events/s per core with active areas).
MAX_EVENTS = 10_000_000
EVENTS_PER_CORE_S = 65
#: The data keys that decide which jets are read (the others split or normalise them).
DATASET_KEYS = ("source", *GENERATOR_KEYS, "varset", "tree", "leading_only")


def _base(info: ValidationInfo) -> Path | None:
    """The folder relative paths are looked up in first (the sweep file's), if validation was given one."""
    return (info.context or {}).get("base")


class DataConfig(Section):
    """Where the jets come from and how they become normalised tensors."""

    source: str | list[str] = Field(
        "generated", description="'generated' (Pythia 8 + FastJet), or ROOT/Parquet files: a path, a glob, or a list of them"
    )
    process: Process | None = "qcd"
    zprime_mass: PositiveFloat | None = 350.0
    events: PositiveInt | None = 10000
    generator_seed: int | None = Field(1, ge=0)
    varset: str | dict[str, Any] = Field("generated", description="a built-in set's name, a YAML file's path, or an inline mapping")
    tree: str | None = None
    leading_only: bool = False
    max_jets: PositiveInt | None = None
    val_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0
    normalisation: Normalisation = "custom+standard"

    @model_validator(mode="before")
    @classmethod
    def _no_generator_keys_for_files(cls, raw: Any) -> Any:
        """A file source has no generator settings: they are set to None (and left out of the stored config)."""
        if isinstance(raw, dict) and raw.get("source", "generated") != "generated":
            raw = {**raw, **dict.fromkeys(GENERATOR_KEYS)}
        return raw

    @model_validator(mode="after")
    def _generated_data_has_its_settings(self) -> DataConfig:
        """A generated sample is named by all four generator keys: none may be null."""
        missing = [key for key in GENERATOR_KEYS if self.generated and getattr(self, key) is None]
        if missing:
            default = type(self).model_fields[missing[0]].default
            raise ValueError(f"{missing[0]} is null, but generated data need it (remove the key for the default, {default!r})")
        return self

    @field_validator("events")
    @classmethod
    def _a_day_at_most(cls, value: int | None) -> int | None:
        """Years of generation are refused before they start, with what they would take."""
        if value is not None and value > MAX_EVENTS:
            days = value / (2 * EVENTS_PER_CORE_S) / 86_400
            raise ValueError(
                f"{value:,} events would take about {days:,.0f} days to generate on 2 cores; at most {MAX_EVENTS:,} are generated "
                "as one sample: use several generator_seed values (a grid axis), or files of your own"
            )
        return value

    @field_validator("source")
    @classmethod
    def _located_files(cls, value: str | list[str], info: ValidationInfo) -> str | list[str]:
        if value == "generated":
            return value
        if isinstance(value, list):
            if not value:
                raise ValueError("give at least one file (a path or a glob)")
            return [locate(item, _base(info)) for item in value]
        return locate(value, _base(info))

    @field_validator("varset", mode="before")
    @classmethod
    def _resolved_varset(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str | dict):
            return value
        try:
            return resolve_varset(value, _base(info))
        except UserError as err:
            raise ValueError(str(err)) from None

    @model_serializer(mode="wrap")
    def _without_unused_generator_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped = handler(self)
        if self.source != "generated":
            for key in GENERATOR_KEYS:
                dumped.pop(key, None)
        return dumped

    @property
    def generated(self) -> bool:
        return self.source == "generated"


class ModelConfig(Section):
    """An MLP autoencoder, hidden widths mirrored around the latent layer: plain, sparse or variational; or no autoencoder
    at all (`codec`: the learned compressor alone, z = 0)."""

    kind: Literal["ae", "sparse", "vae", "codec"] = "ae"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [200, 200, 200], min_length=1)
    latent: NonNegativeInt = Field(18, description="the latent dimension z (0: kind codec, which has no latents)")
    activation: Literal["tanh", "leaky_relu", "relu"] = "leaky_relu"
    batchnorm: bool = True
    dropout: float = Field(0.0, ge=0, lt=1)
    sparsity: Literal["l1", "kl"] = Field("l1", description="sparse AE: L1 on hidden activations, or KL to a target rate")
    sparsity_lambda: NonNegativeFloat = Field(1e-3, description="sparse AE: weight of the sparsity penalty")
    sparsity_rho: float = Field(0.05, gt=0, lt=1, description="sparse AE, KL: target mean activation")
    beta: NonNegativeFloat | None = Field(None, description="VAE: weight of the KL term (required)")

    @model_validator(mode="before")
    @classmethod
    def _codec_has_no_latents(cls, raw: Any) -> Any:
        """The compressor alone has no autoencoder: z = 0 and no network keys, whatever the grid crosses it with."""
        if isinstance(raw, dict) and raw.get("kind") == "codec":
            return {"kind": "codec", "latent": 0}
        return raw

    @model_validator(mode="after")
    def _vae_needs_beta(self) -> ModelConfig:
        if self.kind == "vae" and self.beta is None:
            raise ValueError("a VAE needs its KL weight: set model.beta (e.g. 1.0e-3)")
        if self.kind != "codec" and self.latent == 0:
            raise ValueError("an autoencoder needs model.latent >= 1 (z = 0 is model.kind: codec, the compressor alone)")
        return self

    @model_serializer(mode="wrap")
    def _codec_keys_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {"kind": "codec", "latent": 0} if self.kind == "codec" else handler(self)

    @property
    def autoencoder(self) -> bool:
        """Whether a network is trained (every kind but `codec`)."""
        return self.kind != "codec"


class TrainConfig(Section):
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
    rate_lambda: NonNegativeFloat = Field(
        0.0,
        description="weight of the latents' bits (a learned entropy model of the quantised latents) added to the loss: "
        "0 trains for reconstruction alone, as before; larger values train cheaper latents (docs/compression.md)",
    )

    @model_serializer(mode="wrap")
    def _no_rate_unless_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without a rate term the stored config (and so the identity) is the one trials had before it existed."""
        dumped = handler(self)
        if not self.rate_lambda:
            dumped.pop("rate_lambda", None)
        return dumped

    @field_validator("piecewise")
    @classmethod
    def _open_end_last(cls, segments: list[tuple[int | None, float]]) -> list[tuple[int | None, float]]:
        if not segments:
            raise ValueError("give at least one [epochs, lr] segment")
        if any(epochs is None for epochs, _ in segments[:-1]):
            raise ValueError("only the last segment may run until the end (epochs null)")
        return segments


#: Every bound on a value's error lies in (0, MAX_BOUND): relative for scale variables (0.5 is 50 %), absolute for angles
#: and signed ones.
MAX_BOUND = 0.5


def is_bound(value: float) -> bool:
    """Whether `value` may bound the compressor's error (sweep files and the command line both ask)."""
    return 0 < value < MAX_BOUND


class CodecConfig(Section):
    """The learned error-bounded compressor every trial fits and ships (hpcsweep.codec): one small MLP per variable
    predicting its bin from the variables decoded before it (and, for an autoencoder, from what its quantised latents
    decode to), the residual bins range-coded per scale class."""

    bounds: list[float] = Field(
        default_factory=lambda: [0.01],
        min_length=1,
        description="the bounds the compressor is fitted at (relative for scale variables, absolute for angles and signed "
        "ones); evaluation.max_error, where trials are ranked, must be one of them",
    )
    hidden: list[PositiveInt] = Field(
        default_factory=lambda: [16, 16], min_length=1, description="widths of each predictor's hidden layers"
    )
    classes: int = Field(12, ge=1, le=64, description="scale classes per predicted variable")
    steps: PositiveInt = Field(600, description="training steps of each predictor (batches of up to 4,096 jets)")
    training_jets: PositiveInt | None = Field(
        None, description="training jets the compressor is fitted on (default: the whole training split)"
    )
    latent_step: PositiveFloat = Field(1.0, description="autoencoders: the grid step latents are quantised on, in latent units")

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, bounds: list[float]) -> list[float]:
        for bound in bounds:
            if not is_bound(bound):
                raise ValueError(f"a bound must lie between 0 and {MAX_BOUND:g} (got {bound!r}: 0.01 is 1 %)")
        return sorted(set(bounds), reverse=True)


class EvaluationConfig(Section):
    """How finished trials are evaluated and compared (not part of a trial's identity)."""

    signals: list[PositiveFloat | str] | None = Field(
        None, description="Z' masses (GeV, generated data) or signal files; default: Z' 350 and 600 GeV for generated data, none for files"
    )
    signal_events: PositiveInt = 2000
    timing_repeats: PositiveInt = 20
    reference: Reference = Field(
        "auto",
        description="the space every trial's MSE is also measured in; auto: custom+standard if the set has transforms, else standard",
    )
    tolerance: PositiveFloat | dict[str, PositiveFloat] | None = Field(
        None, description="residual tolerance (relative for relative residuals, in units otherwise): a fraction of jets within it"
    )
    max_error: float = Field(
        0.01,
        gt=0,
        lt=MAX_BOUND,
        description="the bound trials are compared at (relative for scale variables, absolute for angles and signed ones): "
        "each trial's compressor at it (one of codec.bounds) and the peers (SZ3, ZFP, ...); rank_by: bytes ranks on its bytes per jet",
    )

    @field_validator("signals")
    @classmethod
    def _located_signal_files(cls, value: list[float | str] | None, info: ValidationInfo) -> list[float | str] | None:
        return None if value is None else [locate(v, _base(info)) if isinstance(v, str) else v for v in value]

    def tolerances(self, names: list[str]) -> dict[str, float]:
        """Variable -> tolerance (one number applies to every variable)."""
        if self.tolerance is None:
            return {}
        return dict(self.tolerance) if isinstance(self.tolerance, dict) else dict.fromkeys(names, self.tolerance)

    def signal_labels(self, data: DataConfig) -> dict[str, float | str]:
        """Label -> signal (a Z' mass, or a file) a trial of `data` is evaluated on; Z' masses need generated data."""
        signals = ([350.0, 600.0] if data.generated else []) if self.signals is None else self.signals
        masses = [s for s in signals if not isinstance(s, str)]
        if masses and not data.generated:
            raise UserError(
                f"evaluation.signals: {masses[0]:g} is a Z' mass, which is generated for data.source: generated only; "
                "for file data give signal files (paths)"
            )
        return {Path(s).stem if isinstance(s, str) else f"zprime{s:g}": s for s in signals}

    def signal_data(self, data: DataConfig) -> dict[str, DataConfig]:
        """Label -> the data config of each signal: a file of the user's read like `data`, or a generated Z' sample."""
        return {
            label: data.model_copy(
                update={"source": signal}
                if isinstance(signal, str)
                else {"process": "zprime", "zprime_mass": signal, "events": self.signal_events}
            )
            for label, signal in self.signal_labels(data).items()
        }


class ReviewConfig(Section):
    """How the review draws a sweep's figures (not part of a trial's identity, nor of what its results folder compares)."""

    label: str | None = Field(
        None,
        description="the experiment-style label over every figure, e.g. 'ATLAS Simulation Internal'; default: 'Simulation' "
        "(and sqrt(s) = 13 TeV) for generated data, none for files; '' for none",
    )
    pdf: bool = Field(
        False,
        description="also write every figure as PDF (for papers) beside its PNG; 'hpcsweep aggregate --pdf' does it once. "
        "Off by default: the PDFs take two thirds of the PNGs' time again",
    )


class TrialConfig(Section):
    """Everything that determines a trial's result, and nothing else.

    `data_version` is the checksum of the jets as read (after cuts), set once the data are
    prepared: a file replaced by another makes new trials, and a file regenerated or moved
    with the same content does not.
    """

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    codec: CodecConfig = Field(default_factory=CodecConfig)
    data_version: str = Field("", description="checksum of the jets as read (sha256 of the arrays after cuts)")

    @model_serializer(mode="wrap")
    def _no_training_without_a_network(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The compressor alone trains no network: of the training keys only the seed (its fitting's) remains."""
        dumped = handler(self)
        if not self.model.autoencoder:
            dumped["train"] = {"seed": self.train.seed}
        return dumped

    def identity(self) -> str:
        """Stable short id: the hash of the canonical JSON of the resolved config.

        Once the data are known by content, where they lie (data.source) no longer counts. A
        compressor fitted with the default settings leaves the id as it was before trials fitted one.
        """
        dumped = self.model_dump(mode="json")
        if self.data_version:
            dumped["data"].pop("source")
        else:
            dumped.pop("data_version")
        if dumped["codec"] == CodecConfig().model_dump(mode="json"):
            dumped.pop("codec")
        canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def with_data_version(self, version: str) -> TrialConfig:
        return self.model_copy(update={"data_version": version})


class TrialSpec(Section):
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
    compile: Compile = "auto"


class DispatchConfig(Section):
    """How trials are run; not part of a trial's identity."""

    executor: str = Field("local", description="where trials run: a registered backend (local, debug, slurm)")
    workers: PositiveInt | None = Field(
        None,
        description="local: trials at once; a search: its workers (none set: cores // threads_per_trial; slurm: one per trial "
        "left, at most 8; slurm runs a grid's trials as array tasks of dispatch.pack)",
    )
    threads_per_trial: PositiveInt = Field(1, description="torch threads per trial")
    timeout_min: PositiveInt = Field(24 * 60, description="local: time limit of a job")
    checkpoint_every: PositiveInt = Field(10, description="epochs between checkpoints (also written on SIGTERM/SIGUSR1/SIGUSR2)")
    compile: Compile = Field(
        "auto",
        description="torch.compile the training step: auto on a GPU when the trial is long enough to repay the compile (docs/benchmarks.md)",
    )
    site: str = Field("local", description="slurm: slurm_templates/<site>.yaml")
    partition: str | None = Field(None, description="slurm: a partition of the site (none set: the site's default)")
    time: str | None = Field(None, description="slurm: time limit per array task, e.g. 02:00:00 (none set: the partition's)")
    cpus_per_task: PositiveInt | None = None
    mem_gb: PositiveFloat | None = None
    gpus: int | None = Field(None, ge=0)
    pack: PositiveInt = Field(1, description="slurm: trials run one after another in each array task")
    array_parallelism: PositiveInt | None = Field(None, description="slurm: array tasks running at once (default: the site's)")
    max_array: PositiveInt | None = Field(None, description="slurm: array tasks per job array (default: the cluster's MaxArraySize - 1)")

    @field_validator("executor")
    @classmethod
    def _registered(cls, value: str) -> str:
        return known(value)

    @field_validator("*")
    @classmethod
    def _checked_by_the_executors(cls, value: Any, info: ValidationInfo) -> Any:
        """A key an executor reads is checked by that executor (slurm: its time limits), which the registry knows."""
        return check_option(info.field_name or "", value)


class Range(Section):
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


class SweepConfig(Section):
    """A base trial and a grid over some of its keys, or a search space for Optuna."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    codec: CodecConfig = Field(default_factory=CodecConfig)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    points: list[dict[str, Any]] = Field(
        default_factory=list, description="listed points (key -> value), each crossed with the grid; rerun-best writes these"
    )
    dispatch: DispatchConfig = Field(default_factory=DispatchConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    search: SearchKind = "grid"
    budget: PositiveInt | None = Field(None, description="random/tpe: trials to finish (done or pruned)")
    space: dict[str, Any] = Field(default_factory=dict, description="random/tpe: key -> list of choices or {low, high, log, step}")
    pruner: Literal["none", "median", "hyperband"] = "none"
    search_seed: int = 0
    rank_by: RankBy = Field(
        "reference_mse",
        description="what ranks trials: the MSE in the reference space, the training loss (in each trial's own normalisation), "
        "the mean residual 68 % half-width of rank_variables, the bytes per jet `hpcsweep compress` writes with the trial's "
        "compressor (every value within evaluation.max_error, model bytes amortised over 1M jets), or 1 - the mean ROC AUC "
        "of the reconstruction error over the signals",
    )
    rank_variables: list[str] | None = Field(None, description="residual_width: the variables averaged (default: every continuous one)")
    max_attempts: PositiveInt = Field(
        3,
        description="attempts that failed of the trial's own doing (an error, out of memory, its time limit exhausted) before it is "
        "given up; kills, lost jobs and full disks do not count; --retry-failed starts afresh",
    )
    max_trials: PositiveInt | None = Field(10_000, description="a larger grid is refused before any work is done (--allow-large lifts it)")

    @model_validator(mode="before")
    @classmethod
    def _generator_keys_need_generated_data(cls, raw: Any) -> Any:
        data = raw.get("data") if isinstance(raw, dict) else None
        if isinstance(data, dict) and data.get("source", "generated") != "generated":
            given = [key for key in GENERATOR_KEYS if data.get(key) is not None]
            if given:
                hint = "; data.max_jets limits the jets read" if given[0] == "events" else ""
                raise ValueError(f"data.{given[0]} describes generated samples, but data.source is a file: remove it{hint}")
        return raw

    @field_validator("space")
    @classmethod
    def _known_space(cls, space: dict[str, Any]) -> dict[str, list[Any] | Range]:
        resolved: dict[str, list[Any] | Range] = {}
        for key, values in space.items():
            path = grid_path(key)
            if path in {f"data.{key}" for key in DATASET_KEYS}:
                raise ValueError(f"a search cannot vary {path} (the data are prepared once); use a grid, or one sweep per dataset")
            if isinstance(values, list) and values:
                resolved[path] = values
            elif isinstance(values, dict):
                try:
                    resolved[path] = Range.model_validate(values)
                except ValidationError as err:
                    raise ValueError(f"{key!r}: {one_line(err, 'range', Range).removeprefix('range: ')}") from None
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
    def _known_axes(cls, grid: dict[str, list[Any]], info: ValidationInfo) -> dict[str, list[Any]]:
        resolved: dict[str, list[Any]] = {}
        for key, values in grid.items():
            path = grid_path(key)
            if not values:
                raise ValueError(f"axis {key!r} has no values; give at least one")
            if path in resolved:
                raise ValueError(f"axis {key!r} repeats {path!r}")
            resolved[path] = [_located_value(path, value, _base(info)) for value in values]
        return resolved

    @field_validator("points")
    @classmethod
    def _known_point_keys(cls, points: list[dict[str, Any]], info: ValidationInfo) -> list[dict[str, Any]]:
        return [{grid_path(key): _located_value(grid_path(key), value, _base(info)) for key, value in point.items()} for point in points]

    def base_trial(self) -> dict[str, Any]:
        """The trial every grid point starts from, as a plain dict."""
        return {
            "data": self.data.model_dump(),
            "model": self.model.model_dump(),
            "train": self.train.model_dump(),
            "codec": self.codec.model_dump(),
        }

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
            if path == "data.source" and value != "generated":
                for key in GENERATOR_KEYS:
                    raw["data"].pop(key, None)
            _set_path(raw, path, value)
        if latent:
            raw["grid"]["model.latent"] = list(latent)
        return validate_sweep(raw, source="command-line overrides", base=Path.cwd())


def _located_value(path: str, value: Any, base: Path | None) -> Any:
    """Grid and point values of data.source and data.varset are resolved like the base's."""
    if path not in ("data.source", "data.varset") or value == "generated":
        return value
    if path == "data.varset":
        try:
            return resolve_varset(value, base) if isinstance(value, str | dict) else value
        except UserError as err:
            raise ValueError(str(err)) from None
    return [locate(v, base) for v in value] if isinstance(value, list) else locate(value, base)


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


_SECTIONS: dict[str, type[BaseModel]] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "codec": CodecConfig}


def dotted(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{'train': {'lr': x}, 'model': {...}} -> {'train.lr': x, ...}: the keys grids, points and --set name (other entries are left out)."""
    return {f"{section}.{key}": value for section, values in sections.items() if isinstance(values, dict) for key, value in values.items()}


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
        raise UserError(one_line(err, source, TrialConfig, prefix="grid point ")) from None


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and validate a sweep file; any mistake becomes one `UserError` line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such sweep file")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of keys (name, data, model, train, grid, dispatch)")
    raw.setdefault("name", path.stem)
    return validate_sweep(raw, source=str(path), base=path.parent.resolve())


def validate_sweep(raw: dict[str, Any], source: str, base: Path | None = None) -> SweepConfig:
    """Validate a sweep given as a dict; `source` names it in error messages, relative paths are looked up beside `base` first."""
    try:
        return SweepConfig.model_validate(raw, context={"base": base})
    except ValidationError as err:
        raise UserError(one_line(err, source, SweepConfig)) from None

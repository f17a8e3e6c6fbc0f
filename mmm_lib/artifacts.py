"""Typed JSON artifacts that cross stages: one pydantic model per file, and which stage writes it.

:class:`~mmm_lib.storage.Run` validates every registered artifact on write (an invalid one is refused
before anything touches the disk) and on read (a stale or hand-edited file gives an error that names the
file, the field and the stage to rerun). Readers still get plain dicts (``model_dump(mode="json")`` of
the fields the file holds, keys in the order the producer or the file has them), so consumers index
them as before and a write is byte-for-byte what the unvalidated write was;
:func:`parse_artifact` / :meth:`Run.read_model <mmm_lib.storage.Run.read_model>` give the typed object,
with the defaults below filled in for fields that older runs lack.

The models follow what the producers write today (docs/DESIGN.md, "Artifacts and their columns"):
``extra="forbid"`` everywhere, because this code is the only producer; a new key in a producer needs
its field here. Fields are listed in the producers' key order.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .spec import ModelConfig, RunSpec, SaturationConfig

# Literal types shared with the run spec, so the two cannot drift apart.
Grain = RunSpec.model_fields["grain"].annotation
SaturationType = SaturationConfig.model_fields["type"].annotation
Transforms = ModelConfig.model_fields["transforms"].annotation
Level = ModelConfig.model_fields["level"].annotation
Aggregation = Literal["sum", "mean"]

# Which stage writes which artifact: the single table behind "run stage N first" messages, the
# stage to rerun for an invalid artifact, and the outputs in :data:`mmm_lib.stages.STAGE_IO`.
PRODUCED_BY = {
    "run_spec.json": "01_validate",
    "raw_data.parquet": "01_validate",
    "validation_summary.json": "01_validate",
    "canonical_data.parquet": "02_canonicalize",
    "column_info.json": "02_canonicalize",
    "features.parquet": "03_features",
    "feature_metadata.json": "03_features",
    "feature_scaler.json": "03_features",
    "posterior.nc": "04_fit",
    "posterior_summary.json": "04_fit",
    "model_metadata.json": "04_fit",
    "diagnostics.json": "05_diagnose",
    "contributions.parquet": "06_contribute",
    "contribution_summary.json": "06_contribute",
    "roi_metrics.json": "06_contribute",
    "fitted.parquet": "06_contribute",
    "fit_metrics.json": "06_contribute",
    "optimization.json": "07_optimize",
    "response_curves.parquet": "07_optimize",
    "scenario.parquet": "07_optimize",
}


class _Artifact(BaseModel):
    """Base of every artifact model: unknown keys are errors (this code is the only producer)."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- column_info.json (02)


class Windows(_Artifact):
    """The window rule's boundaries (``end`` exclusive) and the periods actually kept."""

    carryover_start: dt.date
    estimation_start: dt.date
    end: dt.date
    n_carryover: int = Field(ge=0)
    n_estimation: int = Field(ge=0)
    n_holdout: int = Field(0, ge=0)
    first_holdout_period: dt.date | None = None
    first_period: dt.date | None = None
    first_estimation_period: dt.date | None = None
    last_period: dt.date | None = None


class SourceColumns(_Artifact):
    """The file's own column names for the keys and the target (``entity`` null: one series)."""

    entity: str | None = None
    period: str
    target: str
    target_multiplier: str | None = None
    target_name: str | None = None


class ColumnInfo(_Artifact):
    """``column_info.json``: roles, aggregation, entities and windows of the canonical data."""

    grain: Grain
    target: str
    drivers: list[str]
    spend: dict[str, str | None]
    controls: list[str]
    aggregation: dict[str, Aggregation]
    level: Level = "brand"
    entities: list[str] = Field(default_factory=lambda: ["brand"])
    source_entities: list[str]
    n_source_entities: int = Field(ge=0)
    windows: Windows | None = None
    notes: list[str] = Field(default_factory=list)
    source_columns: SourceColumns | None = None


# --------------------------------------------------------------------------- feature_metadata.json (03)


class ChannelFeature(_Artifact):
    """One media channel: its driver, feature and activity columns and its fixed adstock settings."""

    driver: str
    feature: str
    activity: str | None = None  # None (older runs): "activity__<driver>"
    spend_col: str | None = None
    decay: float = Field(ge=0.0, lt=1.0)
    max_lag: int = Field(ge=0)


class ControlFeature(_Artifact):
    """One non-media regressor: a control column, a Fourier term or the trend."""

    name: str
    feature: str
    kind: Literal["control", "seasonality", "trend"]


class Saturation(_Artifact):
    enabled: bool
    type: SaturationType = "hill"
    K: float = Field(gt=0.0)
    S: float = Field(gt=0.0)
    lam: float | None = Field(None, gt=0.0)  # absent in runs before the logistic saturation
    scale: str | None = None


class Seasonality(_Artifact):
    enabled: bool
    K: int = Field(ge=0)
    period: float | None = None


class Trend(_Artifact):
    enabled: bool


class FeatureMetadata(_Artifact):
    """``feature_metadata.json``: which feature columns the model uses and how they were built."""

    target: str
    grain: Grain
    channels: list[ChannelFeature]
    controls: list[ControlFeature]
    saturation: Saturation
    seasonality: Seasonality
    trend: Trend
    notes: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- feature_scaler.json (03)


class MediaScale(_Artifact):
    adstock_max: float = Field(gt=0.0)


class Standardization(_Artifact):
    mean: float
    std: float = Field(gt=0.0)


class FeatureScaler(_Artifact):
    """``feature_scaler.json``: the estimation-window statistics the features were scaled with."""

    media: dict[str, MediaScale]
    controls: dict[str, Standardization]
    trend: Standardization | None = None
    time_origin: dt.date


# --------------------------------------------------------------------------- model_metadata.json (04)


class PriorSpec(_Artifact):
    """One prior as the model built it: distribution, parameters (per channel: a list) and dims."""

    dist: str
    params: dict[str, float | str | list[float]]
    dims: list[str]


class Sampler(_Artifact):
    nuts_sampler: str
    inference_library: str | None = None
    inference_library_version: str | None = None
    draws: int = Field(ge=0)
    tune: int = Field(ge=0)
    chains: int = Field(ge=1)
    cores: int | None = None
    target_accept: float
    random_seed: int
    compile_time_s: float | None = None
    wall_time_s: float | None = None


class ModelMetadata(_Artifact):
    """``model_metadata.json``: what 04_fit fitted (from the model object), with which sampler and versions.

    Fields that baseline-model runs made before the model package lack default to that model: fixed
    transforms, brand level.
    """

    model: str
    transforms: Transforms = "fixed"
    level: Level = "brand"
    saturation: Literal[SaturationType, "none"] | None = None
    max_lag: int | None = None
    target_transform: Literal["log1p"] = "log1p"
    target_center: float | None = None  # brand level; None when there are several entities
    target_centers: dict[str, float] | None = None
    likelihood: str | None = None
    entities: list[str] | None = None
    channels: list[str]
    channel_features: list[str]
    controls: list[str]
    control_features: list[str]
    priors: dict[str, str] = Field(default_factory=dict)
    prior_spec: dict[str, PriorSpec] | None = None
    n_parameters: int | None = None
    reference_level: dict[str, float] | None = None  # learned transforms only: media = 1 at this scaled level
    activity_scale: dict[str, dict[str, float]] | None = None  # learned transforms only
    n_obs: int | None = None
    estimation_start: dt.date | None = None
    estimation_end: dt.date | None = None
    sampler: Sampler | None = None
    sampling_time_s: float | None = None
    versions: dict[str, str] = Field(default_factory=dict)


# --------------------------------------------------------------------------- registry and validation

ARTIFACT_MODELS: dict[str, type[_Artifact]] = {
    "column_info.json": ColumnInfo,
    "feature_metadata.json": FeatureMetadata,
    "feature_scaler.json": FeatureScaler,
    "model_metadata.json": ModelMetadata,
}


class ArtifactInvalid(ValueError):
    """A JSON artifact that does not match its model (written wrongly, stale, or edited by hand).

    ``name`` is the artifact, ``stage`` the stage that writes it, ``problems`` one ``"field: problem"``
    line per error.
    """

    def __init__(self, message: str, name: str, stage: str, problems: list[str]):
        super().__init__(message)
        self.name, self.stage, self.problems = name, stage, problems


def producer(name: str) -> str:
    """The stage that writes artifact ``name`` (``"the earlier stages"`` when it is not a known artifact)."""
    return PRODUCED_BY.get(name, "the earlier stages")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_errors(exc: ValidationError, limit: int = 5) -> list[str]:
    """``"field.path: problem (got value)"`` per error, e.g. ``"channels.0.decay: Input should be a valid number (got 'x')"``."""
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = "" if err["type"] == "missing" else f" (got {_short(err['input'])})"
        out.append(f"{loc}: {err['msg']}{got}")
    if len(out) > limit:
        out = [*out[:limit], f"… and {len(out) - limit} more"]
    return out


def _validated(name: str, data: Any) -> _Artifact:
    return ARTIFACT_MODELS[name].model_validate(data)


def parse_artifact(name: str, data: Any) -> _Artifact:
    """The typed model of artifact ``name`` (defaults filled in); raises :class:`ArtifactInvalid`."""
    try:
        return _validated(name, data)
    except ValidationError as e:
        problems = describe_errors(e)
        raise ArtifactInvalid(f"{name}: " + "; ".join(problems), name, producer(name), problems) from None


def dump(model: _Artifact) -> dict[str, Any]:
    """The plain dict of a validated artifact: only the fields it holds, in field order."""
    return model.model_dump(mode="json", exclude_unset=True)


def _keep_order(new: Any, old: Any) -> Any:
    """``new`` (a dump) with its dict keys in the order ``old`` (what was validated) has them."""
    if isinstance(new, dict) and isinstance(old, dict):
        keys = [k for k in old if k in new] + [k for k in new if k not in old]
        return {k: _keep_order(new[k], old.get(k)) for k in keys}
    if isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        return [_keep_order(n, o) for n, o in zip(new, old)]
    return new


def check_for_write(name: str, data: Any) -> Any:
    """``data`` validated as artifact ``name`` and dumped back to a plain dict (unregistered names pass through).

    Raises
    ------
    ArtifactInvalid
        Naming the artifact, each bad field and the stage that produced it.
    """
    if name not in ARTIFACT_MODELS:
        return data
    stage = producer(name)
    try:
        return _keep_order(dump(_validated(name, data)), data)
    except ValidationError as e:
        problems = describe_errors(e)
        raise ArtifactInvalid(
            f"{name}: {'; '.join(problems)}; the {stage} stage wrote an invalid artifact "
            "(refused: nothing was written, the previous file if any is unchanged)",
            name, stage, problems,
        ) from None


def check_on_read(name: str, data: Any, where: str = "") -> Any:
    """``data`` read from artifact ``name`` validated and dumped to a plain dict (unregistered names pass through).

    ``where`` (e.g. ``"run 'r1' (/path/to/run)"``) is added to the message. Raises :class:`ArtifactInvalid`
    naming the file, each bad field and the stage to rerun.
    """
    if name not in ARTIFACT_MODELS:
        return data
    stage = producer(name)
    try:
        return _keep_order(dump(_validated(name, data)), data)
    except ValidationError as e:
        problems = describe_errors(e)
        place = f" of {where}" if where else ""
        raise ArtifactInvalid(
            f"{name}{place} is not a valid {stage} artifact: {'; '.join(problems)}. It is stale (written by an "
            f"older version) or was edited by hand: rerun {stage} for this run (and the stages after it)",
            name, stage, problems,
        ) from None


__all__ = [
    "ARTIFACT_MODELS",
    "PRODUCED_BY",
    "ArtifactInvalid",
    "ChannelFeature",
    "ColumnInfo",
    "ControlFeature",
    "FeatureMetadata",
    "FeatureScaler",
    "MediaScale",
    "ModelMetadata",
    "PriorSpec",
    "Sampler",
    "Saturation",
    "Seasonality",
    "SourceColumns",
    "Standardization",
    "Trend",
    "Windows",
    "check_for_write",
    "check_on_read",
    "describe_errors",
    "dump",
    "parse_artifact",
    "producer",
]

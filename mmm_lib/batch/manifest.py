"""The batch manifest: a base spec and the runs derived from it (a list, a grid and/or a split of the data).

A manifest (YAML, read as safely as a run spec) names::

    name: sample_grid              # outputs/batches/<name>/ and the prefix of every run id
    spec: fast.yaml                # the base run spec, relative to the manifest
    set: {draws: 100}              # overrides for every run (optional)
    runs:                          # explicit runs, each with its own overrides (optional)
      - {name: tv_only, set: {drivers: [act_tv]}}
    grid:                          # cartesian product of the values of each key (optional)
      model.transforms: [fixed, learned]
    split: {column: region, values: [north, south]}   # one run per value of a column (optional)

Runs are the product of the three parts present (runs × grid × split). Every derived spec is validated
with :func:`mmm_lib.spec.load_spec` before anything runs; a bad key names the run and the key.

A split is one run per value of a column of the base spec's data: each run's spec gets ``data_filter``
(column: [value], added to any filter the base spec has), so the filter is recorded in the run's own spec
(``run_spec.json``, its hash, the validation report's DATA_FILTER line) and every run reads the same file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .. import spec_yaml
from ..spec import RunSpec, SpecError, load_spec, spec_to_dict
from ..storage import outputs_root, validate_id

_SLUG_BAD = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_SUFFIX = 48


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the field (and the run) and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunEntry(_Strict):
    """One explicit run: a name (the run id's suffix) and its overrides."""

    name: str | None = Field(None, description="suffix of the run id; default: from the overrides")
    set: dict[str, Any] | list[str] = Field(default_factory=dict)


class SplitConfig(_Strict):
    """One run per value of ``column`` (``values``: those only; default every value in the data)."""

    column: str
    values: list[str | int | float] | None = None


class Manifest(_Strict):
    """``params/batch_example.yaml``'s schema: unknown keys are refused, like a run spec's."""

    name: str
    spec: str
    set: dict[str, Any] | list[str] = Field(default_factory=dict)
    runs: list[RunEntry] = Field(default_factory=list)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    split: SplitConfig | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        validate_id(v, "batch name")
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [k for k, vals in v.items() if not vals]
        if empty:
            raise ValueError(f"grid key(s) {empty} have no values; list at least one, e.g. model.transforms: [fixed, learned]")
        return v


@dataclass
class PlannedRun:
    """One run of a batch: its id, label, overrides on the base spec, split filter and validated spec."""

    run_id: str
    label: str
    overrides: list[str]
    filter: dict[str, Any] | None = None
    spec: RunSpec | None = None
    spec_hash: str = ""

    @property
    def chains(self) -> int:
        return int(self.spec.chains) if self.spec is not None else 1

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "label": self.label, "overrides": list(self.overrides),
                "filter": self.filter, "spec_hash": self.spec_hash}  # fmt: skip


@dataclass
class BatchPlan:
    """A validated manifest: where it writes, the base spec, and every run."""

    name: str
    manifest_path: Path
    base_spec: Path
    runs: list[PlannedRun]
    split: SplitConfig | None = None
    split_source: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return batch_dir(self.name)

    @property
    def max_chains(self) -> int:
        return max((r.chains for r in self.runs), default=1)


def batch_dir(name: str) -> Path:
    """``<outputs root>/batches/<name>``."""
    return outputs_root() / "batches" / validate_id(name, "batch name")


def _as_overrides(value: dict[str, Any] | list[str], where: str) -> list[str]:
    """``{key: value}`` (YAML values) or ``["key=value", …]`` to ``--set`` strings."""
    if isinstance(value, list):
        bad = [s for s in value if not isinstance(s, str) or "=" not in s]
        if bad:
            raise ManifestError(f"{where}: {bad[0]!r} is not key=value; write e.g. draws=200 (or a mapping draws: 200)")
        return list(value)
    return [f"{k}={format_value(v)}" for k, v in value.items()]


def format_value(value: Any) -> str:
    """A value as ``--set`` text that reads back as the same value: bare text where YAML keeps it text
    (``fixed``), JSON otherwise (``[\"act_tv\"]``, ``\"yes\"``)."""
    if isinstance(value, str):
        try:
            if value and spec_yaml.parse_yaml(value) == value and "," not in value:
                return value
        except spec_yaml.SpecTextError:
            pass
    return json.dumps(value)


def _key_of(override: str) -> str:
    return override.split("=", 1)[0].strip()


def slug(value: Any) -> str:
    """A run-id-safe token for a value (``fixed``, ``act_tv.act_radio``, ``draws200``)."""
    if isinstance(value, (list, tuple)):
        text = ".".join(slug(v) for v in value)
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return _SLUG_BAD.sub("_", text).strip("._-") or "x"


def _token(key: str, value: Any) -> str:
    """A readable part of the suffix: the value itself for text, ``<leaf><value>`` for numbers and flags
    (``draws200`` says more than ``200``); a mapping is only named by its key (the hash tells them apart)."""
    leaf = key.rsplit(".", 1)[-1]
    if isinstance(value, dict):
        return slug(leaf)
    if isinstance(value, (bool, int, float)) or value is None:
        return slug(f"{leaf}{str(value).lower() if isinstance(value, bool) or value is None else slug(value)}")
    return slug(value)


def short_hash(obj: Any, n: int = 6) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def spec_hash(spec: RunSpec) -> str:
    """SHA-256 of the run spec as ``run_spec.json`` holds it: ``--resume`` skips a run whose hash matches."""
    return hashlib.sha256(json.dumps(spec_to_dict(spec), sort_keys=True).encode()).hexdigest()


def spec_hash_of(stored: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(stored, sort_keys=True).encode()).hexdigest()


def read_manifest(path: str | Path) -> Manifest:
    """Read and check a manifest file (safe YAML, unknown keys refused with the allowed ones)."""
    path = Path(path)
    try:
        raw = spec_yaml.parse_yaml(spec_yaml.read_spec_text(path))
    except spec_yaml.SpecFileMissing:
        raise ManifestError(f"batch manifest not found: {path} (see params/batch_example.yaml)") from None
    except spec_yaml.SpecTextError as e:
        raise ManifestError(f"batch manifest {path}: {e}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"batch manifest {path} must be a mapping (name:, spec:, runs:/grid:/split:), "
                            f"not a {type(raw).__name__}; see params/batch_example.yaml")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        lines = [f"invalid batch manifest {path}:"]
        for err in e.errors()[:20]:
            loc = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                lines.append(f"  - unknown key {loc!r}; allowed: name, spec, set, runs (name, set), grid, split (column, values)")
            else:
                lines.append(f"  - {loc or 'manifest'}: {err['msg']}")
        raise ManifestError("\n".join(lines)) from None


def split_values(source: Path, column: str, spec: RunSpec) -> list[str]:
    """The distinct values of ``column`` in the data file, sorted, as text as ``data_filter`` compares them."""
    from ..raw_io import DataFormatError, filter_text, load_raw

    try:
        df = load_raw(source, spec)
    except DataFormatError as e:
        raise ManifestError(f"split: cannot read the base spec's data: {e}") from None
    if column not in df.columns:
        raise ManifestError(f"split.column {column!r} is not a column of {source}; its columns: {list(map(str, df.columns))}")
    return sorted(filter_text(df[column]).dropna().unique().tolist())


def _split_source(base: RunSpec) -> Path:
    if base.data_path is not None:
        return Path(base.data_path)
    from ..storage import dataset_dir

    return dataset_dir(str(base.dataset_id)) / "raw_data.parquet"


def plan_batch(manifest_path: str | Path) -> BatchPlan:
    """Expand a manifest into runs with stable ids and validate every derived spec.

    Raises
    ------
    ManifestError
        The manifest itself is wrong, or a derived spec is: the message names the run and the key.
    """
    manifest_path = Path(manifest_path).resolve()
    m = read_manifest(manifest_path)
    base_spec = (manifest_path.parent / m.spec).resolve()
    common = _as_overrides(m.set, "set")
    try:
        base = load_spec(base_spec, common)
    except SpecError as e:
        raise ManifestError(f"batch {m.name}: base spec {base_spec} with `set` {common}: {e}") from None

    entries: list[tuple[str | None, list[str]]] = [(r.name, _as_overrides(r.set, f"runs[{i}].set"))
                                                   for i, r in enumerate(m.runs)] or [(None, [])]  # fmt: skip
    keys = list(m.grid)
    combos = list(itertools.product(*(m.grid[k] for k in keys))) if keys else [()]
    split_source, values = None, [None]
    if m.split is not None:
        split_source = _split_source(base)
        values = [str(v) for v in m.split.values] if m.split.values else split_values(split_source, m.split.column, base)

    runs: list[PlannedRun] = []
    for (entry_name, entry_set), combo, value in itertools.product(entries, combos, values):
        parts: list[str] = []
        overrides = list(common) + list(entry_set)
        if entry_name:
            parts.append(slug(entry_name))
        else:
            parts += [_token(_key_of(o), _parse_value(o)) for o in entry_set]
        for k, v in zip(keys, combo):
            overrides.append(f"{k}={format_value(v)}")
            parts.append(_token(k, v))
        flt = None
        if value is not None:
            flt = {"column": m.split.column, "value": value}
            overrides.append(f"data_filter={json.dumps({**base.data_filter, m.split.column: [value]})}")
            parts.append(slug(value))
        label = ", ".join([*(p for p in ([entry_name] if entry_name else [])),
                           *(f"{_key_of(o)}={o.split('=', 1)[1]}" for o in entry_set if not entry_name),
                           *(f"{k}={v}" for k, v in zip(keys, combo)),
                           *([f"{flt['column']}={flt['value']}"] if flt else [])]) or "base spec"  # fmt: skip
        runs.append(PlannedRun(_run_id(m.name, parts, overrides), label, overrides, flt))
    _dedupe_ids(runs)

    errors = []
    for r in runs:
        try:
            r.spec = load_spec(base_spec, r.overrides)
            r.spec_hash = spec_hash(r.spec)
        except SpecError as e:
            errors.append(f"run {r.run_id} ({r.label}): {e}")
    if errors:
        raise ManifestError(f"batch {m.name}: {len(errors)} of {len(runs)} derived spec(s) are invalid; nothing was run\n"
                            + "\n".join(errors))  # fmt: skip
    return BatchPlan(m.name, manifest_path, base_spec, runs, m.split, split_source)


def _parse_value(override: str) -> Any:
    try:
        return spec_yaml.parse_yaml(override.split("=", 1)[1])
    except spec_yaml.SpecTextError:
        return override.split("=", 1)[1]


def _run_id(name: str, parts: list[str], overrides: list[str]) -> str:
    suffix = "-".join(p for p in parts if p) or "base"
    if len(suffix) > _MAX_SUFFIX:
        suffix = f"{suffix[:_MAX_SUFFIX - 7].rstrip('._-')}-{short_hash(overrides)}"
    return validate_id(f"{name}-{suffix}"[:128], "run_id")


def _dedupe_ids(runs: list[PlannedRun]) -> None:
    """Two runs whose readable suffixes collide get a hash of their overrides each (stable: the same manifest
    gives the same ids)."""
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.run_id] = seen.get(r.run_id, 0) + 1
    for r in runs:
        if seen[r.run_id] > 1:
            r.run_id = validate_id(f"{r.run_id[:120]}-{short_hash(r.overrides)}", "run_id")
    dup = {r.run_id for r in runs if sum(x.run_id == r.run_id for x in runs) > 1}
    if dup:
        raise ManifestError(f"runs {sorted(dup)} have the same overrides; each run of a batch must differ")

"""The run spec: one typed schema for ``params/*.yaml`` (the standard run spec plus ``data_path``).

Unknown keys are rejected with a "did you mean …?" hint; every error names the field,
the bad value and what is allowed.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import spec_yaml


class SpecError(ValueError):
    """A run spec that cannot be used; the message names the field and the fix."""


class _Strict(BaseModel):
    # No NaN or infinity in any float field, however written ('.nan', "1e999", "inf" as text).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class AdstockConfig(_Strict):
    """Geometric adstock ``a[t] = x[t] + decay * a[t-1]``, truncated after ``max_lag`` periods."""

    decay_default: float = Field(0.5, ge=0.0, lt=1.0)
    per_channel: dict[str, float] = Field(default_factory=dict)
    max_lag: int = Field(13, ge=1, le=104)

    @field_validator("per_channel")
    @classmethod
    def _decays_in_range(cls, v: dict[str, float]) -> dict[str, float]:
        for ch, d in v.items():
            if not 0.0 <= d < 1.0:
                raise ValueError(f"adstock decay for {ch!r} is {d}; it must be in [0, 1)")
        return v


class SaturationConfig(_Strict):
    """Saturation of adstocked activity scaled to max 1 (see features): the family and its settings.

    ``hill``: ``x^S / (K^S + x^S)``; ``michaelis_menten``: ``x / (K + x)``; ``logistic``:
    ``(1 - exp(-lam x)) / (1 + exp(-lam x))``. With ``model.transforms: fixed`` these values are
    used as they are; with ``learned`` they centre the priors of the per-channel parameters.
    """

    enabled: bool = True
    type: Literal["hill", "logistic", "michaelis_menten"] = "hill"
    K: float = Field(0.5, gt=0.0)
    S: float = Field(1.0, gt=0.0)
    lam: float = Field(3.0, gt=0.0, description="logistic steepness (only for type: logistic)")


class SeasonalityConfig(_Strict):
    """Fourier seasonality with ``K`` sine/cosine pairs; ``period`` defaults from the grain."""

    enabled: bool = True
    K: int = Field(2, ge=0, le=10)
    period: float | None = Field(None, gt=1.0)


class TrendConfig(_Strict):
    enabled: bool = True


class FeatureConfig(_Strict):
    adstock: AdstockConfig = Field(default_factory=AdstockConfig)
    saturation: SaturationConfig = Field(default_factory=SaturationConfig)
    seasonality: SeasonalityConfig = Field(default_factory=SeasonalityConfig)
    trend: TrendConfig = Field(default_factory=TrendConfig)


class WindowsConfig(_Strict):
    """Estimation window = last ``estimation_months``; the ``carryover_months`` before it only warm up adstock.

    ``holdout_periods``: the last N periods of the estimation window are held out: the model is fitted
    on the rest and predicts them (a chronological holdout, never a random split). 0 = off.
    """

    carryover_months: int = Field(12, ge=0)
    estimation_months: int = Field(12, ge=1)
    holdout_periods: int = Field(0, ge=0, le=10_000)


class ModelConfig(_Strict):
    """Which model configuration to fit (see docs/MODEL.md).

    ``transforms``: ``fixed`` uses ``feature_config``'s adstock decay and saturation as given;
    ``learned`` estimates a decay and saturation parameters per channel, with priors centred on
    those settings. ``level``: ``brand`` sums entities into one series; ``entity`` keeps each
    store/geo as its own series, with channel effects partially pooled across entities.
    ``priors``: overrides of the prior registry by parameter name, or ``name[channel]``
    (e.g. ``"decay[act_tv]": {dist: Beta, alpha: 8, beta: 2}``).
    """

    transforms: Literal["fixed", "learned"] = "fixed"
    level: Literal["brand", "entity"] = "brand"
    priors: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @property
    def is_baseline(self) -> bool:
        """Fixed transforms at brand level: the baseline model."""
        return self.transforms == "fixed" and self.level == "brand"


class ColumnsConfig(_Strict):
    """Which columns of the file hold the keys and the target, for files not in the standard columns.

    The defaults are the standard names. Everything after the mapping (validation messages aside,
    which quote the file's own names) uses the standard vocabulary: ``entity_id``, ``period_start``
    and the modelled target (``target_col``, or ``target_name`` when a multiplier is set).
    """

    entity: str | None = Field(
        "entity_id", description="entity column (store, geo, SKU); null = the file is one series (one entity)"
    )
    period: str = Field("period_start", description="period start date column")
    target_multiplier: str | None = Field(
        None,
        description="column the target is multiplied by, e.g. revenue_per_conversion: the modelled target is "
        "target_col x target_multiplier (revenue), so ROI is revenue per unit of spend",
    )
    target_name: str | None = Field(
        None, description="name of the modelled target when target_multiplier is set (default 'revenue')"
    )

    @field_validator("entity", "period", "target_multiplier", "target_name")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("a column name cannot be empty (use null for 'no entity column')")
        return v

    @model_validator(mode="after")
    def _check(self) -> "ColumnsConfig":
        if self.target_name is not None and self.target_multiplier is None:
            raise ValueError("target_name only names the product target_col x target_multiplier; set target_multiplier too")
        if self.entity is not None and self.entity == self.period:
            raise ValueError(f"entity and period are both {self.entity!r}; they must be different columns")
        return self

    @property
    def modelled_target_default(self) -> str:
        return self.target_name or "revenue"


class DiagnosticsConfig(_Strict):
    """What a failed convergence check in 05_diagnose does to the run (see :mod:`mmm_lib.gate`).

    ``warn``: the run goes on and its numbers are marked provisional (``mmm run``'s headline,
    ``index.html``, the 06_contribute report). ``stop``: the run stops after 05_diagnose, before
    contributions and ROI; ``mmm run`` exits 3 and says which parameters failed and what to try.
    """

    gate: Literal["warn", "stop"] = "warn"


_PCT_BOUND = re.compile(r"^\s*(?:±|\+/?-|\+-)?\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_bound(value: Any, where: str) -> tuple[str, float, float]:
    """A channel's spend bound: ``[low, high]`` (absolute spend over the horizon) or ``"±20%"`` (of current spend).

    Returns ``("abs", low, high)`` or ``("pct", p, p)`` with ``p`` as a fraction (0.2).
    """
    if isinstance(value, str):
        m = _PCT_BOUND.match(value)
        if not m:
            raise ValueError(f"{where}: {value!r} is not a bound; write [low, high] (spend over the horizon) or '±20%' (of current spend)")
        return ("pct", float(m.group(1)) / 100.0, float(m.group(1)) / 100.0)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"{where}: {value!r} is one number; write [low, high] (spend over the horizon) or '±20%'")
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {value!r} is not a bound; write [low, high] (spend over the horizon) or '±20%'") from None
    if not (0.0 <= lo <= hi) or not hi < float("inf"):
        raise ValueError(f"{where}: [{lo:g}, {hi:g}] must satisfy 0 <= low <= high < inf")
    return ("abs", lo, hi)


class TargetConfig(_Strict):
    """Target mode of the optimizer: the spend at which the optimized plan's ``metric`` falls to ``value``.

    ``marginal_roi``: sales from one more unit of spend (1.0 = break-even on the margin: the
    profit-maximising budget when sales are revenue); ``roi``: average incremental sales per unit
    of spend over the plan.
    """

    metric: Literal["marginal_roi", "roi"] = "marginal_roi"
    value: float = Field(1.0, gt=0.0, lt=1e6)


class OptimizeConfig(_Strict):
    """Budget decisions (stage 07_optimize): response curves, the optimal split of a budget, scenarios.

    The plan covers ``horizon_periods`` periods after the data's last period; each channel's spend is
    laid out over them like its last ``horizon_periods`` periods (per entity), turned into activity at
    the channel's cost per unit in the estimation window, and its incremental sales are counted over the
    horizon plus the carryover it leaves afterwards (adstock's ``max_lag``).
    """

    horizon_periods: int = Field(13, ge=1, le=260, description="periods planned (13 weeks = a quarter)")
    budget: float | None = Field(None, gt=0.0, lt=1e15, description="total spend over the horizon; default: the last horizon_periods' spend")
    bounds: dict[str, Any] = Field(
        default_factory=dict,
        description="channel -> [low, high] spend over the horizon, or '±20%' of current; others use default_bound",
    )
    default_bound: str = Field("±30%", description="bound of channels not in bounds, as ± % of current spend")
    per_entity: bool = Field(False, description="entity models: optimize each entity's split too (else a channel's entity split is kept)")
    objective: Literal["mean", "risk_adjusted"] = Field("mean", description="mean incremental sales, or mean - risk_aversion x sd")
    risk_aversion: float = Field(1.0, ge=0.0, le=100.0)
    target: TargetConfig | None = None
    curve_max_multiplier: float = Field(2.0, gt=0.0, le=20.0, description="response curves run from 0 to this multiple of current spend")
    scenario_path: str | None = Field(None, description="CSV of planned spend: period_start, channel[, entity_id], spend")
    starts: int = Field(4, ge=1, le=64, description="optimizer starts (current split, equal split, random splits)")
    draws: int = Field(200, ge=10, le=100_000, description="posterior draws the plan is evaluated on (evenly thinned)")

    @field_validator("default_bound")
    @classmethod
    def _pct(cls, v: str) -> str:
        kind = parse_bound(v, "optimize.default_bound")[0]
        if kind != "pct":
            raise ValueError("optimize.default_bound must be a percentage such as '±30%'")
        return v

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, v: dict[str, Any]) -> dict[str, Any]:
        for ch, b in v.items():
            parse_bound(b, f"optimize.bounds.{ch}")
        return v


MAX_LISTED_COLUMNS = 1_000  # drivers, and controls: far more than any MMM, far fewer than a hostile spec


class RunSpec(_Strict):
    """A whole run: data, roles, features, windows and sampler settings (the standard keys and defaults)."""

    dataset_id: str | None = None
    data_path: str | None = None
    grain: Literal["WEEK", "MONTH"] = "WEEK"
    target_col: str = "sales"
    drivers: list[str] = Field(default_factory=list)
    controls: list[str] = Field(default_factory=list)
    spend_cols: dict[str, str] = Field(
        default_factory=dict,
        description="driver -> spend column; drivers not listed use act_X -> spend_X when that column exists; "
        "a driver given only as spend is its own spend column (tv_S: tv_S)",
    )
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    data_filter: dict[str, list[str]] = Field(
        default_factory=dict,
        description="keep only the rows whose column holds one of the values, e.g. {region: [north]}: one file, "
        "one run per brand or market (mmm batch's split writes it); values are compared as text",
    )
    control_aggregation: dict[str, Literal["mean", "sum"]] = Field(
        default_factory=dict, description="entity -> brand aggregation per control (default mean)"
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="driver or control -> the name reports show (act_tv: Television); others get a default "
        "(act_tv -> TV, act_digital -> Digital), see mmm_lib.labels",
    )
    feature_config: FeatureConfig = Field(default_factory=FeatureConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    windows: WindowsConfig = Field(default_factory=WindowsConfig)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)
    optimize: OptimizeConfig | None = Field(None, description="budget decisions (07_optimize); the stage runs when this section is present")
    draws: int = Field(1000, ge=10)
    tune: int = Field(1000, ge=10)
    chains: int = Field(2, ge=1, le=16)
    target_accept: float = Field(0.9, gt=0.5, lt=1.0)
    random_seed: int = Field(42, ge=0)
    # "auto" picks by model, as measured (README "Performance"): numpyro for the baseline model (it compiles
    # in seconds and JAX keeps the program in its persistent cache; nutpie recompiles its wrappers in every
    # process, ~10 s); nutpie for learned and entity models, which need many more gradient evaluations per
    # draw (benchmarks/bench_samplers.py, benchmarks/bench_entity.py).
    nuts_sampler: Literal["auto", "nutpie", "pymc", "numpyro"] = "auto"

    @field_validator("data_filter", mode="before")
    @classmethod
    def _filter_values_as_text(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out: dict[Any, Any] = {}
        for col, vals in v.items():
            if not isinstance(col, str) or not col.strip():
                raise ValueError(f"data_filter column {col!r} must be a column name, e.g. data_filter: {{region: [north]}}")
            vals = vals if isinstance(vals, list) else [vals]
            if not vals or any(x is None or isinstance(x, (dict, list, bool)) for x in vals):
                raise ValueError(f"data_filter.{col} must be a value or a non-empty list of values (text or numbers), "
                                 f"e.g. data_filter: {{{col}: [north, south]}}; got {v[col]!r}")
            # 2024 and 2024.0 are the same value; text is kept as written (stripped)
            out[col.strip()] = [str(int(x)) if isinstance(x, float) and x.is_integer() else str(x).strip() for x in vals]
        return out

    @field_validator("drivers", "controls")
    @classmethod
    def _no_duplicates(cls, v: list[str]) -> list[str]:
        if len(v) > MAX_LISTED_COLUMNS:
            raise ValueError(f"{len(v):,} columns listed; at most {MAX_LISTED_COLUMNS:,} are allowed: check the list")
        dup = sorted(c for c, n in Counter(v).items() if n > 1)  # linear: a long list must not take minutes
        if dup:
            raise ValueError(f"listed more than once: {dup[:20]}{' …' if len(dup) > 20 else ''}")
        return v

    @model_validator(mode="after")
    def _check(self) -> "RunSpec":
        if (self.dataset_id is None) == (self.data_path is None):
            raise ValueError("give exactly one of dataset_id (a dataset added with `mmm datasets add`) or data_path")
        if not self.drivers:
            raise ValueError("drivers is empty: list the activity columns to model, e.g. drivers: [act_tv, act_search]")
        both = sorted(set(self.drivers) & set(self.controls))
        if both:
            raise ValueError(f"{both} listed as both drivers and controls; a column has one role")
        unknown = sorted(set(self.feature_config.adstock.per_channel) - set(self.drivers))
        if unknown:
            raise ValueError(
                f"feature_config.adstock.per_channel names {unknown}, which are not in drivers {self.drivers}"
            )
        unknown = sorted(set(self.spend_cols) - set(self.drivers))
        if unknown:
            raise ValueError(f"spend_cols names {unknown}, which are not in drivers {self.drivers}")
        unknown = sorted(set(self.control_aggregation) - set(self.controls))
        if unknown:
            raise ValueError(f"control_aggregation names {unknown}, which are not in controls {self.controls}")
        if self.optimize is not None:
            unknown = sorted(set(self.optimize.bounds) - set(self.drivers))
            if unknown:
                raise ValueError(f"optimize.bounds names {unknown}, which are not in drivers {self.drivers}")
        unknown = sorted(set(self.labels) - set(self.drivers) - set(self.controls))
        if unknown:
            raise ValueError(
                f"labels names {unknown}, which are not in drivers {self.drivers} or controls {self.controls}; "
                "labels give display names to those columns only"
            )
        if self.model.priors:
            # Applied to this configuration's registry now, so an unknown parameter, a per-channel
            # family that differs from the others or an unknown channel stops the spec, not stage 04.
            from .model import parameter_count
            from .model.priors import PriorError

            try:
                parameter_count(self, 1)
            except PriorError as e:
                raise ValueError(str(e)) from None
        m = self.columns.target_multiplier
        if m is not None and m == self.target_col:
            raise ValueError(f"columns.target_multiplier is the target column {m!r} itself; name the per-unit value column")
        return self

    @property
    def modelled_target(self) -> str:
        """The target column the model sees: ``target_col``, or ``columns.target_name`` (default
        ``revenue``) when ``columns.target_multiplier`` is set."""
        if self.columns.target_multiplier is None:
            return self.target_col
        return self.columns.modelled_target_default

    @property
    def sampler(self) -> str:
        """The NUTS sampler to use: ``nuts_sampler``, with ``auto`` resolved by model (baseline: numpyro, else nutpie).

        Chosen by what a user waits for over a first run of a new channel set and three reruns (README
        "Performance"): the baseline model is small, so JAX's compile in seconds (cached) wins; learned transforms
        and pooled entities need many gradient evaluations per draw, where nutpie's sampler wins as panels grow."""
        if self.nuts_sampler != "auto":
            return self.nuts_sampler
        return "numpyro" if self.model.is_baseline else "nutpie"

    def decay_for(self, driver: str) -> float:
        """Adstock decay of one driver (per-channel override or the default)."""
        a = self.feature_config.adstock
        return a.per_channel.get(driver, a.decay_default)


def _all_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, f in model.model_fields.items():
        out.append(prefix + name)
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(_all_fields(ann, prefix + name + "."))
    return out


def _format_error(err: ValidationError, source: str) -> str:
    known = _all_fields(RunSpec)
    lines = [f"invalid run spec {source}:"]
    errors = err.errors()
    for e in errors[:_SHOWN_ERRORS]:
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            leaf = str(e["loc"][-1])
            parent = ".".join(str(p) for p in e["loc"][:-1])
            siblings = [k.rsplit(".", 1)[-1] for k in known if k.rsplit(".", 1)[0] == parent or (not parent and "." not in k)]
            hint = difflib.get_close_matches(leaf, siblings, n=1)
            msg = f"unknown key {loc!r}" + (f" — did you mean {hint[0]!r}?" if hint else f"; allowed here: {sorted(set(siblings))}")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {_short_repr(got)})"
            msg = f"{loc or 'spec'}: {e['msg']}{shown}"
        lines.append(f"  - {msg}")
    if len(errors) > _SHOWN_ERRORS:
        lines.append(f"  … and {len(errors) - _SHOWN_ERRORS:,} more")
    return "\n".join(lines)


_SHOWN_ERRORS = 20


def _short_repr(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _set_path(d: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    if not all(k.strip() for k in keys):
        raise SpecError(f"--set {dotted!r}: a part of the key is empty; write the key with dots between sections, "
                        "e.g. --set windows.estimation_months=24")
    cur = d
    for k in keys[:-1]:
        nxt = cur.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise SpecError(f"--set {dotted}: {k!r} is not a section; set its whole value instead, e.g. --set {k}=...")
        cur = nxt
    cur[keys[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML: ``draws=200``, ``drivers=[act_tv]``).

    Values are read exactly as a spec file is (:func:`mmm_lib.spec_yaml.parse_yaml`: plain values only,
    no tags or aliases, finite numbers); a bad one is a :class:`SpecError` naming the key and the fix.
    """
    if not isinstance(raw, dict):
        raise SpecError(f"the run spec must be a mapping of keys to values (key: value lines), not a {type(raw).__name__}; "
                        "--set can only change keys of such a spec")
    try:
        raw = spec_yaml.plain_copy(raw)  # a checked deep copy
    except spec_yaml.SpecTextError as e:
        raise SpecError(f"invalid run spec: {e}") from None
    for item in overrides or []:
        if "=" not in item:
            raise SpecError(f"--set {item!r}: expected key=value, e.g. --set draws=200")
        key, val = item.split("=", 1)
        key = key.strip()
        try:
            value = spec_yaml.plain_copy(spec_yaml.parse_yaml(val), key)
        except spec_yaml.SpecTextError as e:
            shown = val if len(val) <= 80 else f"{val[:80]}…"
            raise SpecError(f"--set {key}={shown}: {e}. Give a plain value, e.g. --set draws=200 "
                            "or --set drivers=[act_tv,act_search]") from None
        _set_path(raw, key, value)
    return raw


DATA_PATHS_ENV = "MMM_DATA_PATHS"


def allowed_data_roots(spec_dir: Path | None = None) -> list[Path]:
    """Folders a spec's ``data_path`` may point into (symlinks resolved).

    The repository, the spec file's folder, the current working directory, and each folder listed
    in ``$MMM_DATA_PATHS`` (separated by ``os.pathsep``: ``:`` on Linux/macOS, ``;`` on Windows).
    """
    roots = [Path(__file__).resolve().parent.parent, Path.cwd()]
    if spec_dir is not None:
        roots.insert(1, Path(spec_dir))
    roots += [Path(p).expanduser() for p in os.environ.get(DATA_PATHS_ENV, "").split(os.pathsep) if p.strip()]
    return list(dict.fromkeys(r.resolve() for r in roots))


def check_data_path(data_path: str | Path, spec_dir: Path | None = None, key: str = "data_path") -> Path:
    """Refuse a ``data_path`` outside :func:`allowed_data_roots` (so a spec cannot read arbitrary files).

    Parameters
    ----------
    data_path
        The path as given (relative paths are relative to ``spec_dir``, or the working directory).
    spec_dir
        The folder of the spec file, if the spec came from a file.

    Returns
    -------
    Path
        The resolved path (symlinks followed).

    Raises
    ------
    SpecError
        Naming the path, what it resolves to, the allowed folders and how to allow another folder.
    """
    given = Path(data_path).expanduser()
    base = Path(spec_dir) if spec_dir is not None else Path.cwd()
    real = (given if given.is_absolute() else base / given).resolve()
    roots = allowed_data_roots(spec_dir)
    if any(real.is_relative_to(r) for r in roots):
        try:
            mode = os.stat(real).st_mode  # stat, never open: opening a FIFO would block
        except OSError:
            return real  # not there (yet): reading it says so
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, device or socket)"
            raise SpecError(f"{key} {str(data_path)!r} is {kind}; point {key} at a CSV or Parquet file")
        return real
    via = f" (resolves to {str(real)!r})" if str(real) != str(given) else ""
    raise SpecError(
        f"{key} {str(data_path)!r}{via} is outside the folders a run spec may read data from: "
        f"{', '.join(str(r) for r in roots)}. Move the file into one of them (e.g. next to the spec), or allow "
        f"its folder by setting the environment variable {DATA_PATHS_ENV}={real.parent} "
        f"(several folders separated by {os.pathsep!r})"
    )


def parse_spec(
    raw: dict[str, Any], source: str = "<dict>", base_dir: Path | None = None, *, check_path: bool = True
) -> RunSpec:
    """Validate a plain dict as a :class:`RunSpec`.

    A relative ``data_path`` resolves against ``base_dir`` (the spec file's folder); ``data_path``
    must lie inside :func:`allowed_data_roots` (``check_path=False`` only for a spec this toolkit
    already checked, see :func:`load_spec`).
    """
    if not isinstance(raw, dict):
        raise SpecError(f"run spec {source} must be a mapping of keys to values, got {type(raw).__name__}")
    try:
        bad = spec_yaml.find_non_finite(raw)
    except spec_yaml.SpecTextError as e:
        raise SpecError(f"invalid run spec {source}:\n  - {e}") from None
    if bad is not None:
        raise SpecError(f"invalid run spec {source}:\n  - {spec_yaml.non_finite_message(*bad)}")
    try:
        spec = RunSpec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(_format_error(e, source)) from None
    if spec.data_path is not None:
        if check_path:
            real = check_data_path(spec.data_path, base_dir)
            if base_dir is not None:
                spec.data_path = str(real)
        elif base_dir is not None and not Path(spec.data_path).is_absolute():
            spec.data_path = str((base_dir / spec.data_path).resolve())
    scenario = spec.optimize.scenario_path if spec.optimize is not None else None
    if scenario is not None:  # an input file too: relative to the spec's folder, inside the same allowed folders
        if check_path:
            real = check_data_path(scenario, base_dir, key="optimize.scenario_path")
            if base_dir is not None:
                spec.optimize.scenario_path = str(real)
        elif base_dir is not None and not Path(scenario).is_absolute():
            spec.optimize.scenario_path = str((base_dir / scenario).resolve())
    return spec


def _is_run_spec_copy(path: Path) -> bool:
    """``<outputs>/runs/<run_id>/run_spec.json``: written by the runner (or 01_validate) after its
    ``data_path`` passed :func:`check_data_path` against the user's spec folder, which the copy's
    own folder no longer is."""
    from .storage import outputs_root  # storage imports this module

    real = path.resolve()
    runs = outputs_root() / "runs"
    return real.name == "run_spec.json" and real.parent.parent == runs.resolve()


def load_spec(path: str | Path, overrides: list[str] | None = None) -> RunSpec:
    """Load a YAML or JSON run spec (safely), apply ``--set`` overrides and validate it.

    Parameters
    ----------
    path
        The spec file. A relative ``data_path`` inside it is relative to the spec file's folder, and
        ``data_path`` must lie inside the allowed folders (:func:`allowed_data_roots`).
    overrides
        ``key=value`` strings, dotted keys for nested fields (``windows.estimation_months=24``).
    """
    path = Path(path)
    try:
        text = spec_yaml.read_spec_text(path)
    except spec_yaml.SpecFileMissing:
        raise SpecError(f"run spec not found: {path} (pass the path of a YAML file such as params/example.yaml)") from None
    except spec_yaml.SpecTextError as e:
        raise SpecError(f"run spec {path} {e}") from None
    try:
        raw = spec_yaml.parse_yaml(text)
    except spec_yaml.SpecTextError as e:
        raise SpecError(f"run spec {path} is not valid YAML for a run spec: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(f"run spec {path} must be a mapping of keys to values (key: value lines, e.g. drivers: [act_tv]), "
                        f"but it holds a {type(raw).__name__}; write the spec as keys and values (see params/example.yaml)")
    try:
        spec_yaml.plain_copy(raw)  # sizes and finite numbers, named with the file (apply_overrides checks again)
    except spec_yaml.SpecTextError as e:
        raise SpecError(f"invalid run spec {path}:\n  - {e}") from None
    raw = apply_overrides(raw, overrides)
    trusted = not overrides and _is_run_spec_copy(path)
    return parse_spec(raw, source=str(path), base_dir=path.resolve().parent, check_path=not trusted)


def spec_to_dict(spec: RunSpec) -> dict[str, Any]:
    """The spec as plain JSON-able data (what ``run_spec.json`` holds)."""
    return spec.model_dump(mode="json")

"""Stage 07_optimize in library calls: read a fitted run, recommend a budget split, curves and scenarios, write.

``optimize_stage(run, overrides)`` is what the 07 notebook and ``mmm optimize`` call: the spec's
``optimize`` section (defaults when it has none) updated with ``overrides`` (the CLI's ``--budget``,
``--bounds``, ``--scenario``), validated as the spec is. A scenario file is copied into the run folder
(``scenario_plan.csv``) so the run keeps what its forecast was made from.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..canonicalize import period_offset
from ..contributions import INPUT_ARGS as CONTRIBUTION_ARGS
from ..spec import OptimizeConfig, SpecError
from ..stages import read_inputs, write_outputs
from .curves import breakeven_spend, response_curves
from .recommend import PlanContext, plan_context, plan_summary, recommend
from .scenario import forecast, read_scenario, scenario_model, scenario_spend

STAGE = "07_optimize"
SCENARIO_COPY = "scenario_plan.csv"
# artifact (stages.STAGE_IO["07_optimize"] inputs, the same as 06's) -> keyword argument
INPUT_ARGS = CONTRIBUTION_ARGS


@dataclass
class OptimizeResult:
    """What stage 07 computes: ``optimization.json``, ``response_curves.parquet``, ``scenario.parquet``."""

    optimization: dict[str, Any]
    curves: pd.DataFrame
    scenario: pd.DataFrame
    context: PlanContext | None = None


def settings_for(spec_optimize: Any, overrides: dict[str, Any] | None = None) -> OptimizeConfig:
    """The spec's ``optimize`` section (or the defaults) with ``overrides`` applied, validated like the spec.

    Raises
    ------
    SpecError
        Naming the ``optimize.<key>`` that is wrong.
    """
    from pydantic import ValidationError

    base = spec_optimize.model_dump() if isinstance(spec_optimize, OptimizeConfig) else dict(spec_optimize or {})
    merged = {**base, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    if overrides and "bounds" in overrides and overrides["bounds"] is not None:
        merged["bounds"] = {**(base.get("bounds") or {}), **overrides["bounds"]}
    try:
        return OptimizeConfig.model_validate(merged)
    except ValidationError as e:
        lines = [f"optimize.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
        raise SpecError("invalid optimize settings:\n  - " + "\n  - ".join(lines)) from None


def compute_optimization(canonical_df: pd.DataFrame, column_info: dict[str, Any], features_df: pd.DataFrame,
                         feature_metadata: dict[str, Any], feature_scaler: dict[str, Any], model_metadata: dict[str, Any],
                         idata: Any, settings: OptimizeConfig, random_seed: int = 0, scenario: str | Path | pd.DataFrame | None = None,
                         labels: dict[str, str] | None = None) -> OptimizeResult:
    """Recommendation, response curves and the forecast of the current, recommended and (if given) scenario plans."""
    ctx = plan_context(canonical_df, column_info, features_df, feature_metadata, feature_scaler, model_metadata, idata, settings)
    opt = recommend(ctx, settings, random_seed)
    curves = response_curves(ctx.model, settings.curve_max_multiplier)
    for row in opt["channels"]:
        row["breakeven_spend"] = breakeven_spend(curves, row["channel"])
    h = ctx.horizon
    plans = {"current": h.laid_out(h.current), "recommended": h.laid_out(np.asarray(opt["allocation"]))}
    frames = [forecast(ctx.model, plans, random_seed)]
    opt["scenario"] = None
    if scenario is not None:
        step = period_offset(str(column_info.get("grain") or feature_metadata.get("grain") or "WEEK"))  # type: ignore[arg-type]
        table, n = read_scenario(scenario, h.periods[0], step, h.entities, h.channels, dict(column_info.get("spend") or {}),
                                 labels, h.plannable)  # fmt: skip
        sm = scenario_model(ctx.model, canonical_df, column_info, features_df, n)
        spend = scenario_spend(table, sm.horizon)
        fc = forecast(sm, {"scenario": spend}, random_seed + 7)
        frames.append(fc)
        inc = sm.incremental_flighted(spend)
        opt["scenario"] = {"source": SCENARIO_COPY if not isinstance(scenario, pd.DataFrame) else "<table>",
                           "periods": n, "start": sm.horizon.periods[0].date().isoformat(),
                           "end": sm.horizon.periods[-1].date().isoformat(), "rows": int(len(table)),
                           "spend": float(spend.sum()),
                           "spend_by_channel": {c: float(spend[:, :, j].sum()) for j, c in enumerate(h.channels)},
                           **{k: v for k, v in plan_summary(inc, float(spend.sum())).items() if k != "spend"}}  # fmt: skip
    return OptimizeResult(opt, curves, pd.concat(frames, ignore_index=True), ctx)


def optimize_stage(run: Any, overrides: dict[str, Any] | None = None) -> OptimizeResult:
    """Stage 07 in one call: settings from the run's spec and ``overrides``, compute, write the three artifacts.

    ``overrides`` keys are :class:`~mmm_lib.spec.OptimizeConfig` fields (``budget``, ``bounds``,
    ``scenario_path`` …). A scenario path is read, checked and copied into the run folder first.
    """
    settings = settings_for(run.spec.optimize, overrides)
    src = None
    if settings.scenario_path:
        src = Path(settings.scenario_path).expanduser()  # absolute: the spec (or mmm optimize) resolved it
        if not src.is_file():
            raise SpecError(f"optimize.scenario_path {settings.scenario_path!r} is not a file; give the path of a CSV with "
                            "period_start, channel[, entity_id], spend")  # fmt: skip
    inputs = read_inputs(run, STAGE)
    args = {INPUT_ARGS[k]: v for k, v in inputs.items()}
    result = compute_optimization(**args, settings=settings, random_seed=int(run.spec.random_seed), scenario=src,
                                  labels=dict(run.spec.labels or {}))  # fmt: skip
    result.optimization["settings"] = settings.model_dump(mode="json")
    if src is not None:  # kept with the run once it was read without error: what the forecast was made from
        dest = run.path(SCENARIO_COPY)
        if src.resolve() != dest.resolve():
            shutil.copyfile(src, dest)
        result.optimization["scenario"]["given_as"] = str(settings.scenario_path)
    write_outputs(run, STAGE, {"optimization.json": result.optimization, "response_curves.parquet": result.curves,
                               "scenario.parquet": result.scenario})  # fmt: skip
    return result


__all__ = ["INPUT_ARGS", "OptimizeResult", "SCENARIO_COPY", "STAGE", "compute_optimization", "optimize_stage", "settings_for"]

"""Scenarios: a planned flighting (spend per period, channel and optionally entity) → forecast sales.

A scenario file is a CSV with one row per planned amount: ``period_start``, ``channel`` (the driver,
its spend column or its display name), optionally ``entity_id``, and ``spend``. Its periods must come
after the data's last period; periods in between, and channels it does not name, get no spend. Without
``entity_id`` an entity-level model splits each channel's amount over entities as the current plan
does. The forecast per period is the posterior predictive distribution of sales (the model's own
likelihood, :meth:`mmm_lib.model.MMM.likelihood`, drawn per posterior draw) and the expected
incremental sales of the planned spend over no planned spend (carryover from the data included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..labels import display_names
from .horizon import Horizon, build_horizon
from .plan import PlanModel, entity_split

BRAND = "brand"
_ALIASES = {"period_start": ("period_start", "period", "week", "date", "month"), "channel": ("channel", "driver", "media"),
            "entity_id": ("entity_id", "entity", "store", "geo"), "spend": ("spend", "amount", "budget", "cost")}  # fmt: skip


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the row or column and the fix."""


def _columns(df: pd.DataFrame, source: str) -> dict[str, str]:
    lower = {str(c).strip().lower(): c for c in df.columns}
    found = {}
    for role, names in _ALIASES.items():
        hit = next((lower[n] for n in names if n in lower), None)
        if hit is not None:
            found[role] = hit
    missing = [r for r in ("period_start", "channel", "spend") if r not in found]
    if missing:
        raise ScenarioError(f"scenario {source} has no column for {missing} (columns: {list(df.columns)}); "
                            "a scenario needs period_start, channel and spend (and optionally entity_id)")  # fmt: skip
    return found


def read_scenario(source: str | Path | pd.DataFrame, horizon_start: pd.Timestamp, step: Any, entities: list[str],
                  channels: list[str], spend_cols: dict[str, str], labels: dict[str, str] | None = None,
                  plannable: list[str] | None = None) -> tuple[pd.DataFrame, int]:
    """The scenario as a tidy table ``period, entity_id (or None), channel, spend`` and the horizon length it needs.

    Raises
    ------
    ScenarioError
        Missing columns, unknown channels or entities, periods before the horizon or off the grain,
        repeated rows, or missing / negative spend, each naming the row and the fix.
    """
    name = "<table>" if isinstance(source, pd.DataFrame) else str(source)
    if isinstance(source, pd.DataFrame):
        df = source.copy()
    else:
        try:
            df = pd.read_csv(source)
        except (OSError, ValueError, pd.errors.ParserError) as e:
            raise ScenarioError(f"scenario {source} cannot be read as CSV: {e}") from None
    if df.empty:
        raise ScenarioError(f"scenario {name} has no rows; give period_start, channel and spend for each planned amount")
    cols = _columns(df, str(name))
    names = display_names(channels, labels)
    lookup = {}
    for ch in channels:
        for alias in (ch, spend_cols.get(ch), names.get(ch)):
            if alias:
                lookup[str(alias).strip().lower()] = ch
    out = pd.DataFrame({"row": np.arange(len(df)) + 2})  # CSV line numbers (header is line 1)
    raw_ch = df[cols["channel"]].astype(str).str.strip()
    out["channel"] = raw_ch.str.lower().map(lookup)
    bad = out["channel"].isna()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ScenarioError(f"scenario {name} line {out['row'][i]}: channel {raw_ch.iloc[i]!r} is not a modelled channel; "
                            f"use one of {channels} (or their spend columns / display names)")  # fmt: skip
    if plannable is not None:
        unplannable = sorted(set(out["channel"]) - set(plannable))
        if unplannable:
            raise ScenarioError(f"scenario {name} plans {unplannable}, which have no spend to turn into activity "
                                f"(no spend column or no activity in the estimation window); plan only {plannable}")  # fmt: skip
    periods = pd.to_datetime(df[cols["period_start"]], errors="coerce")
    if periods.isna().any():
        i = int(np.flatnonzero(periods.isna())[0])
        raise ScenarioError(f"scenario {name} line {out['row'][i]}: period_start {df[cols['period_start']].iloc[i]!r} is not a "
                            "date; write dates as YYYY-MM-DD")  # fmt: skip
    grid = pd.date_range(horizon_start, periods.max() + step, freq=step) if periods.max() >= horizon_start else pd.DatetimeIndex([])
    pos = grid.get_indexer(periods)
    if (pos < 0).any():
        i = int(np.flatnonzero(pos < 0)[0])
        when = periods.iloc[i].date()
        why = (f"is before the first period after the data ({horizon_start.date()})" if periods.iloc[i] < horizon_start
               else f"is not a period start on the data's grid (periods start {horizon_start.date()}, then every {step})")
        raise ScenarioError(f"scenario {name} line {out['row'][i]}: period_start {when} {why}; plan periods after the data")
    out["period"] = pos
    spend = pd.to_numeric(df[cols["spend"]], errors="coerce")
    if spend.isna().any() or (spend < 0).any() or not np.isfinite(spend).all():
        i = int(np.flatnonzero(spend.isna() | (spend < 0) | ~np.isfinite(spend.fillna(0)))[0])
        raise ScenarioError(f"scenario {name} line {out['row'][i]}: spend {str(df[cols['spend']].iloc[i])} is not an amount >= 0")
    out["spend"] = spend.to_numpy(dtype=float)
    if "entity_id" in cols:
        ent = df[cols["entity_id"]].astype(str).str.strip()
        unknown = ~ent.isin(entities)
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise ScenarioError(f"scenario {name} line {out['row'][i]}: entity {ent.iloc[i]!r} is not one of the model's "
                                f"entities {entities[:8]}{' …' if len(entities) > 8 else ''}; drop the column to split by "
                                "the current plan")  # fmt: skip
        out["entity_id"] = ent.to_numpy()
    else:
        out["entity_id"] = None
    key = ["period", "channel", "entity_id"]
    dup = out.duplicated(key, keep=False)
    if dup.any():
        rows = out.loc[dup, "row"].tolist()[:4]
        raise ScenarioError(f"scenario {name} lines {rows} plan the same period and channel{' and entity' if 'entity_id' in cols else ''} "
                            "twice; give one row per amount")  # fmt: skip
    return out, len(grid) - 1 if len(grid) else 0


def scenario_spend(table: pd.DataFrame, horizon: Horizon) -> np.ndarray:
    """(E, H, C) spend per period from :func:`read_scenario`'s table (entity split by the current plan when not given)."""
    E, C = horizon.current.shape
    out = np.zeros((E, horizon.n_periods, C))
    split = entity_split(horizon)
    for r in table.itertuples(index=False):
        c = horizon.channels.index(r.channel)
        if r.entity_id is None:
            out[:, r.period, c] += r.spend * split[:, c]
        else:
            out[horizon.entities.index(r.entity_id), r.period, c] += r.spend
    return out


def forecast(model: PlanModel, plans: dict[str, np.ndarray], random_seed: int = 0, interval: float = 0.9) -> pd.DataFrame:
    """Per plan (name → spend per period (E, H, C)), period and entity (and brand): predictive sales and incremental sales.

    Returns
    -------
    pandas.DataFrame
        ``plan, period_start, part ("horizon" | "carryover"), entity_id, spend, expected_sales, sales_low,
        sales_high, incremental, incremental_low, incremental_high``; ``sales_*`` is the posterior predictive
        interval (noise included), ``incremental`` the expected sales over those with no planned spend.
    """
    import pymc as pm

    mmm, h = model.mmm, model.horizon
    tail = (1.0 - interval) / 2.0
    periods = h.window_periods()
    part = np.array(["horizon"] * h.n_periods + ["carryover"] * len(h.tail_periods))
    center = mmm.data.target_center[None, :, None]
    sigma = np.asarray(model.draws["sigma"], dtype=float)
    sigma = sigma[:, :, None] if sigma.ndim == 2 else sigma[:, None, None]
    nu = np.asarray(model.draws["nu"], dtype=float)[:, None, None]
    frames = []
    for k, (name, spend) in enumerate(plans.items()):
        sales = model.window(h.flighted(spend))  # (S, E, T)
        inc = sales - model.none
        mu = np.log1p(sales) - center
        z = pm.draw(mmm.likelihood(mu, sigma, nu), random_seed=random_seed + k)
        pred = np.expm1(z + center)
        spend_t = np.concatenate([spend.sum(axis=2), np.zeros((spend.shape[0], len(h.tail_periods)))], axis=1)  # (E, T)
        series = [(BRAND, slice(None))] + ([(e, [i]) for i, e in enumerate(h.entities)] if len(h.entities) > 1 else [])
        for ent, idx in series:
            p, x = pred[:, idx].sum(axis=1), inc[:, idx].sum(axis=1)
            frames.append(pd.DataFrame({
                "plan": name, "period_start": periods, "part": part, "entity_id": ent,
                "spend": spend_t[idx].sum(axis=0), "expected_sales": sales[:, idx].sum(axis=1).mean(axis=0),
                "sales_low": np.quantile(p, tail, axis=0), "sales_high": np.quantile(p, 1 - tail, axis=0),
                "incremental": x.mean(axis=0), "incremental_low": np.quantile(x, tail, axis=0),
                "incremental_high": np.quantile(x, 1 - tail, axis=0),
            }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def scenario_model(model: PlanModel, canonical_df: pd.DataFrame, column_info: dict[str, Any], features_df: pd.DataFrame,
                   n_periods: int) -> PlanModel:
    """The plan model over a horizon of ``n_periods`` (a scenario longer or shorter than the optimizer's)."""
    if n_periods == model.horizon.n_periods:
        return model
    from ..contributions import _align

    can, feat = _align(canonical_df, features_df)
    h = build_horizon(model.mmm, can, column_info, feat, n_periods)
    return PlanModel(model.mmm, model.draws, h, model.n_draws)

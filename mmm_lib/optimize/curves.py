"""Response curves over the planning horizon: a channel's incremental sales as a function of its spend.

Each point scales one channel's planned spend (all entities alike) by a multiplier from 0 to
``optimize.curve_max_multiplier`` × its current spend, the other channels staying at the current plan,
and evaluates the plan model (:class:`~mmm_lib.optimize.plan.PlanModel`): incremental sales are those
with the channel at that spend minus those with the channel at 0, per posterior draw (carryover into
the horizon and the tail after it included). Entity-level models give one curve per entity too (the
entity's own spend on the x axis); ``entity_id == "brand"`` rows are the sums.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .plan import PlanModel

BRAND = "brand"
POINTS = 21


def response_curves(model: PlanModel, max_multiplier: float = 2.0, points: int = POINTS, interval: float = 0.9) -> pd.DataFrame:
    """One row per channel × entity (and brand) × spend multiplier.

    Returns
    -------
    pandas.DataFrame
        ``entity_id, channel, multiplier, spend, incremental, incremental_low, incremental_high, roi,
        marginal_roi, current``: ``roi`` = incremental / spend, ``marginal_roi`` the slope of the mean
        curve (sales per extra unit of spend), ``current`` marks the current plan (multiplier 1).
        Channels the plan does not set, or that spent nothing in the current plan, have no curve.
    """
    h = model.horizon
    mults = np.unique(np.append(np.linspace(0.0, max_multiplier, points), 1.0))
    tail = (1.0 - interval) / 2.0
    by_entity = len(h.entities) > 1
    frames = []
    for c in h.plannable_index:
        if h.current[:, c].sum() <= 0:
            continue
        base = h.current.copy()
        base[:, c] = 0.0
        off = model.incremental(base, by_entity=True)  # (S, E)
        inc = np.stack([model.incremental(np.where(np.arange(base.shape[1]) == c, h.current * m, h.current), by_entity=True) - off
                        for m in mults], axis=-1)  # (S, E, M)  # fmt: skip
        series = [(BRAND, inc.sum(axis=1), h.current[:, c].sum())]
        if by_entity:
            series += [(e, inc[:, i], h.current[i, c]) for i, e in enumerate(h.entities) if h.current[i, c] > 0]
        for ent, x, cur in series:
            mean = x.mean(axis=0)
            lo, hi = np.quantile(x, [tail, 1 - tail], axis=0)
            spend = mults * cur
            frames.append(pd.DataFrame({
                "entity_id": ent, "channel": h.channels[c], "multiplier": mults, "spend": spend,
                "incremental": mean, "incremental_low": lo, "incremental_high": hi,
                "roi": np.divide(mean, spend, out=np.full_like(mean, np.nan), where=spend > 0),
                "marginal_roi": np.gradient(mean, spend), "current": np.isclose(mults, 1.0),
            }))  # fmt: skip
    cols = ["entity_id", "channel", "multiplier", "spend", "incremental", "incremental_low", "incremental_high", "roi",
            "marginal_roi", "current"]  # fmt: skip
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def breakeven_spend(curves: pd.DataFrame, channel: str, entity: str = BRAND) -> float | None:
    """Spend where the mean curve's marginal ROI falls below 1 (linear between grid points); None if it never does
    on the curve, 0 if it is below 1 from the start."""
    g = curves[(curves["channel"] == channel) & (curves["entity_id"] == entity)].sort_values("spend")
    m, s = g["marginal_roi"].to_numpy(dtype=float), g["spend"].to_numpy(dtype=float)
    below = np.flatnonzero(m < 1.0)
    if not len(below):
        return None
    i = int(below[0])
    if i == 0:
        return 0.0
    return float(s[i - 1] + (s[i] - s[i - 1]) * (m[i - 1] - 1.0) / (m[i - 1] - m[i]))


def curve_marks(curves: pd.DataFrame, optimization: dict[str, Any]) -> pd.DataFrame:
    """Current and recommended spend per channel (brand) with the curve's value there, for plotting marks."""
    rows = []
    for ch in optimization.get("channels", []):
        g = curves[(curves["channel"] == ch["channel"]) & (curves["entity_id"] == BRAND)].sort_values("spend")
        if g.empty:
            continue
        for what in ("current", "recommended"):
            sp = float(ch[f"{what}_spend"])
            rows.append({"channel": ch["channel"], "plan": what, "spend": sp,
                         "incremental": float(np.interp(sp, g["spend"], g["incremental"]))})  # fmt: skip
    return pd.DataFrame(rows, columns=["channel", "plan", "spend", "incremental"])

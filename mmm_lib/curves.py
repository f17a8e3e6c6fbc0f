"""Response curves: incremental sales over the estimation window as a function of a channel's spend.

Every point is the fitted model's own counterfactual (:meth:`mmm_lib.model.MMM.expected_sales`): the
channel's activity in every row (carryover included) is scaled by a multiplier ``m``, everything else
kept, and compared with the same window with the channel off. Spend scales with activity at the
window's cost per unit, so the x axis is ``m × spend``; ``m = 1`` is the observed plan, whose
incremental sales are the ROI numerator. Entity-level models are evaluated per entity and summed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .model import MMM

MULTIPLIERS = np.round(np.linspace(0.0, 2.0, 21), 3)
MAX_CURVE_DRAWS = 200  # evenly thinned posterior draws per curve point: enough for a 90% band, 10x cheaper than all


def _thin(draws: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    s = next(iter(draws.values())).shape[0]
    idx = np.unique(np.linspace(0, s - 1, min(n, s)).astype(int))
    return {k: v[idx] for k, v in draws.items()}


def response_curves(
    mmm: MMM, draws: dict[str, np.ndarray], spend: dict[str, float], multipliers: np.ndarray = MULTIPLIERS,
    interval: float = 0.9, max_draws: int = MAX_CURVE_DRAWS,
) -> pd.DataFrame:
    """Incremental sales (mean and interval) per channel at each spend multiplier.

    Parameters
    ----------
    mmm
        The fitted run's model (:func:`mmm_lib.contributions.model_for`).
    draws
        Posterior draws (:func:`mmm_lib.model.posterior_draws`); thinned to ``max_draws``.
    spend
        Channel → spend over the estimation window (brand total); channels without spend are skipped.
    multipliers
        Multiples of the observed activity (and spend) to evaluate; 0 must be the first.

    Returns
    -------
    pandas.DataFrame
        ``channel, multiplier, spend, incremental, incremental_low, incremental_high, roi, marginal_roi``;
        ``roi`` is incremental / spend, ``marginal_roi`` the slope of the mean curve (sales per extra unit of spend).
    """
    d = mmm.data
    dr = _thin(draws, max_draws)
    tail = (1.0 - interval) / 2.0
    rows = []
    for c, ch in enumerate(d.channels):
        if not spend.get(ch):
            continue
        inc = np.zeros((next(iter(dr.values())).shape[0], len(multipliers)))
        for e in range(len(d.entities)):
            act = d.activity[e : e + 1]
            totals = []
            for m in multipliers:
                a = act.copy()
                a[..., c] *= m
                totals.append(mmm.expected_sales(dr, a, [e])[:, 0].sum(axis=1))
            inc += np.column_stack(totals) - totals[0][:, None]
        mean = inc.mean(axis=0)
        lo, hi = np.quantile(inc, [tail, 1 - tail], axis=0)
        sp = np.asarray(multipliers) * spend[ch]
        marginal = np.gradient(mean, sp) if len(sp) > 1 else np.full_like(mean, np.nan)
        for i, m in enumerate(multipliers):
            rows.append({"channel": ch, "multiplier": float(m), "spend": float(sp[i]), "incremental": float(mean[i]),
                         "incremental_low": float(lo[i]), "incremental_high": float(hi[i]),
                         "roi": float(mean[i] / sp[i]) if sp[i] > 0 else None, "marginal_roi": float(marginal[i])})  # fmt: skip
    return pd.DataFrame(rows)


def curve_table(curves: pd.DataFrame, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per channel at the observed spend: marginal ROI, and the spend where marginal ROI falls below 1.

    Numbers are text for reading (spend with thousands separators, ROI to 2 decimals); channels by
    display name (:mod:`mmm_lib.labels`). Average ROI is left to the ROI table (all draws); curves use
    :data:`MAX_CURVE_DRAWS` thinned draws.
    """
    from .contributions import one_header_row
    from .labels import display_names

    names = display_names(pd.unique(curves["channel"]), labels) if len(curves) else {}
    out = []
    for ch, g in curves.groupby("channel", sort=False):
        now = g.loc[(g["multiplier"] - 1.0).abs().idxmin()]
        below = g[(g["multiplier"] > 0) & (g["marginal_roi"] < 1.0)]
        falls = f"not up to {g['spend'].max():,.0f}" if below.empty else f"{below['spend'].iloc[0]:,.0f}"
        out.append({"channel": names[ch], "spend": f"{float(now['spend']):,.0f}",
                    "marginal ROI at current spend": f"{float(now['marginal_roi']):.2f}",
                    "marginal ROI falls below 1 from spend": falls})  # fmt: skip
    cols = ["channel", "spend", "marginal ROI at current spend", "marginal ROI falls below 1 from spend"]
    return one_header_row(pd.DataFrame(out, columns=cols).set_index("channel"))


def spend_by_channel(roi: dict[str, Any]) -> dict[str, float]:
    """Channel → brand spend over the window, from ``roi_metrics.json``."""
    return {c["channel"]: float(c["spend"]) for c in roi.get("channels", []) if c.get("spend")}


def curves_for(result: Any) -> pd.DataFrame:
    """:func:`response_curves` of a stage-06 result (:class:`~mmm_lib.contributions.ContributionResult`):
    its model object, draws and spend, so nothing is rebuilt or reread."""
    if result.model is None or result.draws is None:
        raise ValueError("this contributions result carries no model: compute it with compute_contributions")
    return response_curves(result.model, result.draws, spend_by_channel(result.roi), interval=result.roi.get("interval", 0.9))

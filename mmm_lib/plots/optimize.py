"""Figures for 07_optimize: the recommended split, response and marginal-ROI curves, and the forecast.

Each function takes the stage's outputs (``optimization.json`` as a dict, ``response_curves.parquet`` and
``scenario.parquet`` as DataFrames) and returns a :class:`matplotlib.figure.Figure`. Brand rows only
(``entity_id == "brand"``): the plan is decided for the brand.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..labels import display_names
from ..spec import parse_bound
from . import date_axis, note_figure
from .contributions import _SHORT

BRAND = "brand"
PLAN_STYLE = {  # one look per plan on every figure
    "current": {"color": "0.45", "label": "current plan"},
    "recommended": {"color": "tab:blue", "label": "recommended plan"},
    "scenario": {"color": "tab:orange", "label": "scenario"},
}


def _names(opt: dict[str, Any], labels: dict[str, str] | None) -> dict[str, str]:
    chans = [c["channel"] for c in opt.get("channels", [])]
    return display_names(chans + [c for c in opt.get("all_channels", []) if c not in chans], labels)


def _pct(interval: float) -> str:
    return f"{interval * 100:g}%"


def _periods(horizon: dict[str, Any]) -> str:
    n = int(horizon["periods"])
    unit = {"WEEK": "week", "MONTH": "month"}.get(str(horizon.get("grain", "")).upper(), "period")
    return f"{n} {unit}{'' if n == 1 else 's'}"


def bound_range(opt: dict[str, Any], channel: str) -> tuple[float, float] | None:
    """The channel's allowed spend over the horizon ``(low, high)`` from ``optimization.json``'s settings, or None."""
    s = opt.get("settings")
    row = next((c for c in opt.get("channels", []) if c["channel"] == channel), None)
    if not s or row is None:
        return None
    given = (s.get("bounds") or {}).get(channel)
    kind, a, b = parse_bound(given if given is not None else s.get("default_bound", "±30%"), f"optimize.bounds.{channel}")
    if kind == "pct":
        cur = float(row["current_spend"])
        return cur * max(1.0 - a, 0.0), cur * (1.0 + b)
    return a, b


def _brand(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["entity_id"].astype(str) == BRAND] if "entity_id" in df.columns else df


def plot_allocation(opt: dict[str, Any], labels: dict[str, str] | None = None) -> Figure:
    """Current vs recommended spend per channel over the horizon, with the allowed range and the change in %.

    Parameters
    ----------
    opt
        ``optimization.json``.
    labels
        The run spec's ``labels`` (display names of channels).
    """
    rows = list(opt.get("channels", []))
    if not rows:
        return note_figure("No channel has spend to plan.")
    names = _names(opt, labels)
    fig = Figure(figsize=(9, 0.9 * len(rows) + 1.6), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]  # first channel on top, as in the table
    h = 0.36
    cur = np.array([float(c["current_spend"]) for c in rows])
    rec = np.array([float(c["recommended_spend"]) for c in rows])
    ax.barh(y + h / 2, cur, height=h, color=PLAN_STYLE["current"]["color"], alpha=0.6, label="current plan")
    ax.barh(y - h / 2, rec, height=h, color=PLAN_STYLE["recommended"]["color"], label="recommended plan")
    shown_range = False
    for yi, c in zip(y, rows):
        r = bound_range(opt, c["channel"])
        if r is not None:
            ax.plot(r, [yi - h / 2] * 2, color="black", lw=1.2, marker="|", ms=14, mew=1.5,
                    label=None if shown_range else "allowed range (bounds)")  # fmt: skip
            shown_range = True
        pct = c.get("change_pct")
        text = "" if pct is None else f"{pct:+.0f}%"
        if c.get("at_bound") in ("upper", "lower"):
            text += f"  (at {c['at_bound']} bound)"
        right = max(float(c["recommended_spend"]), r[1] if r else 0.0)
        ax.text(right, yi - h / 2, "  " + text, va="center", fontsize=9)
    ax.set_yticks(y, [names[c["channel"]] for c in rows])
    highs = [r[1] for r in (bound_range(opt, c["channel"]) for c in rows) if r is not None]
    ax.set_xlim(0, max(cur.max(), rec.max(), *highs) * 1.3 + 1e-9)  # room for the change labels
    ax.xaxis.set_major_formatter(_SHORT)
    h_ = opt.get("horizon", {})
    ax.set_xlabel(f"spend over the horizon ({h_.get('start', '')} → {h_.get('end', '')})")
    ax.set_title("Spend by channel: current plan vs recommended plan")
    fig.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


def _mark(g: pd.DataFrame, spend: float) -> float:
    return float(np.interp(spend, g["spend"], g["incremental"]))


def plot_response_curves(curves: pd.DataFrame, opt: dict[str, Any], target: str = "sales",
                         labels: dict[str, str] | None = None) -> Figure:
    """Small multiples, one per channel: incremental sales over the horizon (and its carryover) vs the channel's spend.

    The line is the posterior mean, the band its interval; the circle the current spend, the star the
    recommended spend (the other channels at the current plan); the red cross the spend where the marginal
    ROI falls to 1 (break-even on the margin); the shaded span the allowed range.

    Parameters
    ----------
    curves
        ``response_curves.parquet``.
    opt
        ``optimization.json``.
    target
        Name of the target, for the axis label.
    labels
        The run spec's ``labels``.
    """
    curves = _brand(curves)
    rows = [c for c in opt.get("channels", []) if c["channel"] in set(curves["channel"])]
    if not rows:
        return note_figure("No response curves: no channel spent in the current plan.")
    names = _names(opt, labels)
    n = len(rows)
    cols = min(n, 3)
    nrows = int(np.ceil(n / cols))
    fig = Figure(figsize=(4.1 * cols, 3.5 * nrows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False)).ravel()
    pct = _pct(opt.get("interval", 0.9))
    for ax, c in zip(axes, rows):
        g = curves[curves["channel"] == c["channel"]].sort_values("spend")
        r = bound_range(opt, c["channel"])
        if r is not None:
            ax.axvspan(r[0], min(r[1], float(g["spend"].max())), color="tab:green", alpha=0.08, lw=0, label="allowed range")
        ax.fill_between(g["spend"], g["incremental_low"], g["incremental_high"], color="tab:blue", alpha=0.18, lw=0,
                        label=f"{pct} interval")  # fmt: skip
        ax.plot(g["spend"], g["incremental"], color="tab:blue", lw=1.6, label="incremental sales (mean)")
        cur, rec = float(c["current_spend"]), float(c["recommended_spend"])
        ax.plot([cur], [_mark(g, cur)], "o", color="black", ms=7, label="current spend", zorder=5)
        ax.plot([rec], [_mark(g, rec)], "*", color="tab:orange", ms=14, mec="black", mew=0.6, label="recommended spend",
                zorder=6)  # fmt: skip
        be = c.get("breakeven_spend")
        if be is not None and 0 < float(be) <= float(g["spend"].max()):
            ax.plot([be], [_mark(g, float(be))], "X", color="tab:red", ms=8, label="marginal ROI = 1", zorder=5)
        ax.set_title(f"{names[c['channel']]}: marginal ROI {c['marginal_roi_current']:.2f} → "
                     f"{c['marginal_roi_recommended']:.2f}", fontsize=10)  # fmt: skip
        ax.set_xlabel("spend over the horizon")
        ax.xaxis.set_major_formatter(_SHORT)
        ax.yaxis.set_major_formatter(_SHORT)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.set_ylim(bottom=0)
    for ax in axes[len(rows):]:
        ax.set_axis_off()
    for k in range(0, len(rows), cols):
        axes[k].set_ylabel(f"incremental {target}")
    handles, texts = axes[0].get_legend_handles_labels()
    for ax in axes[1 : len(rows)]:  # a cross only some panels have
        for hd, t in zip(*ax.get_legend_handles_labels()):
            if t not in texts:
                handles.append(hd)
                texts.append(t)
    fig.legend(handles, texts, loc="outside lower center", ncol=min(len(texts), 6), fontsize=8, frameon=False)
    fig.suptitle(f"Response curves over the next {_periods(opt['horizon'])}: one channel's spend from 0 to "
                 f"{float((opt.get('settings') or {}).get('curve_max_multiplier', 2.0)):g}× current, the others at the "
                 "current plan", fontsize=11)  # fmt: skip
    return fig


def plot_marginal_roi(curves: pd.DataFrame, opt: dict[str, Any], labels: dict[str, str] | None = None) -> Figure:
    """Marginal ROI (sales from one more unit of spend) vs spend, one panel per channel, on a shared scale.

    Red dashed: break-even (1.00). Grey dotted: the marginal ROI the channels inside their bounds share at the
    recommendation: the optimizer moves money until every free channel returns the same on the margin.
    """
    curves = _brand(curves)
    rows = [c for c in opt.get("channels", []) if c["channel"] in set(curves["channel"])]
    if not rows:
        return note_figure("No marginal ROI curves: no channel spent in the current plan.")
    names = _names(opt, labels)
    fig = Figure(figsize=(3.6 * len(rows), 3.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(rows), squeeze=False, sharey=True)).ravel()
    common = opt.get("marginal_roi_common")
    for ax, c in zip(axes, rows):
        g = curves[(curves["channel"] == c["channel"]) & (curves["spend"] > 0)].sort_values("spend")
        ax.plot(g["spend"], g["marginal_roi"], color="tab:blue", lw=1.6)
        ax.axhline(1.0, color="tab:red", ls="--", lw=1.0, label="break-even (1.00)")
        if common is not None:
            ax.axhline(float(common), color="0.4", ls=":", lw=1.2, label=f"shared at the recommendation ({common:.2f})")
        ax.plot([c["current_spend"]], [c["marginal_roi_current"]], "o", color="black", ms=7, label="current spend")
        ax.plot([c["recommended_spend"]], [c["marginal_roi_recommended"]], "*", color="tab:orange", ms=14, mec="black",
                mew=0.6, label="recommended spend")  # fmt: skip
        ax.set_title(names[c["channel"]], fontsize=10)
        ax.set_xlabel("spend over the horizon")
        ax.xaxis.set_major_formatter(_SHORT)
        ax.xaxis.set_major_locator(MaxNLocator(4))
    axes[0].set_ylabel("marginal ROI (sales per extra unit)")
    axes[0].set_ylim(bottom=0)
    axes[0].legend(loc="upper right", fontsize=7)
    fig.suptitle("Marginal ROI: what the next unit of spend returns", fontsize=11)
    return fig


def plot_forecast(scenario: pd.DataFrame, opt: dict[str, Any] | None = None, target: str = "sales",
                  interval: float = 0.9) -> Figure:
    """Weekly forecast of each plan (current, recommended, and the scenario when given): expected sales with the
    predictive band (top) and the plan's incremental sales with its interval (bottom); the carryover periods
    after the horizon (no planned spend) shaded.

    Parameters
    ----------
    scenario
        ``scenario.parquet``.
    opt
        ``optimization.json`` (for the title's horizon), optional.
    target
        Name of the target, for the axis label.
    interval
        Probability of the bands (for the legend).
    """
    df = _brand(scenario)
    if df.empty:
        return note_figure("No forecast: scenario.parquet has no brand rows.")
    fig = Figure(figsize=(10.5, 6.4), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    pct = _pct(interval)
    plans = [p for p in PLAN_STYLE if p in set(df["plan"])]
    for p in plans:
        g = df[df["plan"] == p].sort_values("period_start")
        x = pd.to_datetime(g["period_start"])
        st = PLAN_STYLE[p]
        ls = "--" if p == "scenario" else "-"
        top.fill_between(x, g["sales_low"], g["sales_high"], color=st["color"], alpha=0.12, lw=0)
        top.plot(x, g["expected_sales"], color=st["color"], lw=1.8, ls=ls, label=st["label"])
        bottom.fill_between(x, g["incremental_low"], g["incremental_high"], color=st["color"], alpha=0.15, lw=0)
        bottom.plot(x, g["incremental"], color=st["color"], lw=1.8, ls=ls, label=st["label"])
    ref = df[df["plan"] == plans[0]]
    carry = pd.to_datetime(ref.loc[ref["part"] == "carryover", "period_start"])
    if len(carry):
        half = pd.Timedelta(days=3)
        for ax in (top, bottom):
            ax.axvspan(carry.min() - half, carry.max() + half, color="0.5", alpha=0.1, lw=0,
                       label="carryover after the horizon (no planned spend)")  # fmt: skip
    top.set_ylabel(f"{target} per period")
    bottom.set_ylabel(f"incremental {target}")
    bottom.set_xlabel("period start")
    top.yaxis.set_major_formatter(_SHORT)
    bottom.yaxis.set_major_formatter(_SHORT)
    bottom.set_ylim(bottom=0)
    date_axis(bottom)
    top.legend(loc="upper right", fontsize=8, title=f"line: expected; band: {pct} predictive", title_fontsize=8)
    h = (opt or {}).get("horizon")
    when = f" ({h['start']} → {h['end']}, then carryover)" if h else ""
    top.set_title(f"Forecast by plan{when}: expected {target} (band: predicted, noise included)", fontsize=11)
    bottom.set_title(f"Incremental {target} from each plan's spend ({pct} interval)", fontsize=10)
    return fig


__all__ = ["PLAN_STYLE", "bound_range", "plot_allocation", "plot_forecast", "plot_marginal_roi", "plot_response_curves"]

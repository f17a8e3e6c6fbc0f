"""Figures for 06_contribute: fit, decomposition over time, ROI and contribution shares.

Each function takes stage-06 outputs (the tables / dicts of :class:`mmm_lib.contributions.ContributionResult`)
and returns a :class:`matplotlib.figure.Figure`.
"""

from __future__ import annotations

from typing import Any

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def _date_axis(ax: Any) -> None:
    loc = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))


def _pct(interval: float) -> str:
    return f"{interval * 100:g}%"


def plot_fit(
    fitted: pd.DataFrame, fit_metrics: dict[str, Any] | None = None, target: str = "sales", interval: float = 0.9
) -> Figure:
    """Actual vs posterior-mean fitted over the estimation window, with the fitted interval band.

    Parameters
    ----------
    fitted
        ``fitted.parquet``: ``period_start``, ``actual``, ``fitted``, ``fitted_low``, ``fitted_high``.
    fit_metrics
        ``fit_metrics.json``; R² and MAPE go in the title when given.
    target
        Name of the target, for the axis label.
    interval
        Probability of the band (for the legend).
    """
    df = fitted.sort_values("period_start")
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    x = pd.to_datetime(df["period_start"])
    ax.fill_between(x, df["fitted_low"], df["fitted_high"], color="tab:blue", alpha=0.2,
                    label=f"fitted, {_pct(interval)} interval")  # fmt: skip
    ax.plot(x, df["fitted"], color="tab:blue", lw=1.8, label="fitted (posterior mean)")
    ax.plot(x, df["actual"], color="black", lw=1.0, marker="o", ms=2.5, label="actual")
    title = "Actual vs fitted, estimation window"
    if fit_metrics:
        parts = []
        if fit_metrics.get("r2") is not None:
            parts.append(f"R² {fit_metrics['r2']:.3f}")
        if fit_metrics.get("mape") is not None:
            parts.append(f"MAPE {fit_metrics['mape']:.1f}%")
        if parts:
            title += " (" + ", ".join(parts) + ")"
    ax.set_title(title)
    ax.set_xlabel("period start")
    ax.set_ylabel(f"{target} (original units)")
    _date_axis(ax)
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_decomposition(timeseries: pd.DataFrame, target: str = "sales") -> Figure:
    """Stacked area of the posterior-mean baseline and channel contributions over time.

    The layers add up to the posterior-mean fitted value of each period.

    Parameters
    ----------
    timeseries
        ``contributions.parquet`` (long: ``period_start``, ``component``, ``mean``, ...).
    target
        Name of the target, for the axis label.
    """
    wide = timeseries.pivot(index="period_start", columns="component", values="mean").sort_index()
    order = ["baseline"] + [c for c in pd.unique(timeseries["component"]) if c != "baseline"]
    wide = wide[[c for c in order if c in wide.columns]]
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = fig.subplots()
    colors = ["0.75"] + [f"C{i % 10}" for i in range(len(wide.columns) - 1)]
    ax.stackplot(pd.to_datetime(wide.index), wide.to_numpy(dtype=float).T, labels=list(wide.columns),
                 colors=colors, alpha=0.9)  # fmt: skip
    ax.set_title("Fitted sales decomposed: baseline + channel contributions (posterior mean)")
    ax.set_xlabel("period start")
    ax.set_ylabel(f"{target} (original units)")
    _date_axis(ax)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="component")
    return fig


def plot_roi(roi: dict[str, Any]) -> Figure:
    """ROI per channel (posterior mean) with its interval, horizontal, and a break-even line at 1.

    Parameters
    ----------
    roi
        ``roi_metrics.json``; channels whose ROI is null (no spend in the window) are listed in the
        caption instead.
    """
    rows = [c for c in roi.get("channels", []) if c.get("roi") is not None]
    skipped = [c["channel"] for c in roi.get("channels", []) if c.get("roi") is None]
    skipped += list(roi.get("channels_without_spend", []))
    fig = Figure(figsize=(8, 0.6 * max(len(rows), 2) + 1.6), layout="constrained")
    ax = fig.subplots()
    if rows:
        rows = sorted(rows, key=lambda c: c["roi"])
        y = np.arange(len(rows))
        m = np.array([c["roi"] for c in rows])
        lo = np.array([c["roi_low"] for c in rows])
        hi = np.array([c["roi_high"] for c in rows])
        band = f"posterior mean, {_pct(roi.get('interval', 0.9))} interval"
        ax.errorbar(m, y, xerr=[np.clip(m - lo, 0, None), np.clip(hi - m, 0, None)], fmt="o", color="tab:blue",
                    ecolor="tab:blue", capsize=4, label=band)  # fmt: skip
        ax.set_yticks(y, [c["channel"] for c in rows])
        ax.axvline(1.0, color="tab:red", ls="--", lw=1.2, label="break-even (ROI = 1)")
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no channel has spend in the estimation window", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
        ax.set_yticks([])
    ax.set_title("ROI by channel: incremental sales per unit of spend")
    ax.set_xlabel("ROI (sales per unit of spend)")
    ax.set_ylabel("channel")
    if skipped:
        fig.text(0.01, 0.005, "no ROI (no spend column, or no spend in the window): " + ", ".join(map(str, skipped)),
                 fontsize=8, color="0.35")  # fmt: skip
    return fig


def plot_contribution_share(summary: dict[str, Any]) -> Figure:
    """Each channel's share of fitted sales over the window (decomposition), with its interval.

    Parameters
    ----------
    summary
        ``contribution_summary.json``; the baseline's share goes in the title so the channel bars
        stay readable.
    """
    # colours follow channel order, as in plot_decomposition, so a channel looks the same in both
    colour = {c["channel"]: f"C{i % 10}" for i, c in enumerate(summary.get("channels", []))}
    chans = sorted(summary.get("channels", []), key=lambda c: c["share"])
    fig = Figure(figsize=(8, 0.6 * max(len(chans), 2) + 1.6), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(chans))
    m = np.array([c["share"] for c in chans]) * 100.0
    lo = np.array([c["share_low"] for c in chans]) * 100.0
    hi = np.array([c["share_high"] for c in chans]) * 100.0
    ax.barh(y, m, color=[colour[c["channel"]] for c in chans], alpha=0.85)
    ax.errorbar(m, y, xerr=[np.clip(m - lo, 0, None), np.clip(hi - m, 0, None)], fmt="none", ecolor="black",
                capsize=4, label=f"{_pct(summary.get('interval', 0.9))} interval")  # fmt: skip
    ax.set_yticks(y, [c["channel"] for c in chans])
    b = summary["baseline"]
    ax.set_title(
        f"Share of fitted sales by channel (baseline: {b['share'] * 100:.1f}%, "
        f"{b['share_low'] * 100:.1f}–{b['share_high'] * 100:.1f}%)"
    )
    ax.set_xlabel("share of fitted sales over the estimation window (%)")
    ax.set_ylabel("channel")
    if len(chans):
        ax.legend(loc="lower right", fontsize=8)
    return fig

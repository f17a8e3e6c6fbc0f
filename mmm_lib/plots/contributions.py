"""Figures for 06_contribute: fit, decomposition over time, ROI and contribution shares.

Each function takes stage-06 outputs (the tables / dicts of :class:`mmm_lib.contributions.ContributionResult`)
and returns a :class:`matplotlib.figure.Figure`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ..labels import display_names
from . import date_axis, note_figure


def _short_number(x: float, _pos: object = None) -> str:
    """1234567 -> '1.2M', 25000 -> '25k': tick labels that never overlap or switch to 1e6 offsets."""
    a = abs(x)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


_SHORT = FuncFormatter(_short_number)


def _pct(interval: float) -> str:
    return f"{interval * 100:g}%"


def brand_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The brand's rows of a per-period table: all rows of a brand-level run, the ``brand`` rows of an entity-level one."""
    if "entity_id" in df.columns and df["entity_id"].nunique() > 1:
        return df[df["entity_id"] == "brand"]
    return df


def plot_fit(
    fitted: pd.DataFrame, fit_metrics: dict[str, Any] | None = None, target: str = "sales", interval: float = 0.9
) -> Figure:
    """Actual vs fitted over the estimation window, with the fitted and predictive bands; held-out periods shaded.

    Parameters
    ----------
    fitted
        ``fitted.parquet``: ``period_start``, ``actual``, ``fitted``, ``fitted_low``, ``fitted_high`` and,
        from runs with model checks, ``window``, ``predicted_low``, ``predicted_high``.
    fit_metrics
        ``fit_metrics.json``; R² and MAPE (and the holdout's MAPE and 90% coverage) go in the title.
    target
        Name of the target, for the axis label.
    interval
        Probability of the bands (for the legend).
    """
    df = brand_rows(fitted).sort_values("period_start")
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.subplots()
    x = pd.to_datetime(df["period_start"])
    if "predicted_low" in df and df["predicted_low"].notna().any():
        ax.fill_between(x, df["predicted_low"], df["predicted_high"], color="tab:blue", alpha=0.12, lw=0,
                        label=f"predicted sales, {_pct(interval)} band (noise included)")  # fmt: skip
    ax.fill_between(x, df["fitted_low"], df["fitted_high"], color="tab:blue", alpha=0.3, lw=0,
                    label=f"expected sales, {_pct(interval)} interval")  # fmt: skip
    ax.plot(x, df["fitted"], color="tab:blue", lw=1.8, label="expected sales (posterior mean)")
    ax.plot(x, df["actual"], color="black", lw=1.0, marker="o", ms=2.5, label="actual")
    hold = df["window"].eq("holdout").to_numpy() if "window" in df else np.zeros(len(df), bool)
    title = "Actual vs fitted, estimation window"
    if hold.any():
        ax.axvspan(x[hold].min() - pd.Timedelta(days=3), x[hold].max() + pd.Timedelta(days=3), color="tab:orange",
                   alpha=0.12, label="held out: predicted, not fitted")  # fmt: skip
        title = "Actual vs fitted (estimation window) and predicted (held-out periods, shaded)"
    parts = []
    if fit_metrics:
        if fit_metrics.get("r2") is not None:
            parts.append(f"R² {fit_metrics['r2']:.3f}")
        if fit_metrics.get("mape") is not None:
            parts.append(f"MAPE {fit_metrics['mape']:.1f}%")
        ho = (fit_metrics.get("holdout") or {}).get("brand")
        if ho and ho.get("mape") is not None:
            parts.append(f"holdout MAPE {ho['mape']:.1f}%, {_pct(0.9)} band covers {100 * ho['coverage_90']:.0f}%")
    ax.set_title(title + ("\n" + " · ".join(parts) if parts else ""), fontsize=11)
    ax.set_xlabel("period start")
    ax.set_ylabel(f"{target} (original units)")
    date_axis(ax)
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_decomposition(timeseries: pd.DataFrame, target: str = "sales", labels: dict[str, str] | None = None) -> Figure:
    """Stacked area of the posterior-mean baseline and channel contributions over time.

    The layers add up to the posterior-mean fitted value of each period.

    Parameters
    ----------
    timeseries
        ``contributions.parquet`` (long: ``period_start``, ``component``, ``mean``, ...).
    target
        Name of the target, for the axis label.
    labels
        The run spec's ``labels`` (display names of channels).
    """
    timeseries = brand_rows(timeseries)
    wide = timeseries.pivot(index="period_start", columns="component", values="mean").sort_index()
    order = ["baseline"] + [c for c in pd.unique(timeseries["component"]) if c != "baseline"]
    wide = wide[[c for c in order if c in wide.columns]]
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = fig.subplots()
    colors = ["0.75"] + [f"C{i % 10}" for i in range(len(wide.columns) - 1)]
    names = display_names(wide.columns, labels)
    ax.stackplot(pd.to_datetime(wide.index), wide.to_numpy(dtype=float).T, labels=[names[c] for c in wide.columns],
                 colors=colors, alpha=0.9)  # fmt: skip
    ax.set_title("Fitted sales decomposed: baseline + channel contributions (posterior mean)")
    ax.set_xlabel("period start")
    ax.set_ylabel(f"{target} (original units)")
    date_axis(ax)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="component")
    return fig


def plot_roi(roi: dict[str, Any], labels: dict[str, str] | None = None) -> Figure:
    """ROI per channel (posterior mean) with its interval, horizontal, and a break-even line at 1.

    Parameters
    ----------
    roi
        ``roi_metrics.json``; channels whose ROI is null (no spend in the window) are listed in the
        caption instead.
    labels
        The run spec's ``labels`` (display names of channels).
    """
    cols = [c["channel"] for c in roi.get("channels", [])] + [str(c) for c in roi.get("channels_without_spend", [])]
    names = display_names(cols, labels)
    rows = [c for c in roi.get("channels", []) if c.get("roi") is not None]
    skipped = [names[c["channel"]] for c in roi.get("channels", []) if c.get("roi") is None]
    skipped += [names[str(c)] for c in roi.get("channels_without_spend", [])]
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
        ax.set_yticks(y, [names[c["channel"]] for c in rows])
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


def plot_contribution_share(summary: dict[str, Any], labels: dict[str, str] | None = None) -> Figure:
    """Each channel's share of fitted sales over the window (decomposition), with its interval.

    Parameters
    ----------
    summary
        ``contribution_summary.json``; the baseline's share goes in the title so the channel bars
        stay readable.
    labels
        The run spec's ``labels`` (display names of channels).
    """
    names = display_names([c["channel"] for c in summary.get("channels", [])], labels)
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
    ax.set_yticks(y, [names[c["channel"]] for c in chans])
    b = summary["baseline"]
    ax.set_title(
        f"Decomposition share of fitted sales by channel (baseline: {b['share'] * 100:.1f}%, "
        f"{b['share_low'] * 100:.1f}–{b['share_high'] * 100:.1f}%)"
    )
    ax.set_xlabel("decomposition share of fitted sales over the estimation window (%)")
    ax.set_ylabel("channel")
    if len(chans):
        ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_entity_roi(roi: dict[str, Any], labels: dict[str, str] | None = None) -> Figure:
    """ROI per channel and entity (entity-level models): one panel per channel, entities sorted by ROI.

    The brand's ROI (all entities together) is the red line with its band; entities far from it with
    narrow intervals are where the channel works differently.
    """
    ents = roi.get("entities") or []
    channels = [c["channel"] for c in roi.get("channels", []) if c.get("roi") is not None]
    if not ents or not channels:
        return note_figure("No per-entity ROI: this is a brand-level model (model.level: brand).")
    fig = Figure(figsize=(3.6 * len(channels), 0.28 * len(ents) + 1.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(channels), squeeze=False)).ravel()
    brand = {c["channel"]: c for c in roi["channels"]}
    for ax, ch in zip(axes, channels):
        pts = [(e["entity_id"], r) for e in ents for r in e["channels"] if r["channel"] == ch and r.get("roi") is not None]
        pts.sort(key=lambda p: p[1]["roi"])
        y = np.arange(len(pts))
        m = np.array([p[1]["roi"] for p in pts])
        lo = np.array([p[1]["roi_low"] for p in pts])
        hi = np.array([p[1]["roi_high"] for p in pts])
        ax.errorbar(m, y, xerr=[np.clip(m - lo, 0, None), np.clip(hi - m, 0, None)], fmt="o", ms=3, color="tab:blue", capsize=2)
        b = brand[ch]
        ax.axvspan(b["roi_low"], b["roi_high"], color="tab:red", alpha=0.12)
        ax.axvline(b["roi"], color="tab:red", lw=1.2, label="brand")
        ax.set_yticks(y, [p[0] for p in pts], fontsize=7)
        ax.set_title(display_names([ch], labels)[ch])
        ax.set_xlabel("ROI (sales per unit of spend)")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"ROI by entity ({_pct(roi.get('interval', 0.9))} intervals); red: the brand")
    return fig


def plot_response_curves(curves: pd.DataFrame, target: str = "sales", labels: dict[str, str] | None = None) -> Figure:
    """Incremental sales vs spend per channel over the estimation window, with the interval band.

    The dot is the observed spend; the dashed line has slope 1 (each unit of spend returns one unit of
    sales): where the curve's slope falls below it, extra spend no longer pays back.
    """
    channels = list(pd.unique(curves["channel"]))
    names = display_names(channels, labels)
    fig = Figure(figsize=(3.8 * len(channels), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(channels), squeeze=False)).ravel()
    for ax, ch in zip(axes, channels):
        g = curves[curves["channel"] == ch]
        ax.fill_between(g["spend"], g["incremental_low"], g["incremental_high"], color="tab:blue", alpha=0.2)
        ax.plot(g["spend"], g["incremental"], color="tab:blue")
        now = g.loc[(g["multiplier"] - 1.0).abs().idxmin()]
        ax.plot([now["spend"]], [now["incremental"]], "o", color="black", label="observed spend")
        ax.plot(g["spend"], g["spend"], ls="--", color="0.5", lw=0.8, label="break-even")
        ax.set_title(f"{names[ch]}: marginal ROI {now['marginal_roi']:.2f} at current spend", fontsize=9)
        ax.set_xlabel("spend over the window")
        ax.xaxis.set_major_formatter(_SHORT)
        ax.yaxis.set_major_formatter(_SHORT)
        ax.xaxis.set_major_locator(MaxNLocator(4))
    axes[0].set_ylabel(f"incremental {target}")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("Response curves: incremental sales over the estimation window vs spend (0–2× observed)")
    return fig

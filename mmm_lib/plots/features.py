"""Figures for 03_features: what adstock and saturation do to each channel, and the time terms.

Each function takes the stage's inputs/outputs (canonical data, ``features.parquet``,
``feature_metadata.json``, ``feature_scaler.json``) and returns a :class:`matplotlib.figure.Figure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..features import ESTIMATION, canonical_activity, hill, media_stages
from . import date_axis
from .data import _compact_number


def _shade_estimation(ax: Any, dates: pd.Series, window: pd.Series, label: bool) -> None:
    est = dates[(window == ESTIMATION).to_numpy()]
    if len(est):
        ax.axvspan(est.min(), est.max(), color="tab:green", alpha=0.07, lw=0,
                   label="estimation window" if label else None)  # fmt: skip


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    """One series in time order: the brand, or for an entity-level run its largest entity (by activity)."""
    if df["entity_id"].nunique() > 1:
        drivers = [c for c in df.columns if str(c).startswith("act_")] or list(df.columns[3:4])
        biggest = df.groupby("entity_id")[drivers].sum().sum(axis=1).idxmax()
        df = df[df["entity_id"] == biggest]
    return df.sort_values("period_start", kind="stable").reset_index(drop=True)


def plot_media_transforms(
    canonical_df: pd.DataFrame, feature_metadata: Mapping[str, Any], scaler: Mapping[str, Any]
) -> Figure:
    """Per channel (one row each): raw activity, max-scaled adstock and the saturated media feature.

    Raw activity (bars) is on the left axis in its own units; the adstocked activity divided by
    its estimation-window maximum and the Hill feature share the right axis (share of peak).
    The estimation window is shaded; rows before it only warm up the adstock.
    """
    df = _sorted(canonical_df)
    chans = list(feature_metadata["channels"])
    act = canonical_activity(df, feature_metadata)
    scaled, feat = media_stages(act, feature_metadata, scaler)
    sat_on = bool((feature_metadata.get("saturation") or {}).get("enabled"))
    dates = pd.to_datetime(df["period_start"])
    width = float(np.median(np.diff(dates.to_numpy()).astype("timedelta64[D]").astype(float))) * 0.8 if len(df) > 1 else 5.0
    fig = Figure(figsize=(10, 2.4 * len(chans) + 0.6), layout="constrained")
    fig.get_layout_engine().set(w_pad=0.12)  # room for the right (twin) axis label
    axes = np.atleast_1d(fig.subplots(len(chans), 1, sharex=True))
    for j, (ax, ch) in enumerate(zip(axes, chans)):
        _shade_estimation(ax, dates, df["window"], label=j == 0)
        ax.bar(dates, act[:, j], width=width, color="0.75", label="raw activity (left axis)")
        ax.set_ylabel(f"{ch['driver']}\n(activity units)")
        ax.yaxis.set_major_formatter(mticker.FuncFormatter(_compact_number))  # 1.5M, not a "1e6" offset
        ax2 = ax.twinx()
        ax2.plot(dates, scaled[:, j], color="tab:blue", lw=1.4,
                 label=f"adstock, decay {ch['decay']:g} ÷ max (right)")  # fmt: skip
        if sat_on:
            ax2.plot(dates, feat[:, j], color="tab:orange", lw=1.6, label="media feature = Hill(adstock) (right)")
        ax2.set_ylim(0, max(1.05, float(scaled[:, j].max()) * 1.05))
        ax2.set_ylabel("share of peak adstock")
        ax.set_title(f"{ch['driver']}: activity → adstock → saturation", loc="left", fontsize=10)
        if j == 0:
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8, ncol=2, framealpha=0.9)
    date_axis(axes[-1])
    axes[-1].set_xlabel("period start")
    return fig


def plot_hill_curves(
    canonical_df: pd.DataFrame, feature_metadata: Mapping[str, Any], scaler: Mapping[str, Any]
) -> Figure:
    """The saturation curve per channel over the scaled adstock range, with the observed periods.

    x is adstocked activity divided by its estimation-window maximum (1 = peak); y is the media
    feature the model multiplies by the channel's coefficient. Estimation-window periods are
    coloured, carryover periods grey. With saturation disabled the "curve" is the identity.
    """
    df = _sorted(canonical_df)
    chans = list(feature_metadata["channels"])
    sat = feature_metadata.get("saturation") or {}
    scaled, feat = media_stages(canonical_activity(df, feature_metadata), feature_metadata, scaler)
    est = (df["window"] == ESTIMATION).to_numpy()
    fig = Figure(figsize=(3.4 * len(chans) + 0.4, 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(chans), sharey=True))
    for j, (ax, ch) in enumerate(zip(axes, chans)):
        xmax = max(1.05, float(scaled[:, j].max()) * 1.05)
        grid = np.linspace(0.0, xmax, 200)
        if sat.get("enabled"):
            curve = hill(grid, float(sat["K"]), float(sat["S"]))
            ax.plot(grid, curve, color="tab:orange", lw=1.8, label=f"Hill K={sat['K']:g}, S={sat['S']:g}")
            ax.axvline(float(sat["K"]), color="tab:orange", ls=":", lw=1, label="K (half saturation)")
        else:
            ax.plot(grid, grid, color="tab:orange", lw=1.8, label="no saturation (identity)")
        ax.scatter(scaled[~est, j], feat[~est, j], s=10, color="0.6", label="carryover periods")
        ax.scatter(scaled[est, j], feat[est, j], s=12, color="tab:blue", label="estimation periods")
        ax.set_title(ch["driver"], fontsize=10)
        ax.set_xlabel("adstock ÷ estimation max")
        if j == 0:
            ax.set_ylabel("media feature")
            ax.legend(fontsize=7, loc="lower right")
    return fig


def plot_seasonality_trend(features_df: pd.DataFrame, feature_metadata: Mapping[str, Any]) -> Figure:
    """The Fourier seasonality terms and the standardized trend over time (estimation window shaded)."""
    df = _sorted(features_df)
    dates = pd.to_datetime(df["period_start"])
    seas = [c["feature"] for c in feature_metadata.get("controls", []) if c.get("kind") == "seasonality"]
    has_trend = "trend" in df.columns and (feature_metadata.get("trend") or {}).get("enabled")
    n = int(bool(seas)) + int(bool(has_trend))
    fig = Figure(figsize=(10, 2.6 * max(n, 1) + 0.4), layout="constrained")
    if n == 0:
        ax = fig.subplots()
        ax.text(0.5, 0.5, "seasonality and trend are disabled in this spec", ha="center", va="center")
        ax.set_axis_off()
        return fig
    axes = list(np.atleast_1d(fig.subplots(n, 1, sharex=True)))
    if seas:
        ax = axes.pop(0)
        _shade_estimation(ax, dates, df["window"], label=True)
        for col in seas:
            ax.plot(dates, df[col], lw=1.2, label=col.removeprefix("season__"))
        period = (feature_metadata.get("seasonality") or {}).get("period")
        ax.set_title(f"Fourier seasonality terms (period {period:.2f} periods)" if period else "Fourier seasonality terms",
                     loc="left", fontsize=10)  # fmt: skip
        ax.set_ylabel("term value")
        ax.legend(fontsize=8, ncol=min(len(seas) + 1, 6), loc="upper right")
    if has_trend:
        ax = axes.pop(0) if axes else ax
        _shade_estimation(ax, dates, df["window"], label=not seas)
        ax.plot(dates, df["trend"], color="tab:purple", lw=1.5, label="trend")
        ax.set_title("Trend (standardized over the estimation window)", loc="left", fontsize=10)
        ax.set_ylabel("standard deviations")
        ax.legend(fontsize=8, loc="upper left")
    for a in fig.axes:
        date_axis(a)
    fig.axes[-1].set_xlabel("period start")
    return fig


def _regressor_label(feature: str) -> str:
    """``media__act_tv`` → ``act_tv``, ``ctrl__ctrl_price`` → ``ctrl_price``, ``season__sin1`` → ``season sin1``."""
    for prefix in ("media__", "ctrl__"):
        if feature.startswith(prefix):
            return feature[len(prefix):]
    return feature.replace("__", " ")


def plot_feature_correlations(features_df: pd.DataFrame, feature_metadata: Mapping[str, Any]) -> Figure:
    """Heatmap of the Pearson correlations between the regressors over the estimation window.

    Each cell is annotated with its value; the diverging colour scale is centred at 0 (blue negative,
    red positive, white none), so the pairs the model will find hard to separate (near ±1) stand out.
    Rows and columns are the media features first, then controls, seasonality and trend.
    """
    from ..features import feature_correlations

    corr = feature_correlations(features_df, feature_metadata)
    labels = [_regressor_label(str(c)) for c in corr.columns]
    n = len(labels)
    side = max(4.5, 0.62 * n + 2.2)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.subplots()
    import matplotlib as mpl

    values = corr.to_numpy(dtype=float)
    shown = values.copy()
    np.fill_diagonal(shown, np.nan)  # a regressor with itself (always 1) would be the loudest cell: grey it out
    cmap = mpl.colormaps["RdBu_r"].with_extremes(bad="0.92")
    im = ax.imshow(shown, cmap=cmap, vmin=-1, vmax=1)
    for i in range(n):
        for j in range(n):
            v = values[i, j]
            if i == j or not np.isfinite(v):
                ax.text(j, i, "" if np.isfinite(v) else "n/a", ha="center", va="center", fontsize=8, color="0.5")
                continue
            ax.text(j, i, f"{round(v, 2) + 0.0:.2f}", ha="center", va="center", fontsize=8 if n > 10 else 9,
                    color="white" if abs(v) >= 0.6 else "0.15", fontweight="bold" if abs(v) >= 0.7 else None)  # fmt: skip
    ax.set_xticks(range(n), labels, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels)
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", lw=1.5)
    ax.tick_params(which="minor", length=0)
    ax.tick_params(which="major", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(im, ax=ax, shrink=0.8, label="correlation (−1 … 0 … +1)")
    ax.set_title("Correlation between regressors over the estimation window\n"
                 "(bold: |r| ≥ 0.7, effects hard to separate)", fontsize=10)  # fmt: skip
    return fig

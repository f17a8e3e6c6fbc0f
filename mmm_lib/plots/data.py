"""Figures for 01_validate and 02_canonicalize: the raw panel and the brand-level series.

Each function returns a :class:`matplotlib.figure.Figure`. They tolerate the messy data that
validation reports on (unreadable dates and text in number columns are left out of the plot),
so the figure still appears next to the findings that explain the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..canonicalize import (
    ENTITY_COL,
    PERIOD_COL,
    WINDOW_COL,
    align_to_grain,
    compute_windows,
    parse_period_start,
    period_offset,
)
from ..spec import RunSpec
from . import date_axis

CARRYOVER_COLOR = "0.55"
ESTIMATION_COLOR = "tab:green"


def _compact_number(v: float, _pos: Any = None) -> str:
    a = abs(v)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def _compact(*axes: Any) -> None:
    """Tick labels like 40k / 4M instead of a 1e6 offset."""
    for ax in axes:
        ax.yaxis.set_major_formatter(mticker.FuncFormatter(_compact_number))


def _shade(ax: Any, carry: tuple[Any, Any] | None, est: tuple[Any, Any] | None) -> None:
    if carry is not None:
        ax.axvspan(*carry, color=CARRYOVER_COLOR, alpha=0.12, lw=0)
    if est is not None:
        ax.axvspan(*est, color=ESTIMATION_COLOR, alpha=0.08, lw=0)


def _window_handles(carry: bool, est: bool) -> list[Patch]:
    out = []
    if carry:
        out.append(Patch(color=CARRYOVER_COLOR, alpha=0.3, label="carryover window (adstock warm-up)"))
    if est:
        out.append(Patch(color=ESTIMATION_COLOR, alpha=0.25, label="estimation window (fitted)"))
    return out


def _readable(raw_df: pd.DataFrame, cols: list[str], grain: str | None) -> pd.DataFrame:
    """Entity, parsed date and numeric role columns; rows with unreadable dates dropped."""
    out = pd.DataFrame(index=range(len(raw_df)))
    out[ENTITY_COL] = raw_df[ENTITY_COL].astype(str).to_numpy() if ENTITY_COL in raw_df else "all rows"
    if PERIOD_COL in raw_df:
        out[PERIOD_COL] = parse_period_start(raw_df[PERIOD_COL], grain).values.to_numpy()  # type: ignore[arg-type]
    else:
        out[PERIOD_COL] = pd.NaT
    for c in cols:
        out[c] = pd.to_numeric(raw_df[c], errors="coerce").to_numpy(dtype=float)
    return out.dropna(subset=[PERIOD_COL])


def _empty(fig: Figure, text: str) -> Figure:
    ax = fig.subplots()
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    return fig


def plot_raw_overview(raw_df: pd.DataFrame, spec: RunSpec | None = None, max_entities: int = 8) -> Figure:
    """The input panel at a glance: target per entity, brand total with the windows, driver activity.

    Parameters
    ----------
    raw_df
        The table as read (``raw_data.parquet``).
    spec
        The run spec (target, drivers, grain, windows). Without one, ``sales`` and the ``act_*``
        columns are shown and no windows are drawn.
    max_entities
        Entities drawn as labelled lines (the largest by total target); the rest are drawn as thin
        grey lines (or a 10–90 % band when there are many) under one legend entry.

    Returns
    -------
    matplotlib.figure.Figure
        Three panels sharing the time axis.
    """
    target = spec.target_col if spec else "sales"
    drivers = list(spec.drivers) if spec else [c for c in map(str, raw_df.columns) if c.startswith("act_")]
    drivers = [d for d in drivers if d in raw_df.columns]
    grain = spec.grain if spec else None
    fig = Figure(figsize=(10, 8.5), layout="constrained")
    if target not in raw_df.columns:
        return _empty(fig, f"no target column {target!r} in the data: see the findings table")
    df = _readable(raw_df, [target, *drivers], grain)
    if df.empty:
        return _empty(fig, "no readable period_start dates: see the findings table")

    axes = fig.subplots(3, 1, sharex=True, height_ratios=[1.3, 1, 1])
    ax = axes[0]
    wide = df.pivot_table(index=PERIOD_COL, columns=ENTITY_COL, values=target, aggfunc="sum").sort_index()
    order = wide.sum().sort_values(ascending=False).index
    top, rest = list(order[:max_entities]), list(order[max_entities:])
    if rest:
        if len(rest) <= 200:
            ax.plot(wide.index, wide[rest].to_numpy(), color="0.7", lw=0.6, alpha=0.6)
            ax.plot([], [], color="0.7", lw=0.8, label=f"{len(rest)} other entities")
        else:
            lo, hi = wide[rest].quantile(0.1, axis=1), wide[rest].quantile(0.9, axis=1)
            ax.fill_between(wide.index, lo, hi, color="0.8", label=f"{len(rest)} other entities (10–90 %)")
    for ent in top:
        ax.plot(wide.index, wide[ent], lw=1.1, label=str(ent))
    ax.set_ylabel(f"{target}\n(per entity)")
    ax.set_title(f"{target} per entity ({wide.shape[1]} entities" + (f", largest {len(top)} labelled)" if rest else ")"),
                 loc="left", fontsize=10)
    ax.legend(loc="best", fontsize=8, ncol=min(4, len(top) + bool(rest)), framealpha=0.9)

    ax = axes[1]
    brand = wide.sum(axis=1, min_count=1)
    ax.plot(brand.index, brand.to_numpy(), color="k", lw=1.3, label=f"{target}, sum over entities")
    handles = []
    if spec is not None and grain is not None:
        periods = align_to_grain(pd.Series(brand.index), grain)
        win = compute_windows(periods.max(), grain, spec.windows)
        carry = (max(win["carryover_start"], brand.index.min()), win["estimation_start"])
        carry = carry if carry[0] < carry[1] and spec.windows.carryover_months > 0 else None
        est = (max(win["estimation_start"], brand.index.min()), win["end"])
        for a in axes:
            _shade(a, carry, est)
        handles = _window_handles(carry is not None, True)
    ax.set_ylabel(f"{target}\n(brand total)")
    ax.set_title(f"brand {target} (what the model is fitted on, after aggregating entities)", loc="left", fontsize=10)
    h, _ = ax.get_legend_handles_labels()
    ax.legend(handles=h + handles, loc="best", fontsize=8, framealpha=0.9)

    ax = axes[2]
    if drivers:
        totals = df.groupby(PERIOD_COL)[drivers].sum(min_count=1).sort_index()
        peak = totals.max().replace(0, np.nan)
        for d in drivers:
            ax.plot(totals.index, (totals[d] / peak[d]).to_numpy(), lw=1.0, label=d)
        ax.set_ylim(bottom=0)
        ax.legend(loc="best", fontsize=8, ncol=min(4, len(drivers)), framealpha=0.9)
    else:
        ax.text(0.5, 0.5, "no driver columns", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("activity\n(share of peak)")
    ax.set_title("driver activity, summed over entities, each divided by its own peak", loc="left", fontsize=10)
    _compact(*axes)
    date_axis(axes[-1])
    axes[-1].set_xlabel("period start")
    return fig


def plot_canonical_series(canonical_df: pd.DataFrame, column_info: Mapping[str, Any]) -> Figure:
    """Brand target, each driver's activity and spend, and the controls over the kept windows.

    Parameters
    ----------
    canonical_df
        ``canonical_data.parquet`` (one brand row per period with a ``window`` column).
    column_info
        ``column_info.json``: target, drivers, spend mapping, controls and windows.

    Returns
    -------
    matplotlib.figure.Figure
        One panel for the target, one per driver (activity on the left axis, spend on the right)
        and one for the controls; carryover shaded grey, estimation green.
    """
    target = column_info["target"]
    drivers = list(column_info["drivers"])
    controls = list(column_info.get("controls") or [])
    spend = dict(column_info.get("spend") or {})
    df = canonical_df
    if ENTITY_COL in df and df[ENTITY_COL].nunique() > 1:
        # An entity-level run keeps every store/geo: one line through all their rows zigzags between
        # them. Show the brand total the titles promise, each column aggregated as 02 aggregated it.
        aggs = dict(column_info.get("aggregation") or {})
        cols = [c for c in dict.fromkeys([target, *drivers, *spend.values(), *controls]) if c and c in df]
        how = {c: "mean" if aggs.get(c) == "mean" else "sum" for c in cols}
        how[WINDOW_COL] = "first"
        df = df.groupby(PERIOD_COL, as_index=False).agg(how)
    df = df.sort_values(PERIOD_COL, kind="stable").reset_index(drop=True)
    dates = pd.to_datetime(df[PERIOD_COL])
    n = 1 + len(drivers) + (1 if controls else 0)
    fig = Figure(figsize=(10, 2.0 * n + 0.8), layout="constrained")
    # The spend axes are twins on the right: a wider pad keeps their two-line labels inside the figure
    # at any dpi (the default 3 pt clipped the last letters in reports).
    fig.get_layout_engine().set(w_pad=0.12, h_pad=0.06)
    axes = np.atleast_1d(fig.subplots(n, 1, sharex=True))

    is_est = (df[WINDOW_COL] == "estimation").to_numpy()
    step = period_offset(column_info["grain"])
    est = (dates[is_est].min(), dates[is_est].max() + step) if is_est.any() else None
    carry = (dates[~is_est].min(), dates[is_est].min() if is_est.any() else dates.max() + step) if (~is_est).any() else None
    for ax in axes:
        _shade(ax, carry, est)

    ax = axes[0]
    ax.plot(dates, df[target], color="k", lw=1.3, label=target)
    ax.set_ylabel(f"{target}\n(brand)")
    ax.set_title(f"brand {target} over the kept windows ({column_info.get('n_source_entities', '?')} entities summed)",
                 loc="left", fontsize=10)
    ax.legend(handles=ax.get_legend_handles_labels()[0] + _window_handles(carry is not None, est is not None),
              loc="best", fontsize=8, framealpha=0.9)

    for ax, d in zip(axes[1:], drivers):
        ax.plot(dates, df[d], color="tab:blue", lw=1.1, label=f"{d} activity (left)")
        ax.set_ylabel(f"{d}\n(activity units)")
        handles, labels = ax.get_legend_handles_labels()
        sp = spend.get(d)
        if sp and sp in df:
            ax2 = ax.twinx()
            ax2.plot(dates, df[sp], color="tab:orange", lw=1.0, ls="--", label=f"{sp} (right)")
            ax2.set_ylabel(f"{sp}\n(spend units)")
            ax2.set_ylim(bottom=0)
            _compact(ax2)
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
            title = f"{d}: activity and spend"
        else:
            title = f"{d}: activity (no spend column, so no ROI)"
        ax.set_ylim(bottom=0)
        ax.set_title(title, loc="left", fontsize=10)
        ax.legend(handles, labels, loc="best", fontsize=8, ncol=2, framealpha=0.9)

    if controls:
        ax = axes[-1]
        if len(controls) == 1:
            ax.plot(dates, df[controls[0]], lw=1.1, color="tab:purple", label=controls[0])
            ax.set_ylabel(f"{controls[0]}\n(own units)")
        else:
            for c in controls:
                mean = float(df[c].mean())
                ax.plot(dates, df[c] / mean * 100 if mean else df[c], lw=1.0, label=c)
            ax.set_ylabel("controls\n(mean = 100)")
        aggs = sorted({column_info.get("aggregation", {}).get(c, "mean") for c in controls})
        ax.set_title(f"controls ({' / '.join(aggs)} over entities)", loc="left", fontsize=10)
        ax.legend(loc="best", fontsize=8, ncol=min(4, len(controls)), framealpha=0.9)

    _compact(*axes)
    date_axis(axes[-1])
    axes[-1].set_xlabel("period start")
    return fig


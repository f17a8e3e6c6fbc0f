"""Figures for ``mmm compare``: ROI per channel with its interval, one colour per run."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure


def _label(text: Any) -> str:
    # A "$" in a channel or run name would switch matplotlib to mathtext; names are data, shown as typed.
    return str(text).replace("$", r"\$")


def plot_roi_comparison(roi: list[dict[str, Any]], run_ids: list[str], labels: dict[str, str] | None = None) -> Figure:
    """ROI per channel (posterior mean, dot) and its interval (line), the runs side by side in colour.

    Parameters
    ----------
    roi
        Long rows as :func:`mmm_lib.compare.roi_rows` returns them: ``channel``, ``run_id``, ``roi``,
        ``roi_low``, ``roi_high``, ``interval``.
    run_ids
        The runs in legend order (colours ``C0``, ``C1`` … in this order).
    labels
        Legend text per run (default: the run id).
    """
    labels = labels or {}
    channels: list[str] = []
    for row in roi:
        if row["channel"] not in channels:
            channels.append(row["channel"])
    n_ch, n_run = len(channels), max(len(run_ids), 1)
    fig = Figure(figsize=(9, 0.55 * max(n_ch, 2) * max(1.0, n_run / 2.5) + 1.8), layout="constrained")
    ax = fig.subplots()
    shown = [r for r in roi if r.get("roi") is not None]
    if not shown:
        ax.text(0.5, 0.5, "no run has ROI numbers (no spend, or 06_contribute not run)", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
        ax.set_yticks([])
        return fig
    # First channel at the top, runs in order within a channel.
    y_of = {c: n_ch - 1 - i for i, c in enumerate(channels)}
    step = 0.7 / n_run
    offsets = {rid: (n_run - 1) / 2 * step - k * step for k, rid in enumerate(run_ids)}
    intervals = sorted({r.get("interval") for r in shown if r.get("interval") is not None})
    for k, rid in enumerate(run_ids):
        rows = [r for r in shown if r["run_id"] == rid]
        if not rows:
            continue
        y = np.array([y_of[r["channel"]] + offsets[rid] for r in rows])
        m = np.array([r["roi"] for r in rows], dtype=float)
        lo = np.array([r["roi_low"] if r.get("roi_low") is not None else r["roi"] for r in rows], dtype=float)
        hi = np.array([r["roi_high"] if r.get("roi_high") is not None else r["roi"] for r in rows], dtype=float)
        ax.errorbar(m, y, xerr=[np.clip(m - lo, 0, None), np.clip(hi - m, 0, None)], fmt="o", color=f"C{k % 10}",
                    ecolor=f"C{k % 10}", elinewidth=2.2, capsize=3, markersize=7,
                    label=_label(labels.get(rid, rid)))  # fmt: skip
    ax.set_yticks(list(y_of.values()), [_label(c) for c in channels])
    ax.set_ylim(-0.6, n_ch - 0.4)
    for b in range(n_ch - 1):
        ax.axhline(b + 0.5, color="0.9", lw=0.8)
    ax.axvline(1.0, color="tab:red", ls="--", lw=1.2, label="break-even (ROI = 1)")
    ax.grid(axis="x", color="0.92")
    band = ", ".join(f"{100 * i:g}%" for i in intervals) or "90%"
    ax.set_title(f"ROI by channel: posterior mean (dot) and {band} interval (line), one colour per run")
    ax.set_xlabel("ROI (incremental sales per unit of spend)")
    fig.legend(loc="outside lower center", ncol=n_run + 1 if n_run <= 3 else 3, fontsize=9, frameon=False)
    return fig

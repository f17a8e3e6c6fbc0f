"""Figures for 04_fit and 05_diagnose: coefficient intervals, prior vs posterior, trace and rank plots.

Plain matplotlib on ``Figure`` objects (no pyplot state), so a notebook shows each figure once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..model_pymc import _posterior_dataset, parameter_names

_CHAIN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
MAIN_PARAMETERS = ("beta", "sigma_beta", "intercept", "sigma", "nu")

_VAR_LABEL = {
    "beta": "channel coefficient beta (log-lift of sales at media feature = 1)",
    "gamma": "control coefficient gamma (log-change of sales per unit of standardized control)",
}


def _draws(ds: Any, var: str, coord: str | None) -> np.ndarray:
    da = ds[var]
    if coord is not None:
        dim = [d for d in da.dims if d not in ("chain", "draw")][0]
        da = da.sel({dim: coord})
    return np.asarray(da.transpose("chain", "draw").values, dtype=float)


def _selected(ds: Any, var_names: tuple[str, ...] | list[str] | None) -> list[tuple[str, str, str | None]]:
    wanted = list(var_names) if var_names is not None else list(MAIN_PARAMETERS)
    unknown = [v for v in wanted if v not in ds]
    if unknown:
        raise ValueError(f"posterior has no variable(s) {unknown}; available: {sorted(map(str, ds.data_vars))}")
    names = parameter_names(ds)
    return [n for v in wanted for n in names if n[1] == v]


def plot_coefficients(idata: Any, var: str = "beta", interval: float = 0.9) -> Figure:
    """Forest plot: posterior mean, 50 % and ``interval`` equal-tailed intervals per coefficient.

    Parameters
    ----------
    idata
        The fitted DataTree.
    var
        ``"beta"`` (channels) or ``"gamma"`` (controls).
    interval
        Outer interval probability (thin line); the thick line is the central 50 %.
    """
    ds = _posterior_dataset(idata)
    if var not in ds:
        raise ValueError(f"posterior has no {var!r}; available: {sorted(map(str, ds.data_vars))}")
    items = [n for n in parameter_names(ds) if n[1] == var]
    q = (1 - interval) / 2
    fig = Figure(figsize=(7.5, 0.55 * len(items) + 1.6), layout="constrained")
    ax = fig.subplots()
    for i, (_, v, coord) in enumerate(items):
        x = _draws(ds, v, coord).ravel()
        lo, q25, q75, hi = np.quantile(x, [q, 0.25, 0.75, 1 - q])
        y = len(items) - 1 - i
        ax.hlines(y, lo, hi, color="#1f77b4", lw=1.5)
        ax.hlines(y, q25, q75, color="#1f77b4", lw=5)
        ax.plot([x.mean()], [y], "o", color="white", mec="#1f77b4", mew=1.5, ms=7, zorder=3)
    ax.axvline(0, color="0.5", lw=0.8, ls="--")
    ax.set_yticks(range(len(items)), [str(c) for _, _, c in reversed(items)])
    ax.set_xlabel(_VAR_LABEL.get(var, var))
    ax.set_title(f"Posterior of {var}: mean (dot), 50% (thick) and {round(100 * interval)}% (thin) intervals")
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_beta_prior_posterior(idata: Any, n_prior: int = 20_000, seed: int = 0) -> Figure:
    """Prior vs posterior of each channel's beta.

    The prior is the model's marginal ``beta ~ HalfNormal(sigma_beta)``, ``sigma_beta ~
    HalfNormal(0.5)``, simulated with numpy. A posterior much narrower than the prior means the
    data inform the coefficient; one that looks like the prior means they do not.
    """
    ds = _posterior_dataset(idata)
    items = [n for n in parameter_names(ds) if n[1] == "beta"]
    rng = np.random.default_rng(seed)
    prior = np.abs(rng.normal(0, 1, n_prior)) * np.abs(rng.normal(0, 0.5, n_prior))
    ncols = min(3, len(items))
    nrows = int(np.ceil(len(items) / ncols))
    fig = Figure(figsize=(3.6 * ncols, 2.8 * nrows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (_, v, coord) in zip(axes, items):
        post = _draws(ds, v, coord).ravel()
        hi = max(np.quantile(post, 0.999), np.quantile(prior, 0.95))
        bins = np.linspace(0, hi, 60)
        ax.hist(prior[prior <= hi], bins=bins, density=True, color="0.6", alpha=0.5, label="prior")
        ax.hist(post[post <= hi], bins=bins, density=True, color="#1f77b4", alpha=0.7, label="posterior")
        ax.set_title(str(coord))
        ax.set_xlabel("beta (log-lift at feature = 1)")
        ax.set_ylabel("density")
    for ax in axes[len(items):]:
        ax.set_visible(False)
    axes[0].legend(loc="upper right", fontsize=8)
    fig.suptitle("Channel coefficients: prior vs posterior")
    return fig


def plot_trace(idata: Any, var_names: list[str] | tuple[str, ...] | None = None) -> Figure:
    """Trace plot: per parameter, the density of each chain (left) and its draws in order (right).

    Healthy chains overlap on the left and look like stationary, well-mixed noise on the right.
    ``var_names`` defaults to the main parameters (``beta``, ``sigma_beta``, ``intercept``,
    ``sigma``, ``nu``).
    """
    ds = _posterior_dataset(idata)
    items = _selected(ds, var_names)
    fig = Figure(figsize=(10, 1.35 * len(items) + 0.8), layout="constrained")
    axes = fig.subplots(len(items), 2, squeeze=False, gridspec_kw={"width_ratios": [1, 2.2]})
    for row, (name, v, coord) in enumerate(items):
        x = _draws(ds, v, coord)
        lo, hi = np.nanmin(x), np.nanmax(x)
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-9, 40)
        for c in range(x.shape[0]):
            col = _CHAIN_COLORS[c % len(_CHAIN_COLORS)]
            axes[row, 0].hist(x[c], bins=bins, density=True, histtype="step", color=col, lw=1.2, label=f"chain {c}")
            axes[row, 1].plot(x[c], color=col, lw=0.5, alpha=0.8)
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center")
        axes[row, 0].set_yticks([])
        axes[row, 1].set_xlim(0, x.shape[1] - 1)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[0, 0].set_title("posterior density per chain")
    axes[0, 1].set_title("draws per chain")
    axes[-1, 0].set_xlabel("parameter value (model scale)")
    axes[-1, 1].set_xlabel("draw (after tuning)")
    return fig


def plot_rank(idata: Any, var_names: list[str] | tuple[str, ...] | None = None, bins: int = 20) -> Figure:
    """Rank plot: histogram of each chain's draws ranked over all chains.

    Converged chains give flat histograms near the dashed line (the uniform expectation); a chain
    sitting high or low means the chains explore different regions (high R-hat).
    """
    ds = _posterior_dataset(idata)
    items = _selected(ds, var_names)
    ncols = min(4, len(items))
    nrows = int(np.ceil(len(items) / ncols))
    fig = Figure(figsize=(2.6 * ncols + 0.4, 2.1 * nrows + 0.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (name, v, coord) in zip(axes, items):
        x = _draws(ds, v, coord)
        ranks = np.argsort(np.argsort(x.ravel(), kind="stable"), kind="stable").reshape(x.shape)
        edges = np.linspace(0, x.size, bins + 1)
        top = 0.0
        for c in range(x.shape[0]):
            counts, _ = np.histogram(ranks[c], bins=edges)
            top = max(top, counts.max())
            ax.stairs(counts, np.arange(bins + 1), baseline=None, color=_CHAIN_COLORS[c % len(_CHAIN_COLORS)], lw=1.2, label=f"chain {c}")
        ax.axhline(x.shape[1] / bins, color="0.3", ls="--", lw=0.8)
        ax.set_ylim(0, 1.15 * top)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(items):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.supxlabel(f"rank of draw across all chains ({bins} bins)", fontsize=9)
    fig.supylabel("draws per bin", fontsize=9)
    fig.suptitle("Rank plots (flat = chains agree)")
    return fig

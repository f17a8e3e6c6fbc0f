"""Figures for 04_fit and 05_diagnose: coefficient intervals, prior vs posterior, trace and rank plots.

Plain matplotlib on ``Figure`` objects (no pyplot state), so a notebook shows each figure once; the
trace and rank plots are arviz-plots (``plot_trace_dist``, ``plot_rank``) on its matplotlib backend,
returned as their ``Figure`` (:func:`mmm_lib.plots.checks.arviz_figure`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..model_pymc import _posterior_dataset, _select, parameter_names
from . import note_figure

MAIN_PARAMETERS = ("beta", "sigma_beta", "decay", "half_saturation", "hill_slope", "logistic_lam", "gamma", "intercept", "sigma", "nu")

_VAR_LABEL = {
    "beta": "channel coefficient beta (log-lift of sales at media = 1: the typical active level when transforms are learned)",
    "gamma": "control coefficient gamma (log-change of sales per unit of standardized control)",
}


def _draws(ds: Any, var: str, coord: str | None) -> np.ndarray:
    return _select(ds[var], coord)


def _selected(ds: Any, var_names: tuple[str, ...] | list[str] | None) -> list[tuple[str, str, str | None]]:
    if var_names is None:
        # Per-entity vectors (intercept and sigma of an entity-level model) would add a row per store:
        # their convergence is in the 05 table and findings; the plots show the channel-level parameters.
        wanted = [v for v in MAIN_PARAMETERS if v in ds and "entity" not in ds[v].dims]
    else:
        wanted = list(var_names)
    unknown = [v for v in wanted if v not in ds]
    if unknown:
        raise ValueError(f"posterior has no variable(s) {unknown}; available: {sorted(map(str, ds.data_vars))}")
    names = parameter_names(ds)
    return [n for v in wanted for n in names if n[1] == v]


def plot_coefficients(idata: Any, var: str = "beta", interval: float = 0.9, labels: Any = None) -> Figure:
    """Forest plot: posterior mean, 50 % and ``interval`` equal-tailed intervals per coefficient.

    Parameters
    ----------
    idata
        The fitted DataTree.
    var
        ``"beta"`` (channels) or ``"gamma"`` (controls).
    interval
        Outer interval probability (thin line); the thick line is the central 50 %.
    labels
        The run spec's ``labels``: channels and controls are shown by their display names
        (:func:`mmm_lib.labels.display_names`).
    """
    from ..labels import display_names

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
    names = display_names([str(c) for _, _, c in items], labels)
    ax.set_yticks(range(len(items)), [names[str(c)] for _, _, c in reversed(items)])
    ax.set_xlabel(_VAR_LABEL.get(var, var))
    ax.set_title(f"Posterior of {var}: mean (dot), 50% (thick) and {round(100 * interval)}% (thin) intervals")
    ax.grid(axis="x", alpha=0.3)
    return fig


TRANSFORM_PARAMETERS = ("decay", "half_saturation", "hill_slope", "logistic_lam")
_AXIS_LABEL = {
    "beta": "beta (log-lift; see the prior table)",
    "decay": "adstock decay per period",
    "half_saturation": "half-saturation (share of peak activity)",
    "hill_slope": "Hill slope",
    "logistic_lam": "logistic steepness",
}


def plot_prior_posterior(idata: Any, var_names: tuple[str, ...] | list[str] = ("beta", *TRANSFORM_PARAMETERS)) -> Figure:
    """Prior vs posterior of each channel's parameters, one panel per parameter and channel.

    The prior draws are the fit's own ``prior`` group (``pm.sample_prior_predictive`` on the model
    that was fitted), so the grey histogram is exactly the prior NUTS started from. A posterior much
    narrower than the prior is learned from the data; one that looks like the prior is not.
    """
    if "prior" not in idata.children:
        raise ValueError("the posterior has no 'prior' group (fitted before prior draws were stored); rerun 04_fit")
    ds = _posterior_dataset(idata)
    prior = idata["prior"].to_dataset()
    rows = [v for v in var_names if v in ds and v in prior]
    if not rows:
        raise ValueError(f"none of {list(var_names)} is in both the posterior and the prior")
    channels = [str(c) for c in ds[rows[0]]["channel"].values]
    fig = Figure(figsize=(3.2 * len(channels), 2.4 * len(rows) + 0.7), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), len(channels), squeeze=False))
    for i, var in enumerate(rows):
        for j, ch in enumerate(channels):
            ax = axes[i, j]
            post = _draws(ds, var, ch).ravel()
            pri = _draws(prior, var, ch).ravel()
            lo = min(np.quantile(post, 0.001), np.quantile(pri, 0.02))
            hi = max(np.quantile(post, 0.999), np.quantile(pri, 0.98))
            bins = np.linspace(lo, hi, 50)
            ax.hist(pri[(pri >= lo) & (pri <= hi)], bins=bins, density=True, color="0.6", alpha=0.5, label="prior")
            ax.hist(post[(post >= lo) & (post <= hi)], bins=bins, density=True, color="#1f77b4", alpha=0.7, label="posterior")
            ax.set_yticks([])
            if i == 0:
                ax.set_title(ch)
            ax.set_xlabel(_AXIS_LABEL.get(var, var), fontsize=8)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    fig.suptitle("Prior (grey) vs posterior (blue) of each channel's parameters")
    return fig


def plot_beta_prior_posterior(idata: Any) -> Figure:
    """Prior vs posterior of each channel's beta (see :func:`plot_prior_posterior`)."""
    return plot_prior_posterior(idata, ("beta",))


def plot_adstock_weights(idata: Any, max_lag: int, interval: float = 0.9) -> Figure:
    """Learned carry-over per channel: the share of a period's effect felt 0, 1, 2 … periods later.

    Weights are the model's own normalised geometric weights
    (:func:`mmm_lib.model.transforms.adstock_weights`) on every posterior draw of ``decay``: the
    line is the posterior mean, the band its equal-tailed interval.
    """
    from ..model.transforms import adstock_weights, half_life

    ds = _posterior_dataset(idata)
    if "decay" not in ds:
        return note_figure("Adstock is fixed by the spec in this model (model.transforms: fixed): see 03_features.")
    channels = [str(c) for c in ds["decay"]["channel"].values]
    fig = Figure(figsize=(3.4 * len(channels), 2.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(channels), squeeze=False)).ravel()
    lags = np.arange(max_lag)
    tail = (1 - interval) / 2
    for ax, ch in zip(axes, channels):
        d = _draws(ds, "decay", ch).ravel()
        w = adstock_weights(d, max_lag, True)  # (L, S)
        lo, hi = np.quantile(w, [tail, 1 - tail], axis=1)
        ax.fill_between(lags, lo, hi, color="#1f77b4", alpha=0.25, step="mid")
        ax.plot(lags, w.mean(axis=1), color="#1f77b4", marker="o", ms=3)
        ax.set_title(f"{ch}: decay {d.mean():.2f}, half-life {half_life(float(d.mean())):.1f} periods", fontsize=9)
        ax.set_xlabel("periods after the activity")
    axes[0].set_ylabel("share of the effect")
    fig.suptitle(f"Learned adstock weights (posterior mean, {round(100 * interval)}% band)")
    return fig


def _flat_labeller() -> Any:
    """ArviZ labeller writing ``beta[act_tv]`` (the names of the summary tables) instead of ``beta\nact_tv``."""
    from arviz_base.labels import BaseLabeller

    class FlatLabeller(BaseLabeller):
        def make_label_vert(self, var_name: Any, sel: Any, isel: Any) -> str:
            return self.make_label_flat(var_name, sel, isel)

    return FlatLabeller()


def _arviz_vars(idata: Any, var_names: list[str] | tuple[str, ...] | None) -> tuple[Any, list[tuple[str, str, str | None]]]:
    """The posterior of the selected variables as a DataTree for arviz-plots, and their scalar names."""
    import xarray as xr

    ds = _posterior_dataset(idata)
    items = _selected(ds, var_names)
    vars_ = list(dict.fromkeys(v for _, v, _ in items))
    return xr.DataTree.from_dict({"posterior": ds[vars_]}), items


def plot_trace(idata: Any, var_names: list[str] | tuple[str, ...] | None = None) -> Figure:
    """Trace plot (arviz-plots ``plot_trace_dist``): per parameter, each chain's density (left) and draws (right).

    Healthy chains overlap on the left and look like stationary, well-mixed noise on the right.
    ``var_names`` defaults to the main parameters (``beta``, ``sigma_beta``, the learned transforms,
    the control coefficients ``gamma`` (controls, seasonality, trend), ``intercept``, ``sigma``, ``nu``;
    per-entity vectors are left out). One row per scalar parameter,
    labelled as in the summary tables (``beta[act_tv]``).
    """
    import arviz_plots as azp

    from .checks import arviz_figure

    tree, items = _arviz_vars(idata, var_names)
    pc = azp.plot_trace_dist(tree, compact=False, backend="matplotlib", labeller=_flat_labeller(),
                             figure_kwargs={"figsize": (10, 1.35 * len(items) + 0.8)})  # fmt: skip
    fig = arviz_figure(pc)
    axes = np.asarray(fig.axes).reshape(len(items), 2)
    for (name, _, _), (left, right) in zip(items, axes):
        left.set_xlabel("")
        left.set_ylabel(name, rotation=0, ha="right", va="center")
        right.set_ylabel("")
        right.set_xlabel("")
    axes[0, 0].set_title("posterior density (one colour per chain)", fontsize=9)
    axes[0, 1].set_title("draws per chain", fontsize=9)
    axes[-1, 0].set_xlabel("parameter value (model scale)")
    axes[-1, 1].set_xlabel("draw (after tuning)")
    fig.set_layout_engine("constrained")
    return fig


def plot_rank(idata: Any, var_names: list[str] | tuple[str, ...] | None = None) -> Figure:
    """Rank plot (arviz-plots ``plot_rank``): per parameter, each chain's rank ECDF minus the uniform one.

    All draws are ranked together; when the chains agree each chain's ranks are uniform and its
    line stays near zero. ArviZ's multi-chain test marks the stretches where a chain departs more
    than chance allows in black and prints its p-value (``p`` below ``α`` = chains disagree). Every
    panel shares one labelled vertical scale. ``var_names`` defaults as in :func:`plot_trace`.
    """
    import arviz_plots as azp

    from .checks import arviz_figure

    tree, items = _arviz_vars(idata, var_names)
    chains = int(_posterior_dataset(idata).sizes.get("chain", 1))
    if chains < 2:  # ranks compare chains; ArviZ's multi-chain test refuses one
        return note_figure(f"No rank plot: it compares chains, and this fit has {chains}. "
                           "Set chains: 2 or more (4 for a report you will act on) to see it.")
    ncols = min(4, len(items))
    nrows = int(np.ceil(len(items) / ncols))
    pc = azp.plot_rank(tree, backend="matplotlib", labeller=_flat_labeller(), col_wrap=ncols,
                       figure_kwargs={"figsize": (2.9 * ncols + 0.4, 2.2 * nrows + 0.8)})  # fmt: skip
    fig = arviz_figure(pc)
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    # One vertical scale for every panel (at least ±0.08, about 5 sd of a healthy 1000-draw chain), so a
    # healthy parameter looks flat next to one whose chains disagree instead of each filling its panel.
    peak = max((float(np.nanmax(np.abs(ln.get_ydata()))) for ax in shown for ln in ax.get_lines()
                if np.size(ln.get_ydata())), default=0.0)  # fmt: skip
    lim = 1.1 * max(peak, 0.08)
    for ax in shown:
        ax.set_ylim(-lim, lim)
        # arviz-plots hides the y axis; without it nobody can tell how far a chain strays from zero.
        ax.spines["left"].set_visible(True)
        ax.yaxis.set_visible(True)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4, symmetric=True))
        ax.tick_params(axis="y", left=True, labelleft=True, labelsize=7)
        ax.axhline(0, color="0.75", lw=0.7, zorder=0)
        ax.set_title(ax.get_title(), fontsize=9, pad=14)
        ax.set_xlabel("")
    fig.supxlabel("rank of the draw among all chains' draws (0 = lowest, 1 = highest)", fontsize=9)
    fig.supylabel("chain's rank ECDF minus the uniform ECDF", fontsize=9)
    fig.suptitle("Rank plots: one line per chain, flat near zero when the chains agree; black stretches and p below α "
                 "flag a chain that disagrees (same vertical scale in every panel)", fontsize=10)  # fmt: skip
    fig.set_layout_engine("constrained")
    return fig

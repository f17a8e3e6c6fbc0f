"""Figures of the model checks: prior predictive (04_fit), posterior predictive and PSIS-LOO (05_diagnose).

Bands and dots are plain matplotlib on ``Figure`` objects; the density overlay and the Pareto-k plot are
arviz-plots (``plot_ppc_dist``, ``plot_khat``) drawn with the matplotlib backend. arviz-plots draws on a
pyplot figure: :func:`arviz_figure` takes it out of pyplot's registry so a notebook shows it once, as the
returned ``Figure`` (an embedded PNG in the HTML report).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import note_figure

_BAND = "#1f77b4"
_OUTSIDE = "#d62728"


def arviz_figure(pc: Any) -> Figure:
    """The matplotlib ``Figure`` of an arviz-plots ``PlotCollection``, closed in pyplot.

    arviz-plots creates figures with ``pyplot.subplots``; an open pyplot figure is shown again by the
    inline backend at the end of the cell, so it is closed here (the Figure still renders).
    """
    import matplotlib.pyplot as plt

    fig = pc.viz["figure"].item()
    plt.close(fig)
    return fig


def _dates(periods: np.ndarray) -> np.ndarray:
    try:
        return pd.to_datetime(periods).to_numpy()
    except (TypeError, ValueError):
        return np.asarray(periods)


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


def _ppc_data(idata: Any, metadata: Mapping[str, Any]) -> Any:
    """:func:`mmm_lib.diagnostics.predictive_draws` on the sales scale; ``None`` when the groups are missing."""
    from ..diagnostics import predictive_draws

    if not metadata or not metadata.get("target_centers"):
        raise ValueError("predictive plots need model_metadata.json (its target_centers): pass "
                         "read_inputs(run, '05_diagnose')['model_metadata.json']")
    return predictive_draws(idata, dict(metadata))


_NO_PPC = ("No posterior predictive draws in posterior.nc (fitted before predictive checks): "
           "re-run 04_fit to see this plot.")  # fmt: skip


def _band_panel(ax: Any, x: np.ndarray, observed: np.ndarray, draws: np.ndarray, title: str, ylabel: str | None) -> float:
    """50/90 % bands, median and observed dots (red outside the 90 % band) on one axis; returns 90 % coverage."""
    q05, q25, q50, q75, q95 = np.quantile(draws, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    ax.fill_between(x, q05, q95, color=_BAND, alpha=0.18, lw=0, label="90% predictive band")
    ax.fill_between(x, q25, q75, color=_BAND, alpha=0.35, lw=0, label="50% predictive band")
    ax.plot(x, q50, color=_BAND, lw=1.0, label="predictive median")
    out = (observed < q05) | (observed > q95)
    ax.plot(x[~out], observed[~out], "o", color="0.15", ms=2.6, label="observed (inside 90% band)")
    ax.plot(x[out], observed[out], "o", color=_OUTSIDE, ms=4, label="observed (outside 90% band)")
    cov90 = float(np.mean(~out))
    cov50 = float(np.mean((observed >= q25) & (observed <= q75)))
    ax.set_title(f"{title}: 90% band covers {_pct(cov90)}, 50% band {_pct(cov50)}", fontsize=9)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return cov90


def plot_ppc_time(idata: Any, metadata: Mapping[str, Any]) -> Figure:
    """Observed sales per period against the posterior predictive 50 % and 90 % bands (brand total).

    For an entity-level model the series is the sum over stores/geos of the predictive draws (the
    model's own joint prediction of the total). Dots outside the 90 % band are red: a calibrated model
    leaves about 1 in 10 outside, scattered rather than bunched in one season.
    """
    d = _ppc_data(idata, metadata)
    if d is None:
        return note_figure(_NO_PPC)
    x = _dates(d.periods)
    obs, draws = d.observed.sum(axis=0), d.draws.sum(axis=1)
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax = fig.subplots()
    what = "Brand total sales (sum over stores/geos)" if len(d.entities) > 1 else "Sales"
    _band_panel(ax, x, obs, draws, what, "sales per period")
    ax.legend(fontsize=7, loc="upper left", ncols=3)
    fig.suptitle("Posterior predictive check: does the fitted model reproduce the observed sales?", fontsize=11)
    return fig


def plot_ppc_entities(idata: Any, metadata: Mapping[str, Any], max_entities: int = 12, ncols: int = 3) -> Figure:
    """Small multiples of :func:`plot_ppc_time` per store/geo (entity-level models).

    With more than ``max_entities`` entities the ones with the lowest 90 % coverage are shown. A
    brand-level model has one series (:func:`plot_ppc_time`): a note figure says so.
    """
    d = _ppc_data(idata, metadata)
    if d is None:
        return note_figure(_NO_PPC)
    n = len(d.entities)
    if n == 1:
        return note_figure("Brand-level model: one series, shown in the plot above.")
    lo, hi = np.quantile(d.draws, [0.05, 0.95], axis=0)
    cov90 = ((d.observed >= lo) & (d.observed <= hi)).mean(axis=1)
    order = list(range(n)) if n <= max_entities else list(np.argsort(cov90, kind="stable")[:max_entities])
    ncols = min(ncols, len(order))
    nrows = int(np.ceil(len(order) / ncols))
    fig = Figure(figsize=(4.2 * ncols, 2.5 * nrows + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, sharex=True)).ravel()
    x = _dates(d.periods)
    for k, (ax, i) in enumerate(zip(axes, order)):
        _band_panel(ax, x, d.observed[i], d.draws[:, i], d.entities[i], "sales" if k % ncols == 0 else None)
        ax.tick_params(axis="x", labelsize=7, labelrotation=30)
    for ax in axes[len(order):]:
        ax.set_visible(False)
    shown = "" if n <= max_entities else f" ({max_entities} of {n} with the lowest 90% coverage)"
    fig.suptitle(f"Posterior predictive check per store/geo{shown}: bands 50% / 90%, red dots outside the 90% band",
                 fontsize=11)  # fmt: skip
    return fig


def plot_ppc_density(idata: Any, metadata: Mapping[str, Any], num_samples: int = 30) -> Figure:
    """Distribution of period sales: observed (black) over ``num_samples`` posterior predictive replicates (blue).

    arviz-plots ``plot_ppc_dist`` (kernel density) on the sales scale, one panel per store/geo. A good model's black
    line looks like one more blue line; a black line narrower, wider or shifted shows what the model
    gets wrong about the spread or level of sales.
    """
    import arviz_plots as azp
    import xarray as xr

    from ..checks import predictive_sales

    if _ppc_data(idata, metadata) is None:  # same checks and messages as the other plots
        return note_figure(_NO_PPC)
    obs, pred = predictive_sales(idata, dict(metadata))
    dt = xr.DataTree.from_dict({"observed_data": obs.to_dataset(name="sales"),
                                "posterior_predictive": pred.to_dataset(name="sales")})  # fmt: skip
    n = obs.sizes["entity"]
    pc = azp.plot_ppc_dist(dt, backend="matplotlib", kind="kde", cols=["entity"], col_wrap=min(3, n), num_samples=num_samples,
                           figure_kwargs={"figsize": (4.2 * min(3, n), 2.4 * int(np.ceil(n / 3)) + 0.8)})  # fmt: skip
    fig = arviz_figure(pc)
    for ax in fig.axes:
        if ax.get_visible() and ax.get_title():
            ax.set_xlabel("sales per period", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(f"Distribution of sales per period: observed (black) vs {num_samples} simulated from the fitted model (blue)",
                 fontsize=11)  # fmt: skip
    fig.set_layout_engine("constrained")
    return fig


def plot_pareto_k(idata: Any, label_top: int = 5) -> Figure:
    """PSIS-LOO Pareto k per observation (arviz-plots ``plot_khat``), coloured by store/geo.

    Points above the dashed threshold (ArviZ's, about 0.7) are observations the fit depends on so much
    that leaving them out changes it: LOO is unreliable for them. The ``label_top`` highest are labelled
    with their period.
    """
    import arviz_plots as azp

    from ..diagnostics import coord_label, loo_result

    res = loo_result(idata)
    if res is None:
        return note_figure("No log_likelihood group in posterior.nc (fitted before LOO support): re-run 04_fit.")
    k = res.pareto_k
    k = k.assign_coords({d: [coord_label(v) for v in k[d].values] for d in k.dims if d in k.coords})
    res = copy.copy(res)
    res.pareto_k = k
    kw: dict[str, Any] = {"color": "entity"} if "entity" in k.dims and k.sizes["entity"] > 1 else {}
    pc = azp.plot_khat(res, backend="matplotlib", hline_values=[float(res.good_k)],
                       visuals={"threshold_text": False, "hlines": {"color": _OUTSIDE, "linestyle": "--"}},
                       figure_kwargs={"figsize": (11, 3.6)}, **kw)  # fmt: skip
    fig = arviz_figure(pc)
    ax = fig.axes[0]
    thr = float(res.good_k)
    flat = np.asarray(k.values, dtype=float).ravel()
    top = [i for i in np.argsort(-np.nan_to_num(flat, nan=-np.inf), kind="stable")[:label_top] if flat[i] > thr]
    for i in top:
        idx = np.unravel_index(i, k.shape)
        text = ", ".join(str(k[d].values[j]) for d, j in zip(k.dims, idx))
        ax.annotate(text, (i, flat[i]), xytext=(3, 3), textcoords="offset points", fontsize=7, color=_OUTSIDE)
    n_high = int((flat > thr).sum())
    order = " × ".join(["store/geo", "period"] if "entity" in k.dims else ["period"])
    ax.set_xlabel(f"observation ({order}, in data order)")
    ax.set_ylabel("Pareto k")
    ax.set_title(f"PSIS-LOO Pareto k: {n_high} of {flat.size} observations above {thr:.2f} (influential; LOO unreliable for them)",
                 fontsize=10)  # fmt: skip
    fig.set_layout_engine("constrained")
    return fig


def _prior_panel(ax: Any, x: np.ndarray, prior_log: np.ndarray, observed: np.ndarray, factor: float, title: str) -> None:
    """Prior predictive bands (log1p sales draws) against the observed sales and its widened range, log axis."""
    qs = np.quantile(prior_log, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99], axis=0)
    with np.errstate(over="ignore"):
        b = np.expm1(np.clip(qs, None, 700))  # exp overflows past ~709: the axis is clipped long before
    lo_obs, hi_obs = max(float(np.nanmin(observed)), 1e-12) / factor, float(np.nanmax(observed)) * factor
    # The axis spans the observed range ×/÷ 10⁴; draws beyond it (zero or negative ones included, which a log
    # axis cannot show) are drawn at its edges, so matplotlib never transforms values near exp's overflow.
    floor, ceiling = lo_obs / 1e4, hi_obs * 1e4
    b = np.clip(b, floor, ceiling)
    ax.fill_between(x, b[0], b[6], color="0.5", alpha=0.15, lw=0, label="98% of prior draws")
    ax.fill_between(x, b[1], b[5], color="0.5", alpha=0.25, lw=0, label="90%")
    ax.fill_between(x, b[2], b[4], color="0.5", alpha=0.4, lw=0, label="50%")
    ax.plot(x, b[3], color="0.35", lw=1, label="prior median")
    ax.plot(x, observed, color="black", lw=1.4, label="observed sales")
    ax.axhline(lo_obs, color=_OUTSIDE, ls="--", lw=1, label=f"observed min ÷{factor:g}, max ×{factor:g}")
    ax.axhline(hi_obs, color=_OUTSIDE, ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_ylim(floor, ceiling)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="major")


def plot_prior_predictive(idata: Any, metadata: Mapping[str, Any], factor: float | None = None,
                          max_entities: int = 6, ncols: int = 3) -> Figure:
    """Sales simulated from the priors alone per period (bands, log axis) against the observed sales.

    Per store/geo (the first ``max_entities``; one panel for a brand-level model): the 50 %, 90 % and
    98 % intervals of the prior predictive sales, the observed sales (black) and the band the check of
    :func:`mmm_lib.prior_check.prior_predictive_check` counts as plausible (dashed: the lowest observed
    value ÷ ``factor`` and the highest × ``factor``). Grey bands reaching far beyond the dashed lines
    mean the priors allow sales orders of magnitude away from anything seen.
    """
    from ..prior_check import FACTOR, prior_predictive_check, prior_sales_arrays

    factor = FACTOR if factor is None else float(factor)
    arr = prior_sales_arrays(idata, metadata)
    if arr is None:
        return note_figure("No prior predictive draws (or no target_centers in the model metadata): re-run 04_fit.")
    check = prior_predictive_check(idata, metadata, factor=factor)
    ents = arr["entities"][:max_entities]
    ncols = min(ncols, len(ents))
    nrows = int(np.ceil(len(ents) / ncols))
    fig = Figure(figsize=(11 if len(ents) == 1 else 4.2 * ncols, 3.6 if len(ents) == 1 else 2.6 * nrows + 1.0),
                 layout="constrained")  # fmt: skip
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, sharex=True)).ravel()
    x = _dates(arr["periods"])
    for k, (ax, e) in enumerate(zip(axes, ents)):
        i = arr["entities"].index(e)
        share = check["entities"][e]["share_in_range"]
        title = (f"{e}: " if len(arr["entities"]) > 1 else "") + f"{_pct(share)} of draws between the dashed lines"
        _prior_panel(ax, x, arr["prior"][:, i], np.expm1(arr["observed"][i]), factor, title)
        if k % ncols == 0:
            ax.set_ylabel("sales per period (log)")
        ax.tick_params(axis="x", labelsize=7, labelrotation=30 if len(ents) > 1 else 0)
    for ax in axes[len(ents):]:
        ax.set_visible(False)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=6, fontsize=8)
    more = f" ({len(ents)} of {len(arr['entities'])} stores/geos shown)" if len(arr["entities"]) > len(ents) else ""
    verdict = "" if check["passed"] else ": too wide, tighten the priors"
    fig.suptitle(f"Prior predictive check: {_pct(check['share_in_range'])} of the sales the priors allow are within "
                 f"÷{factor:g}..×{factor:g} of the observed range{verdict}{more}", fontsize=11)  # fmt: skip
    return fig

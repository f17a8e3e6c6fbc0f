"""Predictive checks on the original sales scale: band coverage, point errors and CRPS.

The fitted model's predictive draws are stored on its own scale, ``z = log1p(sales) − target_center``
(per entity), in ``posterior.nc``: ``posterior_predictive`` (the estimation window, with noise, from
``pm.sample_posterior_predictive``) and, with ``windows.holdout_periods``, ``predictions`` (the held-out
periods). :func:`to_sales` maps them back to sales with the centres in ``model_metadata.json``; the
metrics below are what 05_diagnose (coverage) and 06_contribute (``fit_metrics.json``'s ``holdout``)
report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

SAMPLE_DIMS = ("chain", "draw")


def _centres(metadata: Mapping[str, Any]) -> dict[str, float]:
    centres = metadata.get("target_centers") or {}
    if not centres:
        raise ValueError("model_metadata.json has no target_centers; re-run 04_fit")
    return {str(k): float(v) for k, v in centres.items()}


def to_sales(z: Any, metadata: Mapping[str, Any]) -> Any:
    """``expm1(z + target_center)`` for a DataArray on the model's scale (with or without an ``entity`` dim)."""
    import xarray as xr

    centres = _centres(metadata)
    if "entity" in z.dims:
        c = xr.DataArray([centres[str(e)] for e in z["entity"].values], coords={"entity": z["entity"].values}, dims="entity")
    else:
        c = next(iter(centres.values()))
    return np.expm1(z + c)


def predictive_sales(idata: Any, metadata: Mapping[str, Any], group: str = "posterior_predictive") -> tuple[Any, Any]:
    """(observed, predictive) sales for ``posterior_predictive`` (estimation window) or ``predictions`` (holdout).

    Both come back with an ``entity`` dim (length 1 for the baseline model, named after its one
    entity) so callers handle one shape; the predictive keeps ``chain``/``draw``.
    """
    if group == "posterior_predictive":
        obs, pred = idata["observed_data"]["z"], idata["posterior_predictive"]["z"]
    elif group == "predictions":
        obs, pred = idata["predictions_constant_data"]["z_holdout_observed"], idata["predictions"]["z_holdout"]
    else:
        raise ValueError(f"group must be 'posterior_predictive' or 'predictions', got {group!r}")
    if "entity" not in obs.dims:
        ent = str(next(iter(_centres(metadata))))
        obs, pred = obs.expand_dims(entity=[ent]), pred.expand_dims(entity=[ent], axis=-2)
    return to_sales(obs, metadata), to_sales(pred, metadata)


def flat_draws(pred: Any) -> np.ndarray:
    """(S, …) draws with chain and draw stacked first."""
    other = [d for d in pred.dims if d not in SAMPLE_DIMS]
    arr = pred.transpose(*SAMPLE_DIMS, *other).values
    return np.asarray(arr, dtype=float).reshape(-1, *arr.shape[2:])


def interval_coverage(observed: np.ndarray, draws: np.ndarray, probs: tuple[float, ...] = (0.5, 0.9)) -> dict[str, float]:
    """Share of observations inside the central predictive intervals, e.g. ``{"coverage_50": .., "coverage_90": ..}``.

    ``draws`` is (S, *observed.shape). Equal-tailed intervals; a well-calibrated model covers about
    the nominal share.
    """
    y = np.asarray(observed, dtype=float)
    x = np.asarray(draws, dtype=float)
    out = {}
    for p in probs:
        lo, hi = np.quantile(x, [(1 - p) / 2, 1 - (1 - p) / 2], axis=0)
        out[f"coverage_{round(100 * p)}"] = float(np.mean((y >= lo) & (y <= hi)))
    return out


def crps(observed: np.ndarray, draws: np.ndarray) -> float:
    """Mean continuous ranked probability score of the sample forecasts (lower is better; target units).

    ``E|X − y| − ½ E|X − X'|`` per observation with the sorted-sample identity
    ``E|X − X'| = 2/S² Σ_i (2i − S − 1) x_(i)``, averaged over observations. (arviz-stats offers
    CRPS only with PSIS-LOO weights, ``loo_score``; a held-out forecast needs the plain one.)
    """
    y = np.asarray(observed, dtype=float)
    x = np.sort(np.asarray(draws, dtype=float).reshape(np.asarray(draws).shape[0], -1), axis=0)
    s = x.shape[0]
    term1 = np.abs(x - y.reshape(1, -1)).mean(axis=0)
    w = (2 * np.arange(1, s + 1) - s - 1)[:, None]
    term2 = (w * x).sum(axis=0) / (s * s)
    return float(np.mean(term1 - term2))


def point_errors(observed: np.ndarray, point: np.ndarray) -> dict[str, float | None]:
    """MAPE (%, over observations with non-zero sales) and RMSE of a point forecast."""
    y = np.asarray(observed, dtype=float).ravel()
    f = np.asarray(point, dtype=float).ravel()
    nz = y != 0
    mape = float(100 * np.mean(np.abs((y[nz] - f[nz]) / y[nz]))) if nz.any() else None
    return {"mape": mape, "rmse": float(np.sqrt(np.mean((y - f) ** 2)))}


def forecast_metrics(observed: np.ndarray, draws: np.ndarray) -> dict[str, Any]:
    """MAPE and RMSE of the predictive mean, CRPS, and 50%/90% band coverage of ``observed`` (any shape)."""
    x = np.asarray(draws, dtype=float)
    return {**point_errors(observed, x.mean(axis=0)), "crps": crps(observed, x),
            **interval_coverage(observed, x), "n_obs": int(np.asarray(observed).size)}  # fmt: skip


def sales_metrics(idata: Any, metadata: Mapping[str, Any], group: str) -> dict[str, Any]:
    """:func:`forecast_metrics` of a predictive group on the brand total (sum over entities) and, for
    entity-level models, per entity and period.

    The brand total is comparable across brand- and entity-level models of the same data.
    """
    obs, pred = predictive_sales(idata, metadata, group)
    obs_e = np.asarray(obs.transpose("entity", ...).values, dtype=float)  # (E, T)
    pred_e = flat_draws(pred.transpose(*SAMPLE_DIMS, "entity", ...))  # (S, E, T)
    out = {"brand": forecast_metrics(obs_e.sum(axis=0), pred_e.sum(axis=1)), "entity": None}
    if obs_e.shape[0] > 1:
        out["entity"] = forecast_metrics(obs_e, pred_e)
    return out

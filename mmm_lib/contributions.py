"""Contributions: fitted sales split into baseline + channels, counterfactual ROI, fit metrics.

Everything is computed per posterior draw over the estimation window (``window == "estimation"``)
in original units, then summarised as a posterior mean and an equal-tailed interval (90% by
default: the 5% and 95% quantiles over draws).

Decomposition
    With ``mu`` the linear predictor on the centred log1p scale (``model_pymc.linear_predictor``)
    and ``f`` the media features, per draw and period::

        fitted   = expm1(mu + target_center)
        baseline = expm1(mu - sum_c beta_c * f_c + target_center)      # all media off
        media    = fitted - baseline

    The model is additive on the log scale, hence multiplicative in sales: channels interact,
    and the media total has no unique split. We share it **in proportion to each channel's
    log-scale term** ``beta_c * f_c``::

        contribution_c = media * beta_c * f_c / sum_k beta_k * f_k

    so ``baseline + sum_c contribution_c == fitted`` exactly (to rounding) per draw and period.
    A period whose log-scale media terms sum to zero has ``media == 0`` exactly; its channel
    contributions are set to 0 rather than divided by zero.

Counterfactual ROI
    A channel's *incremental* sales are ``sum_t fitted_t - fitted_t(channel off)`` over the
    estimation window, where "off" sets the channel's **activity** (not its standardized feature)
    to 0 in every row, carryover included, and recomputes the media features with
    ``features.media_features``; so adstock carried into the window from earlier activity counts
    as the channel's effect. ``ROI = incremental / spend`` over the same window: revenue per unit
    of spend (ROAS). Because of the interaction, incremental sales and the decomposition
    contribution of a channel differ, and the incrementals do not add up to the media total.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import checks
from .labels import display_name, display_names
from .model import MMM, from_artifacts, posterior_draws
from .spec import ModelConfig
from .stages import read_inputs, write_outputs

ESTIMATION = "estimation"
HOLDOUT = "holdout"  # held-out periods (windows.holdout_periods): predicted, not fitted
BRAND = "brand"  # entity_id of the brand rows (the sum over entities)
# Recomputed media features must reproduce features.parquet; beyond this they come from other settings.
_FEATURE_TOL = 1e-6

METHOD = (
    "Per posterior draw, over the estimation window, in original units: fitted = expm1(mu + "
    "target_center); baseline = fitted with every media term removed (all media off); the media "
    "total fitted - baseline is shared among channels in proportion to their log-scale terms "
    "beta_c * f_c (the model is multiplicative in sales, so this split is a convention). "
    "'incremental' is the counterfactual: fitted minus fitted with the channel's activity set to 0 "
    "(carryover rows included). Mean and equal-tailed interval over draws."
)
ROI_DEFINITION = (
    "roi = contribution / spend: counterfactual incremental sales (fitted minus fitted with the "
    "channel's activity set to 0 in all rows, summed over the estimation window) per unit of the "
    "channel's spend in that window, i.e. revenue per unit of spend (ROAS); 1.0 is break-even."
)


@dataclass
class ContributionResult:
    """What stage 06 computes; :func:`contribution_outputs` keys it by the standard artifact names.

    Attributes
    ----------
    timeseries
        ``contributions.parquet``: long table ``entity_id, period_start, component, mean, low, high``.
    summary
        ``contribution_summary.json``.
    roi
        ``roi_metrics.json``.
    fitted
        ``fitted.parquet``: ``entity_id, period_start, window, actual, fitted, fitted_low, fitted_high,
        predicted_low, predicted_high``: ``fitted*`` is expected sales (its band: parameter uncertainty),
        ``predicted_*`` the posterior predictive band (noise included); ``window`` is ``estimation`` or
        ``holdout`` (held-out periods, predicted from the fit on the rest).
    fit_metrics
        ``fit_metrics.json``: ``mape`` (%), ``rmse``, ``r2``, ``n_obs`` over the fitted window, and
        ``holdout`` (null when ``windows.holdout_periods`` is 0): see :func:`holdout_metrics`.
    model, draws
        The fitted run's model object and its posterior draws, kept so response curves evaluate the
        same model without rebuilding it (not artifacts).
    """

    timeseries: pd.DataFrame
    summary: dict[str, Any]
    roi: dict[str, Any]
    fitted: pd.DataFrame
    fit_metrics: dict[str, Any]
    model: MMM | None = field(default=None, repr=False)
    draws: dict[str, np.ndarray] | None = field(default=None, repr=False)


# --------------------------------------------------------------------------------------------
# small helpers


def _quantiles(interval: float) -> tuple[float, float]:
    if not 0.0 < interval < 1.0:
        raise ValueError(f"interval is {interval!r}; give a probability strictly between 0 and 1, e.g. 0.9")
    tail = (1.0 - interval) / 2.0
    return tail, 1.0 - tail


def _summarise(x: np.ndarray, q: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, low, high over the draw axis (axis 0)."""
    low, high = np.quantile(x, q, axis=0)
    return x.mean(axis=0), low, high


def _scalar(x: np.ndarray, q: tuple[float, float]) -> tuple[float, float, float]:
    m, lo, hi = _summarise(np.asarray(x, dtype=float), q)
    return float(m), float(lo), float(hi)


def _ratio(num: np.ndarray, den: np.ndarray | float) -> np.ndarray:
    den = np.broadcast_to(np.asarray(den, dtype=float), np.shape(num))
    return np.divide(num, den, out=np.full(np.shape(num), np.nan), where=den != 0)


def _iso(ts: Any) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d")


def _posterior_coords(idata: Any, dim: str, var: str) -> list[str] | None:
    post = idata["posterior"] if "posterior" in idata.children else idata
    if var not in post.data_vars:
        return None
    da = post[var]
    if dim not in da.dims:
        raise ValueError(
            f"posterior variable {var!r} has dims {tuple(da.dims)}; expected a {dim!r} dim (see docs/DESIGN.md)"
        )
    return [str(v) for v in np.asarray(da.coords[dim].values)] if dim in da.coords else None


def _align(canonical_df: pd.DataFrame, features_df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sort both tables by entity and period and check they describe the same rows."""
    for name, df in (("canonical_data", canonical_df), ("features", features_df)):
        missing = [c for c in ("entity_id", "period_start", "window") if c not in df.columns]
        if missing:
            raise ValueError(f"{name} has no column(s) {missing}; rerun the stage that writes it")
    keys = ["entity_id", "period_start"]
    can = canonical_df.sort_values(keys, kind="stable").reset_index(drop=True)
    feat = features_df.sort_values(keys, kind="stable").reset_index(drop=True)
    same = len(can) == len(feat) and bool(
        (pd.to_datetime(can["period_start"]).to_numpy() == pd.to_datetime(feat["period_start"]).to_numpy()).all()
        and (can["entity_id"].astype(str).to_numpy() == feat["entity_id"].astype(str).to_numpy()).all()
    )
    if not same:
        raise ValueError(
            f"features ({len(feat)} rows) and canonical_data ({len(can)} rows) do not cover the same entities and "
            "periods; rerun 03_features (and later stages) for this run"
        )
    if not (can["window"].astype(str).to_numpy() == feat["window"].astype(str).to_numpy()).all():
        raise ValueError("features and canonical_data disagree on the 'window' of some periods; rerun 03_features")
    if not (can["window"].astype(str) == ESTIMATION).any():
        raise ValueError("canonical_data has no rows with window == 'estimation'; check the spec's windows")
    return can, feat


def _check_model(mmm: MMM, idata: Any, model_metadata: dict[str, Any], feat: pd.DataFrame) -> None:
    """The posterior, the model metadata and the features must describe the same model."""
    channels = _posterior_coords(idata, "channel", "beta") or list(model_metadata.get("channels", []))
    meta_channels = list(model_metadata.get("channels", channels))
    if list(channels) != meta_channels or list(channels) != list(mmm.data.channels):
        raise ValueError(
            f"posterior channels {channels} differ from model_metadata channels {meta_channels} or the features' "
            f"{mmm.data.channels}; rerun 03_features and 04_fit"
        )
    controls = _posterior_coords(idata, "control", "gamma")
    if controls is not None and list(controls) != list(mmm.data.control_names):
        raise ValueError(f"controls {controls} in the posterior are not the features' {mmm.data.control_names}; rerun 04_fit")
    if mmm.learned:
        return
    media_cols = mmm.data.channel_features
    est = (feat["window"] == ESTIMATION).to_numpy()
    stored = feat.loc[est, media_cols].to_numpy(dtype=float)
    recomputed = mmm.media({}, mmm.data.activity).reshape(-1, len(media_cols))
    diff = np.abs(recomputed - stored)
    if not np.all(diff <= _FEATURE_TOL * np.maximum(1.0, np.abs(stored))):
        worst = int(np.nanargmax(diff.max(axis=0)))
        raise ValueError(
            f"media features recomputed from the activity differ from features.parquet for "
            f"{channels[worst]!r} (max abs difference {float(diff[:, worst].max()):.3g}); feature_metadata/"
            "feature_scaler do not match features.parquet: rerun 03_features and later stages for this run"
        )


def model_for(features_df: pd.DataFrame, feature_metadata: dict[str, Any], feature_scaler: dict[str, Any],
              model_metadata: dict[str, Any]) -> MMM:
    """The fitted run's :class:`~mmm_lib.model.MMM` (its configuration read from ``model_metadata.json``)."""
    cfg = ModelConfig(transforms=model_metadata.get("transforms", "fixed"), level=model_metadata.get("level", "brand"))
    mmm = from_artifacts(features_df, feature_metadata, feature_scaler, cfg)
    centers = model_metadata.get("target_centers") or (
        {mmm.data.entities[0]: model_metadata["target_center"]} if model_metadata.get("target_center") is not None else None
    )
    if centers is None:
        raise ValueError("model_metadata has no 'target_center'; rerun 04_fit")
    if sorted(centers) != sorted(mmm.data.entities):
        raise ValueError(f"model_metadata was fitted on entities {sorted(centers)[:5]}, the features have "
                         f"{mmm.data.entities[:5]}; rerun 04_fit")
    mmm.data.target_center = np.array([float(centers[e]) for e in mmm.data.entities])  # as fitted
    return mmm


# --------------------------------------------------------------------------------------------
# public API


def iter_decomposition(
    mu: np.ndarray, terms: np.ndarray, target_center: float, channels: list[str]
) -> Iterator[tuple[str, np.ndarray]]:
    """Per-draw decomposition of one entity's fitted sales, one (S, T) array at a time.

    Yields ``("fitted", ...)``, ``("baseline", ...)`` and then ``(channel, ...)`` for each channel, in
    original units; ``baseline + sum(channels) == fitted`` per draw and period (see the module
    docstring for how the media total is shared).

    Parameters
    ----------
    mu
        (S, T) linear predictor (:meth:`MMM.mu`).
    terms
        (S, T, C) log-scale media terms ``beta_c * media_c`` (:meth:`MMM.media_terms`).
    target_center
        The entity's ``target_center``.
    channels
        The C channel names, in the order of ``terms``' last axis.
    """
    if terms.shape[-1] != len(channels):
        raise ValueError(f"media terms have {terms.shape[-1]} channels but {len(channels)} names are given ({channels})")
    fitted = np.expm1(mu + target_center)
    yield "fitted", fitted
    terms_sum = np.zeros_like(mu)
    for c in range(len(channels)):
        terms_sum += terms[..., c]
    baseline = np.expm1(mu - terms_sum + target_center)
    yield "baseline", baseline
    media_total = fitted - baseline
    del baseline
    for c, ch in enumerate(channels):
        term = np.array(terms[..., c])
        # A zero sum of log-scale terms means media_total is exactly 0 there: nothing to share.
        np.divide(term, terms_sum, out=term, where=terms_sum != 0)
        term[terms_sum == 0] = 0.0
        yield ch, media_total * term


def fit_metrics(actual: np.ndarray, fitted: np.ndarray) -> dict[str, Any]:
    """MAPE (%), RMSE, R² and n_obs of the posterior-mean fit.

    Parameters
    ----------
    actual, fitted
        (N,) observed and posterior-mean fitted sales, original units.

    Returns
    -------
    dict
        ``mape`` in percent over periods with non-zero actual (``null`` if none; periods left out
        are counted in ``mape_excluded_zero_actual``), ``rmse`` in the target's units, ``r2``
        (``null`` when actual is constant), ``n_obs``.
    """
    a = np.asarray(actual, dtype=float)
    f = np.asarray(fitted, dtype=float)
    if a.shape != f.shape:
        raise ValueError(f"actual has shape {a.shape} but fitted has {f.shape}; they must match")
    err = a - f
    nz = a != 0
    ss_tot = float(((a - a.mean()) ** 2).sum()) if a.size else 0.0
    point = checks.point_errors(a, f) if a.size else {"mape": None, "rmse": None}
    return {
        **point,
        "r2": float(1.0 - (err**2).sum() / ss_tot) if ss_tot > 0 else None,
        "n_obs": int(a.size),
        "mape_excluded_zero_actual": int((~nz).sum()),
    }


def compute_contributions(
    canonical_df: pd.DataFrame,
    column_info: dict[str, Any],
    features_df: pd.DataFrame,
    feature_metadata: dict[str, Any],
    feature_scaler: dict[str, Any],
    model_metadata: dict[str, Any],
    idata: Any,
    interval: float = 0.9,
) -> ContributionResult:
    """Decomposition, counterfactual ROI, fitted values and fit metrics (see the module docstring).

    Every number comes from the fitted run's model object (:func:`model_for`): its media transform,
    linear predictor and expected sales, evaluated per posterior draw. For an entity-level model each
    entity is computed on its own and the brand is the sum over entities, per draw.

    Parameters
    ----------
    canonical_df, column_info
        ``canonical_data.parquet`` and ``column_info.json`` (02_canonicalize): spend and target.
    features_df, feature_metadata, feature_scaler
        03_features outputs (activity, fixed media features and their settings).
    model_metadata, idata
        04_fit outputs: the model configuration and the posterior (a DataTree with a ``posterior`` group).
    interval
        Probability of the equal-tailed interval reported with every mean.

    Returns
    -------
    ContributionResult
    """
    q = _quantiles(interval)
    can, feat = _align(canonical_df, features_df)
    target = column_info.get("target") or feature_metadata.get("target")
    if target not in can.columns:
        raise ValueError(
            f"canonical_data has no target column {target!r} (column_info['target']); rerun 02_canonicalize"
        )
    mmm = model_for(feat, feature_metadata, feature_scaler, model_metadata)
    _check_model(mmm, idata, model_metadata, feat)
    d = mmm.data
    channels = list(d.channels)
    draws = posterior_draws(idata)
    periods = pd.Series(pd.to_datetime(d.periods)).astype("datetime64[ns]")
    n = len(periods)
    est_rows = (can["window"].astype(str) == ESTIMATION).to_numpy()
    actual_all = can.loc[est_rows, target].to_numpy(dtype=float).reshape(len(d.entities), n)

    rows: list[pd.DataFrame] = []
    fitted_rows: list[pd.DataFrame] = []
    brand: dict[str, np.ndarray] = {}  # (S, T) brand sums per component
    incremental: dict[str, np.ndarray] = {}  # (S,) brand incremental per channel
    entity_incremental: list[dict[str, np.ndarray]] = []
    bands = _predictive_bands(idata, model_metadata, q)
    hold_periods = pd.Series(pd.to_datetime(d.holdout_periods)).astype("datetime64[ns]") if d.n_holdout else None
    brand_holdout = 0.0
    for e, entity in enumerate(d.entities):
        media = mmm.media(draws, d.activity[e : e + 1], [e])
        mu = mmm.mu(draws, media, [e])[:, 0]
        terms = mmm.media_terms(draws, media, [e])[:, 0]
        for component, x in iter_decomposition(mu, terms, float(d.target_center[e]), channels):
            brand[component] = brand[component] + x if component in brand else x
            if component == "fitted":
                fitted_rows.append(_fitted_frame(entity, periods, actual_all[e], x, q, bands, "posterior_predictive", e))
                if d.n_holdout:
                    xh = mmm.expected_sales(draws, d.activity[e : e + 1], [e], rows=HOLDOUT)[:, 0]
                    brand_holdout = brand_holdout + xh
                    fitted_rows.append(_fitted_frame(entity, hold_periods, d.holdout_target[e], xh, q, bands, "predictions", e))
                continue
            rows.append(_component_frame(entity, periods, component, x, q))
        inc = _counterfactual_incremental(mmm, draws, e, mu)
        entity_incremental.append(inc)
        for ch in channels:
            incremental[ch] = incremental[ch] + inc[ch] if ch in incremental else inc[ch]
        del media, mu, terms

    actual = actual_all.sum(axis=0)
    if len(d.entities) > 1:  # brand rows: the per-draw sums over entities
        rows += [_component_frame(BRAND, periods, c, brand[c], q) for c in ["baseline", *channels]]
        fitted_rows.append(_fitted_frame(BRAND, periods, actual, brand["fitted"], q, bands, "posterior_predictive", None))
        if d.n_holdout:
            fitted_rows.append(_fitted_frame(BRAND, hold_periods, d.holdout_target.sum(axis=0), brand_holdout, q, bands,
                                             "predictions", None))  # fmt: skip
    totals = {k: v.sum(axis=1) for k, v in brand.items()}
    fitted_total = totals["fitted"]

    def share_block(total: np.ndarray) -> dict[str, float]:
        c, c_lo, c_hi = _scalar(total, q)
        s, s_lo, s_hi = _scalar(_ratio(total, fitted_total), q)
        return {
            "contribution": c, "contribution_low": c_lo, "contribution_high": c_hi,
            "share": s, "share_low": s_lo, "share_high": s_hi,
        }  # fmt: skip

    channel_blocks = []
    for ch in channels:
        inc, inc_lo, inc_hi = _scalar(incremental[ch], q)
        channel_blocks.append(
            {"channel": ch, **share_block(totals[ch]),
             "incremental": inc, "incremental_low": inc_lo, "incremental_high": inc_hi}  # fmt: skip
        )
    fit_mean = brand["fitted"].mean(axis=0)
    tf, tf_lo, tf_hi = _scalar(fitted_total, q)
    summary = {
        "interval": interval,
        "target": target,
        "window": {"start": _iso(periods.iloc[0]), "end": _iso(periods.iloc[-1]), "n_periods": n},
        "total_actual": float(np.nansum(actual)),
        "total_fitted": {"mean": tf, "low": tf_lo, "high": tf_hi},
        "baseline": share_block(totals["baseline"]),
        "channels": channel_blocks,
        "method": METHOD,
    }
    spend = _spend(can, est_rows, channels, column_info, len(d.entities), n)
    roi = _roi_metrics(channels, column_info, spend, incremental, q, interval)
    if d.n_holdout:
        roi["window_note"] = (
            f"ROI is for the fitted periods {summary['window']['start']} – {summary['window']['end']}; the "
            f"{d.n_holdout} held-out periods after them (windows.holdout_periods) are predicted and scored in "
            "fit_metrics.json, not included here"
        )
    if len(d.entities) > 1:
        roi["entities"] = [
            {"entity_id": ent, "channels": _roi_metrics(channels, column_info, {k: (v[0][i], v[1]) for k, v in spend.items()},
                                                        entity_incremental[i], q, interval)["channels"]}
            for i, ent in enumerate(d.entities)
        ]  # fmt: skip
    return ContributionResult(
        timeseries=pd.concat(rows, ignore_index=True),
        summary=summary,
        roi=roi,
        fitted=pd.concat(fitted_rows, ignore_index=True),
        fit_metrics={**fit_metrics(actual, fit_mean), "holdout": holdout_metrics(idata, model_metadata)},
        model=mmm,
        draws=draws,
    )


def _component_frame(entity: str, periods: pd.Series, component: str, x: np.ndarray, q: tuple[float, float]) -> pd.DataFrame:
    m, lo, hi = _summarise(x, q)
    return pd.DataFrame({"entity_id": entity, "period_start": periods, "component": component, "mean": m, "low": lo, "high": hi})


def _fitted_frame(entity: str, periods: pd.Series, actual: np.ndarray, x: np.ndarray, q: tuple[float, float],
                  bands: dict[str, Any], group: str, e: int | None) -> pd.DataFrame:
    m, lo, hi = _summarise(x, q)
    p_lo, p_hi = bands[group][e] if group in bands else (np.full(len(m), np.nan),) * 2
    return pd.DataFrame({"entity_id": entity, "period_start": periods.to_numpy(),
                         "window": ESTIMATION if group == "posterior_predictive" else HOLDOUT, "actual": actual,
                         "fitted": m, "fitted_low": lo, "fitted_high": hi, "predicted_low": p_lo, "predicted_high": p_hi})  # fmt: skip


def _predictive_bands(idata: Any, model_metadata: dict[str, Any], q: tuple[float, float]) -> dict[str, Any]:
    """``{group: {entity index or None (brand total): (low, high)}}`` of the predictive sales draws (noise included).

    Groups ``posterior_predictive`` and ``predictions`` as 04_fit stored them; a posterior without
    them (written before model checks existed) gives no bands.
    """
    out: dict[str, Any] = {}
    for group in ("posterior_predictive", "predictions"):
        if not (hasattr(idata, "children") and group in idata.children):
            continue
        _, pred = checks.predictive_sales(idata, model_metadata, group)
        x = checks.flat_draws(pred.transpose("chain", "draw", "entity", ...))  # (S, E, T)
        lo, hi = np.quantile(x, q, axis=0)
        blo, bhi = np.quantile(x.sum(axis=1), q, axis=0)
        out[group] = {**{e: (lo[e], hi[e]) for e in range(x.shape[1])}, None: (blo, bhi)}
    return out


def holdout_metrics(idata: Any, model_metadata: dict[str, Any]) -> dict[str, Any] | None:
    """``fit_metrics.json``'s ``holdout`` block: out-of-sample accuracy on the held-out periods, or ``None``.

    ``{"periods": H, "start", "end", "brand": {mape, rmse, crps, coverage_50, coverage_90, n_obs},
    "entity": same keys over entity × period (entity-level models) or null}``. ``brand`` scores the
    brand total, so brand- and entity-level runs of the same data compare; MAPE/RMSE score the
    predictive mean, CRPS (target units, lower is better) and coverage the whole predictive distribution.
    """
    if not (hasattr(idata, "children") and "predictions" in idata.children):
        return None
    per = idata["predictions"]["z_holdout"]["holdout_period"].values
    return {"periods": int(len(per)), "start": _iso(pd.Timestamp(per[0])), "end": _iso(pd.Timestamp(per[-1])),
            **checks.sales_metrics(idata, model_metadata, "predictions")}  # fmt: skip


def _counterfactual_incremental(mmm: MMM, draws: dict[str, np.ndarray], e: int, mu: np.ndarray) -> dict[str, np.ndarray]:
    """Per channel, (S,) incremental sales of entity ``e`` over the window: fitted minus fitted with its activity at 0.

    "Off" zeroes the channel's activity in every row, carryover included, and recomputes the media
    through the model's own transform, so adstock carried into the window counts as the channel's.
    """
    center = float(mmm.data.target_center[e])
    fitted_base = np.expm1(mu + center)
    out: dict[str, np.ndarray] = {}
    for c, ch in enumerate(mmm.data.channels):
        act = mmm.data.activity[e : e + 1].copy()
        act[..., c] = 0.0
        fitted_cf = mmm.expected_sales(draws, act, [e])[:, 0]
        out[ch] = (fitted_base - fitted_cf).sum(axis=1)
    return out


def _spend(can: pd.DataFrame, est: np.ndarray, channels: list[str], column_info: dict[str, Any], n_entities: int,
           n: int) -> dict[str, tuple[np.ndarray, str | None]]:
    """Channel → ((E,) spend per entity over the window, note or None); channels without a spend column left out."""
    spend_map = column_info.get("spend") or {}
    out = {}
    for ch in channels:
        col = spend_map.get(ch)
        if not col:
            continue
        if col not in can.columns:
            raise ValueError(
                f"column_info names spend column {col!r} for {ch!r} but canonical_data has no such column; "
                "rerun 02_canonicalize"
            )
        s = can.loc[est, col].to_numpy(dtype=float).reshape(n_entities, n)
        note = f"{int(np.isnan(s).sum())} missing {col} value(s) in the estimation window were treated as 0" if np.isnan(s).any() else None
        out[ch] = (np.nansum(s, axis=1), note)
    return out


def _roi_metrics(
    channels: list[str],
    column_info: dict[str, Any],
    spend: dict[str, tuple[np.ndarray | float, str | None]],
    incremental: dict[str, np.ndarray],
    q: tuple[float, float],
    interval: float,
) -> dict[str, Any]:
    spend_map = column_info.get("spend") or {}
    rows, without, notes = [], [], {}
    for ch in channels:
        if ch not in spend:
            without.append(ch)
            continue
        col = spend_map[ch]
        amounts, note = spend[ch]
        if note:
            notes[ch] = note
        total = float(np.sum(amounts))
        inc, inc_lo, inc_hi = _scalar(incremental[ch], q)
        row = {"channel": ch, "spend_col": col, "spend": total,
               "contribution": inc, "contribution_low": inc_lo, "contribution_high": inc_hi}  # fmt: skip
        if total > 0:
            row["roi"], row["roi_low"], row["roi_high"] = _scalar(incremental[ch] / total, q)
        else:
            row["roi"] = row["roi_low"] = row["roi_high"] = None
            notes[ch] = f"{col} totals {total:g} in the estimation window, so ROI is undefined (null)"
        rows.append(row)
    return {
        "interval": interval,
        "definition": ROI_DEFINITION,
        "channels": rows,
        "channels_without_spend": without,
        "notes": notes,
    }


# --------------------------------------------------------------------------------------------
# run-level helpers for the notebook and the runner


# artifact (stages.STAGE_IO["06_contribute"] inputs) -> compute_contributions parameter
INPUT_ARGS = {
    "canonical_data.parquet": "canonical_df",
    "column_info.json": "column_info",
    "features.parquet": "features_df",
    "feature_metadata.json": "feature_metadata",
    "feature_scaler.json": "feature_scaler",
    "model_metadata.json": "model_metadata",
    "posterior.nc": "idata",
}


def contribution_args(inputs: dict[str, Any]) -> dict[str, Any]:
    """``read_inputs(run, "06_contribute")`` (keyed by artifact) as :func:`compute_contributions`'s keyword arguments."""
    return {INPUT_ARGS[name]: value for name, value in inputs.items()}


def contribution_outputs(result: ContributionResult) -> dict[str, Any]:
    """The five 06_contribute artifacts of ``result``, keyed by artifact name."""
    return {
        "contributions.parquet": result.timeseries,
        "contribution_summary.json": result.summary,
        "roi_metrics.json": result.roi,
        "fitted.parquet": result.fitted,
        "fit_metrics.json": result.fit_metrics,
    }


def contribute_stage(run: Any, interval: float = 0.9) -> ContributionResult:
    """Stage 06 in one call: read the inputs from ``run``, compute, write all five artifacts."""
    result = compute_contributions(**contribution_args(read_inputs(run, "06_contribute")), interval=interval)
    write_outputs(run, "06_contribute", contribution_outputs(result))
    return result


def diagnostics_banner(run: Any) -> Any:
    """Whether the fit behind these numbers passed 05_diagnose, for the top of the 06 report.

    Returns a :class:`~mmm_lib.gate.DiagnosticsBanner`: a string (``print`` shows the verdict, and when the
    checks failed the failed checks, parameters and what to try, in order) that a notebook ``display``
    shows as HTML: a red PROVISIONAL banner naming the failed checks and pointing to the 05_diagnose report.
    """
    from .gate import diagnostics_banner_for

    path = run.path("diagnostics.json")
    if not Path(path).is_file():
        return diagnostics_banner_for(None)
    spec = getattr(run, "spec", None)
    spec_dict = spec.model_dump(mode="json") if spec is not None else None
    return diagnostics_banner_for(run.read_json("diagnostics.json"), spec_dict)


# --------------------------------------------------------------------------------------------
# report tables and the executive summary: display only (artifacts keep their keys and raw numbers)

# One word, one meaning: the counterfactual and the decomposition are different numbers.
INCREMENTAL_LABEL = "incremental sales (if switched off)"
DECOMPOSITION_LABEL = "decomposition share of sales"
NA_TEXT = "–"


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and not np.isfinite(x))


def fmt_money(x: Any) -> str:
    """Whole units with thousands separators (``1234567.8`` → ``"1,234,568"``); ``"–"`` when undefined."""
    return NA_TEXT if _missing(x) else f"{float(x):,.0f}"


def fmt_ratio(x: Any, digits: int = 2) -> str:
    """A ratio such as ROI to ``digits`` decimals, never in scientific notation; ``"–"`` when undefined."""
    return NA_TEXT if _missing(x) else f"{float(x):,.{digits}f}"


def _range(lo: Any, hi: Any, fmt: Any) -> str:
    return NA_TEXT if _missing(lo) or _missing(hi) else f"{fmt(lo)} – {fmt(hi)}"


def _pct_label(interval: float) -> str:
    return f"{interval * 100:g}%"


def one_header_row(df: pd.DataFrame) -> pd.DataFrame:
    """The index name moved to the columns' name: an HTML table then has one header row, the row labels'
    title in its corner, instead of a second header row holding only the index name."""
    return df.rename_axis(df.index.name, axis="columns").rename_axis(None)


def roi_verdict(row: dict[str, Any]) -> str:
    """``pays back`` when the whole ROI interval is above 1, ``does not pay back`` when it is below 1,
    ``inconclusive`` when it contains 1, ``no ROI`` when ROI is undefined (no spend in the window)."""
    if _missing(row.get("roi")) or _missing(row.get("roi_low")) or _missing(row.get("roi_high")):
        return "no ROI"
    if row["roi_low"] > 1.0:
        return "pays back"
    if row["roi_high"] < 1.0:
        return "does not pay back"
    return "inconclusive"


def roi_sentences(roi: dict[str, Any], labels: dict[str, str] | None = None) -> list[str]:
    """One plain sentence per channel from ``roi_metrics.json``, e.g.
    ``"TV returned 1.61 per unit of spend (90%: 1.21–2.05): pays back."``

    Channels are in the artifact's order; channels with no spend column, or no spend in the window, say so.
    """
    rows = list(roi.get("channels", []))
    without = [str(c) for c in roi.get("channels_without_spend", [])]
    names = display_names([r["channel"] for r in rows] + without, labels)
    pct = _pct_label(roi.get("interval", 0.9))
    out = []
    for r in rows:
        name, verdict = names[r["channel"]], roi_verdict(r)
        if verdict == "no ROI":
            out.append(f"{name} had no spend in the window, so it has no ROI.")
            continue
        why = {"pays back": "pays back", "does not pay back": "does not pay back",
               "inconclusive": "inconclusive (the interval includes break-even, 1.00)"}[verdict]  # fmt: skip
        out.append(f"{name} returned {fmt_ratio(r['roi'])} per unit of spend "
                   f"({pct}: {fmt_ratio(r['roi_low'])}–{fmt_ratio(r['roi_high'])}): {why}.")  # fmt: skip
    out += [f"{names[c]} has no spend data, so it has no ROI." for c in without]
    return out


def media_share_sentence(summary: dict[str, Any]) -> str:
    """The media share of fitted sales over the window, from ``contribution_summary.json``."""
    b = summary["baseline"]
    w = summary.get("window") or {}
    pct = _pct_label(summary.get("interval", 0.9))
    when = f" from {w['start']} to {w['end']}" if w.get("start") else ""
    return (f"Media drove {100 * (1 - b['share']):.1f}% of fitted sales{when} ({pct}: "
            f"{100 * (1 - b['share_high']):.1f}–{100 * (1 - b['share_low']):.1f}%); "
            f"the baseline (what the model expects with no media at all) the other {100 * b['share']:.1f}%.")  # fmt: skip


class ExecutiveSummary(str):
    """The opening of the 06 report: plain text (``print`` it) and, where a notebook shows it, HTML.

    ``sentences`` holds the media share sentence then one per channel (:func:`roi_sentences`).
    """

    sentences: list[str]

    def __new__(cls, sentences: list[str]) -> "ExecutiveSummary":
        obj = super().__new__(cls, "\n".join(sentences))
        obj.sentences = list(sentences)
        return obj

    def _repr_html_(self) -> str:
        import html

        first, rest = (self.sentences[0], self.sentences[1:]) if self.sentences else ("", [])
        items = "".join(f"<li>{html.escape(s)}</li>" for s in rest)  # names come from the data: escaped
        return (f'<div style="font-size:1.05em;line-height:1.5"><p><b>{html.escape(first)}</b></p>'
                f"<ul>{items}</ul></div>")  # fmt: skip

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def executive_summary(
    roi: dict[str, Any], summary: dict[str, Any], labels: dict[str, str] | None = None
) -> ExecutiveSummary:
    """What a reader needs first: the media share of sales, then per channel whether it paid back.

    Parameters
    ----------
    roi, summary
        ``roi_metrics.json`` and ``contribution_summary.json``.
    labels
        The run spec's ``labels`` (display names), if any.
    """
    return ExecutiveSummary([media_share_sentence(summary), *roi_sentences(roi, labels)])


def roi_table(roi: dict[str, Any], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """``roi_metrics`` channels as a table for reading: one row per channel with spend, numbers as text.

    Money in whole units with thousands separators, ROI to 2 decimals, intervals as "low – high".
    The artifact's ``contribution`` is shown as :data:`INCREMENTAL_LABEL` (the counterfactual).
    """
    pct = _pct_label(roi.get("interval", 0.9))
    rows = list(roi.get("channels", []))
    names = display_names([r["channel"] for r in rows], labels)
    recs = [{
        "channel": names[r["channel"]],
        "spend": fmt_money(r.get("spend")),
        INCREMENTAL_LABEL: fmt_money(r.get("contribution")),
        f"{pct} interval": _range(r.get("contribution_low"), r.get("contribution_high"), fmt_money),
        "ROI": fmt_ratio(r.get("roi")),
        f"ROI {pct} interval": _range(r.get("roi_low"), r.get("roi_high"), fmt_ratio),
        "verdict": roi_verdict(r),
    } for r in rows]  # fmt: skip
    cols = ["channel", "spend", INCREMENTAL_LABEL, f"{pct} interval", "ROI", f"ROI {pct} interval", "verdict"]
    return one_header_row(pd.DataFrame(recs, columns=cols).set_index("channel"))


def contribution_table(summary: dict[str, Any], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """``contribution_summary`` as a table for reading: baseline then each channel, numbers as text.

    :data:`DECOMPOSITION_LABEL` (sales and percent) splits fitted sales and adds up to the fitted total;
    :data:`INCREMENTAL_LABEL` is the counterfactual, shown next to it under its own name.
    """
    pct = _pct_label(summary.get("interval", 0.9))
    blocks = [("baseline", summary["baseline"])] + [(c["channel"], c) for c in summary["channels"]]
    names = display_names([n for n, _ in blocks], labels)

    def share(x: Any) -> str:
        return NA_TEXT if _missing(x) else f"{100 * float(x):.1f}%"

    recs = [{
        "component": names[n],
        DECOMPOSITION_LABEL: fmt_money(b.get("contribution")),
        f"{DECOMPOSITION_LABEL} (%)": share(b.get("share")),
        f"share {pct} interval": _range(b.get("share_low"), b.get("share_high"), share),
        INCREMENTAL_LABEL: fmt_money(b.get("incremental")),
        f"incremental {pct} interval": _range(b.get("incremental_low"), b.get("incremental_high"), fmt_money),
    } for n, b in blocks]  # fmt: skip
    return one_header_row(pd.DataFrame(recs).set_index("component"))


def fit_metrics_table(fit_metrics: dict[str, Any]) -> pd.DataFrame:
    """``fit_metrics`` as a small table: the fitted window and, with a holdout, the held-out periods (brand total).

    Values are text: counts as integers, R² to 4 decimals, coverage in percent, the rest to 2 decimals
    with thousands separators; ``"–"`` where a metric does not apply.
    """
    labels = {"r2": "R²", "mape": "MAPE (%)", "rmse": "RMSE (target units)", "crps": "CRPS (target units)",
              "coverage_50": "actuals inside the 50% predictive band (%)",
              "coverage_90": "actuals inside the 90% predictive band (%)", "n_obs": "periods",
              "mape_excluded_zero_actual": "periods left out of MAPE (actual = 0)"}  # fmt: skip

    def shown(k: str, v: Any) -> str:
        if _missing(v):
            return NA_TEXT
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return f"{int(v):,}"
        v = float(v)
        if k.startswith("coverage"):
            return f"{100 * v:.1f}"
        return f"{v:,.{4 if k == 'r2' else 2}f}"

    cols = {"fitted window": {labels[k]: shown(k, v) for k, v in fit_metrics.items() if k in labels}}
    ho = fit_metrics.get("holdout")
    if ho:
        cols[f"held out ({ho['periods']} periods, {ho['start']} – {ho['end']})"] = {
            labels[k]: shown(k, v) for k, v in ho["brand"].items() if k in labels}  # fmt: skip
    df = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in cols.items()})
    return one_header_row(df.reindex([v for v in labels.values() if v in df.index]).rename_axis("metric").fillna(NA_TEXT))


def headline(result: ContributionResult, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A few numbers for the report's headline: fit quality, media share, best and worst ROI."""
    with_roi = [c for c in result.roi["channels"] if c["roi"] is not None]
    best = max(with_roi, key=lambda c: c["roi"]) if with_roi else None
    worst = min(with_roi, key=lambda c: c["roi"]) if with_roi else None
    fm = result.fit_metrics
    return {
        "window": f"{result.summary['window']['start']} to {result.summary['window']['end']}",
        "r2": None if fm["r2"] is None else round(fm["r2"], 3),
        "mape_%": None if fm["mape"] is None else round(fm["mape"], 2),
        **({"holdout_mape_%": round(fm["holdout"]["brand"]["mape"], 2)} if (fm.get("holdout") or {}).get("brand") else {}),
        "media_share_%": round(100.0 * (1.0 - result.summary["baseline"]["share"]), 1),
        "best_roi": None if best is None else f"{display_name(best['channel'], labels)} ({best['roi']:.2f})",
        "worst_roi": None if worst is None else f"{display_name(worst['channel'], labels)} ({worst['roi']:.2f})",
    }


def entity_roi_table(roi: dict[str, Any], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Per-entity ROI (entity-level models): rows entity, one column per channel as "mean [low – high]"."""
    names = display_names([r["channel"] for r in roi.get("channels", [])], labels)
    rows = {}
    for e in roi.get("entities") or []:
        rows[e["entity_id"]] = {
            names.get(r["channel"], r["channel"]): (
                f"{fmt_ratio(r['roi'])} [{fmt_ratio(r['roi_low'])} – {fmt_ratio(r['roi_high'])}]"
                if not _missing(r.get("roi")) else NA_TEXT)
            for r in e["channels"]
        }  # fmt: skip
    return one_header_row(pd.DataFrame.from_dict(rows, orient="index").rename_axis("entity"))


def channel_names_table(summary: dict[str, Any], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Which data column each channel name on the page stands for (the artifacts use the column names)."""
    cols = [str(c["channel"]) for c in summary.get("channels", [])]
    names = display_names(cols, labels)
    df = pd.DataFrame({"channel": [names[c] for c in cols], "column in the data": cols}).set_index("channel")
    return one_header_row(df)

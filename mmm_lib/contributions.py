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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import features as _features
from .model_pymc import linear_predictor, posterior_draws

ESTIMATION = "estimation"
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
    """What stage 06 computes; :func:`write_contributions` stores it under the seed's names.

    Attributes
    ----------
    timeseries
        ``contributions.parquet``: long table ``entity_id, period_start, component, mean, low, high``.
    summary
        ``contribution_summary.json``.
    roi
        ``roi_metrics.json``.
    fitted
        ``fitted.parquet``: ``entity_id, period_start, actual, fitted, fitted_low, fitted_high``.
    fit_metrics
        ``fit_metrics.json``: ``mape`` (%), ``rmse``, ``r2``, ``n_obs``.
    """

    timeseries: pd.DataFrame
    summary: dict[str, Any]
    roi: dict[str, Any]
    fitted: pd.DataFrame
    fit_metrics: dict[str, Any]


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
    """Sort both tables by period and check they describe the same single series, row for row."""
    for name, df in (("canonical_data", canonical_df), ("features", features_df)):
        missing = [c for c in ("entity_id", "period_start", "window") if c not in df.columns]
        if missing:
            raise ValueError(f"{name} has no column(s) {missing}; rerun the stage that writes it")
    ents = pd.unique(canonical_df["entity_id"].astype(str))
    if len(ents) != 1:
        raise ValueError(
            f"canonical_data has {len(ents)} entities ({list(ents)[:5]}); contributions are computed for "
            "the single brand-level series that 02_canonicalize writes; rerun 02_canonicalize"
        )
    can = canonical_df.sort_values("period_start", kind="stable").reset_index(drop=True)
    feat = features_df.sort_values("period_start", kind="stable").reset_index(drop=True)
    same = len(can) == len(feat) and bool(
        (pd.to_datetime(can["period_start"]).to_numpy() == pd.to_datetime(feat["period_start"]).to_numpy()).all()
    )
    if not same:
        raise ValueError(
            f"features ({len(feat)} rows) and canonical_data ({len(can)} rows) do not cover the same periods; "
            "rerun 03_features (and later stages) for this run"
        )
    if not (can["window"].astype(str).to_numpy() == feat["window"].astype(str).to_numpy()).all():
        raise ValueError("features and canonical_data disagree on the 'window' of some periods; rerun 03_features")
    if not (can["window"].astype(str) == ESTIMATION).any():
        raise ValueError("canonical_data has no rows with window == 'estimation'; check the spec's windows")
    return can, feat


def _feature_columns(
    idata: Any, feature_metadata: dict[str, Any], model_metadata: dict[str, Any]
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Channels and controls in the order of the posterior's coordinates, with their feature columns."""
    fm_channels = {c["driver"]: c["feature"] for c in feature_metadata.get("channels", [])}
    fm_controls = {c["name"]: c["feature"] for c in feature_metadata.get("controls", [])}
    channels = _posterior_coords(idata, "channel", "beta") or list(model_metadata.get("channels", []))
    meta_channels = list(model_metadata.get("channels", channels))
    if list(channels) != meta_channels:
        raise ValueError(
            f"posterior channels {channels} differ from model_metadata channels {meta_channels}; rerun 04_fit"
        )
    unknown = [c for c in channels if c not in fm_channels]
    if unknown:
        raise ValueError(
            f"channels {unknown} are in the posterior but not in feature_metadata; rerun 03_features and 04_fit"
        )
    controls = _posterior_coords(idata, "control", "gamma")
    if controls is None:
        controls = list(model_metadata.get("controls", [])) if _has_var(idata, "gamma") else []
    unknown = [c for c in controls if c not in fm_controls]
    if unknown:
        raise ValueError(
            f"controls {unknown} are in the posterior but not in feature_metadata; rerun 03_features and 04_fit"
        )
    return channels, [fm_channels[c] for c in channels], controls, [fm_controls[c] for c in controls]


def _has_var(idata: Any, var: str) -> bool:
    post = idata["posterior"] if "posterior" in idata.children else idata
    return var in post.data_vars


# --------------------------------------------------------------------------------------------
# public API


def iter_decomposition(
    draws: dict[str, np.ndarray],
    media: np.ndarray,
    controls: np.ndarray,
    target_center: float,
    channels: list[str],
) -> Iterator[tuple[str, np.ndarray]]:
    """Per-draw decomposition of fitted sales, one (S, N) array at a time.

    Yields ``("fitted", ...)``, ``("baseline", ...)`` and then ``(channel, ...)`` for each channel, in
    original units; ``baseline + sum(channels) == fitted`` per draw and period (see the module
    docstring for how the media total is shared). One array at a time keeps memory at a few
    S x N arrays however many channels there are.

    Parameters
    ----------
    draws
        From :func:`model_pymc.posterior_draws`.
    media, controls
        (N, C) and (N, J) features of the periods to decompose, in posterior coordinate order.
    target_center
        ``model_metadata["target_center"]``.
    channels
        The C channel names, in the order of ``media``'s columns.
    """
    beta = draws["beta"]
    media = np.asarray(media, dtype=float)
    if beta.shape[1] != media.shape[1] or len(channels) != media.shape[1]:
        raise ValueError(
            f"media has {media.shape[1]} columns, beta {beta.shape[1]} channels and {len(channels)} names "
            f"are given ({channels}); they must agree"
        )
    mu = linear_predictor(draws, media, controls)  # (S, N)
    fitted = np.expm1(mu + target_center)
    yield "fitted", fitted
    terms_sum = np.zeros_like(mu)
    for c in range(len(channels)):
        terms_sum += beta[:, c, None] * media[None, :, c]
    baseline = np.expm1(mu - terms_sum + target_center)
    yield "baseline", baseline
    media_total = fitted - baseline
    del mu, baseline
    for c, ch in enumerate(channels):
        term = beta[:, c, None] * media[None, :, c]
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
    return {
        "mape": float(np.mean(np.abs(err[nz] / a[nz])) * 100.0) if nz.any() else None,
        "rmse": float(np.sqrt(np.mean(err**2))) if a.size else None,
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

    Parameters
    ----------
    canonical_df, column_info
        ``canonical_data.parquet`` and ``column_info.json`` (02_canonicalize): activity, spend, target.
    features_df, feature_metadata, feature_scaler
        03_features outputs; the media transform is re-applied to counterfactual activity.
    model_metadata, idata
        04_fit outputs: ``target_center`` and the posterior (a DataTree with a ``posterior`` group).
    interval
        Probability of the equal-tailed interval reported with every mean.

    Returns
    -------
    ContributionResult
    """
    q = _quantiles(interval)
    can, feat = _align(canonical_df, features_df)
    channels, media_cols, controls, control_cols = _feature_columns(idata, feature_metadata, model_metadata)
    missing = [c for c in media_cols + control_cols if c not in feat.columns]
    if missing:
        raise ValueError(f"features has no column(s) {missing} that the model uses; rerun 03_features")
    target = column_info.get("target") or feature_metadata.get("target")
    if target not in can.columns:
        raise ValueError(
            f"canonical_data has no target column {target!r} (column_info['target']); rerun 02_canonicalize"
        )
    if "target_center" not in model_metadata:
        raise ValueError("model_metadata has no 'target_center'; rerun 04_fit")
    center = float(model_metadata["target_center"])

    est = (can["window"].astype(str) == ESTIMATION).to_numpy()
    periods = pd.to_datetime(can.loc[est, "period_start"]).astype("datetime64[ns]").reset_index(drop=True)
    entity = str(can["entity_id"].iloc[0])
    n = int(est.sum())

    draws = posterior_draws(idata)
    beta = draws["beta"]
    if beta.shape[1] != len(channels):
        raise ValueError(f"posterior beta has {beta.shape[1]} channels but {len(channels)} are named: {channels}")
    media = feat.loc[est, media_cols].to_numpy(dtype=float)  # (N, C)
    ctrl = feat.loc[est, control_cols].to_numpy(dtype=float) if control_cols else np.zeros((n, 0))
    if not (np.isfinite(media).all() and np.isfinite(ctrl).all()):
        raise ValueError("features has missing or infinite values in the estimation window; rerun 03_features")

    rows: list[pd.DataFrame] = []
    totals: dict[str, np.ndarray] = {}  # (S,) window totals per component
    fitted = np.empty(0)
    for component, x in iter_decomposition(draws, media, ctrl, center, channels):
        totals[component] = x.sum(axis=1)
        if component == "fitted":
            fitted = x  # kept for fitted.parquet; channel arrays are summarised and dropped
            continue
        m, lo, hi = _summarise(x, q)
        rows.append(
            pd.DataFrame(
                {"entity_id": entity, "period_start": periods, "component": component, "mean": m, "low": lo, "high": hi}
            )
        )
    fitted_total = totals["fitted"]

    def share_block(total: np.ndarray) -> dict[str, float]:
        c, c_lo, c_hi = _scalar(total, q)
        s, s_lo, s_hi = _scalar(_ratio(total, fitted_total), q)
        return {
            "contribution": c, "contribution_low": c_lo, "contribution_high": c_hi,
            "share": s, "share_low": s_lo, "share_high": s_hi,
        }  # fmt: skip

    baseline_block = share_block(totals["baseline"])
    channel_totals = {ch: share_block(totals[ch]) for ch in channels}
    timeseries = pd.concat(rows, ignore_index=True)

    incremental = _counterfactual_incremental(can, est, channels, feat, media_cols, ctrl, feature_metadata,
                                              feature_scaler, draws, center)  # fmt: skip

    channel_blocks = []
    for ch in channels:
        inc, inc_lo, inc_hi = _scalar(incremental[ch], q)
        channel_blocks.append(
            {"channel": ch, **channel_totals[ch],
             "incremental": inc, "incremental_low": inc_lo, "incremental_high": inc_hi}  # fmt: skip
        )

    actual = can.loc[est, target].to_numpy(dtype=float)
    fit_mean, fit_lo, fit_hi = _summarise(fitted, q)
    fitted_df = pd.DataFrame(
        {"entity_id": entity, "period_start": periods, "actual": actual,
         "fitted": fit_mean, "fitted_low": fit_lo, "fitted_high": fit_hi}
    )  # fmt: skip
    tf, tf_lo, tf_hi = _scalar(fitted_total, q)
    summary = {
        "interval": interval,
        "target": target,
        "window": {"start": _iso(periods.iloc[0]), "end": _iso(periods.iloc[-1]), "n_periods": n},
        "total_actual": float(np.nansum(actual)),
        "total_fitted": {"mean": tf, "low": tf_lo, "high": tf_hi},
        "baseline": baseline_block,
        "channels": channel_blocks,
        "method": METHOD,
    }
    roi = _roi_metrics(can, est, channels, column_info, incremental, q, interval)
    return ContributionResult(
        timeseries=timeseries, summary=summary, roi=roi, fitted=fitted_df, fit_metrics=fit_metrics(actual, fit_mean)
    )


def _counterfactual_incremental(
    can: pd.DataFrame,
    est: np.ndarray,
    channels: list[str],
    feat: pd.DataFrame,
    media_cols: list[str],
    ctrl: np.ndarray,
    feature_metadata: dict[str, Any],
    feature_scaler: dict[str, Any],
    draws: dict[str, np.ndarray],
    center: float,
) -> dict[str, np.ndarray]:
    """Per channel, (S,) incremental sales over the window: fitted minus fitted with its activity at 0."""
    fm_drivers = [c["driver"] for c in feature_metadata["channels"]]
    missing = [d for d in fm_drivers if d not in can.columns]
    if missing:
        raise ValueError(f"canonical_data has no activity column(s) {missing}; rerun 02_canonicalize")
    activity = can[fm_drivers].to_numpy(dtype=float)  # (T, C') all rows: carryover feeds adstock
    order = [fm_drivers.index(ch) for ch in channels]  # media_features columns -> posterior order

    def features_for(act: np.ndarray) -> np.ndarray:
        out = np.asarray(_features.media_features(act, feature_metadata, feature_scaler), dtype=float)
        if out.shape != act.shape:
            raise ValueError(f"features.media_features returned shape {out.shape} for activity of shape {act.shape}")
        return out[:, order]

    base = features_for(activity)
    stored = feat[media_cols].to_numpy(dtype=float)
    diff = np.abs(base - stored)
    if not np.all(diff <= _FEATURE_TOL * np.maximum(1.0, np.abs(stored))):
        worst = int(np.nanargmax(diff.max(axis=0)))
        raise ValueError(
            f"media features recomputed from canonical activity differ from features.parquet for "
            f"{channels[worst]!r} (max abs difference {float(diff[:, worst].max()):.3g}); feature_metadata/"
            "feature_scaler do not match features.parquet: rerun 03_features and later stages for this run"
        )
    fitted_base = np.expm1(linear_predictor(draws, base[est], ctrl) + center)
    out: dict[str, np.ndarray] = {}
    for ch in channels:
        act = activity.copy()
        act[:, fm_drivers.index(ch)] = 0.0
        cf = features_for(act)[est]
        fitted_cf = np.expm1(linear_predictor(draws, cf, ctrl) + center)
        out[ch] = (fitted_base - fitted_cf).sum(axis=1)
        del fitted_cf
    return out


def _roi_metrics(
    can: pd.DataFrame,
    est: np.ndarray,
    channels: list[str],
    column_info: dict[str, Any],
    incremental: dict[str, np.ndarray],
    q: tuple[float, float],
    interval: float,
) -> dict[str, Any]:
    spend_map = column_info.get("spend") or {}
    rows, without, notes = [], [], {}
    for ch in channels:
        col = spend_map.get(ch)
        if not col:
            without.append(ch)
            continue
        if col not in can.columns:
            raise ValueError(
                f"column_info names spend column {col!r} for {ch!r} but canonical_data has no such column; "
                "rerun 02_canonicalize"
            )
        s = can.loc[est, col].to_numpy(dtype=float)
        if np.isnan(s).any():
            notes[ch] = f"{int(np.isnan(s).sum())} missing {col} value(s) in the estimation window were treated as 0"
        spend = float(np.nansum(s))
        inc, inc_lo, inc_hi = _scalar(incremental[ch], q)
        row = {"channel": ch, "spend_col": col, "spend": spend,
               "contribution": inc, "contribution_low": inc_lo, "contribution_high": inc_hi}  # fmt: skip
        if spend > 0:
            row["roi"], row["roi_low"], row["roi_high"] = _scalar(incremental[ch] / spend, q)
        else:
            row["roi"] = row["roi_low"] = row["roi_high"] = None
            notes[ch] = f"{col} totals {spend:g} in the estimation window, so ROI is undefined (null)"
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


def load_contribution_inputs(run: Any) -> dict[str, Any]:
    """Read every artifact :func:`compute_contributions` needs from a run, keyed by its parameter names."""
    return {
        "canonical_df": run.read_parquet("canonical_data.parquet"),
        "column_info": run.read_json("column_info.json"),
        "features_df": run.read_parquet("features.parquet"),
        "feature_metadata": run.read_json("feature_metadata.json"),
        "feature_scaler": run.read_json("feature_scaler.json"),
        "model_metadata": run.read_json("model_metadata.json"),
        "idata": run.read_posterior(),
    }


def write_contributions(run: Any, result: ContributionResult) -> list[Path]:
    """Write the five stage-06 artifacts atomically; returns their paths."""
    return [
        run.write_parquet("contributions.parquet", result.timeseries),
        run.write_json("contribution_summary.json", result.summary),
        run.write_json("roi_metrics.json", result.roi),
        run.write_parquet("fitted.parquet", result.fitted),
        run.write_json("fit_metrics.json", result.fit_metrics),
    ]


def contribute_stage(run: Any, interval: float = 0.9) -> ContributionResult:
    """Stage 06 in one call: read the inputs from ``run``, compute, write all five artifacts."""
    result = compute_contributions(**load_contribution_inputs(run), interval=interval)
    write_contributions(run, result)
    return result


def diagnostics_banner(run: Any) -> str:
    """One line on whether the fit behind these numbers passed 05_diagnose."""
    path = run.path("diagnostics.json")
    if not Path(path).is_file():
        return "diagnostics.json not found: run 05_diagnose before relying on these numbers"
    if run.read_json("diagnostics.json").get("passed") is False:
        return "WARNING: diagnostics failed: treat these numbers as provisional (see the 05_diagnose report)"
    return "diagnostics passed"


def roi_table(roi: dict[str, Any]) -> pd.DataFrame:
    """``roi_metrics`` channels as a table, one row per channel with spend."""
    cols = ["channel", "spend", "contribution", "contribution_low", "contribution_high", "roi", "roi_low", "roi_high"]
    df = pd.DataFrame(roi["channels"], columns=["channel", "spend_col", *cols[1:]])[cols].set_index("channel")
    # Money to whole units, ROI to 2 decimals: what a reader compares, not float noise.
    money = ["spend", "contribution", "contribution_low", "contribution_high"]
    df[money] = df[money].round(0).astype("Int64")
    return df.round({"roi": 2, "roi_low": 2, "roi_high": 2})


def contribution_table(summary: dict[str, Any]) -> pd.DataFrame:
    """``contribution_summary`` as a table: baseline then each channel, shares in percent."""
    recs = [{"component": "baseline", **summary["baseline"]}]
    recs += [{"component": c["channel"], **{k: v for k, v in c.items() if k != "channel"}} for c in summary["channels"]]
    df = pd.DataFrame(recs).set_index("component")
    for k in ("share", "share_low", "share_high"):
        df[k] = df[k] * 100.0
    df = df.rename(columns={"share": "share_%", "share_low": "share_low_%", "share_high": "share_high_%"})
    money = [c for c in df.columns if df[c].dtype.kind == "f" and not c.endswith("_%")]
    df[money] = df[money].round(0).astype("Int64")  # whole currency units; NA where not defined
    return df.round({c: 1 for c in df.columns if c.endswith("_%")})


def fit_metrics_table(fit_metrics: dict[str, Any]) -> pd.DataFrame:
    """``fit_metrics`` as a small two-column table (counts stay integers, errors rounded)."""
    labels = {"r2": "R²", "mape": "MAPE (%)", "rmse": "RMSE (target units)", "n_obs": "periods",
              "mape_excluded_zero_actual": "periods left out of MAPE (actual = 0)"}  # fmt: skip
    values = {labels.get(k, k): round(v, 4 if k == "r2" else 2) if isinstance(v, float) else v
              for k, v in fit_metrics.items()}  # fmt: skip
    # object dtype so the period counts print as integers next to the float metrics
    return pd.DataFrame({"value": pd.Series(values, dtype=object)}).rename_axis("metric")


def headline(result: ContributionResult) -> dict[str, Any]:
    """A few numbers for the report's headline: fit quality, media share, best and worst ROI."""
    with_roi = [c for c in result.roi["channels"] if c["roi"] is not None]
    best = max(with_roi, key=lambda c: c["roi"]) if with_roi else None
    worst = min(with_roi, key=lambda c: c["roi"]) if with_roi else None
    fm = result.fit_metrics
    return {
        "window": f"{result.summary['window']['start']} to {result.summary['window']['end']}",
        "r2": None if fm["r2"] is None else round(fm["r2"], 3),
        "mape_%": None if fm["mape"] is None else round(fm["mape"], 2),
        "media_share_%": round(100.0 * (1.0 - result.summary["baseline"]["share"]), 1),
        "best_roi": None if best is None else f"{best['channel']} ({best['roi']:.2f})",
        "worst_roi": None if worst is None else f"{worst['channel']} ({worst['roi']:.2f})",
    }

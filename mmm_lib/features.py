"""Feature engineering (stage 03): adstock, Hill saturation, Fourier seasonality and trend.

:func:`media_features` is *the* definition of the media transform. ``build_features``, the
ROI counterfactual (set a channel's activity to 0 and recompute) and the sample generator all
call it, so a feature seen by the model and a feature recomputed later can never disagree.

Scaling (see docs/DESIGN.md, ``feature_scaler.json``) is estimated on the estimation window
only (``window == "estimation"``); carryover rows are transformed with the same statistics.
This module deliberately imports only numpy and pandas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .model import transforms as _tf

# Fourier phases and the trend index count periods from a fixed calendar anchor, so the
# seasonal coefficients mean the same thing whatever window or data start a run uses.
TIME_ORIGIN = pd.Timestamp("2000-01-01")
DEFAULT_PERIOD = {"WEEK": 365.25 / 7.0, "MONTH": 12.0}
SATURATION_SCALE = (
    "adstocked activity divided by its maximum over the estimation window; "
    "K is the half-saturation point on that scale (K=0.5 → half of peak)"
)
ESTIMATION = "estimation"


# --------------------------------------------------------------------------- transforms


def geometric_adstock(x: np.ndarray, decay: float, max_lag: int) -> np.ndarray:
    """Truncated geometric adstock along axis 0.

    ``a[t] = sum_{l=0}^{max_lag-1} decay**l * x[t-l]``, with zeros before the series start.
    The weights are *not* normalised to sum to 1, so a steady activity level ``x`` builds up
    to about ``x / (1 - decay)``; the max-scaling in :func:`media_features` removes that scale.

    Parameters
    ----------
    x
        (T,) or (T, C) activity, time along axis 0.
    decay
        Carry-over per period, in [0, 1).
    max_lag
        Number of periods kept (lag 0 included), >= 1.

    Returns
    -------
    numpy.ndarray
        Float array with the shape of ``x``.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim not in (1, 2):
        raise ValueError(f"geometric_adstock: x must be (T,) or (T, C), got shape {x.shape}")
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"geometric_adstock: decay is {decay}; it must be in [0, 1)")
    if int(max_lag) != max_lag or max_lag < 1:
        raise ValueError(f"geometric_adstock: max_lag is {max_lag}; it must be an integer >= 1")
    return _tf.adstock(_tf.lag_stack(x, int(max_lag)), _tf.adstock_weights(float(decay), int(max_lag), False), int(max_lag))


def hill(x: np.ndarray, K: float, S: float) -> np.ndarray:
    """Hill saturation ``x**S / (K**S + x**S)``, computed as a stable logistic in log space.

    ``hill(0) == 0`` exactly, ``hill(K) == 0.5`` and the result is in [0, 1) and increasing.

    Parameters
    ----------
    x
        Non-negative input (any shape), e.g. max-scaled adstock.
    K
        Half-saturation point (> 0), on the scale of ``x``.
    S
        Slope (> 0).
    """
    x = np.asarray(x, dtype=float)
    if K <= 0 or S <= 0:
        raise ValueError(f"hill: K={K} and S={S} must both be > 0")
    if np.isnan(x).any():
        raise ValueError("hill: input contains NaN")
    if (x < 0).any():
        raise ValueError(f"hill: input must be >= 0, got minimum {x.min()}")
    return _tf.hill(x, float(K), float(S))


def fourier_terms(t: np.ndarray, period: float, K: int) -> np.ndarray:
    """Fourier seasonality basis.

    Parameters
    ----------
    t
        (T,) periods since the time origin (WEEK: days / 7; MONTH: months).
    period
        Length of the seasonal cycle in periods (365.25/7 for weeks, 12 for months).
    K
        Number of sine/cosine pairs.

    Returns
    -------
    numpy.ndarray
        (T, 2K) with columns ``sin1, cos1, sin2, cos2, …``: ``sin(2πkt/period)``, ``cos(2πkt/period)``.
    """
    t = np.asarray(t, dtype=float).reshape(-1)
    if period <= 0:
        raise ValueError(f"fourier_terms: period is {period}; it must be > 0")
    if K < 0:
        raise ValueError(f"fourier_terms: K is {K}; it must be >= 0")
    out = np.empty((t.size, 2 * K))
    for k in range(1, K + 1):
        arg = 2.0 * np.pi * k * t / period
        out[:, 2 * k - 2] = np.sin(arg)
        out[:, 2 * k - 1] = np.cos(arg)
    return out


def periods_since_origin(period_start: Any, grain: str, origin: Any = TIME_ORIGIN) -> np.ndarray:
    """Time index in periods since ``origin``: days/7 for ``WEEK``, calendar months for ``MONTH``."""
    ts = pd.DatetimeIndex(pd.to_datetime(period_start))
    origin = pd.Timestamp(origin)
    if grain == "WEEK":
        return np.asarray((ts - origin).days, dtype=float) / 7.0
    if grain == "MONTH":
        months = (ts.year - origin.year) * 12 + (ts.month - origin.month)
        frac = (ts.day - 1) / ts.days_in_month
        return np.asarray(months, dtype=float) + np.asarray(frac, dtype=float)
    raise ValueError(f"grain is {grain!r}; use 'WEEK' or 'MONTH'")


def seasonal_period(grain: str, period: float | None = None) -> float:
    """The Fourier period: ``period`` if set, else one year in periods of ``grain``."""
    if period is not None:
        return float(period)
    if grain not in DEFAULT_PERIOD:
        raise ValueError(f"grain is {grain!r}; use 'WEEK' or 'MONTH'")
    return DEFAULT_PERIOD[grain]


half_life = _tf.half_life


# --------------------------------------------------------------------------- media transform


def _channel_list(feature_metadata: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    chans = feature_metadata.get("channels")
    if not chans:
        raise ValueError("feature_metadata has no 'channels'; build it with build_features")
    return list(chans)


def media_stages(
    activity: np.ndarray, feature_metadata: Mapping[str, Any], scaler: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """The media transform step by step: max-scaled adstock and the final media feature.

    Same arguments as :func:`media_features`; returns ``(scaled_adstock, feature)``, both (T, C).
    """
    chans = _channel_list(feature_metadata)
    a = np.asarray(activity, dtype=float)
    if a.ndim == 1 and len(chans) == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] != len(chans):
        raise ValueError(
            f"activity has shape {a.shape}; expected (T, {len(chans)}) with columns "
            f"{[c['driver'] for c in chans]}"
        )
    if np.isnan(a).any():
        bad = [chans[j]["driver"] for j in np.where(np.isnan(a).any(axis=0))[0]]
        raise ValueError(f"activity of {bad} contains NaN; fill or drop those periods in canonicalize")
    if (a < 0).any():
        bad = [chans[j]["driver"] for j in np.where((a < 0).any(axis=0))[0]]
        raise ValueError(f"activity of {bad} is negative; activity (impressions, GRPs, clicks) must be >= 0")
    scaled = np.empty_like(a)
    for j, ch in enumerate(chans):
        driver = ch["driver"]
        try:
            amax = float(scaler["media"][driver]["adstock_max"])
        except KeyError:
            raise ValueError(f"feature_scaler has no media entry for {driver!r}; rebuild features") from None
        if not amax > 0:
            raise ValueError(f"feature_scaler media.{driver}.adstock_max is {amax}; it must be > 0")
        scaled[:, j] = geometric_adstock(a[:, j], float(ch["decay"]), int(ch["max_lag"])) / amax
    sat = feature_metadata.get("saturation") or {"enabled": False}
    if sat.get("enabled"):
        kind = sat.get("type", "hill")
        if kind == "hill":
            feature = hill(scaled, float(sat["K"]), float(sat["S"]))
        else:
            feature = _tf.saturate(kind, scaled, {k: float(sat[k]) for k in _tf.SATURATION_PARAMS[kind]})
    else:
        feature = scaled.copy()
    return scaled, feature


def media_features(
    activity: np.ndarray, feature_metadata: Mapping[str, Any], scaler: Mapping[str, Any]
) -> np.ndarray:
    """Media features from raw activity: adstock → divide by ``adstock_max`` → Hill (if enabled).

    Parameters
    ----------
    activity
        (T, C) raw brand activity over all canonical rows (carryover + estimation), in time
        order, columns in the order of ``feature_metadata["channels"]``.
    feature_metadata
        ``feature_metadata.json`` (per-channel ``decay``/``max_lag``, ``saturation``).
    scaler
        ``feature_scaler.json`` (``media[driver]["adstock_max"]``).

    Returns
    -------
    numpy.ndarray
        (T, C) media features for the same rows; a channel with zero activity gives exactly 0.
    """
    return media_stages(activity, feature_metadata, scaler)[1]


# --------------------------------------------------------------------------- build_features


def _require(df: pd.DataFrame, cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(
            f"canonical data has no {what} column(s) {missing} (columns: {list(df.columns)}); "
            "re-run 02_canonicalize with this spec"
        )


def _numeric(df: pd.DataFrame, col: str) -> np.ndarray:
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    if np.isnan(v).any():
        raise ValueError(
            f"column {col!r} has {int(np.isnan(v).sum())} missing or non-numeric values in canonical data; "
            "fill them before 03_features"
        )
    return v


def build_features(
    canonical_df: pd.DataFrame, column_info: Mapping[str, Any], spec: Any
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Build the model's design table from canonical data.

    Parameters
    ----------
    canonical_df
        ``canonical_data.parquet``: ``entity_id``, ``period_start``, ``window``, the target,
        the drivers, spend and controls.
    column_info
        ``column_info.json`` (roles and grain).
    spec
        The :class:`~mmm_lib.spec.RunSpec` (its ``feature_config``).

    Returns
    -------
    features_df, feature_metadata, feature_scaler
        As in docs/DESIGN.md. Scaling statistics (``adstock_max``, control mean/std, trend
        mean/std; std with ddof=0) come from ``window == "estimation"`` rows only. A constant
        control gets std 1 and an all-zero channel ``adstock_max`` 1, each with a note in
        ``feature_metadata["notes"]``.
    """
    fc = spec.feature_config
    grain = column_info.get("grain", spec.grain)
    target = column_info["target"]
    drivers = list(column_info["drivers"])
    controls = list(column_info.get("controls") or [])
    spend = dict(column_info.get("spend") or {})
    for col in ("entity_id", "period_start", "window"):
        _require(canonical_df, [col], "key")
    _require(canonical_df, [target], "target")
    _require(canonical_df, drivers, "driver")
    _require(canonical_df, controls, "control")
    if not drivers:
        raise ValueError("column_info lists no drivers; a media mix model needs at least one act_* column")

    df = canonical_df.sort_values(["entity_id", "period_start"], kind="stable").reset_index(drop=True)
    est = (df["window"] == ESTIMATION).to_numpy()
    if not est.any():
        raise ValueError(
            f"canonical data has no rows with window == 'estimation' (windows present: "
            f"{sorted(df['window'].astype(str).unique())}); check windows.estimation_months"
        )
    notes: list[str] = []
    groups = [np.flatnonzero((df["entity_id"] == e).to_numpy()) for e in pd.unique(df["entity_id"])]

    # ---- media: adstock per entity, max over estimation rows, then media_features
    act = np.column_stack([_numeric(df, d) for d in drivers])
    channels = [
        {
            "driver": d,
            "feature": f"media__{d}",
            "activity": f"activity__{d}",
            "spend_col": spend.get(d),
            "decay": float(spec.decay_for(d)),
            "max_lag": int(fc.adstock.max_lag),
        }
        for d in drivers
    ]
    adstock = np.zeros_like(act)
    for idx in groups:
        for j, ch in enumerate(channels):
            adstock[idx, j] = geometric_adstock(act[idx, j], ch["decay"], ch["max_lag"])
    media_scaler: dict[str, dict[str, float]] = {}
    for j, d in enumerate(drivers):
        amax = float(adstock[est, j].max())
        if not amax > 0:
            notes.append(f"{d}: no activity in the estimation window; adstock_max set to 1 (feature is 0 there)")
            amax = 1.0
        media_scaler[d] = {"adstock_max": amax}
    sat = fc.saturation
    metadata: dict[str, Any] = {
        "target": target,
        "grain": grain,
        "channels": channels,
        "controls": [],
        "saturation": {
            "enabled": bool(sat.enabled),
            "type": sat.type,
            "K": float(sat.K),
            "S": float(sat.S),
            "lam": float(sat.lam),
            "scale": SATURATION_SCALE,
        },
        "seasonality": {"enabled": False, "K": 0, "period": None},
        "trend": {"enabled": bool(fc.trend.enabled)},
        "notes": notes,
    }
    scaler: dict[str, Any] = {"media": media_scaler, "controls": {}, "trend": None, "time_origin": TIME_ORIGIN.date().isoformat()}

    out = df[["entity_id", "period_start", "window"]].copy()
    out["period_start"] = pd.to_datetime(out["period_start"]).astype("datetime64[ns]")
    out["target"] = _numeric(df, target)
    media = np.zeros_like(act)
    for idx in groups:
        media[idx] = media_features(act[idx], metadata, scaler)
    for j, ch in enumerate(channels):
        out[ch["feature"]] = media[:, j]
    for j, ch in enumerate(channels):  # raw activity: the learned model applies its own transforms
        out[ch["activity"]] = act[:, j]

    # ---- controls: standardized with estimation-window mean/std
    for c in controls:
        v = _numeric(df, c)
        mean, std = float(v[est].mean()), float(v[est].std())
        if not std > 0:
            notes.append(f"{c}: constant over the estimation window; std set to 1 (feature is centred only)")
            std = 1.0
        scaler["controls"][c] = {"mean": mean, "std": std}
        feat = f"ctrl__{c}"
        out[feat] = (v - mean) / std
        metadata["controls"].append({"name": c, "feature": feat, "kind": "control"})

    # ---- seasonality and trend on the calendar time index
    t = periods_since_origin(df["period_start"], grain)
    seas = fc.seasonality
    if seas.enabled and seas.K > 0:
        metadata["seasonality"] = {"enabled": True, "K": int(seas.K), "period": float(seasonal_period(grain, seas.period))}
        for k in range(1, seas.K + 1):
            for fn in ("sin", "cos"):
                metadata["controls"].append({"name": f"season_{fn}{k}", "feature": f"season__{fn}{k}", "kind": "seasonality"})
    if fc.trend.enabled:
        mean, std = float(t[est].mean()), float(t[est].std())
        if not std > 0:
            notes.append("trend: a single estimation period; trend std set to 1")
            std = 1.0
        scaler["trend"] = {"mean": mean, "std": std}
        metadata["controls"].append({"name": "trend", "feature": "trend", "kind": "trend"})
    for feat, values in calendar_features(df["period_start"], metadata, scaler).items():
        out[feat] = values
    return out, metadata, scaler


def calendar_features(period_start: Any, feature_metadata: Mapping[str, Any], scaler: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Feature column → values of the seasonality and trend controls for any dates, from the stored settings.

    What 03_features writes for the observed periods and what a plan uses for future ones: Fourier
    terms on the calendar index, and the trend standardised with the estimation window's mean/std.
    """
    grain = feature_metadata.get("grain", "WEEK")
    t = periods_since_origin(period_start, grain, pd.Timestamp(scaler.get("time_origin", TIME_ORIGIN)))
    out: dict[str, np.ndarray] = {}
    seas = feature_metadata.get("seasonality") or {}
    if seas.get("enabled") and int(seas.get("K", 0)) > 0:
        terms = fourier_terms(t, float(seas["period"]), int(seas["K"]))
        for k in range(1, int(seas["K"]) + 1):
            for i, fn in enumerate(("sin", "cos")):
                out[f"season__{fn}{k}"] = terms[:, 2 * (k - 1) + i]
    if (feature_metadata.get("trend") or {}).get("enabled"):
        tr = scaler["trend"]
        out["trend"] = (t - float(tr["mean"])) / float(tr["std"])
    return out


# --------------------------------------------------------------------------- tables for 03_features


def channel_settings_table(feature_metadata: Mapping[str, Any], scaler: Mapping[str, Any]) -> pd.DataFrame:
    """One row per channel: decay, max_lag, half-life (periods), K, S and adstock_max."""
    sat = feature_metadata.get("saturation") or {}
    rows = []
    for ch in _channel_list(feature_metadata):
        rows.append(
            {
                "driver": ch["driver"],
                "spend_col": ch.get("spend_col"),
                "decay": ch["decay"],
                "max_lag": ch["max_lag"],
                "half_life_periods": round(half_life(float(ch["decay"])), 2),
                "K": sat.get("K") if sat.get("enabled") else None,
                "S": sat.get("S") if sat.get("enabled") else None,
                "adstock_max": scaler["media"][ch["driver"]]["adstock_max"],
            }
        )
    return pd.DataFrame(rows).set_index("driver")


def channel_settings_view(feature_metadata: Mapping[str, Any], scaler: Mapping[str, Any]) -> Any:
    """:func:`channel_settings_table` formatted for the report: ``adstock_max`` with thousands separators
    (not ``8.515303e+02``), "–" where saturation is off, no index column."""
    from .tables import report_table

    return report_table(channel_settings_table(feature_metadata, scaler).reset_index(), {"decay": 2, "K": 2, "S": 2})


def features_headline_view(features_df: pd.DataFrame, feature_metadata: Mapping[str, Any]) -> Any:
    """:func:`features_headline` as a two-column table (item, value) for the report."""
    from .tables import report_table

    head = features_headline(features_df, feature_metadata)
    items = pd.DataFrame({"item": [k.replace("_", " ") for k in head], "value": list(head.values())}, dtype=object)
    return report_table(items)


def feature_columns(feature_metadata: Mapping[str, Any]) -> list[str]:
    """Model regressors in order: media features, then every non-media regressor."""
    return [c["feature"] for c in _channel_list(feature_metadata)] + [
        c["feature"] for c in feature_metadata.get("controls", [])
    ]


def feature_correlations(features_df: pd.DataFrame, feature_metadata: Mapping[str, Any]) -> pd.DataFrame:
    """Pearson correlations between the regressors over the estimation window (2 decimals)."""
    cols = feature_columns(feature_metadata)
    est = features_df.loc[features_df["window"] == ESTIMATION, cols].astype(float)
    return est.corr().round(2)


def canonical_activity(canonical_df: pd.DataFrame, feature_metadata: Mapping[str, Any]) -> np.ndarray:
    """(T, C) raw activity of one entity in time order, columns as ``feature_metadata["channels"]``."""
    drivers = [c["driver"] for c in _channel_list(feature_metadata)]
    _require(canonical_df, drivers, "driver")
    if canonical_df["entity_id"].nunique() > 1:
        raise ValueError("canonical_activity expects one entity (the brand); filter by entity_id first")
    df = canonical_df.sort_values("period_start", kind="stable")
    return np.column_stack([_numeric(df, d) for d in drivers])


def features_headline(features_df: pd.DataFrame, feature_metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Short summary of stage 03 for the notebook and the run index."""
    est = features_df["window"] == ESTIMATION
    return {
        "rows": int(len(features_df)),
        "estimation_rows": int(est.sum()),
        "carryover_rows": int((features_df["window"] == "carryover").sum()),
        "holdout_rows": int((features_df["window"] == "holdout").sum()),
        "media_features": len(feature_metadata["channels"]),
        "other_regressors": len(feature_metadata.get("controls", [])),
        "saturation": (feature_metadata.get("saturation") or {}).get("type", "hill")
        if (feature_metadata.get("saturation") or {}).get("enabled") else "off",
        "notes": len(feature_metadata.get("notes", [])),
    }

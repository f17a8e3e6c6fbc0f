"""The sample-data generator with known truth (``mmm sample``); it made ``data/mmm_sample_small.csv``.

The true process is the baseline model's structure at brand level, built with the same feature
functions the pipeline uses (:func:`mmm_lib.features.build_features` / ``media_features``)::

    log1p(brand_sales_t) = const + sum_c beta_c * media_c,t + gamma * price_t (standardized)
                           + Fourier seasonality + trend_coef * trend_t + noise_t

so a fit with a matching spec is well specified. Brand sales, activity and spend are then split
to stores by stable shares with small jitter, in whole cents / whole activity units, so that the
store sums equal the brand series exactly; store price indices average to the brand price.

The truth (``*_truth.json``) holds the parameters, the noise-free expected brand sales
``expm1(mu_t)``, the per-channel counterfactual ``expm1(mu_t - beta_c * media_c,t)`` and brand
spend per period, and the true ROI and contribution per channel over the estimation window.
:func:`true_roi` recomputes the ROI for any other window start from those stored series.

:func:`simulate_panel` is a second, independent simulator: a multi-entity panel (stores or geos
of different sizes) with a true process chosen per call (multiplicative or additive, Hill /
logistic / Michaelis–Menten saturation, per-channel decays, optionally a channel with no effect)
and each channel's cost calibrated to a known true ROI; :func:`panel_expected_sales` is its
noise-free mean, from which every number of its truth can be recomputed.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .canonicalize import compute_windows
from .features import build_features, geometric_adstock, hill
from .spec import RunSpec, load_spec, parse_spec, spec_to_dict
from .storage import write_bytes, write_json

CHANNELS = ("act_tv", "act_digital", "act_radio")
SPEND = {"act_tv": "spend_tv", "act_digital": "spend_digital", "act_radio": "spend_radio"}
PRICE = "ctrl_price_index"
TARGET = "sales"
COLUMNS = ["entity_id", "period_start", TARGET, *CHANNELS, *SPEND.values(), PRICE]

# True log-lift of each channel at media feature 1, and the ROI (revenue per unit of spend)
# the channel's cost per unit is calibrated to: clearly different, so a fit can tell them apart.
DEFAULT_BETA = {"act_tv": 0.14, "act_digital": 0.14, "act_radio": 0.10}
DEFAULT_TARGET_ROI = {"act_tv": 1.0, "act_digital": 3.0, "act_radio": 0.3}


def default_spec() -> RunSpec:
    """The settings of ``params/example.yaml`` (the bundled sample's spec), without the file."""
    return parse_spec(
        {
            "data_path": "mmm_sample_small.csv",
            "grain": "WEEK",
            "target_col": TARGET,
            "drivers": list(CHANNELS),
            "controls": [PRICE],
            "feature_config": {
                "adstock": {"decay_default": 0.5, "per_channel": {"act_tv": 0.7, "act_digital": 0.3}, "max_lag": 13},
                "saturation": {"enabled": True, "type": "hill", "K": 0.5, "S": 1.0},
                "seasonality": {"enabled": True, "K": 2},
                "trend": {"enabled": True},
            },
            "windows": {"carryover_months": 6, "estimation_months": 24},
        }
    )


def _resolve_spec(spec: RunSpec | Mapping[str, Any] | str | Path | None) -> RunSpec:
    if spec is None:
        return default_spec()
    if isinstance(spec, RunSpec):
        return spec
    if isinstance(spec, (str, Path)):
        return load_spec(spec)
    raw = dict(spec)
    if raw.get("data_path") is None and raw.get("dataset_id") is None:
        raw["data_path"] = "sample.csv"  # the generator never reads it; RunSpec requires a source
    raw.setdefault("drivers", list(CHANNELS))
    return parse_spec(raw, source="generate_sample(spec=...)")


def window_labels(period_start: pd.DatetimeIndex, spec: RunSpec) -> np.ndarray:
    """``"pre"`` / ``"carryover"`` / ``"estimation"`` per period, by canonicalize's window rule.

    The boundaries come from :func:`mmm_lib.canonicalize.compute_windows` (snapped to week starts),
    so the truth's windows are the ones a run of the same data computes.

    The truth's own ROI uses these windows; :func:`true_roi` recomputes it for any other start,
    and every channel's adstock peak lies in the final year, so the saturation scale does not
    depend on the exact window start either.
    """
    ps = pd.DatetimeIndex(period_start)
    win = compute_windows(ps[-1], spec.grain, spec.windows)
    labels = np.full(len(ps), "pre", dtype=object)
    labels[(ps >= win["carryover_start"]) & (ps < win["estimation_start"])] = "carryover"
    labels[ps >= win["estimation_start"]] = "estimation"
    return labels


# --------------------------------------------------------------------------- brand series


def _flights(rng: np.random.Generator, n: int, on: tuple[int, int], off: tuple[int, int], level: tuple[float, float]) -> np.ndarray:
    """Bursts of ``on`` weeks at a flight level separated by ``off`` zero weeks."""
    x = np.zeros(n)
    t = int(rng.integers(0, off[1] + 1))
    while t < n:
        length = int(rng.integers(on[0], on[1] + 1))
        lvl = rng.uniform(*level)
        x[t : t + length] = lvl * rng.uniform(0.85, 1.15, size=len(x[t : t + length]))
        t += length + int(rng.integers(off[0], off[1] + 1))
    return x


def _brand_activity(rng: np.random.Generator, n: int, decays: dict[str, float], max_lag: int) -> dict[str, np.ndarray]:
    """TV in bursts with dark weeks, digital always-on with noise, radio in occasional flights.

    Each channel gets a "hero" flight in its final year whose adstock peak beats every earlier
    one, so the estimation-window maximum (the saturation scale) is the same whatever exact
    window start the pipeline picks.
    """
    tv = _flights(rng, n, on=(3, 6), off=(2, 7), level=(90.0, 220.0))
    # always-on with noise plus short pushes; no fixed cycle, which would alias the Fourier terms
    pushes = _flights(rng, n, on=(2, 4), off=(3, 8), level=(1.0, 2.0))
    digital = 1.0e6 * (1.0 + pushes) * rng.lognormal(0.0, 0.3, n)
    radio = _flights(rng, n, on=(2, 4), off=(6, 14), level=(40.0, 110.0))
    acts = {"act_tv": tv, "act_digital": digital, "act_radio": radio}
    hero = {"act_tv": (n - 30, 6), "act_digital": (n - 20, 3), "act_radio": (n - 40, 4)}
    for ch, x in acts.items():
        start, length = hero[ch]
        start = max(start, 0)
        base = np.round(x)
        for _ in range(50):
            ad = geometric_adstock(base, decays[ch], max_lag)
            late = max(n - 52, 0)
            if ad[late:].max() >= 1.08 * ad[:late].max(initial=0.0):
                break
            peak = float(x.max()) if x.max() > 0 else 1.0
            x[start : start + length] = np.maximum(x[start : start + length], peak) * 1.1
            base = np.round(x)
        acts[ch] = base
    return acts


def _brand_price(rng: np.random.Generator, n: int) -> np.ndarray:
    """Price index around 100: a slow drift plus occasional promotion weeks."""
    drift = np.cumsum(rng.normal(0.0, 0.25, n))
    drift -= np.linspace(0.0, drift[-1], n) * 0.5
    promo = np.where(rng.uniform(size=n) < 0.12, -rng.uniform(3.0, 7.0, n), 0.0)
    return np.round(100.0 + drift + promo, 2)


# --------------------------------------------------------------------------- store split


def _split_units(total: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Split integer totals (T,) into (T, S) integers by shares, summing exactly (largest remainder)."""
    total = np.asarray(total, dtype=np.int64)
    raw = total[:, None] * shares
    base = np.floor(raw).astype(np.int64)
    left = total - base.sum(axis=1)
    order = np.argsort(-(raw - base), axis=1, kind="stable")
    for i in range(len(total)):
        base[i, order[i, : left[i]]] += 1
    return base


def _jittered_shares(rng: np.random.Generator, base: np.ndarray, n: int, sd: float = 0.04) -> np.ndarray:
    s = base[None, :] * rng.lognormal(0.0, sd, size=(n, base.size))
    return s / s.sum(axis=1, keepdims=True)


def _split_price(rng: np.random.Generator, brand_cents: np.ndarray, n_entities: int) -> np.ndarray:
    """Store prices in cents: brand + deviations that sum to exactly zero over stores."""
    n = len(brand_cents)
    dev = np.round(rng.normal(0.0, 60.0, size=(n, n_entities))).astype(np.int64)
    dev -= np.round(dev.mean(axis=1, keepdims=True)).astype(np.int64)
    for i in range(n):
        r = int(dev[i].sum())
        if r:
            idx = rng.choice(n_entities, size=abs(r), replace=abs(r) > n_entities)
            np.add.at(dev[i], idx, -int(np.sign(r)))
    return brand_cents[:, None] + dev


# --------------------------------------------------------------------------- generator


def generate_sample(
    n_entities: int = 5,
    n_periods: int = 156,
    seed: int = 7,
    spec: RunSpec | Mapping[str, Any] | str | Path | None = None,
    start: str | date = "2022-01-03",
    base_sales: float = 100_000.0,
    beta: Mapping[str, float] | None = None,
    target_roi: Mapping[str, float] | None = None,
    sigma: float = 0.04,
    likelihood: str = "normal",
    nu: float = 10.0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Simulate weekly store data in the standard columns from the baseline model, with the truth.

    Parameters
    ----------
    n_entities, n_periods
        Stores (``store_001`` …) and weeks (Mondays from ``start``).
    seed
        Random seed; the same arguments give identical data.
    spec
        The run spec whose feature settings define the true process (decays, ``max_lag``,
        Hill ``K``/``S``, seasonality ``K``/period, trend, windows): a RunSpec, a dict, a YAML
        path, or None for the settings of ``params/example.yaml``. Must have ``grain: WEEK``.
    base_sales
        Typical brand sales per week (sets the constant).
    beta
        True media coefficients per channel (log-lift at media feature 1).
    target_roi
        ROI each channel's cost per unit is calibrated to over the estimation window.
    sigma, likelihood, nu
        Noise on the log1p scale: ``"normal"`` or ``"studentt"`` (with ``nu`` degrees of freedom).

    Returns
    -------
    data, truth
        The store panel (columns :data:`COLUMNS`, 2-decimal money, whole activity units)
        and the truth dict (see the module docstring; JSON-able).
    """
    spec = _resolve_spec(spec)
    if spec.grain != "WEEK":
        raise ValueError(f"spec grain is {spec.grain!r}; the sample generator makes weekly data (grain: WEEK)")
    if n_entities < 1 or n_periods < 20:
        raise ValueError(f"n_entities={n_entities}, n_periods={n_periods}: need >= 1 entity and >= 20 periods")
    if likelihood not in ("normal", "studentt"):
        raise ValueError(f"likelihood is {likelihood!r}; use 'normal' or 'studentt'")
    start = pd.Timestamp(start)
    if start.day_of_week != 0:
        raise ValueError(f"start {start.date()} is a {start.day_name()}; weekly periods start on Mondays")
    beta = {**DEFAULT_BETA, **(beta or {})}
    target_roi = {**DEFAULT_TARGET_ROI, **(target_roi or {})}
    rng = np.random.default_rng(seed)
    fc = spec.feature_config
    dates = pd.date_range(start, periods=n_periods, freq="7D")
    labels = window_labels(dates, spec)
    if (labels == "estimation").sum() < 10:
        raise ValueError(f"only {(labels == 'estimation').sum()} estimation weeks; use more n_periods")

    # ---- brand drivers and price (rounded first: the truth is computed from what is published)
    decays = {ch: float(spec.decay_for(ch)) for ch in CHANNELS}
    activity = _brand_activity(rng, n_periods, decays, fc.adstock.max_lag)
    price = _brand_price(rng, n_periods)

    # ---- features exactly as the pipeline builds them, on a brand frame with every week
    brand = pd.DataFrame(
        {
            "entity_id": "brand",
            "period_start": dates,
            "window": np.where(labels == "estimation", "estimation", "carryover"),
            TARGET: 0.0,
            **activity,
            PRICE: price,
        }
    )
    column_info = {"grain": "WEEK", "target": TARGET, "drivers": list(CHANNELS), "controls": [PRICE],
                   "spend": dict(SPEND)}
    feats, meta, scaler = build_features(brand, column_info, spec)
    media = feats[[f"media__{ch}" for ch in CHANNELS]].to_numpy()

    # ---- the true linear predictor on the log1p scale; non-media coefficients by regressor name
    coef = {PRICE: -0.05, "season_sin1": 0.08, "season_cos1": 0.05, "season_sin2": -0.03, "season_cos2": 0.02,
            "trend": 0.04}  # fmt: skip
    const = float(np.log1p(base_sales))
    mu = const + media @ np.array([beta[ch] for ch in CHANNELS])
    used_other: dict[str, float] = {}
    for c in meta["controls"]:  # only the regressors this spec builds (seasonality K, trend on/off)
        used_other[c["name"]] = coef.get(c["name"], 0.0)
        mu = mu + used_other[c["name"]] * feats[c["feature"]].to_numpy()
    if likelihood == "normal":
        eps = rng.normal(0.0, sigma, n_periods)
    else:
        eps = sigma * rng.standard_t(nu, n_periods)
    sales_cents = np.round(np.expm1(mu + eps) * 100).astype(np.int64)

    expected = np.expm1(mu)
    counterfactual = {ch: np.expm1(mu - beta[ch] * media[:, j]) for j, ch in enumerate(CHANNELS)}
    est = labels == "estimation"

    # ---- spend: cost per unit calibrated to the target ROI, small noise, 0 when dark
    cost: dict[str, float] = {}
    spend_cents: dict[str, np.ndarray] = {}
    for ch in CHANNELS:
        contrib = float((expected - counterfactual[ch])[est].sum())
        units = float(activity[ch][est].sum())
        c = contrib / (target_roi[ch] * units) if units > 0 and contrib > 0 else 1.0
        c = float(f"{c:.3g}")
        cost[ch] = c
        noisy = activity[ch] * c * rng.lognormal(0.0, 0.03, n_periods)
        spend_cents[ch] = np.where(activity[ch] > 0, np.round(noisy * 100), 0).astype(np.int64)

    # ---- split to stores
    store_base = rng.dirichlet(np.full(n_entities, 6.0))
    store_base = np.sort(store_base)[::-1]
    entities = [f"store_{i + 1:03d}" for i in range(n_entities)]
    store: dict[str, np.ndarray] = {TARGET: _split_units(sales_cents, _jittered_shares(rng, store_base, n_periods)) / 100.0}
    for ch in CHANNELS:
        units = activity[ch].astype(np.int64)
        store[ch] = _split_units(units, _jittered_shares(rng, store_base, n_periods)).astype(float)
        store[SPEND[ch]] = _split_units(spend_cents[ch], _jittered_shares(rng, store_base, n_periods)) / 100.0
        # a store with activity but no spend (or the reverse) would be an artefact of the split
        store[SPEND[ch]] = np.where(store[ch] > 0, store[SPEND[ch]], 0.0)
        moved = spend_cents[ch] - np.round(store[SPEND[ch]].sum(axis=1) * 100).astype(np.int64)
        for i in np.flatnonzero(moved):
            j = int(np.argmax(store[ch][i]))
            store[SPEND[ch]][i, j] = round(store[SPEND[ch]][i, j] + moved[i] / 100.0, 2)
    store[PRICE] = _split_price(rng, np.round(price * 100).astype(np.int64), n_entities) / 100.0

    data = pd.DataFrame(
        {
            "entity_id": np.repeat(entities, n_periods),
            "period_start": np.tile(dates.strftime("%Y-%m-%d"), n_entities),
            **{col: store[col].T.reshape(-1) for col in [TARGET, *CHANNELS, *SPEND.values(), PRICE]},
        }
    )[COLUMNS]
    for col in CHANNELS:
        data[col] = data[col].astype(np.int64)

    iso = [d.strftime("%Y-%m-%d") for d in dates]
    spend_brand = {ch: spend_cents[ch] / 100.0 for ch in CHANNELS}
    series = {
        "period_start": iso,
        "window": [str(x) for x in labels],
        "sales": (sales_cents / 100.0).tolist(),
        "expected_sales": expected.tolist(),
        "counterfactual_sales": {ch: v.tolist() for ch, v in counterfactual.items()},
        "spend": {ch: v.tolist() for ch, v in spend_brand.items()},
        "activity": {ch: activity[ch].tolist() for ch in CHANNELS},
        "media_feature": {ch: media[:, j].tolist() for j, ch in enumerate(CHANNELS)},
        "price_index": price.tolist(),
    }
    est_start = iso[int(np.argmax(est))]
    log_sales = np.log1p(sales_cents / 100.0)
    truth: dict[str, Any] = {
        "description": (
            "Known truth of the bundled sample: brand-level baseline model "
            "log1p(sales) = const + media @ beta + controls @ gamma + noise, with the media "
            "features of mmm_lib.features.media_features. expected_sales = expm1(mu), "
            "counterfactual_sales[c] = expm1(mu - beta_c * media_c) (noise-free)."
        ),
        "generator": {
            "function": "mmm_lib.sample.generate_sample",
            "n_entities": n_entities,
            "n_periods": n_periods,
            "seed": seed,
            "start": iso[0],
            "base_sales": base_sales,
            "entities": entities,
            "store_shares": store_base.tolist(),
        },
        "spec": {
            "grain": spec.grain,
            "target_col": TARGET,
            "drivers": list(CHANNELS),
            "controls": [PRICE],
            "feature_config": spec_to_dict(spec)["feature_config"],
            "windows": spec_to_dict(spec)["windows"],
        },
        "windows": {
            "carryover_start": iso[int(np.argmax(labels == "carryover"))] if (labels == "carryover").any() else None,
            "estimation_start": est_start,
            "end": iso[-1],
            "n_estimation": int(est.sum()),
            "rule": "mmm_lib.canonicalize.compute_windows (end = last week + 1 week; estimation_start = end - estimation_months, "
                    "moved forward to the next week start)",
        },
        "params": {
            "const": const,
            "beta": {ch: float(beta[ch]) for ch in CHANNELS},
            "gamma": {name: float(b) for name, b in used_other.items()},
            "sigma": float(sigma),
            "likelihood": likelihood,
            "nu": float(nu) if likelihood == "studentt" else None,
            "decay": decays,
            "max_lag": int(fc.adstock.max_lag),
            "saturation": {"enabled": bool(fc.saturation.enabled), "K": float(fc.saturation.K), "S": float(fc.saturation.S)},
            "seasonality_period": meta["seasonality"]["period"],
            # the model's z = log1p(sales) - target_center, so its intercept is const - target_center
            "target_center": float(log_sales[est].mean()),
            "intercept_centred": const - float(log_sales[est].mean()),
        },
        "feature_scaler": scaler,
        "cost_per_unit": cost,
        "target_roi": {ch: float(target_roi[ch]) for ch in CHANNELS},
        "series": series,
    }
    truth["roi"] = true_roi(truth, est_start)
    truth["contribution"] = true_contribution(truth, est_start)
    total = float(expected[est].sum())
    truth["media_share"] = {ch: v / total for ch, v in truth["contribution"].items()}
    return data, truth


# --------------------------------------------------------------------------- truth queries


def _window_mask(truth: Mapping[str, Any], estimation_start: str | date, end: str | date | None) -> np.ndarray:
    ps = pd.DatetimeIndex(pd.to_datetime(truth["series"]["period_start"]))
    mask = ps >= pd.Timestamp(estimation_start)
    if end is not None:
        mask &= ps <= pd.Timestamp(end)
    if not mask.any():
        raise ValueError(
            f"no periods in the truth from {estimation_start} to {end or ps[-1].date()} "
            f"(the series covers {ps[0].date()} … {ps[-1].date()})"
        )
    return np.asarray(mask)


def true_contribution(truth: Mapping[str, Any], estimation_start: str | date, end: str | date | None = None) -> dict[str, float]:
    """True incremental sales per channel, summed from ``estimation_start`` (to ``end``, inclusive)."""
    m = _window_mask(truth, estimation_start, end)
    s = truth["series"]
    exp = np.asarray(s["expected_sales"])[m]
    return {ch: float((exp - np.asarray(cf)[m]).sum()) for ch, cf in s["counterfactual_sales"].items()}


def true_roi(truth: Mapping[str, Any], estimation_start: str | date, end: str | date | None = None) -> dict[str, float]:
    """True ROI per channel for a window: incremental expected sales / spend over the window.

    Parameters
    ----------
    truth
        The truth dict of :func:`generate_sample` (or the loaded ``*_truth.json``).
    estimation_start
        First period of the window (ISO date or date); use the run's ``column_info`` value.
    end
        Last period (inclusive); default the end of the series.
    """
    m = _window_mask(truth, estimation_start, end)
    contrib = true_contribution(truth, estimation_start, end)
    out = {}
    for ch, c in contrib.items():
        spend = float(np.asarray(truth["series"]["spend"][ch])[m].sum())
        out[ch] = c / spend if spend > 0 else float("nan")
    return out


def write_sample(out_csv: str | Path, truth_json: str | Path, **kwargs: Any) -> tuple[Path, Path]:
    """Generate a sample (``generate_sample(**kwargs)``) and write the CSV and its truth JSON atomically."""
    data, truth = generate_sample(**kwargs)
    buf = io.StringIO()
    data.to_csv(buf, index=False, float_format="%.2f")
    paths = write_bytes(Path(out_csv), buf.getvalue().encode("utf-8")), write_json(Path(truth_json), truth)
    for p in paths:
        p.chmod(0o644)  # atomic writes create private temp files; sample data is meant to be shared
    return paths


# --------------------------------------------------------------------------- foreign-format look-alikes


def _media_lift(x: np.ndarray, decay: float, beta: float) -> np.ndarray:
    """``beta * Hill(adstock(x) / peak)`` with the pipeline's default K = 0.5, S = 1 (log-scale lift)."""
    ad = geometric_adstock(x, decay, 13)
    peak = ad.max() if ad.max() > 0 else 1.0
    return beta * hill(ad / peak, 0.5, 1.0)


def _weekly_season(n: int, amplitude: float = 0.05) -> np.ndarray:
    t = np.arange(n)
    return amplitude * np.sin(2 * np.pi * t / 52.18) + 0.5 * amplitude * np.cos(2 * np.pi * t / 52.18)


def meridian_like(n_geos: int = 5, n_weeks: int = 104, seed: int = 11, start: str = "2021-01-25") -> pd.DataFrame:
    """A small file shaped like Google Meridian's simulated geo CSVs (``geo_media``), with a known process.

    Columns: ``geo``, ``time`` (Monday dates, text), ``Channel0_impression``, ``Channel0_spend``,
    ``Channel1_impression``, ``Channel1_spend``, ``competitor_sales_control``, ``conversions``,
    ``revenue_per_conversion``, ``population``: no ``entity_id``/``period_start`` and a target that
    is a count, so a run needs the spec's ``columns`` mapping (entity ``geo``, period ``time``,
    ``target_multiplier: revenue_per_conversion``).

    Per geo, ``log(conversions)`` = level (by population) + Σ beta_c · Hill(adstock(impressions_c))
    + seasonality − 0.04 · competitor (standardized) + noise, with beta = 0.25 / 0.12 and decay
    0.5 / 0.3 for Channel0 / Channel1; impressions are national flights split by population.

    Returns
    -------
    pandas.DataFrame
        ``n_geos × n_weeks`` rows, sorted by geo then time.
    """
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=n_weeks, freq="7D").strftime("%Y-%m-%d")
    population = np.round(rng.lognormal(13.5, 0.5, n_geos))
    share = population / population.sum()
    national = {
        "Channel0": _flights(rng, n_weeks, on=(3, 6), off=(2, 6), level=(4e6, 9e6)),
        "Channel1": 3e6 * rng.lognormal(0.0, 0.35, n_weeks),
    }
    cost = {"Channel0": 0.012, "Channel1": 0.02}
    beta = {"Channel0": 0.25, "Channel1": 0.12}
    decay = {"Channel0": 0.5, "Channel1": 0.3}
    season = _weekly_season(n_weeks)
    frames = []
    for g in range(n_geos):
        imp = {ch: np.round(x * share[g] * rng.lognormal(0.0, 0.05, n_weeks)) for ch, x in national.items()}
        comp = rng.normal(100.0, 10.0, n_weeks)
        log_conv = (np.log(population[g] * 0.002) + season - 0.04 * (comp - 100.0) / 10.0
                    + sum(_media_lift(imp[ch], decay[ch], beta[ch]) for ch in imp) + rng.normal(0.0, 0.03, n_weeks))
        frames.append(pd.DataFrame({
            "geo": f"Geo{g}",
            "time": dates,
            "Channel0_impression": imp["Channel0"],
            "Channel0_spend": np.round(imp["Channel0"] * cost["Channel0"], 2),
            "Channel1_impression": imp["Channel1"],
            "Channel1_spend": np.round(imp["Channel1"] * cost["Channel1"], 2),
            "competitor_sales_control": np.round(comp, 3),
            "conversions": np.round(np.exp(log_conv)),
            "revenue_per_conversion": np.round(rng.normal(30.0, 0.5, n_weeks), 2),
            "population": population[g],
        }))
    return pd.concat(frames, ignore_index=True)


def robyn_like(n_weeks: int = 156, seed: int = 12, start: str = "2019-11-25") -> pd.DataFrame:
    """A small file shaped like Robyn's wide weekly CSV (``dt_simulated_weekly``), with a known process.

    Columns: ``DATE`` (Monday dates, text), ``revenue``, ``tv_S``, ``ooh_S``, ``search_S`` (paid media
    given only as spend), ``facebook_I`` (impressions) with ``facebook_S`` (its spend),
    ``competitor_sales_B``, ``newsletter``. There is no entity column (one series), so a run needs
    ``columns: {entity: null, period: DATE}`` and ``spend_cols`` mapping each driver to its spend
    (``tv_S: tv_S`` for spend-only channels).

    ``log(revenue)`` = level + Σ beta_c · Hill(adstock(x_c)) + seasonality + 0.03 · competitor
    (standardized) + 0.02 · newsletter (standardized) + noise.

    Returns
    -------
    pandas.DataFrame
        ``n_weeks`` rows in date order.
    """
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=n_weeks, freq="7D").strftime("%Y-%m-%d")
    media = {
        "tv_S": _flights(rng, n_weeks, on=(3, 6), off=(3, 8), level=(40e3, 120e3)),
        "ooh_S": _flights(rng, n_weeks, on=(2, 5), off=(4, 10), level=(20e3, 60e3)),
        "search_S": 15e3 * rng.lognormal(0.0, 0.3, n_weeks),
        "facebook_I": 2e6 * rng.lognormal(0.0, 0.4, n_weeks),
    }
    beta = {"tv_S": 0.15, "ooh_S": 0.05, "search_S": 0.08, "facebook_I": 0.10}
    decay = {"tv_S": 0.6, "ooh_S": 0.4, "search_S": 0.1, "facebook_I": 0.3}
    comp = rng.normal(5e6, 4e5, n_weeks)
    newsletter = np.round(rng.uniform(5e3, 30e3, n_weeks))
    z = lambda v: (v - v.mean()) / v.std()  # noqa: E731
    log_rev = (np.log(1.5e6) + _weekly_season(n_weeks, 0.08) + 0.03 * z(comp) + 0.02 * z(newsletter)
               + sum(_media_lift(media[ch], decay[ch], beta[ch]) for ch in media) + rng.normal(0.0, 0.03, n_weeks))
    return pd.DataFrame({
        "DATE": dates,
        "revenue": np.round(np.exp(log_rev), 2),
        "tv_S": np.round(media["tv_S"], 2),
        "ooh_S": np.round(media["ooh_S"], 2),
        "search_S": np.round(media["search_S"], 2),
        "facebook_I": np.round(media["facebook_I"]),
        "facebook_S": np.round(media["facebook_I"] * 0.004 * rng.lognormal(0.0, 0.05, n_weeks), 2),
        "competitor_sales_B": np.round(comp),
        "newsletter": newsletter,
    })


# --------------------------------------------------------------------------- multi-entity panel simulator

# Channel name -> (activity pattern, weekly activity units of a size-1 entity at a typical level).
PANEL_CHANNELS: dict[str, tuple[str, float]] = {
    "tv": ("flighted", 120.0),
    "search": ("always_on", 4_000.0),
    "social": ("always_on", 150_000.0),
    "radio": ("flighted", 60.0),
    "ooh": ("flighted", 25.0),
    "display": ("always_on", 300_000.0),
    "video": ("flighted", 80_000.0),
    "email": ("always_on", 20_000.0),
}
PANEL_FORMS = ("multiplicative", "additive")
SATURATION_FAMILIES = ("hill", "logistic", "michaelis_menten")
PANEL_WINDOWS = {"carryover_months": 6, "estimation_months": 24}

# Per family and parameter: (low, high, spec default to stay away from, half-width of the gap);
# the defaults are SaturationConfig's (K 0.5, S 1, lam 3), so a fit at the defaults is misspecified.
_SATURATION_DRAWS: dict[str, dict[str, tuple[float, float, float | None, float]]] = {
    "hill": {"K": (0.2, 0.9, 0.5, 0.1), "S": (0.7, 2.5, 1.0, 0.15)},
    "logistic": {"lam": (1.0, 6.0, 3.0, 0.5)},
    "michaelis_menten": {"K": (0.1, 1.0, 0.5, 0.1)},
}
_PANEL_BASE_SALES = 20_000.0  # weekly baseline sales of a size-1 entity
_YEAR_WEEKS = 52.18
_PRICE_REF = 100.0


def _draw_away(rng: np.random.Generator, lo: float, hi: float, avoid: float | None = None, gap: float = 0.0) -> float:
    """Uniform on ``[lo, hi]`` without the band ``avoid ± gap`` (plain uniform when ``avoid`` is None)."""
    if avoid is None or gap <= 0:
        return float(rng.uniform(lo, hi))
    a, b = max(lo, avoid - gap), min(hi, avoid + gap)
    u = float(rng.uniform(lo, hi - max(b - a, 0.0)))
    return u if u < a else u + max(b - a, 0.0)


def _panel_raw_spec(drivers: list[str], windows: Mapping[str, Any]) -> dict[str, Any]:
    return {"data_path": "panel.csv", "grain": "WEEK", "target_col": TARGET, "drivers": list(drivers),
            "controls": [PRICE], "windows": dict(windows)}  # fmt: skip


def _check_panel_args(
    n_entities: int, n_periods: int, n_channels: int, form: str, saturation: str, dark_share: float,
    max_lag: int, noise_sd: float, entity_ids: Sequence[str] | None,
) -> None:  # fmt: skip
    if n_entities < 1:
        raise ValueError(f"n_entities is {n_entities}; use at least 1 entity")
    if n_periods < 20:
        raise ValueError(f"n_periods is {n_periods}; use at least 20 weekly periods")
    if not 1 <= n_channels <= len(PANEL_CHANNELS):
        raise ValueError(f"n_channels is {n_channels}; use 1 to {len(PANEL_CHANNELS)} (channels {list(PANEL_CHANNELS)})")
    if form not in PANEL_FORMS:
        raise ValueError(f"form is {form!r}; use one of {list(PANEL_FORMS)}")
    if saturation not in SATURATION_FAMILIES:
        raise ValueError(f"saturation is {saturation!r}; use one of {list(SATURATION_FAMILIES)}")
    if not 0.0 <= dark_share <= 1.0:
        raise ValueError(f"dark_share is {dark_share}; use a share in [0, 1]")
    if int(max_lag) != max_lag or max_lag < 1:
        raise ValueError(f"max_lag is {max_lag}; use an integer >= 1")
    if not noise_sd >= 0:
        raise ValueError(f"noise_sd is {noise_sd}; use a standard deviation >= 0")
    if entity_ids is not None and (len(entity_ids) != n_entities or len(set(entity_ids)) != n_entities):
        n_ids, n_distinct = len(entity_ids), len(set(entity_ids))
        raise ValueError(f"entity_ids has {n_ids} ids ({n_distinct} distinct); give {n_entities} distinct ids")


def _panel_decays(rng: np.random.Generator, decays: Sequence[float] | None, n_channels: int) -> list[float]:
    """Given decays (checked) or draws from [0.1, 0.8] away from the spec default 0.5."""
    if decays is None:
        return [_draw_away(rng, 0.1, 0.8, 0.5, 0.1) for _ in range(n_channels)]
    decays = [float(d) for d in decays]
    if len(decays) != n_channels:
        raise ValueError(f"decays has {len(decays)} values; give one per channel ({n_channels})")
    bad = [d for d in decays if not 0.0 <= d < 1.0]
    if bad:
        raise ValueError(f"decays {bad} are outside [0, 1); a geometric decay must be in [0, 1)")
    return decays


def _zero_channel(zero_effect_channel: int | None, channels: list[str]) -> str | None:
    if zero_effect_channel is None:
        return None
    n = len(channels)
    if int(zero_effect_channel) != zero_effect_channel or not -n <= zero_effect_channel < n:
        raise ValueError(f"zero_effect_channel is {zero_effect_channel}; use a channel index in [{-n}, {n - 1}] or None")
    return channels[int(zero_effect_channel)]


def _panel_target_roi(
    rng: np.random.Generator, target_roi: Mapping[str, float] | None, channels: list[str], zero: str | None
) -> dict[str, float]:
    """Default ROI per channel drawn from uniform(0.3, 4.0), overridden by ``target_roi``; 0 for ``zero``."""
    out = {ch: float(rng.uniform(0.3, 4.0)) for ch in channels}
    given = dict(target_roi or {})
    unknown = sorted(set(given) - set(channels))
    if unknown:
        raise ValueError(f"target_roi names {unknown}, which are not simulated channels {channels}")
    bad = {ch: v for ch, v in given.items() if ch != zero and not v > 0}
    if bad:
        raise ValueError(f"target_roi {bad} must be > 0 (the zero-effect channel is the one with ROI 0)")
    if zero is not None and given.get(zero, 0.0) != 0.0:
        raise ValueError(
            f"target_roi for {zero!r} is {given[zero]}, but it is the zero_effect_channel (true ROI 0); "
            "drop it from target_roi or set zero_effect_channel=None"
        )
    out.update({ch: float(v) for ch, v in given.items()})
    if zero is not None:
        out[zero] = 0.0
    return out


def _channel_pattern(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """A national weekly pattern around 1: flights with zero weeks, or always-on with pushes."""
    if kind == "flighted":
        return _flights(rng, n, on=(3, 6), off=(2, 7), level=(0.6, 1.4))
    pushes = _flights(rng, n, on=(2, 4), off=(3, 8), level=(0.3, 1.0))
    return (1.0 + pushes) * rng.lognormal(0.0, 0.25, n)


def _panel_activity(rng: np.random.Generator, n: int, names: list[str], sizes: np.ndarray, dark_share: float) -> np.ndarray:
    """(E, T, C) whole activity units: pattern × level × entity size × weekly jitter, with dark runs."""
    E, C = len(sizes), len(names)
    act = np.empty((E, n, C))
    for j, name in enumerate(names):
        kind, level = PANEL_CHANNELS[name]
        pattern = _channel_pattern(rng, n, kind)
        act[:, :, j] = level * sizes[:, None] * pattern[None, :] * rng.lognormal(0.0, 0.15, (E, n))
    for k in rng.choice(E * C, size=int(round(dark_share * E * C)), replace=False):
        i, j = divmod(int(k), C)
        for _ in range(int(rng.integers(1, 4))):
            length = int(rng.integers(4, 13))
            t0 = int(rng.integers(0, max(n - length, 1)))
            act[i, t0 : t0 + length, j] = 0.0
    return np.round(act)


def _activity_scale(act: np.ndarray, est: np.ndarray) -> np.ndarray:
    """(E, C) max activity over the estimation window (else over all periods, else 1)."""
    scale = act[:, est, :].max(axis=1)
    scale = np.where(scale > 0, scale, act.max(axis=1))
    return np.where(scale > 0, scale, 1.0)


def _true_saturation(family: str, x: np.ndarray, params: Mapping[str, float]) -> np.ndarray:
    if family == "hill":
        return hill(x, params["K"], params["S"])
    if family == "logistic":
        e = np.exp(-params["lam"] * x)
        return (1.0 - e) / (1.0 + e)
    return x / (params["K"] + x)


def _panel_saturated(truth: Mapping[str, Any], act: np.ndarray) -> np.ndarray:
    """(E, T, C) true media response in [0, 1): normalised geometric adstock of scaled activity, saturated."""
    p = truth["params"]
    sat = truth["saturation"]
    L = int(p["max_lag"])
    out = np.empty(act.shape)
    for j, ch in enumerate(p["channels"]):
        d = float(truth["decay"][ch])
        norm = sum(d**lag for lag in range(L))
        for i, ent in enumerate(p["entities"]):
            x = act[i, :, j] / p["activity_scale"][ent][ch]
            out[i, :, j] = _true_saturation(sat["family"], geometric_adstock(x, d, L) / norm, sat["params"][ch])
    return out


def _panel_mean(truth: Mapping[str, Any], act: np.ndarray, price: np.ndarray) -> np.ndarray:
    """(E, T) noise-free expected sales from activity (E, T, C) and price index (E, T)."""
    p = truth["params"]
    ents, chans = p["entities"], p["channels"]
    t = np.arange(act.shape[1]) / _YEAR_WEEKS
    time = p["season_sin"] * np.sin(2 * np.pi * t) + p["season_cos"] * np.cos(2 * np.pi * t) + p["trend_per_year"] * t
    base = np.array([p["base"][e] for e in ents])[:, None]
    effect = np.array([[p["effect"][e][c] for c in chans] for e in ents])[:, None, :]
    media = (effect * _panel_saturated(truth, act)).sum(axis=2)
    if truth["form"] == "multiplicative":
        return np.expm1(np.log(base) + time[None, :] + p["price_coef"] * np.log(price / _PRICE_REF) + media)
    return base * (1.0 + time[None, :] + p["price_coef"] * (price / _PRICE_REF - 1.0)) + base * media


def _panel_grid(truth: Mapping[str, Any], data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Activity (E, T, C) and price (E, T) of a panel frame, and each row's (entity, period) index."""
    p = truth["params"]
    ei = pd.Index(p["entities"]).get_indexer(data["entity_id"])
    ti = pd.DatetimeIndex(pd.to_datetime(p["period_start"])).get_indexer(pd.to_datetime(data["period_start"]))
    E, T = len(p["entities"]), len(p["period_start"])
    if (ei < 0).any() or (ti < 0).any() or len(data) != E * T or len(set(zip(ei, ti))) != E * T:
        raise ValueError(f"data must hold each of the truth's {E} entities × {T} periods exactly once (got {len(data)} rows)")
    act = np.zeros((E, T, len(p["channels"])))
    price = np.zeros((E, T))
    for j, ch in enumerate(p["channels"]):
        act[ei, ti, j] = data[ch].to_numpy(dtype=float)
    price[ei, ti] = data[PRICE].to_numpy(dtype=float)
    return act, price, ei, ti


def panel_expected_sales(truth: Mapping[str, Any], data: pd.DataFrame) -> pd.Series:
    """Noise-free expected sales of a :func:`simulate_panel` frame under its true process.

    Set a channel's activity to 0 in every row to get its counterfactual: the true incremental
    sales of ``act_tv`` are ``panel_expected_sales(truth, data) -
    panel_expected_sales(truth, data.assign(act_tv=0))`` (carry-over included).

    Parameters
    ----------
    truth
        The truth dict of :func:`simulate_panel` (or its JSON, loaded).
    data
        A frame with ``entity_id``, ``period_start``, the ``act_*`` columns and ``ctrl_price_index``
        for every entity and period of the truth (any row order; other columns are ignored).

    Returns
    -------
    pandas.Series
        ``expm1(mu)`` (multiplicative form) or the additive mean, aligned to ``data``'s rows.
    """
    act, price, ei, ti = _panel_grid(truth, data)
    return pd.Series(_panel_mean(truth, act, price)[ei, ti], index=data.index, name="expected_sales")


def _panel_effects(
    rng: np.random.Generator, entities: list[str], channels: list[str], zero: str | None
) -> dict[str, dict[str, float]]:
    """Entity × channel effect at full saturation: a channel mean × lognormal(0, 0.3) (0 for ``zero``).

    The channel means share about 0.45 between the channels, so media is roughly 5–30% of sales.
    """
    mean = {ch: float(rng.uniform(0.5, 1.5)) * 0.45 / len(channels) for ch in channels}
    jitter = rng.lognormal(0.0, 0.3, (len(entities), len(channels)))
    return {e: {ch: 0.0 if ch == zero else mean[ch] * float(jitter[i, j]) for j, ch in enumerate(channels)}
            for i, e in enumerate(entities)}  # fmt: skip


def _calibrate_spend(
    rng: np.random.Generator, act: np.ndarray, incremental: np.ndarray, target: np.ndarray, est: np.ndarray,
    fallback_total: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Spend in cents (E, T, C) = activity × channel cost × entity jitter, hitting ``incremental / target``.

    The channel cost makes estimation-window spend equal ``incremental / target``; the few cents
    that rounding each cell leaves over go to the channel's largest estimation-window cell, so the
    ROI is exact to a cent of spend. A channel with target 0 (no effect) spends the mean of the
    others (``fallback_total`` when there are none).
    """
    E, _, C = act.shape
    jitter = rng.uniform(0.9, 1.1, (E, C))
    units = act * jitter[:, None, :]
    est_units = units[:, est, :].sum(axis=(0, 1))
    if (est_units <= 0).any():
        raise ValueError("a channel has no activity in the estimation window; use more n_periods or a lower dark_share")
    goal = np.divide(incremental, target, out=np.zeros(C), where=target > 0)
    goal[target <= 0] = goal[target > 0].mean() if (target > 0).any() else fallback_total
    cost = goal / est_units
    cents = np.round(units * cost * 100).astype(np.int64)
    for j in range(C):
        block = cents[:, est, j]
        i, t = np.unravel_index(np.argmax(block), block.shape)
        block[i, t] += int(round(goal[j] * 100)) - int(block.sum())
        cents[:, est, j] = block
    return cents, cost, jitter


def simulate_panel(
    n_entities: int = 8,
    n_periods: int = 156,
    n_channels: int = 4,
    seed: int = 0,
    form: str = "multiplicative",
    saturation: str = "hill",
    decays: Sequence[float] | None = None,
    zero_effect_channel: int | None = -1,
    dark_share: float = 0.25,
    windows: Mapping[str, Any] | None = None,
    start: str | date = "2022-01-03",
    max_lag: int = 13,
    noise_sd: float = 0.05,
    target_roi: Mapping[str, float] | None = None,
    entity_ids: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Simulate a weekly multi-entity panel from a chosen true process, with each channel's true ROI.

    Entities have lognormal sizes (sigma 0.8); baseline sales, activity and spend scale with size.
    Per entity and channel the true media response is a geometric adstock with weights
    ``decay**l`` normalised to sum 1 over ``max_lag`` lags, applied to activity divided by the
    entity-channel's maximum over the estimation window, then the true saturation family. Sales
    also carry an annual sine season, a mild trend and a negative price effect:

    * ``multiplicative``: ``log1p(sales) = log(base_e) + season + trend + price + sum_c beta_ec * sat_ec + noise``;
    * ``additive``: ``sales = base_e * (1 + season + trend + price) + sum_c coef_ec * base_e * sat_ec``,
      times ``1 + noise``.

    Each channel's cost per unit (global, times an entity jitter of ±10%) is calibrated so that its
    true ROI over the estimation window equals ``target_roi``: the noise-free incremental sales of
    setting the channel's activity to 0 in all rows (see :func:`panel_expected_sales`), summed over
    entities and estimation periods, divided by its spend there.

    Parameters
    ----------
    n_entities, n_periods
        Entities (``store_001`` …) and weeks (Mondays from ``start``).
    n_channels
        Channels, the first ``n_channels`` of :data:`PANEL_CHANNELS` (``act_tv``, ``act_search`` …; at most 8).
    seed
        Random seed; the same arguments give identical data and truth.
    form
        ``"multiplicative"`` or ``"additive"`` (see above).
    saturation
        True saturation family: ``"hill"`` (K, S), ``"logistic"`` (lam) or ``"michaelis_menten"`` (K);
        parameters are drawn per channel away from the spec defaults.
    decays
        True adstock decay per channel, each in [0, 1); default drawn from [0.1, 0.8] away from 0.5.
    zero_effect_channel
        Index of the channel with no effect (true ROI exactly 0; it still spends), or None.
    dark_share
        Share of (entity, channel) series given 1–3 runs of 4–12 dark (zero-activity) weeks.
    windows
        ``carryover_months`` / ``estimation_months`` as in a run spec (default 6 / 24); the
        estimation window follows :func:`window_labels`.
    start, max_lag, noise_sd
        First Monday, adstock lags kept, and noise sd (log1p scale, or relative for ``additive``).
    target_roi
        True ROI per channel (``{"act_tv": 1.5}``); channels not given draw from uniform(0.3, 4.0).
    entity_ids
        Names of the entities, default ``store_001`` …

    Returns
    -------
    data, truth
        The panel (``entity_id``, ``period_start`` (datetime), ``sales``, ``act_*``, ``spend_*``,
        ``ctrl_price_index``; money to the cent, whole activity units) and the JSON-able truth:
        ``roi``, ``incremental``, ``spend`` (estimation window, summed over entities), ``entity_roi``,
        ``decay``, ``saturation`` (``family``, ``params``), ``form``, ``entity_size``,
        ``zero_effect_channel``, ``estimation_start``, ``target_roi``, ``cost_per_unit``,
        ``media_share``, ``windows`` and ``params`` (what :func:`panel_expected_sales` needs).
    """
    _check_panel_args(n_entities, n_periods, n_channels, form, saturation, dark_share, max_lag, noise_sd, entity_ids)
    start = pd.Timestamp(start)
    if start.day_of_week != 0:
        raise ValueError(f"start is {start.date()}, a {start.day_name()}; weekly periods start on Mondays")
    names = list(PANEL_CHANNELS)[:n_channels]
    channels = [f"act_{n}" for n in names]
    windows = dict(PANEL_WINDOWS if windows is None else windows)
    spec = parse_spec(_panel_raw_spec(channels, windows), source="simulate_panel(windows=...)")
    zero = _zero_channel(zero_effect_channel, channels)
    dates = pd.date_range(start, periods=n_periods, freq="7D")
    est = window_labels(dates, spec) == "estimation"
    if est.sum() < 10:
        raise ValueError(
            f"windows={windows} gives {int(est.sum())} estimation weeks; "
            "use windows['estimation_months'] >= 3 (at least 10 weeks)"
        )

    # one stream per component: changing the form, the family, decays or target ROI leaves the rest as it was
    rng_size, rng_decay, rng_sat, rng_roi, rng_act, rng_price, rng_effect, rng_noise, rng_cost = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(9)
    )
    entities = list(entity_ids) if entity_ids is not None else [f"store_{i + 1:03d}" for i in range(n_entities)]
    sizes = rng_size.lognormal(0.0, 0.8, n_entities)
    decay = dict(zip(channels, _panel_decays(rng_decay, decays, n_channels)))
    draws = _SATURATION_DRAWS[saturation]
    sat_params = {ch: {k: _draw_away(rng_sat, *draws[k]) for k in draws} for ch in channels}
    roi_goal = _panel_target_roi(rng_roi, target_roi, channels, zero)
    act = _panel_activity(rng_act, n_periods, names, sizes, dark_share)
    price = np.stack([_brand_price(rng_price, n_periods) for _ in entities])
    scale = _activity_scale(act, est)
    truth: dict[str, Any] = {
        "form": form,
        "decay": decay,
        "saturation": {"family": saturation, "params": sat_params},
        "params": {
            "entities": entities,
            "channels": channels,
            "period_start": [d.strftime("%Y-%m-%d") for d in dates],
            "max_lag": int(max_lag),
            "activity_scale": {e: {ch: float(scale[i, j]) for j, ch in enumerate(channels)} for i, e in enumerate(entities)},
            "base": {e: _PANEL_BASE_SALES * float(s) for e, s in zip(entities, sizes)},
            "effect": _panel_effects(rng_effect, entities, channels, zero),
            "season_sin": float(rng_effect.uniform(0.04, 0.10)),
            "season_cos": float(rng_effect.uniform(-0.04, 0.04)),
            "trend_per_year": float(rng_effect.uniform(0.01, 0.04)),
            "price_coef": -float(rng_effect.uniform(0.8, 1.6)),
            "noise_sd": float(noise_sd),
        },
    }
    expected = _panel_mean(truth, act, price)
    inc_et = np.stack([expected - _panel_mean(truth, np.where(np.arange(n_channels) == j, 0.0, act), price)
                       for j in range(n_channels)], axis=2)  # fmt: skip
    no_media = _panel_mean(truth, np.zeros_like(act), price)
    if form == "multiplicative":
        sales = np.expm1(np.log1p(expected) + rng_noise.normal(0.0, noise_sd, expected.shape))
    else:
        sales = expected * (1.0 + rng_noise.normal(0.0, noise_sd, expected.shape))
    target = np.array([roi_goal[ch] for ch in channels])
    incremental = inc_et[:, est, :].sum(axis=(0, 1))
    cents, cost, jitter = _calibrate_spend(rng_cost, act, incremental, target, est, 0.1 * float(expected[:, est].sum()))

    data = pd.DataFrame({"entity_id": np.repeat(entities, n_periods), "period_start": np.tile(dates, n_entities),
                         TARGET: np.round(np.maximum(sales, 0.0), 2).reshape(-1)})  # fmt: skip
    for j, n in enumerate(names):
        data[f"act_{n}"] = act[:, :, j].reshape(-1).astype(np.int64)
    for j, n in enumerate(names):
        data[f"spend_{n}"] = cents[:, :, j].reshape(-1) / 100.0
    data[PRICE] = price.reshape(-1)

    spend_e = cents[:, est, :].sum(axis=1) / 100.0  # (E, C)
    inc_e = inc_et[:, est, :].sum(axis=1)
    spend = spend_e.sum(axis=0)
    truth.update({
        "roi": {ch: float(incremental[j] / spend[j]) for j, ch in enumerate(channels)},
        "incremental": {ch: float(incremental[j]) for j, ch in enumerate(channels)},
        "spend": {ch: float(spend[j]) for j, ch in enumerate(channels)},
        "entity_roi": {e: {ch: float(inc_e[i, j] / spend_e[i, j]) if spend_e[i, j] > 0 else None
                           for j, ch in enumerate(channels)} for i, e in enumerate(entities)},
        "entity_size": {e: float(s) for e, s in zip(entities, sizes)},
        "zero_effect_channel": zero,
        "estimation_start": dates[int(np.argmax(est))].strftime("%Y-%m-%d"),
        "windows": windows,
        "target_roi": roi_goal,
        "cost_per_unit": {ch: float(cost[j]) for j, ch in enumerate(channels)},
        "cost_jitter": {e: {ch: float(jitter[i, j]) for j, ch in enumerate(channels)} for i, e in enumerate(entities)},
        "media_share": float((expected - no_media)[:, est].sum() / expected[:, est].sum()),
        "generator": {"function": "mmm_lib.sample.simulate_panel", "n_entities": n_entities, "n_periods": n_periods,
                      "n_channels": n_channels, "seed": seed, "start": dates[0].strftime("%Y-%m-%d"),
                      "dark_share": float(dark_share)},
    })  # fmt: skip
    return data, truth


def meridian_like_panel(
    n_geos: int = 20, n_periods: int = 156, n_channels: int = 4, seed: int = 0, **kw: Any
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:func:`simulate_panel` in the shape of Meridian's simulated ``geo_media`` data (20 geos × 156 weeks × 4 channels).

    Entities are ``geo_00`` …; columns and truth are those of :func:`simulate_panel` (standard columns,
    unlike :func:`meridian_like`, which mimics Meridian's own column names). ``kw`` goes to
    :func:`simulate_panel`.
    """
    width = max(2, len(str(n_geos - 1)))
    ids = [f"geo_{i:0{width}d}" for i in range(n_geos)]
    return simulate_panel(n_entities=n_geos, n_periods=n_periods, n_channels=n_channels, seed=seed, entity_ids=ids, **kw)


def panel_spec(source: pd.DataFrame | Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """A raw run-spec dict for a :func:`simulate_panel` panel (validated, returned as plain data).

    Parameters
    ----------
    source
        The panel frame (drivers = its ``act_*`` columns, default windows) or its truth dict
        (drivers = its channels, the simulated windows).
    **overrides
        Top-level spec keys that replace the defaults, e.g. ``draws=200``, ``data_path="x.csv"``,
        ``feature_config={...}`` (``dataset_id`` replaces the ``"panel.csv"`` placeholder).

    Returns
    -------
    dict
        ``data_path: "panel.csv"``, ``grain: WEEK``, ``target_col: sales``, the drivers,
        ``controls: [ctrl_price_index]`` and the windows, with ``overrides`` applied.
    """
    if isinstance(source, pd.DataFrame):
        raw = _panel_raw_spec([c for c in source.columns if str(c).startswith("act_")], PANEL_WINDOWS)
    elif isinstance(source, Mapping) and "params" in source and "windows" in source:
        raw = _panel_raw_spec(list(source["params"]["channels"]), source["windows"])
    else:
        raise ValueError(f"panel_spec source is a {type(source).__name__}; pass the frame or the truth dict of simulate_panel")
    if "dataset_id" in overrides:
        raw.pop("data_path")
    raw.update(overrides)
    parse_spec(raw, source="panel_spec(...)")
    return raw


# --------------------------------------------------------------------------------------------
# the budget optimizer against the truth: what a spend plan truly earns under simulate_panel's process


def _plan_oracle(truth: Mapping[str, Any], data: pd.DataFrame, horizon: Any) -> Any:
    """``f(spend) -> float``: the true incremental sales of a plan's spend (E, C) (see :func:`true_plan_incremental`).

    The observed grid, the held price and the sales with no planned spend are computed once, so an
    optimizer can call ``f`` many times.
    """
    p = truth["params"]
    act_obs, price_obs, _, _ = _panel_grid(truth, data)
    T, H = act_obs.shape[1], int(horizon.n_periods)
    missing = sorted(set(p["entities"]) ^ set(horizon.entities)) + sorted(set(p["channels"]) ^ set(horizon.channels))
    if missing:
        raise ValueError(f"the horizon and the truth disagree on entities/channels {missing[:5]}; build the horizon "
                         "from a run fitted on this panel with all its channels as drivers")  # fmt: skip
    expected_start = pd.Timestamp(p["period_start"][-1]) + pd.Timedelta(days=7)
    if pd.Timestamp(horizon.periods[0]) != expected_start:
        raise ValueError(f"the horizon starts {pd.Timestamp(horizon.periods[0]).date()}, not the week after the "
                         f"panel's last period ({expected_start.date()}); fit on the whole panel")  # fmt: skip
    e_idx = [list(horizon.entities).index(e) for e in p["entities"]]
    c_idx = [list(horizon.channels).index(c) for c in p["channels"]]
    # the truth's own carryover counts in full, even when the fitted model keeps fewer lags than the generator
    n_future = max(H + len(horizon.tail_periods), H + int(p["max_lag"]) - 1)
    held_price = price_obs[:, T - min(H, T):].mean(axis=1, keepdims=True)
    price = np.concatenate([price_obs, np.repeat(held_price, n_future, axis=1)], axis=1)

    def future_mean(spend: np.ndarray) -> np.ndarray:
        win = np.asarray(horizon.activity(np.asarray(spend, dtype=float)), dtype=float)[:, horizon.n_history:, :]
        future = np.zeros((len(e_idx), n_future, len(c_idx)))
        future[:, : win.shape[1], :] = win[e_idx][:, :, c_idx]
        return _panel_mean(truth, np.concatenate([act_obs, future], axis=1), price)[:, T:]

    none = future_mean(np.zeros((len(horizon.entities), len(horizon.channels))))

    def f(spend: np.ndarray) -> float:
        return float((future_mean(spend) - none).sum())

    return f


def true_plan_incremental(truth: Mapping[str, Any], data: pd.DataFrame, horizon: Any, spend: Any) -> float:
    """True incremental sales of a spend plan over a budget horizon, from :func:`simulate_panel`'s own equations.

    The oracle the budget optimizer is judged by. The plan's spend becomes activity exactly as the
    suite lays it out (``horizon.activity``: the same flighting and cost per unit), so two plans
    compared with it differ only in their allocation. The true process then runs on the observed
    activity followed by the plan's future activity (horizon, then periods without planned spend
    while the carryover lasts: the horizon's tail, extended to the generator's ``max_lag - 1`` when
    that is longer), with the time index (season, trend) continuing and each entity's price held at
    its mean over the last ``H`` observed periods (what the horizon assumes for controls). The
    result is the sum over those future rows and all entities of the noise-free expected sales with
    the plan minus those with no planned spend (channels the horizon holds stay in both).

    Parameters
    ----------
    truth, data
        The truth dict and the panel of :func:`simulate_panel` (the frame the run was fitted on).
    horizon
        The run's :class:`mmm_lib.optimize.horizon.Horizon`, built on the whole panel.
    spend
        (E, C) spend over the horizon in ``horizon.entities`` × ``horizon.channels`` order.

    Returns
    -------
    float
        True incremental sales of the plan (0 for the zero plan).
    """
    return _plan_oracle(truth, data, horizon)(np.asarray(spend, dtype=float))


def _onto_budget(x: np.ndarray, lower: np.ndarray, upper: np.ndarray, budget: float) -> np.ndarray:
    """``clip(x + t, lower, upper)`` summing to ``budget`` (bisection on the shift ``t``)."""
    lo_t, hi_t = float(lower.min() - x.max()) - 1.0, float(upper.max() - x.min()) + 1.0
    for _ in range(200):
        t = 0.5 * (lo_t + hi_t)
        lo_t, hi_t = (lo_t, t) if np.clip(x + t, lower, upper).sum() > budget else (t, hi_t)
    return np.clip(x + 0.5 * (lo_t + hi_t), lower, upper)


def true_optimal_plan(
    truth: Mapping[str, Any], data: pd.DataFrame, horizon: Any, problem: Any, budget: float, starts: int = 6,
    random_seed: int = 0,
) -> tuple[np.ndarray, float]:  # fmt: skip
    """The allocation of ``budget`` that maximises :func:`true_plan_incremental` over an optimizer's problem.

    The same decision variables, bounds and budget as the suite's optimizer
    (:func:`mmm_lib.optimize.allocate.build_problem`): ``problem.mapping`` turns the variables into
    spend (E, C), ``problem.lower`` / ``problem.upper`` bound them, ``problem.channel_limits`` bound a
    channel's total, and the variables sum to ``budget``. scipy's SLSQP maximises the true
    incremental sales (central finite-difference gradients) from ``starts`` points: the current
    split scaled to the budget, an equal split and random splits; the best result is kept (a start
    itself counts, so the optimum is never below the current split).

    Parameters
    ----------
    truth, data, horizon
        As :func:`true_plan_incremental`.
    problem
        :class:`mmm_lib.optimize.allocate.Problem` (attributes ``mapping``, ``current``, ``lower``,
        ``upper``, ``index``, ``channel_limits``).
    budget
        Total spend over the horizon.
    starts
        Starting points (at least 1).
    random_seed
        Random seed of the random starting splits.

    Returns
    -------
    spend, value
        The optimal variables (n,) (spend per variable, as :class:`~mmm_lib.optimize.allocate.Solution`'s
        ``spend``) and their true incremental sales.
    """
    from scipy.optimize import minimize

    oracle = _plan_oracle(truth, data, horizon)
    E, C = len(horizon.entities), len(horizon.channels)
    mapping = np.asarray(problem.mapping, dtype=float)
    lower, upper = np.asarray(problem.lower, dtype=float), np.asarray(problem.upper, dtype=float)
    current = np.asarray(problem.current, dtype=float)
    n = len(current)

    def value(x: np.ndarray) -> float:
        return oracle((mapping @ x).reshape(E, C))

    scale_f = max(abs(value(current)), 1e-9) if current.sum() > 0 else 1.0
    step = 1e-6

    def fun(u: np.ndarray) -> float:
        return -value(u * budget) / scale_f

    def jac(u: np.ndarray) -> np.ndarray:
        g = np.empty(n)
        for i in range(n):
            d = np.zeros(n)
            d[i] = step
            g[i] = (fun(u + d) - fun(u - d)) / (2 * step)
        return g

    cons: list[dict[str, Any]] = [{"type": "eq", "fun": lambda u: u.sum() - 1.0, "jac": lambda u: np.ones_like(u)}]
    for c, (a, b) in (getattr(problem, "channel_limits", None) or {}).items():
        sel = np.array([cc == c for _, cc in problem.index], dtype=float)
        cons.append({"type": "ineq", "fun": lambda u, s=sel, a=a: s @ u - a / budget, "jac": lambda u, s=sel: s})
        cons.append({"type": "ineq", "fun": lambda u, s=sel, b=b: b / budget - s @ u, "jac": lambda u, s=sel: -s})
    rng = np.random.default_rng(random_seed)
    points = [current * budget / current.sum() if current.sum() > 0 else np.full(n, budget / n), np.full(n, budget / n)]
    points += [rng.dirichlet(np.ones(n)) * budget for _ in range(max(int(starts), 1) - 2)]
    best_x, best_v = None, -np.inf
    for x0 in points[: max(int(starts), 1)]:
        x0 = _onto_budget(x0, lower, upper, budget)
        res = minimize(fun, x0 / budget, jac=jac, method="SLSQP", bounds=list(zip(lower / budget, upper / budget)),
                       constraints=cons, options={"maxiter": 500, "ftol": 1e-12})  # fmt: skip
        for x in (x0, np.clip(res.x, lower / budget, upper / budget) * budget):
            feasible = all(con["fun"](x / budget) >= -1e-6 for con in cons[1:]) and abs(x.sum() - budget) <= 1e-6 * budget
            v = value(x) if feasible else -np.inf
            if v > best_v:
                best_x, best_v = x, v
    if best_x is None:
        raise ValueError(f"no allocation of the budget {budget:,.0f} met the problem's bounds from {len(points)} starts; "
                         "check the budget against the bounds (mmm_lib.optimize.allocate.check_feasible)")
    return best_x, float(best_v)

"""The sample-data generator with known truth (``mmm sample``); it made ``data/mmm_sample_small.csv``.

The true process is the seed model's structure at brand level, built with the same feature
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
"""

from __future__ import annotations

import io
from collections.abc import Mapping
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
    """Simulate seed-format weekly store data from the seed model, with the truth.

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
            "Known truth of the bundled sample: brand-level seed model "
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
            "rule": "mmm_lib.canonicalize.compute_windows (end = last week + 1 week; estimation_start = end - estimation_months)",
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

"""Tests for mmm_lib.features: adstock, Hill, Fourier, media_features and build_features."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from mmm_lib.features import (
    SATURATION_SCALE,
    build_features,
    channel_settings_table,
    feature_columns,
    feature_correlations,
    fourier_terms,
    geometric_adstock,
    half_life,
    hill,
    media_features,
    media_stages,
    periods_since_origin,
)
from mmm_lib.spec import parse_spec

DRIVERS = ["act_tv", "act_radio"]


def make_spec(**overrides):
    raw = {
        "data_path": "x.csv",
        "drivers": DRIVERS,
        "controls": ["ctrl_price"],
        "feature_config": {
            "adstock": {"decay_default": 0.5, "per_channel": {"act_tv": 0.7}, "max_lag": 8},
            "saturation": {"enabled": True, "K": 0.5, "S": 1.5},
            "seasonality": {"enabled": True, "K": 2},
            "trend": {"enabled": True},
        },
    }
    for k, v in overrides.items():
        raw[k] = v
    return parse_spec(raw)


def make_canonical(n_carry: int = 20, n_est: int = 60, seed: int = 0, grain: str = "WEEK") -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    n = n_carry + n_est
    freq = "7D" if grain == "WEEK" else "MS"
    start = "2021-01-04" if grain == "WEEK" else "2018-01-01"
    df = pd.DataFrame(
        {
            "entity_id": "brand",
            "period_start": pd.date_range(start, periods=n, freq=freq),
            "window": ["carryover"] * n_carry + ["estimation"] * n_est,
            "sales": rng.uniform(900, 1100, n),
            "act_tv": np.where(rng.uniform(size=n) < 0.5, 0.0, rng.uniform(50, 200, n)),
            "act_radio": rng.uniform(0, 30, n),
            "spend_tv": rng.uniform(0, 10, n),
            "ctrl_price": 100 + rng.normal(0, 2, n),
        }
    )
    info = {
        "grain": grain,
        "target": "sales",
        "drivers": DRIVERS,
        "spend": {"act_tv": "spend_tv", "act_radio": None},
        "controls": ["ctrl_price"],
    }
    return df, info


# --------------------------------------------------------------------------- adstock


def test_adstock_hand_computed():
    x = np.array([1.0, 0.0, 0.0, 2.0, 0.0])
    np.testing.assert_allclose(geometric_adstock(x, 0.5, 3), [1.0, 0.5, 0.25, 2.0, 1.0])
    # max_lag 2 keeps lags 0 and 1 only
    np.testing.assert_allclose(geometric_adstock(x, 0.5, 2), [1.0, 0.5, 0.0, 2.0, 1.0])
    np.testing.assert_array_equal(geometric_adstock(x, 0.0, 13), x)


def test_adstock_matches_recursion_for_long_max_lag():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 5, size=(40, 2))
    got = geometric_adstock(x, 0.6, 40)
    rec = np.zeros_like(x)
    for t in range(len(x)):
        rec[t] = x[t] + (0.6 * rec[t - 1] if t else 0.0)
    np.testing.assert_allclose(got, rec, rtol=1e-12)
    # columns are independent
    np.testing.assert_allclose(got[:, 1], geometric_adstock(x[:, 1], 0.6, 40))


@pytest.mark.parametrize("decay,max_lag", [(1.0, 5), (-0.1, 5), (0.5, 0)])
def test_adstock_rejects_bad_settings(decay, max_lag):
    with pytest.raises(ValueError, match="decay|max_lag"):
        geometric_adstock(np.ones(5), decay, max_lag)


def test_half_life():
    assert half_life(0.5) == pytest.approx(1.0)
    assert half_life(0.0) == 0.0
    assert 0.7 ** half_life(0.7) == pytest.approx(0.5)


# --------------------------------------------------------------------------- hill


def test_hill_properties():
    assert hill(np.array([0.0]), 0.5, 1.0)[0] == 0.0
    assert hill(np.array([0.5]), 0.5, 2.0)[0] == pytest.approx(0.5, abs=1e-15)
    x = np.linspace(0, 5, 500)
    y = hill(x, 0.7, 1.3)
    assert np.all(np.diff(y) > 0) and y.min() == 0.0 and y.max() < 1.0
    with np.errstate(all="ignore"):
        direct = x**1.3 / (0.7**1.3 + x**1.3)
    np.testing.assert_allclose(y, direct, rtol=1e-12, atol=1e-15)


def test_hill_extremes_are_finite_without_warnings():
    with np.errstate(all="raise"):
        y = hill(np.array([0.0, 1e-300, 1e300]), 0.5, 8.0)
    assert np.all(np.isfinite(y)) and y[0] == 0.0 and y[2] == pytest.approx(1.0)


def test_hill_rejects_negative_and_bad_parameters():
    with pytest.raises(ValueError, match=">= 0"):
        hill(np.array([-1.0]), 0.5, 1.0)
    with pytest.raises(ValueError, match="K="):
        hill(np.array([1.0]), 0.0, 1.0)


# --------------------------------------------------------------------------- fourier


def test_fourier_orthogonal_and_periodic():
    t = np.arange(48.0)
    F = fourier_terms(t, 12.0, 3)
    assert F.shape == (48, 6)
    np.testing.assert_allclose(F[:, 0], np.sin(2 * np.pi * t / 12))
    np.testing.assert_allclose(F[:, 3], np.cos(2 * np.pi * 2 * t / 12))
    np.testing.assert_allclose(F.T @ F, np.eye(6) * 24, atol=1e-9)
    np.testing.assert_allclose(fourier_terms(t + 12.0, 12.0, 3), F, atol=1e-9)


def test_periods_since_origin():
    w = periods_since_origin(pd.to_datetime(["2000-01-01", "2000-01-15"]), "WEEK")
    np.testing.assert_allclose(w, [0.0, 2.0])
    m = periods_since_origin(pd.to_datetime(["2000-01-01", "2001-03-01"]), "MONTH")
    np.testing.assert_allclose(m, [0.0, 14.0])
    with pytest.raises(ValueError, match="grain"):
        periods_since_origin(pd.to_datetime(["2000-01-01"]), "DAY")


# --------------------------------------------------------------------------- build_features / media_features


def test_build_features_columns_and_metadata():
    df, info = make_canonical()
    spec = make_spec()
    f, meta, scaler = build_features(df, info, spec)
    assert list(f.columns) == [
        "entity_id", "period_start", "window", "target",
        "media__act_tv", "media__act_radio", "activity__act_tv", "activity__act_radio", "ctrl__ctrl_price",
        "season__sin1", "season__cos1", "season__sin2", "season__cos2", "trend",
    ]  # fmt: skip
    assert f["period_start"].dtype == "datetime64[ns]"
    np.testing.assert_array_equal(f["target"], df["sales"])
    # raw activity, unchanged, for the learned-transform model
    for d in DRIVERS:
        np.testing.assert_array_equal(f[f"activity__{d}"], df[d])
    assert meta["target"] == "sales" and meta["grain"] == "WEEK"
    assert meta["channels"][0] == {
        "driver": "act_tv", "feature": "media__act_tv", "activity": "activity__act_tv", "spend_col": "spend_tv",
        "decay": 0.7, "max_lag": 8,
    }  # fmt: skip
    assert meta["channels"][1]["decay"] == 0.5 and meta["channels"][1]["spend_col"] is None
    assert meta["channels"][1]["activity"] == "activity__act_radio"
    assert [c["kind"] for c in meta["controls"]] == ["control"] + ["seasonality"] * 4 + ["trend"]
    # the regressors: media features and controls, not the raw activity columns
    assert feature_columns(meta) == list(f.columns[4:6]) + list(f.columns[8:])
    assert meta["saturation"] == {"enabled": True, "type": "hill", "K": 0.5, "S": 1.5, "lam": 3.0, "scale": SATURATION_SCALE}
    assert meta["seasonality"] == {"enabled": True, "K": 2, "period": pytest.approx(365.25 / 7)}
    assert meta["trend"] == {"enabled": True}
    assert set(scaler) == {"media", "controls", "trend", "time_origin"}
    assert set(scaler["controls"]["ctrl_price"]) == {"mean", "std"}
    # standardized on the estimation window
    est = f[f["window"] == "estimation"]
    assert est["trend"].mean() == pytest.approx(0, abs=1e-12) and est["trend"].std(ddof=0) == pytest.approx(1)
    assert est["ctrl__ctrl_price"].mean() == pytest.approx(0, abs=1e-12)


def test_media_features_equals_build_features_and_zero_activity_is_zero():
    df, info = make_canonical()
    f, meta, scaler = build_features(df, info, make_spec())
    act = df[DRIVERS].to_numpy()
    np.testing.assert_array_equal(media_features(act, meta, scaler), f[["media__act_tv", "media__act_radio"]].to_numpy())
    zero_tv = act.copy()
    zero_tv[:, 0] = 0.0
    out = media_features(zero_tv, meta, scaler)
    assert np.all(out[:, 0] == 0.0)
    np.testing.assert_array_equal(out[:, 1], f["media__act_radio"].to_numpy())


def test_media_features_is_hill_of_max_scaled_adstock():
    df, info = make_canonical()
    _, meta, scaler = build_features(df, info, make_spec())
    act = df[DRIVERS].to_numpy()
    scaled, feat = media_stages(act, meta, scaler)
    ad = geometric_adstock(act[:, 0], 0.7, 8)
    est = (df["window"] == "estimation").to_numpy()
    np.testing.assert_allclose(scaled[:, 0], ad / ad[est].max())
    assert scaled[est, 0].max() == pytest.approx(1.0)
    np.testing.assert_allclose(feat, hill(scaled, 0.5, 1.5))


def test_saturation_disabled_gives_scaled_adstock():
    df, info = make_canonical()
    fc = make_spec().feature_config.model_dump()
    fc["saturation"]["enabled"] = False
    f, meta, scaler = build_features(df, info, make_spec(feature_config=fc))
    est = f["window"] == "estimation"
    assert f.loc[est, "media__act_tv"].max() == pytest.approx(1.0)


def test_scaling_uses_estimation_rows_only():
    df, info = make_canonical(n_carry=30)
    # a huge burst and an extreme price well before the estimation window (beyond max_lag)
    df.loc[2, "act_tv"] = 1e6
    df.loc[3, "ctrl_price"] = 1e4
    f, meta, scaler = build_features(df, info, make_spec())
    est = (df["window"] == "estimation").to_numpy()
    ad = geometric_adstock(df["act_tv"].to_numpy(), 0.7, 8)
    assert scaler["media"]["act_tv"]["adstock_max"] == pytest.approx(ad[est].max())
    assert scaler["controls"]["ctrl_price"]["mean"] == pytest.approx(df.loc[est, "ctrl_price"].mean())
    assert scaler["controls"]["ctrl_price"]["std"] == pytest.approx(df.loc[est, "ctrl_price"].std(ddof=0))
    # the carryover burst is far beyond the estimation peak, so its feature exceeds Hill(1)
    assert f.loc[2, "media__act_tv"] > hill(np.array([1.0]), 0.5, 1.5)[0]
    # row order of the input does not matter
    f2, _, s2 = build_features(df.iloc[::-1], info, make_spec())
    assert s2 == scaler
    pd.testing.assert_frame_equal(f2, f)


def test_constant_control_and_dark_channel_are_guarded():
    df, info = make_canonical()
    df["ctrl_price"] = 100.0
    df["act_radio"] = 0.0
    f, meta, scaler = build_features(df, info, make_spec())
    assert scaler["controls"]["ctrl_price"]["std"] == 1.0
    assert scaler["media"]["act_radio"]["adstock_max"] == 1.0
    assert (f["media__act_radio"] == 0).all() and (f["ctrl__ctrl_price"] == 0).all()
    assert any("ctrl_price" in n for n in meta["notes"]) and any("act_radio" in n for n in meta["notes"])


def test_month_grain_and_period_override():
    df, info = make_canonical(n_carry=6, n_est=24, grain="MONTH")
    f, meta, _ = build_features(df, info, make_spec(grain="MONTH"))
    assert meta["seasonality"]["period"] == 12.0
    # monthly terms repeat every 12 rows
    np.testing.assert_allclose(f["season__sin1"].iloc[12:].to_numpy(), f["season__sin1"].iloc[:-12].to_numpy(), atol=1e-9)
    fc = make_spec().feature_config.model_dump()
    fc["seasonality"]["period"] = 13.0
    _, meta2, _ = build_features(df, info, make_spec(grain="MONTH", feature_config=fc))
    assert meta2["seasonality"]["period"] == 13.0


def test_disabled_seasonality_and_trend_have_no_columns():
    df, info = make_canonical()
    fc = make_spec().feature_config.model_dump()
    fc["seasonality"]["enabled"] = False
    fc["trend"]["enabled"] = False
    f, meta, scaler = build_features(df, info, make_spec(feature_config=fc))
    assert not any(c.startswith("season__") for c in f.columns) and "trend" not in f.columns
    assert scaler["trend"] is None and [c["kind"] for c in meta["controls"]] == ["control"]


def test_errors_name_the_problem():
    df, info = make_canonical()
    with pytest.raises(ValueError, match="act_radio"):
        build_features(df.drop(columns="act_radio"), info, make_spec())
    bad = df.copy()
    bad.loc[5, "ctrl_price"] = np.nan
    with pytest.raises(ValueError, match="ctrl_price"):
        build_features(bad, info, make_spec())
    with pytest.raises(ValueError, match="estimation"):
        build_features(df.assign(window="carryover"), info, make_spec())
    _, meta, scaler = build_features(df, info, make_spec())
    with pytest.raises(ValueError, match="act_tv"):
        media_features(-np.ones((10, 2)), meta, scaler)
    with pytest.raises(ValueError, match="shape"):
        media_features(np.ones((10, 3)), meta, scaler)


def test_tables():
    df, info = make_canonical()
    f, meta, scaler = build_features(df, info, make_spec())
    tab = channel_settings_table(meta, scaler)
    assert list(tab.index) == DRIVERS
    assert tab.loc["act_radio", "half_life_periods"] == pytest.approx(1.0)
    corr = feature_correlations(f, meta)
    assert list(corr.columns) == feature_columns(meta)
    np.testing.assert_allclose(np.diag(corr.to_numpy()), 1.0)


def test_plots_return_figures():
    from matplotlib.figure import Figure

    from mmm_lib.plots.features import plot_hill_curves, plot_media_transforms, plot_seasonality_trend

    df, info = make_canonical()
    f, meta, scaler = build_features(df, info, make_spec())
    for fig in (
        plot_media_transforms(df, meta, scaler),
        plot_hill_curves(df, meta, scaler),
        plot_seasonality_trend(f, meta),
    ):
        assert isinstance(fig, Figure) and fig.axes
    assert len(plot_hill_curves(df, meta, scaler).axes) == len(DRIVERS)


def test_correlation_heatmap_is_annotated_centred_at_zero_and_labelled():
    from mmm_lib.plots.features import plot_feature_correlations

    df, info = make_canonical()
    f, meta, scaler = build_features(df, info, make_spec())
    cols = feature_columns(meta)
    fig = plot_feature_correlations(f, meta)
    ax = fig.axes[0]
    im = ax.images[0]
    assert im.norm.vmin == -1 and im.norm.vmax == 1 and im.get_cmap().name.startswith("RdBu")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[: len(DRIVERS)] == DRIVERS and not any("__" in x for x in labels)  # readable, no prefixes
    corr = feature_correlations(f, meta).to_numpy()
    texts = [t.get_text() for t in ax.texts if t.get_text()]
    assert len(texts) == len(cols) * (len(cols) - 1)  # every pair annotated, the diagonal left blank
    assert f"{round(corr[0, 1], 2) + 0.0:.2f}" in texts and "-0.00" not in texts
    fig.savefig(io.BytesIO(), format="png")


def test_report_views_format_numbers_for_reading():
    from mmm_lib.features import channel_settings_view, features_headline_view

    df, info = make_canonical()
    f, meta, scaler = build_features(df, info, make_spec())
    scaler["media"]["act_tv"]["adstock_max"] = 851.5303
    scaler["media"]["act_radio"]["adstock_max"] = 2451092.4
    html = channel_settings_view(meta, scaler).to_html()
    assert "851.5" in html and "2,451,092" in html and "e+0" not in html and "&lt;NA&gt;" not in html
    assert ">0<" not in html.replace(" ", "")  # no 0..N index column
    assert "estimation rows" in features_headline_view(f, meta).to_html()

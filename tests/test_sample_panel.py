"""Tests for the multi-entity panel simulator (mmm_lib.sample.simulate_panel) and its known truth.

No model is fitted: these check the data's shape and the truth's arithmetic, recomputing the true
ROI from the noise-free mean and the mean itself from the truth's parameters, independently.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mmm_lib.sample import (
    PANEL_CHANNELS,
    meridian_like_panel,
    panel_expected_sales,
    panel_spec,
    simulate_panel,
    window_labels,
)
from mmm_lib.spec import parse_spec

FORMS = ["multiplicative", "additive"]
FAMILIES = ["hill", "logistic", "michaelis_menten"]


@pytest.fixture(scope="module")
def panel():
    return simulate_panel(seed=5)


def _est_rows(data: pd.DataFrame, truth: dict) -> np.ndarray:
    return (data["period_start"] >= pd.Timestamp(truth["estimation_start"])).to_numpy()


def _manual_expected(truth: dict, data: pd.DataFrame, entity: str) -> np.ndarray:
    """The true mean of one entity, written out from the truth's parameters (not the library's code)."""
    p = truth["params"]
    rows = data[data["entity_id"] == entity].sort_values("period_start")
    T = len(rows)
    t = np.arange(T) / 52.18
    time = p["season_sin"] * np.sin(2 * np.pi * t) + p["season_cos"] * np.cos(2 * np.pi * t) + p["trend_per_year"] * t
    price = rows["ctrl_price_index"].to_numpy()
    media = np.zeros(T)
    family = truth["saturation"]["family"]
    for ch in p["channels"]:
        d = truth["decay"][ch]
        w = d ** np.arange(p["max_lag"])
        w = w / w.sum()
        x = rows[ch].to_numpy() / p["activity_scale"][entity][ch]
        a = np.array([sum(w[lag] * x[s - lag] for lag in range(len(w)) if s - lag >= 0) for s in range(T)])
        sp = truth["saturation"]["params"][ch]
        if family == "hill":
            sat = a ** sp["S"] / (sp["K"] ** sp["S"] + a ** sp["S"])
        elif family == "logistic":
            sat = (1 - np.exp(-sp["lam"] * a)) / (1 + np.exp(-sp["lam"] * a))
        else:
            sat = a / (sp["K"] + a)
        media += p["effect"][entity][ch] * sat
    base = p["base"][entity]
    if truth["form"] == "multiplicative":
        return np.expm1(np.log(base) + time + p["price_coef"] * np.log(price / 100.0) + media)
    return base * (1 + time + p["price_coef"] * (price / 100.0 - 1)) + base * media


# --------------------------------------------------------------------------- data


def test_deterministic():
    a, ta = simulate_panel(seed=3, n_entities=4, n_periods=120)
    b, tb = simulate_panel(seed=3, n_entities=4, n_periods=120)
    pd.testing.assert_frame_equal(a, b)
    assert ta == tb
    c, _ = simulate_panel(seed=4, n_entities=4, n_periods=120)
    assert not a["sales"].equals(c["sales"])


def test_shape_columns_and_dtypes(panel):
    data, truth = panel
    names = list(PANEL_CHANNELS)[:4]
    assert list(data.columns) == ["entity_id", "period_start", "sales", *[f"act_{n}" for n in names],
                                  *[f"spend_{n}" for n in names], "ctrl_price_index"]  # fmt: skip
    assert len(data) == 8 * 156
    assert sorted(data["entity_id"].unique()) == [f"store_{i:03d}" for i in range(1, 9)]
    assert pd.api.types.is_datetime64_any_dtype(data["period_start"])
    dates = pd.DatetimeIndex(data["period_start"].unique())
    assert dates[0] == pd.Timestamp("2022-01-03") and (dates.day_of_week == 0).all()
    assert (np.diff(dates).astype("timedelta64[D]").astype(int) == 7).all()
    assert not data.duplicated(["entity_id", "period_start"]).any()
    acts = [c for c in data.columns if c.startswith("act_")]
    money = ["sales", *[c for c in data.columns if c.startswith("spend_")], "ctrl_price_index"]
    assert all(data[c].dtype == np.int64 for c in acts)
    for c in money:
        assert data[c].dtype == np.float64
        np.testing.assert_allclose(data[c], data[c].round(2), atol=1e-9)
    assert data.notna().all().all()
    assert (data[acts + money] >= 0).all().all()
    assert data["ctrl_price_index"].between(80, 120).all()
    json.dumps(truth, allow_nan=False)  # the truth is JSON-able


def test_entity_sizes_differ_and_scale_sales_and_activity(panel):
    data, truth = panel
    size = pd.Series(truth["entity_size"])
    assert size.nunique() == len(size) and size.max() / size.min() > 2
    by = data.groupby("entity_id")[["sales", "act_search", "spend_search"]].mean()
    for col in by:
        assert by[col].corr(size, method="spearman") > 0.8, col


def test_dark_weeks():
    data, _ = simulate_panel(seed=5, dark_share=0.5)
    always_on = [f"act_{n}" for n, (kind, _) in list(PANEL_CHANNELS.items())[:4] if kind == "always_on"]
    zero_weeks = (data[always_on] == 0).groupby(data["entity_id"]).sum()
    assert (zero_weeks > 0).to_numpy().any()  # some always-on series go dark for a while
    assert (zero_weeks < 156 / 2).to_numpy().all()  # but only for runs of weeks
    clean, _ = simulate_panel(seed=5, dark_share=0.0)
    assert (clean[always_on] > 0).all().all()


def test_spend_is_activity_times_cost(panel):
    data, truth = panel
    for ch in truth["params"]["channels"]:
        spend = data[ch.replace("act_", "spend_")].to_numpy()
        jit = data["entity_id"].map({e: j[ch] for e, j in truth["cost_jitter"].items()}).to_numpy()
        implied = data[ch].to_numpy() * truth["cost_per_unit"][ch] * jit
        assert (spend[data[ch].to_numpy() == 0] == 0).all()
        off = np.abs(spend - implied) > 0.005 + 1e-9
        assert off.sum() <= 1  # whole cents; one cell takes the rounding remainder of the window
        np.testing.assert_allclose(spend, implied, rtol=1e-3, atol=0.01)


def test_forms_share_the_same_activity():
    a, _ = simulate_panel(seed=2, form="multiplicative", saturation="hill")
    b, _ = simulate_panel(seed=2, form="additive", saturation="logistic")
    cols = [c for c in a.columns if c.startswith("act_")] + ["ctrl_price_index"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


# --------------------------------------------------------------------------- truth


def test_zero_effect_channel(panel):
    data, truth = panel
    zero = truth["zero_effect_channel"]
    assert zero == truth["params"]["channels"][-1]
    assert truth["roi"][zero] == 0.0 and truth["incremental"][zero] == 0.0
    assert truth["spend"][zero] > 0 and data[zero.replace("act_", "spend_")].sum() > 0
    assert all(v[zero] == 0.0 for v in truth["entity_roi"].values() if v[zero] is not None)
    _, none = simulate_panel(seed=5, zero_effect_channel=None)
    assert none["zero_effect_channel"] is None and all(r > 0 for r in none["roi"].values())


@pytest.mark.parametrize("form", FORMS)
def test_true_roi_is_incremental_over_spend(form):
    data, truth = simulate_panel(seed=9, form=form, n_entities=5)
    est = _est_rows(data, truth)
    expected = panel_expected_sales(truth, data)
    for ch in truth["params"]["channels"]:
        cf = panel_expected_sales(truth, data.assign(**{ch: 0}))
        assert (cf.to_numpy() <= expected.to_numpy() + 1e-9).all()
        incremental = float((expected - cf)[est].sum())
        spend = float(data.loc[est, ch.replace("act_", "spend_")].sum())
        assert incremental == pytest.approx(truth["incremental"][ch], rel=1e-9, abs=1e-9)
        assert spend == pytest.approx(truth["spend"][ch], rel=1e-12)
        assert incremental / spend == pytest.approx(truth["roi"][ch], rel=1e-9, abs=1e-12)
        # per entity too, and the entity ROIs add up to the total
        by_entity = pd.Series((expected - cf)[est]).groupby(data.loc[est, "entity_id"]).sum()
        spend_e = data.loc[est].groupby("entity_id")[ch.replace("act_", "spend_")].sum()
        for e, r in truth["entity_roi"].items():
            assert r[ch] == pytest.approx(by_entity[e] / spend_e[e], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("family", FAMILIES)
def test_expected_sales_match_the_stated_process(form, family):
    data, truth = simulate_panel(seed=1, n_entities=3, n_periods=80, form=form, saturation=family,
                                 windows={"carryover_months": 3, "estimation_months": 12})  # fmt: skip
    assert truth["form"] == form and truth["saturation"]["family"] == family
    expected = panel_expected_sales(truth, data)
    for e in truth["params"]["entities"]:
        mine = _manual_expected(truth, data, e)
        np.testing.assert_allclose(expected[data["entity_id"] == e].to_numpy(), mine, rtol=1e-10)
    # sales are the mean plus a little noise
    ratio = data["sales"] / expected
    assert abs(ratio.median() - 1) < 0.03 and ratio.std() < 0.15


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("family", FAMILIES)
def test_calibration_hits_target_roi(form, family):
    _, truth = simulate_panel(seed=11, form=form, saturation=family)
    zero = truth["zero_effect_channel"]
    for ch, target in truth["target_roi"].items():
        if ch == zero:
            assert target == 0.0 and truth["roi"][ch] == 0.0
        else:
            assert 0.3 <= target <= 4.0
            assert abs(truth["roi"][ch] / target - 1) < 1e-6
    assert 0.05 <= truth["media_share"] <= 0.30


def test_given_target_roi_and_decays():
    _, truth = simulate_panel(seed=0, n_channels=3, decays=[0.0, 0.3, 0.9],
                              target_roi={"act_tv": 2.5, "act_search": 0.4}, zero_effect_channel=None)  # fmt: skip
    assert truth["decay"] == {"act_tv": 0.0, "act_search": 0.3, "act_social": 0.9}
    assert truth["roi"]["act_tv"] == pytest.approx(2.5, rel=1e-6)
    assert truth["roi"]["act_search"] == pytest.approx(0.4, rel=1e-6)
    assert truth["roi"]["act_social"] == pytest.approx(truth["target_roi"]["act_social"], rel=1e-6)


def test_drawn_parameters_avoid_the_spec_defaults():
    for seed in range(5):
        _, t = simulate_panel(seed=seed, n_channels=8, saturation="hill")
        for ch, d in t["decay"].items():
            assert 0.1 <= d <= 0.8 and abs(d - 0.5) >= 0.1
            k, s = t["saturation"]["params"][ch]["K"], t["saturation"]["params"][ch]["S"]
            assert 0.2 <= k <= 0.9 and abs(k - 0.5) >= 0.1 and 0.7 <= s <= 2.5 and abs(s - 1.0) >= 0.15
        _, t = simulate_panel(seed=seed, saturation="logistic")
        assert all(1.0 <= p["lam"] <= 6.0 for p in t["saturation"]["params"].values())
        _, t = simulate_panel(seed=seed, saturation="michaelis_menten")
        assert all(0.1 <= p["K"] <= 1.0 for p in t["saturation"]["params"].values())


def test_estimation_window_follows_the_suite_rule():
    windows = {"carryover_months": 3, "estimation_months": 12}
    data, truth = simulate_panel(seed=0, windows=windows)
    assert truth["windows"] == windows
    dates = pd.DatetimeIndex(sorted(data["period_start"].unique()))
    labels = window_labels(dates, parse_spec(panel_spec(truth)))
    assert truth["estimation_start"] == dates[labels == "estimation"][0].strftime("%Y-%m-%d")
    assert 50 <= (labels == "estimation").sum() <= 53
    _, default = simulate_panel(seed=0)
    assert default["estimation_start"] < truth["estimation_start"]


# --------------------------------------------------------------------------- wrappers


def test_meridian_like_panel_shape():
    data, truth = meridian_like_panel()
    assert data["entity_id"].nunique() == 20 and data["period_start"].nunique() == 156
    assert sorted(data["entity_id"].unique())[:2] == ["geo_00", "geo_01"]
    assert len([c for c in data.columns if c.startswith("act_")]) == 4
    assert set(truth["entity_size"]) == set(data["entity_id"])


def test_panel_spec():
    data, truth = simulate_panel(seed=0, n_channels=3, windows={"carryover_months": 3, "estimation_months": 18})
    raw = panel_spec(truth, draws=200)
    assert raw["data_path"] == "panel.csv" and raw["grain"] == "WEEK" and raw["target_col"] == "sales"
    assert raw["drivers"] == ["act_tv", "act_search", "act_social"]
    assert raw["controls"] == ["ctrl_price_index"]
    assert raw["windows"] == {"carryover_months": 3, "estimation_months": 18} and raw["draws"] == 200
    spec = parse_spec(raw)
    assert spec.drivers == raw["drivers"]
    from_frame = panel_spec(data, dataset_id="abc")
    assert from_frame["drivers"] == raw["drivers"] and "data_path" not in from_frame
    assert from_frame["windows"] == {"carryover_months": 6, "estimation_months": 24}
    with pytest.raises(ValueError, match="panel_spec"):
        panel_spec([1, 2])
    with pytest.raises(ValueError, match="draws"):
        panel_spec(truth, draws=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"form": "log"}, "form is 'log'"),
        ({"saturation": "tanh"}, "saturation is 'tanh'"),
        ({"n_channels": 9}, "n_channels is 9"),
        ({"n_channels": 0}, "n_channels is 0"),
        ({"decays": [0.5, 0.5]}, "decays has 2 values"),
        ({"decays": [0.5, 1.0, 0.2, -0.1]}, r"decays \[1.0, -0.1\] are outside \[0, 1\)"),
        ({"zero_effect_channel": 4}, "zero_effect_channel is 4"),
        ({"dark_share": 1.5}, "dark_share is 1.5"),
        ({"n_entities": 0}, "n_entities is 0"),
        ({"n_periods": 10}, "n_periods is 10"),
        ({"windows": {"carryover_months": 0, "estimation_months": 1}}, "estimation weeks"),
        ({"start": "2022-01-04"}, "start is 2022-01-04, a Tuesday"),
        ({"max_lag": 0}, "max_lag is 0"),
        ({"noise_sd": -1.0}, "noise_sd is -1.0"),
        ({"target_roi": {"act_nope": 1.0}}, "target_roi names"),
        ({"target_roi": {"act_tv": -1.0}}, "target_roi"),
        ({"target_roi": {"act_radio": 2.0}}, "zero_effect_channel"),
        ({"windows": {"estimation_months": 0}}, "windows"),
        ({"entity_ids": ["a", "a"], "n_entities": 2}, "entity_ids"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_panel(**kwargs)

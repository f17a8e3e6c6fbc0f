"""Tests for mmm_lib.sample: the known-truth generator and the bundled sample data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmm_lib.canonicalize import canonicalize
from mmm_lib.features import build_features
from mmm_lib.sample import COLUMNS, default_spec, generate_sample, true_contribution, true_roi, write_sample
from mmm_lib.spec import load_spec

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "params" / "example.yaml"
CHANNELS = ["act_tv", "act_digital", "act_radio"]


def brand_spec():
    """The example spec at brand level: the generator's truth series are the brand's (entities summed)."""
    spec = load_spec(EXAMPLE)
    return spec.model_copy(update={"model": spec.model.model_copy(update={"level": "brand"})})


@pytest.fixture(scope="module")
def sample():
    return generate_sample(n_entities=4, n_periods=120, seed=3)


def _brand(data: pd.DataFrame) -> pd.DataFrame:
    money = ["sales", "spend_tv", "spend_digital", "spend_radio"]
    cents = data.assign(**{c: (data[c] * 100).round().astype("int64") for c in money})
    g = cents.groupby("period_start")
    out = g[money + CHANNELS].sum()
    out["ctrl_price_index"] = g["ctrl_price_index"].mean()
    return out


def test_seed_format(sample):
    data, _ = sample
    assert list(data.columns) == COLUMNS
    assert sorted(data["entity_id"].unique()) == ["store_001", "store_002", "store_003", "store_004"]
    dates = pd.to_datetime(data["period_start"].unique())
    assert dates[0] == pd.Timestamp("2022-01-03") and len(dates) == 120
    assert (dates.day_of_week == 0).all() and (np.diff(dates).astype("timedelta64[D]").astype(int) == 7).all()
    assert data.notna().all().all() and (data[CHANNELS] >= 0).all().all()
    # money is in whole cents
    for c in ["sales", "spend_tv", "spend_digital", "spend_radio", "ctrl_price_index"]:
        np.testing.assert_allclose(data[c], data[c].round(2), atol=1e-9)


def test_store_sums_equal_brand_series_exactly(sample):
    data, truth = sample
    b = _brand(data)
    s = truth["series"]
    assert list(b.index) == s["period_start"]
    np.testing.assert_array_equal(b["sales"], np.round(np.asarray(s["sales"]) * 100).astype("int64"))
    for ch in CHANNELS:
        np.testing.assert_array_equal(b[ch], np.asarray(s["activity"][ch]).astype("int64"))
        spend = ch.replace("act_", "spend_")
        np.testing.assert_array_equal(b[spend], np.round(np.asarray(s["spend"][ch]) * 100).astype("int64"))
    np.testing.assert_allclose(b["ctrl_price_index"], s["price_index"], atol=1e-9)


def test_spend_only_with_activity(sample):
    data, _ = sample
    for ch in CHANNELS:
        spend = data[ch.replace("act_", "spend_")]
        assert (spend[data[ch] == 0] == 0).all()
    # flighting: TV and radio have dark weeks, digital is always on
    s = sample[1]["series"]["activity"]
    assert (np.asarray(s["act_tv"]) == 0).mean() > 0.2
    assert (np.asarray(s["act_radio"]) == 0).mean() > 0.4
    assert (np.asarray(s["act_digital"]) > 0).all()


def test_deterministic_for_a_seed(sample):
    again, truth = generate_sample(n_entities=4, n_periods=120, seed=3)
    pd.testing.assert_frame_equal(again, sample[0])
    assert truth == sample[1]
    other, _ = generate_sample(n_entities=4, n_periods=120, seed=4)
    assert not other["sales"].equals(sample[0]["sales"])


def test_truth_roi_recomputed_from_stored_series(tmp_path):
    csv, js = write_sample(tmp_path / "s.csv", tmp_path / "s_truth.json", n_entities=2, n_periods=110, seed=5)
    truth = json.loads(js.read_text())
    start = truth["windows"]["estimation_start"]
    s = truth["series"]
    m = pd.to_datetime(s["period_start"]) >= pd.Timestamp(start)
    for ch in CHANNELS:
        contrib = (np.asarray(s["expected_sales"]) - np.asarray(s["counterfactual_sales"][ch]))[m].sum()
        roi = contrib / np.asarray(s["spend"][ch])[m].sum()
        assert truth["roi"][ch] == pytest.approx(roi, rel=1e-12)
        assert truth["contribution"][ch] == pytest.approx(contrib, rel=1e-12)
    assert true_roi(truth, start) == pytest.approx(truth["roi"], rel=1e-12)
    assert true_contribution(truth, start) == pytest.approx(truth["contribution"], rel=1e-12)
    # a later window start gives a different (still recomputable) ROI
    later = true_roi(truth, pd.Timestamp(start) + pd.Timedelta(weeks=10))
    assert later != truth["roi"]
    with pytest.raises(ValueError, match="no periods"):
        true_roi(truth, "2099-01-01")
    assert len(pd.read_csv(csv)) == 2 * 110


def test_truth_matches_the_spec_and_targets():
    data, truth = generate_sample()
    p = truth["params"]
    assert p["decay"] == {"act_tv": 0.7, "act_digital": 0.3, "act_radio": 0.5}
    assert p["max_lag"] == 13 and p["saturation"] == {"enabled": True, "K": 0.5, "S": 1.0}
    # clearly different ROIs, close to the calibration targets
    for ch, target in truth["target_roi"].items():
        assert truth["roi"][ch] == pytest.approx(target, rel=0.05)
    assert truth["roi"]["act_digital"] > 2 * truth["roi"]["act_tv"] > 4 * truth["roi"]["act_radio"]
    assert 0.10 <= sum(truth["media_share"].values()) <= 0.25
    # counterfactuals are below expected sales: media only add
    s = truth["series"]
    for ch in CHANNELS:
        assert (np.asarray(s["counterfactual_sales"][ch]) <= np.asarray(s["expected_sales"]) + 1e-9).all()


def test_default_spec_is_the_example_spec():
    ex, d = load_spec(EXAMPLE), default_spec()
    assert d.feature_config == ex.feature_config and d.windows == ex.windows
    assert d.drivers == ex.drivers and d.controls == ex.controls and d.grain == ex.grain


def test_pipeline_features_reproduce_the_true_features():
    """canonicalize + build_features on the generated CSV give exactly the truth's media features."""
    spec = brand_spec()
    data, truth = generate_sample(spec=spec, n_entities=3, seed=11)
    canonical, info = canonicalize(data, spec)
    f, meta, scaler = build_features(canonical, info, spec)
    est = f[f["window"] == "estimation"].reset_index(drop=True)
    assert est["period_start"].iloc[0] == pd.Timestamp(truth["windows"]["estimation_start"])
    series = pd.DataFrame({"period_start": pd.to_datetime(truth["series"]["period_start"]),
                           **truth["series"]["media_feature"]})  # fmt: skip
    merged = est.merge(series, on="period_start", validate="one_to_one")
    assert len(merged) == len(est)
    for ch in CHANNELS:
        np.testing.assert_allclose(merged[f"media__{ch}"], merged[ch], rtol=1e-12)
        assert scaler["media"][ch]["adstock_max"] == pytest.approx(truth["feature_scaler"]["media"][ch]["adstock_max"])
    # the truth's ROI for the pipeline's window is the stored one
    assert true_roi(truth, info["windows"]["estimation_start"]) == pytest.approx(truth["roi"])


def test_least_squares_recovers_the_true_coefficients():
    """The process is the baseline model: OLS of log1p(brand sales) on the features recovers it."""
    spec = brand_spec()
    data, truth = generate_sample(spec=spec, seed=7, sigma=0.01)
    canonical, info = canonicalize(data, spec)
    f, meta, _ = build_features(canonical, info, spec)
    est = f[f["window"] == "estimation"]
    cols = [c["feature"] for c in meta["channels"]] + [c["feature"] for c in meta["controls"]]
    X = np.column_stack([np.ones(len(est)), est[cols].to_numpy()])
    coef, *_ = np.linalg.lstsq(X, np.log1p(est["target"].to_numpy()), rcond=None)
    got = dict(zip(["const", *cols], coef))
    assert got["const"] == pytest.approx(truth["params"]["const"], abs=0.02)
    for ch in CHANNELS:
        assert got[f"media__{ch}"] == pytest.approx(truth["params"]["beta"][ch], abs=0.02)
    for c in meta["controls"]:
        assert got[c["feature"]] == pytest.approx(truth["params"]["gamma"][c["name"]], abs=0.01)


def test_bundled_sample_is_reproducible(tmp_path):
    """data/mmm_sample_small.csv and its truth are what write_sample makes from the example spec."""
    csv, js = write_sample(tmp_path / "s.csv", tmp_path / "t.json", spec=load_spec(EXAMPLE))
    # tolerances only absorb last-digit libm differences between machines (a cent at most)
    pd.testing.assert_frame_equal(pd.read_csv(csv), pd.read_csv(REPO / "data" / "mmm_sample_small.csv"),
                                  check_exact=False, atol=0.011, rtol=0)  # fmt: skip
    new, bundled = json.loads(js.read_text()), json.loads((REPO / "data" / "mmm_sample_small_truth.json").read_text())
    assert new.keys() == bundled.keys()
    assert new["params"]["beta"] == bundled["params"]["beta"] and new["params"]["gamma"] == bundled["params"]["gamma"]
    assert new["params"]["target_center"] == pytest.approx(bundled["params"]["target_center"], rel=1e-9)
    assert new["roi"] == pytest.approx(bundled["roi"], rel=1e-6)
    assert new["windows"] == bundled["windows"] and new["spec"] == bundled["spec"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="Monday"):
        generate_sample(start="2022-01-04")
    with pytest.raises(ValueError, match="WEEK"):
        generate_sample(spec={"grain": "MONTH", "drivers": CHANNELS})
    with pytest.raises(ValueError, match="likelihood"):
        generate_sample(likelihood="cauchy")


def test_truth_follows_a_different_spec():
    fc = default_spec().feature_config.model_dump()
    fc["seasonality"]["enabled"] = False
    fc["saturation"]["enabled"] = False
    fc["adstock"]["per_channel"] = {"act_tv": 0.2}
    _, truth = generate_sample(n_entities=2, n_periods=100, spec={"feature_config": fc}, likelihood="studentt", nu=5)
    p = truth["params"]
    assert set(p["gamma"]) == {"ctrl_price_index", "trend"}
    assert p["decay"]["act_tv"] == 0.2 and p["saturation"]["enabled"] is False
    assert p["likelihood"] == "studentt" and p["nu"] == 5.0
    est = np.asarray(truth["series"]["window"]) == "estimation"
    # without saturation the media feature is the max-scaled adstock: peak exactly 1 in the window
    assert max(np.asarray(truth["series"]["media_feature"]["act_tv"])[est]) == pytest.approx(1.0)

"""Chronological holdout: the last N estimation periods are predicted, not fitted, and scored.

Also the model-checking groups 04_fit stores (log-likelihood, posterior predictive, predictions) and a
misspecified model (no seasonality on seasonal data) losing to the right one on LOO and on holdout.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytest

from mmm_lib import checks
from mmm_lib.canonicalize import canonicalize, window_table
from mmm_lib.pipeline import run_in_process
from mmm_lib.sample import panel_spec, simulate_panel
from mmm_lib.spec import RunSpec, SpecError, parse_spec

HOLDOUT = 13


def _spec(truth: dict, **kw) -> RunSpec:
    windows = {**truth["windows"], "holdout_periods": kw.pop("holdout", HOLDOUT)}
    return RunSpec.model_validate(panel_spec(truth, windows=windows, **kw))


@pytest.fixture(scope="module")
def seasonal_panel():
    return simulate_panel(n_entities=3, n_periods=140, n_channels=2, seed=7)


# ------------------------------------------------------------------------------ windows


def test_last_estimation_periods_are_held_out_in_order(seasonal_panel):
    df, truth = seasonal_panel
    spec = _spec(truth, model={"level": "entity"})
    can, info = canonicalize(df, spec)
    w = info["windows"]
    per_entity = can[can["entity_id"] == can["entity_id"].iloc[0]]
    labels = per_entity["window"].tolist()
    # carryover, then estimation, then exactly the last 13 periods held out: chronological, never random
    assert labels[-HOLDOUT:] == ["holdout"] * HOLDOUT
    assert "holdout" not in labels[:-HOLDOUT]
    assert labels.index("estimation") > 0 and labels[-HOLDOUT - 1] == "estimation"
    assert w["n_holdout"] == HOLDOUT and w["first_holdout_period"] == str(per_entity["period_start"].iloc[-HOLDOUT].date())
    table = window_table(info).set_index("window")
    assert table.loc["holdout", "periods"] == HOLDOUT
    assert "holdout excluded" in table.loc["estimation", "used for"]


def test_holdout_off_by_default_and_too_long_holdout_is_refused(seasonal_panel):
    df, truth = seasonal_panel
    assert RunSpec.model_validate(panel_spec(truth)).windows.holdout_periods == 0
    with pytest.raises(ValueError, match=r"windows.holdout_periods is 100 .* Lower windows.holdout_periods"):
        canonicalize(df, _spec(truth, holdout=100))
    with pytest.raises(SpecError, match="holdout_periods"):
        parse_spec(panel_spec(truth, windows={**truth["windows"], "holdout_periods": -1}))


# ------------------------------------------------------------------------------ fitted runs


@pytest.fixture(scope="module")
def fits(seasonal_panel):
    """The same brand-level baseline model with and without seasonality, 13 periods held out."""
    df, truth = seasonal_panel
    out = {}
    for name, season in (("right", True), ("no_season", False)):
        fc = {"seasonality": {"enabled": season, "K": 2}}
        spec = _spec(truth, draws=300, tune=300, feature_config=fc, nuts_sampler="pymc")
        out[name] = run_in_process(df, spec)
    return out


def test_fit_stores_log_likelihood_and_predictive_groups(fits):
    res = fits["right"]
    idata = res.fit["idata"]
    d = res.fit["model"].data
    n_draws = idata["posterior"].sizes["chain"] * idata["posterior"].sizes["draw"]
    assert idata["log_likelihood"]["z"].shape[-1] == len(d.periods)
    assert idata["posterior_predictive"]["z"].shape[-1] == len(d.periods)
    assert idata["predictions"]["z_holdout"].shape[-1] == HOLDOUT
    # the held-out observations are not in the fitted data
    assert not set(pd.to_datetime(d.holdout_periods)) & set(pd.to_datetime(d.periods))
    np.testing.assert_allclose(idata["predictions_constant_data"]["z_holdout_observed"].values, d.holdout_z[0])
    # the pointwise log-likelihood (model object + its likelihood, all draws at once) is the PyMC graph's own
    ref = pm.compute_log_likelihood(idata, model=res.fit["model"].build(), extend_inferencedata=False, progressbar=False)
    np.testing.assert_allclose(idata["log_likelihood"]["z"].values, ref["z"].values, rtol=1e-10, atol=1e-10)
    # replicated data scatter like the data: noise included, not just parameter uncertainty
    rep_sd = float(idata["posterior_predictive"]["z"].std(("chain", "draw")).mean())
    assert rep_sd == pytest.approx(float(idata["posterior"]["sigma"].mean()), rel=0.25)


def test_holdout_metrics_in_fit_metrics_and_fitted_rows(fits):
    res = fits["right"]
    fm = res.contributions.fit_metrics
    ho = fm["holdout"]
    assert ho["periods"] == HOLDOUT and ho["brand"]["n_obs"] == HOLDOUT and ho["entity"] is None
    for k in ("mape", "rmse", "crps", "coverage_50", "coverage_90"):
        assert np.isfinite(ho["brand"][k])
    assert ho["brand"]["coverage_90"] >= 0.6  # a right model's 90% band covers most held-out weeks
    fitted = res.contributions.fitted
    assert (fitted["window"] == "holdout").sum() == HOLDOUT
    assert fitted["predicted_low"].notna().all()
    assert (fitted["predicted_high"] - fitted["predicted_low"] > fitted["fitted_high"] - fitted["fitted_low"]).all()
    # ROI stays on the fitted window: spend of the held-out weeks is not in it
    assert res.contributions.summary["window"]["n_periods"] == len(res.fit["model"].data.periods)


def test_misspecified_model_loses_on_loo_and_on_holdout(fits):
    right, wrong = fits["right"], fits["no_season"]
    cmp = az.compare({"right": right.fit["idata"], "no_season": wrong.fit["idata"]})
    assert cmp.index[0] == "right"
    # ArviZ 1 reports elpd_diff as (this model - best), so the loser's is negative
    diff, dse = float(cmp.loc["no_season", "elpd_diff"]), float(cmp.loc["no_season", "dse"])
    assert -diff > 2 * dse, (diff, dse)
    h_right = right.contributions.fit_metrics["holdout"]["brand"]
    h_wrong = wrong.contributions.fit_metrics["holdout"]["brand"]
    assert h_right["crps"] < h_wrong["crps"]
    assert h_right["mape"] < h_wrong["mape"]


def test_crps_matches_its_definition():
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(400, 3))
    y = np.array([0.0, 1.0, -2.0])
    x = draws
    direct = np.mean(np.abs(x - y).mean(axis=0) - 0.5 * np.abs(x[:, None, :] - x[None, :, :]).mean(axis=(0, 1)))
    assert checks.crps(y, draws) == pytest.approx(direct, rel=1e-10)
    assert checks.crps(y, draws + 5) > checks.crps(y, draws)  # a biased forecast scores worse

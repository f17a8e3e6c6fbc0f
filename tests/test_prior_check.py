"""Tests for mmm_lib.prior_check: the prior predictive check of 04_fit on hand-built prior draws (no sampling)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from mmm_lib.prior_check import IN_RANGE_MIN, prior_predictive_check

ENTITIES = ["store_a", "store_b"]
CENTRES = {"store_a": 10.0, "store_b": 9.0}


def make_fit(prior_sd: float, prior_shift: float = 0.0, entities: list[str] | None = ENTITIES, n_periods: int = 52) -> xr.DataTree:
    """observed_data z (sd 0.1) and a prior_predictive z with ``prior_sd`` on the log-sales scale.

    Brand-level layout when ``entities`` is None: observed ``(period,)``, prior with an ``entity``
    dim of length 1 named ``brand`` (as ``pm.sample_prior_predictive`` on the brand model writes it).
    """
    rng = np.random.default_rng(0)
    periods = pd.date_range("2023-01-02", periods=n_periods, freq="W-MON")
    ents = entities or ["brand"]
    obs = rng.normal(0, 0.1, (len(ents), n_periods))
    prior = rng.normal(prior_shift, prior_sd, (1, 500, len(ents), n_periods))
    coords = {"period": periods, "entity": ents}
    obs_ds = (xr.Dataset({"z": (("entity", "period"), obs)}, coords=coords) if entities
              else xr.Dataset({"z": (("period",), obs[0])}, coords={"period": periods}))  # fmt: skip
    return xr.DataTree.from_dict({
        "observed_data": obs_ds,
        "prior_predictive": xr.Dataset({"z": (("chain", "draw", "entity", "period"), prior)}, coords=coords),
    })  # fmt: skip


def meta(entities: list[str] | None = ENTITIES) -> dict:
    return {"target_centers": CENTRES if entities else {"brand": 11.0}}


def test_priors_of_the_datas_order_of_magnitude_pass():
    res = prior_predictive_check(make_fit(prior_sd=0.8), meta())
    assert res["passed"] is True
    f = res["findings"][0]
    assert f["code"] == "PRIOR_PREDICTIVE_OK" and f["severity"] == "info"
    assert res["share_in_range"] > 0.9 and res["n_draws"] == 500
    assert set(res["entities"]) == set(ENTITIES)
    e = res["entities"]["store_a"]
    assert e["low"] == pytest.approx(e["observed_min"] / 10) and e["high"] == pytest.approx(e["observed_max"] * 10)
    json.dumps(res, allow_nan=False)


def test_priors_orders_of_magnitude_too_wide_warn_with_a_remedy():
    # log-sales sd 8: most draws are beyond ×10 (2.3 in logs) of the data
    res = prior_predictive_check(make_fit(prior_sd=8.0), meta())
    assert res["passed"] is False and res["share_in_range"] < IN_RANGE_MIN
    f = res["findings"][0]
    assert f["code"] == "PRIOR_PREDICTIVE_WIDE" and f["severity"] == "warning"
    assert "model.priors" in f["remedy"]
    assert f"{100 * res['share_in_range']:.0f}%" in f["message"]


def test_priors_far_too_high_say_so():
    res = prior_predictive_check(make_fit(prior_sd=0.5, prior_shift=6.0), meta())  # ~400× the observed sales
    assert res["passed"] is False and res["share_above"] > 0.9 and res["share_below"] == 0.0
    assert "above (far larger sales)" in res["findings"][0]["message"]


def test_huge_prior_draws_do_not_overflow():
    res = prior_predictive_check(make_fit(prior_sd=500.0), meta())  # exp(z) would overflow: the check stays in logs
    assert res["passed"] is False and 0.0 <= res["share_in_range"] < 0.05
    assert res["share_in_range"] + res["share_below"] + res["share_above"] == pytest.approx(1.0)


def test_brand_level_layout():
    res = prior_predictive_check(make_fit(prior_sd=0.8, entities=None), meta(None))
    assert res["passed"] is True and list(res["entities"]) == ["brand"]
    assert "of each store/geo" not in res["findings"][0]["message"]


def test_missing_groups_or_centres_are_reported_not_raised():
    no_prior = xr.DataTree.from_dict({"observed_data": make_fit(0.8)["observed_data"].to_dataset()})
    res = prior_predictive_check(no_prior, meta())
    assert res["passed"] is None and res["share_in_range"] is None
    assert res["findings"][0]["code"] == "PRIOR_PREDICTIVE_NOT_RUN" and res["findings"][0]["severity"] == "info"
    assert prior_predictive_check(make_fit(0.8), {})["passed"] is None
    with pytest.raises(ValueError, match="factor"):
        prior_predictive_check(make_fit(0.8), meta(), factor=1.0)

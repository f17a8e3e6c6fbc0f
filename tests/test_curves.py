"""Tests for mmm_lib.curves: response curves are the model's own counterfactual, in spend units."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from mmm_lib import contributions as contrib  # noqa: E402
from mmm_lib.curves import curve_table, response_curves, spend_by_channel  # noqa: E402
from mmm_lib.model import posterior_draws  # noqa: E402
from mmm_lib.plots.contributions import plot_response_curves  # noqa: E402
from test_contributions import make_inputs  # noqa: E402


@pytest.fixture(scope="module")
def curves_and_roi():
    inputs = make_inputs(n_draws=50)
    res = contrib.compute_contributions(**inputs)
    keys = ("features_df", "feature_metadata", "feature_scaler", "model_metadata")
    mmm = contrib.model_for(*(inputs[k] for k in keys))
    return response_curves(mmm, posterior_draws(inputs["idata"]), spend_by_channel(res.roi)), res.roi


def test_curve_at_observed_spend_is_the_roi_numerator(curves_and_roi):
    curves, roi = curves_and_roi
    for row in roi["channels"]:
        g = curves[curves["channel"] == row["channel"]]
        at1 = g[g["multiplier"] == 1.0].iloc[0]
        assert at1["spend"] == pytest.approx(row["spend"])
        assert at1["incremental"] == pytest.approx(row["contribution"], rel=1e-9)
        assert at1["roi"] == pytest.approx(row["roi"], rel=1e-9)
        at0 = g[g["multiplier"] == 0.0].iloc[0]
        assert at0["incremental"] == 0.0 and at0["spend"] == 0.0


def test_curves_rise_and_flatten_with_spend(curves_and_roi):
    curves, _ = curves_and_roi
    for _, g in curves.groupby("channel"):
        inc = g.sort_values("multiplier")["incremental"].to_numpy()
        assert np.all(np.diff(inc) >= -1e-9), "more activity never loses sales (non-negative effects)"
        m = g.sort_values("multiplier")["marginal_roi"].to_numpy()
        assert m[-1] < m[1], "saturation: the last unit returns less than the first"
        assert (g["incremental_low"] <= g["incremental"] + 1e-9).all() and (g["incremental"] <= g["incremental_high"] + 1e-9).all()


def test_channels_without_spend_have_no_curve_and_table_reads_at_observed_spend(curves_and_roi):
    curves, roi = curves_and_roi
    assert set(curves["channel"]) == {c["channel"] for c in roi["channels"]}  # act_radio has no spend column
    t = curve_table(curves)
    assert list(t.columns) == ["spend", "marginal ROI at current spend", "marginal ROI falls below 1 from spend"]
    tv = next(r for r in roi["channels"] if r["channel"] == "act_tv")
    assert t.loc["TV", "spend"] == f"{tv['spend']:,.0f}"  # display names, thousands separators
    assert "e+" not in t.to_string()
    assert plot_response_curves(curves) is not None

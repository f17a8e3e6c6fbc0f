"""Tests for mmm_lib.optimize: the horizon, the plan model and its gradient, the optimizer, curves and scenarios.

No sampling: the model is evaluated at a few parameter points drawn around the graph's initial point
(``test_model._graph_points``), standing in for posterior draws. What is checked is what holds for any
posterior: the compiled gradient is the derivative of the numpy objective, the optimum satisfies the
budget, the bounds and the equal-marginal-ROI condition, infeasible bounds are refused by name, the same
seed gives the same answer, and scenarios refuse bad rows naming the line.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmm_lib.canonicalize import canonicalize
from mmm_lib.features import build_features, calendar_features
from mmm_lib.model import from_artifacts
from mmm_lib.optimize.allocate import InfeasibleBounds, build_problem, check_feasible, common_marginal, on_bound, solve
from mmm_lib.optimize.curves import breakeven_spend, response_curves
from mmm_lib.optimize.horizon import build_horizon
from mmm_lib.optimize.plan import PlanModel
from mmm_lib.optimize.recommend import PlanContext, recommend
from mmm_lib.optimize.scenario import ScenarioError, forecast, read_scenario, scenario_spend
from mmm_lib.optimize.stage import settings_for
from mmm_lib.sample import panel_spec, simulate_panel
from mmm_lib.spec import OptimizeConfig, SpecError, parse_spec

from test_model import _graph_points

H = 8


@pytest.fixture(scope="module", params=[("learned", "entity"), ("fixed", "brand")], ids=["learned_entity", "fixed_brand"])
def ctx(request):
    transforms, level = request.param
    data, truth = simulate_panel(n_entities=3, n_periods=90, n_channels=3, seed=5, zero_effect_channel=None,
                                 windows={"carryover_months": 3, "estimation_months": 12})  # fmt: skip
    raw = {**panel_spec(truth), "model": {"transforms": transforms, "level": level},
           "feature_config": {"adstock": {"max_lag": 6}, "saturation": {"K": 0.4, "S": 1.0}, "seasonality": {"K": 1}}}  # fmt: skip
    spec = parse_spec(raw, check_path=False)
    can, info = canonicalize(data, spec)
    feats, meta, scaler = build_features(can, info, spec)
    mmm = from_artifacts(feats, meta, scaler, spec.model)
    _, _, draws, _ = _graph_points(mmm, n=4, seed=11)
    # stand-ins for a posterior: positive channel effects, so every channel has a concave, rising response
    for k in ("beta", "beta_entity"):
        if k in draws:
            draws[k] = np.abs(draws[k]) * 0.2 + 0.05
    if "hill_slope" in draws:
        draws["hill_slope"] = np.full_like(draws["hill_slope"], 0.9)
    horizon = build_horizon(mmm, can, info, feats, H)
    return PlanContext(mmm, horizon, PlanModel(mmm, draws, horizon, 200)), can, info, feats


def test_horizon_follows_the_data_and_keeps_the_current_plan(ctx):
    c, can, info, feats = ctx
    h = c.horizon
    last = pd.to_datetime(can["period_start"]).max()
    assert h.periods[0] == last + pd.Timedelta(weeks=1) and len(h.periods) == H
    assert len(h.tail_periods) == c.mmm.max_lag - 1
    # the current plan is the last H periods' spend, per entity and channel
    rows = can.sort_values(["entity_id", "period_start"]).groupby("entity_id").tail(H)
    for j, ch in enumerate(h.channels):
        col = info["spend"][ch]
        np.testing.assert_allclose(h.current[:, j].sum(), rows[col].sum(), rtol=1e-12)
    # laying the current totals out gives back per-period spend summing to them
    np.testing.assert_allclose(h.laid_out(h.current).sum(axis=1), h.current, rtol=1e-10)
    # no planned spend: only history's carryover; the window's history rows are the data's last activity
    np.testing.assert_array_equal(h.activity(np.zeros_like(h.current))[:, : h.n_history], c.mmm.data.activity[:, -h.n_history :])


def test_calendar_controls_continue_the_fitted_ones(ctx):
    c, _, _, feats = ctx
    meta, scaler = c.mmm.feature_metadata, c.mmm.feature_scaler
    cal = calendar_features(feats["period_start"], meta, scaler)
    for col, values in cal.items():
        np.testing.assert_allclose(values, feats[col].to_numpy(), rtol=1e-12, atol=1e-12)


def test_plan_with_no_spend_adds_nothing_and_more_spend_adds_sales(ctx):
    c, *_ = ctx
    pm, h = c.model, c.horizon
    np.testing.assert_allclose(pm.incremental(np.zeros_like(h.current)), 0.0, atol=1e-9)
    base = pm.incremental(h.current).mean()
    assert base > 0
    assert pm.incremental(h.current * 1.5).mean() > base


def test_compiled_objective_and_gradient_are_the_numpy_models(ctx):
    c, *_ = ctx
    pm, h = c.model, c.horizon
    problem = build_problem(pm, OptimizeConfig())
    f = pm.compile(problem.mapping)
    x = problem.current * np.linspace(0.8, 1.3, len(problem.current))
    value, grad, draws = f(x)
    spend = (problem.mapping @ x).reshape(h.current.shape)
    np.testing.assert_allclose(draws, pm.incremental(spend), rtol=1e-10)
    assert value == pytest.approx(pm.incremental(spend).mean(), rel=1e-10)
    for i in range(len(x)):
        step = 1e-4 * x[i]
        up, dn = x.copy(), x.copy()
        up[i] += step
        dn[i] -= step
        fd = (pm.incremental((problem.mapping @ up).reshape(spend.shape)).mean()
              - pm.incremental((problem.mapping @ dn).reshape(spend.shape)).mean()) / (2 * step)  # fmt: skip
        assert grad[i] == pytest.approx(fd, rel=1e-5, abs=1e-9)
    # risk-adjusted: mean − λ·sd of the same draws
    v2, _, d2 = pm.compile(problem.mapping, risk_aversion=1.5)(x)
    assert v2 == pytest.approx(d2.mean() - 1.5 * d2.std(), rel=1e-10)


def test_optimum_holds_the_budget_and_bounds_and_equalises_marginal_roi(ctx):
    c, *_ = ctx
    pm = c.model
    settings = OptimizeConfig(default_bound="±90%")
    problem = build_problem(pm, settings)
    budget = float(problem.current.sum())
    f = pm.compile(problem.mapping)
    sol = solve(f, problem, budget, starts=3, seed=1)
    assert sol.spend.sum() == pytest.approx(budget, rel=1e-8)
    assert np.all(sol.spend >= problem.lower - 1e-6 * budget) and np.all(sol.spend <= problem.upper + 1e-6 * budget)
    assert sol.objective >= f(problem.current)[0] - 1e-9 * abs(sol.objective)  # never worse than the current split
    where = on_bound(sol, problem, budget)
    common = common_marginal(sol, problem, budget)
    for i, w in enumerate(where):
        if w is None:
            assert sol.gradient[i] == pytest.approx(common, rel=2e-3)
        elif w == "upper":
            assert sol.gradient[i] >= common - 1e-3 * abs(common)
        elif w == "lower":
            assert sol.gradient[i] <= common + 1e-3 * abs(common)


def test_same_seed_same_answer_and_infeasible_bounds_are_named(ctx):
    c, *_ = ctx
    settings = OptimizeConfig(default_bound="±50%")
    a = recommend(c, settings, random_seed=3)
    b = recommend(c, settings, random_seed=3)
    assert a["allocation"] == b["allocation"] and a["uplift"] == b["uplift"]
    ch = c.horizon.channels[0]
    tight = OptimizeConfig(bounds={ch: "±0%"}, default_bound="±1%", budget=float(c.horizon.current.sum()) * 2)
    with pytest.raises(InfeasibleBounds, match=rf"infeasible bounds: .*upper bounds add up to .*{ch}: ±0% of current"):
        recommend(c, tight)
    problem = build_problem(c.model, OptimizeConfig())
    with pytest.raises(InfeasibleBounds, match="set a budget between"):
        check_feasible(problem, float(problem.lower.sum()) * 0.5, c.horizon.channels)


def test_recommendation_explains_bounds_and_the_unchanged_split(ctx):
    c, *_ = ctx
    fixed = recommend(c, OptimizeConfig(default_bound="±0%"))
    assert fixed["equals_current"]
    assert "equals the current split" in fixed["messages"][0]
    assert all(row["at_bound"] == "fixed" for row in fixed["channels"])
    moved = recommend(c, OptimizeConfig(default_bound="±20%"))
    on = [row for row in moved["channels"] if row["at_bound"] in ("upper", "lower")]
    for row in on:
        assert any(m.startswith(f"{row['channel']} sits at its {row['at_bound']} bound") for m in moved["messages"])
    assert moved["uplift"]["incremental"] >= -1e-6
    assert moved["recommended"]["spend"] == pytest.approx(moved["current"]["spend"], rel=1e-8)


def test_target_mode_finds_the_budget_where_marginal_roi_meets_the_target(ctx):
    c, *_ = ctx
    wide = OptimizeConfig(default_bound="±100%")
    at_current = recommend(c, wide)
    target = float(at_current["marginal_roi_common"] or at_current["channels"][0]["marginal_roi_recommended"])
    found = recommend(c, OptimizeConfig(**{**wide.model_dump(), "target": {"metric": "marginal_roi", "value": target}}))
    assert found["mode"] == "target"
    assert found["budget"] == pytest.approx(at_current["budget"], rel=0.03)


def test_response_curves_start_at_zero_and_rise(ctx):
    c, *_ = ctx
    curves = response_curves(c.model, 2.0, points=11)
    assert set(curves["entity_id"]) >= {"brand"}
    for ch, g in curves[curves["entity_id"] == "brand"].groupby("channel"):
        g = g.sort_values("spend")
        assert g["incremental"].iloc[0] == pytest.approx(0.0, abs=1e-9)
        assert (np.diff(g["incremental"]) > 0).all()
        assert g["current"].sum() == 1
        assert (g["incremental_low"] <= g["incremental"] + 1e-9).all() and (g["incremental"] <= g["incremental_high"] + 1e-9).all()
        b = breakeven_spend(curves, ch)
        assert b is None or 0.0 <= b <= g["spend"].max()


def _scenario_args(c):
    h = c.horizon
    spend_cols = {ch: f"spend_{ch.removeprefix('act_')}" for ch in h.channels}
    return h.periods[0], pd.DateOffset(weeks=1), h.entities, h.channels, spend_cols, None, h.plannable


@pytest.mark.parametrize("rows, match", [
    ({"period_start": ["2099-01-05"], "channel": ["act_nope"], "spend": [1.0]}, r"line 2: channel 'act_nope' is not a modelled channel"),
    ({"period_start": ["2000-01-03"], "channel": ["CH0"], "spend": [1.0]}, r"line 2: period_start 2000-01-03 is before the first period"),
    ({"period_start": ["START+1d"], "channel": ["CH0"], "spend": [1.0]}, r"is not a period start on the data's grid"),
    ({"period_start": ["START"], "channel": ["CH0"], "spend": [-5.0]}, r"line 2: spend -5.0 is not an amount >= 0"),
    ({"period_start": ["START", "START"], "channel": ["CH0", "CH0"], "spend": [1.0, 2.0]}, r"lines \[2, 3\] plan the same period"),
    ({"week": ["START"], "spend": [1.0]}, r"has no column for \['channel'\]"),
])  # fmt: skip
def test_bad_scenarios_are_refused_naming_the_line(ctx, rows, match):
    c, *_ = ctx
    start = c.horizon.periods[0]
    fix = {"START": str(start.date()), "START+1d": str((start + pd.Timedelta(days=1)).date()), "CH0": c.horizon.channels[0]}
    df = pd.DataFrame({k: [fix.get(v, v) if isinstance(v, str) else v for v in vals] for k, vals in rows.items()})
    with pytest.raises(ScenarioError, match=match):
        read_scenario(df, *_scenario_args(c))


def test_scenario_forecast_counts_spend_and_carryover(ctx):
    c, *_ = ctx
    h = c.horizon
    ch = h.channels[0]
    df = pd.DataFrame({"period_start": [str(h.periods[-1].date())], "channel": [f"spend_{ch.removeprefix('act_')}"], "spend": [5000.0]})
    table, n = read_scenario(df, *_scenario_args(c))
    assert n == H and table["channel"].tolist() == [ch]
    spend = scenario_spend(table, h)
    assert spend.sum() == pytest.approx(5000.0)
    fc = forecast(c.model, {"scenario": spend}, random_seed=0)
    brand = fc[fc["entity_id"] == "brand"].reset_index(drop=True)
    assert brand.loc[0, "incremental"] == pytest.approx(0.0, abs=1e-9)  # before the spend: nothing
    assert brand.loc[H - 1, "incremental"] > 0 and brand.loc[H - 1, "spend"] == pytest.approx(5000.0)
    assert (brand.loc[H:, "part"] == "carryover").all() and brand.loc[H, "incremental"] > 0  # its carryover counts
    assert (brand["sales_low"] < brand["sales_high"]).all()  # 4 stand-in draws: the band is wide, not centred


def test_settings_are_validated_like_the_spec():
    with pytest.raises(SpecError, match=r"optimize.bounds.*'lots' is not a bound"):
        settings_for(None, {"bounds": {"act_tv": "lots"}})
    with pytest.raises(SpecError, match=r"optimize.budget"):
        settings_for(None, {"budget": -1})
    s = settings_for(OptimizeConfig(bounds={"act_tv": "±10%"}), {"bounds": {"act_radio": [0, 5]}, "budget": 10})
    assert s.bounds == {"act_tv": "±10%", "act_radio": [0, 5]} and s.budget == 10

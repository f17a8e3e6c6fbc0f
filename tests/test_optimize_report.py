"""Tests for mmm_lib.optimize.report and mmm_lib.plots.optimize: the 07 report's sentences, tables and figures.

No fitting: a small ``optimization.json`` is written by hand (the keys :func:`mmm_lib.optimize.recommend.recommend`
writes), with response curves and a forecast frame shaped like the stage's artifacts.
"""

from __future__ import annotations

import copy

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from mmm_lib.optimize import report as rep  # noqa: E402
from mmm_lib.plots import optimize as oplots  # noqa: E402

CHANNELS = ["act_tv", "act_digital", "act_radio"]


def make_opt(**changes) -> dict:
    """A budget-mode recommendation: 23,000 moved from Radio to TV and Digital, Digital and Radio on bounds."""
    opt = {
        "horizon": {"periods": 13, "start": "2024-12-30", "end": "2025-03-24", "carryover_periods_after": 7, "grain": "WEEK"},
        "mode": "budget", "objective": "mean", "risk_aversion": 0.0, "target": None,
        "budget": 189_848.0, "budget_source": "the last 13 periods' spend", "current_budget": 189_848.0,
        "per_entity": False, "interval": 0.9, "draws": 200, "random_seed": 42,
        "channels": [
            {"channel": "act_tv", "current_spend": 89_957.0, "recommended_spend": 105_977.0, "change": 16_020.0,
             "change_pct": 17.8, "cost_per_unit": 65.48, "bound": "±30% of current (62,970 to 116,945)",
             "at_bound": None, "marginal_roi_current": 0.77, "marginal_roi_recommended": 0.67,
             "incremental_current": 142_957.0, "incremental_recommended": 153_869.0, "breakeven_spend": 67_305.0},
            {"channel": "act_digital", "current_spend": 23_246.0, "recommended_spend": 30_220.0, "change": 6_974.0,
             "change_pct": 30.0, "cost_per_unit": 0.0012, "bound": "±30% of current (16,272 to 30,220)",
             "at_bound": "upper", "marginal_roi_current": 2.52, "marginal_roi_recommended": 2.01,
             "incremental_current": 97_919.0, "incremental_recommended": 112_398.0, "breakeven_spend": None},
            {"channel": "act_radio", "current_spend": 76_645.0, "recommended_spend": 53_651.0, "change": -22_994.0,
             "change_pct": -30.0, "cost_per_unit": 349.0, "bound": "±30% of current (53,651 to 99,638)",
             "at_bound": "lower", "marginal_roi_current": 0.28, "marginal_roi_recommended": 0.34,
             "incremental_current": 26_682.0, "incremental_recommended": 20_497.0, "breakeven_spend": 0.0},
        ],
        "current": {"spend": 189_848.0, "incremental": 277_976.0, "incremental_low": 181_736.0, "incremental_high": 391_315.0,
                    "roi": 1.46, "roi_low": 0.96, "roi_high": 2.06},
        "recommended": {"spend": 189_848.0, "incremental": 298_022.0, "incremental_low": 192_045.0,
                        "incremental_high": 418_111.0, "roi": 1.57, "roi_low": 1.01, "roi_high": 2.20},
        "uplift": {"incremental": 20_046.0, "incremental_low": 10_553.0, "incremental_high": 30_493.0, "pct": 7.2,
                   "probability_positive": 1.0},
        "marginal_roi_common": 0.67, "equals_current": False,
        "messages": [
            "act_digital sits at its upper bound (±30% of current (16,272 to 30,220)): one more unit there still returns "
            "2.01, more than the 0.67 of the channels inside their bounds; widen its bound to move more budget to it",
            "act_radio sits at its lower bound (±30% of current (53,651 to 99,638)): one more unit there returns only "
            "0.34, less than the 0.67 of the channels inside their bounds; lower its bound to cut it further",
        ],
        "notes": ["controls ['ctrl_price_index'] are held at their mean over the last 13 periods; seasonality and trend continue"],
        "optimizer": {"method": "SLSQP", "gradient": "exact (PyTensor)", "converged": True, "iterations": 2,
                      "best_start": "current split",
                      "starts": [{"start": "current split", "objective": 298_022.0, "converged": True, "iterations": 2},
                                 {"start": "equal split", "objective": 298_021.9, "converged": True, "iterations": 3}]},
        "entities": ["brand"], "plannable_channels": CHANNELS, "all_channels": CHANNELS,
        "definition": "A plan's incremental sales: expected sales with the plan minus with no planned spend.",
        "scenario": None,
        "settings": {"horizon_periods": 13, "budget": None, "bounds": {}, "default_bound": "±30%", "per_entity": False,
                     "objective": "mean", "risk_aversion": 1.0, "target": None, "curve_max_multiplier": 2.0,
                     "scenario_path": None, "starts": 2, "draws": 200},
    }  # fmt: skip
    opt.update(changes)
    return opt


SCENARIO = {"source": "scenario_plan.csv", "periods": 8, "start": "2024-12-30", "end": "2025-02-17", "rows": 24,
            "spend": 12_800.0, "spend_by_channel": {"act_tv": 6_400.0, "act_digital": 2_400.0, "act_radio": 4_000.0},
            "incremental": 36_001.0, "incremental_low": 16_117.0, "incremental_high": 60_226.0, "roi": 2.81,
            "roi_low": 1.26, "roi_high": 4.71}  # fmt: skip


def make_curves(opt: dict) -> pd.DataFrame:
    """Saturating curves ``a * (1 - exp(-spend / k))`` per channel, brand rows and one entity's rows."""
    frames = []
    for c in opt["channels"]:
        cur = c["current_spend"]
        m = np.linspace(0.0, 2.0, 21)
        spend = m * cur
        inc = 2.0 * cur * (1 - np.exp(-spend / cur))
        for ent, scale in (("brand", 1.0), ("store_1", 0.5)):
            frames.append(pd.DataFrame({
                "entity_id": ent, "channel": c["channel"], "multiplier": m, "spend": spend * scale,
                "incremental": inc * scale, "incremental_low": 0.7 * inc * scale, "incremental_high": 1.3 * inc * scale,
                "roi": np.divide(inc, spend, out=np.full_like(inc, np.nan), where=spend > 0),
                "marginal_roi": np.gradient(inc, spend), "current": np.isclose(m, 1.0)}))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def make_forecast(plans=("current", "recommended")) -> pd.DataFrame:
    periods = pd.date_range("2024-12-30", periods=20, freq="7D")
    part = ["horizon"] * 13 + ["carryover"] * 7
    frames = []
    for k, p in enumerate(plans):
        base = 1000.0 + 50 * k + 10 * np.arange(20)
        inc = np.r_[np.linspace(50, 200, 13), np.linspace(150, 0, 7)] * (1 + 0.1 * k)
        for ent in ("brand", "store_1"):
            frames.append(pd.DataFrame({
                "plan": p, "period_start": periods, "part": part, "entity_id": ent, "spend": 10.0,
                "expected_sales": base, "sales_low": base * 0.9, "sales_high": base * 1.1, "incremental": inc,
                "incremental_low": inc * 0.6, "incremental_high": inc * 1.4}))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# the executive summary


def test_headline_names_the_move_the_uplift_its_interval_and_the_budget():
    s = rep.recommendation_sentence(make_opt())
    assert s.startswith("Moving 22,994 from Radio to TV and Digital over the next 13 weeks (2024-12-30 → 2025-03-24)")
    assert "add 20,046 sales (90% interval 10,553 to 30,493; +7.2%" in s
    assert "a gain in all 200 posterior draws" in s  # not "100%", which reads as certainty
    assert s.endswith("for the same budget of 189,848.")
    assert "act_" not in s


def test_summary_opens_with_the_recommendation_then_bounds_in_display_names():
    summary = rep.executive_summary(make_opt())
    assert summary.sentences[0] == rep.recommendation_sentence(make_opt())
    bounds = [s for s in summary.sentences if "bound" in s and "sits" in s]
    assert bounds[0].startswith("Digital sits at its upper bound") and bounds[1].startswith("Radio sits at its lower bound")
    assert all(s.endswith(".") for s in summary.sentences)
    assert "act_" not in str(summary)
    assert any("0.67" in s and "break-even" in s for s in summary.sentences)  # the margin, against 1.00
    html = summary._repr_html_()
    assert html.index("<b>Moving") < html.index("Digital sits")


def test_probability_of_a_gain_in_between_is_a_percentage():
    opt = make_opt(uplift={**make_opt()["uplift"], "probability_positive": 0.934})
    assert "probability of a gain 93%" in rep.recommendation_sentence(opt)
    opt = make_opt(uplift={**make_opt()["uplift"], "probability_positive": 0.999})
    assert "probability of a gain 99%" in rep.recommendation_sentence(opt)  # rounded, never 100%


def test_equal_split_says_keep_and_why():
    opt = make_opt(equals_current=True, messages=["the recommended split equals the current split: every channel sits "
                                                  "on a bound that the current split already meets"])  # fmt: skip
    summary = rep.executive_summary(opt)
    assert summary.sentences[0].startswith("Keep the current split of 189,848 over the next 13 weeks")
    assert summary.sentences[1].startswith("The recommended split equals the current split")


def test_a_new_budget_says_how_much_more_and_what_the_extra_spend_returns():
    opt = make_opt(budget=220_000.0, budget_source="given", recommended={**make_opt()["recommended"], "spend": 220_000.0},
                   uplift={"incremental": 39_076.0, "incremental_low": 21_387.0, "incremental_high": 57_377.0,
                           "pct": 14.1, "probability_positive": 1.0})  # fmt: skip
    s = rep.recommendation_sentence(opt)
    assert s.startswith("Spend 220,000 over the next 13 weeks") and "30,152 more than the current 189,848" in s
    assert "more on TV and Digital; less on Radio" in s
    assert "1.30 in sales per extra unit of spend" in s


def test_target_mode_names_the_target_and_a_loss_reads_as_a_loss():
    opt = make_opt(mode="target", target={"metric": "marginal_roi", "value": 1.0}, budget=150_803.0,
                   uplift={"incremental": -11_733.0, "incremental_low": -22_708.0, "incremental_high": -1_670.0,
                           "pct": -4.2, "probability_positive": 0.03})  # fmt: skip
    s = rep.recommendation_sentence(opt)
    assert s.startswith("To reach a marginal ROI of 1.00 (the target), spend 150,803")
    assert "lose 11,733 sales (90% interval 1,670 to 22,708; -4.2%, probability of a gain 3%)" in s
    assert "given up per unit saved" in s
    assert rep.margin_sentence(opt) is None  # target mode already says where the margin is
    assert "Budget: 150,803 (found in target mode: where the optimal plan's marginal ROI falls to 1.00)" in str(rep.how_computed(opt))


def test_readable_replaces_column_names_and_listed_names():
    opt = make_opt(all_channels=[*CHANNELS, "act_tv_2"])
    t = rep.readable("act_tv_2 and act_tv; controls ['ctrl_price_index', 'ctrl_promo'] are held", opt, {"act_tv": "Television"})
    assert t == "TV 2 and Television; controls Price Index and Promo are held"


# --------------------------------------------------------------------------------------------
# tables


def test_allocation_table_reads_as_money_with_a_total_row():
    t = rep.allocation_table(make_opt())
    assert list(t.index) == ["TV", "Digital", "Radio", "total"]
    assert t.loc["TV", "current spend"] == "89,957" and t.loc["TV", "change"] == "+16,020"
    assert t.loc["Radio", "change"] == "-22,994" and t.loc["Radio", "change (%)"] == "-30.0%"
    assert t.loc["TV", "marginal ROI: now → recommended"] == "0.77 → 0.67"
    assert t.loc["Digital", "on a bound"] == "at upper bound" and t.loc["TV", "on a bound"] == "–"
    assert t.loc["total", "change"] == "0" and t.loc["total", "recommended spend"] == "189,848"
    assert "e+" not in t.to_string() and "nan" not in t.to_string()


def test_marginal_roi_table_says_where_break_even_falls():
    t = rep.marginal_roi_table(make_opt())
    assert t.loc["TV", "spend where marginal ROI falls to 1"] == "67,305"
    assert t.loc["Digital", "spend where marginal ROI falls to 1"] == "above 46,492 (2× current)"
    assert t.loc["Radio", "spend where marginal ROI falls to 1"] == "below 1 from the first unit"


def test_scenario_appears_only_when_given():
    opt = make_opt()
    assert rep.scenario_sentence(opt) is None
    assert list(rep.plans_table(opt).index) == ["current plan", "recommended plan"]
    assert not any("scenario" in s.lower() for s in rep.executive_summary(opt).sentences)
    note = rep.scenario_summary(opt)
    assert note.table is None and "No scenario was given" in note

    opt = make_opt(scenario=SCENARIO)
    assert list(rep.plans_table(opt).index) == ["current plan", "recommended plan", "scenario"]
    s = rep.scenario_sentence(opt)
    assert s == ("The scenario (8 weeks, 2024-12-30 → 2025-02-17, 12,800 spend) is expected to bring 36,001 incremental "
                 "sales (90% interval 16,117 to 60,226), 2.81 per unit of spend.")  # fmt: skip
    assert s in rep.executive_summary(opt).sentences
    block = rep.scenario_summary(opt)
    assert block.table.loc["TV", "scenario per week"] == "800"
    assert block.table.loc["TV", "current plan per week"] == f"{89_957 / 13:,.0f}"


def test_how_computed_names_horizon_budget_bounds_draws_and_optimizer():
    opt = make_opt(settings={**make_opt()["settings"], "bounds": {"act_radio": [0, 50_000], "act_tv": "±20%"}})
    block = rep.how_computed(opt)
    text = str(block)
    assert "the next 13 weeks (2024-12-30 → 2025-03-24)" in text and "7 weeks after it" in text
    assert "Radio: 0 to 50,000; TV: ±20%" in text
    assert "Price Index" in text and "ctrl_" not in text
    assert "200 posterior draws" in text and "SLSQP" in text and "all 2 starts reached the same optimum" in text
    assert block.table.loc["Digital", "cost per unit of activity"] == "0.0012"


def test_html_escapes_names_from_the_data():
    evil = "<script>alert(1)</script>"
    opt = make_opt(messages=[f"act_tv sits at its upper bound ({evil})"], scenario=SCENARIO)
    assert evil not in rep.executive_summary(opt, {"act_radio": evil})._repr_html_()
    assert evil not in rep.how_computed(opt, {"act_radio": evil})._repr_html_()
    assert evil not in rep.scenario_summary(opt, {"act_radio": evil})._repr_html_()


# --------------------------------------------------------------------------------------------
# figures


@pytest.mark.parametrize("scenario", [False, True])
def test_figures_render_on_small_frames(scenario):
    opt = make_opt(scenario=SCENARIO if scenario else None)
    curves = make_curves(opt)
    fc = make_forecast(("current", "recommended", "scenario") if scenario else ("current", "recommended"))
    figs = [oplots.plot_allocation(opt), oplots.plot_response_curves(curves, opt), oplots.plot_marginal_roi(curves, opt),
            oplots.plot_forecast(fc, opt)]  # fmt: skip
    for fig in figs:
        fig.canvas.draw()
    ticks = sorted(figs[0].axes[0].get_yticklabels(), key=lambda t: -t.get_position()[1])
    assert [t.get_text() for t in ticks] == ["TV", "Digital", "Radio"]  # display names, first channel on top
    assert [ax.get_title().split(":")[0] for ax in figs[1].axes[:3]] == ["TV", "Digital", "Radio"]
    lines = {ln.get_label() for ln in figs[3].axes[0].get_lines()}
    assert ("scenario" in lines) is scenario


def test_bound_range_from_settings():
    opt = make_opt(settings={**make_opt()["settings"], "bounds": {"act_radio": [0, 50_000]}})
    assert oplots.bound_range(opt, "act_tv") == pytest.approx((89_957 * 0.7, 89_957 * 1.3))
    assert oplots.bound_range(opt, "act_radio") == (0.0, 50_000.0)
    assert oplots.bound_range(make_opt(settings=None), "act_tv") is None


def test_figures_without_curves_show_a_note():
    opt = copy.deepcopy(make_opt())
    empty = make_curves(opt).iloc[0:0]
    assert oplots.plot_response_curves(empty, opt) is not None
    assert oplots.plot_marginal_roi(empty, opt) is not None
    assert oplots.plot_allocation(make_opt(channels=[])) is not None

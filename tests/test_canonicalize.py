"""canonicalize: exact brand aggregation, the window rule (snapped to the grain), types, spend mapping, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mmm_lib.canonicalize import (
    aggregation_table,
    align_to_grain,
    canonical_headline,
    canonicalize,
    compute_windows,
    parse_period_start,
    period_offset,
    window_table,
)
from mmm_lib.spec import WindowsConfig, parse_spec
from panels import make_panel



def spec_for(**kw):
    raw = {"data_path": "x.csv", "drivers": ["act_tv", "act_digital"], "controls": ["ctrl_price_index"],
           "windows": {"carryover_months": 6, "estimation_months": 24}}
    raw.update(kw)
    return parse_spec(raw)


def tiny_panel() -> pd.DataFrame:
    """2 stores x 4 weeks with round numbers so sums and means can be checked by hand."""
    dates = ["2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22"]
    rows = []
    for k, store in enumerate(["a", "b"]):
        for t, d in enumerate(dates):
            rows.append({"entity_id": store, "period_start": d, "sales": 100.0 * (k + 1) + t,
                         "act_tv": 10.0 * (k + 1), "act_digital": float(t), "spend_tv": 2.0 * (k + 1),
                         "spend_digital": 1.0, "ctrl_price_index": 90.0 + 20 * k, "ctrl_stores_open": 1.0,
                         "notes": "x", "act_print": 5.0})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- aggregation


def test_entities_summed_and_controls_averaged_exactly():
    spec = spec_for(controls=["ctrl_price_index", "ctrl_stores_open"], control_aggregation={"ctrl_stores_open": "sum"},
                    windows={"carryover_months": 0, "estimation_months": 1})
    can, info = canonicalize(tiny_panel(), spec)
    assert can["sales"].tolist() == [300.0, 302.0, 304.0, 306.0]  # (100+t) + (200+t)
    assert can["act_tv"].tolist() == [30.0] * 4
    assert can["act_digital"].tolist() == [0.0, 2.0, 4.0, 6.0]
    assert can["spend_tv"].tolist() == [6.0] * 4
    assert can["ctrl_price_index"].tolist() == [100.0] * 4  # mean of 90 and 110
    assert can["ctrl_stores_open"].tolist() == [2.0] * 4  # summed on request
    assert info["aggregation"] == {"sales": "sum", "act_tv": "sum", "act_digital": "sum", "spend_tv": "sum",
                                   "spend_digital": "sum", "ctrl_price_index": "mean", "ctrl_stores_open": "sum"}
    assert info["source_entities"] == ["a", "b"] and info["n_source_entities"] == 2


def test_aggregation_matches_groupby_on_random_panel():
    raw = make_panel(n_entities=4, seed=3)
    can, _ = canonicalize(raw, spec_for())
    d = pd.to_datetime(raw["period_start"])
    ref = raw.assign(period_start=d).groupby("period_start").agg(
        sales=("sales", "sum"), act_tv=("act_tv", "sum"), spend_digital=("spend_digital", "sum"),
        ctrl_price_index=("ctrl_price_index", "mean"))
    ref = ref.loc[can["period_start"]]
    np.testing.assert_allclose(can["sales"], ref["sales"], rtol=1e-12)
    np.testing.assert_allclose(can["act_tv"], ref["act_tv"], rtol=1e-12)
    np.testing.assert_allclose(can["spend_digital"], ref["spend_digital"], rtol=1e-12)
    np.testing.assert_allclose(can["ctrl_price_index"], ref["ctrl_price_index"], rtol=1e-12)


def test_columns_types_and_order():
    can, _ = canonicalize(tiny_panel(), spec_for(windows={"carryover_months": 0, "estimation_months": 1}))
    assert list(can.columns) == ["entity_id", "period_start", "window", "sales", "act_tv", "act_digital",
                                 "spend_tv", "spend_digital", "ctrl_price_index"]
    assert can["period_start"].dtype == "datetime64[ns]"
    assert (can["entity_id"] == "brand").all() and pd.api.types.is_string_dtype(can["entity_id"])
    assert pd.api.types.is_string_dtype(can["window"])
    for c in ["sales", "act_tv", "spend_tv", "ctrl_price_index"]:
        assert can[c].dtype == np.float64
    assert can["period_start"].is_monotonic_increasing


def test_numeric_text_and_integer_dates_are_standardized():
    raw = tiny_panel()
    raw["sales"] = raw["sales"].map(str)
    raw["period_start"] = pd.to_datetime(raw["period_start"]).dt.strftime("%Y%m%d").astype(int)
    can, _ = canonicalize(raw, spec_for(windows={"carryover_months": 0, "estimation_months": 1}))
    assert can["sales"].dtype == np.float64 and can["sales"].iloc[0] == 300.0
    assert can["period_start"].iloc[0] == pd.Timestamp("2024-01-01")


# --------------------------------------------------------------------------- spend mapping


def test_spend_mapping_default_override_and_missing():
    raw = tiny_panel().rename(columns={"spend_tv": "cost_tv"}).drop(columns=["spend_digital"])
    spec = spec_for(spend_cols={"act_tv": "cost_tv"}, windows={"carryover_months": 0, "estimation_months": 1})
    can, info = canonicalize(raw, spec)
    assert info["spend"] == {"act_tv": "cost_tv", "act_digital": None}
    assert "cost_tv" in can and "spend_digital" not in can
    assert "act_print" not in can and "notes" not in can and "ctrl_stores_open" not in can


def test_spend_cols_can_share_a_column():
    raw = tiny_panel()
    spec = spec_for(spend_cols={"act_tv": "spend_tv", "act_digital": "spend_tv"},
                    windows={"carryover_months": 0, "estimation_months": 1})
    can, info = canonicalize(raw, spec)
    assert list(can.columns).count("spend_tv") == 1 and "spend_digital" not in can
    assert info["spend"] == {"act_tv": "spend_tv", "act_digital": "spend_tv"}


# --------------------------------------------------------------------------- windows


def test_weekly_windows_follow_the_standard_rule():
    raw = make_panel(n_periods=160)  # Mondays 2022-01-03 .. 2025-01-20
    can, info = canonicalize(raw, spec_for())
    w = info["windows"]
    assert w["end"] == "2025-01-27"
    # end - 24 months = 2023-01-27 and - 6 more = 2022-07-27, moved forward to the next Monday
    assert w["estimation_start"] == "2023-01-30"
    assert w["carryover_start"] == "2022-08-01"
    assert w["first_estimation_period"] == "2023-01-30" and w["last_period"] == "2025-01-20"
    assert w["n_estimation"] == 104  # Mondays 2023-01-30 .. 2025-01-20
    assert w["n_carryover"] == 26  # Mondays 2022-08-01 .. 2023-01-23
    assert len(can) == 130
    assert (can["window"] == "estimation").sum() == 104
    assert can.loc[can["window"] == "carryover", "period_start"].max() < pd.Timestamp("2023-01-27")
    assert can["period_start"].min() == pd.Timestamp("2022-08-01")
    assert info["notes"] == []


def test_two_whole_years_of_weeks_fill_12_plus_12_month_windows():
    """104 Mondays from 2021-01-25: the windows start on Mondays, so the data fills them exactly (no note)."""
    spec = spec_for(windows={"carryover_months": 12, "estimation_months": 12})
    can, info = canonicalize(make_panel(n_periods=104, start="2021-01-25"), spec)
    w = info["windows"]
    assert (w["carryover_start"], w["estimation_start"], w["end"]) == ("2021-01-25", "2022-01-24", "2023-01-23")
    assert (w["n_carryover"], w["n_estimation"]) == (52, 52)
    assert w["first_period"] == w["carryover_start"] and w["first_estimation_period"] == w["estimation_start"]
    assert info["notes"] == []
    can, info = canonicalize(make_panel(n_periods=100, start="2021-02-22"), spec)  # same last week, 4 weeks short
    assert info["windows"]["n_carryover"] == 48
    assert any("carryover has 48 periods" in n for n in info["notes"])


def test_window_boundaries_are_period_starts():
    """Snapping moves a boundary forward to the next period start and keeps the periods in each window."""
    for last in pd.date_range("2023-01-02", periods=60, freq="7D"):
        for est, carry in [(12, 12), (24, 6), (1, 0), (13, 5)]:
            w = compute_windows(last, "WEEK", WindowsConfig(carryover_months=carry, estimation_months=est))
            grid = pd.date_range(end=last, periods=200, freq="7D")
            for key, rule in [("estimation_start", w["end"] - pd.DateOffset(months=est)),
                              ("carryover_start", w["end"] - pd.DateOffset(months=est) - pd.DateOffset(months=carry))]:
                assert w[key] in grid and w[key] >= rule and w[key] - rule < pd.Timedelta(weeks=1)
                assert (grid >= w[key]).sum() == (grid >= rule).sum()  # same periods as the unsnapped rule
    sunday = compute_windows(pd.Timestamp("2024-06-30"), "WEEK", WindowsConfig(carryover_months=6, estimation_months=12))
    assert all(v.day_of_week == 6 for v in sunday.values())  # Sunday weeks keep Sunday boundaries
    month = compute_windows(pd.Timestamp("2024-03-01"), "MONTH", WindowsConfig(carryover_months=2, estimation_months=12))
    assert all(v.day == 1 for v in month.values())


def test_monthly_windows():
    raw = make_panel(n_periods=48, start="2020-01-01", freq="MS")
    spec = spec_for(grain="MONTH", windows={"carryover_months": 6, "estimation_months": 12})
    can, info = canonicalize(raw, spec)
    w = info["windows"]
    assert (w["carryover_start"], w["estimation_start"], w["end"]) == ("2022-07-01", "2023-01-01", "2024-01-01")
    assert (w["n_carryover"], w["n_estimation"]) == (6, 12)
    assert can["period_start"].iloc[0] == pd.Timestamp("2022-07-01")
    assert can["period_start"].iloc[-1] == pd.Timestamp("2023-12-01")


def test_short_data_keeps_what_exists_and_notes_it():
    raw = make_panel(n_periods=115)  # 104 estimation weeks + 11 of 26 carryover weeks
    can, info = canonicalize(raw, spec_for())
    assert info["windows"]["n_estimation"] == 104 and info["windows"]["n_carryover"] == 11
    assert len(can) == 115
    assert any("carryover has 11 periods" in n for n in info["notes"])
    raw = make_panel(n_periods=30)
    can, info = canonicalize(raw, spec_for())
    assert info["windows"]["n_estimation"] == 30 and info["windows"]["n_carryover"] == 0
    assert any("no carryover warm-up" in n for n in info["notes"])


def test_zero_carryover_months():
    can, info = canonicalize(make_panel(), spec_for(windows={"carryover_months": 0, "estimation_months": 12}))
    assert info["windows"]["n_carryover"] == 0 and (can["window"] == "estimation").all()
    assert info["windows"]["carryover_start"] == info["windows"]["estimation_start"]


# --------------------------------------------------------------------------- grain alignment


def test_off_weekday_and_month_end_dates_move_to_period_start():
    raw = make_panel()
    raw.loc[raw.index[-1], "period_start"] = "2025-01-22"  # Wednesday of the last week (Monday 2025-01-20)
    can, info = canonicalize(raw, spec_for())
    assert can["period_start"].iloc[-1] == pd.Timestamp("2025-01-20")
    assert any("moved back" in n for n in info["notes"])
    monthly = make_panel(n_periods=24, start="2022-01-31", freq="ME")
    can, _ = canonicalize(monthly, spec_for(grain="MONTH", windows={"carryover_months": 0, "estimation_months": 12}))
    assert (can["period_start"].dt.day == 1).all() and can["period_start"].iloc[-1] == pd.Timestamp("2023-12-01")


def test_sunday_weeks_stay_sunday():
    d = pd.Series(pd.to_datetime(["2024-01-07", "2024-01-14", "2024-01-21"]))
    assert align_to_grain(d, "WEEK").tolist() == d.tolist()


def test_helpers():
    assert pd.Timestamp("2024-01-31") + period_offset("MONTH") == pd.Timestamp("2024-02-29")
    assert pd.Timestamp("2024-01-01") + period_offset("WEEK") == pd.Timestamp("2024-01-08")
    with pytest.raises(ValueError, match="DAY"):
        period_offset("DAY")  # type: ignore[arg-type]
    w = compute_windows(pd.Timestamp("2023-12-01"), "MONTH", WindowsConfig(carryover_months=3, estimation_months=12))
    assert w == {"carryover_start": pd.Timestamp("2022-10-01"), "estimation_start": pd.Timestamp("2023-01-01"),
                 "end": pd.Timestamp("2024-01-01")}
    p = parse_period_start(pd.Series(["2024-01-01", "01/08/2024", "x"]))
    assert p.mixed and p.unparseable == [2]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda df: df.drop(columns=["act_digital"]), "act_digital"),
        (lambda df: df.assign(period_start=df["period_start"].where(df.index != 3, "soon")), "period_start"),
        (lambda df: df.assign(act_tv=df["act_tv"].astype(object).where(df.index != 5, "1,200")), "act_tv"),
        (lambda df: pd.concat([df, df.iloc[[0]]], ignore_index=True), "entity_id, period_start"),
    ],
)
def test_unusable_input_raises_naming_the_problem(mutate, needle):
    with pytest.raises(ValueError, match=needle):
        canonicalize(mutate(make_panel()), spec_for())


def test_gap_inside_windows_raises():
    raw = make_panel()
    d = pd.to_datetime(raw["period_start"])
    with pytest.raises(ValueError, match="2024-06-03"):
        canonicalize(raw[d != pd.Timestamp("2024-06-03")], spec_for())
    can, _ = canonicalize(raw[d != pd.Timestamp("2022-01-10")], spec_for())  # before the windows: fine
    assert len(can) == 130


# --------------------------------------------------------------------------- artifacts and tables


def test_column_info_shape_and_parquet_roundtrip(tmp_path):
    can, info = canonicalize(make_panel(), spec_for())
    for key in ["grain", "target", "drivers", "spend", "controls", "aggregation", "source_entities",
                "n_source_entities", "windows", "notes"]:
        assert key in info
    assert {"carryover_start", "estimation_start", "end", "n_carryover", "n_estimation"} <= set(info["windows"])
    json.dumps(info)
    p = tmp_path / "c.parquet"
    can.to_parquet(p, index=False)
    back = pd.read_parquet(p)
    assert back["period_start"].dtype == "datetime64[ns]"
    pd.testing.assert_frame_equal(back, can)


def test_tables_and_headline():
    can, info = canonicalize(make_panel(), spec_for())
    wt = window_table(info)
    assert wt["window"].tolist() == ["carryover", "estimation"] and wt["periods"].tolist() == [26, 104]
    assert wt["last period"].tolist() == ["2023-01-23", "2025-01-20"]
    at = aggregation_table(info)
    assert dict(zip(at["column"], at["aggregation"]))["ctrl_price_index"] == "mean"
    assert dict(zip(at["column"], at["spend column"]))["act_tv"] == "spend_tv"
    assert "26 carryover + 104 estimation" in canonical_headline(can, info)


def test_canonical_series_figure_has_a_panel_per_series():
    from mmm_lib.plots.data import plot_canonical_series

    raw = make_panel().drop(columns=["spend_digital"])
    can, info = canonicalize(raw, spec_for())
    fig = plot_canonical_series(can, info)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert sum(t.startswith("brand sales") for t in titles) == 1
    assert "act_tv: activity and spend" in titles
    assert "act_digital: activity (no spend column, so no ROI)" in titles
    assert any(t.startswith("controls") for t in titles)
    assert len(fig.axes) == 5  # target, 2 drivers, controls + the spend twin axis of act_tv


# --------------------------------------------------------------------------- foreign formats (columns mapping)


def test_meridian_mapping_sums_revenue_over_geos_and_records_the_source_columns():
    from mmm_lib.sample import meridian_like

    raw = meridian_like(n_geos=3, n_weeks=104)
    spec = parse_spec({
        "data_path": "x.csv", "target_col": "conversions",
        "columns": {"entity": "geo", "period": "time", "target_multiplier": "revenue_per_conversion"},
        "drivers": ["Channel0_impression", "Channel1_impression"],
        "spend_cols": {"Channel0_impression": "Channel0_spend", "Channel1_impression": "Channel1_spend"},
        "controls": ["competitor_sales_control"], "windows": {"carryover_months": 3, "estimation_months": 18},
    })
    can, info = canonicalize(raw, spec)
    assert list(can.columns) == ["entity_id", "period_start", "window", "revenue", "Channel0_impression",
                                 "Channel1_impression", "Channel0_spend", "Channel1_spend", "competitor_sales_control"]
    assert info["target"] == "revenue" and info["source_entities"] == ["Geo0", "Geo1", "Geo2"]
    assert info["source_columns"] == {"entity": "geo", "period": "time", "target": "conversions",
                                      "target_multiplier": "revenue_per_conversion", "target_name": "revenue"}
    last = raw[raw["time"] == raw["time"].max()]
    assert can["revenue"].iloc[-1] == pytest.approx((last["conversions"] * last["revenue_per_conversion"]).sum())
    assert can["competitor_sales_control"].iloc[-1] == pytest.approx(last["competitor_sales_control"].mean())
    assert info["aggregation"]["revenue"] == "sum"


def test_robyn_mapping_one_series_with_spend_only_drivers():
    from mmm_lib.sample import robyn_like

    raw = robyn_like(n_weeks=156)
    spec = parse_spec({
        "data_path": "x.csv", "target_col": "revenue", "columns": {"entity": None, "period": "DATE"},
        "drivers": ["tv_S", "facebook_I"], "spend_cols": {"tv_S": "tv_S", "facebook_I": "facebook_S"},
        "controls": ["newsletter"], "windows": {"carryover_months": 6, "estimation_months": 24},
    })
    can, info = canonicalize(raw, spec)
    assert info["n_source_entities"] == 1 and info["spend"] == {"tv_S": "tv_S", "facebook_I": "facebook_S"}
    assert list(can.columns) == ["entity_id", "period_start", "window", "revenue", "tv_S", "facebook_I", "facebook_S",
                                 "newsletter"]
    assert can["revenue"].to_numpy() == pytest.approx(raw["revenue"].to_numpy()[-len(can):])
    assert aggregation_table(info).set_index("column").loc["tv_S", "spend column"].startswith("tv_S (itself")


def test_missing_mapped_column_raises_naming_it():
    from mmm_lib.columns import ColumnMappingError

    raw = make_panel().rename(columns={"period_start": "period_start_date"})
    with pytest.raises(ColumnMappingError, match=r"'period_start' \(columns.period in the spec\).*did you mean 'period_start_date'"):
        canonicalize(raw, spec_for())
    can, info = canonicalize(raw, spec_for(columns={"period": "period_start_date"}))
    assert len(can) == 130 and info["source_columns"]["period"] == "period_start_date"

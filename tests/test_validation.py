"""validation: each check fires on a frame built to trigger it, and stays quiet on clean data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mmm_lib.raw_io import load_raw, parquet_safe
from mmm_lib.spec import parse_spec
from panels import make_panel
from mmm_lib.validation import DataValidationError, validate

DRIVERS = ["act_tv", "act_digital"]
CONTROLS = ["ctrl_price_index"]


def make_spec(**kw):
    raw = {"data_path": "x.csv", "drivers": DRIVERS, "controls": CONTROLS,
           "windows": {"carryover_months": 6, "estimation_months": 24}}
    raw.update(kw)
    return parse_spec(raw)


def find(report, code):
    hits = [f for f in report.findings if f.code == code]
    assert hits, f"expected {code}, got {report.codes()}"
    return hits[0]


def to_text(df: pd.DataFrame, col: str) -> pd.DataFrame:
    out = df.copy()
    out[col] = out[col].astype(object).map(lambda v: f"{v:.2f}")
    return out


# --------------------------------------------------------------------------- clean data


def test_clean_panel_passes_with_no_warnings():
    report = validate(make_panel(), make_spec())
    assert report.ok
    assert [f.severity for f in report.findings] == ["info"]
    assert report.codes() == ["DATA_PARAMETER_RATIO"]
    assert (report.n_rows, report.n_entities, report.n_periods) == (480, 3, 160)
    assert report.grain == "WEEK"
    assert report.roles["spend"] == {"act_tv": "spend_tv", "act_digital": "spend_digital"}
    report.raise_if_errors()  # no error, no raise


def test_summary_has_design_shape_and_is_json():
    s = validate(make_panel(), make_spec()).summary()
    for key in ["ok", "n_rows", "n_entities", "n_periods", "roles", "counts", "findings"]:
        assert key in s
    assert set(s["roles"]) == {"target", "drivers", "controls", "spend"}
    assert s["counts"] == {"error": 0, "warning": 0, "info": 1}
    assert s["date_range"] == {"start": "2022-01-03", "end": "2025-01-20"}
    json.dumps(s)


def test_without_spec_roles_come_from_prefixes():
    df = make_panel()
    df["region"] = "north"
    report = validate(df)
    assert report.roles["drivers"] == DRIVERS
    assert report.roles["controls"] == CONTROLS
    assert report.roles["target"] == "sales"
    assert report.grain == "WEEK"
    assert "region" in find(report, "UNUSED_COLUMN").message


def test_monthly_grain_inferred_without_spec():
    report = validate(make_panel(n_periods=48, start="2020-01-01", freq="MS"))
    assert report.grain == "MONTH"
    assert report.ok, report.table()


# --------------------------------------------------------------------------- structure


def test_empty_frame():
    report = validate(pd.DataFrame(columns=["entity_id", "period_start", "sales"]), make_spec())
    assert report.codes() == ["EMPTY_DATA"]
    assert not report.ok


def test_duplicate_column_name():
    df = make_panel()
    df = pd.concat([df, df[["act_tv"]]], axis=1)
    f = find(validate(df, make_spec()), "DUPLICATE_COLUMN_NAME")
    assert "act_tv" in f.message and f.severity == "error"


def test_missing_target_suggests_close_name():
    df = make_panel().rename(columns={"sales": "Sales"})
    f = find(validate(df, make_spec()), "MISSING_REQUIRED_COLUMN")
    assert f.severity == "error"
    assert "'sales'" in f.message and "did you mean 'Sales'" in f.message
    assert f.columns == ["sales"]


def test_missing_entity_and_period_columns():
    df = make_panel().drop(columns=["entity_id", "period_start"])
    report = validate(df, make_spec())
    cols = [f.columns[0] for f in report.findings if f.code == "MISSING_REQUIRED_COLUMN"]
    assert cols == ["entity_id", "period_start"]


def test_missing_spec_driver_suggests_close_name():
    df = make_panel().rename(columns={"act_digital": "act_digitl"})
    f = find(validate(df, make_spec()), "MISSING_SPEC_COLUMN")
    assert "'act_digital'" in f.message and "did you mean 'act_digitl'" in f.message


def test_missing_spend_cols_target():
    spec = make_spec(spend_cols={"act_tv": "cost_tv"})
    f = find(validate(make_panel(), spec), "MISSING_SPEC_COLUMN")
    assert "'cost_tv'" in f.message and "act_tv" in f.message


def test_role_conflict_target_as_control():
    spec = make_spec(controls=["ctrl_price_index", "sales"])
    f = find(validate(make_panel(), spec), "ROLE_CONFLICT")
    assert "'sales'" in f.message and "target" in f.message and "control" in f.message


def test_entity_id_missing():
    df = make_panel()
    df["entity_id"] = df["entity_id"].astype(object)
    df.loc[[4, 9], "entity_id"] = None
    f = find(validate(df, make_spec()), "ENTITY_ID_MISSING")
    assert f.rows == [4, 9] and "entity_id" in f.message


# --------------------------------------------------------------------------- dates


def test_date_unparseable():
    df = make_panel()
    df.loc[7, "period_start"] = "week 7"
    report = validate(df, make_spec())
    f = find(report, "DATE_UNPARSEABLE")
    assert f.rows == [7] and "'week 7'" in f.message and "period_start" in f.message
    assert "CHECKS_SKIPPED" in report.codes()


def test_date_excel_serial_hint():
    df = make_panel()
    df.loc[3, "period_start"] = "44564"
    f = find(validate(df, make_spec()), "DATE_UNPARSEABLE")
    assert "Excel" in f.message


def test_date_missing():
    df = make_panel()
    df.loc[5, "period_start"] = ""
    f = find(validate(df, make_spec()), "DATE_MISSING")
    assert f.rows == [5]


def test_date_mixed_formats():
    df = make_panel()
    df.loc[[10, 11], "period_start"] = pd.to_datetime(df.loc[[10, 11], "period_start"]).dt.strftime("%d/%m/%Y")
    f = find(validate(df, make_spec()), "DATE_MIXED_FORMATS")
    assert f.severity == "error"
    assert "YYYY-MM-DD" in f.message and "DD/MM/YYYY" in f.message
    assert f.rows == [10, 11]


def test_day_month_order_read_from_values_and_ambiguous_warned():
    df = make_panel()
    df["period_start"] = pd.to_datetime(df["period_start"]).dt.strftime("%d/%m/%Y")
    report = validate(df, make_spec())
    assert report.ok and "DATE_AMBIGUOUS_FORMAT" not in report.codes()
    assert report.date_start == "2022-01-03"
    monthly = make_panel(n_periods=12, start="2022-01-01", freq="MS")
    monthly["period_start"] = pd.to_datetime(monthly["period_start"]).dt.strftime("%d/%m/%Y")
    r2 = validate(monthly.iloc[:3], make_spec(grain="MONTH"))
    f = find(r2, "DATE_AMBIGUOUS_FORMAT")
    assert "DD/MM/YYYY" in f.message and r2.date_end == "2022-03-01"


# --------------------------------------------------------------------------- values


def test_non_numeric_values_named_with_rows_and_values():
    df = to_text(make_panel(), "act_tv")
    df.loc[4, "act_tv"] = "n.a."
    df.loc[17, "act_tv"] = "1,200"
    df.loc[52, "act_tv"] = "—"
    f = find(validate(df, make_spec()), "NON_NUMERIC_VALUE")
    assert f.message.startswith("column 'act_tv' has 3 non-numeric values")
    assert "4, 17, 52" in f.message and "'1,200'" in f.message and "'—'" in f.message
    assert f.rows == [4, 17, 52]
    assert "thousands" in f.remedy or "decimal" in f.remedy


def test_na_tokens_are_missing_values_not_non_numeric():
    df = to_text(make_panel(), "ctrl_price_index")
    df.loc[3, "ctrl_price_index"] = "n/a"
    df.loc[8, "ctrl_price_index"] = ""
    report = validate(df, make_spec())
    f = find(report, "MISSING_VALUE")
    assert "'ctrl_price_index' has 2 missing values" in f.message and f.rows == [3, 8]
    assert "NON_NUMERIC_VALUE" not in report.codes()


def test_nan_in_numeric_column():
    df = make_panel()
    df.loc[[2, 5], "sales"] = np.nan
    f = find(validate(df, make_spec()), "MISSING_VALUE")
    assert "'sales'" in f.message and f.rows == [2, 5]


def test_infinite_value():
    df = make_panel()
    df.loc[6, "act_digital"] = np.inf
    f = find(validate(df, make_spec()), "INFINITE_VALUE")
    assert "'act_digital'" in f.message and f.rows == [6]


@pytest.mark.parametrize("col", ["sales", "act_tv", "spend_digital"])
def test_negative_values(col):
    df = make_panel()
    df.loc[[1, 30], col] = -5.0
    f = find(validate(df, make_spec()), "NEGATIVE_VALUE")
    assert f.columns == [col] and f.rows == [1, 30] and "-5" in f.message


def test_negative_control_is_allowed():
    df = make_panel()
    df["ctrl_price_index"] = df["ctrl_price_index"] - 200
    assert "NEGATIVE_VALUE" not in validate(df, make_spec()).codes()


# --------------------------------------------------------------------------- time


def test_duplicate_period():
    df = make_panel()
    df = pd.concat([df, df.iloc[[5]]], ignore_index=True)
    f = find(validate(df, make_spec()), "DUPLICATE_PERIOD")
    assert f.rows == [5, 480] and "store_1" in f.message


def test_grain_mismatch_monthly_data_weekly_spec():
    df = make_panel(n_periods=48, start="2020-01-01", freq="MS")
    f = find(validate(df, make_spec()), "GRAIN_MISMATCH")
    assert "monthly" in f.message and "grain: MONTH" in f.remedy


def test_grain_mismatch_daily():
    df = make_panel(n_periods=200, freq="D")
    f = find(validate(df, make_spec()), "GRAIN_MISMATCH")
    assert "daily" in f.message


def test_weekly_dates_on_other_weekday():
    df = make_panel()
    df.loc[20, "period_start"] = (pd.Timestamp(df.loc[20, "period_start"]) + pd.Timedelta(days=2)).strftime("%Y-%m-%d")
    report = validate(df, make_spec())
    f = find(report, "PERIOD_NOT_ALIGNED")
    assert f.severity == "warning" and f.rows == [20]
    assert "Wednesday" in f.message and "Monday" in f.message
    assert report.ok


def test_monthly_not_month_start():
    df = make_panel(n_periods=48, start="2020-01-31", freq="ME")
    report = validate(df, make_spec(grain="MONTH"))
    f = find(report, "PERIOD_NOT_ALIGNED")
    assert "1st of the month" in f.message
    assert report.ok


def test_duplicate_after_alignment():
    df = make_panel()
    # store_1 week 10 also reported on the Wednesday of week 9 -> two rows in one week
    df.loc[9, "period_start"] = (pd.Timestamp(df.loc[8, "period_start"]) + pd.Timedelta(days=2)).strftime("%Y-%m-%d")
    f = find(validate(df, make_spec()), "DUPLICATE_PERIOD_AFTER_ALIGNMENT")
    assert f.rows == [8, 9]


def test_entity_gap_warning_and_brand_gap_error():
    df = make_panel()
    d = pd.to_datetime(df["period_start"])
    gap_day = d.iloc[100]
    one = df[~((df["entity_id"] == "store_2") & (d == gap_day))]
    r1 = validate(one, make_spec())
    f = find(r1, "ENTITY_PERIOD_GAP")
    assert "store_2" in f.message and gap_day.strftime("%Y-%m-%d") in f.message
    assert r1.ok
    allgone = df[d != gap_day]
    f2 = find(validate(allgone, make_spec()), "BRAND_PERIOD_GAP")
    assert f2.severity == "error" and gap_day.strftime("%Y-%m-%d") in f2.message


def test_brand_gap_before_windows_is_warning():
    df = make_panel()
    d = pd.to_datetime(df["period_start"])
    f = find(validate(df[d != d.iloc[3]], make_spec()), "BRAND_PERIOD_GAP")
    assert f.severity == "warning"


def test_entity_partial_coverage_and_few_rows():
    df = make_panel()
    late = (df["entity_id"] == "store_3") & (df.groupby("entity_id").cumcount() < 90)
    report = validate(df[~late], make_spec())
    f = find(report, "ENTITY_PARTIAL_COVERAGE")
    assert "store_3" in f.message
    f2 = find(report, "ENTITY_FEW_ROWS")
    assert "'store_3': 70" in f2.message


def test_too_few_periods_error():
    df = make_panel(n_periods=10)
    report = validate(df, make_spec())
    f = find(report, "TOO_FEW_PERIODS")
    assert "10 weeks" in f.message and "12 parameters" in f.message
    assert f.details["n_parameters"] == 2 + 1 + 4 + 1 + 4


def test_short_history_and_low_ratio():
    df = make_panel(n_periods=40)
    report = validate(df, make_spec())
    f = find(report, "SHORT_HISTORY")
    assert f.severity == "warning" and "no carryover" in f.message
    g = find(report, "LOW_DATA_PARAMETER_RATIO")
    assert g.details["n_estimation"] == 40
    assert report.ok


def test_short_carryover():
    df = make_panel(n_periods=115)  # 24 months estimation + ~2 of 6 carryover months
    f = find(validate(df, make_spec()), "SHORT_HISTORY")
    assert "carryover has 11 weeks instead of 26 (6 months)" in f.message


def test_two_whole_years_of_weeks_are_not_short_history():
    """104 Mondays with 12 + 12 month windows fill them exactly: the boundaries are snapped to week starts."""
    spec = make_spec(windows={"carryover_months": 12, "estimation_months": 12})
    report = validate(make_panel(n_periods=104, start="2021-01-25"), spec)
    assert "SHORT_HISTORY" not in report.codes()
    # 100 weeks ending on the same Monday really are short: 48 of the carryover window's 52 weeks
    f = find(validate(make_panel(n_periods=100, start="2021-02-22"), spec), "SHORT_HISTORY")
    assert f.severity == "warning" and f.details["carryover_start"] == "2021-01-25"
    assert "data starts 2021-02-22" in f.message and "carryover has 48 weeks instead of 52 (12 months)" in f.message


# --------------------------------------------------------------------------- series content


def test_target_all_zero_and_constant():
    df = make_panel()
    df["sales"] = 0.0
    assert find(validate(df, make_spec()), "TARGET_ALL_ZERO").severity == "error"
    df["sales"] = 7.0
    assert find(validate(df, make_spec()), "TARGET_CONSTANT").severity == "error"


def test_channel_zero_constant_and_spend_zero():
    df = make_panel()
    df["act_tv"] = 0.0
    df["spend_tv"] = 0.0
    df["act_digital"] = 5.0
    report = validate(df, make_spec())
    assert find(report, "CHANNEL_ALL_ZERO").columns == ["act_tv"]
    assert find(report, "CHANNEL_CONSTANT").columns == ["act_digital"]
    assert "'spend_tv'" in find(report, "SPEND_ALL_ZERO").message
    assert report.ok


def test_channel_zero_only_in_estimation_window_is_flagged():
    df = make_panel()
    d = pd.to_datetime(df["period_start"])
    df.loc[d >= d.max() - pd.Timedelta(weeks=110), "act_tv"] = 0.0
    f = find(validate(df, make_spec()), "CHANNEL_ALL_ZERO")
    assert "estimation window" in f.message


def test_control_constant_is_error():
    df = make_panel()
    df["ctrl_price_index"] = 100.0
    f = find(validate(df, make_spec()), "CONTROL_CONSTANT")
    assert f.severity == "error" and "'ctrl_price_index'" in f.message


def test_driver_without_spend_and_spend_without_driver():
    df = make_panel().rename(columns={"spend_digital": "spend_print"})
    report = validate(df, make_spec())
    f = find(report, "DRIVER_WITHOUT_SPEND")
    assert "'act_digital'" in f.message and "spend_digital" in f.message
    g = find(report, "SPEND_WITHOUT_DRIVER")
    assert g.severity == "info" and "'spend_print'" in g.message


def test_spend_cols_override_maps_spend():
    df = make_panel().rename(columns={"spend_tv": "cost_tv"})
    report = validate(df, make_spec(spend_cols={"act_tv": "cost_tv"}))
    assert report.roles["spend"]["act_tv"] == "cost_tv"
    assert "DRIVER_WITHOUT_SPEND" not in report.codes()


def test_spend_with_zero_activity():
    df = make_panel()
    df.loc[[3, 9], "act_tv"] = 0.0
    f = find(validate(df, make_spec()), "SPEND_WITH_ZERO_ACTIVITY")
    assert f.rows == [3, 9] and "'spend_tv'" in f.message and "'act_tv'" in f.message


def test_near_duplicate_drivers():
    df = make_panel()
    df["act_digital"] = df["act_tv"] * 2 + 1
    f = find(validate(df, make_spec()), "DRIVERS_COLLINEAR")
    assert set(f.columns) == {"act_tv", "act_digital"} and f.details["correlation"] > 0.99


def test_sales_outlier():
    df = make_panel()
    df.loc[40, "sales"] = df.loc[40, "sales"] * 1000
    f = find(validate(df, make_spec()), "SALES_OUTLIER")
    assert f.rows == [40] and "'sales'" in f.message and "store_1" in f.message


def test_unused_columns_listed():
    df = make_panel()
    df["act_radio"] = 1.0
    f = find(validate(df, make_spec()), "UNUSED_COLUMN")
    assert "'act_radio'" in f.message


# --------------------------------------------------------------------------- report behaviour


def test_raise_if_errors_lists_code_column_and_remedy():
    df = make_panel().rename(columns={"sales": "revenue"})
    df.loc[4, "act_tv"] = -1.0
    report = validate(df, make_spec())
    assert not report.ok
    with pytest.raises(DataValidationError) as exc:
        report.raise_if_errors()
    msg = str(exc.value)
    assert "MISSING_REQUIRED_COLUMN [sales]" in msg and "NEGATIVE_VALUE [act_tv]" in msg
    assert "Fix:" in msg and "target_col" in msg


def test_table_sorted_errors_first():
    df = make_panel()
    df["act_digital"] = df["act_tv"] * 2
    df.loc[2, "sales"] = np.nan
    t = validate(df, make_spec()).table()
    assert list(t.columns) == ["severity", "code", "columns", "message", "remedy"]
    assert t["severity"].iloc[0] == "error"
    assert t["severity"].tolist() == sorted(t["severity"], key=["error", "warning", "info"].index)


def test_overview_table():
    t = validate(make_panel(), make_spec()).overview_table()
    v = dict(zip(t["item"], t["value"]))
    assert v["rows"] == "480" and v["entities"] == "3" and v["date range"] == "2022-01-03 – 2025-01-20"
    assert v["model parameters"] == "12" and v["estimation periods"] == "104"


# --------------------------------------------------------------------------- reading, then validating


def test_csv_roundtrip_validates_and_parquet_safe(tmp_path):
    df = make_panel()
    p = tmp_path / "d.csv"
    df.to_csv(p, index=False)
    raw = load_raw(p)
    assert validate(raw, make_spec()).ok
    mixed = raw.copy()
    mixed["act_tv"] = mixed["act_tv"].astype(object)
    mixed.loc[0, "act_tv"] = "n/a"
    out = tmp_path / "raw.parquet"
    parquet_safe(mixed).to_parquet(out, index=False)
    back = pd.read_parquet(out)
    assert back["act_tv"].iloc[0] == "n/a"
    assert find(validate(back, make_spec()), "MISSING_VALUE").rows == [0]


# --------------------------------------------------------------------------- overview figure (mmm_lib.plots.data)


def test_raw_overview_caps_legend_and_survives_bad_data():
    from matplotlib.figure import Figure

    from mmm_lib.plots.data import plot_raw_overview

    fig = plot_raw_overview(make_panel(n_entities=20, n_periods=60), make_spec(), max_entities=5)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(labels) == 6 and "15 other entities" in labels
    bad = to_text(make_panel(), "act_tv")
    bad.loc[3, "act_tv"] = "n/a"
    bad.loc[5, "period_start"] = "garbage"
    assert len(plot_raw_overview(bad, make_spec()).axes) == 3
    missing = plot_raw_overview(make_panel().drop(columns=["sales"]), make_spec())
    assert "no target column" in missing.axes[0].texts[0].get_text()


def test_without_spec_window_checks_wait_for_the_run():
    df = make_panel(n_periods=20)
    d = pd.to_datetime(df["period_start"])
    report = validate(df[d != d.iloc[10]])
    assert not {"SHORT_HISTORY", "TOO_FEW_PERIODS", "LOW_DATA_PARAMETER_RATIO", "DATA_PARAMETER_RATIO"} & set(report.codes())
    assert find(report, "BRAND_PERIOD_GAP").severity == "warning"
    assert report.ok


# --------------------------------------------------------------------------- foreign formats (the spec's `columns` mapping)


def meridian_frame(n_geos: int = 3, n_weeks: int = 104) -> pd.DataFrame:
    from mmm_lib.sample import meridian_like

    return meridian_like(n_geos=n_geos, n_weeks=n_weeks)


def meridian_spec(**kw):
    raw = {"data_path": "x.csv", "target_col": "conversions",
           "columns": {"entity": "geo", "period": "time", "target_multiplier": "revenue_per_conversion"},
           "drivers": ["Channel0_impression", "Channel1_impression"],
           "spend_cols": {"Channel0_impression": "Channel0_spend", "Channel1_impression": "Channel1_spend"},
           "controls": ["competitor_sales_control"], "windows": {"carryover_months": 3, "estimation_months": 18}}
    raw.update(kw)
    return parse_spec(raw)


def robyn_frame(n_weeks: int = 156) -> pd.DataFrame:
    from mmm_lib.sample import robyn_like

    return robyn_like(n_weeks=n_weeks)


def robyn_spec(**kw):
    raw = {"data_path": "x.csv", "target_col": "revenue", "columns": {"entity": None, "period": "DATE"},
           "drivers": ["tv_S", "ooh_S", "search_S", "facebook_I"],
           "spend_cols": {"tv_S": "tv_S", "ooh_S": "ooh_S", "search_S": "search_S", "facebook_I": "facebook_S"},
           "controls": ["competitor_sales_B", "newsletter"], "windows": {"carryover_months": 6, "estimation_months": 24}}
    raw.update(kw)
    return parse_spec(raw)


def test_meridian_shaped_file_passes_through_the_mapping():
    report = validate(meridian_frame(), meridian_spec())
    assert report.ok, report.table()
    assert set(report.codes()) == {"DATA_PARAMETER_RATIO", "UNUSED_COLUMN"}  # population is not used
    assert report.roles["target"] == "revenue" and report.n_entities == 3
    v = dict(zip(*report.overview_table()[["item", "value"]].to_dict("list").values()))
    assert v["entity column"] == "geo" and v["period column"] == "time"
    assert v["target"] == "revenue = conversions × revenue_per_conversion"
    s = report.summary()
    assert s["columns"]["target_multiplier"] == "revenue_per_conversion" and "source" not in s


def test_robyn_shaped_file_is_one_entity_and_spend_only_drivers_are_their_own_spend():
    report = validate(robyn_frame(), robyn_spec())
    assert report.ok, report.table()
    assert report.codes() == ["DATA_PARAMETER_RATIO"]  # no ROLE_CONFLICT for tv_S: tv_S
    assert report.n_entities == 1 and report.n_periods == 156


def test_missing_mapped_columns_are_named_as_in_the_spec_with_close_matches():
    df = meridian_frame().rename(columns={"geo": "Geo", "time": "week", "revenue_per_conversion": "rev_per_conversion"})
    report = validate(df, meridian_spec())
    hits = [f for f in report.findings if f.code == "MISSING_REQUIRED_COLUMN"]
    assert [f.columns for f in hits] == [["geo"], ["time"], ["revenue_per_conversion"]]
    assert "entity column 'geo' (columns.entity in the spec) is missing — did you mean 'Geo'?" in hits[0].message
    assert "columns.period" in hits[1].remedy and "columns.entity: null" in hits[0].remedy
    assert "did you mean 'rev_per_conversion'" in hits[2].message


def test_standard_file_without_entity_column_is_told_about_columns_entity_null():
    f = find(validate(make_panel(n_entities=1).drop(columns=["entity_id"]), make_spec()), "MISSING_REQUIRED_COLUMN")
    assert f.columns == ["entity_id"] and "columns.entity: null" in f.remedy


def test_date_and_value_messages_use_the_files_own_names():
    df = meridian_frame().astype({"time": object, "revenue_per_conversion": object})
    df.loc[4, "time"] = "next week"
    df.loc[7, "revenue_per_conversion"] = -3.0
    report = validate(df, meridian_spec())
    f = find(report, "DATE_UNPARSEABLE")
    assert f.message.startswith("column 'time' has 1 value") and f.columns == ["time"] and f.rows == [4]
    f = find(report, "NEGATIVE_VALUE")
    assert "'revenue_per_conversion' (target multiplier)" in f.message and f.rows == [7]


def test_duplicate_period_in_a_one_series_file_names_the_date_column():
    df = robyn_frame()
    df = pd.concat([df, df.iloc[[10]]], ignore_index=True)
    f = find(validate(df, robyn_spec()), "DUPLICATE_PERIOD")
    assert "repeat a 'DATE' date" in f.message and f.columns == ["DATE"]


def test_constant_product_target_is_reported_with_its_sources():
    df = meridian_frame(n_geos=1)
    df["conversions"] = 10.0
    df["revenue_per_conversion"] = 2.0
    f = find(validate(df, meridian_spec()), "TARGET_CONSTANT")
    assert "'revenue' (= conversions × revenue_per_conversion)" in f.message
    assert f.columns == ["conversions", "revenue_per_conversion"]


def test_role_conflicts_under_a_mapping():
    f = find(validate(meridian_frame(), meridian_spec(controls=["geo"])), "ROLE_CONFLICT")
    assert "'geo'" in f.message and "entity key" in f.message
    # a driver may be its own spend, but not another driver's spend
    spec = robyn_spec(spend_cols={"tv_S": "ooh_S"})
    f = find(validate(robyn_frame(), spec), "ROLE_CONFLICT")
    assert "'ooh_S'" in f.message and "spend of tv_S" in f.message


# --------------------------------------------------------------------------- VIF, delimiter, encoding


def test_high_vif_names_the_columns_and_values():
    df = make_panel()
    rng = np.random.default_rng(3)
    # a control that nearly restates the two drivers (each entity's mix, plus a little noise)
    df["ctrl_media_mix"] = 0.5 * df["act_tv"] + 0.5 * df["act_digital"] + rng.normal(0, 20, len(df))
    report = validate(df, make_spec(controls=["ctrl_price_index", "ctrl_media_mix"]))
    f = find(report, "HIGH_VIF")
    assert f.severity == "warning"
    assert set(f.columns) == {"act_tv", "act_digital", "ctrl_media_mix"}
    assert "variance inflation factor above 10" in f.message and "estimation window" in f.message
    assert f.details["vif"]["ctrl_media_mix"] > 10 > f.details["vif"]["ctrl_price_index"]
    assert f"'ctrl_media_mix': {f.details['vif']['ctrl_media_mix']:.1f}" in f.message


def test_vif_is_one_for_independent_columns_and_inf_for_exact_dependence():
    from mmm_lib.validation import vif

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(2000, 3)), columns=list("abc"))
    assert vif(x).to_numpy() == pytest.approx([1, 1, 1], abs=0.02)
    x["d"] = x["a"] + 2 * x["b"]
    assert np.isinf(vif(x)["d"]) and np.isinf(vif(x)["a"]) and vif(x)["c"] == pytest.approx(1, abs=0.02)


@pytest.mark.parametrize("sep, name", [(";", "';'"), ("\t", "tab"), ("|", "'|'")])
def test_table_read_with_the_wrong_delimiter_is_reported_with_the_detected_one(sep, name):
    df = make_panel(n_periods=5)
    header = sep.join(df.columns)
    one_column = pd.DataFrame({header: [sep.join(map(str, r)) for r in df.itertuples(index=False)]})
    report = validate(one_column, make_spec())
    assert report.codes() == ["WRONG_DELIMITER", "CHECKS_SKIPPED"]
    f = report.findings[0]
    assert f.severity == "error" and f.details["detected_delimiter"] == sep
    assert f"the file is {name}-separated" in f.message and f"read it as {name}-separated" in f.remedy
    assert f.details["fields"][:2] == ["entity_id", "period_start"]


def test_mojibake_names_are_reported_with_the_fix():
    df = make_panel().rename(columns={"ctrl_price_index": "ctrl_prix_Ã©tÃ©"})
    df["entity_id"] = df["entity_id"].replace({"store_1": "MÃ¼nchen"})
    f = find(validate(df, make_spec(controls=["ctrl_prix_Ã©tÃ©"])), "ENCODING_SUSPECT")
    assert f.severity == "warning" and "'ctrl_prix_Ã©tÃ©'" in f.message and "'MÃ¼nchen'" in f.message
    assert "UTF-8" in f.remedy and f.columns == ["ctrl_prix_Ã©tÃ©"]


def test_non_utf8_file_is_read_and_its_guessed_encoding_reported(tmp_path):
    df = make_panel(n_periods=160)
    df["entity_id"] = df["entity_id"].replace({"store_1": "Zürich"})
    p = tmp_path / "d.csv"
    p.write_bytes(df.to_csv(index=False, sep=";").encode("cp1252"))
    raw = load_raw(p)
    assert raw.attrs["source_format"] == {"format": "csv", "delimiter": ";", "encoding": "cp1252"}
    report = validate(raw, make_spec())
    f = find(report, "ENCODING_SUSPECT")
    assert f.severity == "info" and "read as cp1252" in f.message and "'Zürich'" in f.message
    assert report.ok


def test_every_code_is_documented_in_the_module_and_the_readme():
    import inspect
    import re
    from pathlib import Path

    import mmm_lib.validation as v

    documented = re.findall(r"^\| ([A-Z_]+) \| (error|warning|info|warning / info|error / warning) \|", v.__doc__, re.M)
    codes = [c for c, _ in documented]
    emitted = set(re.findall(r'"(?:error|warning|info)", "([A-Z_]+)"', inspect.getsource(v))) | {"BRAND_PERIOD_GAP"}
    assert emitted == set(codes)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Validation checks", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| ([A-Z_]+) \|", section, re.M) == codes


def test_meridian_parquet_with_datetime_time_column_validates(tmp_path):
    df = meridian_frame()
    df["time"] = pd.to_datetime(df["time"])
    p = tmp_path / "geo.parquet"
    df.to_parquet(p, index=False)
    report = validate(load_raw(p, meridian_spec()), meridian_spec())
    assert report.ok and report.n_periods == 104 and report.date_start == "2021-01-25"

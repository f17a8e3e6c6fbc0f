"""columns: the spec's mapping turns Meridian- and Robyn-shaped frames into the standard columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmm_lib.columns import (
    SINGLE_ENTITY,
    ColumnMappingError,
    column_map,
    standard_name_conflicts,
    standard_spec,
    to_standard_columns,
)
from mmm_lib.sample import meridian_like, robyn_like
from mmm_lib.spec import SpecError, parse_spec


def meridian_spec(**columns):
    cols = {"entity": "geo", "period": "time", "target_multiplier": "revenue_per_conversion", **columns}
    return parse_spec({
        "data_path": "x.csv", "columns": cols, "target_col": "conversions",
        "drivers": ["Channel0_impression", "Channel1_impression"],
        "spend_cols": {"Channel0_impression": "Channel0_spend", "Channel1_impression": "Channel1_spend"},
        "controls": ["competitor_sales_control"],
    })


def robyn_spec(**kw):
    raw = {"data_path": "x.csv", "columns": {"entity": None, "period": "DATE"}, "target_col": "revenue",
           "drivers": ["tv_S", "facebook_I"], "spend_cols": {"tv_S": "tv_S", "facebook_I": "facebook_S"},
           "controls": ["newsletter"]}
    raw.update(kw)
    return parse_spec(raw)


def test_meridian_frame_becomes_standard_columns_with_revenue_target():
    raw = meridian_like(n_geos=2, n_weeks=10)
    out = to_standard_columns(raw, meridian_spec())
    assert list(out.columns) == ["entity_id", "period_start", "revenue", "Channel0_impression", "Channel1_impression",
                                 "Channel0_spend", "Channel1_spend", "competitor_sales_control"]
    assert out["entity_id"].tolist() == raw["geo"].tolist()
    assert out["period_start"].tolist() == raw["time"].tolist()
    assert out["revenue"].to_numpy() == pytest.approx((raw["conversions"] * raw["revenue_per_conversion"]).to_numpy())
    assert "population" not in out  # unused columns are dropped


def test_target_name_renames_the_product():
    out = to_standard_columns(meridian_like(n_geos=1, n_weeks=4), meridian_spec(target_name="sales_value"))
    assert "sales_value" in out and "revenue" not in out
    assert meridian_spec(target_name="sales_value").modelled_target == "sales_value"


def test_file_without_entity_column_is_one_entity_and_driver_can_be_its_own_spend():
    raw = robyn_like(n_weeks=20)
    out = to_standard_columns(raw, robyn_spec())
    assert (out["entity_id"] == SINGLE_ENTITY).all() and len(out) == 20
    assert list(out.columns) == ["entity_id", "period_start", "revenue", "tv_S", "facebook_I", "facebook_S", "newsletter"]
    assert out["tv_S"].equals(raw["tv_S"])


def test_defaults_reproduce_the_standard_columns():
    seed = pd.DataFrame({"entity_id": ["a"], "period_start": ["2024-01-01"], "sales": [1.0], "act_tv": [2.0],
                         "spend_tv": [3.0], "other": [4]})
    spec = parse_spec({"data_path": "x.csv", "drivers": ["act_tv"]})
    assert column_map(spec).is_default
    out = to_standard_columns(seed, spec)
    assert list(out.columns) == ["entity_id", "period_start", "sales", "act_tv", "spend_tv"]
    assert standard_spec(spec) == spec


def test_missing_mapped_column_names_it_its_spec_key_and_close_matches():
    raw = meridian_like(n_geos=1, n_weeks=4).rename(columns={"geo": "Geo", "revenue_per_conversion": "rev_per_conv"})
    with pytest.raises(ColumnMappingError) as exc:
        to_standard_columns(raw, meridian_spec())
    msg = str(exc.value)
    assert "entity column 'geo' (columns.entity in the spec) is not in the file — did you mean 'Geo'?" in msg
    assert "'revenue_per_conversion' (columns.target_multiplier in the spec)" in msg
    # not strict (the overview figure): the rest is still mapped
    out = to_standard_columns(raw, meridian_spec(), strict=False)
    assert "entity_id" not in out and "revenue" not in out and "period_start" in out


def test_standard_spec_speaks_the_standard_vocabulary():
    s = standard_spec(meridian_spec())
    assert s.target_col == "revenue" and s.columns.entity == "entity_id" and s.columns.target_multiplier is None
    assert s.drivers == ["Channel0_impression", "Channel1_impression"]


def test_role_column_named_like_a_standard_key_conflicts_with_the_mapping():
    spec = robyn_spec(controls=["period_start"])
    assert [c for c, _ in standard_name_conflicts(spec)] == ["period_start"]
    raw = robyn_like(n_weeks=4).rename(columns={"newsletter": "period_start"})
    with pytest.raises(ColumnMappingError, match="standard name"):
        to_standard_columns(raw, spec)
    clash = meridian_spec(target_name="Channel0_impression")
    assert "also a driver" in standard_name_conflicts(clash)[0][1]


@pytest.mark.parametrize(
    "columns, needle",
    [({"target_name": "revenue"}, "set target_multiplier too"),
     ({"entity": "d", "period": "d"}, "must be different columns"),
     ({"entity": " "}, "cannot be empty"),
     ({"entitty": "geo"}, "did you mean 'entity'")],
)
def test_bad_columns_section_is_refused(columns, needle):
    with pytest.raises(SpecError, match=needle):
        parse_spec({"data_path": "x.csv", "drivers": ["act_tv"], "columns": columns})


def test_multiplier_cannot_be_the_target_itself():
    with pytest.raises(SpecError, match="target column 'conversions' itself"):
        parse_spec({"data_path": "x.csv", "drivers": ["a"], "target_col": "conversions",
                    "columns": {"target_multiplier": "conversions"}})


def test_look_alike_generators_are_deterministic_and_shaped_like_the_originals():
    m = meridian_like()
    assert m.shape == (5 * 104, 10) and m["geo"].nunique() == 5
    assert list(m.columns) == ["geo", "time", "Channel0_impression", "Channel0_spend", "Channel1_impression",
                               "Channel1_spend", "competitor_sales_control", "conversions", "revenue_per_conversion",
                               "population"]
    r = robyn_like()
    assert r.shape == (156, 9) and "entity_id" not in r
    pd.testing.assert_frame_equal(r, robyn_like())
    assert (pd.to_datetime(r["DATE"]).dt.day_of_week == 0).all()
    assert np.all(m[["conversions", "Channel0_spend", "Channel1_spend"]].to_numpy() >= 0)

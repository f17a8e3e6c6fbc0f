from pathlib import Path

import pytest

from mmm_lib.spec import SpecError, load_spec, parse_spec

REPO = Path(__file__).resolve().parent.parent


def test_example_spec_loads_with_standard_defaults_and_resolved_path():
    spec = load_spec(REPO / "params" / "example.yaml")
    assert spec.grain == "WEEK" and spec.target_col == "sales"
    assert spec.drivers == ["act_tv", "act_digital", "act_radio"]
    assert spec.decay_for("act_tv") == 0.7 and spec.decay_for("act_radio") == 0.5
    assert Path(spec.data_path).is_absolute() and Path(spec.data_path).name == "mmm_sample_small.csv"


def test_standard_defaults_when_keys_omitted():
    spec = parse_spec({"dataset_id": "d1", "drivers": ["act_tv"]})
    assert (spec.draws, spec.tune, spec.chains, spec.target_accept, spec.random_seed) == (1000, 1000, 2, 0.9, 42)
    fc = spec.feature_config
    assert (fc.adstock.decay_default, fc.adstock.max_lag, fc.saturation.K, fc.saturation.S, fc.seasonality.K) == (
        0.5, 13, 0.5, 1.0, 2)
    assert (spec.windows.carryover_months, spec.windows.estimation_months) == (12, 12)


def test_unknown_key_is_rejected_with_hint():
    with pytest.raises(SpecError, match=r"unknown key 'draw'.*did you mean 'draws'"):
        parse_spec({"dataset_id": "d1", "drivers": ["act_tv"], "draw": 5})


def test_unknown_nested_key_is_rejected_with_hint():
    with pytest.raises(SpecError, match=r"decay_defualt.*did you mean 'decay_default'"):
        parse_spec({"dataset_id": "d", "drivers": ["act_tv"],
                    "feature_config": {"adstock": {"decay_defualt": 0.3}}})


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"drivers": ["act_tv"]}, "exactly one of dataset_id"),
        ({"dataset_id": "d", "data_path": "x.csv", "drivers": ["act_tv"]}, "exactly one of dataset_id"),
        ({"dataset_id": "d", "drivers": []}, "drivers is empty"),
        ({"dataset_id": "d", "drivers": ["act_tv"], "grain": "DAY"}, "grain"),
        ({"dataset_id": "d", "drivers": ["act_tv"], "target_accept": 1.5}, "target_accept"),
        ({"dataset_id": "d", "drivers": ["act_tv"], "controls": ["act_tv"]}, "both drivers and controls"),
        ({"dataset_id": "d", "drivers": ["act_tv"],
          "feature_config": {"adstock": {"per_channel": {"act_radio": 0.2}}}}, "not in drivers"),
        ({"dataset_id": "d", "drivers": ["act_tv"],
          "feature_config": {"adstock": {"per_channel": {"act_tv": 1.2}}}}, "act_tv"),
    ],
)
def test_invalid_values_name_the_field(raw, fragment):
    with pytest.raises(SpecError, match=fragment):
        parse_spec(raw)


def test_overrides_apply_nested_values(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("data_path: d.csv\ndrivers: [act_tv]\n")
    spec = load_spec(p, ["draws=200", "windows.estimation_months=24", "drivers=[act_tv, act_radio]"])
    assert spec.draws == 200 and spec.windows.estimation_months == 24 and spec.drivers == ["act_tv", "act_radio"]
    assert spec.data_path == str((tmp_path / "d.csv").resolve())
    with pytest.raises(SpecError, match="key=value"):
        load_spec(p, ["draws"])


def test_yaml_is_loaded_safely(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("data_path: !!python/object/apply:os.system ['echo hacked']\ndrivers: [act_tv]\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(p)


def test_missing_spec_file_message(tmp_path):
    with pytest.raises(SpecError, match="run spec not found"):
        load_spec(tmp_path / "nope.yaml")


def test_columns_section_defaults_to_the_standard_names_and_takes_overrides(tmp_path):
    spec = parse_spec({"dataset_id": "d1", "drivers": ["act_tv"]})
    assert spec.columns.entity == "entity_id" and spec.columns.period == "period_start"
    assert spec.columns.target_multiplier is None and spec.modelled_target == "sales"
    p = tmp_path / "s.yaml"
    p.write_text("data_path: d.csv\ntarget_col: conversions\ndrivers: [tv_S]\nspend_cols: {tv_S: tv_S}\n"
                 "columns: {entity: geo, period: time, target_multiplier: revenue_per_conversion}\n")
    spec = load_spec(p, ["columns.entity=null", "columns.period=DATE"])
    assert spec.columns.entity is None and spec.columns.period == "DATE"
    assert spec.modelled_target == "revenue" and spec.spend_cols == {"tv_S": "tv_S"}
    assert load_spec(p, ["columns.target_name=gmv"]).modelled_target == "gmv"
    with pytest.raises(SpecError, match="unknown key 'columns.entiy' — did you mean 'entity'"):
        load_spec(p, ["columns.entiy=geo"])

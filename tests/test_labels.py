"""Tests for mmm_lib.labels and the run spec's ``labels``: what reports call channels and controls."""

import pytest

from mmm_lib.labels import display_name, display_names, run_labels
from mmm_lib.spec import SpecError, parse_spec


@pytest.mark.parametrize(
    "name, shown",
    [
        ("act_tv", "TV"),
        ("act_digital", "Digital"),
        ("act_radio", "Radio"),
        ("spend_ooh", "OOH"),
        ("act_paid_search", "Paid Search"),
        ("ctrl_price_index", "Price Index"),
        ("tv_S", "TV"),  # Robyn-style spend suffix
        ("facebook_I", "Facebook"),
        ("baseline", "Baseline"),
        ("act_", "Act"),  # nothing left after the prefix: the prefix is the name
        ("TikTok", "TikTok"),  # already capitalised words are kept as written
    ],
)
def test_default_display_names(name, shown):
    assert display_name(name) == shown


def test_spec_labels_win_and_others_keep_the_default():
    labels = {"act_tv": "Television"}
    assert display_name("act_tv", labels) == "Television"
    assert display_names(["act_tv", "act_digital"], labels) == {"act_tv": "Television", "act_digital": "Digital"}


def test_names_that_would_read_the_same_keep_their_column_names():
    assert display_names(["act_tv", "spend_tv", "act_radio"]) == {"act_tv": "act_tv", "spend_tv": "spend_tv",
                                                                   "act_radio": "Radio"}


def test_spec_labels_field_defaults_empty_and_validates_keys():
    base = {"dataset_id": "d1", "drivers": ["act_tv", "act_radio"], "controls": ["ctrl_price"]}
    assert parse_spec(base).labels == {}
    spec = parse_spec({**base, "labels": {"act_tv": "Television", "ctrl_price": "Price"}})
    assert spec.labels == {"act_tv": "Television", "ctrl_price": "Price"}
    with pytest.raises(SpecError, match=r"labels names \['act_tvv'\].*not in drivers"):
        parse_spec({**base, "labels": {"act_tvv": "TV"}})


def test_run_labels_reads_the_spec_and_tolerates_runs_without_one():
    class Run:
        spec = parse_spec({"dataset_id": "d1", "drivers": ["act_tv"], "labels": {"act_tv": "Television"}})

    assert run_labels(Run()) == {"act_tv": "Television"}
    assert run_labels(object()) == {}

"""Foreign formats end to end: Meridian- and Robyn-shaped files run through `mmm run` with only the
spec's column mapping (no renaming), and yield ROI for the mapped channels.

The files are look-alikes generated here (mmm_lib.sample.meridian_like / robyn_like), written to a
temporary folder next to their spec, so the run also exercises a data_path outside the repository.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from mmm_lib.runner import run_pipeline
from mmm_lib.sample import meridian_like, robyn_like

SMALL = ["draws=100", "tune=100"]

MERIDIAN_SPEC = {
    "data_path": "geo_media.csv",
    "columns": {"entity": "geo", "period": "time", "target_multiplier": "revenue_per_conversion"},
    "target_col": "conversions",
    "drivers": ["Channel0_impression", "Channel1_impression"],
    "spend_cols": {"Channel0_impression": "Channel0_spend", "Channel1_impression": "Channel1_spend"},
    "controls": ["competitor_sales_control"],
    "windows": {"carryover_months": 3, "estimation_months": 18},
}

ROBYN_SPEC = {
    "data_path": "dt_simulated_weekly.csv",
    "columns": {"entity": None, "period": "DATE"},
    "target_col": "revenue",
    "drivers": ["tv_S", "ooh_S", "search_S", "facebook_I"],
    "spend_cols": {"tv_S": "tv_S", "ooh_S": "ooh_S", "search_S": "search_S", "facebook_I": "facebook_S"},
    "controls": ["competitor_sales_B", "newsletter"],
    "windows": {"carryover_months": 6, "estimation_months": 24},
}


def _write(tmp_path, name, frame, spec):
    folder = tmp_path / name
    folder.mkdir()
    frame.to_csv(folder / spec["data_path"], index=False)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _run(spec_path, run_id):
    res = run_pipeline(spec_path, run_id, SMALL, log=lambda m: None)
    assert res.status == "completed", res.error
    return res


@pytest.mark.slow
def test_meridian_geo_file_runs_end_to_end_with_only_the_mapping(tmp_path):
    frame = meridian_like()
    spec_path = _write(tmp_path, "meridian", frame, MERIDIAN_SPEC)
    res = _run(spec_path, "meridian")

    summary = json.loads((res.run_dir / "validation_summary.json").read_text())
    assert summary["ok"] and summary["n_entities"] == 5 and summary["n_periods"] == 104
    assert summary["columns"]["entity"] == "geo" and summary["roles"]["target"] == "revenue"
    # The source is kept byte-for-byte, with its checksum.
    src = (tmp_path / "meridian" / "geo_media.csv").read_bytes()
    assert (res.run_dir / summary["source"]["file"]).read_bytes() == src
    assert summary["source"]["sha256"] == __import__("hashlib").sha256(src).hexdigest()

    info = json.loads((res.run_dir / "column_info.json").read_text())
    assert info["target"] == "revenue" and info["n_source_entities"] == 5
    canonical = pd.read_parquet(res.run_dir / "canonical_data.parquet")
    revenue = (frame["conversions"] * frame["revenue_per_conversion"]).groupby(frame["time"]).sum()
    got = canonical.set_index(canonical["period_start"].dt.strftime("%Y-%m-%d"))["revenue"]
    assert got.to_numpy() == pytest.approx(revenue.loc[got.index].to_numpy())

    roi = json.loads((res.run_dir / "roi_metrics.json").read_text())
    assert [c["channel"] for c in roi["channels"]] == MERIDIAN_SPEC["drivers"]
    assert [c["spend_col"] for c in roi["channels"]] == ["Channel0_spend", "Channel1_spend"]
    assert all(c["roi"] is not None and c["roi"] > 0 for c in roi["channels"])


@pytest.mark.slow
def test_robyn_wide_file_without_entity_runs_end_to_end(tmp_path):
    spec_path = _write(tmp_path, "robyn", robyn_like(), ROBYN_SPEC)
    res = _run(spec_path, "robyn")

    summary = json.loads((res.run_dir / "validation_summary.json").read_text())
    assert summary["ok"] and summary["n_entities"] == 1 and summary["n_periods"] == 156
    info = json.loads((res.run_dir / "column_info.json").read_text())
    assert info["spend"] == ROBYN_SPEC["spend_cols"] and info["n_source_entities"] == 1

    roi = json.loads((res.run_dir / "roi_metrics.json").read_text())
    assert [c["channel"] for c in roi["channels"]] == ROBYN_SPEC["drivers"]
    assert roi["channels_without_spend"] == []
    by = {c["channel"]: c for c in roi["channels"]}
    assert by["tv_S"]["spend_col"] == "tv_S" and by["facebook_I"]["spend_col"] == "facebook_S"
    assert all(c["roi"] is not None and c["roi_low"] <= c["roi"] <= c["roi_high"] for c in roi["channels"])

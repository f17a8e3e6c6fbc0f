"""The `mmm` command: JSON on stdout, clear errors, the dataset, run and output commands."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmm_lib.cli import main
from mmm_lib.storage import write_json

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "mmm_sample_small.csv"


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "mmm_lib", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "datasets" in out.stdout and "outputs" in out.stdout


def test_datasets_add_keeps_file_bytes_and_lists(capsys, outputs_root):
    assert main(["datasets", "add", str(SAMPLE), "--id", "sample"]) == 0
    meta = _json(capsys)
    assert meta["sha256"] == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    folder = outputs_root / "datasets" / "sample"
    assert (folder / "source.csv").read_bytes() == SAMPLE.read_bytes()
    assert (folder / "raw_data.parquet").is_file() and (folder / "validation_summary.json").is_file()
    assert meta["validation_ok"] is True

    assert main(["datasets", "list"]) == 0
    assert [d["dataset_id"] for d in _json(capsys)] == ["sample"]
    assert main(["datasets", "columns", "sample"]) == 0
    roles = {c["name"]: c["role"] for c in _json(capsys)["columns"]}
    assert roles["act_tv"] == "driver" and roles["spend_tv"] == "spend" and roles["sales"] == "target"
    assert main(["datasets", "raw", "sample", "--limit", "2"]) == 0
    assert len(_json(capsys)) == 2
    assert main(["datasets", "show", "sample"]) == 0
    assert _json(capsys)["validation"]["ok"] is True

    # Adding again is refused without --force.
    assert main(["datasets", "add", str(SAMPLE), "--id", "sample"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_dataset_in_use_is_not_deleted_unless_forced(capsys, outputs_root):
    assert main(["datasets", "add", str(SAMPLE), "--id", "used"]) == 0
    capsys.readouterr()
    write_json(outputs_root / "runs" / "r1" / "run_spec.json", {"dataset_id": "used"})
    assert main(["datasets", "rm", "used"]) == 1
    assert "used by runs ['r1']" in capsys.readouterr().err
    assert (outputs_root / "datasets" / "used").is_dir()
    assert main(["datasets", "rm", "used", "--force"]) == 0
    assert not (outputs_root / "datasets" / "used").exists()


@pytest.mark.parametrize("bad", ["../../etc", "a/b", "..", "/tmp/x"])
def test_traversal_ids_are_refused(capsys, bad, outputs_root):
    assert main(["datasets", "add", str(SAMPLE), "--id", bad]) == 1
    assert "not allowed" in capsys.readouterr().err
    assert main(["runs", "status", bad]) == 1
    assert main(["outputs", bad, "roi"]) == 1
    assert not any(outputs_root.parent.glob("etc"))


def test_runs_and_outputs_read_artifacts(capsys, outputs_root):
    run = outputs_root / "runs" / "r9"
    write_json(run / "status.json", {"run_id": "r9", "status": "completed", "stage": None})
    write_json(run / "run_spec.json", {"data_path": "x.csv"})
    write_json(run / "roi_metrics.json", {"interval": 0.9, "channels": []})
    assert main(["runs", "list"]) == 0
    assert _json(capsys)[0]["run_id"] == "r9"
    assert main(["outputs", "r9", "roi"]) == 0
    assert _json(capsys) == {"interval": 0.9, "channels": []}
    assert main(["outputs", "r9", "diagnostics"]) == 1
    assert "no diagnostics output yet" in capsys.readouterr().err
    assert main(["runs", "rm", "r9"]) == 0
    assert not run.exists()


def test_run_with_unknown_spec_key_exits_nonzero(tmp_path, capsys):
    p = tmp_path / "s.yaml"
    p.write_text(f"data_path: {SAMPLE}\ndrivers: [act_tv]\ndrawz: 10\n")
    assert main(["run", str(p)]) == 1
    assert "did you mean 'draws'" in capsys.readouterr().err


def test_sample_command_writes_data_and_truth(tmp_path, capsys):
    out, truth = tmp_path / "s.csv", tmp_path / "t.json"
    assert main(["sample", "--out", str(out), "--truth", str(truth), "--entities", "2", "--periods", "120"]) == 0
    assert out.is_file() and "roi" in json.loads(truth.read_text())


def test_datasets_add_with_a_spec_validates_a_foreign_format(tmp_path, capsys):
    import yaml

    from mmm_lib.sample import meridian_like

    csv = tmp_path / "geo_media.csv"
    frame = meridian_like()
    frame["geo"] = "00" + frame["geo"].astype(str)  # ids with leading zeros must survive
    frame.to_csv(csv, index=False)
    spec = tmp_path / "meridian.yaml"
    spec.write_text(yaml.safe_dump({
        "data_path": "geo_media.csv", "target_col": "conversions",
        "columns": {"entity": "geo", "period": "time", "target_multiplier": "revenue_per_conversion"},
        "drivers": ["Channel0_impression", "Channel1_impression"],
        "spend_cols": {"Channel0_impression": "Channel0_spend", "Channel1_impression": "Channel1_spend"},
        "controls": ["competitor_sales_control"]}))
    # Without the mapping the standard names are missing; with it the file is valid.
    assert main(["datasets", "add", str(csv), "--id", "plain"]) == 0
    assert _json(capsys)["validation_ok"] is False
    assert main(["datasets", "add", str(csv), "--id", "mer", "--spec", str(spec)]) == 0
    meta = _json(capsys)
    assert meta["validation_ok"] is True and meta["validated_with_spec"] == str(spec)
    assert main(["datasets", "raw", "mer", "--limit", "1"]) == 0
    assert str(_json(capsys)[0]["geo"]).startswith("00")
    assert main(["datasets", "columns", "mer"]) == 0
    roles = {c["name"]: c["role"] for c in _json(capsys)["columns"]}
    assert roles["geo"] == roles["time"] == "id" and roles["Channel0_impression"] == "driver"
    assert roles["Channel0_spend"] == "spend" and roles["conversions"] == "target" and roles["population"] == "other"

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


@pytest.mark.parametrize("command", ["console script", "module"])
def test_the_command_exits_with_mains_code_and_all_its_output(outputs_root, tmp_path, command):
    """`mmm` freezes what the run left before Python's exit (its collection then skips it): the exit code is
    still main's and everything printed reaches the reader."""
    mmm = Path(sys.executable).parent / "mmm"
    if command == "console script" and not mmm.exists():
        pytest.fail(f"{mmm} is missing: install the package (make env)")
    cmd = [str(mmm)] if command == "console script" else [sys.executable, "-m", "mmm_lib"]
    ok = subprocess.run([*cmd, "datasets", "add", str(SAMPLE), "--id", "sample"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["sha256"] == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    bad = subprocess.run([*cmd, "run", str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("error: run spec not found"), bad.stderr


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
    assert main(["runs", "rm", "r9", "--yes"]) == 0
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


def test_version_comes_from_package_metadata(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"mmm {version('mmm-notebooks')}"


def test_every_subcommand_and_option_has_help():
    import argparse

    from mmm_lib.cli import build_parser

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in action._choices_actions}
                for name, child in action.choices.items():
                    assert helps.get(name), f"`mmm {' '.join(path + [name])}` has no help"
                    yield from walk(child, path + [name])
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)) and action.help != argparse.SUPPRESS:
                assert action.help, f"`mmm {' '.join(path)}` {action.dest} has no help"
                yield action

    assert len(list(walk(build_parser(), []))) > 20


def _fake_run(root, run_id, created, **status):
    write_json(root / "runs" / run_id / "status.json",
               {"run_id": run_id, "status": "completed", "stage": None, "created_at": created, "updated_at": created, **status})


def test_runs_list_is_newest_first_and_includes_notebook_runs(capsys, outputs_root):
    import os

    _fake_run(outputs_root, "old", "2026-01-01T10:00:00+00:00")
    _fake_run(outputs_root, "new", "2026-03-01T10:00:00+00:00", status="failed", stage="04_fit")
    nb = outputs_root / "runs" / "interactive"  # what the notebooks write when run by hand (open_run)
    write_json(nb / "run_spec.json", {"data_path": "x.csv"})
    write_json(nb / "feature_metadata.json", {})
    for p in nb.iterdir():
        os.utime(p, (1_770_000_000, 1_770_000_000))  # 2026-02-02
    assert main(["runs", "list"]) == 0
    rows = _json(capsys)
    assert [r["run_id"] for r in rows] == ["new", "interactive", "old"]
    assert rows[1]["status"] == "interactive" and rows[1]["stage"] == "03_features" and rows[1]["source"] == "notebook"
    assert rows[0]["source"] == "mmm run"

    assert main(["runs", "list", "--format", "table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run_id", "status", "stage", "created_at", "updated_at", "source"]
    assert lines[1].split()[:3] == ["new", "failed", "04_fit"] and "None" not in "\n".join(lines)
    assert main(["runs", "list", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[2].startswith("interactive,interactive,03_features,")


def test_formats_on_datasets_list_and_outputs(capsys, outputs_root):
    assert main(["datasets", "list", "--format", "table"]) == 0
    assert capsys.readouterr().out == "(none)\n"
    run = outputs_root / "runs" / "r1"
    _fake_run(outputs_root, "r1", "2026-01-01T10:00:00+00:00")
    write_json(run / "roi_metrics.json", {"interval": 0.9, "channels": [
        {"channel": "act_tv", "roi": 1.5, "roi_low": 0.5}, {"channel": "act_radio", "roi": 0.25, "roi_low": None}]})
    assert main(["outputs", "r1", "roi", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["channel,roi,roi_low", "act_tv,1.5,0.5", "act_radio,0.25,"]
    assert main(["outputs", "r1", "roi", "--format", "table"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["act_tv", "1.5", "0.5"]
    # a format that is not one, or a contributions view on another output, is a usage error (exit 2)
    with pytest.raises(SystemExit) as e:
        main(["outputs", "r1", "roi", "--format", "xml"])
    assert e.value.code == 2 and "choose from json, table, csv" in capsys.readouterr().err
    assert main(["outputs", "r1", "roi", "--format", "timeseries"]) == 2
    assert "choose from json, table, csv" in capsys.readouterr().err
    assert main(["outputs", "r1", "roi", "--view", "timeseries"]) == 2
    assert "contributions only" in capsys.readouterr().err


def test_runs_rm_asks_and_refuses_without_a_terminal(capsys, outputs_root, monkeypatch):
    import io

    _fake_run(outputs_root, "r2", "2026-01-01T10:00:00+00:00")
    run = outputs_root / "runs" / "r2"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal
    assert main(["runs", "rm", "r2"]) == 2
    assert "pass --yes" in capsys.readouterr().err and run.is_dir()

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Tty("n\n"))
    assert main(["runs", "rm", "r2"]) == 1
    assert "kept" in capsys.readouterr().err and run.is_dir()
    monkeypatch.setattr("sys.stdin", Tty("y\n"))
    assert main(["runs", "rm", "r2"]) == 0
    assert "delete run 'r2'" in capsys.readouterr().err and not run.exists()
    assert main(["runs", "rm", "r2", "--yes"]) == 1  # gone: the usual not-found error

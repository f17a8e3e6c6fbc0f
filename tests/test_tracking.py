"""tracking: a finished run is logged to MLflow (spec as params, fit/diagnostic/ROI numbers as metrics,
reports and JSON summaries as artifacts); without MLflow, ``--mlflow`` is a clear error and nothing else changes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mmm_lib import tracking
from mmm_lib.cli import main
from mmm_lib.runner import RunError, RunResult

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "params" / "fast.yaml"


def _run_folder(root: Path) -> Path:
    """A finished run's folder with the files tracking reads (numbers as 04–06 write them)."""
    d = root / "runs" / "r1"
    (d / "reports").mkdir(parents=True)
    files = {
        "run_spec.json": {"data_path": "/data/x.csv", "drivers": ["act_tv", "act_radio"], "draws": 150,
                          "dataset_id": None, "spend_cols": {},
                          "feature_config": {"adstock": {"max_lag": 13, "per_channel": {"act_tv": 0.7}}}},
        "fit_metrics.json": {"r2": 0.9, "mape": 3.1, "rmse": 40.0, "n_obs": 91,
                             "holdout": {"periods": 8, "brand": {"mape": 4.2, "crps": 30.5, "coverage_90": 0.875}}},
        "diagnostics.json": {"passed": True, "metrics": {"max_r_hat": 1.004, "min_ess_bulk": 512.0, "divergences": 0},
                             "loo": {"elpd": -123.4, "se": 5.6, "p_loo": 7.8}},
        "roi_metrics.json": {"channels": [{"channel": "act_tv", "roi": 1.5, "roi_low": 1.1, "roi_high": 1.9},
                                          {"channel": "act_radio", "roi": None, "roi_low": None, "roi_high": None}]},
        "status.json": {"status": "completed"},
    }
    for name, obj in files.items():
        (d / name).write_text(json.dumps(obj))
    (d / "index.html").write_text('<a href="reports/04_fit.html">fit</a>')
    (d / "reports" / "04_fit.html").write_text("<p>fit</p>")
    return d


def test_spec_is_flattened_to_dotted_params():
    got = tracking.flatten({"draws": 150, "drivers": ["a", "b"], "dataset_id": None, "spend_cols": {},
                            "feature_config": {"adstock": {"max_lag": 13}}})
    assert got == {"draws": "150", "drivers": '["a", "b"]', "dataset_id": "null", "spend_cols": "{}",
                   "feature_config.adstock.max_lag": "13"}


def test_metrics_are_read_from_the_run_folder(tmp_path):
    m = tracking.run_metrics(_run_folder(tmp_path), {"04_fit": 12.5})
    assert m == {"r2": 0.9, "mape": 3.1, "rmse": 40.0, "holdout_mape": 4.2, "holdout_crps": 30.5,
                 "holdout_coverage_90": 0.875, "max_r_hat": 1.004, "min_ess_bulk": 512.0, "divergences": 0.0,
                 "elpd_loo": -123.4, "elpd_loo_se": 5.6, "p_loo": 7.8, "roi/act_tv": 1.5, "roi_low/act_tv": 1.1,
                 "roi_high/act_tv": 1.9, "duration_s/04_fit": 12.5}
    assert tracking.run_metrics(tmp_path / "nothing") == {}  # a run that failed early has no numbers yet


def test_tracking_is_off_unless_asked(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.wanted(None) is False
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:/x")
    assert tracking.wanted(False) is False


def test_mlflow_flag_without_mlflow_is_a_clear_error(monkeypatch, outputs_root, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    with pytest.raises(RunError, match=r'--mlflow needs MLflow.*pip install "\.\[mlflow\]"'):
        tracking.wanted(True)
    assert main(["run", str(SPEC), "--run-id", "t", "--mlflow"]) == 1
    assert 'pip install ".[mlflow]"' in capsys.readouterr().err
    assert not (outputs_root / "runs" / "t").exists()  # refused before anything was created
    # Only the environment asks for it: the run goes on untracked, with a warning.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:/x")
    said = []
    assert tracking.wanted(None, said.append) is False
    assert 'not tracked; install the extra with pip install ".[mlflow]"' in said[0]


def test_finished_run_is_logged_to_a_local_store(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    folder = _run_folder(tmp_path)
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 discourages file stores; fine for a test
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "mmm-test")
    assert tracking.wanted(None)
    said = []
    result = RunResult(run_id="r1", run_dir=folder, status="failed", failed_stage="06_contribute",
                       error="boom", stage_times={"04_fit": 12.5})
    run_id = tracking.log_run(result, said.append)
    assert run_id and "mlflow: run" in said[-1]

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.info.run_name == "r1"
    assert client.get_experiment(run.info.experiment_id).name == "mmm-test"
    assert run.data.params["feature_config.adstock.per_channel.act_tv"] == "0.7"
    assert run.data.params["drivers"] == '["act_tv", "act_radio"]'
    assert run.data.metrics["roi/act_tv"] == 1.5 and run.data.metrics["elpd_loo"] == -123.4
    assert "roi/act_radio" not in run.data.metrics
    assert run.data.tags["mmm.status"] == "failed" and run.data.tags["mmm.failed_stage"] == "06_contribute"
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"index.html", "reports", "summaries"} <= top
    assert {a.path for a in client.list_artifacts(run_id, "reports")} == {"reports/04_fit.html"}
    assert "summaries/roi_metrics.json" in {a.path for a in client.list_artifacts(run_id, "summaries")}


def test_a_tracking_failure_does_not_fail_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://host/x")
    said = []
    result = RunResult(run_id="r1", run_dir=_run_folder(tmp_path), status="completed")
    assert tracking.log_run(result, said.append) is None
    assert "warning: MLflow tracking failed" in said[-1] and str(result.run_dir) in said[-1]

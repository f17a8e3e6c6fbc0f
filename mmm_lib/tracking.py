"""Optional MLflow tracking: each finished run (completed, failed or stopped) logged as one MLflow run.

On when ``MLFLOW_TRACKING_URI`` is set or ``mmm run --mlflow`` is given; MLflow is an optional extra
(``pip install ".[mlflow]"``) and nothing here imports it otherwise. What is logged, all read from the
run folder (stages talk only through it):

- params: the run spec (``run_spec.json``) flattened to dotted keys (``feature_config.adstock.max_lag``);
- metrics: fit (``r2``, ``mape``, ``rmse``, ``holdout_mape``, ``holdout_crps``, ``holdout_coverage_90``),
  convergence (``max_r_hat``, ``min_ess_bulk``, ``min_ess_tail``, ``divergences``, ``elpd_loo``, ``p_loo``),
  ROI per channel (``roi/<channel>``, ``roi_low/<channel>``, ``roi_high/<channel>``) and stage times;
- tags: ``mmm.run_id``, ``mmm.status``, ``mmm.failed_stage``, ``mmm.error``, ``mmm.diagnostics``,
  ``mmm.run_dir``;
- artifacts: ``index.html`` and ``reports/*.html`` (the links between them keep working) and the JSON
  summaries under ``summaries/``.

Without ``MLFLOW_TRACKING_URI`` the store is ``sqlite:///<outputs>/mlflow.db`` next to the runs; the
experiment is ``$MLFLOW_EXPERIMENT_NAME`` or ``mmm``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .storage import outputs_root

if TYPE_CHECKING:
    from .runner import Log, RunResult

INSTALL_HINT = 'pip install ".[mlflow]"'
DEFAULT_EXPERIMENT = "mmm"
# Run-folder JSON summaries logged as artifacts (posterior.nc and the parquet tables stay in the run folder).
SUMMARIES = [
    "run_spec.json", "status.json", "validation_summary.json", "diagnostics.json", "fit_metrics.json",
    "roi_metrics.json", "contribution_summary.json", "posterior_summary.json", "model_metadata.json",
]


def wanted(flag: bool | None = None, log: Log = print) -> bool:
    """Whether this run is tracked: ``flag`` (``--mlflow``) if given, else whether ``MLFLOW_TRACKING_URI`` is set.

    With ``MLFLOW_TRACKING_URI`` set (maybe for another project) but MLflow not installed, the run goes on
    untracked with a warning: the suite works without the extra.

    Raises
    ------
    RunError
        ``flag`` is true but MLflow is not installed; raised before the run starts so a long fit is not
        lost to a missing package.
    """
    from .runner import RunError  # runner imports this module

    on = bool(os.environ.get("MLFLOW_TRACKING_URI")) if flag is None else flag
    if not on:
        return False
    try:
        import mlflow  # noqa: F401
    except ImportError:
        if flag:
            raise RunError(f"--mlflow needs MLflow, which is not installed; install the extra with {INSTALL_HINT}") from None
        log(f"  warning: MLFLOW_TRACKING_URI is set but MLflow is not installed, so this run is not tracked; "
            f"install the extra with {INSTALL_HINT}")
        return False
    return True


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested spec dict as MLflow params: dotted keys, lists as JSON, ``None`` as ``"null"``."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v if isinstance(v, str) else json.dumps(v)
    return out


def _read(folder: Path, name: str) -> dict[str, Any]:
    try:
        return json.loads((folder / name).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def run_metrics(folder: Path, stage_times: dict[str, float] | None = None) -> dict[str, float]:
    """The numbers worth comparing across runs, from the run folder's JSON files; missing ones are left out."""
    fit, diag, roi = _read(folder, "fit_metrics.json"), _read(folder, "diagnostics.json"), _read(folder, "roi_metrics.json")
    ho = (fit.get("holdout") or {}).get("brand") or {}
    loo = diag.get("loo") or {}
    m: dict[str, Any] = {k: fit.get(k) for k in ("r2", "mape", "rmse")}
    m |= {f"holdout_{k}": ho.get(k) for k in ("mape", "rmse", "crps", "coverage_50", "coverage_90")}
    m |= {k: (diag.get("metrics") or {}).get(k) for k in ("max_r_hat", "min_ess_bulk", "min_ess_tail", "divergences")}
    m |= {"elpd_loo": loo.get("elpd"), "elpd_loo_se": loo.get("se"), "p_loo": loo.get("p_loo")}
    for c in roi.get("channels") or []:
        for k in ("roi", "roi_low", "roi_high"):
            m[f"{k}/{c.get('channel')}"] = c.get(k)
    m |= {f"duration_s/{s}": t for s, t in (stage_times or {}).items()}
    return {k: float(v) for k, v in m.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def log_run(result: RunResult, log: Log = print) -> str | None:
    """Log a finished run to MLflow; returns the MLflow run id.

    A tracking failure (server down, bad URI) is logged as a warning and returns ``None``: the run's
    own results in its folder are complete either way.
    """
    import mlflow

    folder = result.run_dir
    try:
        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{outputs_root() / 'mlflow.db'}")
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT)
        dg = result.diagnostics
        tags = {
            "mmm.run_id": result.run_id, "mmm.status": result.status, "mmm.run_dir": str(folder),
            "mmm.failed_stage": result.failed_stage or "", "mmm.error": (result.error or "")[:5000],
            "mmm.diagnostics": "" if dg is None else dg.outcome,
        }
        status = {"completed": "FINISHED", "failed": "FAILED"}.get(result.status, "KILLED")
        with mlflow.start_run(run_name=result.run_id, tags=tags) as run:
            mlflow.log_params(flatten(_read(folder, "run_spec.json")))
            mlflow.log_metrics(run_metrics(folder, result.stage_times))
            if (folder / "index.html").exists():
                mlflow.log_artifact(str(folder / "index.html"))
            if (folder / "reports").is_dir():
                mlflow.log_artifacts(str(folder / "reports"), "reports")
            for name in SUMMARIES:
                if (folder / name).exists():
                    mlflow.log_artifact(str(folder / name), "summaries")
            mlflow.end_run(status)
        log(f"  mlflow: run {run.info.run_id} in experiment {run.info.experiment_id} at {mlflow.get_tracking_uri()}")
        return run.info.run_id
    except Exception as exc:  # noqa: BLE001 - tracking is a copy; it must not turn a finished run into an error
        log(f"  warning: MLflow tracking failed ({type(exc).__name__}: {exc}); the run's results are in {folder}")
        return None

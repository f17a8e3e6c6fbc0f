"""Runs and their outputs: listing, status, removal and outputs of runs as library calls."""

from __future__ import annotations

import shutil
from typing import Any

from .storage import ArtifactMissing, outputs_root, read_json, read_records, run_dir

# KIND -> artifact(s) of `mmm outputs RUN KIND`.
OUTPUT_KINDS = {
    "posterior_summary": "posterior_summary.json",
    "diagnostics": "diagnostics.json",
    "contributions": None,  # summary or timeseries, see get_output
    "roi": "roi_metrics.json",
    "fitted": "fitted.parquet",
    "model_metadata": "model_metadata.json",
    "summary": None,
    "features": "features.parquet",
    "canonical": "canonical_data.parquet",
}


def _existing(run_id: str):
    d = run_dir(run_id)
    if not d.is_dir():
        raise FileNotFoundError(f"run {run_id!r} not found; `mmm runs list` shows what exists")
    return d


def list_runs() -> list[dict[str, Any]]:
    root = outputs_root() / "runs"
    out = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if (d / "status.json").is_file():
                s = read_json(d / "status.json")
                out.append({k: s.get(k) for k in ("run_id", "status", "stage", "created_at", "updated_at")})
    return out


def run_status(run_id: str) -> dict[str, Any]:
    return read_json(_existing(run_id) / "status.json")


def run_spec(run_id: str) -> dict[str, Any]:
    return read_json(_existing(run_id) / "run_spec.json")


def remove_run(run_id: str) -> dict[str, Any]:
    d = _existing(run_id)
    if (d / ".lock").exists():
        raise PermissionError(f"run {run_id!r} is running (lock {d / '.lock'}); wait for it to finish")
    shutil.rmtree(d)
    return {"deleted": run_id}


def get_output(run_id: str, kind: str, fmt: str = "summary") -> Any:
    """One output of a run as JSON-able data.

    Parameters
    ----------
    kind
        One of :data:`OUTPUT_KINDS`.
    fmt
        For ``contributions``: ``summary`` (contribution_summary.json) or ``timeseries``
        (contributions.parquet as records).
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r}; choose one of {sorted(OUTPUT_KINDS)}")
    d = _existing(run_id)
    try:
        if kind == "contributions":
            if fmt not in ("summary", "timeseries"):
                raise ValueError(f"--format {fmt!r}: use summary or timeseries")
            return read_json(d / "contribution_summary.json") if fmt == "summary" else read_records(d / "contributions.parquet")
        if kind == "fitted":
            return {"metrics": read_json(d / "fit_metrics.json"), "fitted": read_records(d / "fitted.parquet")}
        if kind == "summary":
            out: dict[str, Any] = {"status": read_json(d / "status.json"), "spec": read_json(d / "run_spec.json")}
            for key, name in (("fit_metrics", "fit_metrics.json"), ("roi", "roi_metrics.json"),
                              ("contributions", "contribution_summary.json"), ("diagnostics", "diagnostics.json")):
                p = d / name
                out[key] = read_json(p) if p.is_file() else None
            if out["diagnostics"]:
                out["diagnostics"] = {k: out["diagnostics"].get(k) for k in ("passed", "metrics")}
            return out
        name = OUTPUT_KINDS[kind]
        return read_records(d / name) if name.endswith(".parquet") else read_json(d / name)
    except ArtifactMissing as e:
        raise ArtifactMissing(f"run {run_id!r} has no {kind} output yet ({e}); check `mmm runs status {run_id}`") from None

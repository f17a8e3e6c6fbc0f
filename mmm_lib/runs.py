"""Runs and their outputs: listing, status, removal and outputs of runs as library calls.

Status is shown as it is, not only as recorded: a run whose file says ``running`` but whose process is gone
is ``interrupted`` (:func:`mmm_lib.status.effective_status`); one unreadable ``status.json`` is listed as
``unreadable`` (naming the file) instead of breaking the list.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .storage import LOCK_FILE, ArtifactMissing, lock_held, outputs_root, read_json, read_records, run_dir

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
    "optimize": None,  # optimization.json with the response curves and the scenario forecast
}


def _existing(run_id: str) -> Path:
    d = run_dir(run_id)
    if not d.is_dir():
        raise FileNotFoundError(f"run {run_id!r} not found; `mmm runs list` shows what exists")
    return d


def run_folder(run_id: str) -> Path:
    """The folder of an existing run (``FileNotFoundError`` naming ``mmm runs list`` when there is none)."""
    return _existing(run_id)


def _mtime_iso(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


def _notebook_run_row(d: Path) -> dict[str, Any]:
    """A run folder made by the notebooks opened by hand (``open_run(..., create=True)``): no status.json,
    so the stage reached is read from the artifacts present and the times from the files."""
    from .artifacts import PRODUCED_BY
    from .status import ALL_STAGES

    files = [p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")]
    # run_spec.json is written by whichever notebook opens the run first: it says nothing about progress.
    reached = [PRODUCED_BY[p.name] for p in files if p.name in PRODUCED_BY and p.name != "run_spec.json"]
    stage = max(reached, key=ALL_STAGES.index) if reached else None
    return {"run_id": d.name, "status": "interactive", "stage": stage,
            "created_at": _mtime_iso(d / "run_spec.json"),
            "updated_at": _mtime_iso(max(files, key=lambda p: p.stat().st_mtime)), "source": "notebook"}


def _sort_key(row: dict[str, Any]) -> float:
    try:
        return datetime.fromisoformat(str(row.get("created_at"))).timestamp()
    except ValueError:
        return float("-inf")  # no readable time: listed last


def _read_status(d: Path) -> dict[str, Any]:
    """A run's status.json as it really is (:func:`~mmm_lib.status.effective_status`); ``ValueError`` naming the
    file when it is not readable."""
    from .status import effective_status

    path = d / "status.json"
    try:
        s = read_json(path)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}): damaged or edited by hand") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text: damaged") from None
    if not isinstance(s, dict) or not isinstance(s.get("stages", {}), dict):
        raise ValueError(f"{path}: not a run status (a JSON {type(s).__name__} without stages): damaged or edited")
    return effective_status(d, s)


def list_runs() -> list[dict[str, Any]]:
    """Every run folder, newest first: runs made by ``mmm run`` (``source: "mmm run"``, from status.json)
    and folders the notebooks wrote when run by hand in JupyterLab (``source: "notebook"``,
    ``status: "interactive"``, ``stage``: the last stage whose artifacts are there). A run whose status.json
    cannot be read is listed with ``status: "unreadable"`` and ``error`` naming the file."""
    root = outputs_root() / "runs"
    out = []
    if root.is_dir():
        for d in root.iterdir():
            try:
                if (d / "status.json").is_file():
                    s = _read_status(d)
                    row = {k: s.get(k) for k in ("run_id", "status", "stage", "created_at", "updated_at")}
                    out.append({**row, "run_id": row["run_id"] or d.name, "source": "mmm run"})
                elif (d / "run_spec.json").is_file():
                    out.append(_notebook_run_row(d))
            except (OSError, ValueError) as e:
                out.append({"run_id": d.name, "status": "unreadable", "stage": None, "created_at": None,
                            "updated_at": None, "source": "mmm run",
                            "error": f"{e}; `mmm runs rm {d.name}` deletes it, or rerun it with --restart"})
    return sorted(out, key=lambda r: (_sort_key(r), str(r["run_id"])), reverse=True)


def run_status(run_id: str) -> dict[str, Any]:
    """The run's status.json, with a run whose process is gone shown as ``interrupted``."""
    return _read_status(_existing(run_id))


def run_spec(run_id: str) -> dict[str, Any]:
    return read_json(_existing(run_id) / "run_spec.json")


def remove_run(run_id: str) -> dict[str, Any]:
    d = _existing(run_id)
    if lock_held(d):
        raise PermissionError(f"run {run_id!r} is running (lock {d / LOCK_FILE}); wait for it to finish")
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
        if kind == "optimize":
            # optimization.json first, so its channel allocation is the table `--format table` shows
            return {**read_json(d / "optimization.json"), "response_curves": read_records(d / "response_curves.parquet"),
                    "forecast": read_records(d / "scenario.parquet")}  # fmt: skip
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

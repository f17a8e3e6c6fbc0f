"""``status.json``: the seed's run status (pending → running → completed | failed), per stage."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .storage import read_json, write_json

STAGES = ["01_validate", "02_canonicalize", "03_features", "04_fit", "05_diagnose", "06_contribute"]
STAGE_TITLES = {
    "01_validate": "Validate",
    "02_canonicalize": "Canonicalize",
    "03_features": "Features",
    "04_fit": "Fit",
    "05_diagnose": "Diagnose",
    "06_contribute": "Contributions & ROI",
}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_status(run_id: str) -> dict[str, Any]:
    t = now_iso()
    return {
        "run_id": run_id,
        "status": "pending",
        "stage": None,
        "created_at": t,
        "updated_at": t,
        "error": None,
        "traceback": None,
        "stages": {s: {"status": "pending", "started_at": None, "finished_at": None, "duration_s": None, "error": None}
                   for s in STAGES},
    }


def read_status(run_dir: Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / "status.json")


def write_status(run_dir: Path, status: dict[str, Any]) -> None:
    status["updated_at"] = now_iso()
    write_json(Path(run_dir) / "status.json", status)


def mark_stage(run_dir: Path, status: dict[str, Any], stage: str, state: str, *, duration_s: float | None = None,
               error: str | None = None, traceback: str | None = None) -> dict[str, Any]:
    """Record a stage transition and the run's overall state, and persist it."""
    st = status["stages"][stage]
    st["status"] = state
    if state == "running":
        st["started_at"] = now_iso()
        st["finished_at"] = st["duration_s"] = st["error"] = None
        status.update(status="running", stage=stage, error=None, traceback=None)
    else:
        st["finished_at"] = now_iso()
        st["duration_s"] = None if duration_s is None else round(duration_s, 2)
        st["error"] = error
        if state == "failed":
            status.update(status="failed", stage=stage, error=f"{stage}: {error}", traceback=traceback)
    write_status(run_dir, status)
    return status


def mark_run(run_dir: Path, status: dict[str, Any], state: str) -> dict[str, Any]:
    status["status"] = state
    if state == "completed":
        status["stage"] = None
    write_status(run_dir, status)
    return status

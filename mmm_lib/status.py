"""``status.json``: the run's status (pending → running → completed | failed | stopped | interrupted), per stage.

``interrupted`` is a run ended from outside: a signal (Ctrl-C, SIGTERM, SIGHUP) recorded by the run itself,
or a run whose ``owner`` process (pid, start time, host) is gone while its file still says ``running`` (killed
with SIGKILL, the machine restarted, the disk full when the end was to be written): :func:`effective_status`
reports that truth without changing the file. A completed stage records the SHA-256 of each artifact it
wrote (``artifacts``), so ``--resume`` can tell a kept artifact from a damaged one.

``stopped`` is a run ended on purpose before its last stage: the diagnostics gate
(``diagnostics.gate: stop``) after failed convergence checks. ``stopped_by`` and ``reason`` say why, and
the stages not run are ``skipped``. ``gate`` records 05_diagnose's verdict (:meth:`GateVerdict.to_dict`)
once it is known, also for runs that went on with provisional numbers.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .storage import lock_held, owner_alive, owner_record, read_json, write_json

STAGES = ["01_validate", "02_canonicalize", "03_features", "04_fit", "05_diagnose", "06_contribute"]
# Run after the six when the spec has their section (07_optimize: ``optimize:``), or later on a finished
# run (``mmm optimize``); a run's status.json lists the stages it plans.
OPTIONAL_STAGES = ["07_optimize"]
ALL_STAGES = STAGES + OPTIONAL_STAGES
STAGE_TITLES = {
    "01_validate": "Validate",
    "02_canonicalize": "Canonicalize",
    "03_features": "Features",
    "04_fit": "Fit",
    "05_diagnose": "Diagnose",
    "06_contribute": "Contributions & ROI",
    "07_optimize": "Budget optimization",
}


def planned_stages(spec: Any) -> list[str]:
    """The stages a run of ``spec`` (a RunSpec or its dict) goes through: the six, and 07 with ``optimize:``."""
    has = spec.get("optimize") if isinstance(spec, dict) else getattr(spec, "optimize", None)
    return STAGES + (["07_optimize"] if has is not None else [])


def _pending() -> dict[str, Any]:
    return {"status": "pending", "started_at": None, "finished_at": None, "duration_s": None, "error": None}


def add_stage(run_dir: Path, status: dict[str, Any], stage: str) -> dict[str, Any]:
    """Plan ``stage`` (an optional stage) in an existing run's status, as pending."""
    status["stages"].setdefault(stage, _pending())
    write_status(run_dir, status)
    return status


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_status(run_id: str, stages: list[str] | None = None) -> dict[str, Any]:
    t = now_iso()
    return {
        "run_id": run_id,
        "status": "pending",
        "stage": None,
        "created_at": t,
        "updated_at": t,
        "error": None,
        "traceback": None,
        "stopped_by": None,
        "reason": None,
        "gate": None,
        "owner": owner_record(),
        "stages": {s: _pending() for s in (stages or STAGES)},
    }


def claim(status: dict[str, Any]) -> dict[str, Any]:
    """Make this process the run's owner (a resumed run is continued by another process)."""
    status["owner"] = owner_record()
    return status


def effective_status(run_dir: Path, status: dict[str, Any]) -> dict[str, Any]:
    """``status`` as it really is: a run recorded as pending or running whose owner process is gone (killed,
    or its pid now another program's) and whose lock nobody holds is ``interrupted``. The file is not changed."""
    if status.get("status") not in ("pending", "running"):
        return status
    alive = owner_alive(status.get("owner"))
    if alive or (alive is None and lock_held(run_dir)):
        return status
    owner = status.get("owner") or {}
    stage = status.get("stage")
    who = f"process {owner['pid']}" if isinstance(owner.get("pid"), int) else "the process that ran it"
    cause = (f"{who} ended without recording it (killed with SIGKILL, the machine restarted, or the disk was full "
             f"when the end was to be written); continue it with `mmm run SPEC --run-id {status.get('run_id')} "
             "--resume`")
    out = {**status, "status": "interrupted", "recorded_status": status.get("status"),
           "error": f"{stage}: {cause}" if stage else cause}
    if stage in out.get("stages", {}):
        out["stages"] = {**out["stages"], stage: {**out["stages"][stage], "status": "interrupted"}}
    return out


def read_status(run_dir: Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / "status.json")


def write_status(run_dir: Path, status: dict[str, Any]) -> None:
    status["updated_at"] = now_iso()
    write_json(Path(run_dir) / "status.json", status)


def mark_stage(run_dir: Path, status: dict[str, Any], stage: str, state: str, *, duration_s: float | None = None,
               error: str | None = None, traceback: str | None = None,
               artifacts: dict[str, str] | None = None) -> dict[str, Any]:
    """Record a stage transition and the run's overall state, and persist it.

    ``artifacts`` (a completed stage): artifact name → SHA-256 of what the stage wrote, checked on ``--resume``.
    """
    st = status["stages"][stage]
    st["status"] = state
    if artifacts is not None:
        st["artifacts"] = artifacts
    if state in ("running", "pending"):
        st.pop("artifacts", None)
    if state == "running":
        st["started_at"] = now_iso()
        st["finished_at"] = st["duration_s"] = st["error"] = None
        status.update(status="running", stage=stage, error=None, traceback=None, stopped_by=None, reason=None)
    else:
        st["finished_at"] = now_iso()
        st["duration_s"] = None if duration_s is None else round(duration_s, 2)
        st["error"] = error
        if state in ("failed", "interrupted"):
            status.update(status=state, stage=stage, error=f"{stage}: {error}", traceback=traceback)
    write_status(run_dir, status)
    return status


def mark_interrupted(run_dir: Path, status: dict[str, Any], cause: str) -> dict[str, Any]:
    """Record a run ended from outside (a signal): its running stage, if any, and the run are ``interrupted``."""
    stage = status.get("stage")
    if stage in status["stages"] and status["stages"][stage]["status"] == "running":
        return mark_stage(run_dir, status, stage, "interrupted", error=cause)
    status.update(status="interrupted", error=f"{stage}: {cause}" if stage else cause, traceback=None)
    write_status(run_dir, status)
    return status


def reset_stages(status: dict[str, Any], stages: list[str]) -> dict[str, Any]:
    """Plan ``stages`` again (pending, nothing recorded): they are about to be rerun."""
    for s in stages:
        status["stages"][s] = _pending()
    return status


def mark_run(run_dir: Path, status: dict[str, Any], state: str) -> dict[str, Any]:
    status["status"] = state
    if state == "completed":
        status["stage"] = None
    write_status(run_dir, status)
    return status


def record_gate(run_dir: Path, status: dict[str, Any], gate: dict[str, Any]) -> dict[str, Any]:
    """Record 05_diagnose's verdict as the gate saw it (``GateVerdict.to_dict()``), and persist it."""
    status["gate"] = gate
    write_status(run_dir, status)
    return status


def mark_stopped(run_dir: Path, status: dict[str, Any], stage: str, *, by: str, reason: str,
                 skipped: list[str]) -> dict[str, Any]:
    """Record a run stopped on purpose after ``stage`` (``by`` says what stopped it), ``skipped`` not run."""
    for s in skipped:
        status["stages"][s].update(status="skipped", started_at=None, finished_at=None, duration_s=None, error=None)
    status.update(status="stopped", stage=stage, error=None, traceback=None, stopped_by=by, reason=reason)
    write_status(run_dir, status)
    return status

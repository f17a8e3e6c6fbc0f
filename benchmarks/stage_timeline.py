"""Per-stage critical-path times of one `mmm run`, read from its executed notebooks (used by bench_pipeline.py and
bench_vs_peer.py).

A stage's wall runs from the previous stage's papermill ``end_time`` (the process start for the first) to its own
``end_time``; the time inside its code cells is nbclient's ``iopub.execute_input`` → ``shell.execute_reply`` per
cell; overhead = wall − cells (kernel start not hidden by the start-ahead, imports before the first cell,
papermill, the runner's work between stages). A last row ``(after last stage)`` is the runner's work after the last
notebook (the last report, the index) up to the process end.
"""

from __future__ import annotations

import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess, dict[str, Any]]:
    """Run ``cmd`` (an ``mmm run``) to the end: the finished process, and its wall seconds and UTC start and end
    (ISO) as :func:`stage_timeline` needs them."""
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd)
    wall = time.perf_counter() - t0
    return proc, {"wall_s": wall, "started": started.isoformat(), "ended": datetime.now(timezone.utc).isoformat()}


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def stage_timeline(run: dict) -> list[dict[str, Any]]:
    """Per executed notebook: critical-path wall, time inside code cells, overhead = wall − cells.

    The wall of a stage runs from the previous stage's papermill ``end_time`` (the process start for the
    first) to its own ``end_time``; a last row ``(after last stage)`` is the runner's work after it, up
    to the process end.
    """
    import nbformat

    rows = []
    prev = _ts(run["started"])
    for nb_path in sorted(Path(run["run_dir"], "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        pm = nb.metadata.get("papermill", {})
        if not pm.get("start_time") or not pm.get("end_time"):
            raise SystemExit(f"{nb_path}: no papermill start_time/end_time in the notebook metadata")
        start, end = _ts(pm["start_time"]), _ts(pm["end_time"])
        cells = 0.0
        n_cells = 0
        for c in nb.cells:
            ex = c.get("metadata", {}).get("execution", {}) if c.cell_type == "code" else {}
            if "iopub.execute_input" in ex and "shell.execute_reply" in ex:
                cells += (_ts(ex["shell.execute_reply"]) - _ts(ex["iopub.execute_input"])).total_seconds()
                n_cells += 1
        wall = (end - prev).total_seconds()
        rows.append({"stage": nb_path.stem, "wall_s": wall, "cells_s": cells, "overhead_s": wall - cells,
                     "papermill_s": (end - start).total_seconds(), "before_papermill_s": (start - prev).total_seconds(),
                     "n_cells_timed": n_cells})  # fmt: skip
        prev = end
    tail = (_ts(run["ended"]) - prev).total_seconds()
    rows.append({"stage": "(after last stage)", "wall_s": tail, "cells_s": 0.0, "overhead_s": tail,
                 "papermill_s": 0.0, "before_papermill_s": tail, "n_cells_timed": 0})  # fmt: skip
    return rows

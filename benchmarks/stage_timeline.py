"""Per-stage critical-path times of one `mmm run`, read from its executed notebooks (used by bench_pipeline.py and
bench_vs_peer.py).

A stage's wall runs from the previous stage's papermill ``end_time`` (the process start for the first) to its own
``end_time``; the time inside its code cells is nbclient's ``iopub.execute_input`` → ``shell.execute_reply`` per
cell; overhead = wall − cells (kernel start not hidden by the start-ahead, imports before the first cell,
papermill, the runner's work between stages). A last row ``(after last stage)`` is the runner's work after the last
notebook (the last report, the index) up to the process end.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import psutil

KEPT_DIR_ENV = "MMM_KERNELS_DIR"


@contextlib.contextmanager
def kept_kernel_servers(tmp: Path) -> Iterator[str]:
    """A folder of the benchmark's own for the kernel servers its runs keep for the next run
    (``mmm_lib.kernel_keeper``; set it as ``MMM_KERNELS_DIR``): its runs use no server kept by anything else, and
    every server kept there is stopped at the end."""
    from mmm_lib import kernel_keeper

    folder = Path(tmp) / "kept-kernels"
    try:
        yield str(folder)
    finally:
        for rec in kernel_keeper.kept(folder):
            kernel_keeper.stop(rec)


KEPT_LINE = "kernel server kept for the next run"


def kept_server_use(stderr: str) -> str:
    """How a run used kept kernel servers, from its log: ``handed over`` (the run and its kernels forked from one),
    ``kernels`` (its kernels only), ``no``."""
    if "this run and its kernels: forked from the kernel server" in stderr:
        return "handed over"
    return "kernels" if "kernels: forked from the kernel server" in stderr else "no"


def wait_until_kept(stderr: str, kept: str | Path | None, timeout: float = 30.0) -> None:
    """After a run that kept its kernel server (its log says so), wait until that server listens for the next
    run, as a user's next run finds it (it first imports what the next ``mmm run`` will need: 1-3 s)."""
    if kept is None or KEPT_LINE not in stderr:
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for info in Path(kept).glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                run_socket = json.loads(info.read_text()).get("run_socket")
                if run_socket and Path(run_socket).exists() and info.stat().st_mtime >= time.time() - timeout:
                    return
        time.sleep(0.1)


def _largest_rss(pid: int, kept: Path | None) -> int:
    """The largest resident set of one process among ``pid`` and its descendants, and the processes the kernel
    servers kept in ``kept`` run for it (their connection servers and the stage kernels forked there)."""
    roots = [pid]
    if kept is not None:
        for info in kept.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                roots.append(-int(json.loads(info.read_text())["pid"]))  # negative: its children only
    best = 0
    for root in roots:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(abs(root))
            for q in ([p] if root > 0 else []) + p.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    best = max(best, q.memory_info().rss)
    return best


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess, dict[str, Any]]:
    """Run ``cmd`` (an ``mmm run``) to the end: the finished process, and its wall seconds, UTC start and end
    (ISO) as :func:`stage_timeline` needs them, and ``peak_rss_mb``: the largest resident set of one process of
    the run (the runner, a stage kernel, also one forked by a kept kernel server in ``$MMM_KERNELS_DIR``), sampled
    every 0.5 s."""
    kept = Path(env[KEPT_DIR_ENV]) if env.get(KEPT_DIR_ENV) else None
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            peak[0] = max(peak[0], _largest_rss(proc.pid, kept))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    return done, {"wall_s": wall, "started": started.isoformat(), "ended": datetime.now(timezone.utc).isoformat(),
                  "peak_rss_mb": peak[0] / 2**20}


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

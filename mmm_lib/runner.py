"""Run the six stage notebooks in order with papermill, then render HTML reports and the index.

``run_pipeline`` is what ``mmm run`` calls. Each stage is a fresh kernel that reads the run spec
(``run_spec.json`` in the run folder, with ``data_path`` resolved) and the upstream artifacts; no
kernel state crosses stages. Before 06_contribute the diagnostics gate (:mod:`mmm_lib.gate`) reads
05_diagnose's verdict: with ``diagnostics.gate: stop`` a failed convergence check ends the run there
(status ``stopped``); with ``warn`` the run goes on and its numbers are marked provisional.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout

from . import report, status as status_mod, tracking
from .gate import GateVerdict, read_verdict, report_top_banner
from .runtime import configure_environment
from .spec import RunSpec, SpecError, load_spec, parse_spec, spec_to_dict
from .status import ALL_STAGES, STAGE_TITLES, STAGES
from .storage import LOCK_FILE, read_json, repo_root, run_dir as run_path, validate_id, write_json

Log = Callable[[str], None]

# The stage whose verdict the gate reads, and the stage it guards.
DIAGNOSE_STAGE, GATED_STAGE = "05_diagnose", "06_contribute"
GATE = "diagnostics.gate"


class RunError(RuntimeError):
    """A run that could not start or a stage that failed; the message names the stage and reason."""


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


@dataclass
class RunResult:
    """What :func:`run_pipeline` did.

    Attributes
    ----------
    status
        ``completed``, ``failed`` (``failed_stage`` and ``error`` say where and why) or ``stopped`` (the
        diagnostics gate ended the run after 05_diagnose; ``diagnostics.reason`` says why).
    diagnostics
        05_diagnose's convergence verdict as the gate saw it; ``None`` when the run ended before 05.
        A ``completed`` run with ``diagnostics.failed`` has provisional numbers (:attr:`provisional`).
    """

    run_id: str
    run_dir: Path
    status: str
    stage_times: dict[str, float] = field(default_factory=dict)
    failed_stage: str | None = None
    error: str | None = None
    diagnostics: GateVerdict | None = None

    @property
    def index(self) -> Path:
        return self.run_dir / "index.html"

    @property
    def provisional(self) -> bool:
        """The run completed although its convergence checks failed (``diagnostics.gate: warn``)."""
        return self.status == "completed" and self.diagnostics is not None and self.diagnostics.failed


class _StageStdout(io.TextIOBase):
    """papermill ``stdout_file``: forwards what a stage prints (its progress lines) to the log."""

    def __init__(self, log: Log, stage: str):
        self.log, self.stage, self._buf = log, stage, ""

    def write(self, s: str) -> int:
        self._buf += s
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            if line.strip():
                self.log(f"    {self.stage[3:]} | {line.rstrip()}")
        return len(s)

    def flush(self) -> None:
        if self._buf.strip():
            self.log(f"    {self.stage[3:]} | {self._buf.rstrip()}")
        self._buf = ""


class _Lock:
    """One writer per run folder: a second ``mmm run`` with the same id is refused, not interleaved.

    An OS lock (``filelock``, flock on Unix): the kernel drops it when the holder dies, so a killed run never
    blocks the next one (a pid file could: the pid may since belong to another process). The file holds the
    holder's pid for the message; :func:`mmm_lib.storage.lock_held` asks whether it is held (``mmm runs rm``).
    """

    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        self._lock = FileLock(self.path, timeout=0, on_acquired=_write_pid)

    def __enter__(self) -> "_Lock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            try:
                pid = self.path.read_text().strip() or "?"
            except OSError:
                pid = "?"
            raise RunError(
                f"run {self.path.parent.name!r} is already running (lock {self.path}, pid {pid}); "
                f"wait for it or use another --run-id"
            ) from None
        return self

    def __exit__(self, *exc) -> None:
        # Unlink while still holding it: a process that opened the file meanwhile finds it unlinked, not free.
        self.path.unlink(missing_ok=True)
        self._lock.release()


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())


def default_run_id(spec_path: str | Path) -> str:
    return f"{Path(spec_path).stem}_{datetime.now().strftime('%Y%m%d-%H%M%S')}"


@functools.cache
def _kernel_manager_class() -> type:
    """jupyter_client's AsyncKernelManager, except that shutting a kernel down does not interrupt it first.

    jupyter_client sends SIGINT before the shutdown request. papermill ends every notebook with a
    ``kernel_info`` request and shuts the kernel down as soon as the reply arrives, when the kernel
    may still be inside that request's handler (ipykernel lets SIGINT raise only while it handles a
    request, and ignores it when idle): it then
    logs ``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.`` to the terminal of a run that
    succeeded (seen in stage 02 of ``make run``). A finished notebook has nothing to interrupt, and a
    kernel that ignores the shutdown request still gets SIGTERM, then SIGKILL (``finish_shutdown``).
    """
    from jupyter_client import AsyncKernelManager

    class StageKernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return StageKernelManager


def _run_notebook(src: Path, out: Path, parameters: dict, kernel_name: str, stdout: io.TextIOBase,
                  stderr: io.TextIOBase) -> None:
    """Execute one notebook in a fresh kernel (papermill); cell output goes to ``stdout``/``stderr``."""
    import papermill

    papermill.execute_notebook(
        str(src),
        str(out),
        parameters=parameters,
        kernel_name=kernel_name,
        cwd=str(notebooks_dir()),
        progress_bar=False,
        log_output=False,
        stdout_file=stdout,
        stderr_file=stderr,
        start_timeout=180,
        # ipykernel 7 warns on every start that TCP is unencrypted (local kernels): noise.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
        kernel_manager_class=_kernel_manager_class(),
    )


def _execute(stage: str, folder: Path, run_id: str, log: Log, kernel_name: str, extra: dict | None = None) -> None:
    out_nb = folder / "notebooks" / f"{stage}.ipynb"
    out_nb.parent.mkdir(exist_ok=True)
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    stdout = _StageStdout(log, stage)
    with open(logs / f"{stage}.stderr.log", "w", encoding="utf-8") as stderr:
        try:
            _run_notebook(notebooks_dir() / f"{stage}.ipynb", out_nb,
                          {"spec_path": str(folder / "run_spec.json"), "run_id": run_id, **(extra or {})}, kernel_name,
                          stdout, stderr)
        finally:
            stdout.flush()


def _reason(exc: BaseException) -> tuple[str, str]:
    """A one-line reason and the traceback text for a failed stage."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        evalue = str(exc.evalue).strip()
        return f"{exc.ename}: {evalue}", "\n".join(exc.traceback)
    import traceback

    return f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc))


def _render(folder: Path, stage: str) -> None:
    import nbformat

    path = folder / "notebooks" / f"{stage}.ipynb"
    if path.exists():
        nb = nbformat.read(str(path), as_version=4)  # read once, render twice
        # Numbers computed from a fit that failed its checks: the page opens with a PROVISIONAL bar.
        banner = report_top_banner(read_verdict(folder)) if stage in (GATED_STAGE, "07_optimize") else ""
        report.export_html(nb, folder / "reports" / f"{stage}.html", hide_code=True, banner_html=banner)
        report.export_html(nb, folder / "reports" / f"{stage}_code.html", hide_code=False, banner_html=banner)


def _same_spec(stored: dict, spec: RunSpec) -> bool:
    """``run_spec.json`` of an existing run describes ``spec``. The stored copy is read through today's
    schema first, so keys added since (with their defaults) do not make an old run look different."""
    if stored == spec_to_dict(spec):
        return True
    try:
        return spec_to_dict(parse_spec(stored, "run_spec.json", check_path=False)) == spec_to_dict(spec)
    except SpecError:
        return False


def _gate(folder: Path, st: dict, log: Log) -> GateVerdict:
    """05_diagnose's verdict, recorded in ``status.json`` and logged."""
    v = read_verdict(folder)
    status_mod.record_gate(folder, st, v.to_dict())
    if v.failed:
        then = "the run stops here" if v.stops else "the numbers that follow are PROVISIONAL"
        log(f"  {v.reason}; {GATE}: {v.gate}, so {then}")
    return v


def run_pipeline(
    spec_path: str | Path,
    run_id: str | None = None,
    overrides: list[str] | None = None,
    *,
    resume: bool = False,
    restart: bool = False,
    log: Log = print,
    kernel_name: str = "python3",
    mlflow: bool | None = None,
) -> RunResult:
    """Validate the spec, then run the six stages in order; stop at the first failure.

    Parameters
    ----------
    spec_path
        YAML run spec (``params/example.yaml``).
    run_id
        Folder name under ``outputs/runs``; default ``<spec stem>_<timestamp>``.
    overrides
        ``key=value`` overrides applied to the spec (``--set draws=200``).
    resume
        Continue an existing failed run from its first unfinished stage (the spec must match). A run the
        diagnostics gate stopped stops again (same spec, same fit): change the spec and ``restart``.
    restart
        Delete an existing run with this id and run it again from the start.
    mlflow
        Log the finished run to MLflow (:mod:`mmm_lib.tracking`); ``None`` (default): when
        ``MLFLOW_TRACKING_URI`` is set. Needs the ``mlflow`` extra.

    Returns
    -------
    RunResult
        ``status`` ``completed``, ``failed`` or ``stopped`` (``diagnostics.gate: stop`` and failed
        convergence checks: 06_contribute was not run); ``diagnostics`` holds 05_diagnose's verdict.
    """
    spec = load_spec(spec_path, overrides)  # SpecError here, before anything is created
    track = tracking.wanted(mlflow, log)  # a missing MLflow is reported now, not after the fit
    run_id = validate_id(run_id or default_run_id(spec_path), "run_id")
    folder = run_path(run_id)
    env = configure_environment()  # kernels inherit the compile cache and thread settings
    with _Lock(folder):
        start_at = 0
        if (folder / "status.json").exists():
            old = read_json(folder / "status.json")
            if resume:
                if not _same_spec(read_json(folder / "run_spec.json"), spec):
                    raise RunError(f"run {run_id!r} was made with a different spec; use --restart to run it anew")
                planned = [s for s in ALL_STAGES if s in old["stages"]]
                done = [s for s in planned if old["stages"][s]["status"] == "completed"]
                start_at = len(done) if done == planned[: len(done)] else 0
                st = old
            elif restart:
                for child in folder.iterdir():
                    if child.name != LOCK_FILE:
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
            elif old.get("status") == "stopped":
                raise RunError(
                    f"run {run_id!r} already exists: it was stopped by {old.get('stopped_by') or GATE} "
                    f"({old.get('reason')}); change the spec as advised and use --restart (or another --run-id) "
                    f"to fit again"
                )
            else:
                raise RunError(
                    f"run {run_id!r} already exists (status {old.get('status')}); use --resume to continue a failed "
                    f"run from its failed stage, --restart to run it again from scratch, or another --run-id"
                )
        if start_at == 0:
            write_json(folder / "run_spec.json", spec_to_dict(spec))
            st = status_mod.new_status(run_id, status_mod.planned_stages(spec))
            status_mod.write_status(folder, st)
        result = RunResult(run_id=run_id, run_dir=folder, status="running")
        log(f"run {run_id}: {folder}")
        log(f"  compile cache: {env['PYTENSOR_FLAGS']}")
        t_run = time.perf_counter()
        stages = [s for s in ALL_STAGES if s in st["stages"]]
        n = len(stages)
        for i, stage in enumerate(stages):
            if i < start_at:
                log(f"[{i + 1}/{n}] {STAGE_TITLES[stage]:<20} already completed (resumed)")
                continue
            if stage == GATED_STAGE:
                result.diagnostics = _gate(folder, st, log)
                if result.diagnostics.stops:
                    status_mod.mark_stopped(folder, st, DIAGNOSE_STAGE, by=GATE, reason=result.diagnostics.reason,
                                            skipped=stages[i:])
                    report.write_index(folder)
                    log(f"[{i + 1}/{n}] {STAGE_TITLES[stage]:<20} not run: stopped by {GATE}: stop")
                    result.status = "stopped"
                    if track:
                        tracking.log_run(result, log)
                    return result
            log(f"[{i + 1}/{n}] {STAGE_TITLES[stage]:<20} running …")
            status_mod.mark_stage(folder, st, stage, "running")
            t0 = time.perf_counter()
            try:
                _execute(stage, folder, run_id, log, kernel_name)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded, then re-raised as RunError
                dt = time.perf_counter() - t0
                reason, tb = _reason(exc)
                status_mod.mark_stage(folder, st, stage, "failed", duration_s=dt, error=reason, traceback=tb)
                try:
                    _render(folder, stage)
                finally:
                    report.write_index(folder)
                log(f"[{i + 1}/{n}] {STAGE_TITLES[stage]:<20} FAILED after {dt:.1f} s")
                result.status, result.failed_stage, result.error = "failed", stage, reason
                result.stage_times[stage] = dt
                if track:
                    tracking.log_run(result, log)
                return result
            dt = time.perf_counter() - t0
            result.stage_times[stage] = dt
            status_mod.mark_stage(folder, st, stage, "completed", duration_s=dt)
            _render(folder, stage)
            report.write_index(folder)
            log(f"[{i + 1}/{n}] {STAGE_TITLES[stage]:<20} done in {dt:.1f} s")
        if result.diagnostics is None:  # every stage was already completed (resumed)
            result.diagnostics = read_verdict(folder)
        status_mod.mark_run(folder, st, "completed")
        report.write_index(folder)
        result.status = "completed"
        log(f"run {run_id} completed in {time.perf_counter() - t_run:.1f} s"
            + (" (PROVISIONAL: convergence checks failed)" if result.provisional else ""))
        if track:
            tracking.log_run(result, log)
        return result


OPTIMIZE_STAGE = "07_optimize"


def optimize_run(run_id: str, overrides: dict | None = None, *, log: Log = print, kernel_name: str = "python3") -> RunResult:
    """Run (or rerun) 07_optimize on a fitted run, without refitting: ``mmm optimize``.

    ``overrides`` are ``optimize`` settings (``budget``, ``bounds``, ``scenario_path`` …) on top of the run
    spec's section; they are validated before any kernel starts (:class:`~mmm_lib.spec.SpecError`), passed
    to the notebook and recorded in ``optimization.json``. The stage is added to ``status.json``, its report
    rendered and the index updated, as in ``mmm run``.
    """
    from .optimize.stage import settings_for

    folder = run_path(validate_id(run_id, "run_id"))
    if not (folder / "status.json").exists():
        raise RunError(f"run {run_id!r} does not exist or was not made by `mmm run` ({folder}); see `mmm runs list`")
    spec = load_spec(folder / "run_spec.json")
    settings_for(spec.optimize, overrides)  # SpecError here, before a kernel starts
    configure_environment()
    with _Lock(folder):
        st = read_json(folder / "status.json")
        if st.get("status") == "stopped":
            raise RunError(f"run {run_id!r} was stopped by {st.get('stopped_by') or GATE} ({st.get('reason')}): its fit "
                           "failed the convergence checks, so there is no posterior to plan with; fix the fit first")  # fmt: skip
        if st["stages"].get("04_fit", {}).get("status") != "completed":
            raise RunError(f"run {run_id!r} has no completed fit (04_fit is {st['stages'].get('04_fit', {}).get('status')}); "
                           f"finish it with `mmm run … --run-id {run_id} --resume`")  # fmt: skip
        status_mod.add_stage(folder, st, OPTIMIZE_STAGE)
        result = RunResult(run_id=run_id, run_dir=folder, status="running")
        log(f"run {run_id}: {STAGE_TITLES[OPTIMIZE_STAGE]} running …")
        status_mod.mark_stage(folder, st, OPTIMIZE_STAGE, "running")
        t0 = time.perf_counter()
        try:
            _execute(OPTIMIZE_STAGE, folder, run_id, log, kernel_name, {"optimize": dict(overrides or {})})
        except Exception as exc:  # noqa: BLE001 - recorded, then reported
            dt = time.perf_counter() - t0
            reason, tb = _reason(exc)
            status_mod.mark_stage(folder, st, OPTIMIZE_STAGE, "failed", duration_s=dt, error=reason, traceback=tb)
            try:
                _render(folder, OPTIMIZE_STAGE)
            finally:
                report.write_index(folder)
            result.status, result.failed_stage, result.error = "failed", OPTIMIZE_STAGE, reason
            result.stage_times[OPTIMIZE_STAGE] = dt
            return result
        dt = time.perf_counter() - t0
        result.stage_times[OPTIMIZE_STAGE] = dt
        status_mod.mark_stage(folder, st, OPTIMIZE_STAGE, "completed", duration_s=dt)
        _render(folder, OPTIMIZE_STAGE)
        if all(s.get("status") == "completed" for s in st["stages"].values()):
            status_mod.mark_run(folder, st, "completed")
        report.write_index(folder)
        result.status = "completed"
        result.diagnostics = read_verdict(folder)
        log(f"  done in {dt:.1f} s")
        return result


def print_optimization(result: RunResult, log: Log = print) -> None:
    """The recommendation in a few lines: budget, uplift with its interval, each channel's change."""
    try:
        opt = read_json(result.run_dir / "optimization.json")
    except FileNotFoundError:
        return
    up, hz = opt["uplift"], opt["horizon"]
    v = result.diagnostics or read_verdict(result.run_dir)
    mark = "  PROVISIONAL (convergence checks failed)" if v.failed else ""
    log(f"  budget {opt['budget']:,.0f} over {hz['periods']} periods ({hz['start']} → {hz['end']}), {opt['budget_source']}{mark}")
    log(f"  recommended split adds {up['incremental']:,.0f} sales over the current split "
        f"[90%: {up['incremental_low']:,.0f} – {up['incremental_high']:,.0f}], P(gain) {100 * up['probability_positive']:.0f}%")
    for c in opt["channels"]:
        where = f"  (at {c['at_bound']} bound)" if c.get("at_bound") in ("lower", "upper") else ""
        log(f"  {c['channel']:<16} {c['current_spend']:>14,.0f} → {c['recommended_spend']:>14,.0f}{where}")
    for m in opt.get("messages", []):
        log(f"  - {m}")
    log(f"  report: {result.run_dir / 'reports' / f'{OPTIMIZE_STAGE}.html'}")


def explain_stop(result: RunResult, log: Log = print) -> None:
    """Why the diagnostics gate stopped the run: the failed checks and parameters, and what to try, in order."""
    v = result.diagnostics or read_verdict(result.run_dir)
    log(f"stopped: {GATE} is 'stop' and 05_diagnose failed, so 06_contribute (contributions, ROI) was not run")
    for line in v.explain().splitlines():
        log(f"  {line}")
    log(f"  then run the spec again with --restart (or another --run-id); with {GATE}: warn a run goes on "
        f"despite failed checks and marks its numbers provisional")
    log(f"  diagnostics report: {result.run_dir / 'reports' / f'{DIAGNOSE_STAGE}.html'}")
    log(f"index: {result.index}")


def print_headline(result: RunResult, log: Log = print) -> None:
    """The numbers a user wants first: fit quality and ROI per channel, marked PROVISIONAL (with the reason
    and what to try) when the convergence checks failed."""
    v = result.diagnostics or read_verdict(result.run_dir)
    mark = "  PROVISIONAL" if v.failed else ""
    if v.failed:
        log(f"  PROVISIONAL: convergence checks failed ({v.checks_text()}); the fit and ROI below may change "
            f"once the fit converges")
    try:
        fit = read_json(result.run_dir / "fit_metrics.json")
        log(f"  fit: R² {fit.get('r2', float('nan')):.3f}, MAPE {fit.get('mape', float('nan')):.1f}%{mark}")
        ho = fit.get("holdout")
        if ho:
            b = ho["brand"]
            log(f"  holdout ({ho['periods']} periods from {ho['start']}, not fitted): MAPE {b['mape']:.1f}%, "
                f"CRPS {b['crps']:,.0f}, {100 * b['coverage_90']:.0f}% inside the 90% band")
        roi = read_json(result.run_dir / "roi_metrics.json")
        pct = int(round(100 * roi.get("interval", 0.9)))
        for c in roi.get("channels", []):
            if c.get("roi") is not None:
                log(f"  ROI {c['channel']:<16} {c['roi']:6.2f}  [{pct}%: {c['roi_low']:.2f} – {c['roi_high']:.2f}]{mark}")
    except (FileNotFoundError, KeyError, TypeError):
        pass
    if v.failed:
        log(f"  PROVISIONAL because 05_diagnose failed ({GATE}: {v.gate}, so the run went on):")
        if v.parameters:
            log(f"    parameters that failed: {v.parameters_text()}")
        for line in v.explain().splitlines()[1:]:
            log(f"  {line}")
        log(f"  diagnostics report: {result.run_dir / 'reports' / f'{DIAGNOSE_STAGE}.html'}")
    log(f"index: {result.index}")

"""Run the stage notebooks in order with papermill (the six, and 07_optimize with ``optimize:``), then render
HTML reports and the index.

``run_pipeline`` is what ``mmm run`` calls. Each stage is a fresh kernel that reads the run spec
(``run_spec.json`` in the run folder, with ``data_path`` resolved) and the upstream artifacts; no
kernel state crosses stages. The overhead around the stages' work is kept off the critical path: the next
stage's kernel starts and imports its modules while the current stage runs (:mod:`mmm_lib.kernels`), a finished
stage's HTML reports render in a worker thread while the next one runs, and the executed notebook is written
every few seconds rather than around every cell (``SAVE_EVERY_S``). Before 06_contribute the diagnostics gate (:mod:`mmm_lib.gate`) reads
05_diagnose's verdict: with ``diagnostics.gate: stop`` a failed convergence check ends the run there
(status ``stopped``); with ``warn`` the run goes on and its numbers are marked provisional.

Every way a run ends is recorded. A failed stage (also a kernel that died, or a write that found the disk full)
is ``failed`` with a one-line cause; a signal (SIGINT/Ctrl-C, SIGTERM, SIGHUP) stops the stage's kernel, records
the run as ``interrupted`` and raises :class:`RunInterrupted` (exit status 128 + the signal number); a write that
fails outside a stage (disk full, read-only outputs) raises :class:`RunError` with that line. The lock is
released in each case. A completed stage records its artifacts' SHA-256 in ``status.json``; ``--resume``
checks them, reruns from the first stage whose artifacts changed, renders reports a crash left missing and
removes leftover temporaries. A run on a dataset keeps the dataset's file (``source.<ext>``) like a run on a file.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from . import kernel_keeper, report, status as status_mod, tracking
from .gate import GateVerdict, read_verdict, report_top_banner
from .kernel_keeper import keep_minutes
from .kernels import KERNEL_ARGS, StageKernels, forking, kernel_end as _kernel_end, shared_server
from .kernels import kernel_manager_class as _kernel_manager_class
from .kernels import kill_kernels as _kill_kernels, signal_name
from .runtime import CORES_ENV, compile_settings, skip_slow_schema_formats
from .spec import RunSpec, SpecError, load_spec, parse_spec, spec_to_dict
from .status import ALL_STAGES, STAGE_TITLES, STAGES
from .storage import (
    LOCK_FILE,
    dataset_dir,
    describe_os_error,
    keep_dataset_source,
    read_json,
    remove_temporaries,
    repo_root,
    run_dir as run_path,
    sha256_file,
    using_outputs,
    validate_id,
    write_json,
)

Log = Callable[[str], None]

# The stage whose verdict the gate reads, and the stage it guards.
DIAGNOSE_STAGE, GATED_STAGE = "05_diagnose", "06_contribute"
GATE = "diagnostics.gate"


class RunError(RuntimeError):
    """A run that could not start or a stage that failed; the message names the stage and reason."""


class RunInterrupted(KeyboardInterrupt):
    """A run ended by a signal (Ctrl-C, SIGTERM, SIGHUP), after ``status.json`` recorded it as ``interrupted``.

    A ``KeyboardInterrupt``, so code that goes on after a failed run (``except Exception``) still stops.
    ``exit_code`` is the shell's 128 + signal number (130 for Ctrl-C, 143 for SIGTERM).
    """

    def __init__(self, signum: int, message: str | None = None):
        self.signum = int(signum)
        self.message = message or f"interrupted by {signal_name(signum)}"
        super().__init__(self.message)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return self.message


_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise :class:`RunInterrupted` in the run (so it is recorded and the lock
    released) instead of ending the process silently; the stage's kernel is stopped at once. Further signals
    are ignored while the end is recorded (a second Ctrl-C would otherwise cut that short). Outside the main
    thread (a pool of runs) Python cannot install handlers: signals keep their usual effect there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        _kill_kernels()
        if _importing(frame):
            # Raising inside an import can leave that module's import lock held for good: the report thread then
            # waits on it forever and so does the run's end (seen as a hung Ctrl-C in the signal tests). The same
            # signal is sent again in a moment, when this thread is past the import.
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return
        for s in _STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise RunInterrupted(signum)

    old = {s: signal.signal(s, stop) for s in _STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _importing(frame: Any) -> bool:
    """Whether ``frame`` (where a signal interrupted this thread) is inside Python's import machinery."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


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
    Who owns the run is also recorded in ``status.json`` (pid, start time, host): that tells a run killed
    with SIGKILL (file still ``running``) from a live one, also where the lock cannot be probed.
    """

    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        # A short wait: `mmm runs list`/`rm` probe the lock for an instant (storage.lock_held).
        self._lock = FileLock(self.path, timeout=1, on_acquired=_write_pid)

    def __enter__(self) -> "_Lock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
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
        except OSError as e:  # after Timeout, which is one (a TimeoutError)
            raise RunError(f"run {self.path.parent.name!r} cannot start: {describe_os_error(e, self.path.parent)}") from None
        return self

    def __exit__(self, *exc) -> None:
        # Unlink while still holding it: a process that opened the file meanwhile finds it unlinked, not free.
        try:
            self.path.unlink(missing_ok=True)
        except OSError:  # a folder that became read-only: the OS lock is released all the same
            pass
        self._lock.release()


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())


def default_run_id(spec_path: str | Path) -> str:
    return f"{Path(spec_path).stem}_{datetime.now().strftime('%Y%m%d-%H%M%S')}"


# papermill writes the whole executed notebook (figures included) before and after every cell: 240 writes, about
# 1.5 s of the runner's time per run (cProfile of `mmm run params/baseline.yaml`), spent between cells. The stage
# engine writes it at most every SAVE_EVERY_S during a stage; papermill still writes it at the end and on a cell
# error, and a kernel killed mid-stage leaves the notebook as it was at most that long before.
SAVE_EVERY_S = 5.0
_ENGINE = "mmm_stage"


@functools.cache
def _stage_engine() -> str:
    """Register (once) papermill's nbclient engine with throttled notebook saves; its name for ``engine_name``."""
    from datetime import timedelta

    from papermill.engines import NBClientEngine, papermill_engines

    class StageEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):  # type: ignore[no-untyped-def]
            save = nb_man.save

            def throttled(**kw: object) -> None:
                if nb_man.now() - nb_man.last_save_time >= timedelta(seconds=SAVE_EVERY_S):
                    save(**kw)

            nb_man.save = throttled
            try:
                return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
            finally:
                nb_man.save = save

    papermill_engines.register(_ENGINE, StageEngine)
    return _ENGINE


def _run_notebook(src: Path, out: Path, parameters: dict, kernel_name: str, stdout: io.TextIOBase,
                  stderr: io.TextIOBase, km: object = None) -> None:
    """Execute one notebook in a fresh kernel (papermill); cell output goes to ``stdout``/``stderr``.

    ``km``: a kernel manager whose kernel was started for this notebook (:class:`~mmm_lib.kernels.StageKernels`);
    papermill then uses it and leaves shutting it down to the caller. Without it papermill starts one."""
    import papermill

    engine_kw = {"km": km} if km is not None else {}

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
        extra_arguments=list(KERNEL_ARGS),
        kernel_manager_class=_kernel_manager_class(),
        engine_name=_stage_engine(),
        **engine_kw,
    )


def _execute(stage: str, folder: Path, run_id: str, log: Log, kernel_name: str, extra: dict | None = None,
             km: object = None) -> None:
    out_nb = folder / "notebooks" / f"{stage}.ipynb"
    out_nb.parent.mkdir(exist_ok=True)
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    stdout = _StageStdout(log, stage)
    with open(logs / f"{stage}.stderr.log", "w", encoding="utf-8") as stderr:
        try:
            _run_notebook(notebooks_dir() / f"{stage}.ipynb", out_nb,
                          {"spec_path": str(folder / "run_spec.json"), "run_id": run_id, **(extra or {})}, kernel_name,
                          stdout, stderr, km)
        finally:
            stdout.flush()


_WRITE_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS, errno.EACCES, errno.EPERM}


def _reason(exc: BaseException, km: object = None) -> tuple[str, str]:
    """A one-line reason and the traceback text for a failed stage (``km``: its kernel manager, if the runner
    started it)."""
    from papermill.exceptions import PapermillExecutionError

    import traceback

    if isinstance(exc, PapermillExecutionError):
        evalue = str(exc.evalue).strip()
        reason = f"{exc.ename}: {evalue}"
        m = re.match(r"\[Errno (\d+)\] ([^:]*)(?::\s*'(.*)')?", evalue)
        if m and int(m.group(1)) in _WRITE_ERRNOS:  # a write inside the stage: say where and what to do
            reason = f"{exc.ename}: {describe_os_error(OSError(int(m.group(1)), m.group(2), m.group(3)))}"
        return reason, "\n".join(exc.traceback)
    tb = "".join(traceback.format_exception(exc))
    if type(exc).__name__ == "DeadKernelError" or (isinstance(exc, RuntimeError) and "Kernel died" in str(exc)):
        return (f"the stage's kernel (the Python process running the notebook) {_kernel_end(km)} before the stage "
                f"finished (its own output is in logs/{KERNEL_LOG}); continue with --resume"), tb
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {describe_os_error(exc)}", tb
    return f"{type(exc).__name__}: {exc}", tb


def _render(folder: Path, stage: str) -> None:
    import nbformat

    path = folder / "notebooks" / f"{stage}.ipynb"
    if path.exists():
        nb = nbformat.read(str(path), as_version=4)  # read once, render twice
        # Numbers computed from a fit that failed its checks: the page opens with a PROVISIONAL bar.
        banner = report_top_banner(read_verdict(folder)) if stage in (GATED_STAGE, "07_optimize") else ""
        report.export_html(nb, folder / "reports" / f"{stage}.html", hide_code=True, banner_html=banner)
        report.export_html(nb, folder / "reports" / f"{stage}_code.html", hide_code=False, banner_html=banner)


def _render_quietly(folder: Path, stage: str, log: Log) -> None:
    """Render a failed or interrupted stage's report if its notebook allows: that must never hide why the run ended."""
    try:
        _render(folder, stage)
    except Exception as e:  # noqa: BLE001 - a half-written notebook (disk full, killed kernel) has no report
        log(f"  (no report for {stage}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")


def _write_index_quietly(folder: Path, log: Log) -> None:
    try:
        report.write_index(folder)
    except Exception as e:  # noqa: BLE001
        log(f"  (index.html not updated: {describe_os_error(e) if isinstance(e, OSError) else e})")


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


# ------------------------------------------------------------------ what a completed stage leaves, checked on resume

def _kept_source(folder: Path) -> dict | None:
    """The input copy 01_validate recorded (``validation_summary.json`` ``source``), if any."""
    try:
        src = read_json(folder / "validation_summary.json").get("source")
    except (OSError, ValueError, AttributeError):
        return None
    return src if isinstance(src, dict) and src.get("file") and src.get("sha256") else None


def _fingerprints(folder: Path, stage: str) -> dict[str, str]:
    """SHA-256 of each artifact ``stage`` wrote (and of the kept input file, for 01_validate)."""
    from .stages import outputs_of

    names = list(outputs_of(stage))
    if stage == "01_validate":
        src = _kept_source(folder)
        if src and str(src["file"]) not in names:
            names.append(str(src["file"]))
    return {n: sha256_file(folder / n) for n in names if (folder / n).is_file()}


def _damage(folder: Path, st: dict, stage: str) -> str | None:
    """Why ``stage``'s kept artifacts cannot be trusted, or ``None``. Checked: the SHA-256 recorded when the stage
    completed (runs before these were recorded: that the files are there), the kept input file against the
    checksum 01_validate recorded, and that the stage's report exists or can be rendered again."""
    recorded = st["stages"][stage].get("artifacts")
    if isinstance(recorded, dict):
        for name, sha in recorded.items():
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            if sha256_file(path) != sha:
                return f"{name} changed since the stage completed (SHA-256 differs: truncated, damaged or edited)"
    if stage == "01_validate":
        src = _kept_source(folder)
        if src and (folder / str(src["file"])).is_file() and sha256_file(folder / str(src["file"])) != src["sha256"]:
            return f"the kept input {src['file']} is not the file this run validated (SHA-256 differs)"
    if not (folder / "notebooks" / f"{stage}.ipynb").is_file():
        return f"its executed notebook notebooks/{stage}.ipynb is missing (no report can be made)"
    return None


def _check_input_unchanged(folder: Path, spec: RunSpec, run_id: str) -> None:
    """Before 01_validate is rerun on a resumed run whose later stages exist: the input must be the file the run
    validated, or the run would stop being able to say what it was fitted on."""
    src = _kept_source(folder)
    if not src:
        return
    from .storage import Run

    try:
        if spec.data_path is not None:
            now = Run(run_id=run_id, dir=folder, spec=spec).data_source().sha256
        else:
            now = read_json(dataset_dir(str(spec.dataset_id)) / "metadata.json").get("sha256")
    except (OSError, ValueError):
        return  # 01_validate itself says what is wrong with the input
    if now and now != src["sha256"]:
        where = spec.data_path if spec.data_path is not None else f"dataset {spec.dataset_id!r}"
        raise RunError(
            f"run {run_id!r} cannot be resumed: its kept input {src['file']} is damaged and {where} is no longer the "
            f"file it was fitted on (SHA-256 {now[:12]}…, was {src['sha256'][:12]}…); restore that file, or use "
            f"--restart to fit the new one"
        )


def _resume_point(folder: Path, st: dict, stages: list[str], spec: RunSpec, run_id: str, log: Log) -> int:
    """Index of the first stage to run on resume: after the completed stages whose artifacts are intact.

    Reports a crash left missing are rendered again from the executed notebooks."""
    done = [s for s in stages if st["stages"][s]["status"] == "completed"]
    start_at = len(done) if done == stages[: len(done)] else 0
    for i, stage in enumerate(stages[:start_at]):
        problem = _damage(folder, st, stage)
        if problem:
            log(f"  {stage}: {problem}; rerunning from {stage}")
            if i == 0:
                _check_input_unchanged(folder, spec, run_id)
            start_at = i
            break
    for i, stage in enumerate(stages[:start_at]):
        reports = [folder / "reports" / f"{stage}{x}.html" for x in ("", "_code")]
        if not all(r.is_file() for r in reports):
            log(f"  {stage}: report missing; rendering it again")
            try:
                _render(folder, stage)
            except OSError:
                raise
            except Exception as e:  # noqa: BLE001 - a damaged executed notebook: the stage is run again instead
                log(f"  {stage}: its notebook cannot be rendered ({type(e).__name__}); rerunning from {stage}")
                if i == 0:
                    _check_input_unchanged(folder, spec, run_id)
                start_at = i
                break
    status_mod.reset_stages(st, stages[start_at:])
    return start_at


def _keep_dataset_input(folder: Path, spec: RunSpec) -> None:
    """A run on a dataset keeps the dataset's file too (``source.<ext>``), checked against what 01_validate read."""
    if spec.dataset_id is None:
        return
    src = _kept_source(folder)
    try:
        keep_dataset_source(folder, spec.dataset_id, src["sha256"] if src else None)
    except ValueError as e:
        raise RunError(str(e)) from None


def _interrupted_message(run_id: str, spec_path: str | Path, st: dict | None, signum: int) -> str:
    stage = (st or {}).get("stage")
    where = f" during {stage}" if stage else ""
    return (f"run {run_id!r} interrupted by {signal_name(signum)}{where}; completed stages are kept: continue with "
            f"`mmm run {spec_path} --run-id {run_id} --resume`")


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
    outputs: str | Path | None = None,
    cache: str | Path | None = None,
    cores: int | None = None,
    keep_kernel_server: bool = False,
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
        Continue an existing failed or interrupted run from its first unfinished stage (the spec must match).
        Completed stages are checked first (their artifacts' SHA-256, the kept input file): the first one whose
        artifacts changed is run again, with everything after it. A run the diagnostics gate stopped stops again
        (same spec, same fit): change the spec and ``restart``.
    restart
        Delete an existing run with this id and run it again from the start.
    mlflow
        Log the finished run to MLflow (:mod:`mmm_lib.tracking`); ``None`` (default): when
        ``MLFLOW_TRACKING_URI`` is set. Needs the ``mlflow`` extra.
    outputs
        The outputs root the run is written under (``<outputs>/runs/<run_id>``); default
        :func:`~mmm_lib.storage.outputs_root`. Set for this call only (and passed to its kernels), never in the
        process environment: a batch worker runs several runs, each with the root it was given.
    cache
        The compile cache folder for this run's kernels (:func:`mmm_lib.runtime.compile_settings`); default
        ``$MMM_CACHE`` or ``~/.cache/mmm_lib``.
    cores
        At most this many chains sample at once (default: the cores this process may use).
    keep_kernel_server
        Keep the kernel server (the process the stage kernels are forked from, :mod:`mmm_lib.kernel_server`) for
        this process's later runs with the same outputs root, cache and cores, instead of one per run: a batch
        worker pays the stage modules' imports once, and its runs' first stages are forked too.

    Returns
    -------
    RunResult
        ``status`` ``completed``, ``failed`` or ``stopped`` (``diagnostics.gate: stop`` and failed
        convergence checks: 06_contribute was not run); ``diagnostics`` holds 05_diagnose's verdict.

    Raises
    ------
    RunError
        The run could not start (exists, locked, different spec) or could not record its progress (disk full,
        read-only outputs folder): the message is one line naming the cause and the fix.
    RunInterrupted
        SIGINT, SIGTERM or SIGHUP ended the run; ``status.json`` says ``interrupted`` and where.
    """
    with using_outputs(outputs) as root:
        env = stage_env(root, cache, cores)
        server = shared_server(notebooks_dir(), env) if keep_kernel_server and forking() else None
        return _run_pipeline(spec_path, run_id, overrides, resume=resume, restart=restart, log=log,
                             kernel_name=kernel_name, mlflow=mlflow, env=env, server=server)


def stage_env(outputs: Path, cache: str | Path | None = None, cores: int | None = None) -> dict[str, str]:
    """What a run's stage kernels get on top of this process's environment: the outputs root, the compile cache
    and thread settings (:func:`mmm_lib.runtime.compile_settings`), the cores the sampler may use."""
    skip_slow_schema_formats()  # this process reads notebooks next (papermill, nbformat)
    try:
        keep_minutes()  # a bad MMM_KEEP_KERNELS is said now, not when the run ends
    except ValueError as e:
        raise RunError(str(e)) from None
    env = {**compile_settings(cache), "MMM_OUTPUTS": str(outputs)}
    if cores is not None:
        env[CORES_ENV] = str(max(1, int(cores)))
    return env


def _run_pipeline(spec_path: str | Path, run_id: str | None, overrides: list[str] | None, *, resume: bool,
                  restart: bool, log: Log, kernel_name: str, mlflow: bool | None, env: dict[str, str],
                  server: Any = None) -> RunResult:
    spec = load_spec(spec_path, overrides)  # SpecError here, before anything is created
    track = tracking.wanted(mlflow, log)  # a missing MLflow is reported now, not after the fit
    run_id = validate_id(run_id or default_run_id(spec_path), "run_id")
    folder = run_path(run_id)
    st: dict | None = None
    with _stop_on_signals(), _Lock(folder):
        try:
            st = _prepare(folder, run_id, spec, resume=resume, restart=restart, log=log)
            return _run_stages(folder, run_id, spec, st, log, env, track, kernel_name, server)
        except RunInterrupted as e:
            raise RunInterrupted(e.signum, _end_interrupted(folder, run_id, spec_path, st, e.signum, log)) from None
        except KeyboardInterrupt:  # signals not routed through our handler (a run outside the main thread)
            _kill_kernels()
            raise RunInterrupted(signal.SIGINT,
                                 _end_interrupted(folder, run_id, spec_path, st, signal.SIGINT, log)) from None
        except OSError as e:
            raise RunError(_end_os_error(folder, run_id, st, e, log)) from None


def _end_interrupted(folder: Path, run_id: str, spec_path: str | Path, st: dict | None, signum: int, log: Log) -> str:
    """Record an interrupted run (status.json, index) as well as the disk allows; the one-line message."""
    msg = _interrupted_message(run_id, spec_path, st, signum)
    if st is not None:
        try:
            status_mod.mark_interrupted(folder, st, f"interrupted by {signal_name(signum)}")
            stage = st.get("stage")
            if stage:
                _render_quietly(folder, stage, lambda m: None)
            _write_index_quietly(folder, lambda m: None)
        except OSError as e:
            msg += f" (status.json could not be updated: {describe_os_error(e, folder)})"
        except Exception:  # noqa: BLE001 - the message still goes out
            pass
    return msg


def _end_os_error(folder: Path, run_id: str, st: dict | None, exc: OSError, log: Log) -> str:
    """A write of the runner itself failed (status, report, index): record it if the disk allows; the message."""
    cause = describe_os_error(exc, folder)
    stage = (st or {}).get("stage")
    msg = f"run {run_id!r} failed{f' in {stage}' if stage else ''}: {cause}; then continue with --resume"
    if st is not None and stage:
        try:
            if st["stages"][stage]["status"] == "running":
                status_mod.mark_stage(folder, st, stage, "failed", error=f"{type(exc).__name__}: {cause}")
            else:
                st.update(status="failed", error=f"{stage}: {type(exc).__name__}: {cause}")
                status_mod.write_status(folder, st)
        except OSError:
            msg += ("; status.json could not be updated either (it keeps its previous content; "
                    "`mmm runs status` shows the run as interrupted)")
    _write_index_quietly(folder, lambda m: None)
    return msg


def _prepare(folder: Path, run_id: str, spec: RunSpec, *, resume: bool, restart: bool, log: Log) -> dict:
    """Under the lock: check or create the run folder; the status to go on with (``_start_at`` set for resume)."""
    start_at = 0
    st = None
    if (folder / "status.json").exists():
        try:
            old = read_json(folder / "status.json")
        except ValueError as e:
            if not restart:
                raise RunError(f"run {run_id!r} has an unreadable status.json ({e}); use --restart to run it "
                               "again from scratch, or another --run-id") from None
            old = {}
        old = status_mod.effective_status(folder, old) if isinstance(old, dict) and old else old
        if resume:
            try:
                stored = read_json(folder / "run_spec.json")
            except (OSError, ValueError):
                stored = None
            if not isinstance(stored, dict) or not _same_spec(stored, spec):
                raise RunError(f"run {run_id!r} was made with a different spec; use --restart to run it anew")
            gone = remove_temporaries(folder)
            if gone:
                log(f"  removed {len(gone)} temporary file(s) a killed run left: {', '.join(p.name for p in gone[:3])}"
                    + (" …" if len(gone) > 3 else ""))
            st = status_mod.claim(read_json(folder / "status.json"))
            stages = [s for s in ALL_STAGES if s in st["stages"]]
            start_at = _resume_point(folder, st, stages, spec, run_id, log)
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
                f"or interrupted run from where it ended, --restart to run it again from scratch, or another --run-id"
            )
    if st is None:
        write_json(folder / "run_spec.json", spec_to_dict(spec))
        st = status_mod.new_status(run_id, status_mod.planned_stages(spec))
    st["_start_at"] = start_at
    return st


class _Reports:
    """Stage reports rendered in a worker thread while the next stage runs (HTML export is off the critical path).

    :meth:`wait` returns when every report asked for is written, raising the first error (an ``OSError`` such as
    a full disk becomes the run's :class:`RunError`, as when reports were rendered in line)."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mmm-reports")
        self._pending: list = []

    def render(self, folder: Path, stage: str) -> None:
        self._pending.append(self._pool.submit(_render, folder, stage))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        errors = [f.exception() for f in pending]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def wait_quietly(self, log: Log) -> None:
        """As :meth:`wait`, for a run that is ending anyway: a report that cannot be written is only logged."""
        try:
            self.wait()
        except Exception as e:  # noqa: BLE001 - never hide why the run ended
            log(f"  (a report could not be written: {type(e).__name__}: {e})")

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _run_stages(folder: Path, run_id: str, spec: RunSpec, st: dict, log: Log, env: dict, track: bool,
                kernel_name: str, server: Any = None) -> RunResult:
    kernels = StageKernels(kernel_name, notebooks_dir(), env, folder / "logs" / KERNEL_LOG, server=server)
    reports = _Reports()
    try:
        return _run_stages_with(folder, run_id, spec, st, log, env, track, kernels, reports)
    finally:
        kernels.close()
        reports.close()


def _run_stages_with(folder: Path, run_id: str, spec: RunSpec, st: dict, log: Log, env: dict, track: bool,
                     kernels: StageKernels, reports: _Reports) -> RunResult:
    start_at = st.pop("_start_at")
    status_mod.write_status(folder, st)
    result = RunResult(run_id=run_id, run_dir=folder, status="running")
    log(f"run {run_id}: {folder}")
    log(f"  compile cache: {env['PYTENSOR_FLAGS']}")
    if kernels.kept_server:
        what = "this run and its kernels" if kernel_keeper.HANDED_OVER_BY else "kernels"
        log(f"  {what}: forked from the kernel server an earlier run kept (pid {kernels.kept_server}; `mmm kernels`)")
    t_run = time.perf_counter()
    stages = [s for s in ALL_STAGES if s in st["stages"]]
    n = len(stages)
    if start_at < n:
        kernels.start_first(stages[start_at])  # the first stage's kernel before anything else: it is on the clock
    if n - start_at > 1:
        kernels.warm()  # later stages' kernels are forked from it

    def finish(status: str) -> RunResult:
        reports.wait_quietly(log)
        _write_index_quietly(folder, log)
        result.status = status
        if track:
            tracking.log_run(result, log)
        return result

    for i, stage in enumerate(stages):
        if i < start_at:
            log(f"[{i + 1}/{n}] {STAGE_TITLES[stage]:<20} already completed (resumed)")
            continue
        if stage == GATED_STAGE:
            result.diagnostics = _gate(folder, st, log)
            if result.diagnostics.stops:
                status_mod.mark_stopped(folder, st, DIAGNOSE_STAGE, by=GATE, reason=result.diagnostics.reason,
                                        skipped=stages[i:])
                log(f"[{i + 1}/{n}] {STAGE_TITLES[stage]:<20} not run: stopped by {GATE}: stop")
                return finish("stopped")
        log(f"[{i + 1}/{n}] {STAGE_TITLES[stage]:<20} running …")
        status_mod.mark_stage(folder, st, stage, "running")
        t0 = time.perf_counter()
        km = None
        try:
            km = kernels.take(stage)
            if i + 1 < n:  # the next stage's kernel boots and imports while this one runs
                kernels.start_ahead(stages[i + 1])
            _execute(stage, folder, run_id, log, kernels.kernel_name, km=km)
            if stage == "01_validate":
                _keep_dataset_input(folder, spec)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, then reported in the result
            dt = time.perf_counter() - t0
            reason, tb = _reason(exc, km)
            status_mod.mark_stage(folder, st, stage, "failed", duration_s=dt, error=reason, traceback=tb)
            reports.wait_quietly(log)
            _render_quietly(folder, stage, log)
            log(f"[{i + 1}/{n}] {STAGE_TITLES[stage]:<20} FAILED after {dt:.1f} s")
            result.failed_stage, result.error = stage, reason
            result.stage_times[stage] = dt
            return finish("failed")
        finally:
            kernels.release(km)
        dt = time.perf_counter() - t0
        result.stage_times[stage] = dt
        status_mod.mark_stage(folder, st, stage, "completed", duration_s=dt, artifacts=_fingerprints(folder, stage))
        reports.render(folder, stage)
        report.write_index(folder)
        log(f"[{i + 1}/{n}] {STAGE_TITLES[stage]:<20} done in {dt:.1f} s")
    if result.diagnostics is None:  # every stage was already completed (resumed)
        result.diagnostics = read_verdict(folder)
    kernels.wind_down()  # while the last report renders
    if kernels.kept_for_later:
        log("  kernel server kept for the next run (`mmm kernels` lists or stops it; MMM_KEEP_KERNELS=0 keeps none)")
    reports.wait()
    status_mod.mark_run(folder, st, "completed")
    report.write_index(folder)
    result.status = "completed"
    log(f"run {run_id} completed in {time.perf_counter() - t_run:.1f} s"
        + (" (PROVISIONAL: convergence checks failed)" if result.provisional else ""))
    if track:
        tracking.log_run(result, log)
    return result


OPTIMIZE_STAGE = "07_optimize"
KERNEL_LOG = "kernels.log"  # in the run's logs/: the stage kernel processes' own output (ipykernel, ZeroMQ)


def optimize_run(run_id: str, overrides: dict | None = None, *, log: Log = print, kernel_name: str = "python3",
                 outputs: str | Path | None = None, cache: str | Path | None = None) -> RunResult:
    """Run (or rerun) 07_optimize on a fitted run, without refitting: ``mmm optimize``.

    ``overrides`` are ``optimize`` settings (``budget``, ``bounds``, ``scenario_path`` …) on top of the run
    spec's section; they are validated before any kernel starts (:class:`~mmm_lib.spec.SpecError`), passed
    to the notebook and recorded in ``optimization.json``. The stage is added to ``status.json``, its report
    rendered and the index updated, as in ``mmm run``. ``outputs`` and ``cache`` as for :func:`run_pipeline`.
    """
    with using_outputs(outputs) as root:
        return _optimize_run(run_id, overrides, log, kernel_name, stage_env(root, cache))


def _optimize_run(run_id: str, overrides: dict | None, log: Log, kernel_name: str, env: dict[str, str]) -> RunResult:
    from .optimize.stage import settings_for

    folder = run_path(validate_id(run_id, "run_id"))
    if not (folder / "status.json").exists():
        raise RunError(f"run {run_id!r} does not exist or was not made by `mmm run` ({folder}); see `mmm runs list`")
    spec = load_spec(folder / "run_spec.json")
    settings_for(spec.optimize, overrides)  # SpecError here, before a kernel starts
    st: dict | None = None
    with _stop_on_signals(), _Lock(folder):
        try:
            st = status_mod.claim(read_json(folder / "status.json"))
            kernels = StageKernels(kernel_name, notebooks_dir(), env, folder / "logs" / KERNEL_LOG)
            try:
                return _optimize_locked(folder, run_id, st, overrides, log, kernels)
            finally:
                kernels.close()
        except RunInterrupted as e:
            msg = _end_interrupted(folder, run_id, "SPEC", st, e.signum, log)
            msg = msg.split("; completed stages")[0] + f"; the fit is kept: run `mmm optimize {run_id}` again"
            raise RunInterrupted(e.signum, msg) from None
        except OSError as e:
            raise RunError(_end_os_error(folder, run_id, st, e, log)) from None


def _optimize_locked(folder: Path, run_id: str, st: dict, overrides: dict | None, log: Log,
                     kernels: StageKernels) -> RunResult:
    remove_temporaries(folder)
    if st.get("status") == "stopped":
        raise RunError(f"run {run_id!r} was stopped by {st.get('stopped_by') or GATE} ({st.get('reason')}): its fit "
                       "failed the convergence checks, so there is no posterior to plan with; fix the fit first")  # fmt: skip
    if st["stages"].get("04_fit", {}).get("status") != "completed":
        raise RunError(f"run {run_id!r} has no completed fit (04_fit is {st['stages'].get('04_fit', {}).get('status')}); "
                       f"finish it with `mmm run … --run-id {run_id} --resume`")  # fmt: skip
    for stage in [s for s in STAGES[: STAGES.index("04_fit") + 1] if s in st["stages"]]:
        problem = _damage(folder, st, stage)
        if problem:
            raise RunError(f"run {run_id!r}: {stage}: {problem}; finish it with `mmm run … --run-id {run_id} --resume` "
                           "(reruns from that stage) before optimizing")
    status_mod.add_stage(folder, st, OPTIMIZE_STAGE)
    result = RunResult(run_id=run_id, run_dir=folder, status="running")
    log(f"run {run_id}: {STAGE_TITLES[OPTIMIZE_STAGE]} running …")
    status_mod.mark_stage(folder, st, OPTIMIZE_STAGE, "running")
    t0 = time.perf_counter()
    km = None
    try:
        km = kernels.take(OPTIMIZE_STAGE)
        _execute(OPTIMIZE_STAGE, folder, run_id, log, kernels.kernel_name, {"optimize": dict(overrides or {})}, km)
    except Exception as exc:  # noqa: BLE001 - recorded, then reported
        dt = time.perf_counter() - t0
        reason, tb = _reason(exc, km)
        kernels.release(km)
        status_mod.mark_stage(folder, st, OPTIMIZE_STAGE, "failed", duration_s=dt, error=reason, traceback=tb)
        _render_quietly(folder, OPTIMIZE_STAGE, log)
        _write_index_quietly(folder, log)
        result.status, result.failed_stage, result.error = "failed", OPTIMIZE_STAGE, reason
        result.stage_times[OPTIMIZE_STAGE] = dt
        return result
    kernels.release(km)
    dt = time.perf_counter() - t0
    result.stage_times[OPTIMIZE_STAGE] = dt
    status_mod.mark_stage(folder, st, OPTIMIZE_STAGE, "completed", duration_s=dt,
                          artifacts=_fingerprints(folder, OPTIMIZE_STAGE))
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
    same = abs(opt["budget"] - opt["current_budget"]) <= 0.005 * max(opt["current_budget"], 1e-9)
    vs = "the current split" if same else f"the current plan ({opt['current_budget']:,.0f})"
    log(f"  recommended plan: {up['incremental']:+,.0f} incremental sales vs {vs} "
        f"[90%: {up['incremental_low']:+,.0f} to {up['incremental_high']:+,.0f}], P(gain) {100 * up['probability_positive']:.0f}%")
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

"""Run a batch on Dask: one task per run, each the same pipeline as ``mmm run`` (:func:`mmm_lib.runner.run_pipeline`).

The seam is :func:`execute_batch`: given a client it uses that cluster; given an address it connects to an
existing scheduler; given neither it starts an embedded :class:`distributed.LocalCluster` sized from the
machine (workers x chains <= cores, one thread per worker, BLAS single-threaded, separate processes).

Why things are as they are:

* Workers must see the outputs root (and the spec and data files) at the same path: a task writes its run
  folder there and the driver reads it back for the page. :func:`check_workers` proves it before any run
  starts, with a probe file each worker writes and reads and the driver then reads too.
* The outputs root, the compile cache and the cores a run may use are passed to each task and on to
  :func:`mmm_lib.runner.run_pipeline` as arguments; nothing is set in a worker's environment, so a worker with
  several threads runs several runs side by side (they then share its cores). The batch's own workers have one
  thread each.
* A failed run is a result, not an exception: the task returns its stage and error and the batch goes on.
  A lost worker's task is rerun by the scheduler (``distributed.scheduler.allowed-failures``), and an
  exception inside the task once more (``retries``); the rerun finds the run folder of the attempt that
  died and resumes it from its unfinished stage.
* Ctrl-C sets a Dask ``Event`` the tasks check, kills the stage kernels on every worker (the stage in flight
  then fails and is recorded as interrupted), cancels what has not started and closes the cluster; runs
  still marked ``running`` afterwards (their worker died with them) are marked failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..kernels import is_stage_kernel
from ..runtime import THREAD_VARS, cache_dir, machine_cores
from ..storage import lock_held, read_json, run_dir, using_outputs
from .manifest import BatchPlan, PlannedRun, slug, spec_hash_of

Log = Callable[[str], None]

THREAD_ENV = dict.fromkeys(THREAD_VARS, "1")
CACHE_MODES = ("shared", "per-worker")
# Measured (README "Many runs at once (mmm batch)"): two workers compiling the baseline model into empty caches
# took 204-211 s sharing one cache and 230 s each with their own; after that a shared cache is warm for every
# worker (~5 s), while per-worker caches compile every model once per worker. So: one cache per host
# ($MMM_CACHE, local disk by default), shared by that host's workers; PyTensor locks its compile directory.
DEFAULT_CACHE = "shared"
# Dask's own sampling, off or slowed for the embedded cluster: its statistical profiler takes every thread's stack
# 100 times a second in each worker (a run's task thread is a papermill loop; its profile tells a user nothing)
# and the system monitor samples every 0.5 s. Measured on the 2-core machine, 2 example runs (100 + 100 draws) on
# 2 workers, each run then capped at 1 core: 106-108 s with Dask's defaults, 92 s without the profiler; uncapped
# runs: 85-88 s, and 78-80 s with the monitor at 5 s too (two plain `mmm run`s side by side: 71 s).
# README "On an existing cluster" gives the same settings for a user's own workers.
QUIET_DASK = {"distributed.worker.profile.enabled": False, "distributed.admin.system-monitor.interval": "5s",
              "distributed.admin.system-monitor.gil.enabled": False}
INTERRUPTED = "interrupted: the batch was stopped (Ctrl-C) while this run was in flight"


class BatchError(RuntimeError):
    """A batch that cannot start (workers that cannot see the outputs root, runs that exist already)."""


def local_workers(chains: int, cores: int | None = None) -> int:
    """Workers for an embedded cluster: each run samples ``chains`` chains in parallel, so workers x chains <= cores."""
    return max(1, (cores or machine_cores()) // max(1, chains))


@contextlib.contextmanager
def open_client(scheduler: str | None = None, workers: int | None = None, chains: int = 2, *,
                log: Log = print, dashboard_address: str = ":8787", cores: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` on an existing scheduler (``tcp://host:8786``) or on an embedded LocalCluster.

    The embedded cluster has ``workers`` worker processes (default: ``cores`` // chains; ``cores`` default: the
    cores this process may use), one thread each, with BLAS single-threaded; it is closed on exit, also after Ctrl-C.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler, timeout="30s")
        try:
            with contextlib.suppress(TimeoutError):  # workers still starting (or scaling up): wait a little
                client.wait_for_workers(1, timeout=60)
            yield client
        finally:
            client.close()
        return
    cores = cores or machine_cores()
    n = workers or local_workers(chains, cores)
    if workers and workers * chains > cores:
        log(f"note: {workers} workers x {chains} chains > {cores} cores: chains will share cores")
    import dask

    with dask.config.set(QUIET_DASK):  # read when the scheduler and each worker start (workers get it from the nanny)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, env=dict(THREAD_ENV),
                               dashboard_address=dashboard_address, memory_limit=0)  # fmt: skip
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


# --------------------------------------------------------------------------------------------- on workers


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmm-notebooks")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def probe_worker(root: str, name: str, token: str, files: list[str], dask_worker: Any = None) -> dict[str, Any]:
    """On a worker: write and read a probe file under the outputs root; say which input files it can read."""
    import socket

    out: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "version": _package_version(),
                           "nthreads": getattr(dask_worker, "state", None) and dask_worker.state.nthreads,
                           "ok": False, "error": None, "path": None, "missing": []}  # fmt: skip
    try:
        path = Path(root) / "batches" / name / ".probe" / f"{token}-{slug(str(getattr(dask_worker, 'name', os.getpid())))}"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = f"{token} {out['host']} {out['pid']}"
        path.write_text(text, encoding="utf-8")
        if path.read_text(encoding="utf-8") != text:
            raise OSError(f"read back something else than was written at {path}")
        out["ok"], out["path"] = True, str(path)
    except OSError as e:
        out["error"] = f"{type(e).__name__}: {e}"
    out["missing"] = [f for f in files if not Path(f).is_file()]
    return out


def kill_kernels() -> list[int]:
    """On a worker: stop the stage kernels it started (papermill's ipykernel children); their stage then fails."""
    import psutil

    me = psutil.Process()
    kids = [p for p in me.children(recursive=True) if is_stage_kernel(_cmdline(p))]
    for p in kids:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(kids, timeout=5)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return [p.pid for p in kids]


def _cmdline(p: Any) -> list[str]:
    try:
        return p.cmdline()
    except Exception:  # noqa: BLE001 - gone or not ours
        return []


class _PeakRSS:
    """Peak resident memory of this worker process and its children (the stage kernels, the kernel server), sampled.

    Counted as PSS where the system reports it (Linux): a page the kernel server shares with the kernels forked
    from it is counted once, split between them, where summing RSS would count it in each."""

    def __init__(self, every_s: float = 1.0):
        self.peak, self._every, self._stop = 0, every_s, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _resident(p: Any) -> int:
        try:
            return int(p.memory_full_info().pss)
        except (AttributeError, OSError, NotImplementedError):  # no PSS here
            return int(p.memory_info().rss)

    def _loop(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):
                total = self._resident(me)
                for c in me.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        total += self._resident(c)
            self.peak = max(self.peak, total)
            self._stop.wait(self._every)

    def __enter__(self) -> "_PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _stop_requested(name: str) -> bool:
    from distributed import Event

    try:
        return Event(stop_event_name(name)).is_set()
    except Exception:  # noqa: BLE001 - no scheduler to ask (called outside a worker): not stopped
        return False


def stop_event_name(name: str) -> str:
    return f"mmm-batch-stop-{name}"


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """One run of a batch, on a worker: ``run_pipeline`` as ``mmm run`` calls it; never raises for a failed run.

    A run folder left by an attempt that died (its worker was lost) is resumed from its unfinished stage;
    one that completed with the same spec hash is reused; one with another spec is restarted.
    """
    from distributed import get_worker

    try:
        worker = get_worker()
        wname, waddr = str(worker.name), worker.address
    except ValueError:  # called in-process (tests, debugging)
        wname, waddr = "local", "local"
    with using_outputs(task["outputs_root"]):
        return _run_one(task, wname, waddr)


def _cache_for(task: dict[str, Any], worker_name: str) -> Path | None:
    """The compile cache of this task's run: the host's (``None``: ``$MMM_CACHE`` or ``~/.cache/mmm_lib``), or
    with ``per-worker`` a folder of this worker's under it."""
    return cache_dir() / "workers" / slug(worker_name) if task.get("cache") == "per-worker" else None


def _run_one(task: dict[str, Any], wname: str, waddr: str) -> dict[str, Any]:
    from ..runner import RunError, run_pipeline

    rid, bfolder = task["run_id"], Path(task["batch_dir"])
    rec: dict[str, Any] = {"run_id": rid, "status": "failed", "failed_stage": None, "error": None, "worker": waddr,
                           "wall_s": None, "peak_rss_mb": None, "reused": False, "action": "run"}  # fmt: skip
    if _stop_requested(task["batch"]):
        rec.update(status="cancelled", error="not started: the batch was stopped")
        return rec
    attempts = bfolder / "attempts" / f"{rid}.jsonl"
    attempts.parent.mkdir(parents=True, exist_ok=True)
    with open(attempts, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"worker": waddr, "pid": os.getpid(), "at": time.time()}) + "\n")

    folder = run_dir(rid)
    resume = restart = False
    if (folder / "status.json").exists() and (folder / "run_spec.json").exists():
        st, same = read_json(folder / "status.json"), spec_hash_of(read_json(folder / "run_spec.json")) == task["spec_hash"]
        if same and st.get("status") == "completed":
            rec.update(status="completed", reused=True, action="reused")
            return rec
        resume, restart = (True, False) if same and st.get("status") != "stopped" else (False, True)
        rec["action"] = "resumed" if resume else "restarted"
    logs = bfolder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(logs / f"{rid}.log", "a", encoding="utf-8") as fh, _PeakRSS() as mem:
        def log(msg: str) -> None:
            fh.write(msg + "\n")
            fh.flush()

        try:
            res = run_pipeline(task["spec_path"], rid, task["overrides"], resume=resume, restart=restart, log=log,
                               outputs=task["outputs_root"], cache=_cache_for(task, wname), cores=task.get("cores"),
                               keep_kernel_server=True)  # one per worker: its imports paid once
            rec.update(status=res.status, failed_stage=res.failed_stage, error=res.error)
        except (RunError, ValueError) as e:  # SpecError is a ValueError
            rec.update(status="failed", error=str(e))
            log(f"error: {e}")
    rec["wall_s"] = round(time.perf_counter() - t0, 2)
    rec["peak_rss_mb"] = round(mem.peak / 2**20, 1)
    if rec["status"] == "failed" and _stop_requested(task["batch"]):
        rec.update(status="cancelled", error=f"{INTERRUPTED} (stage {rec['failed_stage']}: {rec['error']})")
    return rec


# ------------------------------------------------------------------------------------------------ driver


def check_workers(client: Any, plan: BatchPlan, root: Path) -> list[dict[str, Any]]:
    """Every worker writes and reads a probe file under the outputs root, and the driver reads each back.

    Raises
    ------
    BatchError
        Naming each worker that cannot write, whose file the driver cannot see (not the same filesystem),
        that cannot read the spec or data files, or that runs another version of this package.
    """
    token = uuid.uuid4().hex[:12]
    files = [str(plan.base_spec)] + sorted({str(r.spec.data_path) for r in plan.runs
                                            if r.spec is not None and r.spec.data_path})  # fmt: skip
    answers = client.run(probe_worker, str(root), plan.name, token, files)
    if not answers:
        raise BatchError("the cluster has no workers; start some (`dask worker tcp://…`) and try again")
    problems, mine = [], _package_version()
    for addr, a in sorted(answers.items()):
        if not a["ok"]:
            problems.append(f"worker {addr} ({a['host']}) cannot write and read under the outputs root {root}: {a['error']}")
        elif not Path(a["path"]).is_file():
            problems.append(f"worker {addr} ({a['host']}) wrote {a['path']}, but this machine cannot see it: the outputs "
                            "root is not the same folder on both (mount one shared filesystem at the same path)")
        if a["missing"]:
            problems.append(f"worker {addr} ({a['host']}) cannot read {a['missing']}: spec and data files must be "
                            "shared at the same paths")
        if a["version"] != mine:
            problems.append(f"worker {addr} ({a['host']}) runs mmm-notebooks {a['version']}, this machine {mine}: "
                            "install the same version everywhere")
    with contextlib.suppress(OSError):
        for p in (root / "batches" / plan.name / ".probe").glob(f"{token}-*"):
            p.unlink()
    if problems:
        raise BatchError("the workers cannot run this batch:\n  - " + "\n  - ".join(problems))
    return [{"address": k, **v} for k, v in sorted(answers.items())]


def _task(plan: BatchPlan, r: PlannedRun, root: Path, cache: str, cores: int | None) -> dict[str, Any]:
    return {"batch": plan.name, "batch_dir": str(plan.folder), "run_id": r.run_id, "spec_path": str(plan.base_spec),
            "overrides": list(r.overrides), "spec_hash": r.spec_hash, "outputs_root": str(root), "cache": cache,
            "cores": cores}  # fmt: skip


def _completed_same(r: PlannedRun) -> bool:
    folder = run_dir(r.run_id)
    try:
        st = read_json(folder / "status.json")
        return st.get("status") == "completed" and spec_hash_of(read_json(folder / "run_spec.json")) == r.spec_hash
    except (FileNotFoundError, ValueError):
        return False


def sweep_running(plan: BatchPlan, log: Log = print) -> list[str]:
    """Mark failed (interrupted) every run of the batch still recorded as running that no process is writing."""
    from .. import status as status_mod

    fixed = []
    for r in plan.runs:
        folder = run_dir(r.run_id)
        try:
            st = read_json(folder / "status.json")
        except (FileNotFoundError, ValueError):
            continue
        if st.get("status") != "running" or lock_held(folder):
            continue
        stage = st.get("stage") or next((s for s, v in st["stages"].items() if v.get("status") == "running"), None)
        if stage:
            status_mod.mark_stage(folder, st, stage, "failed", error=INTERRUPTED)
        else:
            status_mod.mark_run(folder, st, "failed")
        with contextlib.suppress(Exception):
            from ..report import write_index

            write_index(folder)
        fixed.append(r.run_id)
    if fixed:
        log(f"marked {len(fixed)} interrupted run(s) failed: {', '.join(fixed)}")
    return fixed


def execute_batch(plan: BatchPlan, *, client: Any = None, scheduler: str | None = None, workers: int | None = None,
                  resume: bool = False, cache: str = DEFAULT_CACHE, retries: int = 1, log: Log = print,
                  dashboard_address: str = ":8787", outputs: str | Path | None = None,
                  cores: int | None = None) -> dict[str, Any]:
    """Run every run of ``plan``; write ``batch.json`` and ``index.html`` as runs finish. Returns the batch record.

    Parameters
    ----------
    client
        A ``distributed.Client`` to use (the caller owns it); else ``scheduler`` (an address) or an embedded
        LocalCluster with ``workers`` workers.
    resume
        Skip runs that completed with the same spec hash; resume or restart the others. Without it a batch
        whose run folders exist is refused.
    cache
        ``shared`` (default): the workers of a host share its ``$MMM_CACHE``; ``per-worker``: each worker
        compiles into ``$MMM_CACHE/workers/<worker name>``.
    outputs
        The outputs root every worker writes its runs under (default :func:`mmm_lib.storage.outputs_root`); it
        must be the same folder on every worker, which is checked before any run starts.
    cores
        The embedded cluster's cores (default: the cores this process may use): workers x chains <= cores, and
        a run samples on at most that many. Runs on an existing cluster use their worker's cores.
    """
    if cache not in CACHE_MODES:
        raise BatchError(f"cache {cache!r}: choose one of {', '.join(CACHE_MODES)}")
    with using_outputs(outputs) as root:
        return _execute_batch(plan, root, client=client, scheduler=scheduler, workers=workers, resume=resume,
                              cache=cache, retries=retries, log=log, dashboard_address=dashboard_address, cores=cores)


def _execute_batch(plan: BatchPlan, root: Path, *, client: Any, scheduler: str | None, workers: int | None,
                   resume: bool, cache: str, retries: int, log: Log, dashboard_address: str,
                   cores: int | None) -> dict[str, Any]:
    from .report import batch_record, write_batch

    existing = [r.run_id for r in plan.runs if run_dir(r.run_id).exists()]
    if existing and not resume:
        raise BatchError(f"batch {plan.name!r}: {len(existing)} run folder(s) exist already ({', '.join(existing[:5])}"
                         f"{' …' if len(existing) > 5 else ''}); pass --resume to skip the finished ones and run the rest, "
                         "or remove them (`mmm runs rm`)")  # fmt: skip
    plan.folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    meta: dict[str, Any] = {"resume": resume, "cache": cache, "started_at": time.time()}
    state = {"status": "running"}

    def save() -> dict[str, Any]:
        rec = batch_record(plan, results, {**meta, "status": state["status"]})
        write_batch(plan, rec)
        return rec

    # A run on the embedded cluster may sample on all the cores the batch was given (the OS shares them between the
    # runs: measured faster than dividing them, as one run's chains then use the cores another run's plots leave
    # idle); on an existing cluster, on its worker's.
    run_cores = cores if client is None and not scheduler else None
    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(open_client(scheduler, workers, plan.max_chains, log=log,
                                                     dashboard_address=dashboard_address, cores=cores))  # fmt: skip
        meta["scheduler"] = client.scheduler.address
        meta["workers"] = len(client.scheduler_info(n_workers=-1)["workers"])
        log(f"batch {plan.name}: {len(plan.runs)} run(s) on {meta['workers']} worker(s) at {meta['scheduler']}")
        log(f"  dashboard: {client.dashboard_link}")
        for w in check_workers(client, plan, root):
            if (w.get("nthreads") or 1) > 1:
                log(f"  note: worker {w['address']} has {w['nthreads']} threads: it runs that many runs at once, "
                    "sharing its cores")
        todo = []
        for r in plan.runs:
            if resume and _completed_same(r):
                results[r.run_id] = {"run_id": r.run_id, "status": "completed", "reused": True, "action": "reused"}
                log(f"  {r.run_id}: completed earlier with the same spec, skipped (--resume)")
            else:
                todo.append(r)
        save()
        from distributed import Event, as_completed

        stop = Event(stop_event_name(plan.name), client=client)
        stop.clear()
        # A fresh key per submission: a rerun of the batch must not be served an earlier result by the scheduler.
        futures = {client.submit(run_one, _task(plan, r, root, cache, run_cores), retries=retries, pure=False,
                                 key=f"mmm-batch-{plan.name}-{r.run_id}-{uuid.uuid4().hex[:6]}"): r.run_id
                   for r in todo}  # fmt: skip
        t0, done = time.perf_counter(), 0
        try:
            for fut in as_completed(list(futures)):
                rid = futures[fut]
                results[rid] = _outcome(fut, rid)
                done += 1
                _log_result(log, results[rid], done, len(todo), time.perf_counter() - t0)
                save()
            state["status"] = _overall(results)
        except KeyboardInterrupt:
            state["status"] = "cancelled"
            _stop(client, stop, futures, results, log)
            save()
    # The cluster is closed here (an embedded one): no worker can still write a run's status.
    sweep_running(plan, log)
    rec = save()
    if state["status"] == "cancelled":
        log(f"batch {plan.name} stopped: " + ", ".join(f"{n} {k}" for k, n in rec["counts"].items() if n))
        raise KeyboardInterrupt
    log(f"batch {plan.name} {rec['status']}: " + ", ".join(f"{n} {k}" for k, n in rec["counts"].items() if n))
    log(f"  page: {plan.folder / 'index.html'}")
    return rec


def _stop(client: Any, stop: Any, futures: dict[Any, str], results: dict[str, dict[str, Any]], log: Log) -> None:
    """Ctrl-C: no new runs start, the stage kernels in flight are stopped (their run fails and is recorded as
    interrupted), what has not started is cancelled."""
    from distributed import wait

    log("stopping the batch (Ctrl-C): no new runs start; stage kernels in flight are stopped …")
    stop.set()
    with contextlib.suppress(Exception):
        client.run(kill_kernels)
    with contextlib.suppress(Exception):
        wait(list(futures), timeout=30)  # a task whose kernel was stopped records the failure, then returns
    for fut, rid in futures.items():
        if rid in results:
            continue
        if fut.status == "finished":
            results[rid] = _outcome(fut, rid)
        else:  # its worker went with the Ctrl-C (an embedded cluster shares the terminal), or it never started
            started = (run_dir(rid) / "status.json").exists()
            results[rid] = {"run_id": rid, "status": "cancelled",
                            "error": INTERRUPTED if started else "not started: the batch was stopped"}
    with contextlib.suppress(Exception):
        client.cancel(list(futures), force=True)


def _outcome(fut: Any, rid: str) -> dict[str, Any]:
    """A finished future's record; an exception (a task that kept failing, a worker lost too often) is a failed run."""
    try:
        return fut.result()
    except Exception as e:  # noqa: BLE001 - recorded as the run's failure
        return {"run_id": rid, "status": "failed", "failed_stage": None, "error": f"{type(e).__name__}: {e}"}


def _overall(results: dict[str, dict[str, Any]]) -> str:
    states = {r.get("status") for r in results.values()}
    return "completed" if states <= {"completed"} else "completed_with_failures"


def _log_result(log: Log, rec: dict[str, Any], i: int, n: int, elapsed: float) -> None:
    what = rec["status"]
    if rec.get("failed_stage") or rec.get("error"):
        what += f" at {rec.get('failed_stage') or 'start'}: {rec.get('error')}"
    extra = f" in {rec['wall_s']:.0f} s" if rec.get("wall_s") else ""
    log(f"[{i}/{n}] {rec['run_id']}: {what}{extra} ({rec.get('action', 'run')}, {rec.get('worker', '?')}; "
        f"{elapsed:.0f} s since start)")


"""Stage kernels: one fresh IPython kernel per stage notebook, started while the stage before it runs.

A kernel costs about a second to start and its notebook another one to three seconds to import pandas,
matplotlib, ArviZ or PyMC. :class:`StageKernels` starts the next stage's kernel as soon as the current stage
starts, through :mod:`mmm_lib.stage_kernel`, which imports the modules that notebook imports
(:func:`preload_modules`) before the kernel answers its first request, so both costs overlap the stage that
is running. A kernel started ahead is forked from the run's :class:`~mmm_lib.kernel_server.KernelServer`, which
imported every stage's modules once, so the run pays those imports once instead of once per stage. Every stage
still gets a kernel of its own that no other stage used: nothing a stage computes crosses to the next; the
notebook's own import cell runs as before (its modules are already loaded).

Every kernel this process started is listed in ``_KERNELS`` so a signal can stop them all
(:func:`kill_kernels`) and a kernel that died can say how (:func:`kernel_end`).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import functools
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from .kernel_server import ForkedKernel

# What a stage kernel's command line contains (ipykernel's own launcher, or ours): `mmm batch` finds them by it.
KERNEL_MARKERS = ("ipykernel", "mmm_lib.stage_kernel", "mmm_lib.kernel_server")
STAGE_KERNEL = "mmm_lib.stage_kernel"
# MMM_FORK_KERNELS=0: start every kernel as a new Python (no kernel server), e.g. to rule the server out.
FORK_ENV = "MMM_FORK_KERNELS"
SERVER_WAIT_S = 60.0  # a kernel started ahead waits at most this long for the server's imports

# ipykernel 7 warns on every start that TCP is unencrypted (local kernels): noise.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]
# nbclient starts the kernels it launches with an in-memory IPython history (no sqlite file shared by parallel
# kernels): kernels started here get the same.
_AHEAD_ARGS = [*KERNEL_ARGS, "--HistoryManager.hist_file=:memory:"]


def signal_name(signum: int) -> str:
    """``SIGTERM``, ``SIGINT (Ctrl-C)``, or ``signal 99`` for a number Python does not name."""
    name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else f"signal {signum}"
    return f"{name} (Ctrl-C)" if signum == signal.SIGINT else name


def is_stage_kernel(cmdline: list[str]) -> bool:
    text = " ".join(cmdline)
    return any(m in text for m in KERNEL_MARKERS)


def preload_modules(notebook: Path) -> list[str]:
    """The modules to import in ``notebook``'s kernel before it runs: those its code cells import at the top level
    (``pandas``, ``mmm_lib.features``), then the notebook's ``metadata.mmm.preload`` list.

    The first part is read from the cells, so it cannot drift from what the stage uses. The list in the metadata
    names what the library imports inside functions, only when called (ArviZ's LOO and plots, SciPy's stats,
    PyMC in 07): measured per stage as the packages a stage's run adds to ``sys.modules`` after its import cell,
    keeping those that take over ~0.2 s to import. Cells that do not parse (IPython magics) are skipped; relative
    imports are not modules a kernel can load ahead.
    """
    # Plain JSON, not nbformat: nbformat's import and schema check cost the run's first kernel 0.2-0.3 s before it
    # could start (a notebook papermill cannot read still fails there, with its own message).
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    mods: list[str] = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        try:
            tree = ast.parse(source if isinstance(source, str) else "".join(source))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                mods += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                mods.append(node.module)
    mods += [str(m) for m in nb.get("metadata", {}).get("mmm", {}).get("preload", [])]
    return list(dict.fromkeys(mods))


@functools.cache
def kernel_manager_class() -> type:
    """jupyter_client's AsyncKernelManager, except that shutting a kernel down does not interrupt it first,
    and that a python kernel can be told to import modules before it is ready (``preload``).

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
        preload: list[str] = []
        server: Any = None  # a KernelServer that has this stage's modules loaded: the kernel is forked from it
        stage: str = ""
        log_file: Any = None  # where a forked kernel writes (a launched one is given its handle)

        def __init__(self, **kwargs: Any) -> None:
            # The process's one ZeroMQ context for the control socket too (see _zmq_context): a manager's own was
            # destroyed by its clean-up, and by garbage collection for one that never got there, which could
            # block for good in ZeroMQ's term() (seen: tests/test_stage_kernels.py run on its own).
            super().__init__(**{"context": _zmq_context(), **kwargs})
            self.client_factory = ready_client_class()  # knows a kernel is ready without a fixed wait
            self.clients: list = []  # the clients made for this kernel (papermill's), for stop_clients

        def client(self, **kwargs: Any) -> Any:
            """A client for this kernel on the process's one ZeroMQ context (see :func:`_zmq_context`), one that
            knows when the kernel is ready without jupyter_client's fixed wait (:func:`ready_client_class`)."""
            kc = super().client(**{"context": _zmq_context(), **kwargs})
            self.clients.append(kc)
            return kc

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            cmd = super().format_kernel_cmd(extra_arguments)
            # Only ipykernel's own launcher is replaced: another kernelspec runs as it is.
            if self.preload and "-m" in cmd and cmd[cmd.index("-m") + 1:cmd.index("-m") + 2] == ["ipykernel_launcher"]:
                i = cmd.index("-m")
                cmd = [*cmd[:i], "-m", STAGE_KERNEL, "--preload", ",".join(self.preload), *cmd[i + 2:]]
            return cmd

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            if self.server is not None and STAGE_KERNEL in kernel_cmd:
                # What LocalProvisioner.launch_kernel does, with a fork of the server in place of a new process.
                prov = self.provisioner
                cwd = str(kw.get("cwd") or os.getcwd())
                proc = self.server.fork(kernel_cmd[kernel_cmd.index(STAGE_KERNEL) + 1:],
                                        dict(kw.get("env") or os.environ), cwd, stage=self.stage,
                                        log=str(self.log_file) if self.log_file else None)
                prov.process, prov.pid, prov.pgid, prov.cwd = proc, proc.pid, proc.pid, cwd
                _KERNELS.append(proc)
                self._reconcile_connection_info(prov.connection_info)
                return
            await super()._async_launch_kernel(kernel_cmd, **kw)
            # Kept to stop it on a signal, and to say how it ended when it dies (DeadKernelError says only that).
            proc = getattr(self.provisioner, "process", None)
            if proc is not None:
                _KERNELS.append(proc)

    return StageKernelManager


@functools.cache
def ready_client_class() -> type:
    """jupyter_client's AsyncKernelClient, whose ``wait_for_ready`` returns as soon as the kernel has answered.

    jupyter_client's own waits for a ``kernel_info`` reply, then for one IOPub message (proof that IOPub is
    connected; otherwise it asks again), and then drains IOPub until nothing has come for 0.2 s: every stage paid
    those 0.2 s before its first cell (measured 0.21–0.26 s per stage of ``mmm run`` on a kernel started ahead,
    1.2–1.4 s a run). Here the drain ends at the message that closes the request: the kernel's ``idle`` status
    for it on IOPub, which ipykernel sends after the reply. Its arrival also proves IOPub is connected; when it
    does not come within 0.2 s (a subscription not yet in place drops messages), the request is sent again, as
    upstream does.
    """
    from queue import Empty

    from jupyter_client.asynchronous import AsyncKernelClient

    class ReadyKernelClient(AsyncKernelClient):
        async def _idle_after(self, msg_id: str, within: float) -> bool:
            """Read IOPub until the ``idle`` status of request ``msg_id`` (True), or ``within`` seconds pass."""
            end = time.monotonic() + within
            while (left := end - time.monotonic()) > 0:
                try:
                    msg = await self.iopub_channel.get_msg(timeout=left)
                except Empty:
                    return False
                if (msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle"
                        and msg["parent_header"].get("msg_id") == msg_id):
                    return True
            return False

        async def wait_for_ready(self, timeout: float | None = None) -> None:  # type: ignore[override]
            end = time.monotonic() + (float("inf") if timeout is None else timeout)
            while True:
                self.kernel_info()
                try:
                    reply = await self.shell_channel.get_msg(timeout=1)
                except Empty:
                    reply = None
                if reply is not None and reply["msg_type"] == "kernel_info_reply":
                    if await self._idle_after(reply["parent_header"].get("msg_id"), 0.2):
                        self._handle_kernel_info_reply(reply)
                        return
                if not await self._async_is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.monotonic() > end:
                    raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")

    return ReadyKernelClient


@functools.cache
def _zmq_context() -> Any:
    """The ZeroMQ context of every stage's kernel client in this process, never terminated (the process's exit
    ends it).

    A client that creates its own context (jupyter_client's default) terminates it when it is garbage-collected:
    mid-run, or as the interpreter exits. ZeroMQ's ``term()`` waits for every socket of the context to be closed,
    and the client's heartbeat thread, still beating against a kernel that was stopped, can open a socket in it
    meanwhile: a run interrupted by SIGHUP printed its message and then never exited, its main thread in
    ``KernelClient.__del__`` → ``Context.destroy`` → ``term`` (2 of 531 runs interrupted by SIGHUP here)."""
    import zmq.asyncio

    return zmq.asyncio.Context()


def stop_clients(km: Any) -> None:
    """Close the kernel clients of ``km`` (papermill's): their heartbeat threads end and their sockets close now,
    instead of beating against a stopped kernel for the rest of the process."""
    clients = getattr(km, "clients", [])
    while clients:
        with contextlib.suppress(Exception):  # a client already closed, or half-started when a signal came
            clients.pop().stop_channels()


# The stage kernels this process started (subprocess.Popen, or kernel_server.ForkedKernel), and the runs' own kernel
# servers (not a batch worker's shared one).
_KERNELS: list = []
_SERVERS: list = []


def _kill(procs: list) -> None:
    """SIGKILL each kernel in ``procs`` still running, and what it started (it leads its own process group), then
    wait for each (5 s at most)."""
    for proc in procs:
        if proc.poll() is None:
            try:
                if isinstance(proc, ForkedKernel):  # it remembers being killed, for when its server is gone first
                    proc.kill()
                else:
                    os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                try:
                    proc.kill()
                except OSError:
                    pass
        try:
            proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort: never let cleanup hide why the run ended
            pass


def kill_kernels() -> None:
    """Stop every stage kernel still running, and the runs' own kernel servers."""
    _kill(list(_KERNELS))
    _KERNELS.clear()
    for server in list(_SERVERS):
        server.kill()
    _SERVERS.clear()


def kernel_end(km: Any = None) -> str:
    """How a stage's kernel ended, for a DeadKernelError: 'was killed by SIGKILL', 'exited with status 1'.

    ``km`` is the stage's kernel manager; without it, the last kernel started."""
    proc = getattr(getattr(km, "provisioner", None), "process", None) if km is not None else None
    if proc is None:
        if not _KERNELS:
            return "died"
        proc = _KERNELS[-1]
    try:
        code = proc.wait(timeout=2)
    except Exception:  # noqa: BLE001
        return "died"
    if code is None:
        return "stopped answering"
    if code < 0:
        hint = " (the out-of-memory killer uses SIGKILL: check `dmesg`)" if -code == signal.SIGKILL else ""
        return f"was killed by {signal_name(-code)}{hint}"
    return f"exited with status {code}"


def forking() -> bool:
    """Whether stage kernels are forked from a kernel server: yes, unless ``MMM_FORK_KERNELS=0``."""
    return os.environ.get(FORK_ENV, "1") != "0"


def module_groups(notebooks: Path) -> tuple[list[list[str]], dict[str, int]]:
    """What a kernel server for ``notebooks`` imports: one group of modules per notebook, in stage order, each
    without what an earlier one imports; and per notebook (by stem) how many groups its kernel needs."""
    groups: list[list[str]] = []
    needs: dict[str, int] = {}
    seen: set[str] = set()
    for nb in sorted(notebooks.glob("*.ipynb")):
        with contextlib.suppress(Exception):  # an unreadable notebook fails in papermill with its own message
            mods = [m for m in preload_modules(nb) if m not in seen]
            seen.update(mods)
            groups.append(mods)
            needs[nb.stem] = len(groups)
    return groups, needs


def start_server(notebooks: Path, env: dict[str, str], stderr: Any = None, eager: bool = False) -> Any:
    """A :class:`~mmm_lib.kernel_server.KernelServer` for ``notebooks``' kernels, with this process's environment
    plus ``env``, importing in the background: every stage's modules (``eager``), or as far as the kernels
    started ahead ask (a run's own server: see :meth:`StageKernels.start_ahead`)."""
    from .kernel_server import KernelServer

    groups, needs = module_groups(notebooks)
    server = KernelServer(groups, {**os.environ, **env}, str(notebooks), stderr=stderr, eager=eager)
    server.needs = needs
    return server


def _kept_server(notebooks: Path, env: dict[str, str]) -> Any:
    """A connection to the kernel server an earlier run kept for ``notebooks``' kernels with this process's
    environment plus ``env``; None if there is none (:func:`mmm_lib.kernel_keeper.connect`)."""
    from .kernel_keeper import connect, keep_minutes

    try:
        if keep_minutes() <= 0:
            return None
        groups, needs = module_groups(notebooks)
        server = connect(groups, {**os.environ, **env})
    except Exception:  # noqa: BLE001 - the run starts its own server, as when nothing was kept
        return None
    if server is not None:
        server.needs = needs
    return server


_SHARED: dict[tuple, Any] = {}


def shared_server(notebooks: Path, env: dict[str, str]) -> Any:
    """A kernel server kept for this process's later runs with the same ``env`` (a batch worker runs one run after
    another: the imports are paid once per worker, and every stage's kernel, the first included, is a fork); one
    that died is started again. It ends with this process."""
    key = (str(notebooks), tuple(sorted(env.items())))
    server = _SHARED.get(key)
    if server is None or not server.alive:
        server = _SHARED[key] = start_server(notebooks, env, eager=True)  # not in _SERVERS: no run's to kill
    return server


CLOSE_WAIT_S = 10.0  # at most this long for kernels to stop when a run ends; the rest are killed
ENDED_WAIT_S = 1.0  # at most this long for the shutdowns' clean-up once every kernel has ended


def _quiet_about_interrupts(loop: asyncio.AbstractEventLoop) -> None:
    """A signal that ends a run (:class:`mmm_lib.runner.RunInterrupted`, a ``KeyboardInterrupt``) can arrive
    while one of this loop's tasks runs (a kernel's shutdown, a kernel started ahead): the run gets it and
    records its end, but the task keeps it too, and when the task is collected asyncio printed "Task exception
    was never retrieved" with a traceback after the run's one-line error. Those are not errors; every other
    exception is still reported the usual way."""
    previous = loop.get_exception_handler()
    if getattr(previous, "quiet_about_interrupts", False):  # set by an earlier run on this loop
        return

    def handler(lp: asyncio.AbstractEventLoop, context: dict) -> None:
        if isinstance(context.get("exception"), KeyboardInterrupt):
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    handler.quiet_about_interrupts = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)


class StageKernels:
    """The run's stage kernels: :meth:`take` gives a stage its kernel (started ahead if :meth:`start_ahead` was
    called for it), :meth:`release` stops it without waiting, :meth:`close` ends them all.

    Kernels start on the event loop papermill's synchronous calls run on (jupyter_core's loop for this thread),
    so a kernel started here is the same kind of object papermill would have started itself.
    """

    def __init__(self, kernel_name: str, notebooks: Path, env: dict[str, str] | None = None,
                 log_file: Path | None = None, fork: bool | None = None, server: Any = None):
        """Kernels of ``kernel_name`` for the notebooks in ``notebooks``, each running in that folder (as papermill
        runs them), with this process's environment plus ``env`` (the run's outputs root, compile cache, cores).

        ``log_file``: the kernel processes' own output (ipykernel's and ZeroMQ's log lines, C-level messages) is
        appended there instead of reaching this process's terminal; what a notebook prints still reaches the
        run's log through papermill.

        ``fork``: kernels started ahead are forked from a kernel server (default: yes, unless ``MMM_FORK_KERNELS=0``
        in the environment): the run's own, started by :meth:`warm` or the first :meth:`start_ahead` and ended by
        :meth:`close`, or ``server`` (:func:`shared_server`), which outlives this run and, being ready, also serves
        the first stage."""
        from jupyter_core.utils import ensure_event_loop

        self.kernel_name, self.notebooks, self.env, self.log_file = kernel_name, notebooks, dict(env or {}), log_file
        self.loop = ensure_event_loop()
        _quiet_about_interrupts(self.loop)
        self._ready: dict[str, Any] = {}
        self._stopping: list[asyncio.Task] = []
        self._managers: list = []  # every kernel started here: none, nor a client of one, outlives close()
        self.kept_for_later: str | None = None  # where the run's own server was kept for later runs (its socket)
        self._fork = forking() if fork is None else fork
        self._kernel_server: Any = server if self._fork else None
        self._own_server = False
        # The pid of the kernel server an earlier run kept, when this run's kernels are forked from it.
        self.kept_server: int | None = None
        if self._fork and server is None:  # a server kept by an earlier run (kernel_keeper): every kernel a fork
            self._kernel_server = _kept_server(notebooks, self.env)
            if self._kernel_server is not None:
                self._own_server = True  # this run's connection to it: ended by close(), killed on a signal
                self.kept_server = self._kernel_server.kept_pid
                _SERVERS.append(self._kernel_server)

    def _manager(self, stage: str) -> Any:
        km = kernel_manager_class()(kernel_name=self.kernel_name)
        km.stage = stage
        try:
            km.preload = preload_modules(self.notebooks / f"{stage}.ipynb")
        except Exception:  # noqa: BLE001 - an unreadable notebook fails in papermill with its own message
            km.preload = []
        return km

    async def _launch(self, km: Any) -> Any:
        with contextlib.ExitStack() as stack:
            out: dict[str, Any] = {}
            if self.log_file is not None:
                self.log_file.parent.mkdir(parents=True, exist_ok=True)
                if km.server is None:  # a forked kernel opens the log itself
                    fh = stack.enter_context(open(self.log_file, "ab"))  # the kernel keeps its own copy of the handle
                    out = {"stdout": fh, "stderr": fh}
            await km.start_kernel(extra_arguments=list(_AHEAD_ARGS), cwd=str(self.notebooks),
                                  env={**os.environ, **self.env}, **out)
        self._managers.append(km)
        return km

    def _processes(self) -> list:
        """The processes of the kernels started here that jupyter_client has not seen end (it forgets one then)."""
        return [p for km in self._managers if (p := getattr(km.provisioner, "process", None)) is not None]

    def _start(self, stage: str) -> Any:
        return self.loop.run_until_complete(self._launch(self._manager(stage)))

    async def _start_forked(self, stage: str, server: Any) -> Any:
        """``stage``'s kernel forked from ``server`` once its imports are done (this task runs on the loop while
        the current stage executes); a new Python if the server failed."""
        end = self.loop.time() + SERVER_WAIT_S
        while not server.has_loaded(stage) and server.alive and self.loop.time() < end:
            await asyncio.sleep(0.05)
        km = self._manager(stage)
        km.server = server if server.has_loaded(stage) else None
        km.log_file = self.log_file
        return await self._launch(km)

    def _server(self) -> Any:
        """The kernel server, started at the first call (None when forking is off or the server cannot start)."""
        if self._fork and self._kernel_server is None:
            try:
                with contextlib.ExitStack() as stack:
                    err = None
                    if self.log_file is not None:
                        self.log_file.parent.mkdir(parents=True, exist_ok=True)
                        err = stack.enter_context(open(self.log_file, "ab"))
                    self._kernel_server, self._own_server = start_server(self.notebooks, self.env, stderr=err), True
                _SERVERS.append(self._kernel_server)  # the run's own: a signal stops it with the kernels
            except Exception:  # noqa: BLE001 - kernels then start as new Pythons
                self._fork = False
        return self._kernel_server

    def warm(self) -> None:
        """Start the kernel server now (Python and ipykernel take a second or two): for a run of more than one
        stage, called before the first stage so that the second stage's kernel need not wait for them. The stages'
        modules are imported as :meth:`start_ahead` asks, a stage ahead: all at once, they competed with the first
        stage for the cores (its first cell started 0.4–3.5 s later than without a server, on 2 cores)."""
        self._server()

    def start_first(self, stage: str) -> None:
        """Start ``stage``'s kernel now as a new Python: the run's first stage, before :meth:`warm` (nothing runs
        before it for its start to hide behind, so it goes first; the server's own start then overlaps it). A
        server that already has ``stage``'s modules (a batch worker's) forks it in :meth:`take` instead. A kernel
        that cannot start is retried and reported by :meth:`take`, as for :meth:`start_ahead`."""
        server = self._kernel_server
        if stage in self._ready or (server is not None and server.has_loaded(stage)):
            return
        try:
            self._ready[stage] = self._start(stage)
        except Exception:  # noqa: BLE001 - see above
            pass

    def start_ahead(self, stage: str) -> None:
        """Start ``stage``'s kernel now (it boots and imports while the current stage runs): forked from the kernel
        server once that has imported its modules, on the event loop the current stage runs on. A kernel that cannot start is not
        this stage's failure: :meth:`take` tries again for ``stage`` and reports it there."""
        if stage in self._ready:
            return
        server = self._server()
        if server is not None:
            server.prepare(stage)  # its imports start now (take() forks at once only a stage whose modules are in)
            self._ready[stage] = self.loop.create_task(self._start_forked(stage, server))
            return
        try:
            self._ready[stage] = self._start(stage)
        except Exception:  # noqa: BLE001 - see above
            pass

    def take(self, stage: str) -> Any:
        """``stage``'s kernel manager, started (ahead or now); the caller passes it to papermill as ``km``."""
        km = self._ready.pop(stage, None)
        if isinstance(km, asyncio.Task):
            try:
                km = self.loop.run_until_complete(km)
            except Exception:  # noqa: BLE001 - started again below, where a failure is this stage's
                km = None
        server = self._kernel_server
        if km is None and server is not None and server.has_loaded(stage):
            with contextlib.suppress(Exception):  # started the plain way below
                km = self.loop.run_until_complete(self._start_forked(stage, server))
        return km if km is not None else self._start(stage)

    def release(self, km: Any, *, now: bool = True) -> None:
        """Stop ``km``'s kernel in the background; ``now`` (default): at once.

        When papermill returns, the stage's cells have finished and their files are written (each cell's reply
        comes after its code ran): there is nothing left for a kernel to do, and the polite way (a shutdown
        request, waiting for the process to end) cost the run up to half a second at its end."""
        if km is not None:
            stop_clients(km)  # the stage is over: its notebook's client goes first
            self._stopping.append(self.loop.create_task(self._shutdown(km, now)))

    @staticmethod
    async def _shutdown(km: Any, now: bool) -> None:
        try:
            if await km.is_alive():
                await km.shutdown_kernel(now=now)
            else:
                await km.cleanup_resources()
        except Exception:  # noqa: BLE001 - a kernel that is already gone needs nothing more
            pass

    def wind_down(self) -> None:
        """Every stage has run: finish the kernels' shutdowns and ask the run's own server to end, without waiting
        for it. Called while the last stage's report renders in its thread, so that :meth:`close` finds nothing left
        to wait for (it waited 0.11 s for the last kernel's shutdown and 0.07 s for the server, after the report)."""
        if self._stopping and not self.loop.is_running():
            with contextlib.suppress(Exception):  # close() waits again, and kills what is left
                self.loop.run_until_complete(asyncio.wait(self._stopping, timeout=CLOSE_WAIT_S))
        if self._kernel_server is not None and self._own_server and not self._ready:
            self._let_server_go()

    def _let_server_go(self) -> None:
        """The run's own server, its kernels ended: kept for the next run (:mod:`mmm_lib.kernel_keeper`) unless
        keeping is off or it is a connection to a kept one already, else asked to end."""
        server = self._kernel_server
        if server.kept:
            return
        if server.kept_pid is None and server.alive:
            from .kernel_keeper import keep_settings

            try:
                settings = keep_settings(server.module_groups, server.env)
            except (ValueError, OSError):  # a bad MMM_KEEP_KERNELS (said when the run started), no folder
                settings = None
            if settings is not None and server.keep(settings):
                self.kept_for_later = settings["path"]
                with contextlib.suppress(ValueError):
                    _SERVERS.remove(server)
                return
        server.end()

    def close(self) -> None:
        """Stop kernels started ahead that no stage took, and wait for the shutdowns under way.

        A kernel no stage took may still be starting (importing): it is killed, not asked, as it ran nothing and a
        shutdown request reaching a kernel mid-start makes ipykernel print a traceback."""
        for km in self._ready.values():
            if isinstance(km, asyncio.Task):  # a kernel being forked ahead: stopped if it started, else cancelled
                if not km.done():
                    km.cancel()
                    continue
                if km.cancelled() or km.exception() is not None:
                    continue
                km = km.result()
            self.release(km)
        self._ready.clear()
        if not self.loop.is_running():
            # A stage cut short by a signal leaves its execution's tasks on this loop; running them again now could
            # wait on a kernel that is gone. Only the shutdowns are wanted, and for a bounded time: what is still
            # running after that is killed.
            for task in asyncio.all_tasks(self.loop):
                if task not in self._stopping:
                    task.cancel()
            if self._stopping:
                # Once every kernel has ended (a signal killed them), a shutdown still under way after a second
                # waits for nothing: a signal raised inside the event loop can drop the callback that would have
                # resumed it (the run's end then took 10 s longer: 1 of 531 interrupted runs here).
                ended = all(p.poll() is not None for p in self._processes())
                wait = asyncio.wait(self._stopping, timeout=ENDED_WAIT_S if ended else CLOSE_WAIT_S)
                with contextlib.suppress(Exception):
                    self.loop.run_until_complete(wait)
        if any(not t.done() for t in self._stopping):
            kill_kernels()
        self._stopping.clear()
        _kill(self._processes())  # a kernel a stage took and never released (it failed, or was cut short) ends here too
        for km in self._managers:
            stop_clients(km)
        self._managers.clear()
        if self._kernel_server is not None and self._own_server:  # after its kernels: how they ended comes from it
            self._let_server_go()  # kept if it is alive (a signal kills it with the kernels: kill_kernels)
            self._kernel_server.close()
            with contextlib.suppress(ValueError):
                _SERVERS.remove(self._kernel_server)
            self._kernel_server = None
        done = [p for p in _KERNELS if p.poll() is not None]
        for p in done:
            _KERNELS.remove(p)

"""A process that imports the stage notebooks' modules once and forks stage kernels from itself.

A stage kernel started the plain way is a new Python that imports ipykernel, pandas, matplotlib, ArviZ or PyMC
again: 1.5–3.5 s of CPU per stage, seven times per run. :class:`KernelServer` starts
``python -m mmm_lib.kernel_server --preload a,b;c,…`` (one module group per stage notebook, in stage order) once
per run, or once per batch worker, with the run's environment. :class:`mmm_lib.kernels.StageKernels` asks it for
each kernel it starts ahead: the server forks, and the child (a process of its own, in its own session, sharing
the loaded modules' memory until it writes to it) becomes that stage's kernel exactly as
:mod:`mmm_lib.stage_kernel` would. Each stage still gets a kernel no other stage used; the server runs no stage
code.

Protocol, one JSON object per line. The client writes ``{"load": k}`` (import the first k module groups: a run's
own server imports a stage ahead, a batch worker's all at once) and ``{"argv", "env", "cwd", "stage", "log"}``
(fork a kernel) to the server's stdin. The server says ``{"loaded": k}`` once its first k module groups are
imported (it serves requests between groups: a stage's kernel need not wait for later stages' modules),
``{"ready": true}`` once all are,
``{"pid": N}`` for each kernel it forked, and ``{"exit": N, "code": C}`` when one ends (C as
:attr:`subprocess.Popen.returncode`: negative for a signal). The server ends when its stdin closes (its run or
worker ended, or died), and a kernel ends when the server does (ipykernel's parent poller). A run that ends
normally may instead write ``{"keep": settings}``: the server then outlives it, kept for the next run with the same
modules and environment (:mod:`mmm_lib.kernel_keeper`), which it serves through a connection server of its own
speaking this same protocol (it first says ``{"server": pid}``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, NoReturn

MODULE = "mmm_lib.kernel_server"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


# --------------------------------------------------------------------------- the server process


def _name_process(name: str) -> None:
    """Set the process's short name (what ``ps -o comm`` and psutil's ``name()`` show) to tell its kernels apart."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except Exception:  # noqa: BLE001 - a name is a convenience
        pass


def _child(request: dict[str, Any], keep_out: int) -> None:
    """In the forked child: become the requested stage kernel, and never return into the server's loop."""
    code = 1
    try:
        os.setsid()  # its own process group, as jupyter_client starts kernels: a signal to it reaches what it starts
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.set_wakeup_fd(-1)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        if request.get("log"):  # the run's kernel log, else the server's stderr
            keep_out = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(keep_out, 1)
        os.dup2(keep_out, 2)
        os.chdir(request["cwd"])
        env = dict(request["env"])
        env["JPY_PARENT_PID"] = str(os.getppid())  # ipykernel ends itself when this server is gone
        os.environ.clear()
        os.environ.update(env)
        # ipykernel read JPY_PARENT_PID when this server imported it: the parent to watch is given on the command line.
        argv = [*request["argv"], f"--IPKernelApp.parent_handle={os.getppid()}"]
        _name_process(request.get("stage") or "mmm-kernel")  # e.g. 02_canonicalize: which stage it serves
        sys.argv = [MODULE, *argv]
        from mmm_lib import stage_kernel

        stage_kernel.main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - said on the kernel log, then the process ends
        import traceback

        traceback.print_exc()
    finally:
        end_fork(code)


def end_fork(code: int) -> NoReturn:
    """End a process forked from this server as Python would end it (exit handlers run, streams flushed), without
    tearing down what the server imported. Never returns."""
    try:
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _say(obj: dict[str, Any]) -> None:
    os.write(1, (json.dumps(obj) + "\n").encode())


class _Server:
    """The server's loop: fork a kernel per request line on stdin, report children that ended."""

    def __init__(self) -> None:
        import selectors

        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sel = selectors.DefaultSelector()
        self.sel.register(0, selectors.EVENT_READ)
        self.sel.register(self.wake_r, selectors.EVENT_READ)
        self.buf = b""
        self.wanted = 0  # how many module groups the client has asked for so far
        self.keep: dict[str, Any] | None = None  # set when the run asks for its server to be kept
        self.forked: set[int] = set()  # the kernels forked for this client

    def close(self) -> None:
        """Stop serving this client (its signal wake-up pipe and selector go; what it forked stays)."""
        signal.set_wakeup_fd(-1)
        self.sel.close()
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)

    def handle(self, timeout: float | None) -> bool:
        """Serve what has arrived (waiting up to ``timeout``; None: until something does). False once stdin closed."""
        for key, _ in self.sel.select(timeout):
            if key.fd == self.wake_r:
                os.read(self.wake_r, 4096)
                continue
            chunk = os.read(0, 65536)
            if not chunk:
                return False
            self.buf += chunk
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                request = json.loads(line)
                if "load" in request:
                    self.wanted = max(self.wanted, int(request["load"]))
                elif "keep" in request:  # the run is over: keep this server for the next one (kernel_keeper)
                    self.keep = request["keep"]
                    return False
                else:
                    self.fork(request)
        _reap(self.forked)
        return True

    def fork(self, request: dict[str, Any]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            for fd in (self.wake_r, self.wake_w):
                os.close(fd)
            self.sel.close()
            _child(request, 2)
        self.forked.add(pid)
        _say({"pid": pid})


def serve(groups: list[list[str]]) -> None:
    """Import ipykernel, then the module ``groups`` in order as far as asked (``{"load": k}``), saying
    ``{"loaded": k}`` after the k-th and serving requests between them (a stage's kernel is forked as soon as its
    own modules are in); serve until stdin closes."""
    import gc
    import warnings

    # What ipykernel sets before a notebook runs, set before matplotlib is imported here (it reads it at import).
    os.environ.setdefault("MPLBACKEND", INLINE_BACKEND)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run stops this server itself
    # The only threads are native ones started by libraries (an allocator's, a BLAS pool's), which register their
    # own fork handlers; Python 3.12 warns about any thread.
    warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
    import ipykernel.kernelapp  # noqa: F401 - the kernel's own machinery, loaded once
    import ipykernel.debugger  # noqa: F401 - what the kernel imports as it starts (debugpy)

    server = _Server()
    loaded = 0
    if not groups:
        _say({"ready": True})
    while server.handle(0 if loaded < min(server.wanted, len(groups)) else None):
        if loaded >= min(server.wanted, len(groups)):
            continue
        _load([groups[loaded]])
        loaded += 1
        gc.freeze()  # loaded modules' objects stay out of the children's collections: their pages stay shared
        _say({"loaded": loaded})
        if loaded == len(groups):
            _say({"ready": True})
    if server.keep is not None:
        server.close()
        _kill_forked(server.forked)  # the run that asked released them: none may live on under a kept server
        _load(groups[loaded:])
        from .handover import preload

        preload()  # what `mmm run` imports, for the runs handed over to this server
        gc.freeze()
        from .kernel_keeper import keep

        keep(server.keep, lambda: _serve_connection(len(groups)))


def _kill_forked(pids: set[int]) -> None:
    """SIGKILL the kernels in ``pids`` still running (each leads its own process group once it has started)."""
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    _reap_quietly()


def _reap_quietly() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _load(groups: list[list[str]]) -> None:
    """Import the modules of ``groups`` (one that fails is the notebook's to report, where the user sees it)."""
    import importlib

    for group in groups:
        for name in group:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - see above
                pass
        _load_lazy_modules()


def _serve_connection(groups: int) -> None:
    """In a connection server forked by a kept server (:mod:`mmm_lib.kernel_keeper`), its stdin and stdout the
    run's connection: say who serves it and that every group is loaded, then serve it as a run's own server."""
    server = _Server()
    _say({"server": os.getpid()})
    _say({"loaded": groups})
    _say({"ready": True})
    while server.handle(None):
        pass


def _load_lazy_modules() -> None:
    """Load the modules that are imported lazily, here, once, instead of in every kernel.

    Some modules are registered in ``sys.modules`` to load at first use: ``arviz_base`` does this with
    ``jax`` and ``numpyro``. Each kernel's ipykernel reads every loaded module's ``__file__`` as it starts, and
    that loads them. A forked kernel then spent 1–3 s importing JAX before it could answer (measured on the
    2-core machine, kernels 04–07). Reading ``__file__`` the same way here makes the forks inherit them loaded.
    """
    import warnings

    with warnings.catch_warnings():  # what they warn at import (tqdm: "IProgress not found") a kernel never showed
        warnings.simplefilter("ignore")
        for module in list(sys.modules.values()):
            hasattr(module, "__file__")


def _reap(forked: set[int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        forked.discard(pid)
        _say({"exit": pid, "code": os.waitstatus_to_exitcode(status)})


# --------------------------------------------------------------------------- the client, in the run's process


class KernelServer:
    """The run's side of a kernel server: start it, fork kernels from it, learn how they ended."""

    def __init__(self, groups: list[list[str]], env: dict[str, str], cwd: str, stderr: Any = None,
                 eager: bool = False, proc: Any = None):
        """Start the server; it imports ipykernel, then the module ``groups`` in order in the background as far as
        :meth:`prepare` asks (all of them if ``eager``): a kernel that needs the first k groups can be forked once
        they are in. ``stderr``: where it and its kernels write. ``proc``: a server already running instead
        (a :class:`mmm_lib.kernel_keeper.Connection` to a kept one), with its ``stdin`` and ``stdout``."""
        self.groups = len(groups)
        self.module_groups, self.env = groups, env  # what it was started with: what keeping it is keyed on
        self.needs: dict[str, int] = {}  # per stage, how many groups its kernel needs (set by whoever made the groups)
        self.kept = False  # handed over to be kept for later runs (keep()): no longer this run's
        self.kept_pid: int | None = None  # the kept server this one is a connection to
        self.proc = proc or subprocess.Popen(
            # frozen modules off, as debugpy (imported by every kernel as it starts; here, once) asks
            [sys.executable, "-Xfrozen_modules=off", "-m", MODULE, "--preload", ";".join(",".join(g) for g in groups)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=cwd, start_new_session=True)
        self._cond = threading.Condition()
        self._ready = False
        self._loaded = 0
        self._pids: list[int] = []
        self._exits: dict[int, int] = {}
        self._send = threading.Lock()
        self.killed: set[int] = set()  # kernels sent SIGKILL (through ForkedKernel.kill)
        threading.Thread(target=self._read, name="mmm-kernel-server", daemon=True).start()
        if eager:
            self._request({"load": self.groups})

    def _request(self, obj: dict[str, Any]) -> None:
        with self._send:
            self.proc.stdin.write((json.dumps(obj) + "\n").encode())  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]

    def prepare(self, stage: str, ahead: int = 0) -> None:
        """Have the server import ``stage``'s modules (and ``ahead`` more stages' groups). Asked when a stage's
        kernel is started ahead, and for the next stage once it is forked: a run's later stages' imports (PyMC,
        ArviZ, JAX) are spread over its early stages instead of all competing with its first stage, whose kernel
        is not a fork, and a fork is never kept waiting behind a group its stage does not need."""
        try:
            self._request({"load": min(self.needs.get(stage, self.groups) + ahead, self.groups)})
        except (OSError, ValueError):  # a server that died or was closed: kernels start the plain way
            pass

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                if "ready" in msg:
                    self._ready = True
                elif "loaded" in msg:
                    self._loaded = int(msg["loaded"])
                elif "pid" in msg:
                    self._pids.append(int(msg["pid"]))
                elif "exit" in msg:
                    self._exits[int(msg["exit"])] = int(msg["code"])
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def alive(self) -> bool:
        return not self.kept and self.proc.poll() is None

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every group to be loaded; whether they are."""
        with self._cond:
            self._cond.wait_for(lambda: self._ready or self.proc.poll() is not None, timeout)
        return self.ready

    def keep(self, settings: dict[str, Any]) -> bool:
        """Hand the server over to be kept for later runs (:func:`mmm_lib.kernel_keeper.keep`): it stops serving
        this run and outlives it. Its kernels must have ended (a kernel it reports no more counts as ended)."""
        try:
            self._request({"keep": settings})
        except (OSError, ValueError):  # it died, or was closed
            return False
        self.end()
        self.kept = True
        return True

    @property
    def ready(self) -> bool:
        return self._ready and self.alive

    def has_loaded(self, stage: str) -> bool:
        """Whether ``stage``'s modules (its group and the earlier ones; all, for a stage not in ``needs``) are
        imported: its kernel can be forked now."""
        return (self._ready or self._loaded >= self.needs.get(stage, self.groups)) and self.alive

    def fork(self, argv: list[str], env: dict[str, str], cwd: str, stage: str = "", log: str | None = None,
             timeout: float = 30.0) -> ForkedKernel:
        """A new kernel process running ``python -m mmm_lib.stage_kernel ARGV`` (without starting a Python), its
        output appended to ``log`` (default: where the server writes)."""
        request = json.dumps({"argv": argv, "env": env, "cwd": cwd, "stage": stage, "log": log}) + "\n"
        with self._send:
            with self._cond:
                self._pids.clear()
            self.proc.stdin.write(request.encode())  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            with self._cond:
                if not self._cond.wait_for(lambda: self._pids or not self.alive, timeout) or not self._pids:
                    raise OSError("the kernel server did not fork a kernel")
                kernel = ForkedKernel(self._pids.pop(0), self)
        self.prepare(stage, ahead=1)  # the next stage's modules, while this one's kernel starts and runs
        return kernel

    def exit_code(self, pid: int) -> int | None:
        with self._cond:
            if pid in self._exits:
                return self._exits[pid]
        if _exists(pid):
            return None
        # Ended, and not reported: killed, if it was sent SIGKILL; else its server (alive) says so soon, or (gone)
        # never will. A zombie counts as ended: where nothing reaps orphans (pid 1 in some containers), a kernel its
        # server did not reap before it died stays one, and waiting on it would never end.
        if pid in self.killed:
            return -signal.SIGKILL
        return None if self.alive else 1

    def end(self) -> None:
        """Ask the server to end (its stdin closes) and return at once; :meth:`close` waits for it."""
        with self._send:  # not in the middle of a request
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass

    def close(self, timeout: float = 5.0) -> None:
        """End the server (its kernels end with it, or were stopped already); one kept is left alone."""
        if self.kept:
            return
        self.end()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.kept:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort
            pass


def _exists(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has: it only waits to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc here: a zombie counts as alive
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True


class ForkedKernel:
    """A kernel the server forked, with the part of :class:`subprocess.Popen` that jupyter_client and the runner
    use (it is the server's child, not ours: how it ended comes from the server)."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, server: KernelServer):
        self.pid, self.server, self.returncode = pid, server, None
        self.args = [MODULE, str(pid)]

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
            time.sleep(0.02)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            if sig == signal.SIGKILL:
                self.server.killed.add(self.pid)
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the kernel and what it started (it leads its own process group, as a launched kernel does)."""
        if self.poll() is None and _exists(self.pid):
            self.server.killed.add(self.pid)
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:  # not a group leader yet (it was just forked)
                os.kill(self.pid, signal.SIGKILL)


if __name__ == "__main__":
    if sys.path and sys.path[0] in ("", os.getcwd()):  # as ipykernel_launcher: not the working folder first
        del sys.path[0]
    args = sys.argv[1:]
    text = args[1] if args[:1] == ["--preload"] else ""
    serve([[m for m in group.split(",") if m] for group in text.split(";")] if text else [])
    # Its run has ended: nothing is left to write but what was said. Tearing down the modules it loaded (PyMC,
    # ArviZ, pandas) took 0.1–0.2 s that the run's end waited for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

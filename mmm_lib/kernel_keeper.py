"""A run's kernel server kept after the run, so that the next run's first stage is a fork too.

Every stage kernel after the first is forked from the run's :class:`~mmm_lib.kernel_server.KernelServer`; the
first stage's kernel cannot be, because the server itself takes 1.5–2 s to start and import. When a run ends, its
server is therefore not stopped but *kept*: it finishes importing every stage's modules, listens on a Unix socket
named after what it was started with (:func:`key`), and waits. The next ``mmm run`` or ``mmm optimize`` with the
same key connects; the kept server forks a *connection server* for it, which serves that run exactly as the run's
own server would (the same protocol, on the socket instead of pipes), and ends when the run's connection closes,
its kernels with it. No stage code ever runs in the kept server.

What the key covers, so a kept server never serves a run it was not started for: the Python executable, the
module groups (what the notebooks import), the environment the server imported under (the run's outputs root,
compile cache and thread settings among it), and a stamp of the installed code (``mmm_lib``'s source files and the
``sys.path`` folders: an upgrade or an edit gives a new key).

Who stops it: it ends by itself after ``MMM_KEEP_KERNELS`` minutes without a run (default 15; ``0`` keeps none);
a new kept server ends those whose code is out of date and keeps at most :data:`MAX_KEPT` per user (the least
recently used go first); ``mmm kernels --stop`` ends them all; one whose socket was removed or taken over ends
within a second. The folder is ``$MMM_KERNELS_DIR``, else ``$XDG_RUNTIME_DIR/mmm-kernels``, else
``/tmp/mmm-kernels-<uid>`` (mode 0700; one that another user could write to is not used).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import selectors
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

KEEP_ENV = "MMM_KEEP_KERNELS"
DIR_ENV = "MMM_KERNELS_DIR"
DEFAULT_MINUTES = 15.0
MAX_KEPT = 2  # kept servers per user: each holds every stage's modules (~0.4-0.6 GB resident)
CONNECT_WAIT_S = 2.0  # a kept server that has not said it is ready by then is not used (the run starts its own)
# Variables a shell changes between two commands, that nothing reads at import: left out of the key.
_VOLATILE = frozenset({"_", "PWD", "OLDPWD", "SHLVL", "JPY_PARENT_PID", "COLUMNS", "LINES"})
_MARKER = "mmm_lib.kernel_server"
_SUN_PATH_MAX = 100  # a Unix socket's path must fit in sockaddr_un (108 bytes on Linux)


def keep_minutes(environ: dict[str, str] | None = None) -> float:
    """How long an idle kept server waits for the next run, in minutes (``MMM_KEEP_KERNELS``; 0: none is kept).

    Raises ValueError naming the variable when it is not a number ≥ 0."""
    raw = (os.environ if environ is None else environ).get(KEEP_ENV, "").strip()
    if not raw:
        return DEFAULT_MINUTES
    try:
        minutes = float(raw)
    except ValueError:
        minutes = -1.0
    if not (minutes >= 0 and math.isfinite(minutes)):
        raise ValueError(f"{KEEP_ENV}={raw!r} is not a number of minutes: set it to how long an idle kernel server "
                         f"is kept for the next run (default {DEFAULT_MINUTES:g}), or 0 to keep none")
    return minutes


def folder(create: bool = True) -> Path | None:
    """The kept servers' folder (see the module's doc), made if ``create``; None if it is not private to this user."""
    if os.environ.get(DIR_ENV):
        path = Path(os.environ[DIR_ENV])
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "mmm-kernels"
    else:
        path = Path(tempfile.gettempdir()) / f"mmm-kernels-{os.getuid()}"
    try:
        if create:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError:
        return None
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        return None
    return path


def code_stamp() -> str:
    """What changes when the code a kept server imported changes: ``mmm_lib``'s files (size and time: its source and
    its report templates) and
    the times of the folders packages are installed in (installing, removing or upgrading one changes their
    entries). Not the other ``sys.path`` entries: a script's folder or the working folder change with any file."""
    import site
    import sysconfig

    h = hashlib.sha256(sys.version.encode())
    lib = Path(__file__).resolve().parent
    for p in sorted(lib.rglob("*")):
        if "__pycache__" in p.parts or not p.is_file():
            continue
        with contextlib.suppress(OSError):
            st = p.stat()
            h.update(f"{p.relative_to(lib)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    paths = sysconfig.get_paths()
    for entry in dict.fromkeys([paths["purelib"], paths["platlib"], site.getusersitepackages()]):
        with contextlib.suppress(OSError):
            h.update(f"{entry}:{os.stat(entry).st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def key(groups: list[list[str]], env: dict[str, str], stamp: str | None = None) -> str:
    """The name of a kept server for kernels of these module ``groups`` started with this environment."""
    material = {"python": sys.executable, "groups": groups, "code": stamp or code_stamp(),
                "env": sorted((k, v) for k, v in env.items() if k not in _VOLATILE)}
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()[:20]


def handover_key(env: dict[str, str], stamp: str | None = None) -> str:
    """The name of a kept server's second socket, where ``mmm run`` hands itself over (:mod:`mmm_lib.handover`):
    what the ``mmm`` command imports under (the Python, the installed code, the environment)."""
    material = {"python": sys.executable, "code": stamp or code_stamp(), "command": "mmm",
                "env": sorted((k, v) for k, v in env.items() if k not in _VOLATILE)}
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()[:20]


def handover_path(env: dict[str, str], create: bool = True, stamp: str | None = None) -> Path | None:
    """Where a kept server takes ``mmm run`` over from a process with environment ``env``."""
    return _socket_path(handover_key(env, stamp) + ".run", create)


# The pid of the kept server when this process is a command handed over to it (set by mmm_lib.handover).
HANDED_OVER_BY: int | None = None


def _socket_path(name: str, create: bool = True) -> Path | None:
    base = folder(create)
    if base is None:
        return None
    path = base / f"{name}.sock"
    return path if len(str(path)) <= _SUN_PATH_MAX else None


def keep_settings(groups: list[list[str]], env: dict[str, str]) -> dict[str, Any] | None:
    """What a run's server is told to keep itself with (``{"keep": ...}``): its socket for kernels (named by the
    kernels' ``groups`` and ``env``) and the one for handed-over commands (named by this process's environment);
    None when keeping is off or there is no private folder for it."""
    minutes = keep_minutes()
    if minutes <= 0:
        return None
    stamp = code_stamp()
    path = _socket_path(key(groups, env, stamp))
    if path is None:
        return None
    run_path = handover_path(dict(os.environ), stamp=stamp)  # this process's: what the next `mmm run` will have
    return {"path": str(path), "run_path": str(run_path) if run_path else None, "minutes": minutes, "stamp": stamp,
            "outputs": env.get("MMM_OUTPUTS", ""), "cache": env.get("MMM_CACHE", "")}


# --------------------------------------------------------------------------- the run's side


class Connection:
    """The part of :class:`subprocess.Popen` that :class:`~mmm_lib.kernel_server.KernelServer` uses, for a
    connection to a kept server: ``stdin``/``stdout`` are the socket's two directions, ``pid`` is the connection
    server serving this run (a process of its own session: killing its group ends it, as for a run's own server)."""

    def __init__(self, sock: socket.socket, reader: Any, pid: int):
        self.sock, self.stdout, self.pid, self.returncode = sock, reader, pid, None
        self.stdin = _SocketWriter(sock)

    def poll(self) -> int | None:
        from .kernel_server import _exists

        if self.returncode is None and not _exists(self.pid):
            self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import subprocess

        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(["mmm-kernel-server", str(self.pid)], timeout)  # type: ignore[arg-type]
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            self.sock.close()
        return self.returncode  # type: ignore[return-value]


class _SocketWriter:
    def __init__(self, sock: socket.socket):
        self.sock = sock

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """The run is done with it: the connection server reads the end of its input and ends."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)


def connect(groups: list[list[str]], env: dict[str, str]) -> Any:
    """A :class:`~mmm_lib.kernel_server.KernelServer` served by the kept server for ``groups`` and ``env``,
    ready (every group loaded); None if there is none, keeping is off, or it does not answer in time."""
    from .kernel_server import KernelServer

    if keep_minutes() <= 0:
        return None
    path = _socket_path(key(groups, env), create=False)
    if path is None or not path.exists():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_WAIT_S)
        sock.connect(str(path))
        reader = sock.makefile("rb")
        first = json.loads(reader.readline() or b"{}")  # {"server": pid}, then {"loaded": n}, {"ready": true}
        pid = int(first["server"])
        sock.settimeout(None)
    except (OSError, ValueError, KeyError, TypeError):
        sock.close()
        return None
    server = KernelServer(groups, env, "", proc=Connection(sock, reader, pid))
    if not server.wait_ready(CONNECT_WAIT_S):
        server.kill()
        return None
    server.kept_pid = _peer_pid(sock)
    return server


def _peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process that listens on ``sock``'s other end (the kept server), from the kernel."""
    import struct

    with contextlib.suppress(OSError, AttributeError):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[0]
    return None


# --------------------------------------------------------------------------- the kept server's side


def keep(settings: dict[str, Any], serve_connection: Callable[[], None]) -> None:
    """In the run's kernel server, its run ended, every group loaded: listen at ``settings["path"]`` and fork a
    connection server (``serve_connection``, run with the connection as its stdin and stdout) per run that
    connects, and at ``settings["run_path"]`` a process per ``mmm run`` handed over (:func:`mmm_lib.handover.serve`),
    until idle for ``settings["minutes"]``, told to stop (SIGTERM), or replaced. Returns when it is time to end."""
    from .handover import serve as serve_command

    path = Path(settings["path"])
    try:
        listener = _listen(path)
    except OSError:  # another kept server answers there, or the folder went: nothing more to do
        return
    run_path = Path(settings["run_path"]) if settings.get("run_path") else None
    commands = None
    if run_path is not None:
        with contextlib.suppress(OSError):  # another kept server takes this environment's commands: kernels only
            commands = _listen(run_path)
    info = path.with_suffix(".json")
    me = os.getpid()
    _write_json(info, {"pid": me, "started": time.time(), "minutes": settings["minutes"], "stamp": settings["stamp"],
                       "outputs": settings.get("outputs", ""), "cache": settings.get("cache", ""),
                       "run_socket": str(run_path) if commands is not None else None})
    _detach(path.with_suffix(".log"))
    _evict(path.parent, settings["stamp"], me)

    stop = []
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    inode = os.stat(path).st_ino
    if commands is not None:
        sel.register(commands, selectors.EVENT_READ)
        run_inode = os.stat(run_path).st_ino  # type: ignore[arg-type]
    serving: set[int] = set()
    last = time.monotonic()
    idle_s = float(settings["minutes"]) * 60
    while not stop:
        for k, _ in sel.select(timeout=1.0):
            if k.fd == wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                continue
            try:
                conn, _ = k.fileobj.accept()  # type: ignore[union-attr]
            except OSError:
                continue
            pid = os.fork()
            if pid == 0:
                sel.close()
                for fd in (listener.fileno(), wake_r, wake_w, *([commands.fileno()] if commands else [])):
                    with contextlib.suppress(OSError):
                        os.close(fd)
                if k.fileobj is listener:
                    _serve_in_child(conn, serve_connection)
                serve_command(conn, me)
            conn.close()
            serving.add(pid)
            last = time.monotonic()
            with contextlib.suppress(OSError):
                os.utime(info)  # last used: the least recently used kept server goes first
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in serving:
                serving.discard(pid)
                last = time.monotonic()
        if not _still_at(path, inode):
            break  # removed (`mmm kernels --stop`) or taken over by another kept server
        if commands is not None and not _still_at(run_path, run_inode):  # type: ignore[arg-type]
            sel.unregister(commands)
            commands.close()
            commands = None
        if not serving and time.monotonic() - last > idle_s:
            break
    gone = [path, info] if _still_at(path, inode) else []  # not another kept server's that took the name over
    if commands is not None and _still_at(run_path, run_inode):  # type: ignore[arg-type]
        gone.append(run_path)
    for p in gone:
        with contextlib.suppress(OSError):
            p.unlink()


def _listen(path: Path) -> socket.socket:
    """Bind ``path`` unless a kept server answers there already (OSError then); a socket left by one that died is
    replaced. Two servers binding at once: the one whose socket is replaced sees it within a second and ends."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        pass
    else:
        raise OSError(f"a kept kernel server answers at {path} already")
    finally:
        probe.close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(16)
    return listener


def _still_at(path: Path, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


def _detach(log: Path) -> None:
    """Stop writing to the run that started this server: stdin and stdout from/to nothing, stderr to ``log``."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    with contextlib.suppress(OSError):
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 2)
        os.close(fd)


def _serve_in_child(conn: socket.socket, serve_connection: Callable[[], None]) -> None:
    """In a connection server: its own session (the run kills its group on a signal), the connection as stdin and
    stdout, then serve the run until it closes the connection. Never returns."""
    code = 0
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.dup2(conn.fileno(), 0)
        os.dup2(conn.fileno(), 1)
        conn.close()
        serve_connection()
    except BaseException:  # noqa: BLE001 - said on the kept server's log, then this process ends
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj), encoding="utf-8")
    os.replace(tmp, path)


def _is_kept_server(pid: int) -> bool:
    try:
        return _MARKER in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def kept(base: Path | None = None) -> list[dict[str, Any]]:
    """The kept servers in ``base`` (default :func:`folder`), least recently used first: pid, started, last used,
    minutes, outputs root, cache, socket path, whether its code is out of date. Entries whose process is gone are
    removed."""
    base = folder(create=False) if base is None else base
    if base is None or not base.is_dir():
        return []
    out = []
    stamp = code_stamp()
    for info in base.glob("*.json"):
        try:
            rec = json.loads(info.read_text(encoding="utf-8"))
            used = info.stat().st_mtime
        except (OSError, ValueError):
            continue
        sock = info.with_suffix(".sock")
        if not _is_kept_server(int(rec.get("pid", 0))) or not sock.exists():
            for p in (info, sock):
                with contextlib.suppress(OSError):
                    p.unlink()
            continue
        out.append({**rec, "last_used": used, "socket": str(sock), "stale": rec.get("stamp") != stamp})
    return sorted(out, key=lambda r: r["last_used"])


def stop(record: dict[str, Any], wait_s: float | None = 5.0) -> bool:
    """End one kept server (from :func:`kept`): its socket is removed (no run connects any more), then SIGTERM;
    SIGKILL if it is still there after ``wait_s`` (None: do not wait). Runs it serves keep their connection
    servers. False if it was gone already."""
    pid = int(record["pid"])
    for p in (record["socket"], str(Path(record["socket"]).with_suffix(".json")), record.get("run_socket")):
        if p:
            with contextlib.suppress(OSError):
                Path(p).unlink()
    if not _is_kept_server(pid):
        return False
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    if wait_s is None:
        return True
    end = time.monotonic() + wait_s
    while _is_kept_server(pid) and time.monotonic() < end:
        time.sleep(0.05)
    if _is_kept_server(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return True


def _evict(base: Path, stamp: str, me: int) -> None:
    """End the kept servers whose code is out of date, and the least recently used beyond :data:`MAX_KEPT`."""
    others = [r for r in kept(base) if int(r["pid"]) != me]
    current = [r for r in others if r.get("stamp") == stamp]
    for rec in [r for r in others if r.get("stamp") != stamp] + current[:max(0, len(current) - (MAX_KEPT - 1))]:
        stop(rec, wait_s=None)

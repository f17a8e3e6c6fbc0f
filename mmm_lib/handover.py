"""``mmm run`` and ``mmm optimize`` handed to a kept kernel server: the command runs in a fork of it, imports done.

The ``mmm`` command is a new Python that imports the run spec's models (pydantic), papermill, jupyter_client and
the runner before its first stage can start: 0.8-1.0 s on the 2-core machine, every run. A kernel server kept by an
earlier run (:mod:`mmm_lib.kernel_keeper`) has all of that loaded; it also listens on a second socket named after
what the ``mmm`` command itself would import under (:func:`mmm_lib.kernel_keeper.handover_key`: the Python, the
installed code, the environment). :func:`console` (the ``mmm`` command) looks for that socket first, before
importing anything heavy; when it is there, it sends its arguments, environment, working folder and umask, and its
standard input, output and error (the file descriptors themselves), and the kept server forks a process that runs
the command exactly as ``mmm`` would have, writing to the same terminal or pipes. ``mmm`` waits for it, passes
on SIGINT, SIGTERM and SIGHUP (Ctrl-C stops the run as before), and exits with its exit status. If ``mmm`` itself
is killed, the run is sent SIGTERM (recorded as interrupted, like a run whose terminal closed).

Anything else (no kept server, another environment or code, ``MMM_KEEP_KERNELS=0``, ``--help``, other commands)
runs the usual way, in the ``mmm`` process.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
from typing import Any

COMMANDS = ("run", "optimize")  # the commands worth handing over: each starts stage kernels
ANSWER_WAIT_S = 2.0  # a kept server that has not started the command by then is not used


def console() -> None:
    """The ``mmm`` command: handed to a kept kernel server when there is one for it, else run here."""
    code = hand_over(sys.argv[1:])
    if code is None:
        from .cli import console as run_here

        run_here()
    sys.exit(code)


def hand_over(argv: list[str]) -> int | None:
    """Run ``mmm ARGV`` in the kept kernel server for this process's environment and code: its exit status, or
    None when there is none to hand it to (nothing has started: run it here)."""
    if not argv or argv[0] not in COMMANDS or any(a in ("-h", "--help") for a in argv):
        return None
    from .kernel_keeper import handover_path, keep_minutes

    try:
        if keep_minutes() <= 0:
            return None
        path = handover_path(dict(os.environ), create=False)
        if path is None or not path.exists():
            return None
        cwd = os.getcwd()
    except (ValueError, OSError):  # said by the command itself, run here
        return None
    umask = os.umask(0)
    os.umask(umask)
    request = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": cwd, "umask": umask}).encode() + b"\n"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(ANSWER_WAIT_S)
        sock.connect(str(path))
        sent = socket.send_fds(sock, [request], [0, 1, 2])
        sock.sendall(request[sent:])
        reader = sock.makefile("rb")
        if not json.loads(reader.readline() or b"{}").get("ready"):
            raise ValueError("not ready")
        # Committed from here: the server runs the command only after this, so a server too slow to answer in
        # time (the command then runs here) never runs it too.
        sock.settimeout(None)
        sock.sendall(b"go\n")
        pid = int(json.loads(reader.readline() or b"{}")["pid"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        if sock.gettimeout() is None:  # it was sent "go", and then went away before saying what it started
            sys.stderr.write("error: the kept kernel server did not start this command; run it again "
                             "(MMM_KEEP_KERNELS=0 runs it in this process)\n")
            sock.close()
            return 1
        sock.close()
        return None

    def pass_on(signum: int, frame: Any) -> None:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, pass_on)
    for line in reader:
        with contextlib.suppress(ValueError):
            msg = json.loads(line)
            if "exit" in msg:
                code = int(msg["exit"])
                if code >= 0:
                    return code
                from .kernels import signal_name

                hint = " (the out-of-memory killer uses SIGKILL: check `dmesg`)" if -code == signal.SIGKILL else ""
                sys.stderr.write(f"error: the process running this command (pid {pid}, forked from the kept kernel "
                                 f"server) was killed by {signal_name(-code)}{hint}\n")
                return 128 - code  # killed by signal N: 128 + N, as a shell says
    sys.stderr.write(f"error: the kept kernel server that ran this command (process {pid}) ended before it could "
                     "say how the command ended; see `mmm runs list`, and run it again (MMM_KEEP_KERNELS=0 runs it "
                     "in this process)\n")
    return 1


# --------------------------------------------------------------------------- in the kept server

# What `mmm run` imports on its way (the run spec's models, the runner, papermill) and while it runs (nbconvert for
# the reports): measured as the packages a run adds to the `mmm` process's modules.
COMMAND_MODULES = ("mmm_lib.cli", "mmm_lib.runner", "mmm_lib.runs", "mmm_lib.tracking", "mmm_lib.tables",
                   "papermill.execute", "jupyter_client.kernelspec", "IPython.paths", "nbconvert")


def preload() -> None:
    """Import :data:`COMMAND_MODULES` and build the report exporters (their Jinja templates compiled once), in the
    kept server: the commands it runs start with them loaded."""
    import importlib

    from .runtime import skip_slow_schema_formats

    skip_slow_schema_formats()
    for name in COMMAND_MODULES:
        with contextlib.suppress(Exception):  # the command's own import says what is wrong
            importlib.import_module(name)
    with contextlib.suppress(Exception):
        from .report import _exporter

        _exporter(True)
        _exporter(False)


def serve(conn: socket.socket, keeper: int) -> None:
    """In a process the kept server forked for one handed-over command: receive it, fork the process that runs it,
    tell ``mmm`` its pid, then its exit status. If ``mmm`` goes away first, the command is sent SIGTERM. Never
    returns."""
    code = 0
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        conn.settimeout(ANSWER_WAIT_S)
        data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        while data and not data.endswith(b"\n"):
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            data += chunk
        request = json.loads(data)
        if len(fds) != 3:
            raise ValueError(f"expected the command's 3 standard streams, got {len(fds)}")
        conn.sendall(b'{"ready": true}\n')
        if conn.recv(3) != b"go\n":  # mmm gave up waiting and runs the command itself
            os._exit(0)
        conn.settimeout(None)
        pid = os.fork()
        if pid == 0:
            _run_command(request, fds, conn, keeper)
        for fd in fds:
            os.close(fd)
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        status = _wait_for(pid, conn)
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
    except BaseException:  # noqa: BLE001 - said on the kept server's log; mmm then says the command did not report
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _wait_for(pid: int, conn: socket.socket) -> int:
    """Wait for the command ``pid`` to end (its wait status); SIGTERM it once if ``mmm`` (``conn``) goes away."""
    try:
        watch = os.pidfd_open(pid)
    except (AttributeError, OSError):
        watch = None
    client_gone = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        fds = [conn] if not client_gone else []
        ready, _, _ = select.select(fds + ([watch] if watch is not None else []), [], [], 0.05 if watch is None else None)
        if conn in ready:
            try:
                gone = not conn.recv(4096)
            except OSError:
                gone = True
            if gone:
                client_gone = True
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)


def _run_command(request: dict[str, Any], fds: list[int], conn: socket.socket, keeper: int) -> None:
    """In the forked process: become ``mmm ARGV`` in the caller's folder, environment, umask and standard streams,
    run it, and end with its exit status. Never returns."""
    code = 1
    try:
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        conn.close()
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update(request["env"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        # New stream objects on the new descriptors, buffered as Python would for them (a terminal: by line).
        sys.stdin = open(0, "r", closefd=False)  # noqa: SIM115 - the process's own streams
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
        if os.environ.get("PYTHONUNBUFFERED"):  # as `python -u` (read by a new Python at its start)
            sys.stdout.reconfigure(write_through=True)
            sys.stderr.reconfigure(write_through=True)
        from . import kernel_keeper
        from .kernel_server import _name_process

        _name_process(f"mmm {request['argv'][0]}")
        kernel_keeper.HANDED_OVER_BY = keeper
        sys.argv = ["mmm", *request["argv"]]
        from .cli import main

        code = main(request["argv"])
    except SystemExit as e:
        if isinstance(e.code, str):
            sys.stderr.write(e.code + "\n")
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:  # a Ctrl-C outside a run's own handling: as Python ends on it
        import traceback

        traceback.print_exc()
        code = 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001 - as Python would print it, then the exit status 1
        import traceback

        traceback.print_exc()
    finally:
        from .kernel_server import end_fork

        end_fork(code)

"""Stage kernels started ahead (mmm_lib.kernels): the next stage's kernel boots and imports its notebook's modules
while the current stage runs; each stage still gets a kernel no other stage used, and none outlives the run."""

from __future__ import annotations

import base64
import importlib.util
import io
import os
import signal
import threading
import time

import nbformat
import psutil
import pytest

from mmm_lib import runner
from mmm_lib.kernels import StageKernels, is_stage_kernel, preload_modules
from mmm_lib.status import ALL_STAGES


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, path)
    return path


def _kernel_children() -> list[psutil.Process]:
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if is_stage_kernel(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


def test_preload_lists_what_each_stage_notebook_imports_and_every_module_exists():
    for stage in ALL_STAGES:
        mods = preload_modules(runner.notebooks_dir() / f"{stage}.ipynb")
        assert "mmm_lib.storage" in mods, stage  # every stage opens its run
        missing = [m for m in mods if importlib.util.find_spec(m) is None]
        assert not missing, f"{stage} imports modules that do not exist: {missing}"
    assert "mmm_lib.model_pymc" in preload_modules(runner.notebooks_dir() / "04_fit.ipynb")
    assert "arviz_stats.loo" in preload_modules(runner.notebooks_dir() / "05_diagnose.ipynb")  # from the metadata


def test_preload_reads_top_level_imports_and_the_notebook_list(tmp_path):
    nb = _notebook(tmp_path / "n.ipynb", "import json, csv as c\nfrom os import path\nfrom . import x",
                   "%matplotlib inline", "def f():\n    import tomllib\n")
    assert preload_modules(nb) == ["json", "csv", "os"]
    book = nbformat.read(nb, as_version=4)
    book.metadata["mmm"] = {"preload": ["zipfile", "json"]}
    nbformat.write(book, nb)
    assert preload_modules(nb) == ["json", "csv", "os", "zipfile"]


@pytest.mark.slow
def test_kernel_started_ahead_has_the_modules_loaded_and_figures_inline(tmp_path):
    """The second notebook's kernel is started while the first runs: its modules are loaded before its first
    cell, inline figures work (mmm_lib.plots found its kernel), and both kernels are gone after close()."""
    _notebook(tmp_path / "a.ipynb", "import time\ntime.sleep(2)\nprint('a ran')")
    _notebook(
        tmp_path / "b.ipynb",
        "import sys\nprint('preloaded:', 'mmm_lib.tables' in sys.modules, 'mmm_lib.plots' in sys.modules)",
        "from mmm_lib.plots import note_figure\nimport mmm_lib.tables\nfig = note_figure('x')\n"
        "print('size', *(fig.get_size_inches() * fig.dpi).round().astype(int))\nfig",
        "import os\nprint('pid', os.getpid())",
    )
    kernels = StageKernels("python3", tmp_path)
    out = {}
    pids = []
    try:
        for name, nxt in (("a", "b"), ("b", None)):
            km = kernels.take(name)
            pids.append(km.provisioner.process.pid)
            if nxt:
                kernels.start_ahead(nxt)
            out[name] = io.StringIO()
            runner._run_notebook(tmp_path / f"{name}.ipynb", tmp_path / f"{name}.out.ipynb", {}, "python3",
                                 out[name], io.StringIO(), km)
            kernels.release(km)
    finally:
        kernels.close()
    assert "a ran" in out["a"].getvalue()
    assert "preloaded: True True" in out["b"].getvalue()
    assert pids[0] != pids[1] and f"pid {pids[1]}" in out["b"].getvalue()  # a kernel of its own
    executed = nbformat.read(tmp_path / "b.out.ipynb", as_version=4)
    pngs = [base64.b64decode(o["data"]["image/png"]) for o in executed.cells[1].outputs if "image/png" in o.get("data", {})]
    assert pngs, executed.cells[1].outputs
    # rendered at the figure's own size, not cropped to its content (one draw less per figure)
    size = next(o["text"] for o in executed.cells[1].outputs if o.get("name") == "stdout").split()
    assert [int.from_bytes(pngs[0][16:20], "big"), int.from_bytes(pngs[0][20:24], "big")] == [int(size[1]), int(size[2])]
    assert not _kernel_children(), "a stage kernel outlived close()"


def _heartbeats() -> set[threading.Thread]:
    from jupyter_client.channels import HBChannel

    return {t for t in threading.enumerate() if isinstance(t, HBChannel) and t.is_alive()}


@pytest.mark.parametrize("release", [True, False])
def test_a_stages_kernel_client_is_closed_with_its_kernel(tmp_path, release):
    """papermill leaves its client of a kernel it did not start running: the client's heartbeat thread beat
    against the stopped kernel for the rest of the process, and garbage collection closed its sockets at some
    later moment (a run's exit once hung there). Releasing the kernel, or close() for one never released, closes
    the client: its heartbeat thread ends and its channels are closed."""
    _notebook(tmp_path / "a.ipynb", "print('a ran')")
    before = _heartbeats()
    kernels = StageKernels("python3", tmp_path, fork=False)
    out = io.StringIO()
    try:
        km = kernels.take("a")
        runner._run_notebook(tmp_path / "a.ipynb", tmp_path / "a.out.ipynb", {}, "python3", out, io.StringIO(), km)
        assert _heartbeats() - before, "papermill's client has a heartbeat thread while the kernel runs"
        if release:
            kernels.release(km)
            assert not _heartbeats() - before, "the client's heartbeat outlived the release of its kernel"
    finally:
        kernels.close()
    assert "a ran" in out.getvalue()
    assert not _heartbeats() - before, "a client's heartbeat outlived close()"


@pytest.mark.slow
def test_a_kernel_started_ahead_is_stopped_when_no_stage_takes_it(tmp_path):
    _notebook(tmp_path / "c.ipynb", "print(1)")
    kernels = StageKernels("python3", tmp_path)
    kernels.start_ahead("c")
    assert _kernel_children()
    kernels.close()
    assert not _kernel_children()


@pytest.mark.slow
def test_the_executed_notebook_is_written_every_few_seconds_not_around_every_cell(tmp_path, monkeypatch):
    """papermill writes the whole notebook before and after each cell; a stage writes it at most every
    SAVE_EVERY_S, and once complete at the end (all outputs in it)."""
    import papermill.engines
    import papermill.iorw

    writes = []
    real = papermill.iorw.write_ipynb

    def counting(nb, path):
        writes.append(path)
        return real(nb, path)

    monkeypatch.setattr(papermill.engines, "write_ipynb", counting)  # the engine's per-cell saves
    monkeypatch.setattr(runner, "SAVE_EVERY_S", 30.0)
    _notebook(tmp_path / "many.ipynb", *[f"print({i})" for i in range(25)])
    runner._run_notebook(tmp_path / "many.ipynb", tmp_path / "out.ipynb", {}, "python3", io.StringIO(), io.StringIO())
    assert len(writes) <= 3, len(writes)  # papermill alone: 2 per cell + 2
    done = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert [c.outputs[0]["text"].strip() for c in done.cells] == [str(i) for i in range(25)]


@pytest.mark.slow
def test_kernels_started_ahead_are_forked_from_one_server_each_in_its_own_process_group(tmp_path):
    """The run's kernel server imports the notebooks' modules once; each kernel started ahead is a fork of it named
    after its stage, leading its own process group; a kernel killed says so, and nothing outlives close()."""
    from mmm_lib.kernel_server import ForkedKernel
    from mmm_lib.kernels import kernel_end

    _notebook(tmp_path / "01_a.ipynb", "print('a')")
    _notebook(tmp_path / "02_b.ipynb", "import json\nimport os\nprint('pid', os.getpid(), os.getpgid(0))")
    _notebook(tmp_path / "03_c.ipynb", "import time\ntime.sleep(60)")
    kernels = StageKernels("python3", tmp_path, fork=True)
    try:
        kernels.warm()
        first = kernels.take("01_a")  # needed now: a new Python, not waiting for the server
        assert not isinstance(first.provisioner.process, ForkedKernel)
        kernels.start_ahead("02_b")
        kernels.start_ahead("03_c")
        b = kernels.take("02_b")
        proc = b.provisioner.process
        assert isinstance(proc, ForkedKernel)
        out = io.StringIO()
        runner._run_notebook(tmp_path / "02_b.ipynb", tmp_path / "b.out.ipynb", {}, "python3", out, io.StringIO(), b)
        assert f"pid {proc.pid} {proc.pid}" in out.getvalue()  # its own process group, as a launched kernel's
        ps = psutil.Process(proc.pid)  # (named once it runs: a kernel is handed over before it answers)
        assert ps.name() == "02_b" and "mmm_lib.kernel_server" in " ".join(ps.parent().cmdline())
        c = kernels.take("03_c")
        c_pid = c.provisioner.process.pid
        assert c_pid != proc.pid
        psutil.Process(c_pid).kill()
        assert kernel_end(c) == "was killed by SIGKILL (the out-of-memory killer uses SIGKILL: check `dmesg`)"
        for km in (first, b, c):
            kernels.release(km)
    finally:
        kernels.close()
    assert not _kernel_children(), "a stage kernel or the kernel server outlived close()"


@pytest.mark.slow
def test_without_a_server_kernels_start_as_new_pythons(tmp_path, monkeypatch):
    """MMM_FORK_KERNELS=0, or a server that died, leaves every kernel to start the plain way."""
    from mmm_lib.kernel_server import ForkedKernel

    _notebook(tmp_path / "a.ipynb", "print(1)")
    monkeypatch.setenv("MMM_FORK_KERNELS", "0")
    kernels = StageKernels("python3", tmp_path)
    try:
        kernels.start_ahead("a")
        km = kernels.take("a")
        assert not isinstance(km.provisioner.process, ForkedKernel)
        kernels.release(km)
    finally:
        kernels.close()
    monkeypatch.delenv("MMM_FORK_KERNELS")
    kernels = StageKernels("python3", tmp_path)
    try:
        kernels.warm()
        kernels._kernel_server.kill()
        kernels.start_ahead("a")
        km = kernels.take("a")
        assert not isinstance(km.provisioner.process, ForkedKernel)
        out = io.StringIO()
        runner._run_notebook(tmp_path / "a.ipynb", tmp_path / "a.out.ipynb", {}, "python3", out, io.StringIO(), km)
        assert "1" in out.getvalue()
        kernels.release(km)
    finally:
        kernels.close()
    assert not _kernel_children()


@pytest.mark.slow
def test_a_kept_server_serves_later_runs_first_stages_too(tmp_path):
    """A batch worker keeps one kernel server for its runs (same environment): it outlives each run's close(),
    and once ready every stage's kernel is a fork of it, the first stage's too, with the run's environment."""
    from mmm_lib.kernel_server import ForkedKernel
    from mmm_lib.kernels import shared_server

    _notebook(tmp_path / "01_a.ipynb", "import os\nprint('run', os.environ['MMM_RUN_TAG'])")
    env = {"MMM_TEST_ENV": "1"}
    server = shared_server(tmp_path, env)
    try:
        assert shared_server(tmp_path, dict(env)) is server
        deadline = time.monotonic() + 60
        while not server.ready and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.ready
        pids = []
        for run in ("r1", "r2"):
            kernels = StageKernels("python3", tmp_path, {**env, "MMM_RUN_TAG": run}, tmp_path / run / "kernels.log",
                                   server=server)
            try:
                km = kernels.take("01_a")
                assert isinstance(km.provisioner.process, ForkedKernel)
                pids.append(km.provisioner.process.pid)
                out = io.StringIO()
                runner._run_notebook(tmp_path / "01_a.ipynb", tmp_path / f"{run}.out.ipynb", {}, "python3", out,
                                     io.StringIO(), km)
                assert f"run {run}" in out.getvalue()
                kernels.release(km)
            finally:
                kernels.close()
            assert server.alive, "the kept server ended with a run"
            assert (tmp_path / run / "kernels.log").exists()
        assert pids[0] != pids[1]
        stage_kernels = [p for p in _kernel_children() if "kernel_server" not in " ".join(p.cmdline())]
        assert not stage_kernels, "a stage kernel outlived its run"
    finally:
        server.close()
    assert not server.alive and shared_server(tmp_path, env) is not server  # one that ended is started again
    shared_server(tmp_path, env).close()


@pytest.mark.slow
def test_a_forked_kernel_whose_server_died_before_reporting_it_is_not_waited_for_forever(tmp_path):
    """A kernel ended while its server was busy (importing), then the server died: nothing reaps the kernel where
    pid 1 does not reap orphans (some containers), and it stays a zombie. It counts as ended all the same: killed
    by SIGKILL when it was killed, else status 1 (unknown); a run stopping on a signal does not wait on it."""
    from mmm_lib.kernel_server import ForkedKernel
    from mmm_lib.kernels import start_server

    _notebook(tmp_path / "a.ipynb", "print(1)")
    server = start_server(tmp_path, {})
    try:
        deadline = time.monotonic() + 60
        while not server.ready and time.monotonic() < deadline:
            time.sleep(0.1)
        killed = server.fork(["-f", str(tmp_path / "none.json")], dict(os.environ), str(tmp_path), stage="a")
        ended = server.fork(["-f", str(tmp_path / "none.json")], dict(os.environ), str(tmp_path), stage="a")
        assert isinstance(killed, ForkedKernel) and killed.poll() is None and ended.poll() is None
        os.kill(server.proc.pid, signal.SIGSTOP)  # busy: it reaps and reports nothing
        killed.kill()
        ended.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert killed.poll() == -signal.SIGKILL  # ended, not reported, but known: it was killed
        assert ended.poll() is None  # ended, not reported: its server, alive, will say how
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        assert ended.wait(timeout=10) == 1  # its server is gone: how it ended is not known
    finally:
        server.kill()


@pytest.mark.slow
@pytest.mark.parametrize("fork", [False, True])
def test_a_kernel_a_stage_took_and_never_released_ends_with_close(tmp_path, fork):
    """A stage cut short never releases its kernel: close() stops it all the same (forked or not)."""
    _notebook(tmp_path / "01_a.ipynb", "print(1)")
    _notebook(tmp_path / "02_b.ipynb", "print(2)")
    kernels = StageKernels("python3", tmp_path, fork=fork)
    try:
        kernels.warm()
        kernels.take("01_a")
        kernels.start_ahead("02_b")
        km = kernels.take("02_b")
        assert km.provisioner.process.poll() is None
    finally:
        kernels.close()
    assert not _kernel_children(), "a kernel a stage took outlived close()"


def test_the_server_loads_lazily_imported_modules_so_its_kernels_do_not_each_load_them():
    """A module registered to load at first use (arviz_base does this with jax and numpyro) is loaded by the
    server after each module group: every kernel's ipykernel touches every module as it starts, which would
    otherwise import it in each forked kernel."""
    import importlib.util
    import subprocess
    import sys

    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.find_spec('colorsys')\n"
        "loader = importlib.util.LazyLoader(spec.loader)\n"
        "spec.loader = loader\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['colorsys'] = module\n"
        "loader.exec_module(module)\n"
        "assert type(sys.modules['colorsys']).__name__ == '_LazyModule'\n"
        "from mmm_lib.kernel_server import _load_lazy_modules\n"
        "_load_lazy_modules()\n"
        "assert type(sys.modules['colorsys']).__name__ == 'module', type(sys.modules['colorsys'])\n"
        "assert 'rgb_to_hsv' in vars(sys.modules['colorsys'])\n"
    )
    assert importlib.util.find_spec("colorsys") is not None
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.slow
def test_a_runs_own_server_imports_a_stage_ahead_not_everything_at_once(tmp_path):
    """A run's own server imports a stage's modules when that stage's kernel is asked for, and the next stage's
    once it forked it, not every stage's at once (they competed with the first stage, which is not a fork); a
    worker's kept server imports everything at once."""
    from mmm_lib.kernels import shared_server, start_server

    _notebook(tmp_path / "01_a.ipynb", "import colorsys")
    _notebook(tmp_path / "02_b.ipynb", "import wave")
    _notebook(tmp_path / "03_c.ipynb", "import tabnanny")

    def wait_for(cond, s=60.0):
        deadline = time.monotonic() + s
        while not cond() and time.monotonic() < deadline:
            time.sleep(0.05)
        return cond()

    server = start_server(tmp_path, {})
    try:
        server.prepare("01_a")
        assert wait_for(lambda: server.has_loaded("01_a"))
        time.sleep(1.0)  # time enough to import a stdlib module: it was not asked for
        assert not server.has_loaded("02_b")
        kernel = server.fork(["-f", str(tmp_path / "k.json")], dict(os.environ), str(tmp_path), stage="01_a")
        assert wait_for(lambda: server.has_loaded("02_b"))  # the next stage's, once 01's kernel is forked
        time.sleep(1.0)
        assert not server.has_loaded("03_c")
        kernel.kill()
    finally:
        server.close()
    kept = shared_server(tmp_path, {"MMM_TEST_EAGER": "1"})
    try:
        assert wait_for(lambda: kept.ready)
    finally:
        kept.close()


@pytest.mark.parametrize("error, reported", [(lambda: runner.RunInterrupted(signal.SIGTERM), False),
                                             (lambda: ValueError("a real failure"), True)],
                         ids=["signal", "other-error"])
def test_a_signal_that_lands_in_a_kernel_task_is_not_printed_after_the_run_ends(tmp_path, caplog, error, reported):
    """A signal ending a run can arrive while the loop runs one of the kernels' tasks (seen: a kernel's shutdown,
    under load, 3 of 15 interrupted runs): the run records its end, but the task kept the exception too and
    asyncio printed "Task exception was never retrieved" and a traceback after the run's one-line error.
    Other exceptions a task keeps are still reported."""
    import asyncio
    import contextlib
    import gc
    import logging

    kernels = StageKernels("python3", tmp_path, fork=False)

    async def cut_short() -> None:
        raise error()

    task = kernels.loop.create_task(cut_short())
    with contextlib.suppress(KeyboardInterrupt):  # a KeyboardInterrupt leaves the loop through whatever it was running
        kernels.loop.run_until_complete(asyncio.sleep(0.01))
    assert task.done()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        del task
        gc.collect()
    kernels.close()
    assert ("Task exception was never retrieved" in caplog.text) is reported, caplog.text
    handler = kernels.loop.get_exception_handler()
    StageKernels("python3", tmp_path, fork=False).close()
    assert kernels.loop.get_exception_handler() is handler  # a later run on the same loop does not wrap it again


class _Channel:
    """A kernel client's channel holding the messages a kernel would send (for ReadyKernelClient's logic)."""

    def __init__(self, msgs):
        self.msgs = list(msgs)

    async def get_msg(self, timeout=None):
        from queue import Empty

        if not self.msgs:
            raise Empty
        return self.msgs.pop(0)


def _msg(msg_type, parent, **content):
    return {"msg_type": msg_type, "parent_header": {"msg_id": parent}, "content": content}


def _ready_client(shell, iopub, alive=True):
    from mmm_lib.kernels import _zmq_context, ready_client_class

    kc = ready_client_class()(context=_zmq_context())  # as a stage kernel's: no context of its own to terminate
    kc._shell_channel, kc._iopub_channel = _Channel(shell), _Channel(iopub)
    kc.sent = []
    kc.kernel_info = lambda: kc.sent.append(f"ki{len(kc.sent) + 1}") or kc.sent[-1]

    async def is_alive():
        return alive

    kc._async_is_alive = is_alive
    return kc


def test_a_kernel_is_ready_at_the_idle_status_closing_its_kernel_info_request_and_that_exchange_is_drained():
    """jupyter_client's own wait drained IOPub until nothing came for 0.2 s (0.2 s before every stage's first
    cell); this one stops at the message that ends the request, after reading everything the kernel sent before it."""
    import asyncio

    reply = _msg("kernel_info_reply", "ki1", protocol_version="5.3")
    later = _msg("stream", "other", name="stdout", text="not part of the request")
    iopub = [_msg("status", None, execution_state="starting"), _msg("status", "ki1", execution_state="busy"),
             _msg("status", "earlier", execution_state="idle"), _msg("status", "ki1", execution_state="idle"), later]
    kc = _ready_client([reply], iopub)
    asyncio.run(kc.wait_for_ready(timeout=5))
    assert kc.sent == ["ki1"]
    assert kc._iopub_channel.msgs == [later]  # drained up to and including the request's idle, nothing after it



def test_a_request_whose_idle_status_never_comes_is_sent_again_and_a_dead_kernel_is_reported():
    """An IOPub subscription that is not in place yet drops the kernel's messages: as upstream, the request is
    sent again; a kernel that died is an error, not an endless wait."""
    import asyncio

    replies = [_msg("kernel_info_reply", "ki1", protocol_version="5.3"),
               _msg("kernel_info_reply", "ki2", protocol_version="5.3")]
    kc = _ready_client(replies, [])
    real_get = kc._iopub_channel.get_msg

    async def iopub_get(timeout=None):  # nothing on IOPub for the first request; the second one's idle arrives
        if kc.sent == ["ki1", "ki2"] and not kc._iopub_channel.msgs:
            kc._iopub_channel.msgs.append(_msg("status", "ki2", execution_state="idle"))
        return await real_get(timeout)

    kc._iopub_channel.get_msg = iopub_get
    asyncio.run(kc.wait_for_ready(timeout=5))
    assert kc.sent == ["ki1", "ki2"]

    dead = _ready_client([], [], alive=False)
    with pytest.raises(RuntimeError, match="Kernel died"):
        asyncio.run(dead.wait_for_ready(timeout=5))


@pytest.mark.parametrize("fork", [False, True], ids=["new Python", "forked"])
def test_a_stage_kernels_client_is_ready_with_nothing_left_of_the_handshake(tmp_path, fork):
    """A real kernel (a run's first stage, a new Python; or one started ahead, forked from the server): after the
    ready check nothing of the handshake waits on IOPub, and the kernel runs the client's code."""
    _notebook(tmp_path / "a.ipynb", "print(1)")
    kernels = StageKernels("python3", tmp_path, fork=fork)
    run = kernels.loop.run_until_complete
    try:
        (kernels.start_ahead if fork else kernels.start_first)("a")
        km = kernels.take("a")
        kc = km.client()
        kc.start_channels()
        run(kc.wait_for_ready(timeout=60))
        assert not run(kc.iopub_channel.msg_ready())
        msg_id = kc.execute("print(6 * 7)")
        text = []
        while True:
            msg = run(kc.get_iopub_msg(timeout=60))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                text.append(msg["content"]["text"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        assert "".join(text) == "42\n"
    finally:
        kernels.close()
    assert not _kernel_children()

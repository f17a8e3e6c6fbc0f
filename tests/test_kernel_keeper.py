"""A run's kernel server kept for the next run (mmm_lib.kernel_keeper): the next run with the same code and settings
forks every stage's kernel from it, the first stage's too; it ends when idle, when stopped, or when out of date; a
run killed while using it takes its own kernels with it and leaves the kept server to the next run."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import time

import psutil
import pytest

from mmm_lib import cli, kernel_keeper, runner
from mmm_lib.kernel_server import ForkedKernel
from mmm_lib.kernels import StageKernels

from test_run_faults import SPEC, mmm, start_run, wait_for_stage
from test_stage_kernels import _notebook


@pytest.fixture
def keeping(tmp_path, monkeypatch):
    """Keeping on, in a folder of this test's own; every server kept there is stopped at the end."""
    folder = tmp_path / "kept"
    (tmp_path / "nb").mkdir()  # the tests' notebooks
    monkeypatch.setenv(kernel_keeper.DIR_ENV, str(folder))
    monkeypatch.setenv(kernel_keeper.KEEP_ENV, "5")
    yield folder
    for rec in kernel_keeper.kept(folder):
        kernel_keeper.stop(rec)


def _wait(cond, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def _kept(folder, n: int = 1) -> list[dict]:
    """The servers kept in ``folder`` once there are ``n`` (a server kept at a run's end listens a moment later)."""
    _wait(lambda: len(kernel_keeper.kept(folder)) >= n)
    return kernel_keeper.kept(folder)


def _one_stage_run(notebooks, env: dict, tag: str) -> tuple[StageKernels, str, int]:
    """A run of one stage (01_a) on ``notebooks``: its kernels, what the stage printed, its kernel's pid (negative:
    a new Python, not a fork). What it writes goes beside the folder: the notebooks in it are part of the key."""
    kernels = StageKernels("python3", notebooks, env, notebooks.parent / tag / "kernels.log")
    out = io.StringIO()
    try:
        kernels.warm()
        km = kernels.take("01_a")
        pid = km.provisioner.process.pid
        forked = isinstance(km.provisioner.process, ForkedKernel)
        runner._run_notebook(notebooks / "01_a.ipynb", notebooks.parent / f"{tag}.out.ipynb", {"tag": tag}, "python3", out,
                             io.StringIO(), km)
        kernels.release(km)
        kernels.wind_down()
    finally:
        kernels.close()
    return kernels, out.getvalue(), pid if forked else -pid


@pytest.mark.slow
def test_a_run_keeps_its_server_and_the_next_run_forks_its_first_stage_from_it(tmp_path, keeping):
    _notebook(tmp_path / "nb" / "01_a.ipynb", "import os, json\nprint('run', tag, os.environ['MMM_TEST_ENV'], os.getppid())")
    _notebook(tmp_path / "nb" / "02_b.ipynb", "import csv")
    env = {"MMM_TEST_ENV": "1"}

    first, out, pid = _one_stage_run(tmp_path / "nb", env, "r1")
    assert pid < 0, "with nothing kept, the first stage's kernel is a new Python"
    assert first.kept_server is None and first.kept_for_later
    [rec] = _kept(keeping)
    kept = psutil.Process(rec["pid"])
    assert "mmm_lib.kernel_server" in " ".join(kept.cmdline())
    assert rec["outputs"] == os.environ["MMM_OUTPUTS"] and not rec["stale"]
    assert oct(keeping.stat().st_mode & 0o777) == "0o700"

    second, out, pid = _one_stage_run(tmp_path / "nb", {**env}, "r2")
    assert second.kept_server == rec["pid"]
    assert pid > 0, "the first stage's kernel is a fork of the kept server"
    assert "run r2 1" in out, "the kernel runs this run's notebook with its environment"
    connection = int(out.split()[-1])  # the kernel's parent: the connection server that served the run
    assert connection != rec["pid"]
    assert _wait(lambda: not psutil.pid_exists(connection) or psutil.Process(connection).status() == "zombie", 10), \
        "the connection server outlived its run"
    assert _wait(lambda: not psutil.pid_exists(pid), 10), "the stage kernel outlived its run"
    assert kept.is_running(), "the kept server ended with a run that only used it"
    assert [r["pid"] for r in kernel_keeper.kept(keeping)] == [rec["pid"]], "a run that used it kept another"

    # Another environment is another key: not served by this one (it starts and keeps its own).
    third, _, pid = _one_stage_run(tmp_path / "nb", {"MMM_TEST_ENV": "2"}, "r3")
    assert third.kept_server is None and pid < 0
    assert len(_kept(keeping, 2)) == 2


@pytest.mark.slow
def test_kept_servers_are_listed_and_stopped_by_the_cli_and_end_when_idle(tmp_path, keeping, monkeypatch, capsys):
    _notebook(tmp_path / "nb" / "01_a.ipynb", "import os\nprint('run', tag, os.environ['MMM_TEST_ENV'], os.getppid())")
    _one_stage_run(tmp_path / "nb", {"MMM_TEST_ENV": "1"}, "r1")
    [rec] = _kept(keeping)
    assert cli.main(["kernels"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["pid"] == rec["pid"] and listed["code"] == "current" and listed["ends_after_idle_min"] == 5
    assert cli.main(["kernels", "--stop", "--format", "table"]) == 0
    assert str(rec["pid"]) in capsys.readouterr().out
    assert not psutil.pid_exists(rec["pid"]) or psutil.Process(rec["pid"]).status() == "zombie"
    assert kernel_keeper.kept(keeping) == [] and not list(keeping.glob("*.sock"))
    assert cli.main(["kernels"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == [] and "no kernel server is kept" in captured.err

    monkeypatch.setenv(kernel_keeper.KEEP_ENV, "0.02")  # 1.2 s
    _one_stage_run(tmp_path / "nb", {"MMM_TEST_ENV": "1"}, "r2")
    [rec] = _kept(keeping)
    assert _wait(lambda: not psutil.pid_exists(rec["pid"]) or psutil.Process(rec["pid"]).status() == "zombie", 15), \
        "an idle kept server did not end"
    assert not list(keeping.glob("*.sock")) and not list(keeping.glob("*.json")), "it left its socket behind"

    monkeypatch.setenv(kernel_keeper.KEEP_ENV, "0")
    kernels, _, pid = _one_stage_run(tmp_path / "nb", {"MMM_TEST_ENV": "1"}, "r3")
    assert pid < 0 and kernels.kept_for_later is None and kernel_keeper.kept(keeping) == []


@pytest.mark.slow
def test_a_socket_left_by_a_server_that_died_is_not_used_and_is_replaced(tmp_path, keeping):
    from mmm_lib.kernels import module_groups

    _notebook(tmp_path / "nb" / "01_a.ipynb", "import os\nprint('run', tag, os.environ['MMM_TEST_ENV'], os.getppid())")
    groups, _ = module_groups(tmp_path / "nb")
    settings = kernel_keeper.keep_settings(groups, {**os.environ, "MMM_TEST_ENV": "1"})
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(settings["path"])  # bound, never listening, then closed: what a killed server leaves
    dead.close()
    assert kernel_keeper.connect(groups, {**os.environ, "MMM_TEST_ENV": "1"}) is None
    kernels, _, pid = _one_stage_run(tmp_path / "nb", {"MMM_TEST_ENV": "1"}, "r1")
    assert pid < 0 and kernels.kept_for_later == settings["path"]
    [rec] = _kept(keeping)
    assert rec["socket"] == settings["path"]
    assert kernel_keeper.connect(groups, {**os.environ, "MMM_TEST_ENV": "1"}) is not None


def test_a_bad_keep_setting_is_refused_before_the_run_naming_the_variable(tmp_path, monkeypatch):
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(kernel_keeper.KEEP_ENV, bad)
        with pytest.raises(runner.RunError, match=f"MMM_KEEP_KERNELS='{bad}' is not a number of minutes.*0 to keep none"):
            runner.stage_env(tmp_path)
    monkeypatch.setenv(kernel_keeper.KEEP_ENV, " 2.5 ")
    assert kernel_keeper.keep_minutes() == 2.5
    monkeypatch.delenv(kernel_keeper.KEEP_ENV)
    assert kernel_keeper.keep_minutes() == kernel_keeper.DEFAULT_MINUTES


def test_a_folder_other_users_can_write_to_is_not_used(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setenv(kernel_keeper.DIR_ENV, str(shared))
    assert kernel_keeper.folder() is None
    assert kernel_keeper.keep_settings([["json"]], {}) is None and kernel_keeper.connect([["json"]], {}) is None


def test_the_key_changes_with_the_code_modules_and_environment_not_with_the_shell(monkeypatch):
    groups, env = [["json"], ["csv"]], {"MMM_OUTPUTS": "/a", "PWD": "/x", "SHLVL": "1"}
    k = kernel_keeper.key(groups, env, "stamp")
    assert kernel_keeper.key(groups, {**env, "PWD": "/y", "SHLVL": "2", "_": "/bin/mmm"}, "stamp") == k
    assert kernel_keeper.key(groups, {**env, "MMM_OUTPUTS": "/b"}, "stamp") != k
    assert kernel_keeper.key([["json"]], env, "stamp") != k
    assert kernel_keeper.key(groups, env, "other code") != k
    stamp = kernel_keeper.code_stamp()
    assert stamp == kernel_keeper.code_stamp()
    lib = os.path.dirname(kernel_keeper.__file__)
    st = os.stat(os.path.join(lib, "kernel_keeper.py"))
    try:
        os.utime(os.path.join(lib, "kernel_keeper.py"), ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert kernel_keeper.code_stamp() != stamp, "an edited source file must give a new key"
    finally:
        os.utime(os.path.join(lib, "kernel_keeper.py"), ns=(st.st_atime_ns, st.st_mtime_ns))


def _listening(folder) -> dict:
    """The one server kept in ``folder``, once it also takes commands over (it first imports what they need)."""
    assert _wait(lambda: any(r.get("run_socket") and os.path.exists(r["run_socket"]) for r in kernel_keeper.kept(folder))), \
        "the kept server never listened for commands"
    [rec] = kernel_keeper.kept(folder)
    return rec


@pytest.mark.slow
def test_mmm_run_is_handed_to_the_kept_server_with_identical_results_signals_and_errors(keeping, outputs_root):
    """The real pipeline: the second `mmm run` runs in a fork of the server the first kept (its kernels too) and
    writes the same ROI byte for byte, its JSON on stdout; Ctrl-C reaches it (exit 130, recorded as interrupted);
    `mmm` killed outright takes its run with it (SIGTERM: recorded) and leaves the kept server to the next command;
    a bad spec value gives the usual one-line error."""
    first = mmm("run", SPEC, "--run-id", "first", timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "kernel server kept for the next run" in first.stderr
    rec = _listening(keeping)
    second = mmm("run", SPEC, "--run-id", "second", timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"this run and its kernels: forked from the kernel server an earlier run kept (pid {rec['pid']}" in second.stderr
    assert json.loads(second.stdout)["status"] == "completed"
    roi = [(outputs_root / "runs" / r / "roi_metrics.json").read_bytes() for r in ("first", "second")]
    assert roi[0] == roi[1]

    kept = psutil.Process(rec["pid"])
    for run_id, sig, code in (("third", signal.SIGINT, 130), ("fourth", signal.SIGKILL, -signal.SIGKILL)):
        before = {p.pid for p in kept.children(recursive=True)}
        proc = start_run(SPEC, run_id)
        wait_for_stage(proc, outputs_root / "runs" / run_id, "02_canonicalize")
        served = [p for p in kept.children(recursive=True) if p.pid not in before]
        assert any(p.name() == "mmm run" for p in served), "the run was not handed to the kept server"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err[-3000:]
        assert _wait(lambda: not any(p.is_running() and p.status() != "zombie" for p in served), 30), \
            f"{run_id}: the run, its kernels or the process serving it outlived `mmm`"
        st = json.loads((outputs_root / "runs" / run_id / "status.json").read_text())
        assert st["status"] == "interrupted", st
        if sig == signal.SIGINT:
            assert f"run '{run_id}' interrupted by SIGINT (Ctrl-C)" in err
        else:
            assert "interrupted by SIGTERM" in st["error"]  # mmm gone: its run was stopped, and recorded
    assert kept.is_running()
    bad = mmm("run", SPEC, "--run-id", "fifth", "--set", "draws=abc")
    assert bad.returncode == 1 and "draws: Input should be a valid integer" in bad.stderr and not bad.stdout
    assert kept.is_running()


def test_a_command_is_not_handed_over_when_it_should_not_or_cannot_be(tmp_path, keeping, monkeypatch):
    """Other commands, --help, keeping off, no server, and a server that does not answer in time: the command runs
    in the `mmm` process (None), and nothing was started elsewhere."""
    import threading

    from mmm_lib import handover

    for argv in ([], ["runs", "list"], ["run", "x.yaml", "--help"], ["kernels"]):
        assert handover.hand_over(argv) is None
    assert handover.hand_over(["run", "x.yaml"]) is None  # nothing kept
    path = kernel_keeper.handover_path(dict(os.environ))
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(str(path))
    mute.listen(1)
    got = []

    def accept_and_say_nothing() -> None:
        conn, _ = mute.accept()
        got.append(conn.recv(1 << 16))
        got.append(conn.recv(16))  # what mmm sends after giving up: nothing (the connection closes)

    t = threading.Thread(target=accept_and_say_nothing)
    t.start()
    started = time.monotonic()
    assert handover.hand_over(["run", "x.yaml"]) is None
    assert time.monotonic() - started < handover.ANSWER_WAIT_S + 2
    t.join(10)
    assert b'"argv": ["run", "x.yaml"]' in got[0] and got[1] == b"", "mmm sent `go` to a server that never answered"
    mute.close()
    monkeypatch.setenv(kernel_keeper.KEEP_ENV, "0")
    assert handover.hand_over(["run", "x.yaml"]) is None

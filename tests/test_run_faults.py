"""Runs that die: every way a run ends leaves a true ``status.json``, a released lock and one line saying why.

The faults are real: signals sent to a real ``mmm run`` process and to its stage kernel, a full disk (a small
tmpfs, where this machine lets the test mount one) and a read-only outputs folder (a read-only bind mount).
Each run is interrupted early (in 02_canonicalize) so no test fits a model.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mmm_lib import status as status_mod, storage
from mmm_lib.kernels import is_stage_kernel

REPO = Path(__file__).resolve().parent.parent
MMM = [str(REPO / ".venv" / "bin" / "mmm")] if (REPO / ".venv" / "bin" / "mmm").exists() else [sys.executable, "-m",
                                                                                              "mmm_lib"]
SPEC = REPO / "params" / "fast.yaml"
DATA = REPO / "data" / "mmm_sample_small.csv"


# --------------------------------------------------------------------------- helpers (also used by test_inputs_kept)

def mmm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*MMM, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def start_run(spec: Path, run_id: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*MMM, "run", str(spec), "--run-id", run_id, *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def read_status(folder: Path) -> dict:
    try:
        return json.loads((folder / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_for_stage(proc: subprocess.Popen, folder: Path, stage: str, timeout: float = 120) -> dict:
    """Wait until ``stage`` is running (its kernel started), the run still alive."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        st = read_status(folder)
        if st.get("stage") == stage and st.get("status") == "running":
            return st
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"run ended before {stage} (rc {proc.returncode}): {err[-3000:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"{stage} did not start within {timeout} s")


def stage_kernels(proc: subprocess.Popen, started_after: float, timeout: float = 60) -> list[psutil.Process]:
    """The run's stage kernels (children of ``mmm run``: the running stage's, and the next one's, started ahead)
    started after ``started_after``."""
    t_end = time.monotonic() + timeout
    parent = psutil.Process(proc.pid)
    while time.monotonic() < t_end:
        found = []
        for child in parent.children(recursive=True):
            try:
                if is_stage_kernel(child.cmdline()) and child.create_time() >= started_after - 0.5:
                    found.append(child)
            except psutil.Error:
                pass
        if found:
            return found
        time.sleep(0.1)
    pytest.fail("no stage kernel found")


def serves(kernel: psutil.Process, stage: str, module: str) -> bool:
    """Whether ``kernel`` is ``stage``'s: a kernel forked from the run's kernel server is named after its stage; one
    started as a new Python was told to load the stage's module (the server itself loads every stage's)."""
    try:
        cmd = " ".join(kernel.cmdline())
        return kernel.name() == stage or (module in cmd and "mmm_lib.kernel_server" not in cmd)
    except psutil.Error:
        return False


def snapshot(folder: Path, names: list[str]) -> dict[str, str]:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def assert_one_line_error(err: str, *needles: str) -> str:
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, err
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


def assert_lock_released(folder: Path) -> None:
    assert not storage.lock_held(folder)
    assert not (folder / storage.LOCK_FILE).exists()


KEPT_AFTER_01 = ["raw_data.parquet", "validation_summary.json", "source.csv", "run_spec.json"]


# --------------------------------------------------------------------------- signals to the run


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("sig, code, name", [(signal.SIGINT, 130, "SIGINT (Ctrl-C)"), (signal.SIGTERM, 143, "SIGTERM"),
                                             (signal.SIGHUP, 129, "SIGHUP")])
def test_a_signal_is_recorded_the_lock_released_and_the_kernel_stopped(outputs_root, sig, code, name):
    folder = outputs_root / "runs" / "sig"
    data_before = DATA.read_bytes()
    proc = start_run(SPEC, "sig")
    wait_for_stage(proc, folder, "02_canonicalize")
    kernels = stage_kernels(proc, time.time() - 30)
    kept = snapshot(folder, KEPT_AFTER_01)
    os.kill(proc.pid, sig)
    rc, out, err = finish(proc)

    assert rc == code, err
    line = assert_one_line_error(err, f"interrupted by {name} during 02_canonicalize",
                                 f"--run-id sig --resume")
    assert len(err.splitlines()) < 15, err  # progress lines and the one error line, no traceback
    st = read_status(folder)
    assert st["status"] == "interrupted" and st["stage"] == "02_canonicalize"
    assert st["error"] == f"02_canonicalize: interrupted by {name}", line
    assert st["stages"]["01_validate"]["status"] == "completed"
    assert st["stages"]["02_canonicalize"]["status"] == "interrupted"
    assert_lock_released(folder)
    alive = [k for k in kernels if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
    assert not alive, "a stage kernel outlived the run"
    assert snapshot(folder, KEPT_AFTER_01) == kept  # no byte of an earlier artifact changed
    assert DATA.read_bytes() == data_before
    assert not list(folder.rglob(storage.TEMP_GLOB))
    assert "interrupted" in (folder / "index.html").read_text()

    shown = json.loads(mmm("runs", "status", "sig").stdout)
    assert shown["status"] == "interrupted"
    assert mmm("runs", "rm", "sig", "--yes").returncode == 0
    assert not folder.exists()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_killed_run_is_shown_interrupted_and_can_be_removed(outputs_root):
    """SIGKILL cannot be caught: status.json still says running, but its owner is gone; `runs status`,
    `runs list` and `mmm run` say interrupted, and `runs rm` deletes it."""
    folder = outputs_root / "runs" / "killed"
    proc = start_run(SPEC, "killed")
    wait_for_stage(proc, folder, "02_canonicalize")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert read_status(folder)["status"] == "running"  # the file could not be updated ...
    assert (folder / storage.LOCK_FILE).exists()  # ... nor the lock file removed, but the OS dropped the lock

    shown = json.loads(mmm("runs", "status", "killed").stdout)
    assert shown["status"] == "interrupted" and shown["stage"] == "02_canonicalize"
    assert "ended without recording it" in shown["error"] and "--resume" in shown["error"]
    assert shown["stages"]["02_canonicalize"]["status"] == "interrupted"
    listed = {r["run_id"]: r for r in json.loads(mmm("runs", "list").stdout)}
    assert listed["killed"]["status"] == "interrupted"
    again = mmm("run", SPEC, "--run-id", "killed")
    assert again.returncode == 1
    assert_one_line_error(again.stderr, "already exists (status interrupted)", "--resume")
    assert mmm("runs", "rm", "killed", "--yes").returncode == 0
    assert not folder.exists()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_killed_kernel_fails_the_stage_with_how_it_died(outputs_root):
    folder = outputs_root / "runs" / "deadkernel"
    proc = start_run(SPEC, "deadkernel")
    t0 = time.time()
    wait_for_stage(proc, folder, "02_canonicalize")
    # the running stage's kernel, not the next one's (started ahead): it was told to load the stage's module. It
    # was started ahead during 01, possibly within a second of the run's start: children of this run only count.
    deadline = time.monotonic() + 60
    while True:
        mine = [k for k in stage_kernels(proc, t0 - 30) if serves(k, "02_canonicalize", "mmm_lib.canonicalize")]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert mine, "02_canonicalize's kernel not found"
    kernel = mine[0]
    kept = snapshot(folder, KEPT_AFTER_01)
    time.sleep(1.0)
    kernel.send_signal(signal.SIGKILL)
    rc, out, err = finish(proc, timeout=120)

    assert rc == 1, err
    assert_one_line_error(err, "stage 02_canonicalize failed", "kernel", "killed by SIGKILL", "--resume")
    st = read_status(folder)
    assert st["status"] == "failed" and st["stage"] == "02_canonicalize"
    assert "killed by SIGKILL" in st["error"] and "DeadKernelError" not in st["error"]
    assert_lock_released(folder)
    assert snapshot(folder, KEPT_AFTER_01) == kept


def test_a_dead_owner_or_a_reused_pid_means_interrupted_and_its_lock_is_broken(outputs_root):
    """status.json says running; its owner's pid is gone, or now belongs to another program (another start time)."""
    from mmm_lib import runs

    folder = outputs_root / "runs" / "stale"
    folder.mkdir(parents=True)
    st = status_mod.new_status("stale")
    st.update(status="running", stage="03_features")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # the pid is alive, but it is another program started later than the recorded owner
        st["owner"] = {"pid": other.pid, "started": psutil.Process(other.pid).create_time() - 3600, "host": None}
        storage.write_json(folder / "status.json", st)
        (folder / storage.LOCK_FILE).write_text(str(other.pid))  # a lock file naming a live pid, no OS lock
        assert runs.run_status("stale")["status"] == "interrupted"
        assert [r["status"] for r in runs.list_runs()] == ["interrupted"]
        from mmm_lib.runner import _Lock

        with _Lock(folder):  # broken, not refused
            assert (folder / storage.LOCK_FILE).read_text() == str(os.getpid())
    finally:
        other.kill()
        other.wait()
    st["owner"] = {"pid": other.pid, "started": None, "host": None}  # the pid is gone now
    storage.write_json(folder / "status.json", st)
    assert runs.run_status("stale")["status"] == "interrupted"
    st["owner"] = storage.owner_record()  # this live process: the truth is "running"
    storage.write_json(folder / "status.json", st)
    assert runs.run_status("stale")["status"] == "running"
    assert runs.remove_run("stale") == {"deleted": "stale"}  # no lock held


# --------------------------------------------------------------------------- full disk, read-only folder


def _mount(*args: str) -> None:
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here ({r.stderr.strip() or r.returncode}): needs root with CAP_SYS_ADMIN")


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """An outputs root on a 48 MiB tmpfs (room for the compile-free early stages), unmounted afterwards."""
    root = tmp_path / "small"
    root.mkdir()
    _mount("-t", "tmpfs", "-o", "size=48m", "tmpfs", str(root))
    monkeypatch.setenv("MMM_OUTPUTS", str(root))
    yield root
    subprocess.run(["umount", "-l", str(root)], check=False)


def _fill(root: Path) -> Path:
    """Fill the filesystem to the last byte."""
    filler = root / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_full_disk_fails_the_run_with_one_line_and_keeps_status_json_intact(small_disk):
    folder = small_disk / "runs" / "full"
    proc = start_run(SPEC, "full")
    wait_for_stage(proc, folder, "02_canonicalize")
    kept = snapshot(folder, KEPT_AFTER_01)
    status_before = (folder / "status.json").read_bytes()
    _fill(small_disk)
    rc, out, err = finish(proc, timeout=120)

    assert rc == 1, err
    line = assert_one_line_error(err, "no space left on the disk", "free some space", "--resume")
    assert "Errno" not in line
    st = read_status(folder)  # parseable: written whole or not at all
    assert st, (folder / "status.json").read_bytes()[:200]
    if st["status"] == "failed":  # the failure could be recorded
        assert st["stage"] == "02_canonicalize" and "no space left" in st["error"]
    else:  # no room even for that: the previous status.json is intact and the truth is shown
        assert (folder / "status.json").read_bytes() == status_before
        assert json.loads(mmm("runs", "status", "full").stdout)["status"] == "interrupted"
    assert_lock_released(folder)
    assert snapshot(folder, KEPT_AFTER_01) == kept
    assert not list(folder.rglob(storage.TEMP_GLOB))


def test_disk_full_while_writing_status_json_keeps_the_previous_one(tmp_path, monkeypatch):
    """The write of status.json itself hits a full disk (simulated: the temporary cannot be written)."""
    folder = tmp_path / "run"
    st = status_mod.new_status("r")
    status_mod.write_status(folder, st)
    before = (folder / "status.json").read_bytes()

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError) as e:
        status_mod.mark_stage(folder, st, "01_validate", "running")
    assert (folder / "status.json").read_bytes() == before
    assert [p.name for p in folder.iterdir()] == ["status.json"]  # no temporary left
    msg = storage.describe_os_error(e.value, folder)
    assert msg.startswith(f"no space left on the disk holding {folder}") and "MMM_OUTPUTS" in msg


@pytest.mark.timeout(120)
def test_a_read_only_outputs_folder_refuses_the_run_in_one_line(tmp_path, monkeypatch):
    root = tmp_path / "ro"
    (root / "runs" / "old").mkdir(parents=True)
    storage.write_json(root / "runs" / "old" / "status.json", {**status_mod.new_status("old"), "status": "completed"})
    _mount("--bind", str(root), str(root))
    try:
        _mount("-o", "remount,bind,ro", str(root))
        monkeypatch.setenv("MMM_OUTPUTS", str(root))
        r = mmm("run", SPEC, "--run-id", "ro_run")
        assert r.returncode == 1, r.stderr
        assert_one_line_error(r.stderr, "cannot start", "Read-only file system", "writable", "MMM_OUTPUTS")
        assert not (root / "runs" / "ro_run").exists()
        listed = mmm("runs", "list")  # reading still works
        assert listed.returncode == 0 and json.loads(listed.stdout)[0]["run_id"] == "old"
        assert json.loads(mmm("runs", "status", "old").stdout)["status"] == "completed"
        r = mmm("datasets", "add", DATA, "--id", "d")
        assert r.returncode == 1 and "Traceback" not in r.stderr and "Read-only file system" in r.stderr, r.stderr
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


# --------------------------------------------------------------------------- resume re-verifies what it keeps


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_resume_reruns_from_a_damaged_artifact_renders_missing_reports_and_clears_temporaries(outputs_root):
    folder = outputs_root / "runs" / "res"
    proc = start_run(SPEC, "res")
    wait_for_stage(proc, folder, "03_features")
    os.kill(proc.pid, signal.SIGTERM)
    assert finish(proc)[0] == 143
    st = read_status(folder)
    assert st["stages"]["02_canonicalize"]["artifacts"]["canonical_data.parquet"] == \
        hashlib.sha256((folder / "canonical_data.parquet").read_bytes()).hexdigest()
    good = (folder / "canonical_data.parquet").read_bytes()
    kept_01 = snapshot(folder, KEPT_AFTER_01)
    (folder / "canonical_data.parquet").write_bytes(good[: len(good) // 2])  # truncated upstream
    (folder / "reports" / "01_validate.html").unlink()  # a report a crash never wrote
    (folder / ".features.parquet.x1y2.tmp").write_bytes(b"half")  # temporaries a killed write left
    (folder / "reports" / ".03_features.html.abc.tmp").write_text("half")

    proc = start_run(SPEC, "res", "--resume")
    wait_for_stage(proc, folder, "03_features")
    os.kill(proc.pid, signal.SIGINT)
    rc, out, err = finish(proc)
    assert rc == 130
    assert "02_canonicalize: canonical_data.parquet changed since the stage completed" in err, err
    assert "rerunning from 02_canonicalize" in err
    assert "01_validate: report missing; rendering it again" in err
    assert "removed 2 temporary file(s)" in err
    assert (folder / "reports" / "01_validate.html").is_file()
    assert (folder / "canonical_data.parquet").read_bytes() == good  # rerun: the same bytes again
    assert snapshot(folder, KEPT_AFTER_01) == kept_01  # 01 was intact: kept, not rerun
    st = read_status(folder)
    assert st["status"] == "interrupted" and st["stage"] == "03_features"
    assert st["stages"]["01_validate"]["artifacts"] == {k: v for k, v in kept_01.items() if k != "run_spec.json"}
    assert not list(folder.rglob(storage.TEMP_GLOB))
    assert_lock_released(folder)


# --------------------------------------------------------------------------- one damaged file, not the whole list


def test_one_unreadable_status_json_does_not_break_runs_list(outputs_root):
    from mmm_lib import runs

    for rid in ("good", "bad", "worse"):
        storage.write_json(outputs_root / "runs" / rid / "status.json", {**status_mod.new_status(rid),
                                                                         "status": "completed"})
    (outputs_root / "runs" / "bad" / "status.json").write_text('{"run_id": "bad", "status": ')
    (outputs_root / "runs" / "worse" / "status.json").write_bytes(b"\xff\xfe[1, 2]")
    rows = {r["run_id"]: r for r in runs.list_runs()}
    assert rows["good"]["status"] == "completed"
    for rid in ("bad", "worse"):
        assert rows[rid]["status"] == "unreadable"
        assert str(outputs_root / "runs" / rid / "status.json") in rows[rid]["error"]
    assert "not valid JSON" in rows["bad"]["error"] and "mmm runs rm bad" in rows["bad"]["error"]
    r = mmm("runs", "list", "--format", "table")
    assert r.returncode == 0 and "unreadable" in r.stdout and "good" in r.stdout, r.stderr
    r = mmm("runs", "status", "bad")
    assert r.returncode == 1
    assert_one_line_error(r.stderr, "status.json", "not valid JSON")


def test_one_unreadable_metadata_json_does_not_break_datasets_list(outputs_root):
    from mmm_lib import datasets

    datasets.add_dataset(DATA, "good")
    (outputs_root / "datasets" / "bad").mkdir()
    (outputs_root / "datasets" / "bad" / "metadata.json").write_text("{not json")
    rows = {r["dataset_id"]: r for r in datasets.list_datasets()}
    assert rows["good"]["n_rows"] > 0 and "unreadable" not in rows["good"]
    assert str(outputs_root / "datasets" / "bad" / "metadata.json") in rows["bad"]["unreadable"]
    assert "--id bad --force" in rows["bad"]["unreadable"]
    r = mmm("datasets", "list", "--format", "table")
    assert r.returncode == 0 and "good" in r.stdout and "bad" in r.stdout, r.stderr

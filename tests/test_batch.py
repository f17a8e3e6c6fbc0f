"""``mmm batch`` (:mod:`mmm_lib.batch`): manifests expand to stable, validated runs; runs fan out on Dask.

Fast tests check the manifest (ids, grid, split, bad keys), the page (escaping) and the refusals without a
cluster. The slow ones share one batch on a 2-worker LocalCluster (processes) of tiny runs: three complete and
match the same runs made with ``mmm run`` byte for byte (ROI, same random_seed), one failing run leaves the
others alone, a worker killed mid-run has its task retried, ``--resume`` skips what finished. One more runs a
batch through a real ``dask scheduler`` + ``dask worker`` started as subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mmm_lib import cli
from mmm_lib.batch import BatchError, ManifestError, execute_batch, open_client, plan_batch
from mmm_lib.batch.execute import check_workers, sweep_running
from mmm_lib.batch.report import render_index

REPO = Path(__file__).resolve().parent.parent
FAST = REPO / "params" / "fast.yaml"
# The baseline model with very short chains: its compiled graph is in the shared cache after the first run.
TINY = {"draws": 20, "tune": 20, "model.level": "brand", "model.transforms": "fixed"}
GOOD = ["s1", "s2", "s3"]


def _manifest(path: Path, name: str, runs: list[dict], **extra) -> Path:
    import yaml

    text = yaml.safe_dump({"name": name, "spec": str(FAST), "set": TINY, "runs": runs, **extra}, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def _good_runs() -> list[dict]:
    return [{"name": n, "set": {"random_seed": i + 1}} for i, n in enumerate(GOOD)]


# ------------------------------------------------------------------------------------------ fast: manifest


def test_grid_and_runs_give_stable_readable_ids(tmp_path):
    m = _manifest(tmp_path / "m.yaml", "g", [{"set": {"random_seed": 3}}],
                  grid={"model.transforms": ["fixed", "learned"], "draws": [30, 40]})
    plan = plan_batch(m)
    ids = [r.run_id for r in plan.runs]
    assert ids == ["g-random_seed3-fixed-draws30", "g-random_seed3-fixed-draws40",
                   "g-random_seed3-learned-draws30", "g-random_seed3-learned-draws40"]
    assert ids == [r.run_id for r in plan_batch(m).runs]  # stable
    assert len({r.spec_hash for r in plan.runs}) == 4
    assert plan.runs[1].spec.draws == 40 and plan.runs[2].spec.model.transforms == "learned"


def test_colliding_suffixes_get_a_hash(tmp_path):
    m = _manifest(tmp_path / "m.yaml", "c", [{"set": {"drivers": ["act_tv", "act_digital"]}},
                                              {"set": {"feature_config.adstock.per_channel": {"act_tv": 0.6}}},
                                              {"set": {"feature_config.adstock.per_channel": {"act_tv": 0.8}}}])
    ids = [r.run_id for r in plan_batch(m).runs]
    assert ids[0] == "c-act_tv.act_digital"
    assert all(re.fullmatch(r"c-per_channel-[0-9a-f]{6}", i) for i in ids[1:]) and ids[1] != ids[2]
    assert ids == [r.run_id for r in plan_batch(m).runs]


def test_bad_key_names_the_run_and_the_key(tmp_path, capsys):
    m = _manifest(tmp_path / "m.yaml", "bad", [{"name": "ok"}, {"name": "typo", "set": {"drawz": 5}}])
    with pytest.raises(ManifestError, match=r"(?s)run bad-typo .*unknown key 'drawz' — did you mean 'draws'"):
        plan_batch(m)
    assert cli.main(["batch", str(m), "--dry-run"]) == 2
    assert "bad-typo" in capsys.readouterr().err


def test_unknown_manifest_key_is_refused(tmp_path):
    (tmp_path / "m.yaml").write_text(f"name: x\nspec: {FAST}\ngrids: {{draws: [1]}}\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="unknown key 'grids'"):
        plan_batch(tmp_path / "m.yaml")


def test_dry_run_lists_the_example(capsys):
    assert cli.main(["batch", str(REPO / "params" / "batch_example.yaml"), "--dry-run"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in out["runs"]] == ["sample_grid-fixed-brand", "sample_grid-learned-brand"]


def test_split_records_the_filter_in_each_runs_spec(tmp_path, outputs_root):
    m = _manifest(tmp_path / "m.yaml", "sp", [], split={"column": "entity_id", "values": ["store_001", "store_003"]})
    plan = plan_batch(m)
    assert [r.run_id for r in plan.runs] == ["sp-store_001", "sp-store_003"]
    assert plan.runs[0].filter == {"column": "entity_id", "value": "store_001"}
    assert "entity_id=store_001" in plan.runs[0].label
    # The run's own spec holds the filter (run_spec.json, the spec hash); every run reads the base spec's file.
    assert plan.runs[1].spec.data_filter == {"entity_id": ["store_003"]}
    assert plan.runs[1].spec.data_path == plan_batch(m).runs[0].spec.data_path
    assert plan.runs[0].spec_hash != plan.runs[1].spec_hash
    assert not (outputs_root / "batches" / "sp" / "data").exists()  # nothing copied


def test_split_without_values_runs_every_value_as_the_filter_compares_them(tmp_path, outputs_root):
    m = _manifest(tmp_path / "m.yaml", "all", [], split={"column": "entity_id"})
    plan = plan_batch(m)
    import pandas as pd

    stores = sorted(pd.read_csv(plan.runs[0].spec.data_path)["entity_id"].unique())
    assert [r.spec.data_filter["entity_id"] for r in plan.runs] == [[s] for s in stores]
    with pytest.raises(ManifestError, match="split.column 'region' is not a column"):
        plan_batch(_manifest(tmp_path / "m2.yaml", "nope", [], split={"column": "region"}))


def test_page_escapes_every_value(tmp_path):
    evil = "<script>alert(1)</script>"
    rec = {"name": "b", "status": "completed", "updated_at": "now", "base_spec": evil, "workers": 1, "scheduler": "tcp://x",
           "cache": "shared", "split": None, "counts": {"completed": 1},
           "runs": [{"run_id": "b-1", "label": evil, "status": "failed", "failed_stage": "01_validate", "error": evil,
                     "diagnostics": {"passed": True}, "interval": 0.9, "index": None, "wall_s": 3.0, "attempts": 1,
                     "roi": [{"channel": evil, "roi": 1.5, "roi_low": 1.0, "roi_high": 2.0}]}]}
    page = render_index(rec)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "data:image/png;base64," in page


class _FakeClient:
    def __init__(self, answers):
        self.answers = answers

    def run(self, fn, *args):
        return self.answers


def test_workers_that_cannot_see_the_outputs_root_are_refused(tmp_path, outputs_root):
    plan = plan_batch(_manifest(tmp_path / "m.yaml", "w", [{"name": "a"}]))
    from mmm_lib.batch.execute import _package_version

    base = {"host": "h2", "pid": 1, "version": _package_version(), "nthreads": 1, "missing": []}
    answers = {"tcp://a:1": {**base, "ok": False, "error": "PermissionError: denied", "path": None},
               "tcp://b:1": {**base, "ok": True, "error": None, "path": "/elsewhere/probe"}}
    with pytest.raises(BatchError) as e:
        check_workers(_FakeClient(answers), plan, outputs_root)
    assert "tcp://a:1" in str(e.value) and "PermissionError" in str(e.value)
    assert "tcp://b:1" in str(e.value) and "cannot see it" in str(e.value)


def test_interrupted_runs_are_not_left_running(tmp_path, outputs_root):
    from mmm_lib import status as status_mod

    plan = plan_batch(_manifest(tmp_path / "m.yaml", "i", [{"name": "a"}]))
    folder = outputs_root / "runs" / "i-a"
    folder.mkdir(parents=True)
    st = status_mod.new_status("i-a")
    status_mod.mark_stage(folder, st, "04_fit", "running")
    assert sweep_running(plan, log=lambda m: None) == ["i-a"]
    st = json.loads((folder / "status.json").read_text())
    assert st["status"] == "failed" and st["stage"] == "04_fit" and "interrupted" in st["error"]


# ------------------------------------------------------------------------------- slow: one shared batch


def _roi(root: Path, run_id: str) -> bytes:
    return (root / "runs" / run_id / "roi_metrics.json").read_bytes()


def _kill_when_running(client, root: Path, run_id: str, killed: dict) -> None:
    """Kill the worker running ``run_id`` (and its stage kernel) once the run is past its first stage."""
    import psutil

    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            st = json.loads((root / "runs" / run_id / "status.json").read_text())
        except (FileNotFoundError, ValueError):
            st = {}
        if st.get("status") == "running" and st.get("stage") in ("02_canonicalize", "03_features", "04_fit"):
            for addr, keys in client.processing().items():
                if any(run_id in str(k) for k in keys):
                    pid = client.run(os.getpid, workers=[addr])[addr]
                    for c in psutil.Process(pid).children(recursive=True):
                        c.kill()
                    os.kill(pid, signal.SIGKILL)
                    killed.update(addr=addr, stage=st["stage"])
                    return
        time.sleep(0.5)


def _dask_sampling() -> tuple:
    import dask
    import distributed  # noqa: F401 - loads distributed's config defaults

    return (dask.config.get("distributed.worker.profile.enabled"), dask.config.get("distributed.admin.system-monitor.interval"))


@pytest.fixture(scope="module")
def shared_batch(tmp_path_factory):
    """Three good runs and one failing run on a 2-worker LocalCluster; the worker running s2 is killed mid-run."""
    root = tmp_path_factory.mktemp("batch_outputs")
    old = os.environ.get("MMM_OUTPUTS")
    os.environ["MMM_OUTPUTS"] = str(root)
    m = _manifest(tmp_path_factory.mktemp("m") / "m.yaml", "t",
                  _good_runs() + [{"name": "bad", "set": {"drivers": ["act_tv", "act_digital", "act_radio", "act_nope"]}}])
    logs: list[str] = []
    before = _dask_sampling()
    try:
        plan = plan_batch(m)
        with open_client(workers=2, chains=2, dashboard_address=":0", log=logs.append) as client:
            quiet = client.run(_dask_sampling)  # what the embedded workers were started with
            killed: dict = {}
            t = threading.Thread(target=_kill_when_running, args=(client, root, "t-s2", killed), daemon=True)
            t.start()
            rec = execute_batch(plan, client=client, log=logs.append)
            t.join(timeout=5)
            resumed = execute_batch(plan, client=client, resume=True, log=logs.append)
        yield {"root": root, "plan": plan, "rec": rec, "resumed": resumed, "killed": killed, "logs": logs, "manifest": m,
               "quiet": quiet, "sampling_before": before, "sampling_after": _dask_sampling()}
    finally:
        if old is None:
            os.environ.pop("MMM_OUTPUTS", None)
        else:
            os.environ["MMM_OUTPUTS"] = old


@pytest.fixture
def batch(shared_batch, monkeypatch):
    monkeypatch.setenv("MMM_OUTPUTS", str(shared_batch["root"]))
    return shared_batch


def _runs(rec: dict) -> dict[str, dict]:
    return {r["run_id"]: r for r in rec["runs"]}


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_embedded_workers_run_without_dasks_profiler(batch):
    """Dask's 100-per-second stack sampling and 0.5 s system monitor cost a run a tenth of its time (README)."""
    assert len(batch["quiet"]) == 2 and set(batch["quiet"].values()) == {(False, "5s")}
    assert batch["sampling_after"] == batch["sampling_before"]  # this process's own config is left as it was


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_good_runs_complete_and_the_failing_one_is_isolated(batch):
    runs = _runs(batch["rec"])
    for n in GOOD:
        assert runs[f"t-{n}"]["status"] == "completed", runs[f"t-{n}"]
        assert runs[f"t-{n}"]["roi"] and runs[f"t-{n}"]["diagnostics"] is not None
    bad = runs["t-bad"]
    assert bad["status"] == "failed" and bad["failed_stage"] == "01_validate"
    assert "act_nope" in bad["error"]
    assert batch["rec"]["status"] == "completed_with_failures"
    saved = json.loads((batch["root"] / "batches" / "t" / "batch.json").read_text())
    assert {r["run_id"]: r["status"] for r in saved["runs"]}["t-bad"] == "failed"
    page = (batch["root"] / "batches" / "t" / "index.html").read_text()
    assert "data:image/png;base64," in page and 'href="../../runs/t-s1/index.html"' in page
    assert not any(json.loads((batch["root"] / "runs" / r / "status.json").read_text())["status"] == "running"
                   for r in runs)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_worker_task_is_retried_and_resumed(batch):
    assert batch["killed"], "the run never reached a stage to kill it in"
    s2 = _runs(batch["rec"])["t-s2"]
    assert s2["status"] == "completed" and s2["attempts"] == 2 and s2["action"] == "resumed"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_resume_skips_finished_runs(batch):
    runs = _runs(batch["resumed"])
    for n in GOOD:
        assert runs[f"t-{n}"]["reused"] and runs[f"t-{n}"]["status"] == "completed"
        assert runs[f"t-{n}"]["attempts"] == _runs(batch["rec"])[f"t-{n}"]["attempts"]  # not submitted again
    assert runs["t-bad"]["status"] == "failed" and runs["t-bad"]["attempts"] == 2


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_batch_runs_match_mmm_run_byte_for_byte(batch, capsys):
    root = batch["root"]
    for i, n in enumerate(GOOD):
        args = ["run", str(FAST), "--run-id", f"ref-{n}"]
        for k, v in {**TINY, "random_seed": i + 1}.items():
            args += ["--set", f"{k}={v}"]
        assert cli.main(args) == 0
        assert _roi(root, f"t-{n}") == _roi(root, f"ref-{n}"), n
    capsys.readouterr()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_batch_on_an_existing_scheduler(batch, tmp_path, capsys):
    """`dask scheduler` and `dask worker` as subprocesses on localhost, the batch given the address."""
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "MMM_OUTPUTS": str(batch["root"])}
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                               "--scheduler-file", str(sched_file)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]  # fmt: skip
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.3)
        address = json.loads(sched_file.read_text())["address"]
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                       "--nworkers", "1", "--dashboard-address", ":0"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        m = _manifest(tmp_path / "remote.yaml", "remote", [{"name": "s1", "set": {"random_seed": 1}}])
        rc = cli.main(["batch", str(m), "--scheduler", address])
        captured = capsys.readouterr()
        assert rc == 0, captured.err
        assert address in captured.err and "dashboard:" in captured.err
        out = json.loads(captured.out)
        assert out["runs"][0]["status"] == "completed"
        assert _roi(batch["root"], "remote-s1") == _roi(batch["root"], "t-s1")
        assert cli.main(["batch", "status", "remote"]) == 0
        assert json.loads(capsys.readouterr().out)["runs"][0]["status"] == "completed"
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()

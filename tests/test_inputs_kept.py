"""A run's inputs are never lost: a run on a dataset keeps the dataset's file (``source.<ext>``) with its SHA-256,
a dataset that runs use is neither replaced nor removed without saying so, and a resumed run checks its kept input.

Runs are stopped in 02_canonicalize (SIGTERM) once 01_validate has kept the input, so nothing is fitted.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import pytest
from test_run_faults import DATA, SPEC, assert_one_line_error, finish, mmm, read_status, start_run, wait_for_stage

from mmm_lib import datasets, storage


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dataset_spec(tmp_path: Path, dataset_id: str) -> Path:
    """params/fast.yaml on a dataset instead of a file."""
    text = SPEC.read_text().replace("data_path: ../data/mmm_sample_small.csv", f"data_path: null\ndataset_id: {dataset_id}")
    spec = tmp_path / "on_dataset.yaml"
    spec.write_text(text)
    return spec


def _run_to_02(spec: Path, run_id: str, folder: Path, *extra: str) -> str:
    proc = start_run(spec, run_id, *extra)
    wait_for_stage(proc, folder, "02_canonicalize")
    os.kill(proc.pid, signal.SIGTERM)
    rc, _, err = finish(proc)
    assert rc == 143, err
    return err


@pytest.fixture(scope="module")
def dataset_run(tmp_path_factory):
    """A dataset 'brand' and a run 'r1' on it stopped after 01_validate (one kernel start for the module)."""
    root = tmp_path_factory.mktemp("outputs")
    env_before = os.environ.get("MMM_OUTPUTS")
    os.environ["MMM_OUTPUTS"] = str(root)
    try:
        assert mmm("datasets", "add", DATA, "--id", "brand").returncode == 0
        spec = _dataset_spec(tmp_path_factory.mktemp("spec"), "brand")
        _run_to_02(spec, "r1", root / "runs" / "r1")
    finally:
        if env_before is None:
            os.environ.pop("MMM_OUTPUTS", None)
        else:
            os.environ["MMM_OUTPUTS"] = env_before
    return root, spec


@pytest.fixture
def outputs(dataset_run, tmp_path, monkeypatch):
    """A fresh copy of the module's outputs root for each test (they change it)."""
    import shutil

    root = tmp_path / "outputs_copy"
    shutil.copytree(dataset_run[0], root)
    monkeypatch.setenv("MMM_OUTPUTS", str(root))
    return root, dataset_run[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_dataset_run_keeps_the_dataset_file_with_its_checksum(outputs):
    root, _ = outputs
    run, ds = root / "runs" / "r1", root / "datasets" / "brand"
    meta = json.loads((ds / "metadata.json").read_text())
    kept = run / meta["source_file"]
    assert kept.read_bytes() == DATA.read_bytes() == (ds / meta["source_file"]).read_bytes()
    source = json.loads((run / "validation_summary.json").read_text())["source"]
    assert source == {"dataset_id": "brand", "file": "source.csv", "sha256": _sha(DATA), "bytes": len(DATA.read_bytes())}
    st = read_status(run)
    assert st["stages"]["01_validate"]["artifacts"]["source.csv"] == _sha(DATA)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_add_force_over_a_used_dataset_is_refused_naming_the_runs(outputs, tmp_path):
    root, _ = outputs
    ds = root / "datasets" / "brand"
    before = {p.name: p.read_bytes() for p in ds.iterdir()}
    run_before = {p.name: p.read_bytes() for p in (root / "runs" / "r1").iterdir() if p.is_file()}
    other = tmp_path / "other.csv"
    other.write_bytes(DATA.read_bytes().replace(b"\n", b"\r\n"))  # another file, same table

    r = mmm("datasets", "add", other, "--id", "brand", "--force")
    assert r.returncode == 1
    assert_one_line_error(r.stderr, "dataset 'brand' is used by runs ['r1']", "another --id", "--even-if-used")
    assert {p.name: p.read_bytes() for p in ds.iterdir()} == before  # not one byte changed

    r = mmm("datasets", "add", other, "--id", "brand", "--force", "--even-if-used")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sha256"] == _sha(other)
    # the run still holds what it was fitted on
    assert {p.name: p.read_bytes() for p in (root / "runs" / "r1").iterdir() if p.is_file()} == run_before


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_rm_force_leaves_every_run_its_input_also_runs_made_before_runs_kept_one(outputs):
    root, _ = outputs
    run = root / "runs" / "r1"
    (run / "source.csv").unlink()  # as a run made before runs kept a copy of a dataset's file
    r = mmm("datasets", "rm", "brand")
    assert r.returncode == 1
    assert_one_line_error(r.stderr, "used by runs ['r1']", "--force")
    r = mmm("datasets", "rm", "brand", "--force")
    assert r.returncode == 0, r.stderr
    assert not (root / "datasets" / "brand").exists()
    assert (run / "source.csv").read_bytes() == DATA.read_bytes()
    assert _sha(run / "source.csv") == json.loads((run / "validation_summary.json").read_text())["source"]["sha256"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_resume_refuses_when_the_kept_input_is_damaged_and_the_dataset_changed(outputs, tmp_path):
    root, spec = outputs
    run = root / "runs" / "r1"
    other = tmp_path / "other.csv"
    other.write_bytes(DATA.read_bytes().replace(b"\n", b"\r\n"))
    assert mmm("datasets", "add", other, "--id", "brand", "--force", "--even-if-used").returncode == 0
    (run / "source.csv").write_bytes(b"entity_id,period_start\n")  # the kept copy damaged
    kept = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != "status.json"}

    r = mmm("run", spec, "--run-id", "r1", "--resume")
    assert r.returncode == 1, r.stderr
    assert_one_line_error(r.stderr, "cannot be resumed", "source.csv is damaged", "dataset 'brand' is no longer",
                          "--restart")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != "status.json"} == kept
    assert read_status(run)["status"] == "interrupted"
    assert not storage.lock_held(run)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_resume_reruns_01_when_the_kept_input_is_damaged_but_the_data_is_the_same(outputs):
    root, spec = outputs
    run = root / "runs" / "r1"
    (run / "source.csv").write_bytes(DATA.read_bytes()[:100])  # truncated
    err = _run_to_02(spec, "r1", run, "--resume")
    assert "01_validate: source.csv changed since the stage completed" in err, err
    assert "rerunning from 01_validate" in err
    assert (run / "source.csv").read_bytes() == DATA.read_bytes()


def test_add_dataset_reads_the_file_once_within_the_size_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("MMM_MAX_INPUT_BYTES", "1000")
    with pytest.raises(ValueError, match="MMM_MAX_INPUT_BYTES"):
        datasets.add_dataset(DATA, "big")
    assert not (storage.outputs_root() / "datasets" / "big").exists()
    monkeypatch.delenv("MMM_MAX_INPUT_BYTES")

    def unbounded(self):
        raise AssertionError(f"read_bytes({self}): the file must be read once, through read_input")

    with monkeypatch.context() as m:
        m.setattr(Path, "read_bytes", unbounded)
        meta = datasets.add_dataset(DATA, "small")
    assert meta["sha256"] == _sha(DATA) and meta["bytes"] == len(DATA.read_bytes())
    assert (storage.outputs_root() / "datasets" / "small" / "source.csv").read_bytes() == DATA.read_bytes()

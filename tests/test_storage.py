import json
import threading

import numpy as np
import pandas as pd
import pytest

from mmm_lib import storage


@pytest.mark.parametrize("bad", ["../x", "a/b", "/abs", "..", "a\\b", "", "x\n", ".hidden", "a" * 200, "a..b"])
def test_ids_that_could_escape_are_refused(bad):
    with pytest.raises(ValueError, match="not allowed"):
        storage.run_dir(bad)
    with pytest.raises(ValueError, match="not allowed"):
        storage.dataset_dir(bad)


def test_outputs_root_follows_env(outputs_root):
    assert storage.outputs_root() == outputs_root
    assert storage.run_dir("r1") == outputs_root / "runs" / "r1"


def test_an_outputs_root_passed_in_holds_for_its_own_thread_only(outputs_root, tmp_path):
    """Two runs on one worker, each given its own root: neither sees the other's, the environment is untouched."""
    import os

    seen, barrier = {}, threading.Barrier(2)

    def work(name):
        with storage.using_outputs(tmp_path / name) as root:
            barrier.wait()  # both roots are set at once
            seen[name] = (root, storage.run_dir("r"), storage.outputs_root())

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for n in ("a", "b"):
        assert seen[n] == (tmp_path / n, tmp_path / n / "runs" / "r", tmp_path / n)
    assert storage.outputs_root() == outputs_root and os.environ["MMM_OUTPUTS"] == str(outputs_root)
    with storage.using_outputs(None) as root:  # None: unchanged
        assert root == outputs_root


def test_json_is_atomic_and_nan_safe(tmp_path):
    tmp_path = tmp_path / "j"
    p = tmp_path / "a.json"
    storage.write_json(p, {"x": np.float64(1.5), "n": float("nan"), "i": np.int64(3), "arr": np.arange(2)})
    assert json.loads(p.read_text()) == {"x": 1.5, "n": None, "i": 3, "arr": [0, 1]}
    assert [f.name for f in tmp_path.iterdir()] == ["a.json"]  # no temp files left


def test_failed_write_leaves_previous_artifact_intact(tmp_path):
    tmp_path = tmp_path / "w"
    p = tmp_path / "t.parquet"
    storage.write_parquet(p, pd.DataFrame({"a": [1, 2]}))

    class Boom:
        def to_parquet(self, *a, **k):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        storage.write_parquet(p, Boom())
    assert storage.read_parquet(p)["a"].tolist() == [1, 2]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["t.parquet"]


def test_concurrent_writers_never_expose_partial_json(tmp_path):
    p = tmp_path / "c.json"
    big = {"v": list(range(20000))}
    storage.write_json(p, big)
    errors = []

    def reader():
        for _ in range(200):
            try:
                assert json.loads(p.read_text()) == big
            except Exception as e:  # noqa: BLE001
                errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    for _ in range(50):
        storage.write_json(p, big)
    t.join()
    assert not errors


def test_missing_artifact_names_stage(tmp_path):
    run = storage.Run(run_id="r", dir=tmp_path, spec=None)
    with pytest.raises(storage.ArtifactMissing, match="features.parquet.*run 03_features"):
        run.read_parquet("features.parquet")

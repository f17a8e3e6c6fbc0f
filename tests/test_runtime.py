"""runtime: the compile settings a run hands its kernels are computed, not set in the process; given ones win."""

from __future__ import annotations

import os
from pathlib import Path

from mmm_lib import runtime
from mmm_lib.runner import stage_env


def test_a_cache_passed_in_replaces_the_one_in_the_environment(tmp_path):
    env = {"PYTENSOR_FLAGS": "base_compiledir=/old/pytensor,floatX=float64", "JAX_COMPILATION_CACHE_DIR": "/old/jax",
           "OMP_NUM_THREADS": "4"}
    given = runtime.compile_settings(tmp_path / "c", env)
    assert given["MMM_CACHE"] == str(tmp_path / "c")
    assert given["PYTENSOR_FLAGS"].split(",") == ["floatX=float64", f"base_compiledir={tmp_path / 'c' / 'pytensor'}",
                                                 "numba__fastmath=False"]
    assert given["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "c" / "jax")
    assert given["OMP_NUM_THREADS"] == "4" and given["MKL_NUM_THREADS"] == "1"  # the user's threads are kept
    kept = runtime.compile_settings(None, env)  # none given: the environment's cache stands
    assert "base_compiledir=/old/pytensor" in kept["PYTENSOR_FLAGS"] and kept["JAX_COMPILATION_CACHE_DIR"] == "/old/jax"


def test_stage_env_carries_outputs_cache_and_cores_without_touching_this_process(tmp_path, monkeypatch):
    before = dict(os.environ)
    env = stage_env(tmp_path / "out", tmp_path / "cache", cores=3)
    assert env["MMM_OUTPUTS"] == str(tmp_path / "out") and env[runtime.CORES_ENV] == "3"
    assert env["MMM_CACHE"] == str(tmp_path / "cache")
    assert dict(os.environ) == before
    monkeypatch.setenv(runtime.CORES_ENV, "1")  # what a kernel of that run sees
    assert runtime.usable_cores() == 1
    monkeypatch.setenv(runtime.CORES_ENV, "999")
    assert runtime.usable_cores() == runtime.machine_cores()
    assert Path(runtime.compile_settings()["MMM_CACHE"]).is_absolute()

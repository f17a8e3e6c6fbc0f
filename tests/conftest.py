"""Shared test set-up: every test writes runs and datasets under a temporary outputs root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def outputs_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "outputs"
    root.mkdir()
    monkeypatch.setenv("MMM_OUTPUTS", str(root))
    # A developer's own MLflow server must not receive the test runs (tests/test_tracking.py sets its own).
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return root


def pytest_configure(config):
    # One compile cache for the whole test session (and later sessions on the same machine).
    os.environ.setdefault("MMM_CACHE", str(REPO / ".cache"))
    # Runs keep no kernel server for later runs (each test's own outputs root would leave one behind for 15 minutes);
    # tests/test_kernel_keeper.py turns it on, in a folder of its own.
    os.environ["MMM_KEEP_KERNELS"] = "0"

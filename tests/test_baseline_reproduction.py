"""The baseline model (fixed transforms, brand level) reproduces the suite's earlier answers bit for bit.

``tests/reference/baseline_*.json`` were written by the suite before the model moved into
``mmm_lib.model`` (the run of ``params/example.yaml`` as it then was, now ``params/baseline.yaml``).
The same spec and seed must give byte-identical JSON: the model object writes the same graph and the
contributions evaluate the same arithmetic.

Byte for byte also depends on the BLAS kernels: OpenBLAS picks its kernels by CPU, and the same code gave other
last digits (other draws) on an AMD EPYC than on the Intel machine the references were first written on. The run
therefore happens in a child process with ``OPENBLAS_CORETYPE=Haswell`` (AVX2 kernels, which any x86-64 CPU of
the last decade runs), and the references were rewritten that way from the code as it was before the numpyro
and report changes of 2026-12-02 (commit ``acb153e``): ``python tests/test_baseline_reproduction.py OUT_DIR``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REF = Path(__file__).parent / "reference"
NAMES = ("posterior_summary", "roi_metrics", "contribution_summary")
BLAS_ENV = {"OPENBLAS_CORETYPE": "Haswell"}


def _dump(obj: object) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False)


def _run_baseline() -> dict:
    """The baseline spec run in this process with PyMC's NUTS: the three results compared with the references."""
    from mmm_lib.pipeline import run_in_process
    from mmm_lib.raw_io import load_raw
    from mmm_lib.spec import load_spec
    from mmm_lib.storage import repo_root

    # The references were sampled with PyMC's NUTS; `auto` picks numpyro for this model (README "Performance"),
    # whose draws differ: the sampler is pinned so the test keeps asking whether the model and arithmetic changed.
    spec = load_spec(repo_root() / "params" / "baseline.yaml", ["nuts_sampler=pymc"])
    assert spec.model.is_baseline and spec.sampler == "pymc"
    res = run_in_process(load_raw(spec.data_path, spec), spec)
    got = {"posterior_summary": res.fit["summary"], "roi_metrics": res.contributions.roi,
           "contribution_summary": res.contributions.summary}  # fmt: skip
    return {k: json.loads(json.dumps(v)) for k, v in got.items()}


@pytest.mark.slow
def test_baseline_spec_reproduces_earlier_results_byte_for_byte(tmp_path):
    p = subprocess.run([sys.executable, __file__, str(tmp_path)], env={**os.environ, **BLAS_ENV},
                       capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    for name in NAMES:
        expected = json.loads((REF / f"baseline_{name}.json").read_text())
        got = json.loads((tmp_path / f"baseline_{name}.json").read_text())
        assert _dump(got) == _dump(expected), f"{name} differs from the reference"


if __name__ == "__main__":  # the child process: write the three results to the folder given
    if os.environ.get("OPENBLAS_CORETYPE") != BLAS_ENV["OPENBLAS_CORETYPE"]:
        sys.exit(f"run with OPENBLAS_CORETYPE={BLAS_ENV['OPENBLAS_CORETYPE']} (the kernels the references were made with)")
    out = Path(sys.argv[1])
    for name, value in _run_baseline().items():
        (out / f"baseline_{name}.json").write_text(_dump(value) + "\n", encoding="utf-8")

"""Stage kernels started ahead (mmm_lib.kernels): the next stage's kernel boots and imports its notebook's modules
while the current stage runs; each stage still gets a kernel no other stage used, and none outlives the run."""

from __future__ import annotations

import importlib.util
import io

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
        "from mmm_lib.plots import note_figure\nimport mmm_lib.tables\nnote_figure('x')",
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
    assert any("image/png" in o.get("data", {}) for o in executed.cells[1].outputs), executed.cells[1].outputs
    assert not _kernel_children(), "a stage kernel outlived close()"


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

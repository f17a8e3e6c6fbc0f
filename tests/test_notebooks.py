"""The committed notebooks: stripped of outputs, with a parameters cell that only locates spec and run."""

import json
from pathlib import Path

import papermill
import pytest

from mmm_lib.status import ALL_STAGES

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"


# Parameters beyond spec_path and run_id: what a CLI command passes to an optional stage (`mmm optimize`).
EXTRA_PARAMETERS = {"07_optimize": {"optimize"}}


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_notebook_is_committed_clean_with_two_parameters(stage):
    path = NB_DIR / f"{stage}.ipynb"
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and not c.get("execution_count") for c in code), f"{path} has outputs"
    # nbformat 4.5 cell ids: without them every run prints a MissingIDFieldWarning
    assert all(c.get("id") for c in nb["cells"]) and len({c["id"] for c in nb["cells"]}) == len(nb["cells"])
    assert nb["cells"][0]["cell_type"] == "markdown" and "".join(nb["cells"][0]["source"]).startswith("# ")
    params = papermill.inspect_notebook(str(path))
    assert set(params) == {"spec_path", "run_id"} | EXTRA_PARAMETERS.get(stage, set())
    assert params["spec_path"]["default"].strip("'\"") == "../params/example.yaml"


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_notebooks_are_thin(stage):
    """Logic lives in mmm_lib: no function definitions, loops or direct plotting in notebooks."""
    nb = json.loads((NB_DIR / f"{stage}.ipynb").read_text())
    src = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    for bad in ("def ", "for ", "while ", "plt.", "import matplotlib"):
        assert bad not in src, f"{stage}: notebook code contains {bad!r}; move it into mmm_lib"


def test_stages_other_than_fit_do_not_import_pymc():
    """PyMC costs start-up time; only 04_fit may load it (06 reuses model_pymc's numpy helpers)."""
    import subprocess
    import sys

    mods = ["validation", "canonicalize", "features", "diagnostics", "contributions", "plots.data",
            "plots.features", "plots.fit", "plots.contributions", "storage", "report", "runner"]
    code = "; ".join(f"import mmm_lib.{m}" for m in mods) + "; import sys; print(sorted(" \
        "m for m in ('pymc', 'pytensor', 'nutpie') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

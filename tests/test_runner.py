"""End to end: papermill executes the real six notebooks on a small spec; every artifact is checked.

Also: a stage failure is recorded (stage, error, traceback) with earlier artifacts intact, ``--resume``
continues from the failed stage, and the same spec + seed reproduces the posterior and ROI exactly.
"""

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from mmm_lib import runner
from mmm_lib.runner import RunError, run_pipeline

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "params" / "fast.yaml"
SMALL = ["draws=150", "tune=150"]
HOLDOUT = ["windows.holdout_periods=8"]  # the end-to-end run also exercises the chronological holdout
OPTIMIZE = ["optimize.horizon_periods=8"]  # ... and 07_optimize (a spec with an optimize: section)

RUN_ARTIFACTS = [
    "run_spec.json", "status.json", "raw_data.parquet", "validation_summary.json", "canonical_data.parquet",
    "column_info.json", "features.parquet", "feature_metadata.json", "feature_scaler.json", "posterior.nc",
    "posterior_summary.json", "model_metadata.json", "diagnostics.json", "contributions.parquet",
    "contribution_summary.json", "roi_metrics.json", "fitted.parquet", "fit_metrics.json", "index.html",
    "optimization.json", "response_curves.parquet", "scenario.parquet",
]


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs = 0
        self.text = []
        self.external = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img" and a.get("src", "").startswith("data:image/png;base64"):
            self.imgs += 1
        for key in ("src", "href"):
            if tag in ("script", "img", "link", "iframe") and (a.get(key) or "").startswith(("http:", "https:", "//")):
                self.external.append(a[key])

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def completed_run(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("outputs")
    old = os.environ.get("MMM_OUTPUTS")
    os.environ["MMM_OUTPUTS"] = str(root)
    try:
        res = run_pipeline(SPEC, "e2e", SMALL + HOLDOUT + OPTIMIZE, log=lambda m: None)
    finally:
        if old is None:
            os.environ.pop("MMM_OUTPUTS", None)
        else:
            os.environ["MMM_OUTPUTS"] = old
    return res, root


@pytest.mark.slow
def test_six_notebooks_produce_every_artifact_and_report(completed_run):
    res, _ = completed_run
    assert res.status == "completed", res.error
    for name in RUN_ARTIFACTS:
        assert (res.run_dir / name).is_file(), name
    status = json.loads((res.run_dir / "status.json").read_text())
    assert status["status"] == "completed"
    assert all(s["status"] == "completed" and s["duration_s"] > 0 for s in status["stages"].values())
    assert list(status["stages"]) == [*runner.STAGES, "07_optimize"]
    for stage in status["stages"]:
        nb = nbformat.read(res.run_dir / "notebooks" / f"{stage}.ipynb", as_version=4)
        assert nb.metadata.papermill.exception is None or nb.metadata.papermill.exception is False
        html = (res.run_dir / "reports" / f"{stage}.html").read_text()
        p = _Tags()
        p.feed(html)
        assert "open_run(" not in "".join(p.text), f"{stage}: code shown in the stakeholder report"
        if stage != "01_validate":
            assert p.imgs >= 1, f"{stage}: no embedded figure"
        assert not p.external, f"{stage}: report loads {p.external}; it must open offline"
        assert "open_run" in (res.run_dir / "reports" / f"{stage}_code.html").read_text()
    roi = json.loads((res.run_dir / "roi_metrics.json").read_text())
    assert roi["interval"] == 0.9
    keys = {"channel", "spend_col", "spend", "contribution", "contribution_low", "contribution_high", "roi",
            "roi_low", "roi_high"}
    assert [c["channel"] for c in roi["channels"]] == ["act_tv", "act_digital", "act_radio"]
    for c in roi["channels"]:
        assert keys <= set(c)
        assert c["roi_low"] <= c["roi"] <= c["roi_high"]
    contrib = pd.read_parquet(res.run_dir / "contributions.parquet")
    fitted = pd.read_parquet(res.run_dir / "fitted.parquet")
    # fast.yaml is entity level: every store's rows plus "brand" rows that are their sums
    stores = sorted(set(fitted["entity_id"]) - {"brand"})
    assert len(stores) == 5 and [e["entity_id"] for e in roi["entities"]] == stores
    # 8 held-out periods per store and for the brand: predicted, scored in fit_metrics, not in the decomposition
    assert (fitted["window"] == "holdout").sum() == 8 * 6
    fm = json.loads((res.run_dir / "fit_metrics.json").read_text())
    assert fm["holdout"]["periods"] == 8 and fm["holdout"]["entity"]["n_obs"] == 8 * 5
    assert 0 <= fm["holdout"]["brand"]["coverage_90"] <= 1 and fm["holdout"]["brand"]["crps"] > 0
    fitted = fitted[fitted["window"] == "estimation"]
    brand_fit = fitted[fitted["entity_id"] == "brand"].set_index("period_start").sort_index()
    brand_contrib = contrib[contrib["entity_id"] == "brand"]
    total = brand_contrib.groupby("period_start")["mean"].sum().sort_index()
    assert total.to_numpy() == pytest.approx(brand_fit["fitted"].to_numpy(), rel=1e-6)
    store_sum = fitted[fitted["entity_id"] != "brand"].groupby("period_start")[["actual", "fitted"]].sum().sort_index()
    assert store_sum["actual"].to_numpy() == pytest.approx(brand_fit["actual"].to_numpy(), rel=1e-9)
    assert store_sum["fitted"].to_numpy() == pytest.approx(brand_fit["fitted"].to_numpy(), rel=1e-9)
    parts = contrib[contrib["entity_id"] != "brand"].groupby(["period_start", "component"])["mean"].sum()
    whole = brand_contrib.set_index(["period_start", "component"])["mean"]
    assert parts.sort_index().to_numpy() == pytest.approx(whole.sort_index().to_numpy(), rel=1e-9)


@pytest.mark.slow
def test_failure_is_recorded_and_resume_continues_and_reproduces(completed_run, tmp_path, monkeypatch):
    first, _ = completed_run
    nbdir = tmp_path / "nbs"
    shutil.copytree(REPO / "notebooks", nbdir)
    nb = nbformat.read(nbdir / "03_features.ipynb", as_version=4)
    nb.cells.insert(3, nbformat.v4.new_code_cell("raise RuntimeError('injected failure in features')"))
    nbformat.write(nb, nbdir / "03_features.ipynb")
    monkeypatch.setattr(runner, "notebooks_dir", lambda: nbdir)

    res = run_pipeline(SPEC, "resumable", SMALL + HOLDOUT, log=lambda m: None)
    assert res.status == "failed" and res.failed_stage == "03_features"
    assert "injected failure in features" in res.error
    status = json.loads((res.run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["stage"] == "03_features"
    assert "injected failure" in status["error"] and "RuntimeError" in status["traceback"]
    assert (res.run_dir / "canonical_data.parquet").is_file()  # earlier artifacts intact
    assert not (res.run_dir / "features.parquet").exists()  # nothing that looks complete
    assert "injected failure in features" in (res.run_dir / "index.html").read_text()

    with pytest.raises(RunError, match="already exists.*--resume"):
        run_pipeline(SPEC, "resumable", SMALL + HOLDOUT, log=lambda m: None)
    with pytest.raises(RunError, match="different spec"):
        run_pipeline(SPEC, "resumable", ["draws=151", "tune=150"], resume=True, log=lambda m: None)

    monkeypatch.setattr(runner, "notebooks_dir", lambda: REPO / "notebooks")
    lines = []
    res2 = run_pipeline(SPEC, "resumable", SMALL + HOLDOUT, resume=True, log=lines.append)
    assert res2.status == "completed", res2.error
    assert any("Canonicalize" in ln and "resumed" in ln for ln in lines)
    # Same spec + seed -> identical posterior summary and ROI.
    for name in ("posterior_summary.json", "roi_metrics.json"):
        assert (res2.run_dir / name).read_text() == (first.run_dir / name).read_text(), name


def test_bad_spec_fails_before_anything_is_created(tmp_path, outputs_root):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data_path: x.csv\ndrivers: [act_tv]\ndraw: 10\n")
    from mmm_lib.spec import SpecError

    with pytest.raises(SpecError, match="did you mean 'draws'"):
        run_pipeline(bad, "never", log=lambda m: None)
    assert not (outputs_root / "runs" / "never").exists()


def test_second_writer_is_refused(outputs_root):
    folder = outputs_root / "runs" / "busy"
    with runner._Lock(folder):  # a live run holds it
        with pytest.raises(RunError, match=rf"'busy' is already running \(lock .*, pid {os.getpid()}\); wait for it"):
            run_pipeline(SPEC, "busy", SMALL, log=lambda m: None)
        assert (folder / ".lock").exists()
    assert not (folder / ".lock").exists()  # `mmm runs rm` reads a missing file as "not running"


def test_lock_left_by_a_killed_run_does_not_block(outputs_root):
    folder = outputs_root / "runs" / "killed"
    folder.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import filelock, sys, time; lock = filelock.FileLock(sys.argv[1]); lock.acquire(); "
         "print('held', flush=True); time.sleep(120)", str(folder / ".lock")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match="already running"):
            runner._Lock(folder).__enter__()
    finally:
        holder.kill()
        holder.wait()
    assert (folder / ".lock").exists()  # the killed run's file is left behind ...
    with runner._Lock(folder):  # ... and does not block the next run
        assert (folder / ".lock").read_text() == str(os.getpid())
    (folder / ".lock").write_text(str(os.getpid()))  # a pid file from the old scheme, pid alive: not a lock either
    with runner._Lock(folder):
        pass


def test_runs_rm_refuses_a_held_lock_but_not_a_file_left_by_a_killed_run(outputs_root):
    from mmm_lib.runs import remove_run

    folder = outputs_root / "runs" / "gone"
    folder.mkdir(parents=True)
    with runner._Lock(folder):
        with pytest.raises(PermissionError, match="'gone' is running"):
            remove_run("gone")
    (folder / ".lock").write_text("12345")  # what a SIGKILLed run leaves: the file, no lock
    assert remove_run("gone") == {"deleted": "gone"}
    assert not folder.exists()


@pytest.mark.slow
def test_mmm_optimize_reruns_07_on_the_fitted_run(completed_run, monkeypatch, capsys, tmp_path):
    """`mmm optimize` on a finished run: new settings without refitting, a scenario kept with the run, and
    the refusals (bad settings exit 2, infeasible bounds exit 1 naming them, the earlier answer kept)."""
    from mmm_lib.cli import main

    res, root = completed_run
    monkeypatch.setenv("MMM_OUTPUTS", str(root))
    posterior = (res.run_dir / "posterior.nc").read_bytes()
    first = json.loads((res.run_dir / "optimization.json").read_text())
    assert first["budget"] == pytest.approx(first["current_budget"]) and first["horizon"]["periods"] == 8
    assert first["recommended"]["spend"] == pytest.approx(first["budget"], rel=1e-8)

    plan = tmp_path / "plan.csv"
    start = first["horizon"]["start"]
    plan.write_text(f"period_start,channel,spend\n{start},TV,5000\n{start},act_radio,2500\n")
    budget = round(first["budget"] * 1.1, 2)
    assert main(["optimize", "e2e", "--budget", str(budget), "--bounds", "act_tv=±10%", "--bounds", "*=±50%",
                 "--scenario", str(plan)]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    opt = json.loads((res.run_dir / "optimization.json").read_text())
    assert out["budget"] == opt["budget"] == pytest.approx(budget)
    tv = next(c for c in opt["channels"] if c["channel"] == "act_tv")
    assert tv["bound"].startswith("±10%") and abs(tv["recommended_spend"] / tv["current_spend"] - 1) <= 0.10 + 1e-6
    assert opt["scenario"]["spend"] == pytest.approx(7500.0) and (res.run_dir / "scenario_plan.csv").read_bytes() == plan.read_bytes()
    assert set(pd.read_parquet(res.run_dir / "scenario.parquet")["plan"]) == {"current", "recommended", "scenario"}
    assert (res.run_dir / "posterior.nc").read_bytes() == posterior  # no refit
    assert "07" in (res.run_dir / "index.html").read_text()

    assert main(["optimize", "e2e", "--bounds", "act_tv=lots"]) == 2
    assert "optimize.bounds.act_tv: 'lots' is not a bound" in capsys.readouterr().err
    assert main(["optimize", "e2e", "--budget", str(first["budget"] * 100)]) == 1
    err = capsys.readouterr().err
    assert "infeasible bounds" in err and "act_tv: ±30% of current" in err and "set a budget between" in err
    assert json.loads((res.run_dir / "optimization.json").read_text()) == opt  # the earlier answer is kept


def test_the_runner_does_not_import_pandas_before_its_first_kernel_starts():
    """`mmm run` starts the first stage's kernel right after its own imports: pandas (0.4–0.5 s here) is imported
    by the kernels that use it, not by the runner on the way to the first stage."""
    code = ("import sys; from mmm_lib import cli, runner; cli.build_parser(); "
            "print('pandas' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

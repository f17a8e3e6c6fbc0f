"""The diagnostics gate: ``diagnostics.gate: stop`` ends a run whose convergence checks failed (exit 3, 06 not
run, status ``stopped``); ``warn`` lets it finish and marks its numbers PROVISIONAL in the CLI headline,
``index.html`` and the 06 report.

One real tiny run (baseline model, 20 draws: R-hat and ESS fail) is shared by the end-to-end tests; the
index and banner rendering are also tested on hand-written JSON, which needs no sampling.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mmm_lib import gate, report, status
from mmm_lib.cli import main
from mmm_lib.spec import SpecError, parse_spec, spec_to_dict
from mmm_lib.storage import write_json

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "params" / "baseline.yaml"
# Far too short: R-hat and ESS fail. PyMC's sampler pinned: which checks and parameters fail depends on the sampler.
TINY = ["--set", "draws=20", "--set", "tune=20", "--set", "nuts_sampler=pymc"]
EVIL = "beta[<script>alert(1)</script>]"


class _Page(HTMLParser):
    """Text, tags and each table row's cells with their classes (parsed, not grepped)."""

    def __init__(self):
        super().__init__()
        self.tags, self.text, self.links, self.rows = [], [], [], []
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "a":
            self.links.append(a.get("href"))
        if tag == "tr":
            self._row = {"class": a.get("class") or "", "cells": []}
        if tag == "td" and self._row is not None:
            self._cell = {"class": a.get("class") or "", "text": ""}

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row["cells"].append(self._cell)
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell["text"] += data

    def stage_row(self, stage: str) -> dict:
        return next(r for r in self.rows if r["cells"] and r["cells"][0]["text"] == stage[:2])


def _parse(html_text: str) -> _Page:
    p = _Page()
    p.feed(html_text)
    return p


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------------- hand-written JSON


def _diagnostics(passed: bool) -> dict:
    ok = {"severity": "info", "code": "DIVERGENCES_OK", "message": "no divergent transitions", "remedy": "",
          "columns": [], "details": {}}
    if passed:
        return {"passed": True, "metrics": {"max_r_hat": 1.001, "min_ess_bulk": 900.0, "divergences": 0},
                "findings": [ok]}
    return {
        "passed": False,
        "metrics": {"max_r_hat": 1.2, "min_ess_bulk": 12.0, "divergences": 0},
        "findings": [
            {"severity": "warning", "code": "ESS_BULK_LOW", "message": f"ESS bulk is not above 400; lowest: {EVIL} 12",
             "remedy": "Increase draws", "columns": [EVIL, "sigma"], "details": {}},
            {"severity": "warning", "code": "RHAT_HIGH", "message": "R-hat is not below 1.01; worst: sigma 1.2",
             "remedy": "Increase tune", "columns": ["sigma", "nu"], "details": {}},
            ok,
            {"severity": "warning", "code": "PARETO_K_HIGH", "message": "3 influential periods", "remedy": "",
             "columns": [], "details": {"check": "model"}},  # a model check: not the gate's business
        ],
    }


def test_verdict_names_failed_checks_and_parameters_and_orders_remedies():
    spec = {"draws": 100, "tune": 200, "chains": 2, "target_accept": 0.9,
            "model": {"transforms": "learned", "level": "entity"}, "diagnostics": {"gate": "stop"}}
    v = gate.verdict(_diagnostics(False), spec)
    assert v.failed and v.stops and v.outcome == "stopped"
    assert v.failed_checks == ["ESS_BULK_LOW", "RHAT_HIGH"]
    assert v.parameters == [EVIL, "sigma", "nu"]  # worst first, no repeats
    assert v.checks_text() == "ESS bulk, R-hat"
    assert EVIL in v.reason and "ESS bulk" in v.reason
    # longer chains, then target_accept, then priors, then a simpler model; values from the spec
    assert [r.split(":")[0].split(" (")[0] for r in v.remedies] == [
        "sample longer", "raise target_accept", "revisit the priors or reparameterise", "simplify the model"]
    assert "--set tune=1000 --set draws=1000 --set chains=4" in v.remedies[0]
    assert "model.transforms: fixed" in v.remedies[3] and "model.level: brand" in v.remedies[3]
    text = v.explain()
    assert text.index("sample longer") < text.index("target_accept") < text.index("priors") < text.index("simplify")

    assert gate.remedies_for(["DIVERGENCES"])[0].startswith("raise target_accept (now 0.9) to 0.95")
    assert gate.remedies_for(["DIVERGENCES_UNAVAILABLE"])[0].startswith("refit with nuts_sampler")
    assert not gate.verdict(_diagnostics(True)).failed and gate.verdict(_diagnostics(True)).outcome == "passed"
    assert gate.verdict(None).outcome == "unknown" and gate.verdict(_diagnostics(False)).outcome == "warned"
    many = gate.GateVerdict(passed=False, parameters=[f"p{i}" for i in range(12)])
    assert many.parameters_text() == "p0, p1, p2, p3, p4, p5, p6, p7 and 4 more"


def test_spec_gate_defaults_to_warn_and_rejects_other_values():
    raw = {"data_path": "x.csv", "drivers": ["act_tv"]}
    assert parse_spec(raw, check_path=False).diagnostics.gate == "warn"
    assert parse_spec({**raw, "diagnostics": {"gate": "stop"}}, check_path=False).diagnostics.gate == "stop"
    with pytest.raises(SpecError, match="diagnostics.gate"):
        parse_spec({**raw, "diagnostics": {"gate": "halt"}}, check_path=False)
    with pytest.raises(SpecError, match="did you mean 'gate'"):
        parse_spec({**raw, "diagnostics": {"gates": "stop"}}, check_path=False)


def test_a_run_spec_written_before_the_gate_existed_still_matches_on_resume():
    from mmm_lib.runner import _same_spec

    spec = parse_spec({"data_path": "/d/x.csv", "drivers": ["act_tv"]}, check_path=False)
    old = spec_to_dict(spec)
    del old["diagnostics"]
    assert _same_spec(old, spec)
    stop = parse_spec({"data_path": "/d/x.csv", "drivers": ["act_tv"], "diagnostics": {"gate": "stop"}},
                      check_path=False)
    assert not _same_spec(old, stop)


def _fake_run(tmp_path: Path, name: str, passed: bool, run_state: str) -> Path:
    run = tmp_path / name
    (run / "reports").mkdir(parents=True)
    st = status.new_status(name)
    stages = status.STAGES if run_state == "completed" else status.STAGES[:5]
    for s in stages:
        status.mark_stage(run, st, s, "running")
        status.mark_stage(run, st, s, "completed", duration_s=1.0)
        (run / "reports" / f"{s}.html").write_text("<html></html>")
    write_json(run / "run_spec.json", {"data_path": "/d/x.csv", "grain": "WEEK", "target_col": "sales",
                                       "drivers": ["act_tv"], "draws": 20, "tune": 20,
                                       "diagnostics": {"gate": "warn" if run_state == "completed" else "stop"}})
    write_json(run / "diagnostics.json", _diagnostics(passed))
    if run_state == "completed":
        status.mark_run(run, st, "completed")
        write_json(run / "fit_metrics.json", {"r2": 0.9, "mape": 3.0})
        write_json(run / "roi_metrics.json", {"interval": 0.9, "channels": [
            {"channel": "act_tv", "spend_col": "spend_tv", "spend": 1000.0, "contribution": 2500.0,
             "contribution_low": 2000.0, "contribution_high": 3000.0, "roi": 2.5, "roi_low": 2.0, "roi_high": 3.0}]})
    else:
        v = gate.verdict(_diagnostics(passed), {"diagnostics": {"gate": "stop"}})
        status.mark_stopped(run, st, "05_diagnose", by="diagnostics.gate", reason=v.reason, skipped=["06_contribute"])
    return run


def test_index_marks_a_provisional_run_amber_and_its_roi_provisional(tmp_path):
    page = _parse(report.write_index(_fake_run(tmp_path, "warned", passed=False, run_state="completed")).read_text())
    assert "script" not in page.tags  # parameter names are data
    text = " ".join(page.text)
    assert "PROVISIONAL: the fit failed its convergence checks" in text and EVIL in text
    row = page.stage_row("05_diagnose")
    assert row["class"] == "attention" and row["cells"][2]["text"] == "checks failed"
    assert row["cells"][2]["class"] == "checks-failed"
    assert "PROVISIONAL" in page.stage_row("06_contribute")["cells"][4]["text"]
    assert "Return on spend PROVISIONAL" in " ".join(t.strip() for t in page.text if t.strip())
    assert "completed (provisional)" in text
    assert "reports/05_diagnose.html" in page.links
    assert text.index("sample longer") < text.index("simplify the model")


def test_index_of_a_stopped_run_says_why_and_that_06_was_skipped(tmp_path):
    page = _parse(report.write_index(_fake_run(tmp_path, "halted", passed=False, run_state="stopped")).read_text())
    text = " ".join(page.text)
    assert "Run stopped: the fit failed its convergence checks" in text
    assert page.stage_row("05_diagnose")["cells"][2]["text"] == "checks failed"
    row6 = page.stage_row("06_contribute")["cells"]
    assert row6[2]["text"] == "skipped" and "not run: stopped by diagnostics.gate" in row6[4]["text"]
    assert "Return on spend" not in text


def test_index_of_a_passing_run_has_no_warning(tmp_path):
    page = _parse(report.write_index(_fake_run(tmp_path, "fine", passed=True, run_state="completed")).read_text())
    text = " ".join(page.text)
    assert "PROVISIONAL" not in text and "checks failed" not in text
    assert page.stage_row("05_diagnose")["cells"][2]["class"] == "completed"


def test_banner_is_text_in_a_terminal_and_a_red_html_display_in_a_report():
    b = gate.diagnostics_banner_for(_diagnostics(False), {"draws": 20, "tune": 20})
    assert b.startswith("WARNING: diagnostics failed") and "provisional" in b
    assert "ESS bulk" in str(b) and "what to try, in order" in str(b)
    page = _parse(b._repr_html_())
    assert "script" not in page.tags and "05_diagnose.html" in page.links
    assert "#cf222e" in b.html and "PROVISIONAL" in " ".join(page.text)
    assert gate.diagnostics_banner_for(_diagnostics(True)) == "diagnostics passed"
    assert gate.diagnostics_banner_for(None).kind == "missing"
    assert gate.report_top_banner(gate.verdict(_diagnostics(True))) == ""


# --------------------------------------------------------------------------------- one real tiny run


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """``gate: stop`` on a 20-draw baseline fit (a real run, stopped after 05); then the same run folder with
    its spec set to ``gate: warn`` is resumed, which runs 06 on that fit (no second fit)."""
    root = tmp_path_factory.mktemp("outputs")
    old = os.environ.get("MMM_OUTPUTS")
    os.environ["MMM_OUTPUTS"] = str(root)
    try:
        stop = _cli(["run", str(BASELINE), "--run-id", "stopped", *TINY, "--set", "diagnostics.gate=stop"])
        again = _cli(["run", str(BASELINE), "--run-id", "stopped", *TINY, "--set", "diagnostics.gate=stop", "--resume"])
        changed = _cli(["run", str(BASELINE), "--run-id", "stopped", *TINY, "--set", "diagnostics.gate=warn",
                        "--resume"])
        warned = root / "runs" / "warned"
        shutil.copytree(root / "runs" / "stopped", warned)
        spec = json.loads((warned / "run_spec.json").read_text())
        spec["diagnostics"]["gate"] = "warn"
        (warned / "run_spec.json").write_text(json.dumps(spec))
        st = json.loads((warned / "status.json").read_text())
        st["run_id"] = "warned"
        (warned / "status.json").write_text(json.dumps(st))
        warn = _cli(["run", str(BASELINE), "--run-id", "warned", *TINY, "--resume"])
    finally:
        if old is None:
            os.environ.pop("MMM_OUTPUTS", None)
        else:
            os.environ["MMM_OUTPUTS"] = old
    return {"root": root, "stop": stop, "again": again, "changed": changed, "warn": warn}


@pytest.mark.slow
def test_gate_stop_exits_3_before_06_and_records_why(gated, monkeypatch, capsys):
    rc, out, err = gated["stop"]
    assert rc == 3, err
    run = gated["root"] / "runs" / "stopped"
    assert json.loads(out)["status"] == "stopped" and json.loads(out)["diagnostics"]["passed"] is False
    assert not (run / "notebooks" / "06_contribute.ipynb").exists() and not (run / "roi_metrics.json").exists()
    assert "06_contribute (contributions, ROI) was not run" in err
    assert "ESS bulk" in err and "beta[act_tv]" in err  # the failed checks and parameters
    assert err.index("1. sample longer") < err.index("2. raise target_accept") < err.index("simplify the model")
    st = json.loads((run / "status.json").read_text())
    assert st["status"] == "stopped" and st["stopped_by"] == "diagnostics.gate" and st["stage"] == "05_diagnose"
    assert "ESS bulk" in st["reason"] and st["gate"]["outcome"] == "stopped"
    assert st["stages"]["05_diagnose"]["status"] == "completed" and st["stages"]["06_contribute"]["status"] == "skipped"

    monkeypatch.setenv("MMM_OUTPUTS", str(gated["root"]))
    assert main(["runs", "list"]) == 0
    listed = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["stopped"]["status"] == "stopped"
    assert main(["runs", "status", "stopped"]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == st["reason"]
    assert main(["run", str(BASELINE), "--run-id", "stopped", *TINY]) == 1
    assert "stopped by diagnostics.gate" in capsys.readouterr().err

    # --resume with the same spec: the same fit, so the gate stops it again; a changed spec is refused.
    assert gated["again"][0] == 3 and "already completed (resumed)" in gated["again"][2]
    assert gated["changed"][0] == 1 and "different spec" in gated["changed"][2]

    page = _parse((run / "index.html").read_text())
    assert "Run stopped: the fit failed its convergence checks" in " ".join(page.text)
    assert page.stage_row("06_contribute")["cells"][2]["text"] == "skipped"


@pytest.mark.slow
def test_gate_warn_finishes_and_says_provisional_everywhere(gated):
    rc, out, err = gated["warn"]
    assert rc == 0, err
    run = gated["root"] / "runs" / "warned"
    res = json.loads(out)
    assert res["status"] == "completed" and res["diagnostics"]["outcome"] == "warned"
    roi_lines = [ln for ln in err.splitlines() if ln.strip().startswith("ROI ")]
    assert len(roi_lines) == 3 and all(ln.rstrip().endswith("PROVISIONAL") for ln in roi_lines)
    assert "PROVISIONAL: convergence checks failed (R-hat, ESS bulk, ESS tail)" in err
    assert "what to try, in order" in err
    st = json.loads((run / "status.json").read_text())
    assert st["status"] == "completed" and st["gate"]["outcome"] == "warned"

    page = _parse((run / "index.html").read_text())
    row = page.stage_row("05_diagnose")
    assert row["class"] == "attention" and row["cells"][2]["text"] == "checks failed"
    assert "Return on spend PROVISIONAL" in " ".join(t.strip() for t in page.text if t.strip())

    report06 = (run / "reports" / "06_contribute.html").read_text()
    text = " ".join(_parse(report06).text)
    assert text.index("PROVISIONAL NUMBERS") < text.index("06 · Contributions and ROI")  # the page opens with it
    assert "PROVISIONAL: the fit failed its convergence checks" in text
    assert "Failed checks: R-hat, ESS bulk, ESS tail" in text and "05_diagnose.html" in _parse(report06).links
    # the executed notebook keeps a text version of the banner for terminals and plain viewers
    import nbformat

    nb = nbformat.read(run / "notebooks" / "06_contribute.ipynb", as_version=4)
    banner = next(c for c in nb.cells if c.cell_type == "code" and "diagnostics_banner(run)" in c.source)
    assert banner.outputs[0]["data"]["text/plain"].startswith("WARNING: diagnostics failed")


@pytest.mark.slow
def test_run_in_process_carries_the_verdict_and_stops_at_the_gate():
    from mmm_lib.pipeline import run_in_process
    from mmm_lib.raw_io import load_raw
    from mmm_lib.spec import load_spec

    spec = load_spec(BASELINE, ["draws=20", "tune=20", "diagnostics.gate=stop"])
    with pytest.raises(gate.GateStopped, match="stopped by diagnostics.gate: stop") as exc:
        run_in_process(load_raw(spec.data_path, spec), spec)
    v, partial = exc.value.verdict, exc.value.result
    assert v.stops and "ESS_BULK_LOW" in v.failed_checks and v.remedies[0].startswith("sample longer")
    assert partial.contributions is None and partial.diagnostics["passed"] is False and partial.fit["idata"] is not None

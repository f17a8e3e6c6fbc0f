"""01_validate's failure view: the findings table first, then one short error — no Python traceback."""

from html.parser import HTMLParser

import pytest

from mmm_lib import report
from mmm_lib.validation import DataValidationError, validate
from test_validation import make_panel, make_spec  # the suite's simulated panel and spec


def _bad_panel():
    df = make_panel().rename(columns={"sales": "revenue"})
    df.loc[4, "act_tv"] = -1.0
    return df


def test_findings_view_opens_with_a_red_verdict_and_escapes_the_table():
    html = validate(_bad_panel(), make_spec()).findings_view().data
    assert "Validation failed: 2 errors" in html and "The run stops after this notebook" in html
    assert "MISSING_REQUIRED_COLUMN" in html and "NEGATIVE_VALUE" in html and "remedy" in html
    ok = validate(make_panel(), make_spec()).findings_view().data
    assert "Validation passed" in ok and "Validation failed" not in ok


def test_validation_error_prints_short_in_a_notebook_but_keeps_every_error_in_its_message():
    rep = validate(_bad_panel(), make_spec())
    with pytest.raises(DataValidationError) as exc:
        rep.raise_if_errors()
    shown = exc.value._render_traceback_()  # what IPython prints instead of the traceback
    assert len(shown) == 2 and "2 error(s)" in shown[0] and "NEGATIVE_VALUE" in shown[1]
    assert "Fix:" in str(exc.value) and "Fix:" not in "\n".join(shown)


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.text = []

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.slow
def test_01_report_on_bad_data_shows_the_findings_table_and_no_traceback(tmp_path, monkeypatch):
    import papermill
    import yaml

    from test_notebooks import NB_DIR

    df = _bad_panel()
    df.to_csv(tmp_path / "bad.csv", index=False)
    spec = {"data_path": str(tmp_path / "bad.csv"), "drivers": ["act_tv", "act_digital"],
            "controls": ["ctrl_price_index"], "windows": {"carryover_months": 6, "estimation_months": 24}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("MMM_OUTPUTS", str(tmp_path / "out"))
    out = tmp_path / "01.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as exc:
        papermill.execute_notebook(str(NB_DIR / "01_validate.ipynb"), str(out), cwd=str(NB_DIR),
                                   parameters={"spec_path": str(tmp_path / "spec.yaml"), "run_id": "bad"},
                                   progress_bar=False, start_timeout=180,
                                   extra_arguments=["--IPKernelApp.log_level=ERROR"])
    assert exc.value.ename == "DataValidationError" and "Fix:" in exc.value.evalue  # the CLI's full reason
    page = report.export_html(out, tmp_path / "01_validate.html").read_text()
    p = _Text()
    p.feed(page)
    text = " ".join(p.text)
    assert "Validation failed: 2 errors" in text and "MISSING_REQUIRED_COLUMN" in text and "remedy" in text
    assert text.index("MISSING_REQUIRED_COLUMN") < text.index("DataValidationError")  # table first, then the error
    assert "Traceback" not in text and "validation.py" not in text and "raise_if_errors" not in text.replace(
        "report.raise_if_errors()", "")


@pytest.mark.slow
def test_01_with_a_data_filter_keeps_those_rows_and_says_so(tmp_path, monkeypatch):
    """The real notebook applies the spec's data_filter: raw_data.parquet holds one store, the report says so."""
    import pandas as pd
    import papermill
    import yaml

    from test_notebooks import NB_DIR

    df = make_panel()
    df.to_csv(tmp_path / "panel.csv", index=False)
    store = sorted(df["entity_id"].unique())[1]
    spec = {"data_path": str(tmp_path / "panel.csv"), "drivers": ["act_tv", "act_digital"],
            "controls": ["ctrl_price_index"], "data_filter": {"entity_id": store},
            "windows": {"carryover_months": 6, "estimation_months": 24}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("MMM_OUTPUTS", str(tmp_path / "out"))
    out = tmp_path / "01.ipynb"
    papermill.execute_notebook(str(NB_DIR / "01_validate.ipynb"), str(out), cwd=str(NB_DIR),
                               parameters={"spec_path": str(tmp_path / "spec.yaml"), "run_id": "one"},
                               progress_bar=False, start_timeout=180, extra_arguments=["--IPKernelApp.log_level=ERROR"])
    raw = pd.read_parquet(tmp_path / "out" / "runs" / "one" / "raw_data.parquet")
    assert set(raw["entity_id"]) == {store} and len(raw) == (df["entity_id"] == store).sum()
    p = _Text()
    p.feed(report.export_html(out, tmp_path / "01_validate.html").read_text())
    text = " ".join(p.text)
    assert "DATA_FILTER" in text and f"kept {len(raw)} of {len(df)} rows" in text

"""index.html: statuses, links, headline numbers, and user strings escaped (parsed, not grepped)."""

from html.parser import HTMLParser

from mmm_lib import report, status
from mmm_lib.storage import write_json

EVIL = "act_<script>alert(1)</script>"


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "a":
            self.links.append(dict(attrs)["href"])

    def handle_data(self, data):
        self.text.append(data)


def _parse(path):
    p = _Collect()
    p.feed(path.read_text())
    return p


def test_index_lists_stages_and_escapes_user_strings(tmp_path):
    run = tmp_path / "r1"
    (run / "reports").mkdir(parents=True)
    (run / "reports" / "01_validate.html").write_text("<html></html>")
    st = status.new_status("r1")
    status.mark_stage(run, st, "01_validate", "running")
    status.mark_stage(run, st, "01_validate", "completed", duration_s=1.5)
    status.mark_stage(run, st, "02_canonicalize", "running")
    status.mark_stage(run, st, "02_canonicalize", "failed", duration_s=0.5, error=f"KeyError: '{EVIL}'")
    write_json(run / "run_spec.json", {"data_path": "/d/x.csv", "grain": "WEEK", "target_col": "sales",
                                       "drivers": [EVIL]})
    write_json(run / "roi_metrics.json", {"interval": 0.9, "channels": [
        {"channel": EVIL, "spend_col": "spend_x", "spend": 1000.0, "contribution": 2500.0,
         "contribution_low": 2000.0, "contribution_high": 3000.0, "roi": 2.5, "roi_low": 2.0, "roi_high": 3.0}]})
    parsed = _parse(report.write_index(run))
    assert "script" not in parsed.tags
    text = "".join(parsed.text)
    assert EVIL in text  # shown as text
    assert "reports/01_validate.html" in parsed.links
    assert "reports/02_canonicalize.html" not in parsed.links  # no report rendered for it
    assert "failed" in text and "1.5 s" in text
    assert "2.50 [2.00, 3.00]" in text


def test_status_transitions_record_error_and_stage(tmp_path):
    st = status.new_status("r2")
    status.mark_stage(tmp_path, st, "04_fit", "running")
    assert st["status"] == "running" and st["stage"] == "04_fit"
    status.mark_stage(tmp_path, st, "04_fit", "failed", duration_s=3.0, error="ValueError: boom", traceback="tb")
    saved = status.read_status(tmp_path)
    assert saved["status"] == "failed" and saved["error"] == "04_fit: ValueError: boom"
    assert saved["traceback"] == "tb" and saved["stages"]["04_fit"]["duration_s"] == 3.0
    assert saved["stages"]["05_diagnose"]["status"] == "pending"


def test_index_is_rendered_from_the_jinja_template_with_every_user_string_escaped(tmp_path):
    run = tmp_path / "r3"
    run.mkdir()
    st = status.new_status("r3")
    status.mark_stage(run, st, "01_validate", "running")
    status.mark_stage(run, st, "01_validate", "failed", duration_s=0.2, error=f"ValueError: {EVIL}")
    write_json(run / "run_spec.json", {"data_path": f"/d/{EVIL}.csv", "grain": EVIL, "target_col": EVIL,
                                       "drivers": [EVIL, "act_tv"]})
    write_json(run / "validation_summary.json", {"n_rows": 10, "n_entities": 1, "n_periods": 10,
                                                 "counts": {"error": 1, "warning": 0}})
    page = report.write_index(run).read_text()
    assert (report.TEMPLATES / "run_index" / "index.html.j2").is_file()
    parsed = _parse(run / "index.html")
    assert "script" not in parsed.tags
    text = "".join(parsed.text)
    assert text.count(EVIL) >= 5  # data path, grain, target, drivers, run error, stage error
    assert "Run failed" in text and "1 errors, 0 warnings" in text
    assert "&lt;script&gt;" in page


def test_stage_pages_rendered_one_after_another_do_not_carry_anything_over(tmp_path):
    """A process renders every stage's two pages with the same exporters: a page is the same whether it is the
    first rendered or follows another with code or a banner, and a banner or code shows only where asked for."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# ROI"),
                nbformat.v4.new_code_cell("secret_code_line = 42", outputs=[
                    nbformat.v4.new_output("stream", name="stdout", text="the visible answer\n")])]  # fmt: skip
    first = report.export_html(nb, tmp_path / "a.html", hide_code=True).read_text()
    banner = "<div>PROVISIONAL_BAR</div>"
    code = report.export_html(nb, tmp_path / "b.html", hide_code=False, banner_html=banner).read_text()
    again = report.export_html(nb, tmp_path / "c.html", hide_code=True).read_text()
    assert again == first
    assert "the visible answer" in first and "secret_code_line" not in first and "PROVISIONAL_BAR" not in first
    assert "secret_code_line" in code and "PROVISIONAL_BAR" in code
    assert len(nb.cells) == 2  # the notebook given is not changed

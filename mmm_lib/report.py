"""HTML reports: one self-contained page per executed stage notebook, and the run's ``index.html``.

Stage pages are nbconvert's ``lab`` template (without its CDN scripts, see ``templates/``) with
figures embedded as base64, so one file can be emailed and opened offline. Stakeholder pages hide code; ``*_code.html`` keep it for reviewers. Every user-supplied
string in the index (ids, column names, channel names, errors) goes through :func:`html.escape`.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .status import STAGE_TITLES, STAGES
from .storage import _atomic, read_json

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Cells that are plumbing, not content: papermill's injected parameters and our parameters cell.
_REMOVE_TAGS = ("parameters", "injected-parameters", "remove_cell")


def export_html(notebook: Any, html_path: Path, *, hide_code: bool = True) -> Path:
    """Render an executed notebook (a path or an already-read NotebookNode) to one self-contained HTML file."""
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    nb = nbformat.read(str(notebook), as_version=4) if isinstance(notebook, (str, Path)) else notebook
    c = Config()
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_cell_tags = _REMOVE_TAGS
    c.HTMLExporter.preprocessors = ["nbconvert.preprocessors.TagRemovePreprocessor"]
    exporter = HTMLExporter(
        config=c,
        template_name="mmm_report",  # lab, minus CDN scripts: the file is self-contained
        extra_template_basedirs=[str(TEMPLATES)],
        exclude_input=hide_code,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    body, _ = exporter.from_notebook_node(nb)
    return _atomic(Path(html_path), lambda p: p.write_text(body, encoding="utf-8"))


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if abs(x) >= 1e4:
            return f"{x:,.0f}"
        return f"{x:.{digits}f}"
    return str(x)


def _safe(run_dir: Path, name: str) -> Any:
    try:
        return read_json(run_dir / name)
    except (FileNotFoundError, ValueError):
        return None


def headlines(run_dir: Path) -> dict[str, str]:
    """One line of headline numbers per stage, from the artifacts that exist."""
    e = html.escape
    out: dict[str, str] = {}
    v = _safe(run_dir, "validation_summary.json")
    if v:
        c = v.get("counts", {})
        out["01_validate"] = e(
            f"{v.get('n_rows')} rows, {v.get('n_entities')} entities, {v.get('n_periods')} periods · "
            f"{c.get('error', 0)} errors, {c.get('warning', 0)} warnings"
        )
    ci = _safe(run_dir, "column_info.json")
    if ci:
        w = ci.get("windows", {})
        first = w.get("first_estimation_period", w.get("estimation_start"))
        last = w.get("last_period", w.get("end"))
        out["02_canonicalize"] = e(
            f"estimation {str(first)[:10]} → {str(last)[:10]} "
            f"({w.get('n_estimation')} periods, {w.get('n_carryover')} carry-over)"
        )
    fm = _safe(run_dir, "feature_metadata.json")
    if fm:
        kinds = [c.get("kind") for c in fm.get("controls", [])]
        out["03_features"] = e(
            f"{len(fm.get('channels', []))} media channels, {kinds.count('control')} controls, "
            f"{kinds.count('seasonality')} seasonal terms" + (", trend" if "trend" in kinds else "")
        )
    mm = _safe(run_dir, "model_metadata.json")
    if mm:
        s = mm.get("sampler", {})
        t = mm.get("sampling_time_s")
        out["04_fit"] = e(
            f"{s.get('chains')} chains × {s.get('draws')} draws ({s.get('nuts_sampler', s.get('name', ''))})"
            + (f", sampled in {t:.1f} s" if isinstance(t, (int, float)) else "")
        )
    d = _safe(run_dir, "diagnostics.json")
    if d:
        m = d.get("metrics", {})
        verdict = "all checks passed" if d.get("passed") else "CHECKS FAILED"
        out["05_diagnose"] = e(
            f"{verdict} · max R-hat {_fmt(m.get('max_r_hat'), 3)}, min ESS {_fmt(m.get('min_ess_bulk'), 0)}, "
            f"{m.get('divergences')} divergences"
        )
    fit = _safe(run_dir, "fit_metrics.json")
    if fit:
        out["06_contribute"] = e(f"R² {_fmt(fit.get('r2'), 3)}, MAPE {_fmt(fit.get('mape'), 1)}%")
    return out


def _roi_table(run_dir: Path) -> str:
    roi = _safe(run_dir, "roi_metrics.json")
    if not roi or not roi.get("channels"):
        return ""
    pct = int(round(100 * roi.get("interval", 0.9)))
    rows = "".join(
        "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{} [{}, {}]</td></tr>".format(
            html.escape(str(c.get("channel"))),
            _fmt(c.get("spend")),
            _fmt(c.get("contribution")),
            _fmt(c.get("roi")),
            _fmt(c.get("roi_low")),
            _fmt(c.get("roi_high")),
        )
        for c in roi["channels"]
    )
    return (
        f"<h2>Return on spend</h2><p>Incremental sales per unit of spend over the estimation window "
        f"(posterior mean and {pct}% interval).</p><table><thead><tr><th>Channel</th><th>Spend</th>"
        f"<th>Incremental sales</th><th>ROI (sales / spend)</th></tr></thead><tbody>{rows}</tbody></table>"
    )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} .meta{color:#666;margin-top:0}
table{border-collapse:collapse;width:100%;margin:1em 0} th,td{border-bottom:1px solid #ddd;padding:.45em .6em;text-align:left;vertical-align:top}
th{background:#f5f5f5} td.n{text-align:right;font-variant-numeric:tabular-nums}
.completed{color:#1a7f37;font-weight:600} .failed{color:#cf222e;font-weight:600} .running{color:#9a6700;font-weight:600} .pending,.skipped{color:#888}
.err{background:#fff0f0;border:1px solid #f5c2c2;padding:.8em;border-radius:4px;white-space:pre-wrap;font-family:monospace;font-size:.9em}
a{color:#0969da}
"""


def write_index(run_dir: Path) -> Path:
    """Write ``index.html``: stages with status, timing, links and headline numbers."""
    run_dir = Path(run_dir)
    e = html.escape
    status = _safe(run_dir, "status.json") or {"stages": {}, "status": "unknown"}
    spec = _safe(run_dir, "run_spec.json") or {}
    heads = headlines(run_dir)
    rows = []
    for stage in STAGES:
        st = status.get("stages", {}).get(stage, {})
        state = st.get("status", "pending")
        report = run_dir / "reports" / f"{stage}.html"
        code = run_dir / "reports" / f"{stage}_code.html"
        link = (
            f'<a href="reports/{stage}.html">{e(STAGE_TITLES[stage])}</a>'
            + (f' · <a href="reports/{stage}_code.html">with code</a>' if code.exists() else "")
            if report.exists()
            else e(STAGE_TITLES[stage])
        )
        dur = st.get("duration_s")
        detail = heads.get(stage, "")
        if st.get("error"):
            detail = (detail + "<br>" if detail else "") + f'<span class="failed">{e(str(st["error"]))}</span>'
        rows.append(
            f"<tr><td>{e(stage[:2])}</td><td>{link}</td><td class='{e(state)}'>{e(state)}</td>"
            f"<td class=n>{'' if dur is None else f'{dur:.1f} s'}</td><td>{detail}</td></tr>"
        )
    source = spec.get("data_path") or f"dataset {spec.get('dataset_id')}"
    err = ""
    if status.get("status") == "failed":
        err = f'<h2>Run failed</h2><div class="err">{e(str(status.get("error")))}</div>'
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MMM run {e(str(status.get('run_id', run_dir.name)))}</title>
<style>{_CSS}</style></head><body>
<h1>MMM run <code>{e(str(status.get('run_id', run_dir.name)))}</code></h1>
<p class="meta">Status: <span class="{e(str(status.get('status')))}">{e(str(status.get('status')))}</span> ·
updated {e(str(status.get('updated_at', '')))} · data: {e(str(source))} · grain {e(str(spec.get('grain', '')))} ·
target {e(str(spec.get('target_col', '')))} · drivers {e(', '.join(map(str, spec.get('drivers', []))))}</p>
{err}
<table><thead><tr><th>#</th><th>Stage report</th><th>Status</th><th>Time</th><th>Headline</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
{_roi_table(run_dir)}
<p class="meta">Artifacts (JSON, parquet, posterior.nc) are in this folder; executed notebooks in <code>notebooks/</code>.</p>
</body></html>
"""
    return _atomic(run_dir / "index.html", lambda p: p.write_text(body, encoding="utf-8"))

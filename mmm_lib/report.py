"""HTML reports: one self-contained page per executed stage notebook, and the run's ``index.html``.

Stage pages are nbconvert's ``lab`` template (without its CDN scripts, see ``templates/``) with
figures embedded as base64, so one file can be emailed and opened offline. Stakeholder pages hide code; ``*_code.html`` keep it for reviewers. The index is
rendered by Jinja from ``templates/run_index/index.html.j2`` with autoescape on, so every user-supplied string (ids,
column names, channel names, errors) is escaped: it is data, never markup.

When 05_diagnose's convergence checks failed the index says so first: an amber banner and stage 05
marked "checks failed" when the run went on (``diagnostics.gate: warn``; the ROI table is marked
provisional), a red one when the gate stopped the run.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

from .gate import GateVerdict, verdict
from .status import ALL_STAGES, STAGE_TITLES, STAGES
from .storage import _atomic, read_json
from .tables import fmt_fixed

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Cells that are plumbing, not content: papermill's injected parameters and our parameters cell.
_REMOVE_TAGS = ("parameters", "injected-parameters", "remove_cell")
_BANNER_TAG = "mmm_report_banner"  # the cell export_html adds for banner_html: its output only, also with code


_EXPORTING = threading.Lock()  # one exporter per page kind, used by one thread at a time


@functools.cache
def _exporter(hide_code: bool) -> Any:
    """The HTML exporter of stage pages, with or without code: made once per process, since building one compiles
    its Jinja templates (0.17 s of each 0.2–0.5 s export, twice per stage)."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    c = Config()
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_cell_tags = _REMOVE_TAGS
    c.TagRemovePreprocessor.remove_input_tags = (_BANNER_TAG,)
    c.HTMLExporter.preprocessors = ["nbconvert.preprocessors.TagRemovePreprocessor"]
    return HTMLExporter(
        config=c,
        template_name="mmm_report",  # lab, minus CDN scripts: the file is self-contained
        extra_template_basedirs=[str(TEMPLATES)],
        exclude_input=hide_code,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )


def export_html(notebook: Any, html_path: Path, *, hide_code: bool = True, banner_html: str | None = None) -> Path:
    """Render an executed notebook (a path or an already-read NotebookNode) to one self-contained HTML file.

    ``banner_html`` is placed above the notebook's first cell (the page opens with it): the PROVISIONAL
    bar of a report built on a fit that failed its convergence checks (:func:`mmm_lib.gate.report_top_banner`).
    The notebook itself is not changed.
    """
    import copy

    from .runtime import skip_slow_schema_formats

    skip_slow_schema_formats()
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4) if isinstance(notebook, (str, Path)) else notebook
    if banner_html:
        # An output, not a raw cell: nbconvert's lab template strips a raw cell's styles (clean_html).
        nb = copy.deepcopy(nb)
        out = nbformat.v4.new_output("display_data", data={"text/html": banner_html})
        nb.cells.insert(0, nbformat.v4.new_code_cell("", outputs=[out], metadata={"tags": [_BANNER_TAG]}))
    with _EXPORTING:
        body, _ = _exporter(hide_code).from_notebook_node(nb)
    return _atomic(Path(html_path), lambda p: p.write_text(body, encoding="utf-8"))


def _safe(run_dir: Path, name: str) -> Any:
    try:
        return read_json(run_dir / name)
    except (FileNotFoundError, ValueError):
        return None


def headlines(run_dir: Path) -> dict[str, str]:
    """One line of headline numbers per stage, from the artifacts that exist (plain text: escape it to show it)."""
    e = str  # plain text: the index template escapes it (autoescape)
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
        verdict = "convergence passed" if d.get("passed") else "CHECKS FAILED"
        mc = d.get("model_checks_passed")
        model = "" if mc is None else (" · model checks passed" if mc else " · MODEL CHECKS FLAGGED (see report)")
        loo = d.get("loo") or {}
        elpd = f", ELPD-LOO {fmt_fixed(loo.get('elpd'), 1)}" if loo.get("elpd") is not None else ""
        out["05_diagnose"] = e(
            f"{verdict} · max R-hat {fmt_fixed(m.get('max_r_hat'), 3)}, min ESS {fmt_fixed(m.get('min_ess_bulk'), 0)}, "
            f"{m.get('divergences')} divergences{model}{elpd}"
        )
    fit = _safe(run_dir, "fit_metrics.json")
    if fit:
        ho = (fit.get("holdout") or {}).get("brand") or {}
        held = (f" · holdout ({fit['holdout']['periods']} periods): MAPE {fmt_fixed(ho.get('mape'), 1)}%, "
                f"90% band covers {fmt_fixed(100 * ho['coverage_90'], 0)}%") if ho.get("coverage_90") is not None else ""  # fmt: skip
        out["06_contribute"] = e(f"R² {fmt_fixed(fit.get('r2'), 3)}, MAPE {fmt_fixed(fit.get('mape'), 1)}%{held}")
    opt = _safe(run_dir, "optimization.json")
    if opt:
        up = opt.get("uplift") or {}
        out["07_optimize"] = e(
            f"budget {fmt_fixed(opt.get('budget'), 0)} over {opt['horizon']['periods']} periods: recommended split "
            f"adds {fmt_fixed(up.get('incremental'), 0)} sales ({fmt_fixed(up.get('pct'), 1)}%; 90% interval "
            f"{fmt_fixed(up.get('incremental_low'), 0)} to {fmt_fixed(up.get('incremental_high'), 0)})"
        )
    return out


def _roi_context(run_dir: Path, provisional: bool = False) -> dict[str, Any] | None:
    """The ROI table's values, formatted for reading (the template escapes them)."""
    roi = _safe(run_dir, "roi_metrics.json")
    if not roi or not roi.get("channels"):
        return None
    from .labels import display_names

    labels = (_safe(run_dir, "run_spec.json") or {}).get("labels") or {}
    names = display_names([str(c.get("channel")) for c in roi["channels"]], labels)
    channels = [
        {"channel": names[str(c.get("channel"))], "spend": fmt_fixed(c.get("spend")), "contribution": fmt_fixed(c.get("contribution")),
         "roi": fmt_fixed(c.get("roi")), "roi_low": fmt_fixed(c.get("roi_low")), "roi_high": fmt_fixed(c.get("roi_high"))}
        for c in roi["channels"]
    ]
    return {"pct": int(round(100 * roi.get("interval", 0.9))), "provisional": provisional, "channels": channels}


def _banner_context(v: GateVerdict, run_status: str) -> dict[str, Any] | None:
    """The top-of-page box for failed convergence checks: amber (provisional numbers) or red (run stopped)."""
    if not v.failed:
        return None
    return {
        "stopped": run_status == "stopped",
        "checks": v.checks_text(),
        "parameters": v.parameters_text() if v.parameters else "",
        "messages": list(v.messages),
        "remedies": list(v.remedies),
    }


def _index_template():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every value is user data (ids, column names, errors): escaped, never markup
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template("run_index/index.html.j2")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} .meta{color:#666;margin-top:0}
table{border-collapse:collapse;width:100%;margin:1em 0} th,td{border-bottom:1px solid #ddd;padding:.45em .6em;text-align:left;vertical-align:top}
th{background:#f5f5f5} td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.completed{color:#1a7f37;font-weight:600} .failed,.interrupted{color:#cf222e;font-weight:600} .running{color:#9a6700;font-weight:600} .pending,.skipped{color:#888}
.stopped{color:#cf222e;font-weight:600} .checks-failed,.attention,.tag{color:#9a6700;font-weight:700}
tr.attention td{background:#fff8c5} tr.attention td:first-child{box-shadow:inset 4px 0 #d4a72c}
.tag{background:#fff8c5;border:1px solid #d4a72c;border-radius:4px;padding:0 .35em;font-size:.8em;vertical-align:middle}
table.provisional{border-left:4px solid #d4a72c} table.provisional td.n:nth-child(n+3){color:#6e5600}
.banner{border-radius:6px;padding:.8em 1em;margin:1em 0;border:2px solid} .banner strong{font-size:1.15em}
.banner p,.banner ul,.banner ol{margin:.4em 0} .banner li{margin:.15em 0}
.banner-warn{background:#fff8c5;border-color:#d4a72c} .banner-warn strong{color:#7d4e00}
.banner-stop{background:#ffebe9;border-color:#cf222e} .banner-stop strong{color:#a40e26}
.err{background:#fff0f0;border:1px solid #f5c2c2;padding:.8em;border-radius:4px;white-space:pre-wrap;font-family:monospace;font-size:.9em}
a{color:#0969da}
"""


def write_index(run_dir: Path) -> Path:
    """Write ``index.html``: stages with status, timing, links and headline numbers.

    Rendered from ``templates/run_index/index.html.j2`` (Jinja, autoescape on): this function only gathers
    plain values; all markup, and all escaping, is the template's.
    """
    run_dir = Path(run_dir)
    status = _safe(run_dir, "status.json") or {"stages": {}, "status": "unknown"}
    spec = _safe(run_dir, "run_spec.json") or {}
    heads = headlines(run_dir)
    v = verdict(_safe(run_dir, "diagnostics.json"), spec)
    run_status = str(status.get("status"))
    provisional = v.failed and run_status != "stopped"
    rows = []
    for stage in [s for s in ALL_STAGES if s in STAGES or s in status.get("stages", {})]:
        st = status.get("stages", {}).get(stage, {})
        state = st.get("status", "pending")
        has_report = (run_dir / "reports" / f"{stage}.html").exists()
        has_code = (run_dir / "reports" / f"{stage}_code.html").exists()
        dur = st.get("duration_s")
        attention = stage == "05_diagnose" and state == "completed" and v.failed
        shown = "checks failed" if attention else state
        rows.append({
            "num": stage[:2],
            "title": STAGE_TITLES[stage],
            "report": f"reports/{stage}.html" if has_report else "",
            "code": f"reports/{stage}_code.html" if has_report and has_code else "",
            "shown": shown,
            "state_cls": "checks-failed" if attention else state,
            "attention": attention,
            "duration": "" if dur is None else f"{dur:.1f} s",
            "headline": heads.get(stage, ""),
            "provisional": stage == "06_contribute" and provisional and bool(heads.get(stage)),
            "stopped_note": (f"not run: stopped by {status['stopped_by']}: stop"
                             if state == "skipped" and status.get("stopped_by") else ""),
            "error": str(st["error"]) if st.get("error") else "",
        })
    run_id = str(status.get("run_id", run_dir.name))
    body = _index_template().render(
        run_id=run_id,
        css=_CSS,
        status_cls="checks-failed" if provisional else run_status,
        shown_status=f"{run_status} (provisional)" if provisional and run_status == "completed" else run_status,
        updated=str(status.get("updated_at", "")),
        source=str(spec.get("data_path") or f"dataset {spec.get('dataset_id')}"),
        grain=str(spec.get("grain", "")),
        target=str(spec.get("target_col", "")),
        drivers=", ".join(map(str, spec.get("drivers", []))),
        run_error=str(status.get("error")) if status.get("status") in ("failed", "interrupted") else None,
        banner=_banner_context(v, run_status),
        rows=rows,
        roi=_roi_context(run_dir, provisional),
    )
    return _atomic(run_dir / "index.html", lambda p: p.write_text(body, encoding="utf-8"))

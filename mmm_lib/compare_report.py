"""The comparison page: ``outputs/compare/<name>/index.html``, one self-contained file (no CDN, figure inline).

Rendered from the plain dict of :func:`mmm_lib.compare.compare_runs`, so the page and ``compare.json``
say the same thing. Every user-supplied string (run ids, model names, channel names, findings) goes
through :func:`html.escape`; the ROI figure is a base64 PNG, so no name is ever markup.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .compare import loo_rank
from .storage import write_bytes
from .tables import fmt_fixed

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.6em} .meta{color:#666;margin-top:0}
table{border-collapse:collapse;width:100%;margin:.8em 0} th,td{border-bottom:1px solid #ddd;padding:.45em .6em;text-align:left;vertical-align:top}
th{background:#f5f5f5} td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.verdict{background:#f3f8ff;border:1px solid #c8dcf5;border-radius:6px;padding:.6em 1.2em;font-size:1.05em}
.verdict li{margin:.35em 0} .summary{font-size:1.25em;font-weight:600;margin:.5em 0 .2em}
table.auto{width:auto;min-width:50%}
tr.best td{background:#eefbf0} .badge{background:#1a7f37;color:#fff;border-radius:3px;padding:0 .4em;font-size:.8em;margin:.2em .3em 0 0;display:inline-block;white-space:nowrap}
.passed{color:#1a7f37;font-weight:600} .failed{color:#cf222e;font-weight:600} .na{color:#888}
.note{color:#555;font-size:.92em} code{font-size:.92em} img{max-width:100%}
a{color:#0969da}
"""

e = html.escape


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _verdict(flag: Any, yes: str = "passed", no: str = "FAILED") -> str:
    if flag is None:
        return '<span class="na">–</span>'
    return f'<span class="passed">{yes}</span>' if flag else f'<span class="failed">{no}</span>'


def _roi_png(result: dict[str, Any]) -> str:
    from .plots.compare import plot_roi_comparison

    ids = [r["run_id"] for r in result["runs"]]
    labels = {r["run_id"]: r["run_id"] if r["model"] in (None, r["run_id"]) else f"{r['run_id']} ({r['model']})"
              for r in result["runs"]}  # fmt: skip
    fig = plot_roi_comparison(result["roi"], ids, labels)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _run_link(run: dict[str, Any]) -> str:
    rid = str(run["run_id"])
    if run.get("index"):
        return f'<a href="../../runs/{e(quote(rid))}/index.html"><code>{e(rid)}</code></a>'
    return f"<code>{e(rid)}</code>"


def _ranking(result: dict[str, Any]) -> str:
    loo = {row["run_id"]: row for g in result["loo"]["groups"] for row in g["ranking"]}
    ho = {row["run_id"]: row for row in result["holdout"]["ranking"]}
    diag = {d["run_id"]: d for d in result["diagnostics"]}
    loo_ranked, ho_ranked = result["loo"]["ranked"], result["holdout"]["ranked"]

    def order(run: dict[str, Any]) -> tuple[int, int]:
        lr, hr = loo.get(run["run_id"], {}), ho.get(run["run_id"], {})
        return ((lr.get("rank") or 99) if loo_ranked else 99, (hr.get("rank") or 99) if ho_ranked else 99)

    rows = []
    for run in sorted(result["runs"], key=order):
        rid = run["run_id"]
        lr, hr, d = loo.get(rid, {}), ho.get(rid, {}), diag.get(rid, {})
        best = (loo_ranked and lr.get("rank") == 1) or (ho_ranked and hr.get("rank") == 1)
        badges = ""
        if loo_ranked and lr.get("rank") == 1:
            badges += '<span class="badge">best LOO</span>'
        if ho_ranked and hr.get("rank") == 1:
            badges += '<span class="badge">best holdout</span>'
        badges = f"<br>{badges}" if badges else ""
        model = f"{run['transforms']} · {run['level']} · {run['saturation'] or 'none'}"
        elpd = f"{lr['elpd']:,.1f} ({lr['se']:.1f})" if lr else "–"
        diff = f"{lr['elpd_diff']:,.1f} ({lr['dse']:.1f})" if lr.get("elpd_diff") is not None else "–"
        cover = f"{_pct(hr.get('coverage_50'))} / {_pct(hr.get('coverage_90'))}" if hr else "–"
        rows.append(
            f"<tr class='{'best' if best else ''}'><td>{_run_link(run)}{badges}</td><td>{e(model)}</td>"
            f"<td class=n>{e(loo_rank(result, rid))}</td><td class=n>{e(elpd)}</td>"
            f"<td class=n>{e(diff)}</td><td class=n>{e(str(hr.get('rank'))) if ho_ranked and hr else '–'}</td>"
            f"<td class=n>{e(fmt_fixed(hr.get('crps'), 2))}</td><td class=n>{e(fmt_fixed(hr.get('mape'), 1))}{'%' if hr.get('mape') is not None else ''}</td>"
            f"<td class=n>{e(cover)}</td><td>{_verdict(d.get('passed'))}</td><td>{_verdict(d.get('model_checks_passed'))}</td></tr>"
        )
    return (
        "<table><thead><tr><th>Run</th><th>Transforms · level · saturation</th><th>LOO rank</th><th>ELPD-LOO (SE)</th><th>ELPD vs best (SE)</th>"
        "<th>Holdout rank</th><th>Holdout CRPS</th><th>Holdout MAPE</th><th>Coverage 50% / 90%</th>"
        f"<th>Convergence</th><th>Model checks</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _reasons(result: dict[str, Any]) -> str:
    out = []
    if not result["loo"]["ranked"]:
        out.append(f"<p class='note'><b>ELPD-LOO not ranked:</b> {e(str(result['loo']['reason']))}.</p>")
    if not result["holdout"]["ranked"] or result["holdout"]["reason"]:
        out.append(f"<p class='note'><b>Holdout:</b> {e(str(result['holdout']['reason']))}.</p>")
    return "".join(out)


def _differences(result: dict[str, Any]) -> str:
    diffs = result.get("differences") or []
    if not diffs:
        return "<p class='note'>The runs' specs are identical.</p>"
    ids = [r["run_id"] for r in result["runs"]]
    head = "".join(f"<th>{e(str(i))}</th>" for i in ids)
    rows = "".join(
        f"<tr><td><code>{e(d['key'])}</code></td>" + "".join(f"<td>{e(fmt_fixed(d['values'].get(i), 2))}</td>" for i in ids) + "</tr>"
        for d in diffs
    )
    return f"<table class=auto><thead><tr><th>Setting</th>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _roi_table(result: dict[str, Any]) -> str:
    ids = [r["run_id"] for r in result["runs"]]
    by = {(r["channel"], r["run_id"]): r for r in result["roi"]}
    channels = list(dict.fromkeys(r["channel"] for r in result["roi"]))
    if not channels:
        return "<p class='note'>No run has ROI numbers (06_contribute not run).</p>"
    head = "".join(f"<th>{e(str(i))}</th>" for i in ids)
    rows = []
    for c in channels:
        cells = []
        for i in ids:
            r = by.get((c, i))
            if r is None or r.get("roi") is None:
                cells.append("<td class=n>–</td>")
            else:
                cells.append(f"<td class=n>{e(fmt_fixed(r['roi'], 2))} [{e(fmt_fixed(r.get('roi_low'), 2))}, {e(fmt_fixed(r.get('roi_high'), 2))}]</td>")
        rows.append(f"<tr><td>{e(c)}</td>{''.join(cells)}</tr>")
    return f"<table class=auto><thead><tr><th>Channel</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _diagnostics(result: dict[str, Any]) -> str:
    loo = {row["run_id"]: row for g in result["loo"]["groups"] for row in g["ranking"]}
    rows = []
    for d in result["diagnostics"]:
        rid = d["run_id"]
        m = d.get("metrics") or {}
        lr = loo.get(rid, {})
        k = "–" if not lr else f"{lr['n_pareto_k_high']} of {lr['n_obs']}"
        findings = "".join(
            f"<li><b>{e(str(f.get('severity')))}</b> <code>{e(str(f.get('code')))}</code>: {e(str(f.get('message')))}</li>"
            for f in d.get("findings", []) if f.get("severity") in ("error", "warning")
        )  # fmt: skip
        n_info = (d.get("counts") or {}).get("info", 0)
        detail = (f"<ul>{findings}</ul>" if findings else "") + (f"<span class='note'>{n_info} info</span>" if n_info else "")
        if not d.get("available"):
            detail = "<span class='na'>no diagnostics.json (run 05_diagnose)</span>"
        rows.append(
            f"<tr><td><code>{e(str(rid))}</code></td><td>{_verdict(d.get('passed'))}</td>"
            f"<td>{_verdict(d.get('model_checks_passed'))}</td><td class=n>{e(fmt_fixed(m.get('max_r_hat'), 3))}</td>"
            f"<td class=n>{e(fmt_fixed(m.get('min_ess_bulk'), 0))}</td><td class=n>{e(fmt_fixed(m.get('divergences'), 2))}</td>"
            f"<td class=n>{e(k)}</td><td>{detail}</td></tr>"
        )
    return (
        "<table><thead><tr><th>Run</th><th>Convergence</th><th>Model checks</th><th>max R-hat</th><th>min ESS</th>"
        "<th>Divergences</th><th>Pareto k high</th><th>Errors and warnings</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def render_compare_page(result: dict[str, Any]) -> str:
    """The comparison as one HTML document (string)."""
    data = result["data"]
    ids = [r["run_id"] for r in result["runs"]]
    hold = data.get("holdout")
    hold_txt = f"last {hold['periods']} periods held out ({hold['start']} → {hold['end']})" if hold else "no holdout"
    verdict = "".join(f"<li>{e(h)}</li>" for h in result["headline"])
    notes = "".join(f"<li>{e(n)}</li>" for n in result.get("notes") or [])
    sources = sorted({str(v) for v in (data.get("source") or {}).values() if v})
    title = " vs ".join(ids)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MMM comparison {e(title)}</title>
<style>{_CSS}</style></head><body>
<h1>Which model? {e(title)}</h1>
<p class="meta">Same data: <b>{e(str(data['target']))}</b>, {e(str(data['n_periods']))} {e(str(data.get('grain') or 'period').lower())}s
{e(str(data['first_period']))} → {e(str(data['last_period']))}, {len(data.get('source_entities') or [])} source entities, {e(hold_txt)} ·
comparison <code>{e(result['name'])}</code> · {e(str(result['created_at']))}</p>
<div class="verdict"><p class="summary">{e(result['summary'])}</p><ul>{verdict}</ul></div>
<h2>Ranking</h2>
{_ranking(result)}
{_reasons(result)}
<p class="note">ELPD-LOO: expected log predictive density of each fitted observation when it is left out (PSIS-LOO); higher is better.
A difference under 4, or under twice its SE, is not a clear winner. Holdout: the last periods were not fitted but forecast;
CRPS is the average forecast error in sales units allowing for the forecast's uncertainty (lower is better); coverage is the share
of held-out periods inside the 50% / 90% forecast bands (close to 50% / 90% means honest intervals). With a short holdout, a CRPS
difference of a few percent is within noise.</p>
<h2>What differs between the runs</h2>
{_differences(result)}
<h2>Return on spend, side by side</h2>
<img alt="ROI per channel and run, posterior mean and interval" src="data:image/png;base64,{_roi_png(result)}">
{_roi_table(result)}
<h2>Diagnostics</h2>
{_diagnostics(result)}
<h2>Data</h2>
<p class="note">Source: {e(', '.join(sources) or '–')} · fingerprint of the brand total <code>{e(str(data.get('fingerprint')))}</code>
(same for every run: the runs were checked to model the same observations).</p>
{f'<ul class="note">{notes}</ul>' if notes else ''}
<p class="note">The same numbers are in <code>compare.json</code> next to this page.</p>
</body></html>
"""


def write_compare_page(result: dict[str, Any], path: Path) -> Path:
    """Write :func:`render_compare_page` to ``path`` atomically."""
    return write_bytes(Path(path), render_compare_page(result).encode("utf-8"))

"""``outputs/batches/<name>/batch.json`` and ``index.html``: every run of a batch with status, verdict and ROI.

The page is rendered from the same plain dict that ``batch.json`` holds, by Jinja with autoescape on
(``templates/batch_index/index.html.j2``): run ids, labels, channel names and errors are data, never markup.
The ROI figure (one panel per channel, runs on one axis, posterior mean and interval) is a base64 PNG,
so the page is one file that opens offline.
"""

from __future__ import annotations

import base64
import io
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from matplotlib.figure import Figure

from ..storage import read_json, run_dir, write_bytes, write_json
from ..tables import fmt_fixed
from .manifest import BatchPlan, batch_dir

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STATUSES = ("completed", "failed", "stopped", "cancelled", "running", "pending")


def _iso(t: float | None = None) -> str:
    return datetime.fromtimestamp(t or time.time(), timezone.utc).isoformat(timespec="seconds")


def _safe_json(path: Path) -> Any:
    try:
        return read_json(path)
    except (FileNotFoundError, ValueError):
        return None


def run_summary(run_id: str) -> dict[str, Any]:
    """What a run's folder says now: status, failed stage and error, convergence verdict, ROI per channel."""
    folder = run_dir(run_id)
    st = _safe_json(folder / "status.json") or {}
    gate = st.get("gate") or None
    roi = _safe_json(folder / "roi_metrics.json") or {}
    channels = [{k: c.get(k) for k in ("channel", "roi", "roi_low", "roi_high")} for c in roi.get("channels", [])]
    return {
        "status": st.get("status") if st else None,
        "failed_stage": st.get("stage") if st.get("status") in ("failed", "stopped") else None,
        "error": st.get("error"),
        "diagnostics": None if not gate else {"passed": gate.get("passed"), "outcome": gate.get("outcome"),
                                              "reason": gate.get("reason")},  # fmt: skip
        "roi": channels,
        "interval": roi.get("interval"),
        "index": f"../../runs/{quote(run_id)}/index.html" if (folder / "index.html").exists() else None,
    }


def _attempts(plan: BatchPlan, run_id: str) -> int:
    p = plan.folder / "attempts" / f"{run_id}.jsonl"
    try:
        return sum(1 for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
    except FileNotFoundError:
        return 0


def batch_record(plan: BatchPlan, results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """``batch.json``: the batch and one entry per run (``status`` from the task's result, else the run folder)."""
    runs = []
    for r in plan.runs:
        res = results.get(r.run_id, {})
        now = run_summary(r.run_id)
        status = res.get("status") or ("running" if now["status"] == "running" else None) or "pending"
        if status == "completed" and now["status"] not in (None, "completed"):
            status = now["status"]
        runs.append({
            **r.to_dict(),
            "status": status,
            "failed_stage": res.get("failed_stage") or now["failed_stage"],
            "error": res.get("error") or (now["error"] if status in ("failed", "stopped", "cancelled") else None),
            "diagnostics": now["diagnostics"],
            "roi": now["roi"],
            "interval": now["interval"],
            "index": now["index"],
            "attempts": _attempts(plan, r.run_id),
            "action": res.get("action"),
            "reused": bool(res.get("reused")),
            "worker": res.get("worker"),
            "wall_s": res.get("wall_s"),
            "peak_rss_mb": res.get("peak_rss_mb"),
        })
    counts = Counter(x["status"] for x in runs)
    return {
        "name": plan.name,
        "manifest": str(plan.manifest_path),
        "base_spec": str(plan.base_spec),
        "status": meta.get("status", "running"),
        "started_at": _iso(meta.get("started_at")),
        "updated_at": _iso(),
        "scheduler": meta.get("scheduler"),
        "workers": meta.get("workers"),
        "cache": meta.get("cache"),
        "split": None if plan.split is None else {"column": plan.split.column, "source": str(plan.split_source)},
        "counts": {k: counts.get(k, 0) for k in STATUSES if counts.get(k)},
        "runs": runs,
    }


def write_batch(plan: BatchPlan, record: dict[str, Any]) -> dict[str, Path]:
    """Write ``batch.json`` and ``index.html`` (atomically: a reader never sees half a page)."""
    folder = plan.folder
    j = write_json(folder / "batch.json", record)
    page = render_index(record)
    h = write_bytes(folder / "index.html", page.encode("utf-8"))
    return {"json": j, "index": h}


def plot_roi_small_multiples(runs: list[dict[str, Any]]) -> Figure | None:
    """ROI across runs: one panel per channel, runs on the vertical axis, posterior mean (dot) and interval (line).

    Returns ``None`` when no run has ROI numbers yet.
    """
    shown = [r for r in runs if any(c.get("roi") is not None for c in r.get("roi") or [])]
    if not shown:
        return None
    channels: list[str] = []
    for r in shown:
        for c in r["roi"]:
            if c["channel"] not in channels:
                channels.append(c["channel"])
    n = len(channels)
    fig = Figure(figsize=(min(3.2 * n + 2.5, 16), 0.32 * len(shown) + 1.6), layout="constrained")
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    ys = list(range(len(shown)))[::-1]
    for ax, ch in zip(axes, channels):
        for y, r in zip(ys, shown):
            c = next((c for c in r["roi"] if c["channel"] == ch), None)
            if c is None or c.get("roi") is None:
                continue
            colour = "#cf222e" if r.get("diagnostics") and r["diagnostics"].get("passed") is False else "#0969da"
            if c.get("roi_low") is not None and c.get("roi_high") is not None:
                ax.plot([c["roi_low"], c["roi_high"]], [y, y], color=colour, lw=2, alpha=0.6)
            ax.plot([c["roi"]], [y], "o", color=colour, ms=5)
        ax.axvline(1.0, color="#888", lw=0.8, ls=":")
        ax.set_title(_label(ch), fontsize=10)
        ax.set_xlabel("ROI (sales / spend)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(ys, [_label(r["run_id"]) for r in shown])
    axes[0].set_ylim(-0.6, len(shown) - 0.4)
    pct = next((r.get("interval") for r in shown if r.get("interval")), 0.9)
    fig.suptitle(f"ROI per channel across runs: mean and {100 * pct:.0f}% interval (red: convergence checks failed; "
                 "dotted: break-even)", fontsize=9)  # fmt: skip
    return fig


def _label(text: Any) -> str:
    return str(text).replace("$", r"\$")  # "$" would switch matplotlib to mathtext: names are data


def _png(fig: Figure | None) -> str | None:
    if fig is None:
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _verdict(d: dict[str, Any] | None) -> tuple[str, str]:
    if not d:
        return "–", "na"
    if d.get("passed"):
        return "passed", "passed"
    return f"FAILED ({d.get('outcome')})", "failed"


def render_index(record: dict[str, Any]) -> str:
    """The batch page from ``batch.json``'s dict (Jinja, autoescape on)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    rows = []
    for r in record["runs"]:
        verdict, vcls = _verdict(r.get("diagnostics"))
        pct = int(round(100 * (r.get("interval") or 0.9)))
        roi = [f"{c['channel']}: {fmt_fixed(c.get('roi'), 2)} [{fmt_fixed(c.get('roi_low'), 2)}, {fmt_fixed(c.get('roi_high'), 2)}]"
               for c in r.get("roi") or [] if c.get("roi") is not None]  # fmt: skip
        rows.append({
            "run_id": r["run_id"], "label": r["label"], "index": r.get("index"), "status": r["status"],
            "status_cls": r["status"] if r["status"] in STATUSES else "na",
            "problem": " · ".join(x for x in (r.get("failed_stage") or "", r.get("error") or "") if x),
            "verdict": verdict, "verdict_cls": vcls, "roi": roi, "pct": pct,
            "time": "" if r.get("wall_s") is None else f"{r['wall_s']:.0f} s",
            "attempts": r.get("attempts") or "", "reused": r.get("reused"),
        })
    env = Environment(loader=FileSystemLoader(str(TEMPLATES / "batch_index")), autoescape=select_autoescape(default=True))
    return env.get_template("index.html.j2").render(
        b=record, rows=rows, figure=_png(plot_roi_small_multiples(record["runs"])),
        counts=", ".join(f"{n} {k}" for k, n in record["counts"].items()),
    )


def batch_status(name: str) -> dict[str, Any]:
    """``mmm batch status NAME``: ``batch.json`` with each run's status read again from its run folder
    (a batch still running, or one whose driver was killed, shows where each run is now)."""
    path = batch_dir(name) / "batch.json"
    if not path.is_file():
        raise FileNotFoundError(f"batch {name!r} not found ({path}); start it with `mmm batch MANIFEST.yaml`")
    rec = read_json(path)
    for r in rec["runs"]:
        now = run_summary(r["run_id"])
        if now["status"] and r["status"] not in ("cancelled",) and now["status"] != r["status"]:
            r["status"] = now["status"]
            r["failed_stage"] = now["failed_stage"] or r.get("failed_stage")
            r["error"] = now["error"] or r.get("error")
        r["diagnostics"], r["roi"] = now["diagnostics"] or r.get("diagnostics"), now["roi"] or r.get("roi")
    c = Counter(r["status"] for r in rec["runs"])
    rec["counts"] = {k: c.get(k, 0) for k in STATUSES if c.get(k)}
    return rec

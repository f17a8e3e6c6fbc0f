"""The 07_optimize report in words and tables: the recommendation first, then how it was reached.

Everything here reads ``optimization.json`` (:func:`mmm_lib.optimize.recommend.recommend`) and returns
text, :class:`~mmm_lib.contributions.ExecutiveSummary` or tables of text for reading: money in whole
units with thousands separators (:func:`~mmm_lib.contributions.fmt_money`), ratios to 2 decimals,
channels by display name (:mod:`mmm_lib.labels`). The artifact keeps its keys and raw numbers; the
library's messages name channels by column (``act_tv``), and the page shows them by display name.
"""

from __future__ import annotations

import html
import re
from typing import Any

import numpy as np
import pandas as pd

from ..contributions import NA_TEXT, ExecutiveSummary, _missing, _pct_label, _range, fmt_money, fmt_ratio, one_header_row
from ..labels import display_name, display_names
from ..tables import fmt_number

# A channel whose recommended spend differs from its current spend by less than this share of the budget
# is "unchanged" in the sentences (the optimizer's tolerance is far finer than a planner's).
MOVED_TOL = 0.001
_GRAIN_WORD = {"WEEK": ("week", "weeks"), "MONTH": ("month", "months")}
_WHERE = {"upper": "at upper bound", "lower": "at lower bound", "fixed": "fixed by its bounds", "mixed": "some entities on a bound"}


# --------------------------------------------------------------------------------------------
# small helpers


def _names(opt: dict[str, Any], labels: dict[str, str] | None) -> dict[str, str]:
    chans = [c["channel"] for c in opt.get("channels", [])]
    chans += [c for c in opt.get("all_channels", []) if c not in chans]
    return display_names(chans, labels)


def _periods(n: int, grain: str) -> str:
    one, many = _GRAIN_WORD.get(str(grain).upper(), ("period", "periods"))
    return f"{n} {one if n == 1 else many}"


def horizon_text(opt: dict[str, Any]) -> str:
    """``"the next 13 weeks (2024-12-30 → 2025-03-24)"``: the planned periods (period starts)."""
    h = opt["horizon"]
    return f"the next {_periods(int(h['periods']), h.get('grain', 'WEEK'))} ({h['start']} → {h['end']})"


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _signed_money(x: float) -> str:
    if fmt_money(abs(x)) == "0":  # -0.3 is no change, not "-0"
        return "0"
    return ("+" if x > 0 else "") + fmt_money(x)


def _change_pct(x: Any) -> str:
    if _missing(x):
        return NA_TEXT
    return "0.0%" if abs(float(x)) < 0.05 else f"{float(x):+.1f}%"


def readable(text: str, opt: dict[str, Any], labels: dict[str, str] | None = None) -> str:
    """A library sentence with column names (``act_tv``, ``['ctrl_price_index']``) written as display names."""
    names = _names(opt, labels)

    def listed(m: re.Match) -> str:  # "['ctrl_price', 'ctrl_promo']" -> "Price and Promo"
        items = re.findall(r"'([^']*)'", m.group(0))
        return _join([names.get(i, display_name(i, labels)) for i in items]) if items else m.group(0)

    text = re.sub(r"\[(?:'[^']*'(?:, )?)+\]", listed, text)
    for col in sorted(names, key=len, reverse=True):  # act_tv_2 before act_tv
        text = re.sub(rf"(?<![\w]){re.escape(col)}(?![\w])", names[col], text)
    return text


def _bound_text(v: Any) -> str:
    """A bound as the spec gives it: ``"±20%"`` as is, ``[0, 50000]`` as ``"0 to 50,000"``."""
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return f"{fmt_money(v[0])} to {fmt_money(v[1])}"
    return str(v)


def _budget_source(opt: dict[str, Any]) -> str:
    t = opt.get("target")
    if opt.get("mode") == "target" and t:
        metric = "marginal ROI" if t.get("metric") == "marginal_roi" else "ROI"
        return f"found in target mode: where the optimal plan's {metric} falls to {fmt_ratio(t['value'])}"
    return str(opt.get("budget_source") or NA_TEXT)


def _sentence(text: str) -> str:
    """A library message as a sentence: capital first letter, full stop at the end."""
    t = text.strip()
    return t[:1].upper() + t[1:] + ("" if t.endswith((".", "!", "?")) else ".") if t else t


def _moves(opt: dict[str, Any], labels: dict[str, str] | None) -> tuple[list[str], list[str], float]:
    """Channels that gain and that lose spend (display names, largest change first) and the amount moved."""
    names = _names(opt, labels)
    tol = MOVED_TOL * max(float(opt.get("budget") or 0.0), 1e-9)
    rows = sorted(opt.get("channels", []), key=lambda c: -abs(float(c["change"])))
    up = [names[c["channel"]] for c in rows if c["change"] > tol]
    down = [names[c["channel"]] for c in rows if c["change"] < -tol]
    moved = float(sum(-c["change"] for c in opt.get("channels", []) if c["change"] < -tol))
    return up, down, moved


def _gain(uplift: dict[str, Any], draws: Any) -> str:
    """``"probability of a gain 93%"``; all or none of the draws said so in words (not "100%", which reads as certainty)."""
    p = uplift.get("probability_positive")
    if _missing(p):
        return ""
    p = float(p)
    n = f"{int(draws):,} " if draws else ""
    if p >= 1.0:
        return f"a gain in all {n}posterior draws"
    if p <= 0.0:
        return f"a loss in all {n}posterior draws"
    return f"probability of a gain {min(max(round(100 * p), 1), 99)}%"


def _uplift_clause(opt: dict[str, Any]) -> str:
    """``"add 20,046 sales (90% interval 10,553 to 30,493; +7.2%, a gain in all 200 posterior draws)"``, or
    ``"lose 11,733 sales (90% interval 1,670 to 22,708; -4.2%, probability of a gain 3%)"``."""
    u = opt["uplift"]
    pct = _pct_label(opt.get("interval", 0.9))
    gain = u["incremental"] >= 0
    lo, hi = (u["incremental_low"], u["incremental_high"]) if gain else (-u["incremental_high"], -u["incremental_low"])
    inside = f"{pct} interval {fmt_money(lo)} to {fmt_money(hi)}"
    tail = [t for t in (None if _missing(u.get("pct")) else f"{u['pct']:+.1f}%", _gain(u, opt.get("reported_draws", opt.get("draws")))) if t]
    return f"{'add' if gain else 'lose'} {fmt_money(abs(u['incremental']))} sales ({inside}{'; ' + ', '.join(tail) if tail else ''})"


# --------------------------------------------------------------------------------------------
# the executive summary


def recommendation_sentence(opt: dict[str, Any], labels: dict[str, str] | None = None) -> str:
    """The headline: what to change, over which periods, what it is expected to add, for which budget.

    e.g. ``"Moving 22,993 from Radio to TV and Digital over the next 13 weeks (2024-12-30 → 2025-03-24)
    is expected to add 20,046 sales (90% interval 10,553 to 30,493; +7.2%, a gain in all 200 posterior
    draws) for the same budget of 189,848."``
    """
    when = horizon_text(opt)
    budget, current = float(opt["budget"]), float(opt.get("current_budget", opt["budget"]))
    up, down, moved = _moves(opt, labels)
    if opt.get("equals_current"):
        return (f"Keep the current split of {fmt_money(budget)} over {when}: it is already the best the bounds allow, "
                "so moving money between channels would add nothing.")  # fmt: skip
    same_budget = abs(budget - current) <= MOVED_TOL * max(current, 1e-9)
    if same_budget and opt.get("mode") != "target":
        if not up or not down:  # nothing to move (all on bounds already met): say what is recommended
            return f"Keep the current split of {fmt_money(budget)} over {when}: no channel's spend changes."
        return (f"Moving {fmt_money(moved)} from {_join(down)} to {_join(up)} over {when} is expected to "
                f"{_uplift_clause(opt)} for the same budget of {fmt_money(budget)}.")  # fmt: skip
    more = budget > current
    delta = abs(budget - current)
    change = (f"{fmt_money(delta)} {'more' if more else 'less'} than the current {fmt_money(current)}" if current > 0
              else f"against the current {fmt_money(current)}")  # fmt: skip
    split = "; ".join(p for p in (f"more on {_join(up)}" if up else "", f"less on {_join(down)}" if down else "") if p)
    lead = "Spend"
    if opt.get("mode") == "target" and opt.get("target"):
        t = opt["target"]
        metric = "marginal ROI" if t.get("metric") == "marginal_roi" else "ROI"
        lead = f"To reach a {metric} of {fmt_ratio(t['value'])} (the target), spend"
    # what the budget change itself buys: sales per unit of spend added (or given up per unit saved)
    per_unit = abs(float(opt["uplift"]["incremental"])) / delta if delta > 0 else None
    if per_unit is None:
        trade = ""
    elif more:
        trade = f"; that is {fmt_ratio(per_unit)} in sales per extra unit of spend, the better split included"
    else:
        trade = f"; that is {fmt_ratio(per_unit)} in sales given up per unit saved, the better split included"
    return (f"{lead} {fmt_money(budget)} over {when}, {change}{' (' + split + ')' if split else ''}: expected to "
            f"{_uplift_clause(opt)} against the current plan{trade}.")  # fmt: skip


def plans_sentence(opt: dict[str, Any]) -> str:
    """The two plans' totals: incremental sales (with interval) and sales per unit of spend."""
    pct = _pct_label(opt.get("interval", 0.9))
    rec, cur = opt["recommended"], opt["current"]
    return (f"The recommended plan is expected to bring {fmt_money(rec['incremental'])} incremental sales "
            f"({pct} interval {fmt_money(rec['incremental_low'])} to {fmt_money(rec['incremental_high'])}), "
            f"{fmt_ratio(rec.get('roi'))} per unit of spend, against {fmt_money(cur['incremental'])} "
            f"({fmt_ratio(cur.get('roi'))} per unit) for the current plan; both counted over the horizon and the "
            "carryover it leaves after it.")  # fmt: skip


def margin_sentence(opt: dict[str, Any]) -> str | None:
    """What the next unit of spend returns at the recommendation, against break-even (1.00); None in target mode
    or when every channel sits on a bound."""
    m = opt.get("marginal_roi_common")
    if _missing(m) or opt.get("mode") == "target":
        return None
    m = float(m)
    if m < 1.0:
        return (f"At the recommended split one more unit of spend returns {m:.2f} in sales, less than break-even "
                "(1.00): the last part of this budget does not pay for itself; target mode (mmm optimize RUN "
                "--target-marginal-roi 1.0) finds the budget where it does.")  # fmt: skip
    return (f"At the recommended split one more unit of spend still returns {m:.2f} in sales, above break-even "
            "(1.00): a larger budget would pay for itself on the margin; target mode (mmm optimize RUN "
            "--target-marginal-roi 1.0) finds how much larger.")  # fmt: skip


def bound_sentences(opt: dict[str, Any], labels: dict[str, str] | None = None) -> list[str]:
    """The optimizer's messages (why a channel sits on a bound, why the split equals the current one, what target
    mode found), channels by display name, each starting with a capital."""
    return [_sentence(readable(str(m), opt, labels)) for m in opt.get("messages", [])]


def scenario_sentence(opt: dict[str, Any], labels: dict[str, str] | None = None) -> str | None:
    """The scenario's forecast in one sentence, or None when no scenario was given."""
    sc = opt.get("scenario")
    if not sc:
        return None
    grain = opt.get("horizon", {}).get("grain", "WEEK")
    pct = _pct_label(opt.get("interval", 0.9))
    roi = "" if _missing(sc.get("roi")) else f", {fmt_ratio(sc['roi'])} per unit of spend"
    return (f"The scenario ({_periods(int(sc['periods']), grain)}, {sc['start']} → {sc['end']}, {fmt_money(sc['spend'])} "
            f"spend) is expected to bring {fmt_money(sc['incremental'])} incremental sales ({pct} interval "
            f"{fmt_money(sc['incremental_low'])} to {fmt_money(sc['incremental_high'])}){roi}.")  # fmt: skip


def executive_summary(opt: dict[str, Any], labels: dict[str, str] | None = None) -> ExecutiveSummary:
    """The top of the 07 report: the recommendation (bold), the plans' totals, why channels sit on their bounds,
    what the next unit of spend returns, and the scenario's forecast when one was given.

    Parameters
    ----------
    opt
        ``optimization.json``.
    labels
        The run spec's ``labels`` (display names), if any.
    """
    plans = None if opt.get("equals_current") else plans_sentence(opt)
    rest = [s for s in (plans, *bound_sentences(opt, labels), margin_sentence(opt), scenario_sentence(opt, labels)) if s]
    return ExecutiveSummary([recommendation_sentence(opt, labels), *rest])


# --------------------------------------------------------------------------------------------
# tables


def allocation_table(opt: dict[str, Any], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Current vs recommended spend per channel over the horizon, with a total row; numbers as text.

    Columns: current and recommended spend, the change (money and %), marginal ROI now → recommended
    (sales from one more unit of spend), the allowed range (the bound) and whether the channel sits on it.
    """
    names = _names(opt, labels)
    recs = []
    for c in opt.get("channels", []):
        recs.append({
            "channel": names[c["channel"]],
            "current spend": fmt_money(c["current_spend"]),
            "recommended spend": fmt_money(c["recommended_spend"]),
            "change": _signed_money(c["change"]),
            "change (%)": _change_pct(c.get("change_pct")),
            "marginal ROI: now → recommended": f"{fmt_ratio(c.get('marginal_roi_current'))} → "
                                               f"{fmt_ratio(c.get('marginal_roi_recommended'))}",
            "allowed range": str(c.get("bound") or NA_TEXT),
            "on a bound": _WHERE.get(c.get("at_bound"), NA_TEXT),
        })  # fmt: skip
    cur, rec = float(opt["current_budget"]), float(opt["recommended"]["spend"])
    recs.append({"channel": "total", "current spend": fmt_money(cur), "recommended spend": fmt_money(rec),
                 "change": _signed_money(rec - cur), "change (%)": _change_pct((rec - cur) / cur * 100 if cur > 0 else None),
                 "marginal ROI: now → recommended": NA_TEXT, "allowed range": NA_TEXT, "on a bound": NA_TEXT})  # fmt: skip
    return one_header_row(pd.DataFrame(recs).set_index("channel"))


def marginal_roi_table(opt: dict[str, Any], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Per channel: marginal ROI at the current and recommended spend, where it falls to break-even, and the
    channel's own incremental sales in each plan (the others at that plan)."""
    names = _names(opt, labels)
    top = (opt.get("settings") or {}).get("curve_max_multiplier", 2.0)

    def breakeven(c: dict[str, Any]) -> str:
        b = c.get("breakeven_spend")
        if b is None and "breakeven_spend" in c:
            return f"above {fmt_money(float(c['current_spend']) * float(top))} ({float(top):g}× current)"
        if _missing(b):
            return NA_TEXT
        return "below 1 from the first unit" if float(b) <= 0 else fmt_money(b)

    recs = [{
        "channel": names[c["channel"]],
        "marginal ROI at current spend": fmt_ratio(c.get("marginal_roi_current")),
        "marginal ROI at recommended spend": fmt_ratio(c.get("marginal_roi_recommended")),
        "spend where marginal ROI falls to 1": breakeven(c),
        "channel's incremental sales: current → recommended": f"{fmt_money(c.get('incremental_current'))} → "
                                                              f"{fmt_money(c.get('incremental_recommended'))}",
    } for c in opt.get("channels", [])]  # fmt: skip
    return one_header_row(pd.DataFrame(recs).set_index("channel"))


def plans_table(opt: dict[str, Any]) -> pd.DataFrame:
    """The current and recommended plans (and the scenario when given): periods, spend, incremental sales, ROI."""
    pct = _pct_label(opt.get("interval", 0.9))
    h = opt["horizon"]
    grain = h.get("grain", "WEEK")
    span = f"{h['start']} → {h['end']} ({_periods(int(h['periods']), grain)})"
    plans = [("current plan", opt["current"], span), ("recommended plan", opt["recommended"], span)]
    if opt.get("scenario"):
        sc = opt["scenario"]
        plans.append(("scenario", sc, f"{sc['start']} → {sc['end']} ({_periods(int(sc['periods']), grain)})"))
    recs = [{
        "plan": name, "periods": when, "spend": fmt_money(p.get("spend")),
        "incremental sales": fmt_money(p.get("incremental")),
        f"{pct} interval": _range(p.get("incremental_low"), p.get("incremental_high"), fmt_money),
        "ROI": fmt_ratio(p.get("roi")), f"ROI {pct} interval": _range(p.get("roi_low"), p.get("roi_high"), fmt_ratio),
    } for name, p, when in plans]  # fmt: skip
    return one_header_row(pd.DataFrame(recs).set_index("plan"))


class ReportBlock(str):
    """Sentences and an optional table for a report section: plain text (``print`` it) and HTML in a notebook.

    Every sentence and cell is escaped: channel names are data, never markup.
    """

    sentences: list[str]
    table: pd.DataFrame | None
    bullets: bool

    def __new__(cls, sentences: list[str], table: pd.DataFrame | None = None, bullets: bool = False) -> "ReportBlock":
        text = "\n".join(sentences) + ("\n" + table.to_string() if table is not None else "")
        obj = super().__new__(cls, text)
        obj.sentences, obj.table, obj.bullets = list(sentences), table, bullets
        return obj

    def _repr_html_(self) -> str:
        if self.bullets:
            items = "<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in self.sentences) + "</ul>"
        else:
            items = "".join(f"<p>{html.escape(s)}</p>" for s in self.sentences)
        table = self.table.to_html(escape=True) if self.table is not None else ""
        return f'<div style="line-height:1.5">{items}{table}</div>'

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def scenario_summary(opt: dict[str, Any], labels: dict[str, str] | None = None) -> ReportBlock:
    """The scenario's forecast and its spend by channel next to the current plan's (per period, since the two may
    cover different numbers of periods); a one-line note when no scenario was given."""
    sc = opt.get("scenario")
    if not sc:
        return ReportBlock(["No scenario was given. To forecast a plan of your own, pass a CSV of planned spend "
                            "(period_start, channel, spend) with `mmm optimize RUN --scenario plan.csv` or "
                            "`optimize.scenario_path` in the spec."])  # fmt: skip
    names = _names(opt, labels)
    grain = opt.get("horizon", {}).get("grain", "WEEK")
    one = _GRAIN_WORD.get(str(grain).upper(), ("period", "periods"))[0]
    n_sc, n_h = max(int(sc["periods"]), 1), max(int(opt["horizon"]["periods"]), 1)
    current = {c["channel"]: float(c["current_spend"]) for c in opt.get("channels", [])}
    by_channel = sc.get("spend_by_channel") or {}
    recs = [{
        "channel": names.get(ch, display_name(ch, labels)),
        "scenario spend": fmt_money(by_channel.get(ch)),
        f"scenario per {one}": fmt_money(float(by_channel.get(ch) or 0.0) / n_sc),
        f"current plan per {one}": fmt_money(current[ch] / n_h) if ch in current else NA_TEXT,
    } for ch in by_channel]  # fmt: skip
    table = one_header_row(pd.DataFrame(recs).set_index("channel")) if recs else None
    return ReportBlock([scenario_sentence(opt, labels) or ""], table)


def assumptions_table(opt: dict[str, Any], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Per channel: the cost per unit of activity that turns spend into activity, and the allowed range."""
    names = _names(opt, labels)
    recs = [{"channel": names[c["channel"]], "cost per unit of activity": fmt_number(c.get("cost_per_unit")),
             "allowed range over the horizon": str(c.get("bound") or NA_TEXT)}
            for c in opt.get("channels", [])]  # fmt: skip
    return one_header_row(pd.DataFrame(recs).set_index("channel"))


def how_computed(opt: dict[str, Any], labels: dict[str, str] | None = None) -> ReportBlock:
    """The settings behind this recommendation, from ``optimization.json`` (``definition``, ``notes``, ``settings``,
    ``optimizer``), as sentences; the per-channel cost and bounds as a table (:func:`assumptions_table`)."""
    h = opt["horizon"]
    grain = h.get("grain", "WEEK")
    s = opt.get("settings") or {}
    lines = [
        f"Horizon: {horizon_text(opt)} after the data; the carryover a plan leaves in the "
        f"{_periods(int(h.get('carryover_periods_after', 0)), grain)} after it counts as its own effect.",
        f"Budget: {fmt_money(opt['budget'])} ({_budget_source(opt)}); "
        f"the current plan spent {fmt_money(opt.get('current_budget'))} over the last {_periods(int(h['periods']), grain)}.",
    ]
    if opt.get("objective") == "risk_adjusted":
        lines.append(f"Objective: mean incremental sales minus {float(opt.get('risk_aversion', 0)):g} × their posterior "
                     "standard deviation (risk-adjusted).")  # fmt: skip
    else:
        lines.append("Objective: the posterior mean of the plan's incremental sales.")
    if s:
        given = "; ".join(f"{display_name(k, labels)}: {_bound_text(v)}" for k, v in (s.get("bounds") or {}).items())
        lines.append(f"Bounds (spend over the horizon): {s.get('default_bound', NA_TEXT)} of current spend for every channel"
                     + (f" except {given}" if given else "") + ".")  # fmt: skip
    if opt.get("definition"):
        lines.append("Definition: " + readable(str(opt["definition"]), opt, labels))
    lines += [_sentence(readable(str(n), opt, labels)) for n in opt.get("notes", [])]
    lines.append(f"Uncertainty: the optimizer chose on {int(opt.get('draws', 0)):,} posterior draws (evenly thinned); the plans' "
                 f"numbers are on {opt.get('reported_on', 'the same draws')} ({int(opt.get('reported_draws', opt.get('draws', 0))):,}), "
                 f"{_pct_label(opt.get('interval', 0.9))} equal-tailed intervals; random seed {opt.get('random_seed', NA_TEXT)}.")  # fmt: skip
    o = opt.get("optimizer") or {}
    if o:
        starts = o.get("starts") or []
        vals = np.array([float(r["objective"]) for r in starts]) if starts else np.array([])
        spread = (vals.max() - vals.min()) / max(abs(vals.max()), 1e-12) * 100 if len(vals) else 0.0
        agree = (f"all {len(starts)} starts reached the same optimum (within {max(spread, 0.01):.2f}%)" if spread < 0.1
                 else f"starts ended {spread:.1f}% apart: the best ({o.get('best_start')}) is used")  # fmt: skip
        lines.append(f"Optimizer: {o.get('method', 'SLSQP')} with the {o.get('gradient', 'exact')} gradient of the "
                     f"objective, from {len(starts)} starts (current split, equal split, random splits); {agree}; "
                     f"{'converged' if o.get('converged') else 'did NOT converge: treat the split with care'}.")  # fmt: skip
    if s:
        lines.append(f"Response curves: each channel from 0 to {float(s.get('curve_max_multiplier', 2.0)):g}× its current "
                     "spend, the other channels at the current plan.")  # fmt: skip
    return ReportBlock(lines, assumptions_table(opt, labels), bullets=True)


def headline(opt: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A few numbers for the report's last line and the run index: budget, uplift, channels on a bound."""
    names = _names(opt, labels)
    u = opt["uplift"]
    return {
        "horizon": f"{opt['horizon']['start']} to {opt['horizon']['end']}",
        "budget": fmt_money(opt["budget"]),
        "uplift": fmt_money(u["incremental"]),
        "uplift_%": None if _missing(u.get("pct")) else round(float(u["pct"]), 1),
        "probability_of_gain_%": round(100 * float(u["probability_positive"]), 1),
        "on_a_bound": ", ".join(f"{names[c['channel']]} ({c['at_bound']})" for c in opt.get("channels", [])
                                if c.get("at_bound")) or NA_TEXT,
    }  # fmt: skip


__all__ = ["ReportBlock", "allocation_table", "assumptions_table", "bound_sentences", "executive_summary", "headline",
           "horizon_text", "how_computed", "margin_sentence", "marginal_roi_table", "plans_sentence", "plans_table",
           "readable", "recommendation_sentence", "scenario_sentence", "scenario_summary"]  # fmt: skip

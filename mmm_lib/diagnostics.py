"""Convergence diagnostics for the fitted posterior, reported as findings with the seed's thresholds.

R-hat < 1.01, ESS bulk and tail > 400, no divergences, E-BFMI > 0.2 in every chain, and fewer than
1 % of draws at the maximum tree depth (SEED_README "Diagnostics"). Each check gives one finding:
``info`` when it passes, ``warning`` when it fails, with the seed's troubleshooting advice as remedy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .findings import Finding, findings_table
from .model_pymc import convergence_table

THRESHOLDS: dict[str, float] = {
    "r_hat_max": 1.01,
    "ess_bulk_min": 400.0,
    "ess_tail_min": 400.0,
    "divergences_max": 0.0,
    "ebfmi_min": 0.2,
    "pct_max_treedepth_max": 1.0,
}

# numpyro records only the depth; its default max_tree_depth is 10.
NUMPYRO_MAX_TREE_DEPTH = 10

# The seed's troubleshooting advice (SEED_README "Troubleshooting"); spec keys named as in params/*.yaml.
REMEDIES: dict[str, str] = {
    "RHAT_HIGH": (
        "Chains disagree. Increase tune (e.g. 2000) and target_accept (e.g. 0.95); check the data for "
        "quality issues; reduce model complexity (fewer drivers/controls). Do not use these results until it passes."
    ),
    "ESS_BULK_LOW": "Increase draws (e.g. 2000) and chains (e.g. 4); improve the model specification.",
    "ESS_TAIL_LOW": (
        "Tail quantiles (the reported intervals) are noisy. Increase draws (e.g. 2000) and chains (e.g. 4); "
        "improve the model specification."
    ),
    "DIVERGENCES": (
        "Increase target_accept to 0.95 or 0.99; reparameterize the model (adjust priors); check the data "
        "for outliers."
    ),
    "EBFMI_LOW": (
        "The sampler explores the energy distribution poorly (often a funnel in the hierarchical beta scale). "
        "Increase tune (e.g. 2000); reparameterize the model (adjust priors); check the data for outliers."
    ),
    "MAX_TREEDEPTH": (
        "NUTS trajectories were cut short: the posterior is hard to traverse, often from strongly correlated "
        "regressors. Increase tune (e.g. 2000); check media and control features for collinearity; reduce "
        "model complexity."
    ),
}

_OK_CODE = {
    "RHAT_HIGH": "RHAT_OK",
    "ESS_BULK_LOW": "ESS_BULK_OK",
    "ESS_TAIL_LOW": "ESS_TAIL_OK",
    "DIVERGENCES": "DIVERGENCES_OK",
    "EBFMI_LOW": "EBFMI_OK",
    "MAX_TREEDEPTH": "MAX_TREEDEPTH_OK",
}


def _sample_stats(idata: Any) -> Any | None:
    if hasattr(idata, "children") and "sample_stats" in idata.children:
        return idata["sample_stats"].to_dataset()
    return None


def _ebfmi(energy: np.ndarray) -> list[float]:
    """E-BFMI per chain: mean squared energy change over the energy variance (Betancourt 2016)."""
    out = []
    for e in np.atleast_2d(energy):
        e = e[np.isfinite(e)]
        var = float(np.var(e)) if e.size > 1 else 0.0
        out.append(float(np.mean(np.diff(e) ** 2) / var) if var > 0 else float("nan"))
    return out


def _max_treedepth_hits(ss: Any) -> tuple[np.ndarray | None, str | None]:
    """Boolean (chain, draw) array of draws at the maximum tree depth, and the stat it came from."""
    for name in ("reached_max_treedepth", "maxdepth_reached"):  # pymc, nutpie
        if name in ss:
            return np.asarray(ss[name].values, dtype=bool), name
    if "tree_depth" in ss:  # numpyro
        return np.asarray(ss["tree_depth"].values) >= NUMPYRO_MAX_TREE_DEPTH, "tree_depth"
    return None, None


def _worst(names: list[str], values: list[float], high_is_bad: bool, k: int = 3) -> str:
    def key(i: int) -> float:
        v = values[i]
        if not np.isfinite(v):
            return -np.inf
        return -v if high_is_bad else v

    order = sorted(range(len(names)), key=key)[:k]
    return ", ".join(f"{names[i]} {_fmt(values[i])}" for i in order)


def _fmt(v: float) -> str:
    if not np.isfinite(v):
        return "n/a"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.0f}"


def _finding(code: str, ok: bool, message: str, columns: list[str], details: dict[str, Any]) -> Finding:
    return Finding(
        severity="info" if ok else "warning",
        code=_OK_CODE[code] if ok else code,
        message=message,
        remedy="" if ok else REMEDIES[code],
        columns=columns,
        details=details,
    )


_UNAVAILABLE_CODE = {
    "DIVERGENCES": "DIVERGENCES_UNAVAILABLE",
    "EBFMI_LOW": "EBFMI_UNAVAILABLE",
    "MAX_TREEDEPTH": "MAX_TREEDEPTH_UNAVAILABLE",
}


def _unavailable(code: str, what: str) -> Finding:
    return Finding(
        severity="warning",
        code=_UNAVAILABLE_CODE[code],
        message=f"{what} could not be checked: the posterior has no such sample stat",
        remedy="Refit with nuts_sampler nutpie or pymc (both record it) before trusting the results.",
    )


def compute_diagnostics(idata: Any, thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """Check convergence and sampler health; the content of ``diagnostics.json``.

    Parameters
    ----------
    idata
        The fitted DataTree (``posterior`` and ``sample_stats``), e.g. ``run.read_posterior()``.
    thresholds
        Overrides of :data:`THRESHOLDS` (keys ``r_hat_max``, ``ess_bulk_min``, ``ess_tail_min``,
        ``divergences_max``, ``ebfmi_min``, ``pct_max_treedepth_max``).

    Returns
    -------
    dict
        ``{"passed", "thresholds", "metrics": {"max_r_hat", "min_ess_bulk", "min_ess_tail",
        "divergences", "ebfmi", "pct_max_treedepth"}, "parameters": [{"name", "var", "coord",
        "r_hat", "ess_bulk", "ess_tail"}], "findings": [Finding as dict]}``. ``passed`` is true
        only when every check ran and passed. A check whose sample stat is missing gives a
        ``*_UNAVAILABLE`` warning and a ``null`` metric.
    """
    th = dict(THRESHOLDS)
    if thresholds:
        unknown = sorted(set(thresholds) - set(th))
        if unknown:
            raise ValueError(f"unknown diagnostic threshold(s) {unknown}; allowed: {sorted(th)}")
        th.update({k: float(v) for k, v in thresholds.items()})

    conv = convergence_table(idata)
    names = conv["name"].tolist()
    findings: list[Finding] = []
    ok_all = True
    n_par = len(names)

    # R-hat: a non-finite value (a stuck or constant chain) counts as failing.
    r_hat = conv["r_hat"].to_numpy(dtype=float)
    bad = ~(r_hat < th["r_hat_max"])
    max_r_hat = float(np.nanmax(r_hat)) if np.isfinite(r_hat).any() else float("nan")
    if bad.any():
        ok_all = False
        bad_names = [names[i] for i in np.where(bad)[0]]
        msg = (
            f"R-hat is not below {th['r_hat_max']} for {int(bad.sum())} of {n_par} parameters; worst: "
            f"{_worst(bad_names, r_hat[bad].tolist(), high_is_bad=True)}"
        )
        findings.append(_finding("RHAT_HIGH", False, msg, _order(bad_names, r_hat[bad], True), {"max_r_hat": max_r_hat, "threshold": th["r_hat_max"], "n_failing": int(bad.sum())}))
    else:
        msg = f"R-hat below {th['r_hat_max']} for all {n_par} parameters (max {_fmt(max_r_hat)}, {names[int(np.nanargmax(r_hat))]})"
        findings.append(_finding("RHAT_HIGH", True, msg, [], {"max_r_hat": max_r_hat, "threshold": th["r_hat_max"]}))

    # ESS bulk / tail
    n_draws_total = _n_draws(idata)
    mins = {}
    for col, code, key, label in (
        ("ess_bulk", "ESS_BULK_LOW", "ess_bulk_min", "ESS bulk"),
        ("ess_tail", "ESS_TAIL_LOW", "ess_tail_min", "ESS tail"),
    ):
        ess = conv[col].to_numpy(dtype=float)
        low = ~(ess > th[key])
        mins[col] = float(np.nanmin(ess)) if np.isfinite(ess).any() else float("nan")
        details = {f"min_{col}": mins[col], "threshold": th[key], "total_draws": n_draws_total}
        if low.any():
            ok_all = False
            low_names = [names[i] for i in np.where(low)[0]]
            msg = (
                f"{label} is not above {th[key]:.0f} for {int(low.sum())} of {n_par} parameters "
                f"({n_draws_total} draws in all chains); lowest: {_worst(low_names, ess[low].tolist(), high_is_bad=False)}"
            )
            findings.append(_finding(code, False, msg, _order(low_names, ess[low], False), {**details, "n_failing": int(low.sum())}))
        else:
            msg = f"{label} above {th[key]:.0f} for all {n_par} parameters (min {_fmt(mins[col])}, {names[int(np.nanargmin(ess))]})"
            findings.append(_finding(code, True, msg, [], details))

    ss = _sample_stats(idata)
    metrics_extra: dict[str, Any] = {"divergences": None, "ebfmi": None, "pct_max_treedepth": None}

    # Divergences (post-warm-up draws only; warm-up is not stored)
    if ss is not None and "diverging" in ss:
        div_chain = np.asarray(ss["diverging"].values, dtype=bool).reshape(ss["diverging"].shape[0], -1).sum(axis=1)
        n_div = int(div_chain.sum())
        metrics_extra["divergences"] = n_div
        ok = n_div <= th["divergences_max"]
        per_chain = ", ".join(f"chain {c}: {int(d)}" for c, d in enumerate(div_chain))
        msg = (
            f"no divergent transitions in {n_draws_total} draws"
            if n_div == 0
            else f"{n_div} divergent transitions in {n_draws_total} draws ({100 * n_div / max(n_draws_total, 1):.1f}%; {per_chain})"
        )
        ok_all &= ok
        findings.append(_finding("DIVERGENCES", ok, msg, [], {"divergences": n_div, "per_chain": div_chain.tolist(), "threshold": th["divergences_max"]}))
    else:
        ok_all = False
        findings.append(_unavailable("DIVERGENCES", "Divergences"))

    # E-BFMI per chain
    if ss is not None and "energy" in ss:
        energy = np.asarray(ss["energy"].transpose("chain", "draw").values, dtype=float)
        ebfmi = _ebfmi(energy)
        metrics_extra["ebfmi"] = ebfmi
        low = [c for c, v in enumerate(ebfmi) if not v > th["ebfmi_min"]]
        if low:
            ok_all = False
            msg = f"E-BFMI is not above {th['ebfmi_min']} in chain(s) " + ", ".join(f"{c} ({_fmt(ebfmi[c])})" for c in low)
        else:
            msg = f"E-BFMI above {th['ebfmi_min']} in all {len(ebfmi)} chains (min {_fmt(min(ebfmi))})"
        findings.append(_finding("EBFMI_LOW", not low, msg, [], {"ebfmi": ebfmi, "threshold": th["ebfmi_min"]}))
    else:
        ok_all = False
        findings.append(_unavailable("EBFMI_LOW", "E-BFMI"))

    # Maximum tree depth
    hits, stat = _max_treedepth_hits(ss) if ss is not None else (None, None)
    if hits is not None:
        pct = 100.0 * float(hits.sum()) / max(hits.size, 1)
        metrics_extra["pct_max_treedepth"] = pct
        ok = pct < th["pct_max_treedepth_max"]
        ok_all &= ok
        msg = (
            f"{pct:.2f}% of draws ({int(hits.sum())} of {hits.size}) hit the maximum tree depth"
            + ("" if ok else f", not below {th['pct_max_treedepth_max']}%")
        )
        findings.append(_finding("MAX_TREEDEPTH", ok, msg, [], {"pct_max_treedepth": pct, "n_hits": int(hits.sum()), "stat": stat, "threshold": th["pct_max_treedepth_max"]}))
    else:
        ok_all = False
        findings.append(_unavailable("MAX_TREEDEPTH", "Tree depth"))

    params = [
        {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
        for row in conv.to_dict(orient="records")
    ]
    return {
        "passed": bool(ok_all),
        "thresholds": th,
        "metrics": {
            "max_r_hat": max_r_hat,
            "min_ess_bulk": mins["ess_bulk"],
            "min_ess_tail": mins["ess_tail"],
            **metrics_extra,
        },
        "parameters": params,
        "findings": [f.to_dict() for f in findings],
    }


def _order(names: list[str], values: np.ndarray, high_is_bad: bool) -> list[str]:
    vals = np.where(np.isfinite(values), values, np.inf if high_is_bad else -np.inf)
    idx = np.argsort(-vals if high_is_bad else vals, kind="stable")
    return [names[i] for i in idx]


def _n_draws(idata: Any) -> int:
    post = idata["posterior"] if hasattr(idata, "children") and "posterior" in idata.children else idata
    sizes = dict(post.sizes)
    return int(sizes.get("chain", 1) * sizes.get("draw", 0))


def diagnostics_table(diagnostics: dict[str, Any]) -> pd.DataFrame:
    """Headline table: one row per check with its value, threshold and pass/FAIL."""
    m, th = diagnostics["metrics"], diagnostics["thresholds"]
    ebfmi = m.get("ebfmi")
    min_ebfmi = None if not ebfmi else min((v for v in ebfmi if v is not None), default=None)

    def row(check: str, value: Any, digits: int, rule: str, ok: bool | None) -> dict[str, Any]:
        missing = value is None or (isinstance(value, float) and not np.isfinite(value))
        shown = "n/a" if missing else (f"{value:.{digits}f}" if digits else f"{int(round(value))}")
        return {"check": check, "value": shown, "rule": rule, "result": "n/a" if ok is None else ("pass" if ok else "FAIL")}

    def cmp(v: Any, ok: Any) -> bool | None:
        return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else bool(ok(v))

    # values as text so integers, decimals and "n/a" render as written
    return pd.DataFrame(
        [
            row("max R-hat", m["max_r_hat"], 3, f"< {th['r_hat_max']}", cmp(m["max_r_hat"], lambda v: v < th["r_hat_max"])),
            row("min ESS bulk", m["min_ess_bulk"], 0, f"> {th['ess_bulk_min']:.0f}", cmp(m["min_ess_bulk"], lambda v: v > th["ess_bulk_min"])),
            row("min ESS tail", m["min_ess_tail"], 0, f"> {th['ess_tail_min']:.0f}", cmp(m["min_ess_tail"], lambda v: v > th["ess_tail_min"])),
            row("divergences", m["divergences"], 0, f"<= {th['divergences_max']:.0f}", cmp(m["divergences"], lambda v: v <= th["divergences_max"])),
            row("min E-BFMI (per chain)", min_ebfmi, 3, f"> {th['ebfmi_min']}", cmp(min_ebfmi, lambda v: v > th["ebfmi_min"])),
            row("draws at max tree depth (%)", m["pct_max_treedepth"], 2, f"< {th['pct_max_treedepth_max']}", cmp(m["pct_max_treedepth"], lambda v: v < th["pct_max_treedepth_max"])),
        ]
    )


def _round(v: Any, nd: int) -> Any:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return v
    return int(round(v)) if nd == 0 else round(float(v), nd)


def diagnostics_headline(diagnostics: dict[str, Any]) -> pd.DataFrame:
    """One-row summary for the end of 05_diagnose: passed or not, and how many checks failed."""
    warn = [f["code"] for f in diagnostics["findings"] if f["severity"] != "info"]
    m = diagnostics["metrics"]
    return pd.DataFrame(
        [
            {
                "passed": "yes" if diagnostics["passed"] else "NO",
                "failed checks": ", ".join(warn) if warn else "none",
                "max R-hat": _round(m["max_r_hat"], 3),
                "min ESS bulk": _round(m["min_ess_bulk"], 0),
                "divergences": m["divergences"],
            }
        ]
    )


def findings_view(diagnostics: dict[str, Any]) -> Any:
    """The findings (failures first) as a styled table that shows whole messages and remedies.

    A plain DataFrame display cuts text at 50 characters; the Styler keeps it, HTML-escaped
    (parameter names come from user data) and left-aligned.
    """
    df = findings_table(diagnostics["findings"]).drop(columns=["columns"])
    return (
        df.style.hide(axis="index")
        .format(escape="html")
        .set_properties(**{"text-align": "left", "white-space": "normal", "vertical-align": "top"})
        .set_table_styles([{"selector": "th", "props": [("text-align", "left")]}])
    )

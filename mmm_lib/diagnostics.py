"""Checks of the fitted model: convergence (the gate) and model checks (PSIS-LOO, posterior predictive).

Convergence: R-hat < 1.01, ESS bulk and tail > 400, no divergences, E-BFMI > 0.2 in every chain, and
fewer than 1 % of draws at the maximum tree depth (the original design's "Diagnostics"). Each check gives one
finding: ``info`` when it passes, ``warning`` when it fails, with the original design's troubleshooting advice as
remedy. Their verdict is ``passed``: the diagnostics gate reads it.

Model checks ask whether the model describes the data, not whether the sampler worked, and never
change ``passed``; their verdict is ``model_checks_passed``:

* PSIS-LOO (``az.loo`` on the ``log_likelihood`` group): Pareto k above ArviZ's sample-size threshold
  marks observations the fit depends on too much for LOO to be trusted (``PARETO_K_HIGH``);
* posterior predictive check (the ``posterior_predictive`` group against ``observed_data``, on the
  sales scale with :mod:`mmm_lib.checks`): the share of observed sales inside the 50 % and 90 %
  predictive bands (``PPC_COVERAGE_LOW`` / ``PPC_COVERAGE_HIGH``).

Numbers come from ArviZ: ``az.summary`` (R-hat, ESS), ``az.bfmi`` and ``az.loo``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
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
    # Model checks (never change ``passed``).
    # Observations allowed above ArviZ's Pareto-k threshold (min(1 - 1/log10(S), 0.7) for S draws).
    "pareto_k_high_max": 0.0,
    # Share of observed sales inside the central 50 % / 90 % posterior predictive bands. A calibrated
    # model covers about the nominal share; below the minimum it is over-confident (bands too narrow),
    # above the maximum under-confident (bands too wide). With few observations a limit is widened to
    # three binomial standard errors around the nominal share when that is wider (24 monthly points:
    # the 90 % band is flagged below 72 %, not 75 %). The 90 % band has no upper limit: covering every
    # point says little with ~100 observations; the 50 % band carries that information.
    "ppc_coverage_50_min": 0.35,
    "ppc_coverage_50_max": 0.70,
    "ppc_coverage_90_min": 0.75,
}

# Findings that make ``model_checks_passed`` false (a check that could not run leaves it null).
MODEL_CHECK_FAILURES = ("PARETO_K_HIGH", "PPC_COVERAGE_LOW", "PPC_COVERAGE_HIGH")

# numpyro records only the depth; its default max_tree_depth is 10.
NUMPYRO_MAX_TREE_DEPTH = 10

# The original design's troubleshooting advice; spec keys named as in params/*.yaml.
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
    "PARETO_K_HIGH": (
        "These observations are influential: the fit changes noticeably without them, so PSIS-LOO is unreliable "
        "for them. Look at those periods in the data (promotions, holidays, stock-outs, data errors); if they "
        "are real, add a control for them or try a heavier-tailed or better specified model (model.priors, "
        "controls, seasonality). To compare models despite them, use k-fold cross-validation (az.loo_kfold) "
        "or the holdout metrics."
    ),
    "PPC_COVERAGE_LOW": (
        "The model is over-confident: too many observed periods fall outside its predictive bands, so its "
        "intervals (ROI included) are too narrow. Look at the periods outside the band in the plots below "
        "(promotions, holidays, stock-outs, data errors); add controls or events for them, let the noise be "
        "larger or heavier-tailed (model.priors on sigma and nu), or improve the specification."
    ),
    "PPC_COVERAGE_HIGH": (
        "The model is under-confident: its predictive bands are wider than the data need, often because a "
        "driver or control is missing and its effect is absorbed as noise, or because the noise prior is "
        "wide (model.priors on sigma). Intervals, ROI included, will be wider than necessary."
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


def _ebfmi(idata: Any) -> list[float | None]:
    """E-BFMI per chain from ``az.bfmi`` (Betancourt 2016): mean squared energy change over the
    energy variance (ddof=1). ``None`` where it cannot be computed (non-finite energy)."""
    import arviz as az

    ss = _sample_stats(idata)
    values = np.atleast_1d(np.asarray(az.bfmi(ss[["energy"]])["energy"].transpose("chain", ...).values, dtype=float))
    return [float(v) if np.isfinite(v) else None for v in values]


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


# --------------------------------------------------------------------------- model checks


def _group(idata: Any, name: str) -> Any | None:
    if hasattr(idata, "children") and name in idata.children:
        return idata[name].to_dataset()
    return None


def coord_label(value: Any) -> str:
    """A coordinate value as people read it: dates as ``2024-03-04``."""
    if isinstance(value, (np.datetime64, pd.Timestamp)):
        ts = pd.Timestamp(value)
        return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat()
    return str(value)


def _nan(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def _pct(v: float | None) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.0f}%"


def _model_finding(severity: str, code: str, message: str, remedy: str, details: dict[str, Any]) -> Finding:
    # ``columns`` stays empty: it names parameters for the convergence gate; the observations a model
    # check concerns are in ``details``.
    return Finding(severity=severity, code=code, message=message, remedy=remedy,  # type: ignore[arg-type]
                   details={"check": "model", **details})


def loo_result(idata: Any, var_name: str = "z") -> Any:
    """``az.loo(idata, pointwise=True)`` on the ``log_likelihood`` group, or ``None`` when the group is missing.

    ArviZ's warning about high Pareto k is silenced: :func:`compute_diagnostics` reports it as a finding.
    """
    import arviz as az

    ll = _group(idata, "log_likelihood")
    post = _group(idata, "posterior")
    if ll is None or post is None or var_name not in ll:
        return None
    import xarray as xr

    tree = xr.DataTree.from_dict({"posterior": post, "log_likelihood": ll[[var_name]]})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        return az.loo(tree, pointwise=True, var_name=var_name)


def _loo_check(idata: Any, th: dict[str, float]) -> tuple[dict[str, Any] | None, Finding]:
    try:
        res = loo_result(idata)
    except Exception as err:  # noqa: BLE001 - a broken log-likelihood must not stop 05
        return None, _model_finding(
            "warning", "LOO_FAILED", f"PSIS-LOO could not be computed: {type(err).__name__}: {err}",
            "Check the log_likelihood group of posterior.nc (non-finite values?); re-run 04_fit.", {})  # fmt: skip
    if res is None:
        return None, _model_finding(
            "info", "LOO_NOT_RUN",
            "PSIS-LOO could not run: posterior.nc has no log_likelihood group (fitted before LOO support).",
            "Re-run 04_fit (it stores the pointwise log-likelihood) and then 05_diagnose.", {})  # fmt: skip
    k = res.pareto_k
    obs_dims = list(k.dims)
    thr = float(res.good_k)
    kv = np.asarray(k.values, dtype=float)
    high = kv > thr
    n_obs, n_high = int(kv.size), int(high.sum())
    order = np.argsort(-np.where(np.isfinite(kv), kv, -np.inf), axis=None, kind="stable")  # NaN k last
    influential = []
    for flat in order[: min(n_high, 10)]:
        idx = np.unravel_index(flat, kv.shape)
        row = {d: coord_label(k[d].values[i]) if d in k.coords else int(i) for d, i in zip(obs_dims, idx)}
        influential.append({**row, "pareto_k": float(kv[idx])})
    block = {
        "var_name": "z",
        "scale": "log",
        "elpd": float(res.elpd),
        "se": float(res.se),
        "p_loo": float(res.p),
        "n_obs": n_obs,
        "n_samples": int(res.n_samples),
        "pareto_k_threshold": thr,
        "n_pareto_k_high": n_high,
        "share_pareto_k_high": n_high / max(n_obs, 1),
        "max_pareto_k": float(np.nanmax(kv)) if np.isfinite(kv).any() else None,
        "influential": influential,
    }
    headline = f"elpd_loo {block['elpd']:.1f} (SE {block['se']:.1f}), p_loo {block['p_loo']:.1f}"
    details = {"n_pareto_k_high": n_high, "pareto_k_threshold": thr, "threshold": th["pareto_k_high_max"]}
    if n_high > th["pareto_k_high_max"]:
        worst = ", ".join(" ".join(str(v) for kk, v in r.items() if kk != "pareto_k") + f" (k {r['pareto_k']:.2f})"
                          for r in influential[:5])  # fmt: skip
        msg = (f"{n_high} of {n_obs} observations ({100 * n_high / n_obs:.1f}%) have Pareto k above {thr:.2f}; "
               f"most influential: {worst}. {headline}.")  # fmt: skip
        return block, _model_finding("warning", "PARETO_K_HIGH", msg, REMEDIES["PARETO_K_HIGH"], details)
    msg = (f"PSIS-LOO is reliable: Pareto k is at most {_fmt(_nan(block['max_pareto_k']))} (threshold {thr:.2f}) "
           f"for all {n_obs} observations; {headline} (the effective number of parameters).")  # fmt: skip
    return block, _model_finding("info", "LOO_OK", msg, "", details)


@dataclass
class PredictiveDraws:
    """Observed values and posterior predictive draws as arrays, entity first.

    ``observed`` is (E, T), ``draws`` (S, E, T) with chains stacked; ``scale`` is ``"sales"`` (with
    the model metadata's centres) or ``"model"`` (``z``, when no metadata was given).
    """

    observed: np.ndarray
    draws: np.ndarray
    entities: list[str]
    periods: np.ndarray
    scale: str


def predictive_draws(idata: Any, metadata: dict[str, Any] | None = None) -> PredictiveDraws | None:
    """The posterior predictive check's data (:class:`PredictiveDraws`), ``None`` when a group is missing.

    With ``metadata`` (``model_metadata.json``) both are sales (:func:`mmm_lib.checks.predictive_sales`);
    without, the model's scale ``z``. Band coverage per observation is the same on both scales (the
    map is monotone); only sums over entities need sales.
    """
    if _group(idata, "posterior_predictive") is None or _group(idata, "observed_data") is None:
        return None
    if "z" not in idata["posterior_predictive"].data_vars or "z" not in idata["observed_data"].data_vars:
        return None
    if metadata and metadata.get("target_centers"):
        from .checks import predictive_sales

        obs, pred = predictive_sales(idata, metadata)
        scale = "sales"
    else:
        obs, pred = idata["observed_data"]["z"], idata["posterior_predictive"]["z"]
        if "entity" not in obs.dims:
            obs, pred = obs.expand_dims(entity=["total"]), pred.expand_dims(entity=["total"], axis=-2)
        scale = "model"
    obs = obs.transpose("entity", ...)
    pred = pred.transpose("chain", "draw", "entity", ...)
    o = np.asarray(obs.values, dtype=float)
    d = np.asarray(pred.values, dtype=float).reshape(-1, *o.shape)
    rest = [dim for dim in obs.dims if dim != "entity"]
    periods = np.asarray(obs[rest[0]].values) if rest and rest[0] in obs.coords else np.arange(o.shape[-1])
    return PredictiveDraws(o, d, [str(e) for e in obs["entity"].values], periods, scale)


def _coverage(observed: np.ndarray, draws: np.ndarray) -> dict[str, Any]:
    from .checks import interval_coverage

    return {"n_obs": int(observed.size), **interval_coverage(observed, draws, (0.5, 0.9))}


def _limits(n: int, th: dict[str, float]) -> dict[str, list[float | None]]:
    """Coverage limits: the thresholds, widened to nominal ± 3 binomial SE when that is wider."""
    def se(p: float) -> float:
        return 3 * math.sqrt(p * (1 - p) / max(n, 1))

    return {
        "coverage_50": [min(th["ppc_coverage_50_min"], 0.5 - se(0.5)), max(th["ppc_coverage_50_max"], 0.5 + se(0.5))],
        "coverage_90": [min(th["ppc_coverage_90_min"], 0.9 - se(0.9)), None],
    }


def _judge(cov: dict[str, Any], th: dict[str, float]) -> str:
    """``low``, ``high`` or ``ok`` for one coverage dict (``n_obs``, ``coverage_50``, ``coverage_90``)."""
    lim = _limits(cov["n_obs"], th)
    cov["limits"] = lim
    if cov["coverage_50"] < lim["coverage_50"][0] or cov["coverage_90"] < lim["coverage_90"][0]:
        return "low"
    if cov["coverage_50"] > lim["coverage_50"][1]:
        return "high"
    return "ok"


def _ppc_check(idata: Any, metadata: dict[str, Any] | None, th: dict[str, float]) -> tuple[dict[str, Any] | None, Finding]:
    pd_ = predictive_draws(idata, metadata)
    if pd_ is None:
        return None, _model_finding(
            "info", "PPC_NOT_RUN",
            "The posterior predictive check could not run: posterior.nc has no posterior_predictive (or observed_data) "
            "group (fitted before predictive checks).",
            "Re-run 04_fit (it stores posterior predictive draws) and then 05_diagnose.", {})  # fmt: skip
    o, d = pd_.observed, pd_.draws
    overall = _coverage(o, d)
    verdicts = {"all": _judge(overall, th)}
    entities = None
    if len(pd_.entities) > 1:
        entities = {}
        for i, e in enumerate(pd_.entities):
            entities[e] = _coverage(o[i], d[:, i])
            verdicts[e] = _judge(entities[e], th)
            entities[e]["status"] = verdicts[e]
    brand = _coverage(o.sum(axis=0), d.sum(axis=1)) if len(pd_.entities) > 1 and pd_.scale == "sales" else None
    block = {
        "scale": pd_.scale,
        "n_draws": int(d.shape[0]),
        "n_obs": overall["n_obs"],
        "coverage_50": overall["coverage_50"],
        "coverage_90": overall["coverage_90"],
        "limits": overall["limits"],
        "status": verdicts["all"],
        "entities": entities,
        "brand_total": brand,
    }
    what = "observations of sales" if pd_.scale == "sales" else "observations (model scale)"
    head = (f"the 50% and 90% posterior predictive bands cover {_pct(overall['coverage_50'])} and "
            f"{_pct(overall['coverage_90'])} of the {overall['n_obs']} {what}")  # fmt: skip
    low = [k for k, v in verdicts.items() if v == "low"]
    high = [k for k, v in verdicts.items() if v == "high"]
    lim = overall["limits"]
    details = {"coverage_50": overall["coverage_50"], "coverage_90": overall["coverage_90"], "limits": lim,
               "entities_low": [e for e in low if e != "all"], "entities_high": [e for e in high if e != "all"]}  # fmt: skip

    def which(keys: list[str]) -> str:
        ents = [k for k in keys if k != "all"]
        if not ents:
            return ""
        shown = ", ".join(f"{e} ({_pct(entities[e]['coverage_50'])} / {_pct(entities[e]['coverage_90'])})" for e in ents[:5])
        more = f" and {len(ents) - 5} more" if len(ents) > 5 else ""
        return f"; stores/geos outside the limits (50% / 90% band coverage): {shown}{more}"

    if low:
        msg = (f"Predictive bands too narrow: {head} (flagged below {_pct(lim['coverage_50'][0])} for the 50% band "
               f"or {_pct(lim['coverage_90'][0])} for the 90% band){which(low)}.")  # fmt: skip
        return block, _model_finding("warning", "PPC_COVERAGE_LOW", msg, REMEDIES["PPC_COVERAGE_LOW"], details)
    if high:
        msg = f"Predictive bands too wide: {head} (flagged above {_pct(lim['coverage_50'][1])} for the 50% band){which(high)}."
        return block, _model_finding("warning", "PPC_COVERAGE_HIGH", msg, REMEDIES["PPC_COVERAGE_HIGH"], details)
    msg = f"The model reproduces the data's spread: {head}, close to the nominal 50% and 90%."
    return block, _model_finding("info", "PPC_OK", msg, "", details)


def compute_diagnostics(idata: Any, thresholds: dict[str, float] | None = None,
                        metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check convergence, sampler health and the model; the content of ``diagnostics.json``.

    Parameters
    ----------
    idata
        The fitted DataTree (``posterior`` and ``sample_stats``; for the model checks also
        ``log_likelihood``, ``posterior_predictive`` and ``observed_data``), e.g. ``run.read_posterior()``.
    thresholds
        Overrides of :data:`THRESHOLDS` (keys ``r_hat_max``, ``ess_bulk_min``, ``ess_tail_min``,
        ``divergences_max``, ``ebfmi_min``, ``pct_max_treedepth_max``, ``pareto_k_high_max``,
        ``ppc_coverage_50_min``, ``ppc_coverage_50_max``, ``ppc_coverage_90_min``).
    metadata
        ``model_metadata.json`` (its ``target_centers``): the predictive check is then on the sales
        scale and reports the brand total; without it, on the model's scale ``z``.

    Returns
    -------
    dict
        ``{"passed", "model_checks_passed", "thresholds", "metrics": {"max_r_hat", "min_ess_bulk",
        "min_ess_tail", "divergences", "ebfmi", "pct_max_treedepth"}, "parameters": [{"name", "var",
        "coord", "r_hat", "ess_bulk", "ess_tail"}], "loo", "ppc", "findings": [Finding as dict]}``.

        ``passed`` is the convergence verdict (the gate reads it): true only when every convergence
        check ran and passed. A check whose sample stat is missing gives a ``*_UNAVAILABLE`` warning
        and a ``null`` metric. Model checks never change it.

        ``model_checks_passed``: ``true`` when PSIS-LOO and the predictive check both ran without a
        warning, ``false`` when either warned, ``null`` when none warned but one could not run.

        ``loo`` (``null`` without a ``log_likelihood`` group)::

            {"var_name": "z", "scale": "log", "elpd": 786.6, "se": 15.5, "p_loo": 25.3,
             "n_obs": 520, "n_samples": 2000, "pareto_k_threshold": 0.697,
             "n_pareto_k_high": 0, "share_pareto_k_high": 0.0, "max_pareto_k": 0.48,
             "influential": [{"entity": "store_003", "period": "2023-05-01", "pareto_k": 0.91}, ...]}

        ``elpd`` is on the model's scale (log density of ``z``); ``influential`` lists the observations
        above the threshold, worst first (at most 10), keyed by the observation dims (``period`` only
        for brand-level models).

        ``ppc`` (``null`` without ``posterior_predictive`` or ``observed_data``)::

            {"scale": "sales", "n_draws": 2000, "n_obs": 520, "coverage_50": 0.50, "coverage_90": 0.91,
             "limits": {"coverage_50": [0.35, 0.70], "coverage_90": [0.75, null]}, "status": "ok",
             "entities": {"store_001": {"n_obs": 104, "coverage_50": .., "coverage_90": ..,
                                        "limits": {...}, "status": "ok"}, ...},
             "brand_total": {"n_obs": 104, "coverage_50": .., "coverage_90": ..}}

        Coverage is the share of observations inside the central predictive band; ``status`` is
        ``ok``, ``low`` or ``high`` against ``limits`` (see :data:`THRESHOLDS`). ``entities`` is
        ``null`` for brand-level models; ``brand_total`` (sales summed over entities per period,
        informational) is ``null`` for brand-level models and on the model scale.

        Model-check findings (``LOO_OK``, ``PARETO_K_HIGH``, ``LOO_NOT_RUN``, ``LOO_FAILED``, ``PPC_OK``,
        ``PPC_COVERAGE_LOW``, ``PPC_COVERAGE_HIGH``, ``PPC_NOT_RUN``) carry
        ``details["check"] == "model"`` and no ``columns``.
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
    n_chains = _n_chains(idata)
    if n_chains < 2:  # R-hat compares chains: with one, ArviZ gives NaN for every parameter
        ok_all = False
        msg = (f"R-hat cannot be computed: it compares chains, and this fit has {n_chains}; convergence is not "
               f"checked")
        one = _finding("RHAT_HIGH", False, msg, [], {"max_r_hat": max_r_hat, "threshold": th["r_hat_max"],
                                                      "n_failing": n_par, "chains": n_chains})
        one.remedy = "Sample 2 or more chains (4 for a report you will act on): --set chains=4."
        findings.append(one)
    elif bad.any():
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

    # E-BFMI per chain (az.bfmi)
    if ss is not None and "energy" in ss:
        ebfmi = _ebfmi(idata)
        metrics_extra["ebfmi"] = ebfmi
        low = [c for c, v in enumerate(ebfmi) if v is None or not v > th["ebfmi_min"]]
        if low:
            ok_all = False
            msg = f"E-BFMI is not above {th['ebfmi_min']} in chain(s) " + ", ".join(f"{c} ({_fmt(_nan(ebfmi[c]))})" for c in low)
        else:
            msg = f"E-BFMI above {th['ebfmi_min']} in all {len(ebfmi)} chains (min {_fmt(min(v for v in ebfmi if v is not None))})"
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
    loo, loo_finding = _loo_check(idata, th)
    ppc, ppc_finding = _ppc_check(idata, metadata, th)
    model_findings = [loo_finding, ppc_finding]
    if any(f.code in MODEL_CHECK_FAILURES for f in model_findings):
        model_ok: bool | None = False
    elif loo is None or ppc is None:
        model_ok = None
    else:
        model_ok = True
    findings += model_findings

    return {
        "passed": bool(ok_all),
        "model_checks_passed": model_ok,
        "thresholds": th,
        "metrics": {
            "max_r_hat": max_r_hat,
            "min_ess_bulk": mins["ess_bulk"],
            "min_ess_tail": mins["ess_tail"],
            **metrics_extra,
        },
        "parameters": params,
        "loo": loo,
        "ppc": ppc,
        "findings": [f.to_dict() for f in findings],
    }


def _order(names: list[str], values: np.ndarray, high_is_bad: bool) -> list[str]:
    vals = np.where(np.isfinite(values), values, np.inf if high_is_bad else -np.inf)
    idx = np.argsort(-vals if high_is_bad else vals, kind="stable")
    return [names[i] for i in idx]


def _n_chains(idata: Any) -> int:
    post = idata["posterior"] if hasattr(idata, "children") and "posterior" in idata.children else idata
    return int(dict(post.sizes).get("chain", 1))


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


def _is_model_finding(f: dict[str, Any]) -> bool:
    return (f.get("details") or {}).get("check") == "model"


def _model_verdict(flag: bool | None) -> str:
    return "not run" if flag is None else ("pass" if flag else "WARN")


def diagnostics_headline(diagnostics: dict[str, Any]) -> pd.DataFrame:
    """One-row summary for the end of 05_diagnose: the convergence verdict, failed checks and model checks."""
    warn = [f["code"] for f in diagnostics["findings"] if f["severity"] != "info" and not _is_model_finding(f)]
    model_warn = [f["code"] for f in diagnostics["findings"] if f["severity"] != "info" and _is_model_finding(f)]
    m = diagnostics["metrics"]
    model = _model_verdict(diagnostics.get("model_checks_passed"))
    return pd.DataFrame(
        [
            {
                "passed": "yes" if diagnostics["passed"] else "NO",
                "failed checks": ", ".join(warn) if warn else "none",
                "max R-hat": _round(m["max_r_hat"], 3),
                "min ESS bulk": _round(m["min_ess_bulk"], 0),
                "divergences": m["divergences"],
                "model checks": f"{model} ({', '.join(model_warn)})" if model_warn else model,
            }
        ]
    )


def model_checks_table(diagnostics: dict[str, Any]) -> pd.DataFrame:
    """The model checks (PSIS-LOO and posterior predictive coverage): value, rule and result per check.

    ``n/a`` where the check could not run (the posterior lacks its group).
    """
    loo, ppc = diagnostics.get("loo"), diagnostics.get("ppc")
    th = {**THRESHOLDS, **(diagnostics.get("thresholds") or {})}
    rows = []
    if loo is None:
        rows.append({"check": "PSIS-LOO: observations with high Pareto k", "value": "n/a", "rule": "", "result": "n/a"})
        rows.append({"check": "PSIS-LOO: elpd_loo (SE), p_loo", "value": "n/a", "rule": "", "result": "n/a"})
    else:
        n, thr = loo["n_pareto_k_high"], loo["pareto_k_threshold"]
        ok = n <= th["pareto_k_high_max"]
        rows.append({"check": "PSIS-LOO: observations with high Pareto k", "value": f"{n} of {loo['n_obs']}",
                     "rule": f"k <= {thr:.2f} for all", "result": "pass" if ok else "WARN"})  # fmt: skip
        rows.append({"check": "PSIS-LOO: elpd_loo (SE), p_loo", "value": f"{loo['elpd']:.1f} ({loo['se']:.1f}), {loo['p_loo']:.1f}",
                     "rule": "higher elpd = better predictions (compare models on the same data)", "result": ""})  # fmt: skip
    for band in ("50", "90"):
        check = f"observed sales inside the {band}% predictive band"
        if ppc is None:
            rows.append({"check": check, "value": "n/a", "rule": "", "result": "n/a"})
            continue
        v = ppc[f"coverage_{band}"]
        lo, hi = ppc["limits"][f"coverage_{band}"]
        ok = v >= lo and (hi is None or v <= hi)
        rule = f"{_pct(lo)} to {_pct(hi)}" if hi is not None else f">= {_pct(lo)}"
        rows.append({"check": check, "value": _pct(v), "rule": f"{rule} (nominal {band}%)", "result": "pass" if ok else "WARN"})
    return pd.DataFrame(rows, columns=["check", "value", "rule", "result"])


def ppc_coverage_table(diagnostics: dict[str, Any]) -> pd.DataFrame:
    """Band coverage of the posterior predictive check: all observations, the brand total and each entity.

    Columns ``series``, ``observations``, ``50% band covers``, ``90% band covers``, ``result``
    (percentages as text). One ``n/a`` row saying why when the check did not run.
    """
    ppc = diagnostics.get("ppc")
    cols = ["series", "observations", "50% band covers", "90% band covers", "result"]
    if not ppc:
        return pd.DataFrame([{"series": "not run: no posterior predictive draws in posterior.nc (re-run 04_fit)",
                              "observations": 0, "50% band covers": "n/a", "90% band covers": "n/a", "result": "n/a"}],
                            columns=cols)  # fmt: skip

    def row(name: str, c: dict[str, Any], status: str | None) -> dict[str, Any]:
        result = "" if status is None else {"ok": "pass", "low": "WARN: too narrow", "high": "WARN: too wide"}[status]
        return {"series": name, "observations": c["n_obs"], "50% band covers": _pct(c["coverage_50"]),
                "90% band covers": _pct(c["coverage_90"]), "result": result}  # fmt: skip

    ents = ppc.get("entities") or {}
    rows = [row("all observations" if ents else "brand", ppc, ppc["status"])]
    if ppc.get("brand_total"):
        rows.append(row("brand total (sum over stores/geos, for information)", ppc["brand_total"], None))
    rows += [row(str(e), c, c.get("status")) for e, c in ents.items()]
    return pd.DataFrame(rows, columns=cols)


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

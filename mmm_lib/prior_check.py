"""Prior predictive check for 04_fit: do the priors, before seeing the data, allow sales of its order of magnitude?

``posterior.nc``'s ``prior_predictive`` group holds sales simulated from the priors alone (on the model's
scale ``z``; ``pm.sample_prior_predictive`` on the fitted model). A sensible prior puts most of these
draws within an order of magnitude of the observed sales; one that spreads them over many orders of
magnitude says "anything goes" and leaves everything to the data, which with two years of weekly data
gives unstable channel effects. The check is deliberately lenient (a factor of 10 either side): it
catches priors that are wrong by orders of magnitude, not ones that are merely wide.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .findings import Finding

FACTOR = 10.0  # the band around the data: [observed min / FACTOR, observed max × FACTOR]
IN_RANGE_MIN = 0.5  # PRIOR_PREDICTIVE_WIDE below this share of prior predictive draws in the band

REMEDY = (
    "Tighten the priors in the run spec's model.priors (docs/MODEL.md lists every prior by name): most often "
    "the noise scale (sigma), the intercept's sigma or the channel effects' scale (sigma_beta). Re-run 04_fit "
    "and check that this share rises; posterior results from a prior this vague lean entirely on the data."
)


def prior_sales_arrays(idata: Any, metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """Observed and prior predictive values on the log-sales scale ``log1p(sales)``, entity first.

    Returns ``{"observed": (E, T), "prior": (S, E, T), "entities", "periods"}`` or ``None`` when
    ``prior_predictive`` / ``observed_data`` (variable ``z``) or the metadata's ``target_centers``
    are missing. Kept in logs: prior draws can be far too large for ``exp``.
    """
    children = getattr(idata, "children", {})
    if "prior_predictive" not in children or "observed_data" not in children:
        return None
    if "z" not in idata["prior_predictive"].data_vars or "z" not in idata["observed_data"].data_vars:
        return None
    centres = {str(k): float(v) for k, v in (metadata or {}).get("target_centers", {}).items()}
    if not centres:
        return None
    obs, prior = idata["observed_data"]["z"], idata["prior_predictive"]["z"]
    if "entity" not in prior.dims:
        prior = prior.expand_dims(entity=[next(iter(centres))], axis=-2)
    if "entity" not in obs.dims:
        obs = obs.expand_dims(entity=[str(prior["entity"].values[0])])
    obs = obs.transpose("entity", ...)
    prior = prior.transpose("chain", "draw", "entity", ...)
    ents = [str(e) for e in obs["entity"].values]
    c = np.array([centres.get(e, np.nan) for e in ents], dtype=float)[:, None]
    o = np.asarray(obs.values, dtype=float) + c
    p = np.asarray(prior.values, dtype=float).reshape(-1, *o.shape) + c[None]
    rest = [d for d in obs.dims if d != "entity"]
    periods = np.asarray(obs[rest[0]].values) if rest and rest[0] in obs.coords else np.arange(o.shape[-1])
    return {"observed": o, "prior": p, "entities": ents, "periods": periods}


def prior_predictive_check(idata: Any, metadata: Mapping[str, Any], factor: float = FACTOR,
                           in_range_min: float = IN_RANGE_MIN) -> dict[str, Any]:
    """Share of prior predictive sales within ``[observed min / factor, observed max × factor]`` (per entity).

    Parameters
    ----------
    idata
        The fit's DataTree (``prior_predictive`` and ``observed_data``, variable ``z``).
    metadata
        ``model_metadata.json`` (its ``target_centers`` map ``z`` back to sales).
    factor, in_range_min
        The band around the data and the share of draws that must fall in it.

    Returns
    -------
    dict
        ``{"passed", "factor", "threshold", "n_draws", "share_in_range", "share_below",
        "share_above", "entities": {entity: {"observed_min", "observed_max", "low", "high",
        "share_in_range"}}, "findings": [Finding as dict]}``: shares over every prior draw and
        observation; ``passed`` is ``None`` (and the shares ``None``) when the groups are missing.
        The finding is ``PRIOR_PREDICTIVE_OK`` (info), ``PRIOR_PREDICTIVE_WIDE`` (warning) or
        ``PRIOR_PREDICTIVE_NOT_RUN`` (info).
    """
    if factor <= 1:
        raise ValueError(f"factor must be above 1 (the band is observed min / factor .. max × factor), got {factor}")
    out: dict[str, Any] = {"passed": None, "factor": float(factor), "threshold": float(in_range_min), "n_draws": 0,
                           "share_in_range": None, "share_below": None, "share_above": None, "entities": None}  # fmt: skip
    arr = prior_sales_arrays(idata, metadata)
    if arr is None:
        f = Finding("info", "PRIOR_PREDICTIVE_NOT_RUN",
                    "The prior predictive check could not run: no prior_predictive or observed_data group, or no "
                    "target_centers in the model metadata.",
                    "Re-run 04_fit: it draws from the prior after sampling.")  # fmt: skip
        return {**out, "findings": [f.to_dict()]}
    o, p = arr["observed"], arr["prior"]  # log1p(sales)
    sales = np.expm1(o)
    lo_s = np.nanmin(sales, axis=1) / factor
    hi_s = np.nanmax(sales, axis=1) * factor
    lo, hi = np.log1p(np.maximum(lo_s, 0.0))[None, :, None], np.log1p(hi_s)[None, :, None]
    below, above = p < lo, p > hi
    inside = ~(below | above) & np.isfinite(p)
    out.update(n_draws=int(p.shape[0]), share_in_range=float(inside.mean()), share_below=float(below.mean()),
               share_above=float(above.mean()))  # fmt: skip
    out["entities"] = {
        e: {"observed_min": float(np.nanmin(sales[i])), "observed_max": float(np.nanmax(sales[i])),
            "low": float(lo_s[i]), "high": float(hi_s[i]), "share_in_range": float(inside[:, i].mean())}
        for i, e in enumerate(arr["entities"])
    }  # fmt: skip
    share = out["share_in_range"]
    band = f"between 1/{factor:g} of the lowest and {factor:g}× the highest observed sales" + (
        " of each store/geo" if len(arr["entities"]) > 1 else "")
    details = {k: out[k] for k in ("share_in_range", "share_below", "share_above", "factor", "threshold")}
    if share < in_range_min:
        side = "above (far larger sales)" if out["share_above"] >= out["share_below"] else "below (far smaller sales)"
        msg = (f"Only {100 * share:.0f}% of the sales simulated from the priors fall {band} "
               f"(at least {100 * in_range_min:.0f}% expected); most of the rest lie {side}: the priors allow sales "
               f"orders of magnitude away from the data.")  # fmt: skip
        f = Finding("warning", "PRIOR_PREDICTIVE_WIDE", msg, REMEDY, details=details)
        out["passed"] = False
    else:
        msg = (f"{100 * share:.0f}% of the sales simulated from the priors fall {band}: the priors allow sales of "
               f"the data's order of magnitude ({100 * out['share_below']:.0f}% below, {100 * out['share_above']:.0f}% "
               f"above).")  # fmt: skip
        f = Finding("info", "PRIOR_PREDICTIVE_OK", msg, details=details)
        out["passed"] = True
    return {**out, "findings": [f.to_dict()]}

"""Compare finished runs of the same data: ELPD-LOO, holdout error, ROI side by side, diagnostics.

``mmm compare RUN_A RUN_B …`` calls :func:`compare_runs` and :func:`write_comparison`. The typical
questions: fixed vs learned transforms, brand- vs entity-level, Hill vs logistic saturation.

What is comparable, and why:

* **Same data and window, or nothing.** Two runs are compared only when they model the same target
  (name, grain, source entities), over the same periods (first estimation period to last period),
  with the same holdout, and the target's brand total agrees period by period (the canonical data
  summed over entities, so a brand-level run and an entity-level run of one file agree). Anything
  else is refused (:class:`CompareRefused`) with the thing that differs named.
* **ELPD-LOO** (``az.compare`` on the ``log_likelihood`` group of ``posterior.nc``) ranks runs only
  when their likelihoods score the same observations: same dims, same coordinates, same observed
  values. A brand-level model scores brand-total periods and an entity-level one scores entity ×
  period cells, so their ELPDs are on different observations and are not ranked (the reason is
  given); runs are grouped by what they observe and each group of two or more is ranked.
* **Holdout error** (``fit_metrics.json`` → ``holdout.brand``: CRPS, MAPE, coverage on the brand
  total) ranks runs with the same held-out periods, brand- and entity-level alike.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import artifacts
from .columns import ENTITY_COL, PERIOD_COL
from .status import now_iso
from .storage import ArtifactMissing, outputs_root, read_json, read_parquet, run_dir, validate_id
from .tables import fmt_fixed

LOO_VAR = "z"
# Differences in ELPD below this are small whatever their SE (Sivula, Magnusson & Vehtari 2022; loo FAQ).
SMALL_ELPD_DIFF = 4.0
# Spec keys that say where the data came from or how it was sampled, not what was modelled: they are
# shown as context, never as "what differs".
_SPEC_KEYS_HIDDEN = ("random_seed",)
_RTOL = 1e-9


class CompareRefused(ValueError):
    """The runs cannot be compared (different data, window or holdout), or the request itself is invalid."""


# --------------------------------------------------------------------------- loading


@dataclass
class RunInputs:
    """What a comparison reads from one run folder (optional artifacts are ``None`` when absent)."""

    run_id: str
    dir: Path
    column_info: dict[str, Any]
    metadata: dict[str, Any]
    canonical: pd.DataFrame
    spec: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    diagnostics: dict[str, Any] | None = None
    fit_metrics: dict[str, Any] | None = None
    roi: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def _required(folder: Path, run_id: str, name: str) -> Any:
    path = folder / name
    if not path.is_file():
        raise ArtifactMissing(
            f"run {run_id!r} has no {name} (in {folder}); run {artifacts.producer(name)} for this run first "
            f"(`mmm runs status {run_id}` shows where it stopped)"
        )
    if name.endswith(".parquet"):
        return read_parquet(path)
    return artifacts.check_on_read(name, read_json(path), where=f"run {run_id!r} ({folder})")


def _optional(folder: Path, name: str) -> Any:
    path = folder / name
    return read_json(path) if path.is_file() else None


def load_run(run_id: str) -> RunInputs:
    """Read the artifacts a comparison needs from ``outputs/runs/<run_id>``.

    Raises
    ------
    CompareRefused
        The id is not allowed or there is no such run.
    ArtifactMissing
        The run has not reached 04_fit (no model metadata) or 02_canonicalize.
    """
    try:
        folder = run_dir(run_id)
    except ValueError as e:
        raise CompareRefused(str(e)) from None
    if not folder.is_dir():
        raise CompareRefused(f"run {run_id!r} not found in {folder.parent}; `mmm runs list` shows what exists")
    r = RunInputs(
        run_id=run_id,
        dir=folder,
        column_info=_required(folder, run_id, "column_info.json"),
        canonical=_required(folder, run_id, "canonical_data.parquet"),
        metadata=_required(folder, run_id, "model_metadata.json"),
        spec=_optional(folder, "run_spec.json"),
        status=_optional(folder, "status.json"),
        diagnostics=_optional(folder, "diagnostics.json"),
        fit_metrics=_optional(folder, "fit_metrics.json"),
        roi=_optional(folder, "roi_metrics.json"),
    )
    state = (r.status or {}).get("status")
    if state not in (None, "completed"):
        r.notes.append(f"run {run_id!r} is {state} (stage {(r.status or {}).get('stage')}): missing numbers show as –")
    return r


# --------------------------------------------------------------------------- same data?


def _iso(x: Any) -> str | None:
    return None if x is None else str(pd.Timestamp(x).date())


def _grain_word(grain: str | None, n: int) -> str:
    word = {"WEEK": "week", "MONTH": "month"}.get(str(grain), "period")
    return f"{n} {word}{'' if n == 1 else 's'}"


def _used_rows(r: RunInputs) -> pd.DataFrame:
    """Canonical rows the model saw or predicted: estimation and holdout (carry-over only warms up adstock)."""
    df = r.canonical
    return df[df["window"] != "carryover"] if "window" in df.columns else df


def brand_total(r: RunInputs) -> pd.Series:
    """The target per period summed (or averaged, as ``column_info`` aggregates it) over entities."""
    target = r.column_info["target"]
    how = r.column_info.get("aggregation", {}).get(target, "sum")
    rows = _used_rows(r)
    s = rows.groupby(pd.to_datetime(rows[PERIOD_COL]))[target].agg("mean" if how == "mean" else "sum")
    return s.sort_index().astype(float)


def data_identity(r: RunInputs) -> dict[str, Any]:
    """What makes two runs "the same data and window": target, grain, entities, periods, holdout, brand total.

    ``fingerprint`` is a short hash of the target name and the brand total per period (6 significant
    digits): equal fingerprints mean the same observations; the comparison itself allows rounding.
    """
    ci = r.column_info
    w = ci.get("windows") or {}
    total = brand_total(r)
    periods = total.index
    rows = _used_rows(r)
    n_hold = int(w.get("n_holdout") or 0)
    if "window" in rows.columns and not n_hold:
        n_hold = int(rows.loc[rows["window"] == "holdout", PERIOD_COL].nunique())
    holdout = None
    if n_hold:
        hp = (pd.to_datetime(rows.loc[rows["window"] == "holdout", PERIOD_COL]) if "window" in rows.columns
              else periods[-n_hold:])  # fmt: skip
        holdout = {"periods": n_hold, "start": _iso(w.get("first_holdout_period") or hp.min()), "end": _iso(hp.max())}
    h = hashlib.sha256(str(ci["target"]).encode())
    for p, v in total.items():
        h.update(f"{p.date()}={v:.6g};".encode())
    return {
        "target": ci["target"],
        "grain": ci.get("grain"),
        "source_entities": sorted(map(str, ci.get("source_entities") or ci.get("entities") or [])),
        "first_period": _iso(w.get("first_estimation_period") or (periods.min() if len(periods) else None)),
        "last_period": _iso(w.get("last_period") or (periods.max() if len(periods) else None)),
        "n_periods": int(len(periods)),
        "carryover_start": _iso(w["carryover_start"]) if w.get("carryover_start") else None,
        "holdout": holdout,
        "fingerprint": h.hexdigest()[:16],
    }


def _entity_series(r: RunInputs) -> pd.Series | None:
    if r.column_info.get("level") != "entity":
        return None
    rows = _used_rows(r)
    s = rows.set_index([rows[ENTITY_COL].astype(str), pd.to_datetime(rows[PERIOD_COL])])[r.column_info["target"]]
    return s.sort_index().astype(float)


def _series_difference(a: pd.Series, b: pd.Series, what: str, ida: str, idb: str) -> str | None:
    if not a.index.equals(b.index):
        return None  # the window check already names different periods
    bad = ~np.isclose(a.to_numpy(), b.to_numpy(), rtol=_RTOL, atol=1e-9)
    if not bad.any():
        return None
    k = int(np.flatnonzero(bad)[0])
    where = a.index[k]
    where = ", ".join(str(pd.Timestamp(x).date()) if isinstance(x, pd.Timestamp) else str(x) for x in where) \
        if isinstance(where, tuple) else str(pd.Timestamp(where).date())  # fmt: skip
    return (f"the data differ: {what} differs in {int(bad.sum())} of {len(bad)} periods "
            f"(first at {where}: {a.iloc[k]:,.6g} in {ida!r}, {b.iloc[k]:,.6g} in {idb!r})")  # fmt: skip


def _holdout_text(h: dict[str, Any] | None, grain: str | None) -> str:
    if not h:
        return "no holdout"
    return f"the last {_grain_word(grain, h['periods'])} held out ({h['start']} → {h['end']})"


def data_differences(a: RunInputs, b: RunInputs) -> list[str]:
    """Why runs ``a`` and ``b`` are not the same data and window (empty when they are)."""
    ia, ib = data_identity(a), data_identity(b)
    na, nb = a.run_id, b.run_id
    out: list[str] = []
    if ia["target"] != ib["target"]:
        out.append(f"the target differs: {ia['target']!r} in {na!r}, {ib['target']!r} in {nb!r}")
    if ia["grain"] != ib["grain"]:
        out.append(f"the grain differs: {ia['grain']} in {na!r}, {ib['grain']} in {nb!r}")
    if ia["source_entities"] != ib["source_entities"]:
        only_a = sorted(set(ia["source_entities"]) - set(ib["source_entities"]))
        only_b = sorted(set(ib["source_entities"]) - set(ia["source_entities"]))
        bits = [f"only in {na!r}: {', '.join(only_a[:5])}" if only_a else "",
                f"only in {nb!r}: {', '.join(only_b[:5])}" if only_b else ""]  # fmt: skip
        out.append("the source entities differ (" + "; ".join(x for x in bits if x) + ")")
    span = ("first_period", "last_period", "n_periods")
    if any(ia[k] != ib[k] for k in span):
        out.append(
            f"the estimation window differs: {ia['first_period']} → {ia['last_period']} "
            f"({_grain_word(ia['grain'], ia['n_periods'])}) in {na!r}, {ib['first_period']} → {ib['last_period']} "
            f"({_grain_word(ib['grain'], ib['n_periods'])}) in {nb!r} (windows.estimation_months)"
        )
    if ia["holdout"] != ib["holdout"]:
        out.append(
            f"the holdout differs: {_holdout_text(ia['holdout'], ia['grain'])} in {na!r}, "
            f"{_holdout_text(ib['holdout'], ib['grain'])} in {nb!r}: they were fitted on different periods "
            "(windows.holdout_periods)"
        )
    if not out:
        d = _series_difference(brand_total(a), brand_total(b), f"the brand total of {ia['target']!r}", na, nb)
        if d is None:
            ea, eb = _entity_series(a), _entity_series(b)
            if ea is not None and eb is not None:
                d = _series_difference(ea, eb, f"{ia['target']!r} per entity", na, nb)
        if d:
            out.append(d)
    return out


def check_same_data(runs: list[RunInputs]) -> None:
    """Refuse (:class:`CompareRefused`) unless every run has the first run's data and window."""
    problems = []
    for other in runs[1:]:
        diffs = data_differences(runs[0], other)
        if diffs:
            problems.append(f"{runs[0].run_id!r} and {other.run_id!r}: " + "; ".join(diffs))
    if problems:
        raise CompareRefused(
            "runs are not comparable: " + " | ".join(problems) + ". Compare runs of the same data over the same "
            "estimation window and holdout: rerun one of them with the other's data and windows "
            "(`mmm runs spec RUN_ID` shows a run's settings)"
        )


# --------------------------------------------------------------------------- what differs between the runs


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def spec_differences(runs: list[RunInputs]) -> list[dict[str, Any]]:
    """Spec settings that differ between the runs, e.g. ``model.transforms``: fixed vs learned."""
    flat = [_flatten(r.spec or {}) for r in runs]
    keys = sorted(set().union(*flat))
    out = []
    for k in keys:
        if any(h in k for h in _SPEC_KEYS_HIDDEN):
            continue
        vals = [f.get(k) for f in flat]
        if any(v != vals[0] for v in vals[1:]):
            out.append({"key": k, "values": {r.run_id: v for r, v in zip(runs, vals)}})
    return out


def describe_run(r: RunInputs) -> dict[str, Any]:
    """One run's model in words and labels (for tables and legends)."""
    m = r.metadata
    ents = m.get("entities") or r.column_info.get("entities") or []
    status, spec = r.status or {}, r.spec or {}
    return {
        "run_id": r.run_id,
        "model": m.get("model"),
        "transforms": m.get("transforms", "fixed"),
        "level": m.get("level", "brand"),
        "saturation": m.get("saturation"),
        "n_entities": len(ents),
        "channels": list(m.get("channels") or []),
        "n_obs": m.get("n_obs"),
        "status": status.get("status"),
        "data_source": spec.get("data_path") or (f"dataset {spec['dataset_id']}" if spec.get("dataset_id") else None),
        "index": str(r.dir / "index.html") if (r.dir / "index.html").is_file() else None,
    }


# --------------------------------------------------------------------------- ELPD-LOO


@dataclass
class _LooInput:
    run_id: str
    elpd: Any = None  # ELPDData
    dims: tuple[str, ...] = ()
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    observed: np.ndarray | None = None
    description: str = ""
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)


def _observations(dims: tuple[str, ...], shape: tuple[int, ...], grain: str | None) -> str:
    sizes = dict(zip(dims, shape))
    n_t = int(np.prod([v for k, v in sizes.items() if k != "entity"])) if sizes else 0
    if "entity" in sizes:
        return f"{sizes['entity']} entities × {_grain_word(grain, n_t)}"
    return f"{_grain_word(grain, n_t)} of the brand total"


def _squeeze_entity(dims: tuple[str, ...], coords: dict[str, np.ndarray], values: np.ndarray | None) -> tuple:
    """Drop a length-1 ``entity`` dim: one series is one series, whether named ``brand`` or after its one store."""
    if "entity" not in dims or len(coords.get("entity", [0, 0])) != 1:
        return dims, coords, values
    k = dims.index("entity")
    vals = None if values is None or values.ndim != len(dims) else np.take(values, 0, axis=k)
    return tuple(d for d in dims if d != "entity"), {d: c for d, c in coords.items() if d != "entity"}, vals


def _loo_input(r: RunInputs) -> _LooInput:
    import xarray as xr

    out = _LooInput(r.run_id)
    path = r.dir / "posterior.nc"
    if not path.is_file():
        out.reason = f"{r.run_id!r} has no posterior.nc (run 04_fit)"
        return out
    with xr.open_datatree(path, engine="netcdf4") as tree:
        groups = set(tree.children)
        if "log_likelihood" not in groups or LOO_VAR not in tree["log_likelihood"].data_vars:
            out.reason = (f"{r.run_id!r} has no pointwise log-likelihood in posterior.nc (fitted before LOO "
                          "support): rerun 04_fit and the stages after it")  # fmt: skip
            return out
        if "posterior" not in groups:
            out.reason = f"{r.run_id!r} has no posterior group in posterior.nc: rerun 04_fit"
            return out
        ll = tree["log_likelihood"].to_dataset()[[LOO_VAR]].load()
        post = tree["posterior"].to_dataset().load()
        obs = tree["observed_data"].to_dataset()[LOO_VAR].load() if "observed_data" in groups else None
    z = ll[LOO_VAR]
    out.dims = tuple(d for d in z.dims if d not in ("chain", "draw"))
    out.coords = {d: np.asarray(z[d].values) for d in out.dims if d in z.coords}
    if obs is not None:
        # Compare log1p(sales), not z: z is centred per entity, and a centre is a modelling choice.
        centres = r.metadata.get("target_centers") or {}
        o = obs.transpose(*out.dims) if set(obs.dims) == set(out.dims) else obs
        vals = np.asarray(o.values, dtype=float)
        if centres and "entity" in o.dims:
            c = np.array([centres.get(str(e), 0.0) for e in o["entity"].values], dtype=float)
            vals = vals + c.reshape([-1 if d == "entity" else 1 for d in o.dims])
        elif centres:
            vals = vals + float(next(iter(centres.values())))
        elif r.metadata.get("target_center") is not None:
            vals = vals + float(r.metadata["target_center"])
        out.observed = vals
    out.dims, out.coords, out.observed = _squeeze_entity(out.dims, out.coords, out.observed)
    out.description = _observations(out.dims, tuple(z.sizes[d] for d in out.dims), r.column_info.get("grain"))
    import arviz as az
    from xarray import DataTree

    tree = DataTree.from_dict({"posterior": post, "log_likelihood": ll})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out.elpd = az.loo(tree, pointwise=True, var_name=LOO_VAR)
    out.warnings = sorted({str(w.message) for w in caught})
    return out


def _same_observations(a: _LooInput, b: _LooInput) -> bool:
    if a.dims != b.dims or set(a.coords) != set(b.coords):
        return False
    for d in a.dims:
        ca, cb = a.coords.get(d), b.coords.get(d)
        if ca is None or cb is None or len(ca) != len(cb) or not np.array_equal(ca.astype(str), cb.astype(str)):
            return False
    if a.observed is None or b.observed is None:
        return a.observed is None and b.observed is None
    return a.observed.shape == b.observed.shape and bool(np.allclose(a.observed, b.observed, rtol=1e-7, atol=1e-9))


def _k_high(e: Any) -> tuple[int, float | None]:
    k = getattr(e, "pareto_k", None)
    thr = getattr(e, "good_k", None)
    if k is None or thr is None:
        return 0, thr
    return int((np.asarray(k) > thr).sum()), float(thr)


def elpd_verdict(diff: float, dse: float) -> str:
    if diff < SMALL_ELPD_DIFF:
        return "small (under 4): treat as a tie"
    if diff < 2 * dse:
        return "within 2 standard errors: not a clear difference"
    return "a clear difference"


def loo_comparison(runs: list[RunInputs]) -> dict[str, Any]:
    """ELPD-LOO per run and ``az.compare`` rankings within groups of runs that score the same observations.

    Returns
    -------
    dict
        ``ranked`` (all runs in one ranking), ``reason`` (why not, or ``None``), ``groups`` (one per set
        of identical observations: ``observations``, ``runs``, ``ranking`` rows best first with ArviZ's
        ``elpd_diff`` = this run's ELPD − the best's, ``dse``, ``weight`` …, and ``lead``: how far the
        best is ahead of the next, as a positive number) and ``unavailable`` (runs without a log-likelihood).
    """
    import arviz as az

    inputs = [_loo_input(r) for r in runs]
    unavailable = [{"run_id": i.run_id, "reason": i.reason} for i in inputs if i.reason]
    groups: list[list[_LooInput]] = []
    for i in inputs:
        if i.reason:
            continue
        for g in groups:
            if _same_observations(g[0], i):
                g.append(i)
                break
        else:
            groups.append([i])
    out_groups = []
    for g in groups:
        rows = []
        if len(g) >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = az.compare({i.run_id: i.elpd for i in g}, round_to="none")
            for run_id, row in table.iterrows():
                i = next(x for x in g if x.run_id == run_id)
                n_high, thr = _k_high(i.elpd)
                rows.append({
                    "run_id": str(run_id), "rank": int(row["rank"]) + 1, "elpd": float(row["elpd"]),
                    "se": float(row["se"]), "p_loo": float(row["p"]), "elpd_diff": float(row["elpd_diff"]),
                    "dse": float(row["dse"]), "p_worse": None if pd.isna(row.get("p_worse")) else float(row["p_worse"]),
                    "weight": float(row["weight"]), "n_pareto_k_high": n_high, "pareto_k_threshold": thr,
                    "n_obs": int(i.elpd.n_data_points), "warnings": i.warnings,
                })  # fmt: skip
        else:
            i = g[0]
            n_high, thr = _k_high(i.elpd)
            rows.append({"run_id": i.run_id, "rank": None, "elpd": float(i.elpd.elpd), "se": float(i.elpd.se),
                         "p_loo": float(i.elpd.p), "elpd_diff": None, "dse": None, "p_worse": None, "weight": None,
                         "n_pareto_k_high": n_high, "pareto_k_threshold": thr, "n_obs": int(i.elpd.n_data_points),
                         "warnings": i.warnings})  # fmt: skip
        lead = None
        if len(rows) >= 2:
            diff, dse = -rows[1]["elpd_diff"], rows[1]["dse"]
            lead = {"best": rows[0]["run_id"], "next": rows[1]["run_id"], "elpd_diff": diff, "se": dse,
                    "verdict": elpd_verdict(diff, dse)}  # fmt: skip
        out_groups.append({"observations": g[0].description, "runs": [i.run_id for i in g], "ranking": rows, "lead": lead})
    ranked = len(out_groups) == 1 and len(out_groups[0]["runs"]) == len(runs)
    reason = None
    if not ranked:
        parts = []
        if len(out_groups) > 1:
            parts.append(
                "their log-likelihoods score different observations ("
                + "; ".join(f"{', '.join(map(repr, g['runs']))}: {g['observations']}" for g in out_groups)
                + "), so their ELPDs are not comparable: a brand-level model observes brand totals, an entity-level "
                "model entity × period cells. The holdout error on the brand total compares them instead"
            )
        parts += [u["reason"] for u in unavailable]
        reason = "; ".join(parts) or "fewer than two runs have a log-likelihood"
    return {"ranked": ranked, "reason": reason, "groups": out_groups, "unavailable": unavailable}


# --------------------------------------------------------------------------- holdout

_HOLDOUT_KEYS = ("crps", "mape", "rmse", "coverage_50", "coverage_90", "n_obs")


def holdout_comparison(runs: list[RunInputs], identity: dict[str, Any]) -> dict[str, Any]:
    """Rank runs by held-out brand-total CRPS (lower is better; MAPE breaks ties).

    Runs share their holdout by the time this is called (:func:`check_same_data`); a run without
    holdout metrics is listed in ``unavailable``.
    """
    h = identity.get("holdout")
    base = {"ranked": False, "reason": None, "periods": None, "start": None, "end": None, "ranking": [], "unavailable": []}
    if not h:
        base["reason"] = ("no holdout: the runs were fitted on every period, so there is no out-of-sample error to "
                          "rank; rerun them with --set windows.holdout_periods=8 (say) to compare forecasts")  # fmt: skip
        return base
    base.update(periods=h["periods"], start=h["start"], end=h["end"])
    rows, unavailable, spans = [], [], set()
    for r in runs:
        fh = (r.fit_metrics or {}).get("holdout")
        brand = (fh or {}).get("brand")
        if not brand or brand.get("crps") is None:
            unavailable.append({"run_id": r.run_id, "reason": f"{r.run_id!r} has no holdout metrics in fit_metrics.json "
                                                              "(rerun 06_contribute)"})  # fmt: skip
            continue
        spans.add((fh.get("periods"), _iso(fh.get("start")), _iso(fh.get("end"))))
        ent = fh.get("entity") or {}
        rows.append({"run_id": r.run_id, **{k: brand.get(k) for k in _HOLDOUT_KEYS},
                     "entity_crps": ent.get("crps"), "entity_mape": ent.get("mape")})  # fmt: skip
    base["unavailable"] = unavailable
    if len(spans) > 1:
        base["reason"] = "the runs' holdout metrics cover different periods: " + "; ".join(
            f"{p} periods {s} → {e}" for p, s, e in sorted(spans, key=str))
        base["ranking"] = rows
        return base
    rows.sort(key=lambda x: (x["crps"], x["mape"] if x["mape"] is not None else np.inf))
    for k, row in enumerate(rows, 1):
        row["rank"] = k
    base["ranking"] = rows
    # Runs without metrics are listed, not allowed to block the ranking of the others.
    base["ranked"] = len(rows) >= 2
    if unavailable:
        base["reason"] = "; ".join(u["reason"] for u in unavailable)
    if len(rows) < 2:
        base["reason"] = (base["reason"] + "; " if base["reason"] else "") + "fewer than two runs have holdout metrics"
    return base


# --------------------------------------------------------------------------- ROI and diagnostics


def roi_rows(runs: list[RunInputs]) -> list[dict[str, Any]]:
    """ROI per channel and run (long format): ``channel``, ``run_id``, ``roi``, ``roi_low``, ``roi_high`` …"""
    out = []
    for r in runs:
        roi = r.roi or {}
        for c in roi.get("channels", []):
            out.append({"channel": str(c.get("channel")), "run_id": r.run_id, "interval": roi.get("interval"),
                        **{k: c.get(k) for k in ("spend", "contribution", "roi", "roi_low", "roi_high")}})  # fmt: skip
    return out


def diagnostics_rows(runs: list[RunInputs]) -> list[dict[str, Any]]:
    """Per run: convergence verdict, model checks, headline sampler metrics and findings."""
    out = []
    for r in runs:
        d = r.diagnostics
        if d is None:
            out.append({"run_id": r.run_id, "available": False, "passed": None, "model_checks_passed": None,
                        "metrics": {}, "findings": [], "counts": {}})  # fmt: skip
            continue
        m = d.get("metrics") or {}
        findings = [{k: f.get(k) for k in ("severity", "code", "message")} for f in d.get("findings") or []]
        counts = {s: sum(f.get("severity") == s for f in findings) for s in ("error", "warning", "info")}
        out.append({
            "run_id": r.run_id, "available": True, "passed": d.get("passed"),
            "model_checks_passed": d.get("model_checks_passed"),
            "metrics": {k: m.get(k) for k in ("max_r_hat", "min_ess_bulk", "min_ess_tail", "divergences")},
            "loo": d.get("loo"), "findings": findings, "counts": counts,
        })  # fmt: skip
    return out


# --------------------------------------------------------------------------- the comparison


def default_name(run_ids: list[str]) -> str:
    """``a_vs_b`` (or a shortened form with a hash for many or long ids): the folder under ``outputs/compare``."""
    name = "_vs_".join(run_ids)
    if len(name) > 100:
        h = hashlib.sha256("\0".join(run_ids).encode()).hexdigest()[:8]
        name = f"{run_ids[0][:40]}_vs_{len(run_ids) - 1}_more_{h}"
    return name


def compare_dir(name: str) -> Path:
    """``outputs/compare/<name>`` (``$MMM_OUTPUTS`` respected)."""
    return outputs_root() / "compare" / validate_id(name, "comparison name")


def best_runs(result: dict[str, Any]) -> dict[str, str | None]:
    """The first run by ELPD-LOO (only when all runs are ranked together) and on the holdout."""
    loo, ho = result["loo"], result["holdout"]
    lead = loo["groups"][0]["lead"] if loo["ranked"] and loo["groups"] else None
    return {"loo": lead["best"] if lead else None, "holdout": ho["ranking"][0]["run_id"] if ho["ranked"] else None}


def summary(result: dict[str, Any]) -> str:
    """One sentence: which run comes first, on which criteria, with the caveat that matters most."""
    best = best_runs(result)
    loo_lead = result["loo"]["groups"][0]["lead"] if best["loo"] else None
    tie = loo_lead is not None and loo_lead["verdict"] != "a clear difference"
    if best["loo"] and best["holdout"]:
        if best["loo"] == best["holdout"]:
            text = f"{best['loo']} comes first on both criteria: ELPD-LOO and the holdout forecast"
            text += " (the LOO difference is not clear)" if tie else ""
        else:
            text = f"The criteria disagree: {best['loo']} is first by ELPD-LOO, {best['holdout']} on the holdout forecast"
    elif best["loo"]:
        text = f"{best['loo']} comes first by ELPD-LOO" + (", but the difference is not clear" if tie else "")
    elif best["holdout"]:
        text = f"{best['holdout']} forecasts the holdout best (ELPD-LOO cannot rank all these runs together)"
    else:
        return "No ranking: neither ELPD-LOO nor a holdout can rank these runs (reasons below)."
    failed = {d["run_id"] for d in result["diagnostics"] if d["available"] and d["passed"] is False}
    flagged = [b for b in dict.fromkeys(v for v in best.values() if v) if b in failed]
    if flagged:
        text += f"; but {', '.join(flagged)} failed the convergence checks"
    return text + "."


def headlines(result: dict[str, Any]) -> list[str]:
    """The verdict in a few plain sentences (LOO, holdout, convergence), best first."""
    out = []
    loo = result["loo"]
    for g in loo["groups"]:
        if g["lead"]:
            ld = g["lead"]
            tail = f" (among runs scoring {g['observations']})" if not loo["ranked"] else ""
            out.append(f"ELPD-LOO: {ld['best']} ranks first{tail}, ahead of {ld['next']} by {ld['elpd_diff']:.1f} "
                       f"(SE {ld['se']:.1f}): {ld['verdict']}.")  # fmt: skip
    if not any(g["lead"] for g in loo["groups"]):
        out.append(f"ELPD-LOO: not ranked: {loo['reason']}.")
    else:
        left = [i for g in loo["groups"] if not g["lead"] for i in g["runs"]] + [u["run_id"] for u in loo["unavailable"]]
        if left:
            out.append(f"ELPD-LOO cannot rank {', '.join(left)} against the others (different observations or no "
                       "log-likelihood; see below).")  # fmt: skip
    ho = result["holdout"]
    if ho["ranked"]:
        best, nxt = ho["ranking"][0], ho["ranking"][1]
        gain = 100 * (1 - best["crps"] / nxt["crps"]) if nxt["crps"] else 0.0
        out.append(f"Holdout ({ho['periods']} periods, {ho['start']} → {ho['end']}, brand total): {best['run_id']} "
                   f"forecasts best, CRPS {fmt_fixed(best['crps'])} vs {fmt_fixed(nxt['crps'])} for {nxt['run_id']} "
                   f"({gain:.0f}% lower); MAPE {fmt_fixed(best['mape'])}% vs {fmt_fixed(nxt['mape'])}%.")  # fmt: skip
    else:
        out.append(f"Holdout: not ranked: {ho['reason']}.")
    loo_best = loo["groups"][0]["lead"]["best"] if loo["ranked"] and loo["groups"][0]["lead"] else None
    if loo_best and ho["ranked"] and ho["ranking"][0]["run_id"] != loo_best:
        out.append(f"The two criteria disagree ({loo_best} by ELPD-LOO, {ho['ranking'][0]['run_id']} on the holdout): "
                   "prefer the holdout when the question is forecasting, LOO when it is explaining the fitted "
                   "periods.")  # fmt: skip
    failed = [d["run_id"] for d in result["diagnostics"] if d["available"] and d["passed"] is False]
    missing = [d["run_id"] for d in result["diagnostics"] if not d["available"]]
    if failed:
        out.append(f"Convergence checks failed for {', '.join(failed)}: treat their numbers as provisional.")
    elif not missing:
        out.append("All runs passed the convergence checks.")
    if missing:
        out.append(f"Not diagnosed (no diagnostics.json): {', '.join(missing)}.")
    return out


def compare_runs(run_ids: list[str], name: str | None = None) -> dict[str, Any]:
    """Compare finished runs of the same data: the plain-dict result behind ``compare.json`` and the page.

    Parameters
    ----------
    run_ids
        Two or more run ids under ``outputs/runs``; their order is the order of the ROI plot.
    name
        The comparison's folder name (default :func:`default_name`).

    Raises
    ------
    CompareRefused
        Fewer than two distinct runs, an unknown run, or runs of different data, window or holdout
        (the message names what differs).
    ArtifactMissing
        A run has not got as far as 04_fit.
    """
    if len(run_ids) < 2:
        raise CompareRefused(f"compare needs at least two runs, got {len(run_ids)}: e.g. `mmm compare RUN_A RUN_B`")
    dup = sorted({r for r in run_ids if run_ids.count(r) > 1})
    if dup:
        raise CompareRefused(f"run {dup[0]!r} is listed twice; name each run once")
    try:
        name = validate_id(name, "comparison name") if name else default_name(run_ids)
    except ValueError as e:
        raise CompareRefused(str(e)) from None
    runs = [load_run(r) for r in run_ids]
    check_same_data(runs)
    identity = data_identity(runs[0])
    notes = [n for r in runs for n in r.notes]
    carry = {r.run_id: data_identity(r)["carryover_start"] for r in runs}
    if len(set(carry.values())) > 1:
        notes.append("the carry-over (adstock warm-up) starts differ: "
                     + ", ".join(f"{k}: {v}" for k, v in carry.items()))  # fmt: skip
    result: dict[str, Any] = {
        "name": name,
        "created_at": now_iso(),
        "runs": [describe_run(r) for r in runs],
        "data": {**{k: v for k, v in identity.items() if k != "carryover_start"},
                 "source": {r.run_id: describe_run(r)["data_source"] for r in runs}},  # fmt: skip
        "differences": spec_differences(runs),
        "loo": loo_comparison(runs),
        "holdout": holdout_comparison(runs, identity),
        "roi": roi_rows(runs),
        "diagnostics": diagnostics_rows(runs),
        "notes": notes,
    }
    result["best"] = best_runs(result)
    result["summary"] = summary(result)
    result["headline"] = headlines(result)
    return result


def ranking_table(result: dict[str, Any]) -> pd.DataFrame:
    """One row per run: model, LOO rank and ELPD, holdout rank and errors, convergence (for the terminal)."""
    loo = {row["run_id"]: row for g in result["loo"]["groups"] for row in g["ranking"]}
    ho = {row["run_id"]: row for row in result["holdout"]["ranking"]}
    diag = {d["run_id"]: d for d in result["diagnostics"]}
    rows = []
    for run in result["runs"]:
        rid = run["run_id"]
        lr, hr, d = loo.get(rid, {}), ho.get(rid, {}), diag.get(rid, {})
        conv = "–" if not d.get("available") else ("passed" if d.get("passed") else "FAILED")
        rows.append({
            "run": rid,
            "transforms, level, saturation": f"{run['transforms']}, {run['level']}, {run['saturation'] or 'none'}",
            "LOO rank": loo_rank(result, rid),
            "ELPD (SE)": f"{lr['elpd']:.1f} ({lr['se']:.1f})" if lr else "–",
            "vs best (SE)": f"{lr['elpd_diff']:.1f} ({lr['dse']:.1f})" if lr.get("elpd_diff") is not None else "–",
            "holdout rank": hr.get("rank") if result["holdout"]["ranked"] else None,
            "CRPS": fmt_fixed(hr.get("crps")),
            "MAPE %": fmt_fixed(hr.get("mape")),
            "cover 90%": "–" if hr.get("coverage_90") is None else f"{100 * hr['coverage_90']:.0f}%",
            "convergence": conv,
        })  # fmt: skip
    df = pd.DataFrame(rows)
    df["holdout rank"] = df["holdout rank"].map(lambda v: "–" if v is None or pd.isna(v) else str(int(v)))
    # All runs in one LOO ranking: LOO orders the table; otherwise the holdout (which ranks them all) does.
    cols = ("LOO rank", "holdout rank") if result["loo"]["ranked"] else ("holdout rank", "LOO rank")
    key = [c for c in cols if (df[c] != "–").any()]
    if key:
        df = df.sort_values(key, key=lambda s: s.map(lambda v: int(v.split()[0]) if v != "–" else 10**6), kind="stable")
    return df.reset_index(drop=True)


def loo_rank(result: dict[str, Any], run_id: str) -> str:
    """``"1"`` when all runs are ranked together, ``"1 of 2"`` within a group of comparable runs, else ``"–"``."""
    for g in result["loo"]["groups"]:
        for row in g["ranking"]:
            if row["run_id"] == run_id and row["rank"] is not None:
                return str(row["rank"]) if result["loo"]["ranked"] else f"{row['rank']} of {len(g['runs'])}"
    return "–"


def write_comparison(result: dict[str, Any], folder: Path | None = None) -> dict[str, Path]:
    """Write ``compare.json`` and ``index.html`` into ``outputs/compare/<name>`` (or ``folder``)."""
    from .compare_report import write_compare_page
    from .storage import write_json

    folder = Path(folder) if folder is not None else compare_dir(result["name"])
    j = write_json(folder / "compare.json", result)
    page = write_compare_page(result, folder / "index.html")
    return {"json": j, "index": page}

"""The seed's Bayesian MMM in PyMC: build, fit, summarise, and the linear predictor later stages reuse.

See docs/DESIGN.md §"The model" for the scaling of the target, the priors and the centred intercept
NUTS samples on. :func:`fit_stage` is the whole of 04_fit; :func:`fit` prints plain-text progress
(no HTML widget), so a papermill run followed in a terminal shows compile and sampling progress.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import threading
import time
from typing import Any

import numpy as np
import pandas as pd

from .runtime import configure_environment

configure_environment()  # before pytensor is imported anywhere in this process

MODEL_NAME = "seed_mmm_studentt_log1p"

PRIORS = {
    "intercept": "Normal(0, 2) (sampled as intercept_centred, the level at the regressors' means; same posterior)",
    "sigma_beta": "HalfNormal(0.5)",
    "beta": "HalfNormal(sigma_beta), one per channel (non-negative media effects)",
    "gamma": "Normal(0, 0.5), one per control",
    "sigma": "HalfNormal(1)",
    "nu": "Exponential(lam=0.1) (mean 10)",
}
LIKELIHOOD = "StudentT(nu, mu, sigma) on z = log1p(target) - target_center"

# Order of the parameters in summaries, diagnostics and plots.
PARAMETERS = ("intercept", "sigma_beta", "beta", "gamma", "sigma", "nu")

SAMPLERS = ("nutpie", "pymc", "numpyro")


# --------------------------------------------------------------------------- data


def design_matrices(features_df: pd.DataFrame, feature_metadata: dict[str, Any]) -> dict[str, Any]:
    """The model's inputs from ``features.parquet``: estimation rows only, target centred on log1p.

    Parameters
    ----------
    features_df
        ``features.parquet``: ``entity_id``, ``period_start``, ``window``, ``target`` and the feature
        columns named in ``feature_metadata``.
    feature_metadata
        ``feature_metadata.json``: ``channels`` (``driver``, ``feature``) and ``controls``
        (``name``, ``feature``), in model order.

    Returns
    -------
    dict
        ``media`` (N, C), ``controls`` (N, J), ``target`` (N,) in original units,
        ``z`` (N,) = ``log1p(target) - target_center``, ``target_center`` (float),
        ``period_start`` (N,) datetime64, ``channels`` (driver names), ``channel_features``,
        ``control_names``, ``control_features``, ``n_obs``, ``estimation_start``/``estimation_end``
        (ISO dates).

    Raises
    ------
    ValueError
        A required column is missing, the estimation window is empty, periods repeat, or a
        feature/target value is missing, infinite or (target) negative.
    """
    channels_meta = list(feature_metadata.get("channels") or [])
    controls_meta = list(feature_metadata.get("controls") or [])
    if not channels_meta:
        raise ValueError("feature_metadata.json lists no channels; the model needs at least one media driver (re-run 03_features)")
    channels = [str(c["driver"]) for c in channels_meta]
    media_cols = [str(c["feature"]) for c in channels_meta]
    control_names = [str(c["name"]) for c in controls_meta]
    control_cols = [str(c["feature"]) for c in controls_meta]

    needed = ["period_start", "window", "target", *media_cols, *control_cols]
    missing = [c for c in needed if c not in features_df.columns]
    if missing:
        raise ValueError(
            f"features table lacks column(s) {missing} named in feature_metadata.json; "
            "re-run 03_features so the two artifacts match"
        )
    est = features_df.loc[features_df["window"] == "estimation"].sort_values("period_start", kind="stable")
    if est.empty:
        found = sorted(map(str, features_df["window"].dropna().unique()))
        raise ValueError(f"features table has no rows with window == 'estimation' (found windows {found}); check spec windows")
    if "entity_id" in est.columns and est["entity_id"].nunique() > 1:
        raise ValueError(
            f"the model is brand level but features has {est['entity_id'].nunique()} entity_id values "
            "in the estimation window; aggregate to one entity in 02_canonicalize"
        )
    periods = pd.to_datetime(est["period_start"])
    if periods.duplicated().any():
        dup = periods[periods.duplicated()].dt.date.astype(str).tolist()[:3]
        raise ValueError(f"period_start repeats in the estimation window (e.g. {dup}); one row per period is expected")

    def matrix(cols: list[str]) -> np.ndarray:
        m = est[cols].to_numpy(dtype=float, na_value=np.nan) if cols else np.zeros((len(est), 0))
        bad = ~np.isfinite(m)
        if bad.any():
            j = int(np.where(bad.any(axis=0))[0][0])
            rows = periods.dt.date.astype(str).to_numpy()[bad[:, j]][:3].tolist()
            raise ValueError(
                f"feature column {cols[j]!r} has {int(bad[:, j].sum())} missing/infinite value(s) in the "
                f"estimation window (periods {rows}); fix the input data or re-run 03_features"
            )
        return m

    media = matrix(media_cols)
    controls = matrix(control_cols)
    target = est["target"].to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(target) | (target < 0)
    if bad.any():
        rows = periods.dt.date.astype(str).to_numpy()[bad][:3].tolist()
        raise ValueError(
            f"target has {int(bad.sum())} missing, infinite or negative value(s) in the estimation window "
            f"(periods {rows}); the model takes log1p(target), so sales must be >= 0"
        )
    log_y = np.log1p(target)
    center = float(log_y.mean())
    return {
        "media": media,
        "controls": controls,
        "target": target,
        "z": log_y - center,
        "target_center": center,
        "period_start": periods.to_numpy(dtype="datetime64[ns]"),
        "channels": channels,
        "channel_features": media_cols,
        "control_names": control_names,
        "control_features": control_cols,
        "n_obs": int(len(est)),
        "estimation_start": periods.iloc[0].date().isoformat(),
        "estimation_end": periods.iloc[-1].date().isoformat(),
    }


# --------------------------------------------------------------------------- model


def build_model(features_df: pd.DataFrame, feature_metadata: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Build the seed's model on the estimation window.

    Data enter as ``pm.Data`` (``media``, ``controls``, ``z_target``) with dims ``period`` ×
    ``channel``/``control``, so a dataset of the same structure can be swapped in with
    ``pm.set_data`` and reuse the compiled model (and the compile cache).

    The sampler moves on ``intercept_centred`` (the level at the column means of the regressors)
    instead of ``intercept``. Media features are all positive, so the plain intercept is strongly
    anti-correlated with every ``beta`` and NUTS mixes it slowly (on the bundled sample, ESS ≈ 350
    of 2000 draws). ``intercept = intercept_centred − mean(media) @ beta − mean(controls) @ gamma``
    is kept as a deterministic with the seed's ``Normal(0, 2)`` prior added as a potential; the map
    has unit Jacobian, so the posterior is exactly the seed model's (ESS ≈ 1200 there). Column
    means are taken in the graph, so ``pm.set_data`` keeps them in step with the data.

    Parameters
    ----------
    features_df, feature_metadata
        As for :func:`design_matrices`.

    Returns
    -------
    (pymc.Model, dict)
        The model and the :func:`design_matrices` output (``info``), which later stages need to
        map coefficients back to sales.
    """
    import pymc as pm
    import pytensor.tensor as pt

    info = design_matrices(features_df, feature_metadata)
    coords: dict[str, Any] = {"period": info["period_start"], "channel": info["channels"]}
    has_controls = bool(info["control_names"])
    if has_controls:
        coords["control"] = info["control_names"]
    with pm.Model(coords=coords) as model:
        media = pm.Data("media", info["media"], dims=("period", "channel"))
        z_target = pm.Data("z_target", info["z"], dims="period")
        intercept_centred = pm.Flat("intercept_centred")
        sigma_beta = pm.HalfNormal("sigma_beta", sigma=0.5)
        beta = pm.HalfNormal("beta", sigma=sigma_beta, dims="channel")
        media_mean = media.mean(axis=0)
        mu = intercept_centred + pt.dot(media - media_mean, beta)
        shift = pt.dot(media_mean, beta)
        if has_controls:
            controls = pm.Data("controls", info["controls"], dims=("period", "control"))
            gamma = pm.Normal("gamma", mu=0.0, sigma=0.5, dims="control")
            controls_mean = controls.mean(axis=0)
            mu = mu + pt.dot(controls - controls_mean, gamma)
            shift = shift + pt.dot(controls_mean, gamma)
        intercept = pm.Deterministic("intercept", intercept_centred - shift)
        pm.Potential("intercept_prior", pm.logp(pm.Normal.dist(mu=0.0, sigma=2.0), intercept))
        sigma = pm.HalfNormal("sigma", sigma=1.0)
        nu = pm.Exponential("nu", lam=0.1)
        pm.StudentT("z", nu=nu, mu=mu, sigma=sigma, observed=z_target, dims="period")
    return model, info


# --------------------------------------------------------------------------- sampling


def _say(msg: str) -> None:
    # Plain lines on stdout: readable in a terminal following a papermill run (log_output) and
    # stored as a few lines of text in the notebook, never as an HTML widget.
    print(msg, flush=True)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects CPU pinning / cgroup cpusets
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _ProgressPrinter:
    """One line each time sampling passes another 10 %, at most every ``min_interval`` seconds."""

    def __init__(self, sampler: str, chains: int, tune: int, draws: int, enabled: bool, min_interval: float = 2.0):
        self.sampler, self.chains, self.tune, self.draws = sampler, chains, tune, draws
        self.total = chains * (tune + draws)
        self.enabled = enabled
        self.min_interval = min_interval
        self.t0 = time.perf_counter()
        self._last_t = -np.inf
        self._last_step = 0

    def update(self, done: int, divergences: int | None = None) -> None:
        if not self.enabled or self.total <= 0:
            return
        step = min(10, int(10 * done / self.total))
        now = time.perf_counter()
        if step > self._last_step and (now - self._last_t >= self.min_interval or step == 10):
            self._last_step, self._last_t = step, now
            phase = "tuning" if done < self.chains * self.tune else "drawing"
            div = "" if divergences is None else f", {divergences} divergences"
            _say(f"sampling ({self.sampler}): {10 * step:3d}% [{phase}{div}] elapsed {now - self.t0:.1f} s")


def _nutpie_finished(sampler: Any) -> bool:
    # nutpie 0.16's is_finished raises TimeoutError (instead of returning False) while chains run.
    try:
        return bool(sampler.is_finished)
    except TimeoutError:
        return False


def _nutpie_sample(model: Any, spec: Any, cores: int, progress: bool) -> tuple[Any, float, float]:
    """nutpie called directly: the only way to get its progress without an HTML widget."""
    import nutpie
    from pymc.backends.arviz import patch_nutpie_idata

    t0 = time.perf_counter()
    if progress:
        _say("compiling model for nutpie (numba; about 1 min with an empty compile cache, ~10 s warm)…")
    compiled = nutpie.compile_pymc_model(model, backend="numba")
    compile_s = time.perf_counter() - t0
    if progress:
        _say(f"compiled in {compile_s:.1f} s")

    lock = threading.Lock()
    latest: dict[str, int] = {"done": 0, "div": 0}

    def on_progress(chain_progress: Any) -> None:  # called on a Rust thread: only record
        with lock:
            latest["done"] = sum(int(cp.finished_draws) for cp in chain_progress)
            latest["div"] = sum(int(cp.divergences) for cp in chain_progress)

    printer = _ProgressPrinter("nutpie", spec.chains, spec.tune, spec.draws, progress)
    t1 = time.perf_counter()
    sampler = nutpie.sample(
        compiled,
        draws=spec.draws,
        tune=spec.tune,
        chains=spec.chains,
        cores=cores,
        seed=int(spec.random_seed),
        target_accept=spec.target_accept,
        save_warmup=False,
        progress_bar=False,
        progress_callback=on_progress,
        progress_rate=250,
        blocking=False,
    )
    try:
        while not _nutpie_finished(sampler):
            time.sleep(0.2)
            with lock:
                done, div = latest["done"], latest["div"]
            printer.update(done, div)
        idata = sampler.wait()
    except BaseException:
        sampler.cancel()
        raise
    sample_s = time.perf_counter() - t1
    printer.update(printer.total, latest["div"])
    patch_nutpie_idata(idata, model, sampling_time=sample_s)
    return idata, compile_s, sample_s


def _pymc_sample(model: Any, spec: Any, cores: int, progress: bool, sampler: str) -> tuple[Any, float, float]:
    import pymc as pm

    printer = _ProgressPrinter(sampler, spec.chains, spec.tune, spec.draws, progress)
    counts = {"done": 0, "div": 0}

    def callback(trace: Any, draw: Any) -> None:  # runs in this process, once per draw and chain
        counts["done"] += 1
        stats = draw.stats[0] if isinstance(draw.stats, list) and draw.stats else {}
        if not draw.tuning and bool(stats.get("diverging", False)):
            counts["div"] += 1
        printer.update(counts["done"], counts["div"])

    kwargs: dict[str, Any] = {}
    if sampler == "pymc":
        kwargs["callback"] = callback
        if progress:
            _say("compiling model and initialising NUTS (pymc; about 1 min with an empty compile cache, a few seconds warm)…")
    elif progress:
        _say(f"compiling and sampling with {sampler} (no progress reports from this sampler)…")
    t0 = time.perf_counter()
    with model:
        idata = pm.sample(
            draws=spec.draws,
            tune=spec.tune,
            chains=spec.chains,
            cores=cores,
            random_seed=int(spec.random_seed),
            target_accept=spec.target_accept,
            nuts_sampler=sampler,
            progressbar=False,
            quiet=True,
            compute_convergence_checks=False,  # 05_diagnose reports them as findings
            **kwargs,
        )
    wall = time.perf_counter() - t0
    sample_s = float(idata["posterior"].attrs.get("sampling_time", wall))
    return idata, max(wall - sample_s, 0.0), sample_s


def _drop_unserialisable(idata: Any) -> Any:
    # Object-dtype stats (nutpie's divergence_message) are text per draw: useless downstream and a
    # netCDF hazard, so the stored posterior keeps numeric stats only.
    if "sample_stats" in idata.children:
        ss = idata["sample_stats"].to_dataset()
        bad = [k for k, v in ss.data_vars.items() if v.dtype == object or v.dtype.kind in "OUS"]
        if bad:
            idata["sample_stats"] = ss.drop_vars(bad)
    return idata


def fit(model: Any, spec: Any, progress: bool = True) -> Any:
    """Sample the posterior with NUTS as the run spec says.

    Parameters
    ----------
    model
        From :func:`build_model`.
    spec
        The :class:`~mmm_lib.spec.RunSpec`: ``draws``, ``tune``, ``chains``, ``target_accept``,
        ``random_seed``, ``nuts_sampler`` (``nutpie`` | ``pymc`` | ``numpyro``).
    progress
        Print plain-text progress lines (compile, every 10 %, done) to stdout.

    Returns
    -------
    xarray.DataTree
        ``posterior``, ``sample_stats``, ``observed_data``, ``constant_data``. The posterior attrs
        record ``mmm_sampler``, ``mmm_cores``, ``mmm_compile_time_s``, ``mmm_sampling_time_s``
        and ``mmm_wall_time_s``. Same spec and seed give identical draws (fastmath is off, see
        :mod:`mmm_lib.runtime`).
    """
    sampler = spec.nuts_sampler
    if sampler not in SAMPLERS:
        raise ValueError(f"nuts_sampler {sampler!r} is not supported; use one of {list(SAMPLERS)}")
    if sampler == "numpyro":
        import importlib.util

        if importlib.util.find_spec("numpyro") is None or importlib.util.find_spec("jax") is None:
            raise ValueError(
                "nuts_sampler 'numpyro' needs the jax and numpyro packages (pip install numpyro jax); "
                "or set nuts_sampler: nutpie (or pymc) in the run spec"
            )
    # PyMC would default to cpu_count()//2 cores, i.e. sequential chains on a 2-core box.
    cores = max(1, min(spec.chains, _usable_cores()))
    t0 = time.perf_counter()
    if sampler == "nutpie":
        idata, compile_s, sample_s = _nutpie_sample(model, spec, cores, progress)
    else:
        idata, compile_s, sample_s = _pymc_sample(model, spec, cores, progress, sampler)
    wall = time.perf_counter() - t0
    idata = _drop_unserialisable(idata)
    attrs = idata["posterior"].attrs
    attrs.update(
        mmm_sampler=sampler,
        mmm_cores=int(cores),
        mmm_compile_time_s=round(float(compile_s), 3),
        mmm_sampling_time_s=round(float(sample_s), 3),
        mmm_wall_time_s=round(float(wall), 3),
    )
    if progress:
        _say(
            f"done: {spec.chains} chains × {spec.draws} draws ({spec.tune} tune) with {sampler} "
            f"in {wall:.1f} s (sampling {sample_s:.1f} s, compile/setup {compile_s:.1f} s)"
        )
    return idata


# --------------------------------------------------------------------------- draws and summaries


def posterior_draws(idata: Any) -> dict[str, np.ndarray]:
    """Posterior draws with chain and draw stacked into one leading ``sample`` axis.

    Returns
    -------
    dict
        ``intercept`` (S,), ``beta`` (S, C), ``gamma`` (S, J) — zeros with J = 0 when the
        model has no controls — ``sigma`` (S,), ``nu`` (S,), ``sigma_beta`` (S,).
    """
    ds = _posterior_dataset(idata)

    def stack(name: str) -> np.ndarray:
        da = ds[name]
        other = [d for d in da.dims if d not in ("chain", "draw")]
        da = da.transpose("chain", "draw", *other)
        return np.asarray(da.values).reshape(-1, *da.shape[2:])

    out = {k: stack(k) for k in ("intercept", "beta", "sigma", "nu", "sigma_beta") if k in ds}
    out["gamma"] = stack("gamma") if "gamma" in ds else np.zeros((out["intercept"].shape[0], 0))
    return out


def linear_predictor(draws: dict[str, np.ndarray], media: np.ndarray, controls: np.ndarray) -> np.ndarray:
    """``mu = intercept + media @ beta + controls @ gamma`` per draw, on the centred log1p scale.

    Parameters
    ----------
    draws
        From :func:`posterior_draws`.
    media
        (N, C) media features, columns in the order of the ``channel`` coordinate.
    controls
        (N, J) control features, columns in the order of the ``control`` coordinate.

    Returns
    -------
    numpy.ndarray
        (S, N) linear predictor; fitted sales are ``expm1(mu + target_center)``.
    """
    mu = draws["intercept"][:, None] + draws["beta"] @ np.asarray(media, dtype=float).T
    if draws["gamma"].shape[1]:
        mu = mu + draws["gamma"] @ np.asarray(controls, dtype=float).T
    return mu


def _posterior_dataset(idata: Any) -> Any:
    """The ``posterior`` group as an ``xarray.Dataset`` (accepts a DataTree, its node or a Dataset)."""
    post = idata["posterior"] if hasattr(idata, "children") and "posterior" in idata.children else idata
    return post.to_dataset() if hasattr(post, "to_dataset") else post


def parameter_names(idata: Any) -> list[tuple[str, str, str | None]]:
    """``(name, var, coord)`` for every scalar parameter, e.g. ``("beta[act_tv]", "beta", "act_tv")``."""
    ds = _posterior_dataset(idata)
    out: list[tuple[str, str, str | None]] = []
    for var in PARAMETERS:
        if var not in ds:
            continue
        extra = [d for d in ds[var].dims if d not in ("chain", "draw")]
        if not extra:
            out.append((var, var, None))
            continue
        for c in ds[var][extra[0]].values.tolist():
            out.append((f"{var}[{c}]", var, str(c)))
    return out


def _select(da: Any, coord: str | None) -> np.ndarray:
    if coord is None:
        return np.asarray(da.transpose("chain", "draw").values, dtype=float)
    dim = [d for d in da.dims if d not in ("chain", "draw")][0]
    return np.asarray(da.sel({dim: coord}).transpose("chain", "draw").values, dtype=float)


def convergence_table(idata: Any) -> pd.DataFrame:
    """R-hat (rank-normalised split), ESS bulk and ESS tail per scalar parameter (ArviZ 1.x)."""
    import arviz as az

    ds = _posterior_dataset(idata)
    names = parameter_names(ds)
    vars_ = sorted({v for _, v, _ in names})
    sub = ds[vars_]
    r_hat, ess_b, ess_t = az.rhat(sub), az.ess(sub, method="bulk"), az.ess(sub, method="tail")
    rows = []
    for name, var, coord in names:
        def pick(res: Any) -> float:
            da = res[var]
            if coord is not None:
                da = da.sel({da.dims[0]: coord})
            return float(da.values)

        rows.append({"name": name, "var": var, "coord": coord, "r_hat": pick(r_hat), "ess_bulk": pick(ess_b), "ess_tail": pick(ess_t)})
    return pd.DataFrame(rows, columns=["name", "var", "coord", "r_hat", "ess_bulk", "ess_tail"])


def summarize_posterior(idata: Any, interval: float = 0.9) -> dict[str, Any]:
    """``posterior_summary.json``: mean, sd, equal-tailed interval and convergence per parameter.

    Parameters
    ----------
    idata
        The fitted DataTree (or its ``posterior`` Dataset).
    interval
        Central probability of the equal-tailed interval; 0.9 gives the 5 % and 95 % quantiles.

    Returns
    -------
    dict
        ``{"interval", "parameters": [{"name", "var", "coord", "mean", "sd", "low", "high",
        "r_hat", "ess_bulk", "ess_tail"}]}``; ``coord`` is ``None`` for scalar parameters.
    """
    if not 0.0 < interval < 1.0:
        raise ValueError(f"interval must be in (0, 1), got {interval}; e.g. 0.9 for the 5%-95% interval")
    ds = _posterior_dataset(idata)
    conv = convergence_table(ds).set_index("name")
    lo_q, hi_q = (1 - interval) / 2, 1 - (1 - interval) / 2
    params = []
    for name, var, coord in parameter_names(ds):
        x = _select(ds[var], coord).ravel()
        lo, hi = np.quantile(x, [lo_q, hi_q])
        params.append(
            {
                "name": name,
                "var": var,
                "coord": coord,
                "mean": float(x.mean()),
                "sd": float(x.std(ddof=1)) if x.size > 1 else 0.0,
                "low": float(lo),
                "high": float(hi),
                "r_hat": float(conv.at[name, "r_hat"]),
                "ess_bulk": float(conv.at[name, "ess_bulk"]),
                "ess_tail": float(conv.at[name, "ess_tail"]),
            }
        )
    return {"interval": float(interval), "parameters": params}


def summary_table(summary: dict[str, Any]) -> pd.DataFrame:
    """``posterior_summary.json`` as a compact table for notebooks (values rounded for display)."""
    df = pd.DataFrame(summary["parameters"])
    pct = f"{round(100 * summary['interval'])}%"
    df = df[["name", "mean", "sd", "low", "high", "r_hat", "ess_bulk", "ess_tail"]].rename(
        columns={"name": "parameter", "low": f"{pct} low", "high": f"{pct} high"}
    )
    return df.round({"mean": 3, "sd": 3, f"{pct} low": 3, f"{pct} high": 3, "r_hat": 3, "ess_bulk": 0, "ess_tail": 0})


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("pymc", "pytensor", "nutpie", "arviz", "arviz-stats", "numba", "numpy", "pandas", "xarray"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def model_metadata(info: dict[str, Any], spec: Any, idata: Any) -> dict[str, Any]:
    """``model_metadata.json``: what was fitted, on which data, with which sampler and versions.

    Parameters
    ----------
    info
        From :func:`build_model` / :func:`design_matrices`.
    spec
        The run spec (sampler settings).
    idata
        The fitted DataTree (its posterior attrs hold the timings written by :func:`fit`).
    """
    attrs = dict(idata["posterior"].attrs)
    cores = attrs.get("mmm_cores")
    priors = {k: v for k, v in PRIORS.items() if k != "gamma" or info["control_names"]}
    return {
        "model": MODEL_NAME,
        "target_transform": "log1p",
        "target_center": float(info["target_center"]),
        "likelihood": LIKELIHOOD,
        "channels": list(info["channels"]),
        "channel_features": list(info["channel_features"]),
        "controls": list(info["control_names"]),
        "control_features": list(info["control_features"]),
        "priors": priors,
        "sampler": {
            "nuts_sampler": attrs.get("mmm_sampler", spec.nuts_sampler),
            "inference_library": attrs.get("inference_library"),
            "inference_library_version": attrs.get("inference_library_version"),
            "draws": int(spec.draws),
            "tune": int(spec.tune),
            "chains": int(spec.chains),
            "cores": None if cores is None else int(cores),
            "target_accept": float(spec.target_accept),
            "random_seed": int(spec.random_seed),
            "compile_time_s": attrs.get("mmm_compile_time_s"),
            "wall_time_s": attrs.get("mmm_wall_time_s"),
        },
        "n_obs": int(info["n_obs"]),
        "estimation_start": info["estimation_start"],
        "estimation_end": info["estimation_end"],
        "sampling_time_s": attrs.get("mmm_sampling_time_s", attrs.get("sampling_time")),
        "versions": _versions(),
    }


# --------------------------------------------------------------------------- the 04_fit stage


def fit_stage(run: Any, progress: bool = True, write: bool = True) -> dict[str, Any]:
    """04_fit in one call: read features, build, sample, summarise and (by default) write.

    Parameters
    ----------
    run
        The open :class:`~mmm_lib.storage.Run`.
    progress
        Print plain-text progress to stdout.
    write
        Write the artifacts (:func:`write_fit`); the notebook passes ``False`` and writes in its
        last cell.

    Returns
    -------
    dict
        ``idata`` (the DataTree), ``info`` (design matrices), ``summary`` and ``metadata`` (the
        contents of ``posterior_summary.json`` and ``model_metadata.json``).
    """
    features = run.read_parquet("features.parquet")
    feature_metadata = run.read_json("feature_metadata.json")
    model, info = build_model(features, feature_metadata)
    if progress:
        _say(
            f"model: {info['n_obs']} periods {info['estimation_start']}..{info['estimation_end']}, "
            f"{len(info['channels'])} channels, {len(info['control_names'])} controls"
        )
    idata = fit(model, run.spec, progress=progress)
    result = {
        "idata": idata,
        "info": info,
        "summary": summarize_posterior(idata, interval=0.9),
        "metadata": model_metadata(info, run.spec, idata),
    }
    if write:
        write_fit(run, result)
    return result


def write_fit(run: Any, result: dict[str, Any]) -> list[Any]:
    """Write ``posterior.nc``, ``posterior_summary.json`` and ``model_metadata.json`` atomically.

    Returns the written paths.
    """
    return [
        run.write_posterior(result["idata"]),
        run.write_json("posterior_summary.json", result["summary"]),
        run.write_json("model_metadata.json", result["metadata"]),
    ]


def fit_headline(result: dict[str, Any]) -> pd.DataFrame:
    """One-row headline for the end of 04_fit: data size, sampler, timings, beta means."""
    md = result["metadata"]
    s = md["sampler"]
    row: dict[str, Any] = {
        "periods": md["n_obs"],
        "window": f"{md['estimation_start']} .. {md['estimation_end']}",
        "sampler": s["nuts_sampler"],
        "chains × draws": f"{s['chains']} × {s['draws']}",
        "sampling s": s["wall_time_s"] if md["sampling_time_s"] is None else round(float(md["sampling_time_s"]), 1),
        "total s": s["wall_time_s"],
    }
    for p in result["summary"]["parameters"]:
        if p["var"] == "beta":
            row[f"beta {p['coord']}"] = round(p["mean"], 3)
    return pd.DataFrame([row])


__all__ = [
    "build_model",
    "convergence_table",
    "design_matrices",
    "fit",
    "fit_headline",
    "fit_stage",
    "linear_predictor",
    "model_metadata",
    "parameter_names",
    "posterior_draws",
    "summarize_posterior",
    "summary_table",
    "write_fit",
]

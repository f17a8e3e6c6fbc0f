"""Fitting with PyMC: sample the run's model (built by :mod:`mmm_lib.model`), add its prior, summarise.

The model itself — graph, priors, transforms — lives in :mod:`mmm_lib.model` (docs/MODEL.md). :func:`fit_stage` is the whole of 04_fit; :func:`fit` prints plain-text progress
(no HTML widget), so a papermill run followed in a terminal shows compile and sampling progress.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import threading
import time
from typing import Any

import numpy as np
import pandas as pd

from .runtime import configure_environment, usable_cores

configure_environment()  # before pytensor is imported anywhere in this process

from .model import MMM, from_artifacts, posterior_draws  # noqa: E402,F401  (posterior_draws: re-exported)
from .spec import ModelConfig  # noqa: E402
from .stages import read_inputs, write_outputs  # noqa: E402

# Order of the parameters in summaries, diagnostics and plots (those a model lacks are skipped).
PARAMETERS = ("intercept", "sigma_beta", "beta", "tau_beta", "decay", "half_saturation", "hill_slope", "logistic_lam",
              "gamma", "sigma", "nu", "beta_z", "beta_entity")
# Per-entity detail: diagnosed, but left out of the headline summary table.
ENTITY_DETAIL = ("beta_z", "beta_entity")
PRIOR_DRAWS = 500

SAMPLERS = ("nutpie", "pymc", "numpyro")


# --------------------------------------------------------------------------- model


def build_model(features_df: pd.DataFrame, feature_metadata: dict[str, Any], feature_scaler: dict[str, Any] | None = None,
                config: Any = None) -> tuple[Any, MMM]:
    """The PyMC model of a run's features and the :class:`~mmm_lib.model.MMM` that wrote it.

    ``config`` is the spec's ``model`` section (default: the baseline model); ``feature_scaler``
    is only needed for fixed transforms' counterfactuals and may be omitted to just fit.
    """
    mmm = from_artifacts(features_df, feature_metadata, feature_scaler or {}, config or ModelConfig())
    return mmm.build(), mmm


# --------------------------------------------------------------------------- sampling


def _say(msg: str) -> None:
    # Plain lines on stdout: readable in a terminal following a papermill run (log_output) and
    # stored as a few lines of text in the notebook, never as an HTML widget.
    print(msg, flush=True)


def _fmt_s(seconds: float) -> str:
    """``7 s``, ``1 min 05 s``, ``1 h 02 min``: durations as a person reads them in a log."""
    s = int(round(max(0.0, float(seconds))))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class _ProgressPrinter:
    """Plain-text sampling progress with elapsed time and ETA, one line per line (no ``\\r``).

    A line each time sampling passes another 10 % (at most every ``min_interval`` seconds) and at
    least every ``max_interval`` seconds while draws advance, e.g.
    ``sampling (nutpie):  40% [tuning] 1,600/4,000 draws · elapsed 12 s · ETA 18 s``. Elapsed time
    counts from the first progress report (so a compile before it is not in the rate); the ETA is
    the remaining draws at the average rate so far. ``clock`` is injectable for tests.
    """

    def __init__(self, sampler: str, chains: int, tune: int, draws: int, enabled: bool, min_interval: float = 2.0,
                 max_interval: float = 30.0, clock: Any = time.perf_counter):
        self.sampler, self.chains, self.tune, self.draws = sampler, chains, tune, draws
        self.total = chains * (tune + draws)
        self.enabled = enabled
        self.min_interval, self.max_interval = min_interval, max_interval
        self.clock = clock
        self.t0: float | None = None
        self._done0 = 0
        self._last_t = -np.inf
        self._last_step = 0
        self._last_done = 0

    def start(self, done: int = 0) -> None:
        """Start the clock (sampling begins now, ``done`` draws already counted)."""
        self.t0, self._done0 = self.clock(), int(done)
        self._last_t = self.t0

    def eta(self, done: int, now: float) -> float | None:
        """Seconds left at the average rate since :meth:`start`; ``None`` before any draw is timed."""
        if done >= self.total:
            return 0.0
        if self.t0 is None or done <= self._done0 or now <= self.t0:
            return None
        rate = (done - self._done0) / (now - self.t0)
        return max(0.0, (self.total - done) / rate)

    def line(self, done: int, divergences: int | None, now: float) -> str:
        done = min(int(done), self.total)
        phase = "tuning" if done < self.chains * self.tune else "drawing"
        div = "" if divergences is None else f", {divergences} divergences"
        elapsed = 0.0 if self.t0 is None else now - self.t0
        eta = self.eta(done, now)
        eta_txt = "ETA …" if eta is None else f"ETA {_fmt_s(eta)}"
        pct = int(100 * done / self.total)
        return (f"sampling ({self.sampler}): {pct:3d}% [{phase}{div}] {done:,}/{self.total:,} draws"
                f" · elapsed {_fmt_s(elapsed)} · {eta_txt}")

    def update(self, done: int, divergences: int | None = None) -> None:
        if not self.enabled or self.total <= 0:
            return
        now = self.clock()
        if self.t0 is None:  # the first draw (PyMC: after compiling in pm.sample) starts the clock
            self.start(done)
            now = self.t0
        step = min(10, int(10 * done / self.total))
        passed_step = step > self._last_step and (now - self._last_t >= self.min_interval or step == 10)
        heartbeat = done > self._last_done and now - self._last_t >= self.max_interval and step < 10
        if passed_step or heartbeat:
            self._last_step, self._last_t, self._last_done = max(step, self._last_step), now, done
            _say(self.line(done, divergences, now))


def _compile_cache_state(sampler: str = "pymc") -> str:
    """``"warm"`` when the sampler's compile cache (JAX's for numpyro, else PyTensor's numba one) holds compiled
    code, else ``"cold"``."""
    from pathlib import Path

    try:
        if sampler == "numpyro":
            folder = Path(os.environ.get("JAX_COMPILATION_CACHE_DIR", ""))
            return "warm" if str(folder) not in ("", ".") and folder.is_dir() and any(folder.iterdir()) else "cold"
        import pytensor

        folder = Path(pytensor.config.base_compiledir) / "numba"
        return "warm" if folder.is_dir() and any(folder.glob("*.nbi")) else "cold"
    except Exception:  # pragma: no cover - a cache we cannot read is treated as empty
        return "cold"


# Typical compile times (README "Performance", the 2-core development machine): a cold cache
# compiles everything; a warm one reuses cached kernels (a new model structure still compiles parts).
# numpyro's ticker covers compiling and sampling (the baseline model's pm.sample: 9.6 s cold, 4.4 s warm).
COMPILE_TYPICAL = {"nutpie": ("~60 s", "~5 s"), "pymc": ("~60 s", "~2–5 s"), "numpyro": ("~10 s", "~4 s")}


_ACTIVE_TICKERS: set[Any] = set()


def _stop_tickers_before_fork() -> None:
    # PyMC forks one process per chain once compiling is done: end the ticker first, so no thread
    # (which might hold stdout's lock) is copied into the chains' processes.
    for ticker in list(_ACTIVE_TICKERS):
        ticker.stop()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_stop_tickers_before_fork)


class _CompileTicker:
    """While a compile runs (no progress callback exists), a line every ``interval`` seconds.

    ``compiling model for nutpie (numba) … elapsed 20 s (usually ~60 s cold, ~5 s warm; the compile
    cache has entries)``.
    Use as a context manager, or call :meth:`stop` early (e.g. when the first draw arrives).
    """

    def __init__(self, what: str, sampler: str, enabled: bool, interval: float = 10.0,
                 clock: Any = time.perf_counter, cache_state: str | None = None):
        self.what, self.enabled, self.interval, self.clock = what, enabled, interval, clock
        self.cache_state = cache_state if cache_state is not None else (_compile_cache_state(sampler) if enabled else "cold")
        self.typical = COMPILE_TYPICAL.get(sampler)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0 = clock()

    def hint(self) -> str:
        if self.typical is None:
            return ""
        cold, warm = self.typical
        cache = "has entries" if self.cache_state == "warm" else "is empty"
        return f" (usually {cold} cold, {warm} warm; the compile cache {cache})"

    def line(self, now: float) -> str:
        elapsed = now - self.t0
        if self.typical is not None and elapsed > 90:  # 1.5 × the usual cold compile
            return (f"{self.what} … elapsed {_fmt_s(elapsed)} (longer than the usual {self.typical[0]} cold: "
                    "a busy machine or a larger model; it is still working)")
        return f"{self.what} … elapsed {_fmt_s(elapsed)}{self.hint()}"

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            _say(self.line(self.clock()))

    def __enter__(self) -> _CompileTicker:
        self.t0 = self.clock()
        if self.enabled:
            _say(f"{self.what}{self.hint()}…")
            self._thread = threading.Thread(target=self._run, name="mmm-compile-ticker", daemon=True)
            _ACTIVE_TICKERS.add(self)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        _ACTIVE_TICKERS.discard(self)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


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

    from .nutpie_compile import compile_model

    t0 = time.perf_counter()
    with _CompileTicker("compiling model for nutpie (numba)", "nutpie", progress):
        compiled = compile_model(model)
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
    printer.start()
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


@contextlib.contextmanager
def _jitted_jax_logp(sampler: str) -> Any:
    """For ``numpyro``: PyMC's JAX log density, jitted as one function.

    PyMC evaluates the JAX log density it builds at each chain's jittered starting point without ``jax.jit``, so
    JAX runs it one operation at a time, compiling each operation on its own: 80+ small XLA compiles on a new
    model structure and a dispatch per operation on a known one. Jitted, it is one compile. Measured on the
    baseline model (`params/baseline.yaml`'s run, a new process per fit, alternating with the unjitted version):
    the fit took 8.7–9.6 s against 10.5–11.2 s with an empty compile cache, 3.7–4.1 s against 4.1–4.2 s with a
    filled one. The sampler gets the same function (numpyro jits it inside its own NUTS step), so the draws are
    those of the same density; they are not bit for bit those of PyMC's unjitted function (the fused arithmetic
    rounds differently), and the same seed still gives the same draws run after run, cold or warm. Without PyMC's
    ``get_jaxified_logp`` (another PyMC version) nothing is changed."""
    if sampler != "numpyro":
        yield
        return
    import jax
    import pymc.sampling.jax as pj

    make = getattr(pj, "get_jaxified_logp", None)
    if make is None:
        yield
        return

    def jitted(*args: Any, **kwargs: Any) -> Any:
        return jax.jit(make(*args, **kwargs))

    pj.get_jaxified_logp = jitted
    try:
        yield
    finally:
        pj.get_jaxified_logp = make


def _pymc_sample(model: Any, spec: Any, cores: int, progress: bool, sampler: str) -> tuple[Any, float, float]:
    import pymc as pm

    printer = _ProgressPrinter(sampler, spec.chains, spec.tune, spec.draws, progress)
    counts = {"done": 0, "div": 0}
    if sampler == "pymc":
        ticker = _CompileTicker("compiling model and initialising NUTS (pymc)", "pymc", progress)
    else:
        ticker = _CompileTicker(f"compiling and sampling with {sampler} (no progress reports from this sampler)",
                                sampler, progress)

    def callback(trace: Any, draw: Any) -> None:  # runs in this process, once per draw and chain
        if counts["done"] == 0:
            ticker.stop()  # the first draw: compiling and NUTS initialisation are over
        counts["done"] += 1
        stats = draw.stats[0] if isinstance(draw.stats, list) and draw.stats else {}
        if not draw.tuning and bool(stats.get("diverging", False)):
            counts["div"] += 1
        printer.update(counts["done"], counts["div"])

    kwargs: dict[str, Any] = {}
    if sampler == "pymc":
        kwargs["callback"] = callback
    t0 = time.perf_counter()
    with ticker, model, _jitted_jax_logp(sampler):
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
        ``random_seed``, ``nuts_sampler`` (``auto`` | ``nutpie`` | ``pymc`` | ``numpyro``; see ``RunSpec.sampler``).
    progress
        Print plain-text progress lines (compile, every 10 %, done) to stdout.

    Returns
    -------
    xarray.DataTree
        ``posterior``, ``sample_stats``, ``observed_data``, ``constant_data``. The posterior attrs
        record ``mmm_sampler``, ``mmm_cores``, ``mmm_compile_time_s``, ``mmm_sampling_time_s``
        and ``mmm_wall_time_s``. Same spec and random_seed give identical draws (fastmath is off, see
        :mod:`mmm_lib.runtime`).
    """
    sampler = spec.sampler
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
    cores = max(1, min(spec.chains, usable_cores()))
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


def _posterior_dataset(idata: Any) -> Any:
    """The ``posterior`` group as an ``xarray.Dataset`` (accepts a DataTree, its node or a Dataset)."""
    post = idata["posterior"] if hasattr(idata, "children") and "posterior" in idata.children else idata
    return post.to_dataset() if hasattr(post, "to_dataset") else post


def parameter_names(idata: Any, include_detail: bool = True) -> list[tuple[str, str, str | None]]:
    """``(name, var, coord)`` for every scalar parameter, e.g. ``("beta[act_tv]", "beta", "act_tv")``.

    Two-dimensional parameters get ``coord`` ``"store_001, act_tv"``. ``include_detail=False`` leaves
    out the per-entity detail (:data:`ENTITY_DETAIL`).
    """
    import itertools

    ds = _posterior_dataset(idata)
    out: list[tuple[str, str, str | None]] = []
    for var in PARAMETERS:
        if var not in ds or (not include_detail and var in ENTITY_DETAIL):
            continue
        extra = [d for d in ds[var].dims if d not in ("chain", "draw")]
        if not extra:
            out.append((var, var, None))
            continue
        for combo in itertools.product(*(ds[var][d].values.tolist() for d in extra)):
            c = ", ".join(str(x) for x in combo)
            out.append((f"{var}[{c}]", var, c))
    return out


def _sel(da: Any, coord: str | None) -> Any:
    if coord is None:
        return da
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    parts = coord.split(", ", len(extra) - 1) if len(extra) > 1 else [coord]
    return da.sel(dict(zip(extra, parts)))


def _select(da: Any, coord: str | None) -> np.ndarray:
    return np.asarray(_sel(da, coord).transpose("chain", "draw").values, dtype=float)


def _arviz_summary(ds: Any, names: list[tuple[str, str, str | None]], kind: str, interval: float | None = None) -> Any:
    """``az.summary`` of the parameters in ``names`` as an ``xarray.Dataset`` with a ``summary`` dim.

    Raw numbers (``round_to="none"``) and, for ``kind="all"``, the equal-tailed interval: the
    numbers are ArviZ's own (sd with ddof=1, linear-interpolated quantiles, rank-normalised split
    R-hat, bulk/tail ESS), and the interval's two rows are renamed ``low``/``high`` so callers do
    not depend on ArviZ's ``eti90_lb`` column naming.
    """
    import arviz as az

    vars_ = sorted({v for _, v, _ in names})
    kw: dict[str, Any] = {} if interval is None else {"ci_kind": "eti", "ci_prob": float(interval)}
    res = az.summary(ds[vars_], kind=kind, fmt="xarray", round_to="none", **kw)
    labels = [str(s) for s in res["summary"].values]
    ci = {"_lb": "low", "_ub": "high"}
    return res.assign_coords(summary=[ci[lab[-3:]] if lab.startswith("eti") and lab[-3:] in ci else lab for lab in labels])


def _pick(res: Any, var: str, coord: str | None, stat: str) -> float:
    return float(_sel(res[var].sel(summary=stat), coord).values)


def convergence_table(idata: Any) -> pd.DataFrame:
    """R-hat (rank-normalised split), ESS bulk and ESS tail per scalar parameter.

    ArviZ's ``az.summary(kind="diagnostics")``; one row per :func:`parameter_names` entry.
    """
    ds = _posterior_dataset(idata)
    names = parameter_names(ds)
    cols = ["name", "var", "coord", "r_hat", "ess_bulk", "ess_tail"]
    if not names:
        return pd.DataFrame(columns=cols)
    res = _arviz_summary(ds, names, "diagnostics")
    rows = [{"name": name, "var": var, "coord": coord, **{s: _pick(res, var, coord, s) for s in cols[3:]}}
            for name, var, coord in names]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def summarize_posterior(idata: Any, interval: float = 0.9) -> dict[str, Any]:
    """``posterior_summary.json``: mean, sd, equal-tailed interval and convergence per parameter.

    One ``az.summary(kind="all", ci_kind="eti", ci_prob=interval, round_to="none")`` call; its
    numbers equal numpy's ``mean``, ``std(ddof=1)`` and linear ``quantile`` of the pooled draws.

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
    names = parameter_names(ds)
    res = _arviz_summary(ds, names, "all", interval) if names else None
    n_draws = int(ds.sizes.get("chain", 1) * ds.sizes.get("draw", 1))
    params = []
    for name, var, coord in names:
        row = {s: _pick(res, var, coord, s) for s in ("mean", "sd", "low", "high", "r_hat", "ess_bulk", "ess_tail")}
        if n_draws < 2:  # ArviZ gives NaN for the sd of a single draw
            row["sd"] = 0.0
        params.append({"name": name, "var": var, "coord": coord, **row})
    return {"interval": float(interval), "parameters": params}


def summary_table(summary: dict[str, Any]) -> pd.DataFrame:
    """``posterior_summary.json`` as a compact table for notebooks (values rounded for display)."""
    df = pd.DataFrame([p for p in summary["parameters"] if p["var"] not in ENTITY_DETAIL])
    pct = f"{round(100 * summary['interval'])}%"
    df = df[["name", "mean", "sd", "low", "high", "r_hat", "ess_bulk", "ess_tail"]].rename(
        columns={"name": "parameter", "low": f"{pct} low", "high": f"{pct} high"}
    )
    df = df.round({"mean": 3, "sd": 3, f"{pct} low": 3, f"{pct} high": 3, "r_hat": 3, "ess_bulk": 0, "ess_tail": 0})
    return df.set_index("parameter")


def prior_table(mmm: MMM) -> pd.DataFrame:
    """The model's priors as a table: parameter, distribution, dims and meaning (from the prior registry)."""
    rows = [{"parameter": k, "prior": p.describe().split(": ", 1)[0].split(" over ")[0],
             "per": " × ".join(p.dims) or "—", "meaning": p.note} for k, p in mmm.priors.items()]  # fmt: skip
    return pd.DataFrame(rows).set_index("parameter")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("pymc", "pytensor", "nutpie", "arviz", "arviz-stats", "numba", "numpy", "pandas", "xarray"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def model_metadata(mmm: MMM, spec: Any, idata: Any) -> dict[str, Any]:
    """``model_metadata.json``: what was fitted (from the model object), with which sampler and versions.

    Parameters
    ----------
    mmm
        The fitted :class:`~mmm_lib.model.MMM`.
    spec
        The run spec (sampler settings).
    idata
        The fitted DataTree (its posterior attrs hold the timings written by :func:`fit`).
    """
    attrs = dict(idata["posterior"].attrs)
    cores = attrs.get("mmm_cores")
    return {
        **mmm.metadata(),
        "sampler": {
            "nuts_sampler": attrs.get("mmm_sampler", spec.sampler),
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
        "sampling_time_s": attrs.get("mmm_sampling_time_s", attrs.get("sampling_time")),
        "versions": _versions(),
    }


def add_prior(mmm: MMM, idata: Any, seed: int, draws: int = PRIOR_DRAWS) -> Any:
    """Add ``prior`` and ``prior_predictive`` groups drawn by ``pm.sample_prior_predictive``.

    Prior plots read these groups: the prior is never restated outside the model. Drawn after the
    posterior with its own seed, so the posterior draws do not depend on it. Compiled in PyTensor's
    FAST_COMPILE mode: forward sampling runs a few hundred times, compiling it fully would cost more.
    """
    import pymc as pm

    import logging

    log = logging.getLogger("pymc")
    level = log.level
    log.setLevel(logging.WARNING)  # its "Sampling: [...]" line is noise in a report
    try:
        with mmm.build(for_prior=True):
            prior = pm.sample_prior_predictive(draws=draws, random_seed=int(seed) + 1, compile_kwargs={"mode": "FAST_COMPILE"})
    finally:
        log.setLevel(level)
    for group in ("prior", "prior_predictive"):
        if group in prior.children:
            idata[group] = prior[group].to_dataset()
    return idata


def add_checks(mmm: MMM, idata: Any, seed: int) -> Any:
    """Add what model checking reads: ``log_likelihood``, ``posterior_predictive`` and (holdout) ``predictions``.

    * ``log_likelihood["z"]``: pointwise log-likelihood of every fitted observation, for PSIS-LOO and
      run comparison;
    * ``posterior_predictive["z"]``: replicated data with noise, one replicate per posterior draw;
    * with held-out periods, ``predictions["z_holdout"]`` (the held-out forecast, noise included) and
      the held-out observations in ``predictions_constant_data["z_holdout_observed"]``.

    All on the model's scale. ``mu`` comes from the model object's evaluation on the draws
    (:meth:`MMM.mu`, the same definition 06 uses) and the noise from :meth:`MMM.likelihood`, PyMC's
    distribution: ``pm.logp`` and ``pm.draw`` over all draws at once. (PyMC's
    ``compute_log_likelihood`` / ``sample_posterior_predictive`` loop over draws: 6.3 s on the example
    with a warm compile cache, 24 s cold, against about 2.5 s here; a test checks both give the
    same log-likelihood.) The seed differs from the posterior's, so the posterior never depends on it.
    """
    import pymc as pm
    import xarray as xr

    d = mmm.data
    draws = posterior_draws(idata)
    post = _posterior_dataset(idata)
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    sample = {"chain": post["chain"].values, "draw": post["draw"].values}
    sigma = np.asarray(draws["sigma"], dtype=float).reshape(n_chain * n_draw, -1, 1)  # (S, 1 | E, 1)
    nu = np.asarray(draws["nu"], dtype=float).reshape(-1, 1, 1)
    brand_only = mmm.config.is_baseline  # the baseline model's observations have no entity dim

    def as_array(x: np.ndarray, period: str, periods: np.ndarray, with_sample: bool = True) -> Any:
        x = x[..., 0, :] if brand_only else x
        dims = ((period,) if brand_only else ("entity", period))
        coords = {period: periods, **({} if brand_only else {"entity": list(d.entities)})}
        if with_sample:
            x = x.reshape(n_chain, n_draw, *x.shape[1:])
            dims, coords = ("chain", "draw", *dims), {**sample, **coords}
        return xr.DataArray(x, dims=dims, coords=coords)

    rng = np.random.default_rng([int(seed), 2])
    fast = "FAST_COMPILE"  # one elementwise graph: compiling it fully would cost more than it saves
    mu = mmm.mu(draws, mmm.media(draws, d.activity))  # (S, E, T)
    dist = mmm.likelihood(mu, sigma, nu)
    loglik = pm.logp(dist, d.z[None]).eval(mode=fast)
    idata["log_likelihood"] = xr.Dataset({"z": as_array(np.asarray(loglik), "period", d.periods)})
    idata["posterior_predictive"] = xr.Dataset({"z": as_array(pm.draw(dist, random_seed=rng, mode=fast), "period", d.periods)})
    if d.n_holdout:
        mu_h = mmm.mu(draws, mmm.media(draws, d.activity, rows="holdout"), rows="holdout")
        z_h = pm.draw(mmm.likelihood(mu_h, sigma, nu), random_seed=rng, mode=fast)
        idata["predictions"] = xr.Dataset({"z_holdout": as_array(z_h, "holdout_period", d.holdout_periods)})
        idata["predictions_constant_data"] = xr.Dataset(
            {"z_holdout_observed": as_array(d.holdout_z, "holdout_period", d.holdout_periods, with_sample=False)})
    return idata


# --------------------------------------------------------------------------- the 04_fit stage


def fit_stage(run: Any, progress: bool = True, write: bool = True) -> dict[str, Any]:
    """04_fit in one call: read features, build the run's model, sample, summarise and (by default) write.

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
        ``idata`` (the DataTree, with prior groups), ``model`` (the :class:`~mmm_lib.model.MMM`),
        ``summary`` and ``metadata`` (the contents of ``posterior_summary.json`` and ``model_metadata.json``).
    """
    inputs = read_inputs(run, "04_fit")
    return fit_model(inputs["features.parquet"], inputs["feature_metadata.json"], inputs["feature_scaler.json"],
                     run.spec, progress=progress, run=run if write else None)


def fit_model(features: pd.DataFrame, feature_metadata: dict[str, Any], feature_scaler: dict[str, Any], spec: Any,
              progress: bool = True, run: Any = None) -> dict[str, Any]:
    """Build the spec's model on these features, sample it and summarise (in process; writes when ``run`` is given)."""
    mmm = from_artifacts(features, feature_metadata, feature_scaler, spec.model)
    model = mmm.build()
    d = mmm.data
    if progress:
        ents = f" × {len(d.entities)} entities" if len(d.entities) > 1 else ""
        _say(
            f"model: {mmm.name} ({mmm.parameter_count()} parameters), {d.z.shape[1]} periods{ents} "
            f"{pd.Timestamp(d.periods[0]).date()}..{pd.Timestamp(d.periods[-1]).date()}, "
            f"{len(d.channels)} channels, {len(d.control_names)} controls"
        )
    idata = fit(model, spec, progress=progress)
    idata = add_prior(mmm, idata, spec.random_seed)
    t0 = time.perf_counter()
    idata = add_checks(mmm, idata, spec.random_seed)
    if progress:
        held = f", {mmm.data.n_holdout} held-out periods predicted" if mmm.data.n_holdout else ""
        _say(f"log-likelihood and posterior predictive draws added in {time.perf_counter() - t0:.1f} s{held}")
    result = {
        "idata": idata,
        "model": mmm,
        "summary": summarize_posterior(idata, interval=0.9),
        "metadata": model_metadata(mmm, spec, idata),
    }
    if run is not None:
        write_fit(run, result)
    return result


def fit_outputs(result: dict[str, Any]) -> dict[str, Any]:
    """The 04_fit artifacts of a :func:`fit_model` result, keyed by artifact name."""
    return {"posterior.nc": result["idata"], "posterior_summary.json": result["summary"],
            "model_metadata.json": result["metadata"]}


def write_fit(run: Any, result: dict[str, Any]) -> list[Any]:
    """Write ``posterior.nc``, ``posterior_summary.json`` and ``model_metadata.json`` atomically.

    A thin wrapper over :func:`mmm_lib.stages.write_outputs`. Returns the written paths.
    """
    return write_outputs(run, "04_fit", fit_outputs(result))


def fit_headline(result: dict[str, Any]) -> pd.DataFrame:
    """One-row headline for the end of 04_fit: data size, sampler, timings, beta means."""
    md = result["metadata"]
    s = md["sampler"]
    row: dict[str, Any] = {
        "model": md["model"],
        "parameters": md["n_parameters"],
        "observations": md["n_obs"],
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
    "add_checks",
    "build_model",
    "convergence_table",
    "fit",
    "fit_headline",
    "fit_model",
    "fit_outputs",
    "fit_stage",
    "model_metadata",
    "parameter_names",
    "prior_table",
    "posterior_draws",
    "summarize_posterior",
    "summary_table",
    "write_fit",
]

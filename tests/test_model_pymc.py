"""Tests for mmm_lib.model_pymc: model data, model structure, summaries, and one real fit.

Fast tests use hand-built data and posteriors (no sampling). The ``slow`` tests compile and run
NUTS on small data: a known-truth recovery test (sample generator → features → fit), the 04_fit
stage writing its artifacts, same-seed reproducibility and the PyMC-sampler path.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from mmm_lib import model_pymc as mp
from mmm_lib.model import from_artifacts, model_data
from mmm_lib.spec import ModelConfig, parse_spec
from mmm_lib.storage import open_run

CHANNELS = ["act_tv", "act_digital", "act_radio"]
CONTROLS = ["ctrl_price_index", "season_sin1", "season_cos1", "trend"]


def make_features(
    n_carry: int = 10,
    n_est: int = 60,
    beta=(0.3, 0.15, 0.0),
    gamma=(-0.1, 0.05, 0.03, 0.04),
    const: float = 8.0,
    noise: float = 0.05,
    seed: int = 0,
    with_controls: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """A features table with the shape of ``features.parquet`` and its metadata, from known truth.

    ``activity__<driver>`` columns hold raw activity (only the learned-transform model reads them);
    the metadata leaves their names to the default.
    """
    rng = np.random.default_rng(seed)
    n = n_carry + n_est
    t = np.arange(n)
    df = pd.DataFrame(
        {
            "entity_id": "brand",
            "period_start": pd.date_range("2022-01-03", periods=n, freq="7D"),
            "window": ["carryover"] * n_carry + ["estimation"] * n_est,
        }
    )
    media = rng.uniform(0, 0.9, size=(n, len(CHANNELS)))
    ctrl = np.column_stack(
        [rng.normal(size=n), np.sin(2 * np.pi * t / 52.18), np.cos(2 * np.pi * t / 52.18), (t - t.mean()) / t.std()]
    )
    mu = const + media @ np.asarray(beta) + (ctrl @ np.asarray(gamma) if with_controls else 0.0)
    df["target"] = np.expm1(mu + rng.normal(0, noise, n))
    for j, ch in enumerate(CHANNELS):
        df[f"media__{ch}"] = media[:, j]
    activity = rng.uniform(0, 100, size=(n, len(CHANNELS))) * (rng.uniform(size=(n, len(CHANNELS))) < 0.7)
    for j, ch in enumerate(CHANNELS):
        df[f"activity__{ch}"] = activity[:, j]
    feats = ["ctrl__ctrl_price_index", "season__sin1", "season__cos1", "trend"]
    kinds = ["control", "seasonality", "seasonality", "trend"]
    controls = []
    if with_controls:
        for j, (name, feat, kind) in enumerate(zip(CONTROLS, feats, kinds)):
            df[feat] = ctrl[:, j]
            controls.append({"name": name, "feature": feat, "kind": kind})
    meta = {
        "target": "sales",
        "grain": "WEEK",
        "channels": [{"driver": ch, "feature": f"media__{ch}", "spend_col": None, "decay": 0.5, "max_lag": 13} for ch in CHANNELS],
        "controls": controls,
    }
    return df, meta


def fake_posterior(
    n_chains: int = 2, n_draws: int = 500, seed: int = 1, with_gamma: bool = True, chain_shift: float = 0.0
) -> xr.DataTree:
    """A DataTree shaped like a fit's output, with independent normal draws (no sampling)."""
    rng = np.random.default_rng(seed)
    shape = (n_chains, n_draws)
    shift = (np.arange(n_chains) * chain_shift)[:, None]
    post = {
        "intercept": (("chain", "draw"), rng.normal(0.1, 0.02, shape) + shift),
        "sigma_beta": (("chain", "draw"), np.abs(rng.normal(0.3, 0.05, shape))),
        "beta": (("chain", "draw", "channel"), np.abs(rng.normal([0.3, 0.15, 0.02], 0.02, (*shape, 3)))),
        "sigma": (("chain", "draw"), np.abs(rng.normal(0.05, 0.003, shape))),
        "nu": (("chain", "draw"), np.abs(rng.normal(15, 3, shape))),
    }
    coords = {"chain": np.arange(n_chains), "draw": np.arange(n_draws), "channel": CHANNELS}
    if with_gamma:
        post["gamma"] = (("chain", "draw", "control"), rng.normal([-0.1, 0.05], 0.01, (*shape, 2)))
        coords["control"] = CONTROLS[:2]
    ds = xr.Dataset(post, coords=coords)
    ds.attrs.update(mmm_sampler="nutpie", mmm_cores=2, mmm_compile_time_s=1.0, mmm_sampling_time_s=0.5, mmm_wall_time_s=1.6)
    return xr.DataTree.from_dict({"posterior": ds})


# --------------------------------------------------------------------------- model data


def test_model_data_uses_estimation_rows_and_centres_log_target():
    df, meta = make_features(n_carry=10, n_est=60)
    shuffled = df.sample(frac=1.0, random_state=3)  # order in the file must not matter
    d = model_data(shuffled, meta)
    est = df[df["window"] == "estimation"]
    assert d.n_obs == 60 and d.entities == ["brand"]
    assert d.z.shape == (1, 60) and d.target.shape == (1, 60) and d.target_center.shape == (1,)
    assert d.media.shape == (1, 60, 3) and d.controls.shape == (1, 60, 4)
    np.testing.assert_allclose(d.target[0], est["target"].to_numpy())
    np.testing.assert_allclose(d.media[0], est[[f"media__{c}" for c in CHANNELS]].to_numpy())
    np.testing.assert_allclose(d.controls[0], est[[c["feature"] for c in meta["controls"]]].to_numpy())
    assert d.target_center[0] == pytest.approx(np.log1p(est["target"]).mean())
    np.testing.assert_allclose(d.z[0], np.log1p(est["target"].to_numpy()) - d.target_center[0])
    assert abs(d.z.mean()) < 1e-12
    # raw activity keeps every row (adstock needs the carry-over history); est marks the fitted rows
    assert d.activity.shape == (1, 70, 3)
    np.testing.assert_array_equal(d.activity[0], df[[f"activity__{c}" for c in CHANNELS]].to_numpy())
    np.testing.assert_array_equal(d.est, (df["window"] == "estimation").to_numpy())
    # coordinates are the driver / control names, not the feature columns
    assert d.channels == CHANNELS
    assert d.channel_features == [f"media__{c}" for c in CHANNELS]
    assert d.control_names == CONTROLS
    assert d.control_features == [c["feature"] for c in meta["controls"]]
    assert pd.Timestamp(d.periods[0]) == est["period_start"].iloc[0]
    assert len(d.periods) == 60 and np.all(np.diff(d.periods) > np.timedelta64(0, "ns"))


def test_model_data_reads_the_activity_columns_named_in_the_metadata():
    df, meta = make_features()
    renamed = df.rename(columns={f"activity__{c}": f"raw_{c}" for c in CHANNELS})
    named = {**meta, "channels": [{**c, "activity": f"raw_{c['driver']}"} for c in meta["channels"]]}
    np.testing.assert_array_equal(model_data(renamed, named).activity, model_data(df, meta).activity)


def test_model_data_without_controls_has_zero_columns():
    df, meta = make_features(with_controls=False)
    d = model_data(df, meta)
    assert d.controls.shape == (1, 60, 0)
    assert d.control_names == [] and d.control_features == []


@pytest.mark.parametrize(
    "breaker, match",
    [
        (lambda df, meta: (df.drop(columns=["media__act_tv"]), meta), r"media__act_tv"),
        (lambda df, meta: (df.drop(columns=["activity__act_radio"]), meta), r"activity__act_radio"),
        (lambda df, meta: (df.assign(window="carryover"), meta), r"window == 'estimation'"),
        (lambda df, meta: (df.assign(target=df["target"].where(df.index != 30, -5.0)), meta), r"negative"),
        (lambda df, meta: (df.assign(**{"ctrl__ctrl_price_index": df["ctrl__ctrl_price_index"].where(df.index != 40)}), meta), r"'ctrl__ctrl_price_index'.*missing"),
        (lambda df, meta: (df, {**meta, "channels": []}), r"no channels"),
        (lambda df, meta: (pd.concat([df, df.tail(1)]), meta), r"period_start repeats"),
        (lambda df, meta: (df.assign(**{"activity__act_tv": df["activity__act_tv"].where(df.index != 3, np.inf)}), meta),
         r"'activity__act_tv'.*missing/infinite"),
        (lambda df, meta: (df.assign(entity_id=np.where(df.index % 2 == 0, "a", "b")), meta), r"entity 'b' covers other periods"),
    ],
)
def test_model_data_refuses_bad_inputs(breaker, match):
    df, meta = breaker(*make_features())
    with pytest.raises(ValueError, match=match):
        model_data(df, meta)


# --------------------------------------------------------------------------- model structure


def seed_reference_model(d):
    """The baseline model written exactly as in DESIGN.md (plain intercept), as a reference, on one entity's data."""
    import pymc as pm

    with pm.Model(coords={"channel": d.channels, "control": d.control_names}) as ref:
        intercept = pm.Normal("intercept", 0.0, 2.0)
        sigma_beta = pm.HalfNormal("sigma_beta", 0.5)
        beta = pm.HalfNormal("beta", sigma=sigma_beta, dims="channel")
        gamma = pm.Normal("gamma", 0.0, 0.5, dims="control")
        mu = intercept + d.media[0] @ beta + d.controls[0] @ gamma
        pm.StudentT("z", nu=pm.Exponential("nu", lam=0.1), mu=mu, sigma=pm.HalfNormal("sigma", 1.0), observed=d.z[0])
    return ref


def test_build_model_has_the_seed_structure_and_priors():
    import pymc as pm

    df, meta = make_features()
    model, mmm = mp.build_model(df, meta)
    assert mmm.name == "baseline" and mmm.config == ModelConfig()
    assert sorted(v.name for v in model.free_RVs) == sorted(["intercept_centred", "sigma_beta", "beta", "gamma", "sigma", "nu"])
    assert [v.name for v in model.deterministics] == ["intercept"]
    assert [v.name for v in model.observed_RVs] == ["z"]
    assert list(model.coords["channel"]) == CHANNELS
    assert list(model.coords["control"]) == CONTROLS
    assert model.named_vars_to_dims["beta"] == ("channel",)
    assert {"media", "controls", "z_target"} <= set(model.named_vars)
    np.testing.assert_allclose(model["z_target"].get_value(), mmm.data.z[0])
    np.testing.assert_allclose(model["media"].get_value(), mmm.data.media[0])
    # prior draws match the baseline model's priors (moments of the documented distributions)
    draws = pm.draw([model["sigma"], model["nu"], model["gamma"], model["sigma_beta"]], draws=20_000, random_seed=1, mode="FAST_COMPILE")
    sigma, nu, gamma, sigma_beta = draws
    assert sigma.mean() == pytest.approx(np.sqrt(2 / np.pi), rel=0.05)  # HalfNormal(1)
    assert sigma_beta.mean() == pytest.approx(0.5 * np.sqrt(2 / np.pi), rel=0.05)
    assert nu.mean() == pytest.approx(10.0, rel=0.05)  # Exponential(lam=0.1)
    assert gamma.std() == pytest.approx(0.5, rel=0.05)


def test_centred_intercept_gives_exactly_the_seed_models_density():
    """Same log density as the plain baseline model at random points: the reparameterization is exact.

    The intercept prior is evaluated at the deterministic ``intercept``, so a wrong centring
    formula would change the density too.
    """
    model, mmm = mp.build_model(*make_features())
    d = mmm.data
    ref = seed_reference_model(d)
    # the Python linker: no numba compile, so this stays fast with a cold cache
    logp, logp_ref = model.compile_logp(mode="FAST_COMPILE"), ref.compile_logp(mode="FAST_COMPILE")
    rng = np.random.default_rng(0)
    m_media, m_ctrl = d.media[0].mean(axis=0), d.controls[0].mean(axis=0)
    for _ in range(5):
        beta, gamma = np.abs(rng.normal(0.2, 0.1, 3)), rng.normal(0, 0.1, 4)
        intercept = rng.normal(0, 0.3)
        common = {
            "sigma_beta_log__": rng.normal(-1, 0.3), "beta_log__": np.log(beta), "gamma": gamma,
            "sigma_log__": rng.normal(-2.5, 0.2), "nu_log__": rng.normal(2.5, 0.3),
        }  # fmt: skip
        point = {**common, "intercept_centred": intercept + m_media @ beta + m_ctrl @ gamma}
        assert logp(point) == pytest.approx(logp_ref({**common, "intercept": intercept}), rel=1e-9)


def test_build_model_without_controls_omits_gamma():
    df, meta = make_features(with_controls=False)
    model, _ = mp.build_model(df, meta)
    assert "gamma" not in model.named_vars and "controls" not in model.named_vars
    assert "control" not in model.coords


def test_data_can_be_swapped_for_a_dataset_of_the_same_structure():
    import pymc as pm

    model, _ = mp.build_model(*make_features(n_est=60))
    other = model_data(*make_features(n_est=40, seed=5))
    with model:
        pm.set_data(
            {"media": other.media[0], "controls": other.controls[0], "z_target": other.z[0]},
            coords={"period": other.periods},
        )
    assert model["media"].get_value().shape == (40, 3)
    assert len(model.coords["period"]) == 40


# --------------------------------------------------------------------------- summaries (no sampling)


def test_summarize_posterior_matches_numpy_quantiles():
    dt = fake_posterior()
    s = mp.summarize_posterior(dt, interval=0.9)
    assert s["interval"] == 0.9
    names = [p["name"] for p in s["parameters"]]
    assert names == [
        "intercept", "sigma_beta", "beta[act_tv]", "beta[act_digital]", "beta[act_radio]",
        "gamma[ctrl_price_index]", "gamma[season_sin1]", "sigma", "nu",
    ]  # fmt: skip
    p = next(p for p in s["parameters"] if p["name"] == "beta[act_digital]")
    x = dt["posterior"]["beta"].sel(channel="act_digital").values.ravel()
    assert (p["var"], p["coord"]) == ("beta", "act_digital")
    assert p["mean"] == pytest.approx(x.mean())
    assert p["sd"] == pytest.approx(x.std(ddof=1))
    assert p["low"] == pytest.approx(np.quantile(x, 0.05))
    assert p["high"] == pytest.approx(np.quantile(x, 0.95))
    scalar = s["parameters"][0]
    assert scalar["coord"] is None
    for p in s["parameters"]:
        assert 0.99 < p["r_hat"] < 1.02 and p["ess_bulk"] > 300 and p["ess_tail"] > 300
    json.dumps(s)  # plain JSON types


def test_summarize_posterior_interval_and_chain_disagreement():
    dt = fake_posterior(chain_shift=1.0)
    s = mp.summarize_posterior(dt, interval=0.5)
    p = s["parameters"][0]
    x = dt["posterior"]["intercept"].values.ravel()
    assert p["low"] == pytest.approx(np.quantile(x, 0.25)) and p["high"] == pytest.approx(np.quantile(x, 0.75))
    assert p["r_hat"] > 1.5  # chains centred 1 apart with sd 0.02
    with pytest.raises(ValueError, match="interval"):
        mp.summarize_posterior(dt, interval=1.5)


def test_posterior_draws_and_linear_predictor():
    dt = fake_posterior(n_chains=2, n_draws=50)
    d = mp.posterior_draws(dt)
    assert d["beta"].shape == (100, 3) and d["gamma"].shape == (100, 2) and d["intercept"].shape == (100,)
    # chain-major stacking: sample 50 is chain 1, draw 0
    assert d["intercept"][50] == dt["posterior"]["intercept"].values[1, 0]
    # MMM.mu: intercept + media @ beta + controls @ gamma per draw (the two controls fake_posterior has)
    df, meta = make_features(n_est=4)
    meta = {**meta, "controls": meta["controls"][:2]}
    mmm = from_artifacts(df, meta, {}, ModelConfig())
    controls = mmm.data.controls[0]
    assert controls.shape == (4, 2)
    ones = np.ones((1, 4, 3))
    mu = mmm.mu(d, ones)
    assert mu.shape == (100, 1, 4)
    np.testing.assert_allclose(mu[:, 0], (d["intercept"] + d["beta"].sum(axis=1))[:, None] + d["gamma"] @ controls.T)
    media = np.random.default_rng(2).uniform(0, 1, (1, 4, 3))
    np.testing.assert_allclose(mmm.mu(d, media)[:, 0], d["intercept"][:, None] + d["beta"] @ media[0].T + d["gamma"] @ controls.T)
    no_gamma = mp.posterior_draws(fake_posterior(with_gamma=False))
    assert no_gamma["gamma"].shape[1] == 0


def test_model_metadata_and_tables():
    df, meta = make_features()
    spec = parse_spec({"data_path": "x.csv", "drivers": CHANNELS, "draws": 500, "chains": 2})
    _, mmm = mp.build_model(df, meta, config=spec.model)
    dt = fake_posterior()
    md = mp.model_metadata(mmm, spec, dt)
    assert md["model"] == "baseline" and md["transforms"] == "fixed" and md["level"] == "brand"
    assert md["target_transform"] == "log1p" and md["target_center"] == pytest.approx(mmm.data.target_center[0])
    assert md["channels"] == CHANNELS and md["controls"] == CONTROLS
    assert md["priors"]["beta"].startswith("HalfNormal(sigma=sigma_beta)") and md["priors"]["nu"].startswith("Exponential")
    # intercept, sigma_beta, 3 beta, 4 gamma, sigma, nu
    assert md["n_parameters"] == mmm.parameter_count() == 1 + 1 + 3 + 4 + 1 + 1
    assert md["sampler"]["nuts_sampler"] == "nutpie" and md["sampler"]["draws"] == 500
    assert md["sampling_time_s"] == 0.5 and md["n_obs"] == 60
    assert {"pymc", "pytensor", "arviz", "numpy", "python"} <= set(md["versions"])
    json.dumps(md)
    table = mp.summary_table(mp.summarize_posterior(dt))
    assert table.index.name == "parameter" and table.index[2] == "beta[act_tv]"
    assert list(table.columns) == ["mean", "sd", "90% low", "90% high", "r_hat", "ess_bulk", "ess_tail"]
    priors = mp.prior_table(mmm)
    assert list(priors.index) == list(mmm.priors) and list(priors.columns) == ["prior", "per", "meaning"]
    assert priors.loc["beta", "prior"] == "HalfNormal(sigma=sigma_beta)" and priors.loc["beta", "per"] == "channel"
    assert priors.loc["nu", "per"] == "—"
    head = mp.fit_headline({"metadata": md, "summary": mp.summarize_posterior(dt)})
    assert head.loc[0, "beta act_tv"] == pytest.approx(0.3, abs=0.01)


def test_fit_refuses_numpyro_without_jax(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    # As if jax and numpyro were not installed (whether or not they are here).
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None if name in ("numpyro", "jax") else real(name, *a, **k))
    model, _ = mp.build_model(*make_features())
    spec = parse_spec({"data_path": "x.csv", "drivers": CHANNELS, "nuts_sampler": "numpyro"})
    with pytest.raises(ValueError, match="numpyro"):
        mp.fit(model, spec, progress=False)


def test_plot_coefficients_and_prior_posterior_return_figures():
    from matplotlib.figure import Figure

    from mmm_lib.plots.fit import plot_beta_prior_posterior, plot_coefficients

    dt = fake_posterior()
    fig = plot_coefficients(dt, "beta")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Radio", "Digital", "TV"]  # display names
    relabelled = plot_coefficients(dt, "beta", labels={"act_tv": "Television"}).axes[0]
    assert relabelled.get_yticklabels()[-1].get_text() == "Television"
    assert "beta" in ax.get_xlabel()
    assert isinstance(plot_coefficients(dt, "gamma"), Figure)
    with pytest.raises(ValueError, match="gamma"):
        plot_coefficients(fake_posterior(with_gamma=False), "gamma")
    with pytest.raises(ValueError, match="no 'prior' group"):
        plot_beta_prior_posterior(dt)
    # the prior histogram comes from the fit's own prior group (pm.sample_prior_predictive draws)
    rng = np.random.default_rng(4)
    sigma_beta = np.abs(rng.normal(0, 0.5, (1, 500)))
    prior = xr.Dataset(
        {"beta": (("chain", "draw", "channel"), np.abs(rng.normal(0, 1, (1, 500, 3))) * sigma_beta[..., None])},
        coords={"chain": [0], "draw": np.arange(500), "channel": CHANNELS},
    )
    dt["prior"] = prior
    fig = plot_beta_prior_posterior(dt)
    assert [a.get_title() for a in fig.axes if a.get_visible()] == CHANNELS


# --------------------------------------------------------------------------- real fits (slow)


def _sample_features(seed: int = 11) -> tuple[pd.DataFrame, dict, dict, dict]:
    """Brand-level sample data with known truth, through the pipeline's own feature builder.

    The radio channel's true beta is 0: the negative control.
    """
    from mmm_lib.features import build_features
    from mmm_lib.sample import CHANNELS as S_CHANNELS
    from mmm_lib.sample import PRICE, SPEND, TARGET, default_spec, generate_sample, window_labels

    spec = default_spec()
    data, truth = generate_sample(n_entities=1, n_periods=156, seed=seed, beta={"act_tv": 0.25, "act_digital": 0.15, "act_radio": 0.0})
    brand = data.drop(columns="entity_id").assign(entity_id="brand")
    brand["period_start"] = pd.to_datetime(brand["period_start"])
    brand["window"] = window_labels(pd.DatetimeIndex(brand["period_start"]), spec)
    column_info = {"grain": "WEEK", "target": TARGET, "drivers": list(S_CHANNELS), "controls": [PRICE], "spend": dict(SPEND)}
    feats, meta, scaler = build_features(brand, column_info, spec)
    # the generator's own media features are the ones we rebuilt (same function, same data)
    for ch in S_CHANNELS:
        np.testing.assert_allclose(feats[f"media__{ch}"], truth["series"]["media_feature"][ch], rtol=1e-9, atol=1e-12)
    return feats, meta, scaler, truth


@pytest.mark.slow
def test_fit_recovers_known_betas_and_gammas(outputs_root):
    """Known truth → features → NUTS (300 tune / 300 draws, 2 chains).

    Each non-zero true beta must lie in its 98 % interval and each true gamma and the intercept
    in their 99 % intervals: wide enough that a correct model misses with probability of a few
    percent over all 9 checks, narrow enough that a wrong sign, scale or column order fails.
    Negative control: the channel with true beta 0 (at the HalfNormal's boundary, so no central
    interval contains it) must have a posterior mean far below the real ones.
    """
    feats, meta, _, truth = _sample_features()
    model, mmm = mp.build_model(feats, meta)
    spec = parse_spec(
        {"data_path": "x.csv", "drivers": CHANNELS, "draws": 300, "tune": 300, "chains": 2, "random_seed": 3, "nuts_sampler": "nutpie"}
    )
    idata = mp.fit(model, spec, progress=False)
    assert idata["posterior"].attrs["mmm_sampler"] == "nutpie"
    assert int(idata["sample_stats"]["diverging"].sum()) <= 3

    post = idata["posterior"]
    true_beta = truth["params"]["beta"]
    for ch in ("act_tv", "act_digital"):
        x = post["beta"].sel(channel=ch).values.ravel()
        lo, hi = np.quantile(x, [0.01, 0.99])
        assert lo <= true_beta[ch] <= hi, f"beta[{ch}] true {true_beta[ch]} outside 98% interval [{lo:.3f}, {hi:.3f}]"
    for name, g in truth["params"]["gamma"].items():
        x = post["gamma"].sel(control=name).values.ravel()
        lo, hi = np.quantile(x, [0.005, 0.995])
        assert lo <= g <= hi, f"gamma[{name}] true {g} outside 99% interval [{lo:.3f}, {hi:.3f}]"
    x = post["intercept"].values.ravel()
    intercept_true = truth["params"]["const"] - mmm.data.target_center[0]
    assert np.quantile(x, 0.005) <= intercept_true <= np.quantile(x, 0.995)

    means = {ch: float(post["beta"].sel(channel=ch).mean()) for ch in CHANNELS}
    assert means["act_radio"] < 0.3 * min(means["act_tv"], means["act_digital"]), means
    assert np.quantile(post["beta"].sel(channel="act_radio").values, 0.95) < true_beta["act_digital"]
    assert means["act_tv"] > means["act_digital"]  # 0.25 vs 0.15: the ordering is recovered


@pytest.mark.slow
def test_fit_stage_writes_artifacts_and_is_reproducible(outputs_root, tmp_path, capsys):
    feats, meta, scaler, _ = _sample_features(seed=12)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        "data_path: x.csv\ndrivers: [act_tv, act_digital, act_radio]\ncontrols: [ctrl_price_index]\n"
        "draws: 100\ntune: 100\nchains: 2\nrandom_seed: 5\n",
        encoding="utf-8",
    )
    run = open_run(spec_path, "fit_test", create=True)
    run.write_parquet("features.parquet", feats)
    run.write_json("feature_metadata.json", meta)
    run.write_json("feature_scaler.json", scaler)

    result = mp.fit_stage(run)
    out = capsys.readouterr().out
    sampler = run.spec.sampler
    assert sampler == "numpyro"  # auto's choice for the baseline model; the pymc and nutpie paths have their own tests
    # numpyro reports no draws as it goes: one line while it compiles and samples (a few seconds), then the result
    assert "compiling and sampling with numpyro" in out and "done: 2 chains × 100 draws" in out
    assert "\r" not in out  # plain lines (no carriage returns)

    stored = run.read_posterior()
    assert {"posterior", "sample_stats", "observed_data", "constant_data", "prior", "prior_predictive"} <= set(stored.children)
    # the prior groups are forward draws of the same model (plain intercept, same variables)
    assert {"intercept", "sigma_beta", "beta", "gamma", "sigma", "nu"} <= set(stored["prior"].data_vars)
    assert dict(stored["prior_predictive"].sizes)["draw"] == mp.PRIOR_DRAWS
    post = stored["posterior"]
    assert list(post["beta"].coords["channel"].values) == CHANNELS
    assert list(post["gamma"].coords["control"].values) == [c["name"] for c in meta["controls"]]
    assert dict(post.sizes)["chain"] == 2 and dict(post.sizes)["draw"] == 100
    summary = run.read_json("posterior_summary.json")
    assert summary == json.loads(json.dumps(result["summary"]))
    md = run.read_json("model_metadata.json")
    assert md["sampler"]["nuts_sampler"] == sampler and md["sampling_time_s"] > 0
    assert md["estimation_start"] == result["metadata"]["estimation_start"] == str(pd.Timestamp(result["model"].data.periods[0]).date())
    assert md["n_parameters"] == result["model"].parameter_count()
    # the table the notebook shows has one row per scalar parameter
    assert len(mp.summary_table(summary)) == len(summary["parameters"]) == 1 + 1 + 3 + len(meta["controls"]) + 2

    # the deterministic intercept is the level at zero features: intercept_centred minus the centring
    m_media = result["model"].data.media[0].mean(axis=0)
    m_ctrl = result["model"].data.controls[0].mean(axis=0)
    recomputed = post["intercept_centred"] - post["beta"].values @ m_media - post["gamma"].values @ m_ctrl
    np.testing.assert_allclose(post["intercept"].values, recomputed, atol=1e-10)

    # same spec + seed -> identical draws
    model, _ = mp.build_model(feats, meta)
    again = mp.fit(model, run.spec, progress=False)
    np.testing.assert_array_equal(again["posterior"]["beta"].values, post["beta"].values)


@pytest.mark.slow
# PyMC forks one process per chain; Python warns when nutpie's threads from earlier tests exist.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_pymc_sampler_path_reports_progress_and_tree_depth_stat(capsys):
    from mmm_lib.diagnostics import compute_diagnostics

    model, _ = mp.build_model(*make_features(n_est=60))
    spec = parse_spec({"data_path": "x.csv", "drivers": CHANNELS, "draws": 100, "tune": 100, "chains": 2, "nuts_sampler": "pymc"})
    idata = mp.fit(model, spec)
    out = capsys.readouterr().out
    assert "sampling (pymc): 100%" in out and "done: 2 chains × 100 draws" in out
    assert "400/400 draws · elapsed" in out and "ETA" in out and "compiling model and initialising NUTS (pymc)" in out
    assert idata["posterior"].attrs["mmm_sampler"] == "pymc"
    assert "reached_max_treedepth" in idata["sample_stats"]
    diag = compute_diagnostics(idata)
    codes = {f["code"] for f in diag["findings"]}
    assert not any(c.endswith("_UNAVAILABLE") for c in codes)
    assert diag["metrics"]["pct_max_treedepth"] is not None


# --------------------------------------------------------------------------- progress lines (fake clock)


class _FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_progress_printer_shows_draws_elapsed_and_eta(capsys):
    clock = _FakeClock()
    pr = mp._ProgressPrinter("nutpie", chains=2, tune=1000, draws=1000, enabled=True, clock=clock)
    pr.start()
    clock.t += 12.0
    pr.update(1600, 0)
    line = capsys.readouterr().out.strip()
    # 1,600 of 4,000 in 12 s -> 2,400 left at 133/s = 18 s
    assert line == "sampling (nutpie):  40% [tuning, 0 divergences] 1,600/4,000 draws · elapsed 12 s · ETA 18 s"
    assert "\r" not in line

    clock.t += 1.0  # under min_interval: no line even at a new 10 % step
    pr.update(2200, 1)
    assert capsys.readouterr().out == ""
    clock.t += 5.0
    pr.update(4000, 1)
    assert capsys.readouterr().out.strip().endswith("[drawing, 1 divergences] 4,000/4,000 draws · elapsed 18 s · ETA 0 s")


def test_progress_printer_heartbeat_and_clock_from_first_draw(capsys):
    clock = _FakeClock()
    pr = mp._ProgressPrinter("pymc", chains=1, tune=5000, draws=5000, enabled=True, clock=clock, max_interval=30)
    clock.t += 60.0  # compiling: not counted in elapsed or the rate
    pr.update(1)
    assert capsys.readouterr().out == ""
    clock.t += 31.0
    pr.update(501)  # 5 %: no new 10 % step, but 30 s without a line
    out = capsys.readouterr().out
    assert "5% [tuning] 501/10,000 draws · elapsed 31 s · ETA 9 min 49 s" in out
    pr.update(502)
    assert capsys.readouterr().out == ""
    assert mp._fmt_s(3725) == "1 h 02 min" and mp._fmt_s(-3) == "0 s"


def test_progress_printer_disabled_is_silent(capsys):
    pr = mp._ProgressPrinter("nutpie", 2, 10, 10, enabled=False)
    pr.update(40)
    assert capsys.readouterr().out == ""


def test_compile_ticker_prints_elapsed_with_honest_hint(capsys):
    import time

    clock = _FakeClock()
    ticker = mp._CompileTicker("compiling model for nutpie (numba)", "nutpie", True, interval=0.01, clock=clock,
                               cache_state="cold")
    assert ticker.line(clock.t + 20) == ("compiling model for nutpie (numba) … elapsed 20 s "
                                         "(usually ~60 s cold, ~5 s warm; the compile cache is empty)")
    with ticker:
        clock.t += 10.0
        deadline = time.monotonic() + 5
        while "elapsed 10 s" not in capsys.readouterr().out and time.monotonic() < deadline:
            time.sleep(0.01)
    assert not ticker._thread.is_alive()
    capsys.readouterr()  # lines printed before the compile ended
    time.sleep(0.05)
    assert capsys.readouterr().out == ""  # nothing after the compile ended
    assert "longer than the usual ~60 s cold" in ticker.line(ticker.t0 + 120)
    unknown = mp._CompileTicker("compiling and sampling with another sampler", "other", True, cache_state="warm")
    assert unknown.hint() == ""  # no typical times known: elapsed only
    assert "~10 s cold" in mp._CompileTicker("x", "numpyro", True, cache_state="cold").hint()
    assert "the compile cache has entries" in mp._CompileTicker("x", "pymc", True, cache_state="warm").hint()


# A new process that fits the same small model with numpyro and prints its draws and how many XLA programs it
# compiled or loaded from the cache.
_NUMPYRO_CHILD = """
import json, sys
import jax.monitoring
programs = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: programs.append(1) if event == "/jax/core/compile/backend_compile_duration" else None)
sys.path.insert(0, sys.argv[1])
from test_model_pymc import CHANNELS, make_features
from mmm_lib import model_pymc as mp
from mmm_lib.spec import parse_spec
model, _ = mp.build_model(*make_features(n_est=60))
spec = parse_spec({"data_path": "x.csv", "drivers": CHANNELS, "draws": 100, "tune": 100, "chains": 2})
idata = mp.fit(model, spec.model_copy(update={"nuts_sampler": "numpyro"}), progress=False)
print(json.dumps({"draws": idata["posterior"]["beta"].values.ravel().tolist(), "programs": len(programs)}))
"""


@pytest.mark.slow
def test_numpyro_draws_are_the_same_with_an_empty_and_a_filled_jax_cache(tmp_path):
    """The baseline model's sampler keeps JAX's compiled programs between processes (JAX_COMPILATION_CACHE_DIR,
    set by runtime.configure_environment): a rerun loads them, and must draw exactly what the first run drew.

    PyMC's log density is evaluated at the chains' starting points as one jitted program: evaluated op by op, as
    PyMC leaves it, this fit compiled 88 XLA programs instead of 26 (about 1.5 s of a cold baseline fit)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax"))
    env.pop("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", None)  # as configure_environment sets it

    def fit() -> dict:
        p = subprocess.run([sys.executable, "-c", _NUMPYRO_CHILD, str(Path(__file__).parent)], env=env,
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        return json.loads(p.stdout.strip().splitlines()[-1])

    cold = fit()
    assert any((tmp_path / "jax").iterdir()), "the first fit left nothing in the JAX cache"
    assert fit()["draws"] == cold["draws"]
    assert cold["programs"] <= 40, f"{cold['programs']} XLA programs: the starting points' log density ran op by op"


# A new process that compiles the small learned entity model for nutpie (mmm_lib.nutpie_compile) and samples it;
# with "both", also with nutpie's own compile. Prints the draws and whether numba loaded each C callback from its cache.
_NUTPIE_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import nutpie
from test_model import _artifacts, small_panel
from mmm_lib.model import from_artifacts
from mmm_lib.nutpie_compile import compile_model
feats, meta, scaler, spec = _artifacts(small_panel(), "learned", "entity")
model = from_artifacts(feats, meta, scaler, spec.model).build()

def draws(compiled):
    post = nutpie.sample(compiled, draws=100, tune=100, chains=2, cores=2, seed=11, progress_bar=False)["posterior"]
    return {name: post[name].values.ravel().tolist() for name in sorted(post.data_vars)}

compiled = compile_model(model)
out = {"draws": draws(compiled), "hits": [compiled.compiled_logp_func.cache_hits, compiled.compiled_expand_func.cache_hits]}
if sys.argv[2] == "both":
    out["nutpie_draws"] = draws(nutpie.compile_pymc_model(model, backend="numba"))
print(json.dumps(out))
"""


@pytest.mark.slow
def test_nutpie_callbacks_are_loaded_from_the_compile_cache_and_draw_what_nutpies_own_draw(tmp_path):
    """nutpie's own compile builds its two numba C callbacks again in every process (7–10 s and ~3 s on the
    example's default model, every fit); mmm_lib.nutpie_compile's are kept in the compile cache. A second process
    must load both from there, and the draws must be those of nutpie's own compile, cold and warm."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from mmm_lib.runtime import compile_settings

    env = dict(os.environ, **compile_settings(tmp_path))  # an empty cache, fastmath off (as a run's kernels get)

    def child(mode: str) -> dict:
        p = subprocess.run([sys.executable, "-c", _NUTPIE_CHILD, str(Path(__file__).parent), mode], env=env,
                           capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, p.stderr[-3000:]
        return json.loads(p.stdout.strip().splitlines()[-1])

    cold = child("mine")
    assert cold["hits"] == [0, 0]  # an empty cache: compiled here
    warm = child("both")
    assert warm["hits"] == [1, 1], "the C callbacks were compiled again instead of loaded from the cache"
    assert warm["draws"] == cold["draws"]
    assert warm["nutpie_draws"] == warm["draws"]
    assert set(warm["draws"]) >= {"beta", "decay", "half_saturation"} and len(warm["draws"]["decay"]) == 2 * 100 * 4


@pytest.mark.slow
def test_nutpie_callbacks_compute_the_models_log_density_and_draws_for_data_of_any_rank():
    """The generated C callbacks reach each data array through the pointer table: a 0-d, a 1-d integer and a
    2-d array here. Their log density, gradient and expanded draw must be PyTensor's own at a few points."""
    import ctypes

    import pymc as pm

    from mmm_lib.nutpie_compile import compile_model

    rng = np.random.default_rng(4)
    with pm.Model() as model:
        scale = pm.Data("scale", 1.5)
        groups = pm.Data("groups", np.array([0, 1, 1, 2, 0, 2]))
        x = pm.Data("x", rng.normal(size=(6, 2)))
        b = pm.Normal("b", 0, 1, shape=2)
        a = pm.Normal("a", 0, 1, shape=3)
        s = pm.HalfNormal("s", 1)
        mu = pm.Deterministic("mu", a[groups] + x @ b * scale)
        pm.Normal("y", mu, s, observed=rng.normal(size=6))
    compiled = compile_model(model)
    assert compiled.n_dim == 6
    P = ctypes.POINTER(ctypes.c_double)
    grad, logp, expanded = np.zeros(compiled.n_dim), np.zeros(()), np.zeros(compiled.n_expanded)
    for _ in range(3):
        point = rng.normal(size=compiled.n_dim)
        rc = compiled.compiled_logp_func.ctypes(compiled.n_dim, point.ctypes.data_as(P), grad.ctypes.data_as(P),
                                                logp.ctypes.data_as(P), compiled.user_data.ctypes.data)
        want_logp, want_grad = compiled.logp_func(point)
        assert rc == 0 and float(logp) == float(want_logp) and np.array_equal(grad, want_grad)
        rc = compiled.compiled_expand_func.ctypes(compiled.n_dim, compiled.n_expanded, point.ctypes.data_as(P),
                                                  expanded.ctypes.data_as(P), compiled.user_data.ctypes.data)
        assert rc == 0 and np.array_equal(expanded, compiled.expand_func(point)[0])
    # a wrong dimension is refused, as nutpie's own callback refuses it
    assert compiled.compiled_logp_func.ctypes(compiled.n_dim + 1, point.ctypes.data_as(P), grad.ctypes.data_as(P),
                                              logp.ctypes.data_as(P), compiled.user_data.ctypes.data) == -1
    with pytest.raises(NotImplementedError, match="compile the model again"):
        compiled.with_data(x=np.zeros((6, 2)))

"""Tests for mmm_lib.model: transforms (numpy and PyTensor), the prior registry and the model object.

No sampling: graphs are compiled in FAST_COMPILE mode (Python linker, no numba) and evaluated at
chosen points. The model tests run on a small simulated panel (3 entities, 4 channels) pushed
through the pipeline's own canonicalize → build_features, in all four configurations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mmm_lib.canonicalize import canonicalize
from mmm_lib.features import build_features
from mmm_lib.model import PriorError, from_artifacts
from mmm_lib.model import transforms as tf
from mmm_lib.sample import panel_spec, simulate_panel
from mmm_lib.spec import ModelConfig, SpecError, parse_spec

CONFIGS = [("fixed", "brand"), ("fixed", "entity"), ("learned", "brand"), ("learned", "entity")]
DECAYS = {"act_tv": 0.7, "act_search": 0.3}  # the other two channels take decay_default 0.5
MAX_LAG = 8
K_SPEC, S_SPEC = 0.4, 1.5


# --------------------------------------------------------------------------- transforms: numpy vs PyTensor


def _pt_fn(inputs, output):
    import pytensor

    return pytensor.function(inputs, output, mode="FAST_COMPILE")


X = np.array([0.0, 0.0, 1e-6, 0.05, 0.4, 0.5, 1.0, 3.0, 50.0])


@pytest.mark.parametrize("K, S", [(0.5, 1.0), (0.3, 2.5), (1.2, 0.6)])
def test_hill_numpy_and_pytensor_agree_and_have_finite_gradients_at_zero(K, S):
    import pytensor
    import pytensor.tensor as pt

    x, k, s = pt.vector("x"), pt.scalar("K"), pt.scalar("S")
    out = tf.hill(x, k, s, pt)
    got = _pt_fn([x, k, s], out)(X, K, S)
    ref = tf.hill(X, K, S)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)
    # the textbook formula, away from the exact 0
    np.testing.assert_allclose(ref[2:], X[2:] ** S / (K**S + X[2:] ** S), rtol=1e-10)
    assert ref[0] == 0.0 and got[0] == 0.0 and got[1] == 0.0  # exactly 0, not just tiny
    assert tf.hill(np.array([K]), K, S)[0] == pytest.approx(0.5, abs=1e-15)
    assert _pt_fn([x, k, s], out)(np.array([K]), K, S)[0] == pytest.approx(0.5, abs=1e-15)
    assert np.all(ref < 1.0) and np.all(np.diff(ref) >= 0)
    # gradients w.r.t. the parameters NUTS moves stay finite where the activity is 0
    gk, gs = pytensor.grad(out.sum(), [k, s])
    g = _pt_fn([x, k, s], [gk, gs])(X, K, S)
    assert all(np.isfinite(v) for v in g)
    g0 = _pt_fn([x, k, s], [gk, gs])(np.zeros(3), K, S)
    assert g0[0] == 0.0 and g0[1] == 0.0  # zero activity: the output does not depend on K or S


def _hill_grads(x, K, S):
    """PyTensor's gradients of sum(hill) w.r.t. K, S and x."""
    import pytensor
    import pytensor.tensor as pt

    xv, k, s = pt.vector("x"), pt.scalar("K"), pt.scalar("S")
    out = tf.hill(xv, k, s, pt).sum()
    return _pt_fn([xv, k, s], pytensor.grad(out, [k, s, xv]))(x, K, S)


def _hill_grads_analytic(x, K, S):
    h = x**S / (K**S + x**S)
    return (-S / K * h * (1 - h)).sum(), (np.log(x / K) * h * (1 - h)).sum(), S / x * h * (1 - h)


@pytest.mark.parametrize("K, S", [(0.5, 1.5), (0.3, 0.7)])
def test_hill_gradients_are_the_analytic_ones(K, S):
    x = np.array([0.05, 0.2, 0.49, 0.51, 1.3, 4.0])
    for got, want in zip(_hill_grads(x, K, S), _hill_grads_analytic(x, K, S)):
        np.testing.assert_allclose(got, want, rtol=1e-9)


def test_hill_gradient_at_the_half_saturation_point():
    """At x == K exactly the gradient is the analytic one (an abs() in the graph would make it 0 there)."""
    K, S = 0.5, 1.5
    x = np.array([K])
    gk, _, gx = _hill_grads(x, K, S)
    assert gk == pytest.approx(-S / (4 * K)) and gx[0] == pytest.approx(S / (4 * K))


@pytest.mark.parametrize("lam", [0.5, 3.0, 12.0])
def test_logistic_numpy_and_pytensor_agree(lam):
    import pytensor
    import pytensor.tensor as pt

    x, l_ = pt.vector("x"), pt.scalar("lam")
    out = tf.logistic(x, l_, pt)
    got = _pt_fn([x, l_], out)(X, lam)
    ref = tf.logistic(X, lam)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-300)
    # the same curve, written differently (1 - exp(-lam x) cancels for tiny x: ~1e-10 relative at x = 1e-6)
    np.testing.assert_allclose(ref, np.tanh(lam * X / 2), rtol=1e-9, atol=1e-300)
    assert ref[0] == 0.0 and got[0] == 0.0
    assert np.all(ref < 1.0 + 1e-15)
    gl = pytensor.grad(out.sum(), l_)
    e = np.exp(-lam * X)
    np.testing.assert_allclose(_pt_fn([x, l_], gl)(X, lam), (2 * X * e / (1 + e) ** 2).sum(), rtol=1e-10)
    # slope lam / 2 at 0
    gx = pytensor.grad(out.sum(), x)
    assert _pt_fn([x, l_], gx)(np.zeros(1), lam)[0] == pytest.approx(lam / 2)


@pytest.mark.parametrize("K", [0.1, 0.5, 2.0])
def test_michaelis_menten_numpy_and_pytensor_agree(K):
    import pytensor
    import pytensor.tensor as pt

    x, k = pt.vector("x"), pt.scalar("K")
    out = tf.michaelis_menten(x, k, pt)
    got = _pt_fn([x, k], out)(X, K)
    ref = tf.michaelis_menten(X, K)
    np.testing.assert_allclose(got, ref, rtol=1e-14)
    np.testing.assert_allclose(ref, tf.hill(X, K, 1.0), rtol=1e-12)  # Hill with slope 1
    assert ref[0] == 0.0 and got[0] == 0.0
    assert tf.michaelis_menten(np.array([K]), K)[0] == 0.5
    gk = pytensor.grad(out.sum(), k)
    np.testing.assert_allclose(_pt_fn([x, k], gk)(X, K), (-X / (K + X) ** 2).sum(), rtol=1e-12)


def test_saturate_dispatches_and_rejects_unknown_families():
    x = np.linspace(0, 2, 7)
    np.testing.assert_array_equal(tf.saturate("hill", x, {"K": 0.5, "S": 2.0}), tf.hill(x, 0.5, 2.0))
    np.testing.assert_array_equal(tf.saturate("logistic", x, {"lam": 2.0}), tf.logistic(x, 2.0))
    np.testing.assert_array_equal(tf.saturate("michaelis_menten", x, {"K": 0.5}), tf.michaelis_menten(x, 0.5))
    with pytest.raises(ValueError, match="'tanh'"):
        tf.saturate("tanh", x, {})


def test_lag_stack_shapes_and_values():
    x = np.arange(1.0, 11.0).reshape(5, 2)  # (T=5, C=2)
    out = tf.lag_stack(x, 3)
    assert out.shape == (3, 5, 2)
    for lag in range(3):
        for t in range(5):
            np.testing.assert_array_equal(out[lag, t], x[t - lag] if t >= lag else 0.0)
    # more lags than periods: the extra lags are all zero
    long = tf.lag_stack(x[:, 0], 7)
    assert long.shape == (7, 5) and np.all(long[5:] == 0) and long[4, 4] == x[0, 0]
    for bad in (0, 1.5, -2):
        with pytest.raises(ValueError, match="max_lag"):
            tf.lag_stack(x, bad)


def test_panel_lag_stack_lags_within_each_entity():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 6, 2))  # (E, T, C)
    out = tf.panel_lag_stack(x, 4)
    assert out.shape == (4, 3, 6, 2)
    for e in range(3):
        np.testing.assert_array_equal(out[:, e], tf.lag_stack(x[e], 4))
    assert np.all(out[2, :, :2] == 0)  # no carry-over from the previous entity's last periods
    with pytest.raises(ValueError, match="entities, periods, channels"):
        tf.panel_lag_stack(x[0], 4)


@pytest.mark.parametrize("normalize", [False, True])
def test_adstock_numpy_and_pytensor_agree(normalize):
    import pytensor.tensor as pt

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 5, size=(20, 3)) * (rng.uniform(size=(20, 3)) < 0.6)
    decay = np.array([0.0, 0.45, 0.9])
    L = 6
    lagged = tf.lag_stack(x, L)
    ref = tf.adstock(lagged, tf.adstock_weights(decay, L, normalize), L)
    # a hand-written truncated geometric filter
    w = decay[None, :] ** np.arange(L)[:, None]
    if normalize:
        w = w / w.sum(axis=0)
    hand = np.zeros_like(x)
    for t in range(20):
        for lag in range(min(L, t + 1)):
            hand[t] += w[lag] * x[t - lag]
    np.testing.assert_allclose(ref, hand, rtol=1e-12)
    d = pt.vector("decay")
    lag_in = pt.tensor3("lagged")
    out = tf.adstock(lag_in, tf.adstock_weights(d, L, normalize, pt), L)
    np.testing.assert_allclose(_pt_fn([lag_in, d], out)(lagged, decay), ref, rtol=1e-12)
    # a Python float decay (fixed transforms) gives the same weights as an array decay
    np.testing.assert_allclose(tf.adstock_weights(0.45, L, normalize), tf.adstock_weights(np.array(0.45), L, normalize), rtol=1e-15)
    if normalize:
        np.testing.assert_allclose(tf.adstock_weights(decay, L, True).sum(axis=0), 1.0)
        steady = tf.adstock(tf.lag_stack(np.full((12, 3), 2.0), L), tf.adstock_weights(decay, L, True), L)
        np.testing.assert_allclose(steady[L - 1 :], 2.0)  # a steady level keeps its value


# --------------------------------------------------------------------------- a small panel through the pipeline


def small_panel():
    """3 entities × 80 weeks × 4 channels, from known truth (also used by test_model_pymc's child processes)."""
    return simulate_panel(n_entities=3, n_periods=80, n_channels=4, seed=1,
                          windows={"carryover_months": 3, "estimation_months": 12})  # fmt: skip


@pytest.fixture(scope="module")
def panel():
    return small_panel()


def _raw_spec(truth, transforms="fixed", level="brand", saturation="hill", priors=None):
    fc = {
        "adstock": {"decay_default": 0.5, "per_channel": DECAYS, "max_lag": MAX_LAG},
        "saturation": {"enabled": True, "type": saturation, "K": K_SPEC, "S": S_SPEC, "lam": 2.0},
        "seasonality": {"enabled": True, "K": 2},
        "trend": {"enabled": True},
    }
    model = {"transforms": transforms, "level": level}
    if priors is not None:
        model["priors"] = priors
    return {**panel_spec(truth), "feature_config": fc, "model": model}


def _artifacts(panel, transforms="fixed", level="brand", saturation="hill"):
    data, truth = panel
    spec = parse_spec(_raw_spec(truth, transforms, level, saturation), check_path=False)
    canonical, info = canonicalize(data, spec)
    feats, meta, scaler = build_features(canonical, info, spec)
    return feats, meta, scaler, spec


@pytest.fixture(scope="module")
def artifacts(panel):
    return {cfg: _artifacts(panel, *cfg) for cfg in CONFIGS}


def _mmm(artifacts, cfg, priors=None):
    feats, meta, scaler, spec = artifacts[cfg]
    config = spec.model if priors is None else ModelConfig(transforms=cfg[0], level=cfg[1], priors=priors)
    return from_artifacts(feats, meta, scaler, config)


def test_panel_fixture_has_distinct_sizes(artifacts):
    """3 entities, 4 channels, several controls: a swapped axis cannot go unnoticed."""
    d = _mmm(artifacts, ("learned", "entity")).data
    E, T, C = len(d.entities), d.z.shape[1], len(d.channels)
    assert (E, C) == (3, 4) and len(d.control_names) not in (3, 4) and T > MAX_LAG
    assert d.activity.shape == (E, len(d.est), C) and (~d.est).sum() > 0  # carry-over rows exist
    assert _mmm(artifacts, ("fixed", "brand")).data.z.shape == (1, T)


# --------------------------------------------------------------------------- parameter count


def _free_sizes(model) -> dict[str, int]:
    ip = model.initial_point()
    return {rv.name: int(np.size(ip[model.rvs_to_values[rv].name])) for rv in model.free_RVs}


@pytest.mark.parametrize("cfg", CONFIGS, ids=["_".join(c) for c in CONFIGS])
def test_parameter_count_is_the_graphs_number_of_free_scalars(artifacts, cfg):
    mmm = _mmm(artifacts, cfg)
    model = mmm.build()
    sizes = _free_sizes(model)
    # the registry's `intercept` is sampled as the flat `intercept_centred` (same size, same posterior)
    registry = {("intercept_centred" if k == "intercept" else k): p.size(mmm.dim_sizes) for k, p in mmm.priors.items() if p.free}
    assert registry == sizes
    assert mmm.parameter_count() == sum(sizes.values()) == sum(np.size(v) for v in model.initial_point().values())
    # the prior graph draws the same parameters, the intercept directly
    prior_sizes = _free_sizes(mmm.build(for_prior=True))
    assert prior_sizes == {k: p.size(mmm.dim_sizes) for k, p in mmm.priors.items()}
    E, C, J = len(mmm.data.entities), len(mmm.data.channels), len(mmm.data.control_names)
    expected = 1 + 1 + C + J + 1 + 1  # intercept, sigma_beta, beta, gamma, sigma, nu
    if cfg[1] == "entity":
        expected += 2 * (E - 1) + C + E * C  # per-entity intercept and sigma, tau_beta, beta_z
    if cfg[0] == "learned":
        expected += 3 * C  # decay, half_saturation, hill_slope
    assert mmm.parameter_count() == expected


@pytest.mark.parametrize("saturation, rv", [("logistic", "logistic_lam"), ("michaelis_menten", "half_saturation")])
def test_other_saturation_families_have_their_own_parameters(panel, saturation, rv):
    feats, meta, scaler, spec = _artifacts(panel, "learned", "entity", saturation)
    mmm = from_artifacts(feats, meta, scaler, spec.model)
    assert mmm.transform_parameters == ["decay", rv]
    model = mmm.build()
    sizes = _free_sizes(model)
    assert sizes["decay"] == sizes[rv] == 4 and "hill_slope" not in sizes
    assert mmm.parameter_count() == sum(sizes.values())


# --------------------------------------------------------------------------- prior overrides


def test_per_channel_override_changes_only_that_channel(artifacts):
    import pymc as pm

    cfg = ("learned", "entity")
    base = _mmm(artifacts, cfg)
    over = _mmm(artifacts, cfg, priors={"decay[act_tv]": {"dist": "Beta", "alpha": 8, "beta": 2}})
    chans = base.data.channels
    i = chans.index("act_tv")
    a0, b0 = np.asarray(base.priors["decay"].params["alpha"]), np.asarray(base.priors["decay"].params["beta"])
    a1, b1 = np.asarray(over.priors["decay"].params["alpha"]), np.asarray(over.priors["decay"].params["beta"])
    assert (a1[i], b1[i]) == (8.0, 2.0)
    others = [j for j in range(len(chans)) if j != i]
    np.testing.assert_array_equal(a1[others], a0[others])
    np.testing.assert_array_equal(b1[others], b0[others])
    # prior centres follow the spec's decays: Beta(d k, (1 - d) k)
    np.testing.assert_allclose(a0 / (a0 + b0), [DECAYS.get(c, 0.5) for c in chans])
    assert over.priors["decay"].dist == "Beta" and over.priors["decay"].dims == ("channel",)
    for k in base.priors:
        if k != "decay":
            assert over.priors[k] == base.priors[k], k
    # the override reaches the graph: the decay variable's density is Beta(a1, b1) per channel
    value = np.array([0.2, 0.5, 0.8, 0.65])
    for mmm, a, b in ((base, a0, b0), (over, a1, b1)):
        model = mmm.build()
        got = pm.logp(model["decay"], value).eval(mode="FAST_COMPILE")
        np.testing.assert_allclose(got, stats.beta.logpdf(value, a, b), rtol=1e-10)
    assert "Beta(alpha=[" in over.prior_table()["decay"]


def test_whole_parameter_override(artifacts):
    mmm = _mmm(artifacts, ("fixed", "brand"), priors={"beta": {"dist": "HalfNormal", "sigma": 0.3}})
    assert mmm.priors["beta"].params == {"sigma": 0.3} and mmm.priors["beta"].dims == ("channel",)
    model = mmm.build()
    assert "sigma_beta" in model.named_vars  # still sampled (the registry keeps it), only beta's prior changed
    assert mmm.parameter_count() == sum(_free_sizes(model).values())


@pytest.mark.parametrize(
    "cfg, priors, match",
    [
        (("learned", "entity"), {"decay[act_tv]": {"dist": "Gamma", "alpha": 2, "beta": 2}}, r"decay\[act_tv\] is Gamma but decay is Beta"),
        (("learned", "entity"), {"decay[act_tv]": {"dist": "Beta", "alpha": 8, "b": 2}}, r"decay\[act_tv\]: Beta takes exactly"),
        (("learned", "entity"), {"decay[act_fm]": {"dist": "Beta", "alpha": 8, "beta": 2}}, r"decay\[act_fm\].*'act_fm' is not a driver"),
        (("learned", "entity"), {"betta": {"dist": "HalfNormal", "sigma": 0.3}}, r"'betta', which this model does not have"),
        (("fixed", "brand"), {"decay[act_tv]": {"dist": "Beta", "alpha": 8, "beta": 2}},
         r"'decay\[act_tv\]'; per-channel priors exist for"),
        (("fixed", "entity"), {"tau_beta": {"dist": "Cauchy", "beta": 1}}, r"tau_beta: dist is 'Cauchy'"),
        (("fixed", "entity"), {"sigma": {"dist": "HalfNormal", "sigma": -1}}, r"sigma\.sigma is -1.*> 0"),
        (("learned", "brand"), {"beta[act_tv]": {"dist": "HalfNormal", "sigma": 0.2}},
         r"beta\[act_tv\]: beta's sigma is the parameter 'sigma_beta'"),
    ],
)  # fmt: skip
def test_bad_overrides_raise_prior_error_naming_the_key(artifacts, cfg, priors, match):
    with pytest.raises(PriorError, match=match):
        _mmm(artifacts, cfg, priors=priors)


@pytest.mark.parametrize(
    "priors, match",
    [
        ({"decay[act_tv]": {"dist": "Beta", "alpha": 8}}, r"decay\[act_tv\]"),
        ({"decay[act_fm]": {"dist": "Beta", "alpha": 8, "beta": 2}}, r"decay\[act_fm\].*'act_fm' is not a driver"),
        # caught at spec load, not at stage 04: the family must match the other channels'
        ({"decay[act_tv]": {"dist": "Gamma", "alpha": 2, "beta": 2}}, r"decay\[act_tv\] is Gamma but decay is Beta"),
        ({"slope": {"dist": "HalfNormal", "sigma": 1}}, r"names 'slope', which this model does not have"),
        ({"beta": {"dist": "Cauchy", "beta": 1}}, r"model.priors.beta: dist is 'Cauchy'"),
        ({"beta": "HalfNormal"}, r"model.priors"),
    ],
)
def test_spec_validation_rejects_bad_priors(panel, priors, match):
    raw = _raw_spec(panel[1], "learned", "entity", priors=priors)
    with pytest.raises(SpecError, match=match):
        parse_spec(raw, check_path=False)


def test_spec_accepts_a_good_override(panel):
    raw = _raw_spec(panel[1], "learned", "entity", priors={"decay[act_tv]": {"dist": "Beta", "alpha": 8, "beta": 2}})
    assert parse_spec(raw, check_path=False).model.priors["decay[act_tv]"] == {"dist": "Beta", "alpha": 8, "beta": 2}


# --------------------------------------------------------------------------- the numpy path equals the graph


def _graph_points(mmm, n: int = 3, seed: int = 0):
    """Evaluate the fitting graph at ``n`` random points: constrained parameters and the likelihood's mu."""
    model = mmm.build()
    names = [n_ for n_ in ("decay", "half_saturation", "hill_slope", "sigma_beta", "beta", "tau_beta", "beta_z",
                           "beta_entity", "intercept_centred", "intercept", "gamma", "sigma", "nu") if n_ in model.named_vars]  # fmt: skip
    mu = model["z"].owner.inputs[3]  # StudentT(rng, size, nu, mu, sigma)
    outs = model.replace_rvs_by_values([model[n_] for n_ in names] + [mu])
    fn = model.compile_fn(outs, inputs=model.value_vars, point_fn=True, mode="FAST_COMPILE", on_unused_input="ignore")
    rng = np.random.default_rng(seed)
    ip = model.initial_point()
    points = [{k: v + rng.normal(0, 0.4, np.shape(v)) for k, v in ip.items()} for _ in range(n)]
    res = [fn(p) for p in points]
    draws = {n_: np.stack([r[i] for r in res]) for i, n_ in enumerate(names)}
    return model, points, draws, np.stack([r[-1] for r in res])


def _hand_media(activity, est, draws, decays=None):
    """Learned media, written out: activity / est-window peak → normalised geometric adstock → Hill,
    divided by the Hill value at the channel's reference level (median over entities of the mean
    scaled activity where the channel ran in the estimation window)."""
    E, T_all, C = activity.shape
    peak = activity[:, est, :].max(axis=1)
    peak = np.where(peak > 0, peak, 1.0)
    ref = np.ones(C)
    for c in range(C):
        per_entity = []
        for e in range(E):
            x = activity[e, est, c] / peak[e, c]
            if (x > 0).any():
                per_entity.append(x[x > 0].mean())
        ref[c] = np.median(per_entity) if per_entity else 1.0
    S = draws["decay"].shape[0]
    out = np.zeros((S, E, int(est.sum()), C))
    for s in range(S):
        for e in range(E):
            for c in range(C):
                x = activity[e, :, c] / peak[e, c]
                d = draws["decay"][s, c]
                w = np.array([d**lag for lag in range(MAX_LAG)])
                w = w / w.sum()
                a = np.array([sum(w[lag] * x[t - lag] for lag in range(MAX_LAG) if t >= lag) for t in range(T_all)])
                K, Sl = draws["half_saturation"][s, c], draws["hill_slope"][s, c]
                sat = np.zeros_like(a)
                sat[a > 0] = a[a > 0] ** Sl / (K**Sl + a[a > 0] ** Sl)
                out[s, e, :, c] = sat[est] / (ref[c] ** Sl / (K**Sl + ref[c] ** Sl))
    return out


def test_learned_media_is_the_documented_transform(artifacts):
    mmm = _mmm(artifacts, ("learned", "entity"))
    d = mmm.data
    _, _, draws, _ = _graph_points(mmm)
    media = mmm.media(draws, d.activity)
    assert media.shape == (3, 3, d.z.shape[1], 4)
    np.testing.assert_allclose(media, _hand_media(d.activity, d.est, draws), rtol=1e-10, atol=1e-14)
    # one entity alone gives that entity's rows
    np.testing.assert_allclose(mmm.media(draws, d.activity[[2]], entities=[2])[:, 0], media[:, 2], rtol=1e-13)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["_".join(c) for c in CONFIGS])
def test_numpy_mu_equals_the_graphs_mu(artifacts, cfg):
    mmm = _mmm(artifacts, cfg)
    d = mmm.data
    _, _, draws, graph_mu = _graph_points(mmm, seed=len(cfg[0]) + len(cfg[1]))
    media = mmm.media(draws, d.activity)
    if cfg[0] == "fixed":  # the counterfactual path rebuilds exactly the features the model was fitted on
        np.testing.assert_allclose(media, d.media, rtol=1e-12, atol=1e-15)
    mu = mmm.mu(draws, media)
    assert mu.shape == (3, len(d.entities), d.z.shape[1])
    np.testing.assert_allclose(mu, graph_mu.reshape(mu.shape), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(mmm.expected_sales(draws, d.activity), np.expm1(mu + d.target_center[None, :, None]), rtol=1e-12)
    # the deterministic intercept is intercept_centred minus the mean of the regressor terms
    term = mu - np.reshape(draws["intercept"], (3, -1, 1))
    np.testing.assert_allclose(np.reshape(draws["intercept_centred"], (3, -1)), np.reshape(draws["intercept"], (3, -1)) + term.mean(axis=2),
                               rtol=1e-9, atol=1e-9)  # fmt: skip


@pytest.mark.parametrize("cfg", [("learned", "entity"), ("fixed", "entity")], ids=["learned_entity", "fixed_entity"])
def test_switching_a_channel_off_never_adds_sales(artifacts, cfg):
    mmm = _mmm(artifacts, cfg)
    d = mmm.data
    _, _, draws, _ = _graph_points(mmm, seed=7)
    observed = mmm.expected_sales(draws, d.activity)
    for c, ch in enumerate(d.channels):
        off = d.activity.copy()
        off[:, :, c] = 0.0
        without = mmm.expected_sales(draws, off)
        assert np.all(without <= observed * (1 + 1e-12)), ch
        active = d.activity[:, d.est, c] > 0  # (E, T) rows where the channel runs now
        if active.any():
            assert np.all(without[:, active] < observed[:, active]), ch
        resp = mmm.response(draws, d.activity)[..., c]
        assert np.all(resp >= 0)


# --------------------------------------------------------------------------- log density, written out


def _t_logpdf(z, nu, mu, sigma):
    return stats.t.logpdf(z, df=nu, loc=mu, scale=sigma)


def _assert_same_density(got: list[float], hand: list[float]) -> None:
    """Equal log densities at several points.

    Prior scales given as Python floats (``Normal(0, 2)``, ``HalfNormal(0.5)``) become float32
    constants in PyTensor, so their ``log(sigma)`` normalising terms carry ~2e-9 of rounding each: a
    constant offset that cannot move the posterior. The absolute check allows for it; the
    differences between points, where constants cancel, must agree to rounding.
    """
    got, hand = np.asarray(got), np.asarray(hand)
    np.testing.assert_allclose(got, hand, rtol=0, atol=1e-7)
    np.testing.assert_allclose(got[1:] - got[0], hand[1:] - hand[0], rtol=1e-9, atol=1e-9)


def test_baseline_graph_and_its_log_density(artifacts):
    mmm = _mmm(artifacts, ("fixed", "brand"))
    assert mmm.name == "baseline" and mmm.config.is_baseline
    d = mmm.data
    model = mmm.build()
    assert sorted(v.name for v in model.free_RVs) == sorted(["intercept_centred", "sigma_beta", "beta", "gamma", "sigma", "nu"])
    assert [v.name for v in model.deterministics] == ["intercept"]
    logp = model.compile_logp(jacobian=False, mode="FAST_COMPILE")
    media, controls, z = d.media[0], d.controls[0], d.z[0]
    rng = np.random.default_rng(3)
    got, want = [], []
    for _ in range(4):
        a = rng.normal(0, 0.3)
        sigma_beta, sigma, nu = np.exp(rng.normal(-1, 0.3)), np.exp(rng.normal(-2.5, 0.2)), np.exp(rng.normal(2.5, 0.3))
        beta, gamma = np.abs(rng.normal(0.2, 0.1, media.shape[1])), rng.normal(0, 0.1, controls.shape[1])
        intercept = a - media.mean(axis=0) @ beta - controls.mean(axis=0) @ gamma
        mu = intercept + media @ beta + controls @ gamma
        hand = (
            stats.norm.logpdf(intercept, 0, 2)
            + stats.halfnorm.logpdf(sigma_beta, scale=0.5)
            + stats.halfnorm.logpdf(beta, scale=sigma_beta).sum()
            + stats.norm.logpdf(gamma, 0, 0.5).sum()
            + stats.halfnorm.logpdf(sigma, scale=1.0)
            + stats.expon.logpdf(nu, scale=10.0)
            + _t_logpdf(z, nu, mu, sigma).sum()
        )
        point = {"intercept_centred": a, "sigma_beta_log__": np.log(sigma_beta), "beta_log__": np.log(beta), "gamma": gamma,
                 "sigma_log__": np.log(sigma), "nu_log__": np.log(nu)}  # fmt: skip
        got.append(float(logp(point)))
        want.append(hand)
    _assert_same_density(got, want)


def test_learned_entity_log_density_written_out(artifacts):
    """The whole learned, entity-level density from the documented priors and the hand-written transform."""
    mmm = _mmm(artifacts, ("learned", "entity"))
    d = mmm.data
    model, points, draws, _ = _graph_points(mmm, n=3, seed=11)
    logp = model.compile_logp(jacobian=False, mode="FAST_COMPILE")
    dec = np.array([DECAYS.get(c, 0.5) for c in d.channels])
    media = _hand_media(d.activity, d.est, draws)
    got, want = [], []
    for s, point in enumerate(points):
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        decay, K, S = sig(point["decay_logodds__"]), np.exp(point["half_saturation_log__"]), np.exp(point["hill_slope_log__"])
        sigma_beta, beta, tau = np.exp(point["sigma_beta_log__"]), np.exp(point["beta_log__"]), np.exp(point["tau_beta_log__"])
        bz, gamma, a = point["beta_z"], point["gamma"], point["intercept_centred"]
        sigma, nu = np.exp(point["sigma_log__"]), np.exp(point["nu_log__"])
        np.testing.assert_allclose([decay, K, S], [draws["decay"][s], draws["half_saturation"][s], draws["hill_slope"][s]], rtol=1e-12)
        beta_e = beta[None, :] * np.exp(tau[None, :] * bz)  # (E, C)
        term = np.einsum("etc,ec->et", media[s], beta_e) + d.controls @ gamma  # (E, T)
        intercept = a - term.mean(axis=1)
        mu = intercept[:, None] + term
        hand = (
            stats.beta.logpdf(decay, 5 * dec, 5 * (1 - dec)).sum()
            + stats.lognorm.logpdf(K, s=0.6, scale=K_SPEC).sum()
            + stats.lognorm.logpdf(S, s=0.3, scale=S_SPEC).sum()
            + stats.halfnorm.logpdf(sigma_beta, scale=0.5)
            + stats.halfnorm.logpdf(beta, scale=sigma_beta).sum()
            + stats.halfnorm.logpdf(tau, scale=0.3).sum()
            + stats.norm.logpdf(bz).sum()
            + stats.norm.logpdf(gamma, 0, 0.5).sum()
            + stats.norm.logpdf(intercept, 0, 2).sum()
            + stats.halfnorm.logpdf(sigma, scale=1.0).sum()
            + stats.expon.logpdf(nu, scale=10.0)
            + _t_logpdf(d.z, nu, mu, sigma[:, None]).sum()
        )
        got.append(float(logp(point)))
        want.append(hand)
    _assert_same_density(got, want)


# --------------------------------------------------------------------------- prior graph


def test_prior_graph_draws_every_parameter_and_the_target(artifacts):
    import pymc as pm

    mmm = _mmm(artifacts, ("learned", "entity"))
    with mmm.build(for_prior=True):
        prior = pm.sample_prior_predictive(draws=50, random_seed=1, compile_kwargs={"mode": "FAST_COMPILE"})
    pri = prior["prior"]
    assert {"decay", "half_saturation", "hill_slope", "beta", "beta_entity", "intercept", "sigma"} <= set(pri.data_vars)
    assert pri["intercept"].shape == (1, 50, 3) and pri["decay"].shape == (1, 50, 4)
    assert prior["prior_predictive"]["z"].shape == (1, 50, 3, mmm.data.z.shape[1])
    dec = pri["decay"].values
    assert np.all((dec > 0) & (dec < 1))
    # beta_entity is beta scaled per entity: positive, same sign pattern
    assert np.all(pri["beta_entity"].values >= 0)
    pd.testing.assert_index_equal(pd.Index(pri["channel"].values), pd.Index(mmm.data.channels))


@pytest.mark.parametrize("cfg", CONFIGS, ids=["_".join(c) for c in CONFIGS])
def test_check_groups_log_likelihood_is_the_graphs(artifacts, cfg):
    """04_fit's log-likelihood (model object's mu + MMM.likelihood, all draws at once) is the graph's pointwise logp."""
    import xarray as xr

    from mmm_lib.model_pymc import add_checks

    mmm = _mmm(artifacts, cfg)
    model, points, draws, _ = _graph_points(mmm, seed=3)
    post = xr.Dataset({k: xr.DataArray(v[None], dims=("chain", "draw", *[f"{k}_{i}" for i in range(v.ndim - 1)]))
                       for k, v in draws.items()})  # fmt: skip
    idata = add_checks(mmm, xr.DataTree.from_dict({"posterior": post}), seed=1)
    fn = model.compile_fn(model.logp(vars=[model["z"]], sum=False)[0], inputs=model.value_vars, point_fn=True,
                          mode="FAST_COMPILE", on_unused_input="ignore")  # fmt: skip
    graph = np.stack([fn(p) for p in points])
    ll = idata["log_likelihood"]["z"].values[0]
    assert ll.shape == graph.shape
    np.testing.assert_allclose(ll, graph, rtol=1e-9, atol=1e-9)
    assert idata["posterior_predictive"]["z"].shape == idata["log_likelihood"]["z"].shape


@pytest.mark.parametrize("cfg", CONFIGS, ids=["_".join(c) for c in CONFIGS])
def test_window_sales_is_expected_sales_on_the_observed_window(artifacts, cfg):
    """The any-window evaluator (plans, scenarios, the optimizer's graph) is the model: on the observed rows it
    gives expected_sales, and a window that starts later (its first rows as carryover only) gives the same rows."""
    mmm = _mmm(artifacts, cfg)
    d = mmm.data
    _, _, draws, _ = _graph_points(mmm, seed=3)
    controls = np.zeros((len(d.entities), d.activity.shape[1], len(d.control_names)))
    controls[:, d.est] = d.controls
    whole = mmm.window_sales(draws, d.activity, controls)
    np.testing.assert_allclose(whole[:, :, d.est], mmm.expected_sales(draws, d.activity), rtol=1e-12)
    first = int(np.argmax(d.est))
    start = first - (MAX_LAG - 1)
    later = mmm.window_sales(draws, d.activity[:, start:], controls[:, start:], history=MAX_LAG - 1)
    np.testing.assert_allclose(later[:, :, : int(d.est.sum())], whole[:, :, d.est], rtol=1e-12)

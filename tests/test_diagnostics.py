"""Tests for mmm_lib.diagnostics (and the trace/rank plots of 05_diagnose) on hand-built posteriors.

No sampling: each test builds a DataTree whose chains are healthy or broken in one known way
(chains that disagree, sticky chains, divergences, a random-walk energy, tree-depth hits under
each sampler's stat name) and checks that exactly that check fails, naming the parameter.

The model checks get hand-built ``observed_data`` / ``posterior_predictive`` / ``log_likelihood``
groups (a predictive that is calibrated, too narrow or too wide; a log-likelihood with a wild
outlier) and one tiny PyMC model that writes the groups the way 04_fit does.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from mmm_lib.diagnostics import (
    THRESHOLDS,
    compute_diagnostics,
    diagnostics_headline,
    diagnostics_table,
    model_checks_table,
    ppc_coverage_table,
)
from mmm_lib.findings import findings_table
from mmm_lib.storage import read_json, write_json

CHANNELS = ["act_tv", "act_digital", "act_radio"]
FAIL_CODES = {"RHAT_HIGH", "ESS_BULK_LOW", "ESS_TAIL_LOW", "DIVERGENCES", "EBFMI_LOW", "MAX_TREEDEPTH"}
CONVERGENCE_OK = {"RHAT_OK", "ESS_BULK_OK", "ESS_TAIL_OK", "DIVERGENCES_OK", "EBFMI_OK", "MAX_TREEDEPTH_OK"}


def make_idata(
    n_chains: int = 2,
    n_draws: int = 1000,
    seed: int = 0,
    shift_beta_tv: float = 0.0,
    ar_sigma: float = 0.0,
    divergences: int = 0,
    energy_random_walk: bool = False,
    depth_stat: str | None = "maxdepth_reached",
    depth_hits: int = 0,
    with_stats: bool = True,
) -> xr.DataTree:
    """Independent draws (healthy) unless one of the breakers is set."""
    rng = np.random.default_rng(seed)
    shape = (n_chains, n_draws)

    def iid(mean: float, sd: float, extra: tuple[int, ...] = ()) -> np.ndarray:
        return rng.normal(mean, sd, (*shape, *extra))

    beta = np.abs(iid(0.3, 0.02, (3,)))
    beta[1, :, 0] += shift_beta_tv  # chain 1 of beta[act_tv] sits elsewhere
    sigma = np.abs(iid(0.05, 0.003))
    if ar_sigma:
        # a very sticky AR(1) chain: effective sample size far below the draw count
        e = rng.normal(0, 1, shape)
        x = np.zeros(shape)
        for t in range(1, n_draws):
            x[:, t] = ar_sigma * x[:, t - 1] + e[:, t]
        sigma = 0.05 + 0.003 * x
    post = xr.Dataset(
        {
            "intercept": (("chain", "draw"), iid(0.0, 0.02)),
            "sigma_beta": (("chain", "draw"), np.abs(iid(0.3, 0.05))),
            "beta": (("chain", "draw", "channel"), beta),
            "gamma": (("chain", "draw", "control"), iid(-0.1, 0.01, (1,))),
            "sigma": (("chain", "draw"), sigma),
            "nu": (("chain", "draw"), np.abs(iid(15, 3))),
        },
        coords={"chain": np.arange(n_chains), "draw": np.arange(n_draws), "channel": CHANNELS, "control": ["ctrl_price_index"]},
    )
    groups = {"posterior": post}
    if with_stats:
        div = np.zeros(shape, dtype=bool)
        div[0, rng.choice(n_draws, size=divergences, replace=False)] = True
        energy = np.cumsum(rng.normal(0, 1, shape), axis=1) if energy_random_walk else rng.normal(10, 3, shape)
        stats = {"diverging": (("chain", "draw"), div), "energy": (("chain", "draw"), energy)}
        if depth_stat is not None:
            hits = np.zeros(shape, dtype=bool)
            hits.ravel()[rng.choice(hits.size, size=depth_hits, replace=False)] = True
            if depth_stat == "tree_depth":  # numpyro: depth only
                stats["tree_depth"] = (("chain", "draw"), np.where(hits, 10, 4))
            else:
                stats[depth_stat] = (("chain", "draw"), hits)
        groups["sample_stats"] = xr.Dataset(stats, coords={"chain": np.arange(n_chains), "draw": np.arange(n_draws)})
    return xr.DataTree.from_dict(groups)


def by_code(diag: dict) -> dict:
    return {f["code"]: f for f in diag["findings"]}


def failing(diag: dict) -> set[str]:
    return {f["code"] for f in diag["findings"] if f["severity"] == "warning"}


def test_healthy_posterior_passes_every_check_with_info_findings():
    diag = compute_diagnostics(make_idata())
    assert diag["passed"] is True
    assert failing(diag) == set()
    # no log_likelihood / posterior_predictive groups (a run fitted before model checks): said, not failed
    assert set(by_code(diag)) == CONVERGENCE_OK | {"LOO_NOT_RUN", "PPC_NOT_RUN"}
    assert all(f["severity"] == "info" for f in diag["findings"])
    assert all(f["remedy"] == "" for f in diag["findings"] if f["code"] in CONVERGENCE_OK)
    assert "re-run 04_fit" in by_code(diag)["LOO_NOT_RUN"]["remedy"].lower()
    assert diag["loo"] is None and diag["ppc"] is None and diag["model_checks_passed"] is None
    m = diag["metrics"]
    assert m["max_r_hat"] < 1.01 and m["min_ess_bulk"] > 1000 and m["divergences"] == 0
    assert len(m["ebfmi"]) == 2 and min(m["ebfmi"]) > 1.5  # iid energy: E-BFMI ≈ 2
    assert m["pct_max_treedepth"] == 0.0
    assert diag["thresholds"] == THRESHOLDS
    assert len(diag["parameters"]) == 1 + 1 + 3 + 1 + 2
    assert set(diag["parameters"][0]) == {"name", "var", "coord", "r_hat", "ess_bulk", "ess_tail"}


def test_chains_with_different_means_give_rhat_warning_naming_the_parameter():
    diag = compute_diagnostics(make_idata(shift_beta_tv=0.2))
    assert diag["passed"] is False
    f = by_code(diag)["RHAT_HIGH"]
    assert f["severity"] == "warning"
    assert f["columns"][0] == "beta[act_tv]" and "beta[act_tv]" in f["message"]
    assert "increase tune" in f["remedy"].lower() and "target_accept" in f["remedy"]
    assert diag["metrics"]["max_r_hat"] > 1.5
    assert "RHAT_HIGH" in failing(diag)
    # the other parameters' chains agree
    assert set(f["columns"]) == {"beta[act_tv]"}


def test_sticky_chain_gives_ess_warnings_with_draw_count():
    diag = compute_diagnostics(make_idata(ar_sigma=0.995))
    assert {"ESS_BULK_LOW", "ESS_TAIL_LOW"} <= failing(diag)
    f = by_code(diag)["ESS_BULK_LOW"]
    assert f["columns"][0] == "sigma" and "sigma" in f["message"] and "2000 draws" in f["message"]
    assert "draws" in f["remedy"] and "chains" in f["remedy"]
    assert diag["metrics"]["min_ess_bulk"] < 400


def test_divergences_are_counted_and_warned():
    diag = compute_diagnostics(make_idata(divergences=5))
    assert failing(diag) == {"DIVERGENCES"}
    f = by_code(diag)["DIVERGENCES"]
    assert diag["metrics"]["divergences"] == 5 and f["details"]["per_chain"] == [5, 0]
    assert "5 divergent" in f["message"] and "0.95" in f["remedy"]
    assert diag["passed"] is False


def test_random_walk_energy_gives_low_ebfmi():
    diag = compute_diagnostics(make_idata(energy_random_walk=True))
    assert failing(diag) == {"EBFMI_LOW"}
    assert all(v < 0.2 for v in diag["metrics"]["ebfmi"])
    assert "chain(s) 0" in by_code(diag)["EBFMI_LOW"]["message"]


@pytest.mark.parametrize("random_walk", [True, False])
def test_ebfmi_from_arviz_matches_betancourts_formula(random_walk):
    """az.bfmi is the hand-written E-BFMI it replaced, up to the variance's ddof (n-1 vs n)."""
    idata = make_idata(energy_random_walk=random_walk, seed=3)
    got = compute_diagnostics(idata)["metrics"]["ebfmi"]
    energy = idata["sample_stats"]["energy"].transpose("chain", "draw").values
    n = energy.shape[1]
    old = [np.mean(np.diff(e) ** 2) / np.var(e) for e in energy]  # the former _ebfmi (ddof=0)
    np.testing.assert_allclose(got, np.array(old) * (n - 1) / n, rtol=1e-12)
    np.testing.assert_allclose(got, old, rtol=1.5 / n)


@pytest.mark.parametrize("stat", ["maxdepth_reached", "reached_max_treedepth", "tree_depth"])
def test_max_treedepth_uses_each_samplers_stat(stat):
    ok = compute_diagnostics(make_idata(depth_stat=stat, depth_hits=10))  # 10 of 2000 = 0.5 %
    assert "MAX_TREEDEPTH" not in failing(ok)
    assert ok["metrics"]["pct_max_treedepth"] == pytest.approx(0.5)
    bad = compute_diagnostics(make_idata(depth_stat=stat, depth_hits=60))  # 3 %
    assert failing(bad) == {"MAX_TREEDEPTH"}
    f = by_code(bad)["MAX_TREEDEPTH"]
    assert f["details"]["stat"] == stat and f["details"]["n_hits"] == 60
    assert bad["metrics"]["pct_max_treedepth"] == pytest.approx(3.0)


def test_missing_sample_stats_do_not_pass_silently():
    diag = compute_diagnostics(make_idata(with_stats=False))
    assert diag["passed"] is False
    assert {"DIVERGENCES_UNAVAILABLE", "EBFMI_UNAVAILABLE", "MAX_TREEDEPTH_UNAVAILABLE"} <= failing(diag)
    assert diag["metrics"]["divergences"] is None and diag["metrics"]["ebfmi"] is None
    table = diagnostics_table(diag)
    assert table.set_index("check").loc["divergences", "result"] == "n/a"
    no_depth = compute_diagnostics(make_idata(depth_stat=None))
    assert failing(no_depth) == {"MAX_TREEDEPTH_UNAVAILABLE"}


def test_thresholds_can_be_overridden_but_not_misspelt():
    diag = compute_diagnostics(make_idata(divergences=2), thresholds={"divergences_max": 5})
    assert "DIVERGENCES" not in failing(diag) and diag["thresholds"]["divergences_max"] == 5
    with pytest.raises(ValueError, match="rhat_max"):
        compute_diagnostics(make_idata(), thresholds={"rhat_max": 1.05})


def test_diagnostics_json_roundtrip_and_tables(tmp_path):
    diag = compute_diagnostics(make_idata(divergences=3, shift_beta_tv=0.2))
    path = write_json(tmp_path / "diagnostics.json", diag)
    back = read_json(path)
    assert back["passed"] is False and back["metrics"]["divergences"] == 3
    assert set(back) == {"passed", "model_checks_passed", "thresholds", "metrics", "parameters", "loo", "ppc", "findings"}
    json.dumps(back)

    table = diagnostics_table(back)
    assert list(table.columns) == ["check", "value", "rule", "result"]
    res = table.set_index("check")["result"]
    assert res["max R-hat"] == "FAIL" and res["divergences"] == "FAIL" and res["min E-BFMI (per chain)"] == "pass"

    ft = findings_table(back["findings"])
    assert list(ft["severity"][:2]) == ["warning", "warning"]  # failures first
    head = diagnostics_headline(back)
    assert head.loc[0, "passed"] == "NO" and "RHAT_HIGH" in head.loc[0, "failed checks"]
    assert head.loc[0, "model checks"] == "not run"
    assert set(model_checks_table(back)["result"]) == {"n/a"}
    assert ppc_coverage_table(back)["result"].tolist() == ["n/a"]


def test_trace_and_rank_plots_return_figures():
    """arviz-plots figures, labelled like the summary tables, closed in pyplot (shown once in a notebook)."""
    import io

    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from mmm_lib.plots.fit import plot_rank, plot_trace

    idata = make_idata(n_draws=200, shift_beta_tv=0.2)
    fig = plot_trace(idata)
    assert isinstance(fig, Figure)
    # main parameters by default: 3 betas, sigma_beta, the control's gamma, intercept, sigma, nu -> 8 rows x 2 panels
    assert len(fig.axes) == 16
    assert [a.get_ylabel() for a in fig.axes[::2]] == [
        "beta[act_tv]", "beta[act_digital]", "beta[act_radio]", "sigma_beta", "gamma[ctrl_price_index]",
        "intercept", "sigma", "nu"]  # fmt: skip
    assert fig.axes[-1].get_xlabel() == "draw (after tuning)"
    fig = plot_rank(idata, var_names=["beta", "gamma"])
    titles = [a.get_title() for a in fig.axes if a.get_visible() and a.get_title()]
    assert titles == ["beta[act_tv]", "beta[act_digital]", "beta[act_radio]", "gamma[ctrl_price_index]"]
    fig.canvas.draw()
    for ax in (a for a in fig.axes if a.get_visible() and a.get_title()):  # a labelled vertical scale
        assert ax.yaxis.get_visible() and any(t.get_text() for t in ax.get_yticklabels())
    assert "gamma[ctrl_price_index]" in [a.get_title() for a in plot_rank(idata).axes]  # controls by default
    fig.savefig(io.BytesIO(), format="png")
    assert plt.get_fignums() == []
    with pytest.raises(ValueError, match="no variable"):
        plot_trace(idata, var_names=["alpha"])


# --------------------------------------------------------------------------- model checks

ENTITIES = ["store_a", "store_b", "store_c"]
CENTRES = {"store_a": 10.0, "store_b": 9.0, "store_c": 8.5}


def add_model_groups(
    idata: xr.DataTree,
    n_periods: int = 104,
    entities: list[str] | None = ENTITIES,
    noise: float = 0.05,
    pred_sd: float | dict[str, float] = 0.05,
    outlier: tuple[int, int, float] | None = None,
    with_ppc: bool = True,
    with_loglik: bool = True,
    seed: int = 7,
) -> xr.DataTree:
    """observed_data, posterior_predictive and log_likelihood groups (variable ``z``) as 04_fit writes them.

    Observed z = signal + Normal(0, noise). The predictive draws are signal + Normal(0, pred_sd)
    (``pred_sd`` = noise is calibrated); the log-likelihood is the Normal density of the observed
    values around a location that varies a little between draws. ``outlier=(entity index, period, shift)``
    moves one observation far away (kept out of the predictive so only LOO sees it).
    """
    rng = np.random.default_rng(seed)
    n_chains, n_draws = idata["posterior"].sizes["chain"], idata["posterior"].sizes["draw"]
    periods = pd.date_range("2023-01-02", periods=n_periods, freq="W-MON").to_numpy()
    n_e = len(entities) if entities else 1
    signal = 0.2 * np.sin(np.arange(n_periods) / 8.0)[None, :] + rng.normal(0, 0.1, (n_e, 1))
    obs = signal + rng.normal(0, noise, (n_e, n_periods))
    sd = np.array([pred_sd.get(e, noise) for e in entities])[:, None] if isinstance(pred_sd, dict) else np.full((n_e, 1), pred_sd)
    pred = signal + rng.normal(0, 1, (n_chains, n_draws, n_e, n_periods)) * sd
    loc = signal + rng.normal(0, noise / 10, (n_chains, n_draws, n_e, 1))
    if outlier is not None:
        obs[outlier[0], outlier[1]] += outlier[2]
    loglik = -0.5 * ((obs - loc) / noise) ** 2 - np.log(noise * np.sqrt(2 * np.pi))
    obs_dims = ("entity", "period") if entities else ("period",)
    coords = {"period": periods, **({"entity": entities} if entities else {})}
    if not entities:
        obs, pred, loglik = obs[0], pred[..., 0, :], loglik[..., 0, :]
    sample = {"chain": np.arange(n_chains), "draw": np.arange(n_draws)}
    groups = {name: idata[name].to_dataset() for name in idata.children}
    groups["observed_data"] = xr.Dataset({"z": (obs_dims, obs)}, coords=coords)
    if with_ppc:
        groups["posterior_predictive"] = xr.Dataset({"z": (("chain", "draw", *obs_dims), pred)}, coords={**coords, **sample})
    if with_loglik:
        groups["log_likelihood"] = xr.Dataset({"z": (("chain", "draw", *obs_dims), loglik)}, coords={**coords, **sample})
    return xr.DataTree.from_dict(groups)


def metadata(entities: list[str] | None = ENTITIES) -> dict:
    return {"target_centers": {e: CENTRES[e] for e in entities} if entities else {"brand": 11.0}}


def test_calibrated_predictive_and_clean_loo_pass_the_model_checks():
    idata = add_model_groups(make_idata())
    diag = compute_diagnostics(idata, metadata=metadata())
    assert diag["passed"] is True and diag["model_checks_passed"] is True
    codes = by_code(diag)
    assert {"LOO_OK", "PPC_OK"} <= set(codes) and failing(diag) == set()
    assert codes["PPC_OK"]["details"]["check"] == "model" and codes["PPC_OK"]["columns"] == []
    loo = diag["loo"]
    assert set(loo) == {"var_name", "scale", "elpd", "se", "p_loo", "n_obs", "n_samples", "pareto_k_threshold",
                        "n_pareto_k_high", "share_pareto_k_high", "max_pareto_k", "influential"}  # fmt: skip
    assert loo["n_obs"] == 3 * 104 and loo["n_samples"] == 2000 and loo["n_pareto_k_high"] == 0
    assert loo["pareto_k_threshold"] == pytest.approx(min(1 - 1 / np.log10(2000), 0.7))  # ArviZ's, not a fixed 0.7
    ppc = diag["ppc"]
    assert ppc["scale"] == "sales" and ppc["n_obs"] == 312 and ppc["status"] == "ok"
    assert abs(ppc["coverage_50"] - 0.5) < 0.08 and abs(ppc["coverage_90"] - 0.9) < 0.05
    assert list(ppc["entities"]) == ENTITIES and ppc["entities"]["store_b"]["n_obs"] == 104
    assert ppc["brand_total"]["n_obs"] == 104
    assert ppc["limits"] == {"coverage_50": [0.35, 0.70], "coverage_90": [0.75, None]}
    json.dumps(diag, allow_nan=False)
    table = ppc_coverage_table(diag)
    assert table["series"].tolist()[0] == "all observations" and table["series"].tolist()[2:] == ENTITIES
    assert set(model_checks_table(diag)["result"]) <= {"pass", ""}
    assert diagnostics_headline(diag).loc[0, "model checks"] == "pass"


def test_too_narrow_predictive_gives_ppc_coverage_low_without_touching_convergence():
    idata = add_model_groups(make_idata(), pred_sd=0.01)
    diag = compute_diagnostics(idata, metadata=metadata())
    assert diag["passed"] is True  # the gate's verdict: convergence only
    assert diag["model_checks_passed"] is False
    f = by_code(diag)["PPC_COVERAGE_LOW"]
    assert f["severity"] == "warning" and "over-confident" in f["remedy"]
    assert diag["ppc"]["coverage_90"] < 0.5 and diag["ppc"]["status"] == "low"
    assert f["details"]["entities_low"] == ENTITIES
    head = diagnostics_headline(diag)
    assert head.loc[0, "passed"] == "yes" and head.loc[0, "failed checks"] == "none"
    assert head.loc[0, "model checks"] == "WARN (PPC_COVERAGE_LOW)"
    assert "WARN: too narrow" in set(ppc_coverage_table(diag)["result"])


def test_too_wide_predictive_gives_ppc_coverage_high():
    diag = compute_diagnostics(add_model_groups(make_idata(), pred_sd=0.25), metadata=metadata())
    assert "PPC_COVERAGE_HIGH" in failing(diag) and diag["ppc"]["coverage_50"] > 0.9
    assert diag["model_checks_passed"] is False and diag["passed"] is True


def test_one_poorly_described_entity_is_named():
    idata = add_model_groups(make_idata(), pred_sd={"store_b": 0.005})
    diag = compute_diagnostics(idata, metadata=metadata())
    f = by_code(diag)["PPC_COVERAGE_LOW"]
    assert f["details"]["entities_low"] == ["store_b"] and "store_b" in f["message"]
    assert diag["ppc"]["entities"]["store_a"]["status"] == "ok" and diag["ppc"]["entities"]["store_b"]["status"] == "low"


def test_wild_outlier_gives_pareto_k_high_naming_the_period():
    idata = add_model_groups(make_idata(), outlier=(2, 30, 2.0))  # store_c, 31st week, 40 noise sd away
    diag = compute_diagnostics(idata, metadata=metadata())
    assert diag["passed"] is True and diag["model_checks_passed"] is False
    f = by_code(diag)["PARETO_K_HIGH"]
    assert f["severity"] == "warning"
    assert "k-fold" in f["remedy"] and "heavier-tailed" in f["remedy"]
    loo = diag["loo"]
    assert loo["n_pareto_k_high"] >= 1 and loo["share_pareto_k_high"] == loo["n_pareto_k_high"] / loo["n_obs"]
    assert loo["influential"][0] == {"entity": "store_c", "period": "2023-07-31", "pareto_k": pytest.approx(loo["max_pareto_k"])}
    assert loo["influential"][0]["pareto_k"] > loo["pareto_k_threshold"]
    assert "store_c 2023-07-31" in f["message"]
    assert model_checks_table(diag).set_index("check").loc["PSIS-LOO: observations with high Pareto k", "result"] == "WARN"


def test_brand_level_groups_have_no_entity_dim():
    diag = compute_diagnostics(add_model_groups(make_idata(), entities=None), metadata=metadata(None))
    assert diag["model_checks_passed"] is True
    assert diag["ppc"]["n_obs"] == 104 and diag["ppc"]["entities"] is None and diag["ppc"]["brand_total"] is None
    assert ppc_coverage_table(diag)["series"].tolist() == ["brand"]
    outlier = compute_diagnostics(add_model_groups(make_idata(), entities=None, outlier=(0, 0, 2.0)), metadata=metadata(None))
    assert outlier["loo"]["influential"][0]["period"] == "2023-01-02" and "entity" not in outlier["loo"]["influential"][0]


def test_without_metadata_the_predictive_check_runs_on_the_model_scale():
    diag = compute_diagnostics(add_model_groups(make_idata()))
    assert diag["ppc"]["scale"] == "model" and diag["ppc"]["brand_total"] is None
    assert "PPC_OK" in by_code(diag)


def test_coverage_limits_widen_with_few_observations():
    """Two thirds inside both bands: too few for 520 observations, within chance for 12."""
    def idata_with(n: int) -> xr.DataTree:
        rng = np.random.default_rng(0)
        draws = rng.normal(0, 1, (2, 500, n))
        observed = np.where(np.arange(n) % 3 == 2, 5.0, 0.0)  # every third far outside
        t = np.arange(n)
        return xr.DataTree.from_dict({
            "posterior": make_idata(n_draws=500)["posterior"].to_dataset(),
            "observed_data": xr.Dataset({"z": (("period",), observed)}, coords={"period": t}),
            "posterior_predictive": xr.Dataset({"z": (("chain", "draw", "period"), draws)}, coords={"period": t}),
        })  # fmt: skip

    few = compute_diagnostics(idata_with(12))
    assert few["ppc"]["coverage_90"] == pytest.approx(2 / 3) and few["ppc"]["limits"]["coverage_90"][0] < 0.66
    assert "PPC_OK" in by_code(few)
    many = compute_diagnostics(idata_with(519))
    assert many["ppc"]["limits"]["coverage_90"][0] == 0.75 and "PPC_COVERAGE_LOW" in failing(many)
    relaxed = compute_diagnostics(idata_with(519), thresholds={"ppc_coverage_90_min": 0.6})
    assert "PPC_COVERAGE_LOW" not in failing(relaxed)


def test_missing_group_skips_only_its_check():
    idata = add_model_groups(make_idata(), with_ppc=False)
    diag = compute_diagnostics(idata, metadata=metadata())
    codes = by_code(diag)
    assert "LOO_OK" in codes and codes["PPC_NOT_RUN"]["severity"] == "info"
    assert diag["ppc"] is None and diag["loo"] is not None and diag["model_checks_passed"] is None
    no_ll = compute_diagnostics(add_model_groups(make_idata(), with_loglik=False), metadata=metadata())
    assert no_ll["loo"] is None and "LOO_NOT_RUN" in by_code(no_ll) and "PPC_OK" in by_code(no_ll)


def test_groups_written_by_pymc_follow_the_contract():
    """A tiny PyMC model writes log_likelihood / posterior_predictive as 04_fit does; the checks read them."""
    import logging

    import pymc as pm

    logging.getLogger("pymc").setLevel(logging.ERROR)
    rng = np.random.default_rng(1)
    n_t = 40
    y = rng.normal([[0.1], [-0.1]], 0.1, (2, n_t))
    coords = {"entity": ["s1", "s2"], "period": pd.date_range("2024-01-01", periods=n_t, freq="W-MON")}
    with pm.Model(coords=coords) as model:
        mu = pm.Normal("intercept", 0, 1, dims="entity")
        sigma = pm.HalfNormal("sigma", 0.2)
        pm.Normal("z", mu[:, None], sigma, observed=y, dims=("entity", "period"))
    # A posterior close to the exact one, without running NUTS.
    post = xr.Dataset(
        {"intercept": (("chain", "draw", "entity"), y.mean(axis=1) + rng.normal(0, 0.1 / np.sqrt(n_t), (2, 300, 2))),
         "sigma": (("chain", "draw"), np.abs(rng.normal(0.1, 0.01, (2, 300))))},
        coords={"chain": [0, 1], "draw": np.arange(300), "entity": ["s1", "s2"]},
    )  # fmt: skip
    idata = xr.DataTree.from_dict({"posterior": post, "observed_data": xr.Dataset({"z": (("entity", "period"), y)}, coords=coords)})
    pm.compute_log_likelihood(idata, model=model, extend_inferencedata=True, progressbar=False)
    with model:
        pm.sample_posterior_predictive(idata, extend_inferencedata=True, random_seed=2, progressbar=False,
                                       compile_kwargs={"mode": "FAST_COMPILE"})  # fmt: skip
    diag = compute_diagnostics(idata, metadata={"target_centers": {"s1": 9.0, "s2": 8.0}})
    assert diag["loo"]["n_obs"] == 80 and diag["loo"]["n_samples"] == 600
    assert diag["ppc"]["n_obs"] == 80 and list(diag["ppc"]["entities"]) == ["s1", "s2"]
    assert {"LOO_OK", "PPC_OK"} <= set(by_code(diag))


def test_one_chain_fails_r_hat_with_the_reason_and_gets_a_note_in_place_of_the_rank_plot():
    """chains: 1 is allowed by the spec. R-hat compares chains (ArviZ gives NaN for one): the check fails saying
    why and what to set, not "worst: n/a". Rank plots compare chains too (ArviZ's multi-chain test refuses one),
    so 05_diagnose shows a note instead of failing the stage."""
    from mmm_lib.plots.fit import plot_rank, plot_trace

    idata = make_idata(n_chains=2, n_draws=200).isel(chain=[0])
    diag = compute_diagnostics(idata)
    rhat = next(f for f in diag["findings"] if f["code"] == "RHAT_HIGH")
    assert "this fit has 1" in rhat["message"] and "n/a" not in rhat["message"]
    assert "chains=4" in rhat["remedy"] and not diag["passed"]
    fig = plot_rank(idata)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("compares chains" in t and "this fit has 1" in t and "chains: 2" in t for t in texts), texts
    assert len(plot_trace(idata).axes) == 16

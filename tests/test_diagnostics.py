"""Tests for mmm_lib.diagnostics (and the trace/rank plots of 05_diagnose) on hand-built posteriors.

No sampling: each test builds a DataTree whose chains are healthy or broken in one known way
(chains that disagree, sticky chains, divergences, a random-walk energy, tree-depth hits under
each sampler's stat name) and checks that exactly that check fails, naming the parameter.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from mmm_lib.diagnostics import THRESHOLDS, compute_diagnostics, diagnostics_headline, diagnostics_table
from mmm_lib.findings import findings_table
from mmm_lib.storage import read_json, write_json

CHANNELS = ["act_tv", "act_digital", "act_radio"]
FAIL_CODES = {"RHAT_HIGH", "ESS_BULK_LOW", "ESS_TAIL_LOW", "DIVERGENCES", "EBFMI_LOW", "MAX_TREEDEPTH"}


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
    assert set(by_code(diag)) == {"RHAT_OK", "ESS_BULK_OK", "ESS_TAIL_OK", "DIVERGENCES_OK", "EBFMI_OK", "MAX_TREEDEPTH_OK"}
    assert all(f["severity"] == "info" and f["remedy"] == "" for f in diag["findings"])
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
    assert set(back) == {"passed", "thresholds", "metrics", "parameters", "findings"}
    json.dumps(back)

    table = diagnostics_table(back)
    assert list(table.columns) == ["check", "value", "rule", "result"]
    res = table.set_index("check")["result"]
    assert res["max R-hat"] == "FAIL" and res["divergences"] == "FAIL" and res["min E-BFMI (per chain)"] == "pass"

    ft = findings_table(back["findings"])
    assert list(ft["severity"][:2]) == ["warning", "warning"]  # failures first
    head = diagnostics_headline(back)
    assert head.loc[0, "passed"] == "NO" and "RHAT_HIGH" in head.loc[0, "failed checks"]


def test_trace_and_rank_plots_return_figures():
    from matplotlib.figure import Figure

    from mmm_lib.plots.fit import plot_rank, plot_trace

    idata = make_idata(n_draws=200, shift_beta_tv=0.2)
    fig = plot_trace(idata)
    assert isinstance(fig, Figure)
    # main parameters by default: 3 betas, sigma_beta, intercept, sigma, nu -> 7 rows x 2 panels
    assert len(fig.axes) == 14
    assert fig.axes[0].get_ylabel() == "beta[act_tv]"
    fig = plot_rank(idata, var_names=["beta", "gamma"])
    titles = [a.get_title() for a in fig.axes if a.get_visible()]
    assert titles == ["beta[act_tv]", "beta[act_digital]", "beta[act_radio]", "gamma[ctrl_price_index]"]
    with pytest.raises(ValueError, match="no variable"):
        plot_trace(idata, var_names=["alpha"])

"""Tests for mmm_lib.contributions: decomposition, counterfactual ROI, fitted values, fit metrics.

No sampling: the posterior is a small DataTree built by hand; features come from the real
``features.build_features`` so the counterfactual recomputation must reproduce them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import xarray as xr

matplotlib.use("Agg")

from mmm_lib import contributions as contrib  # noqa: E402
from mmm_lib.features import build_features  # noqa: E402
from mmm_lib.labels import display_name  # noqa: E402
from mmm_lib.model_pymc import posterior_draws  # noqa: E402
from mmm_lib.plots import contributions as cplots  # noqa: E402
from mmm_lib.spec import RunSpec  # noqa: E402
from mmm_lib.storage import Run  # noqa: E402

DRIVERS = ["act_tv", "act_search", "act_radio"]
SPEND = {"act_tv": "spend_tv", "act_search": "spend_search", "act_radio": None}
N_CARRY, N_EST = 6, 24
ROI_KEYS = {"channel", "spend_col", "spend", "contribution", "contribution_low", "contribution_high",
            "roi", "roi_low", "roi_high"}  # fmt: skip


def make_inputs(
    beta: np.ndarray | None = None,
    n_chains: int = 2,
    n_draws: int = 100,
    seed: int = 0,
    zero_search_spend: bool = False,
    perfect_fit: bool = False,
) -> dict:
    """Canonical data, features, metadata and a hand-built posterior for a 30-week brand series.

    All activity is 0 in the first 8 rows (carryover + 2 estimation weeks), so those estimation
    periods have no media at all. ``beta`` of shape (S, 3) fixes the channel coefficients (S =
    chains x draws); otherwise they are drawn at random.
    """
    rng = np.random.default_rng(seed)
    T = N_CARRY + N_EST
    periods = pd.date_range("2022-01-03", periods=T, freq="7D")
    act = rng.gamma(2.0, 50.0, size=(T, 3))
    act[:8] = 0.0
    can = pd.DataFrame(
        {
            "entity_id": "brand",
            "period_start": periods,
            "window": ["carryover"] * N_CARRY + ["estimation"] * N_EST,
            "sales": rng.uniform(800, 1200, T),
            "act_tv": act[:, 0],
            "act_search": act[:, 1],
            "act_radio": act[:, 2],
            "spend_tv": act[:, 0] * 2.0,
            "spend_search": act[:, 1] * 0.5,
            "ctrl_price": rng.normal(100, 3, T),
        }
    )
    if zero_search_spend:
        can.loc[can["window"] == "estimation", "spend_search"] = 0.0
    column_info = {
        "grain": "WEEK", "target": "sales", "drivers": DRIVERS, "spend": SPEND, "controls": ["ctrl_price"],
        "aggregation": {}, "source_entities": ["s1"], "n_source_entities": 1,
    }  # fmt: skip
    spec = RunSpec(
        data_path="unused.csv", drivers=DRIVERS, controls=["ctrl_price"],
        feature_config={"adstock": {"decay_default": 0.5, "per_channel": {"act_tv": 0.7}, "max_lag": 8},
                        "seasonality": {"enabled": True, "K": 1}},
    )  # fmt: skip
    features_df, fm, scaler = build_features(can, column_info, spec)
    controls = [c["name"] for c in fm["controls"]]
    S = n_chains * n_draws
    if beta is None:
        beta = np.abs(rng.normal(0.3, 0.08, size=(S, 3)))
    beta = np.asarray(beta, dtype=float).reshape(S, 3)
    intercept = rng.normal(0.0, 0.02, S)
    gamma = rng.normal(0.0, 0.03, size=(S, len(controls)))
    center = 6.9
    if perfect_fit:
        est = (features_df["window"] == "estimation").to_numpy()
        media = features_df.loc[est, [c["feature"] for c in fm["channels"]]].to_numpy(float)
        ctrl = features_df.loc[est, [c["feature"] for c in fm["controls"]]].to_numpy(float)
        mu = intercept[0] + media @ beta[0] + ctrl @ gamma[0]
        can.loc[est, "sales"] = np.expm1(mu + center)
    shape = (n_chains, n_draws)
    post = xr.Dataset(
        {
            "intercept": (("chain", "draw"), intercept.reshape(shape)),
            "beta": (("chain", "draw", "channel"), beta.reshape(*shape, 3)),
            "gamma": (("chain", "draw", "control"), gamma.reshape(*shape, len(controls))),
            "sigma": (("chain", "draw"), np.full(shape, 0.05)),
            "nu": (("chain", "draw"), np.full(shape, 10.0)),
            "sigma_beta": (("chain", "draw"), np.full(shape, 0.3)),
        },
        coords={"chain": np.arange(n_chains), "draw": np.arange(n_draws), "channel": DRIVERS, "control": controls},
    )
    idata = xr.DataTree.from_dict({"posterior": post})
    model_metadata = {
        "model": "seed", "target_transform": "log1p", "target_center": center, "channels": DRIVERS,
        "channel_features": [f"media__{d}" for d in DRIVERS], "controls": controls,
        "control_features": [c["feature"] for c in fm["controls"]],
    }  # fmt: skip
    return {
        "canonical_df": can, "column_info": column_info, "features_df": features_df, "feature_metadata": fm,
        "feature_scaler": scaler, "model_metadata": model_metadata, "idata": idata,
    }  # fmt: skip


def _design(inputs: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f = inputs["features_df"]
    fm = inputs["feature_metadata"]
    est = (f["window"] == "estimation").to_numpy()
    media = f.loc[est, [c["feature"] for c in fm["channels"]]].to_numpy(float)
    ctrl = f.loc[est, [c["feature"] for c in fm["controls"]]].to_numpy(float)
    return est, media, ctrl


def _mu_terms(inputs: dict, draws: dict) -> tuple[np.ndarray, np.ndarray]:
    """The run's model object evaluated on the observed activity: (S, T) mu and (S, T, C) media terms."""
    keys = ("features_df", "feature_metadata", "feature_scaler", "model_metadata")
    mmm = contrib.model_for(*(inputs[k] for k in keys))
    media = mmm.media(draws, mmm.data.activity)
    return mmm.mu(draws, media)[:, 0], mmm.media_terms(draws, media)[:, 0]


# ------------------------------------------------------------------------------------ decomposition


def test_decomposition_sums_to_fitted_per_draw_and_period():
    inputs = make_inputs()
    _, media, ctrl = _design(inputs)
    draws = posterior_draws(inputs["idata"])
    parts = dict(contrib.iter_decomposition(*_mu_terms(inputs, draws), 6.9, DRIVERS))
    assert list(parts) == ["fitted", "baseline", *DRIVERS]
    total = parts["baseline"] + sum(parts[d] for d in DRIVERS)
    assert parts["fitted"].shape == (200, N_EST)
    np.testing.assert_allclose(total, parts["fitted"], rtol=1e-9, atol=0)
    # the first two estimation weeks have no media: everything is baseline, no NaN from 0/0
    assert np.all(np.isfinite(total))
    for d in DRIVERS:
        assert np.all(parts[d][:, :2] == 0.0)
        assert np.all(parts[d][:, 2:] > 0.0)
    np.testing.assert_array_equal(parts["baseline"][:, :2], parts["fitted"][:, :2])
    # baseline = all media off
    mu0 = draws["intercept"][:, None] + draws["gamma"] @ ctrl.T
    np.testing.assert_allclose(parts["baseline"], np.expm1(mu0 + 6.9), rtol=1e-12)


def test_media_total_shared_in_proportion_to_log_terms():
    inputs = make_inputs(beta=[[0.2, 0.6, 0.0]], n_chains=1, n_draws=1)
    _, media, ctrl = _design(inputs)
    parts = dict(contrib.iter_decomposition(*_mu_terms(inputs, posterior_draws(inputs["idata"])), 6.9, DRIVERS))
    # tv : search = 0.2 f_tv : 0.6 f_search, radio (beta 0) gets nothing
    t = 5
    assert parts["act_tv"][0, t] / parts["act_search"][0, t] == pytest.approx(
        0.2 * media[t, 0] / (0.6 * media[t, 1]), rel=1e-12
    )
    assert np.all(parts["act_radio"] == 0.0)


def test_result_tables_add_up_and_intervals_are_ordered():
    inputs = make_inputs()
    res = contrib.compute_contributions(**inputs)
    ts = res.timeseries
    assert list(ts.columns) == ["entity_id", "period_start", "component", "mean", "low", "high"]
    assert set(ts["component"]) == {"baseline", *DRIVERS}
    assert len(ts) == 4 * N_EST
    assert ts["period_start"].dtype == "datetime64[ns]"
    # means are additive: per period the component means sum to the fitted mean
    by_period = ts.groupby("period_start")["mean"].sum().to_numpy()
    np.testing.assert_allclose(by_period, res.fitted["fitted"].to_numpy(), rtol=1e-9)
    for df, (lo, m, hi) in ((ts, ("low", "mean", "high")), (res.fitted, ("fitted_low", "fitted", "fitted_high"))):
        assert (df[lo] <= df[m] + 1e-9).all() and (df[m] <= df[hi] + 1e-9).all()
    s = res.summary
    assert s["interval"] == 0.9
    assert s["window"] == {"start": "2022-02-14", "end": "2022-07-25", "n_periods": N_EST}
    total = s["baseline"]["contribution"] + sum(c["contribution"] for c in s["channels"])
    assert total == pytest.approx(s["total_fitted"]["mean"], rel=1e-9)
    assert s["baseline"]["share"] + sum(c["share"] for c in s["channels"]) == pytest.approx(1.0, rel=1e-9)
    tf = s["total_fitted"]
    assert tf["low"] <= tf["mean"] <= tf["high"]
    for b in (s["baseline"], *s["channels"]):
        assert b["contribution_low"] <= b["contribution"] <= b["contribution_high"]
    for c in s["channels"]:
        assert c["share_low"] <= c["share"] <= c["share_high"]
        assert c["incremental_low"] <= c["incremental"] <= c["incremental_high"]
        assert c["incremental"] > 0
    for r in res.roi["channels"]:
        assert r["contribution_low"] <= r["contribution"] <= r["contribution_high"]
        assert r["roi_low"] <= r["roi"] <= r["roi_high"]
    can = inputs["canonical_df"]
    assert s["total_actual"] == pytest.approx(float(can.loc[can["window"] == "estimation", "sales"].sum()))


# ------------------------------------------------------------------------------------ ROI


def test_roi_equals_hand_computed_counterfactual_single_draw():
    b = [0.4, 0.25, 0.1]
    inputs = make_inputs(beta=[b], n_chains=1, n_draws=1)
    res = contrib.compute_contributions(**inputs)
    est, media, ctrl = _design(inputs)
    post = inputs["idata"]["posterior"]
    a = float(post["intercept"].values.ravel()[0])
    g = post["gamma"].values.reshape(-1)
    c = 6.9
    can = inputs["canonical_df"]
    # Zeroing a channel's activity in every row zeroes its feature in every row (the features are
    # per channel and zero activity -> zero feature); the other channels keep theirs.
    expected = {}
    for k, d in enumerate(DRIVERS):
        inc = 0.0
        for t in range(media.shape[0]):
            base = a + sum(ctrl[t, j] * g[j] for j in range(len(g)))
            full = base + sum(b[i] * media[t, i] for i in range(3))
            off = full - b[k] * media[t, k]
            inc += math.expm1(full + c) - math.expm1(off + c)
        expected[d] = inc
    rows = {r["channel"]: r for r in res.roi["channels"]}
    assert set(rows) == {"act_tv", "act_search"}
    for d in ("act_tv", "act_search"):
        spend = float(can.loc[est, SPEND[d]].sum())
        assert rows[d]["spend"] == pytest.approx(spend, rel=1e-12)
        assert rows[d]["contribution"] == pytest.approx(expected[d], rel=1e-10)
        assert rows[d]["roi"] == pytest.approx(expected[d] / spend, rel=1e-10)
        assert rows[d]["roi_low"] == rows[d]["roi"] == rows[d]["roi_high"]
    incs = {ch["channel"]: ch["incremental"] for ch in res.summary["channels"]}
    for d in DRIVERS:
        assert incs[d] == pytest.approx(expected[d], rel=1e-10)
    assert res.roi["channels_without_spend"] == ["act_radio"]


def test_carryover_activity_counts_toward_the_channel():
    inputs = make_inputs(beta=[[0.3, 0.3, 0.3]], n_chains=1, n_draws=1)
    can = inputs["canonical_df"]
    est = (can["window"] == "estimation").to_numpy()
    # tv only airs in the last carryover weeks; its adstock (decay 0.7) spills into the window
    can.loc[est, "act_tv"] = 0.0
    can.loc[est, "spend_tv"] = 0.0
    can.loc[~est, "act_tv"] = 0.0
    can.loc[np.flatnonzero(~est)[-2:], "act_tv"] = 500.0
    spec = RunSpec(
        data_path="unused.csv", drivers=DRIVERS, controls=["ctrl_price"],
        feature_config={"adstock": {"decay_default": 0.5, "per_channel": {"act_tv": 0.7}, "max_lag": 8},
                        "seasonality": {"enabled": True, "K": 1}},
    )  # fmt: skip
    inputs["features_df"], inputs["feature_metadata"], inputs["feature_scaler"] = build_features(
        can, inputs["column_info"], spec
    )
    res = contrib.compute_contributions(**inputs)
    tv = next(c for c in res.summary["channels"] if c["channel"] == "act_tv")
    assert tv["incremental"] > 0
    row = next(r for r in res.roi["channels"] if r["channel"] == "act_tv")
    assert row["roi"] is None and "act_tv" in res.roi["notes"]


def test_channel_with_zero_beta_has_zero_roi():
    inputs = make_inputs(beta=np.tile([0.3, 0.0, 0.2], (200, 1)))
    res = contrib.compute_contributions(**inputs)
    search = next(r for r in res.roi["channels"] if r["channel"] == "act_search")
    assert search["roi"] == pytest.approx(0.0, abs=1e-12)
    assert search["roi_low"] == pytest.approx(0.0, abs=1e-12)
    assert search["roi_high"] == pytest.approx(0.0, abs=1e-12)
    assert search["contribution"] == pytest.approx(0.0, abs=1e-9)
    share = next(c for c in res.summary["channels"] if c["channel"] == "act_search")
    assert share["contribution"] == 0.0


def test_zero_spend_channel_gets_null_roi_with_note():
    res = contrib.compute_contributions(**make_inputs(zero_search_spend=True))
    search = next(r for r in res.roi["channels"] if r["channel"] == "act_search")
    assert search["spend"] == 0.0
    assert search["roi"] is None and search["roi_low"] is None and search["roi_high"] is None
    assert search["contribution"] > 0  # the effect is still reported
    assert "spend_search" in res.roi["notes"]["act_search"]
    tv = next(r for r in res.roi["channels"] if r["channel"] == "act_tv")
    assert tv["roi"] is not None and tv["roi"] > 0
    json.dumps(res.roi)  # serialisable as is


# ------------------------------------------------------------------------------------ fit metrics


def test_fit_metrics_on_a_perfect_fit():
    res = contrib.compute_contributions(**make_inputs(n_chains=1, n_draws=1, perfect_fit=True))
    fm = res.fit_metrics
    assert fm["n_obs"] == N_EST
    assert fm["r2"] == pytest.approx(1.0, abs=1e-12)
    assert fm["mape"] == pytest.approx(0.0, abs=1e-10)
    assert fm["rmse"] == pytest.approx(0.0, abs=1e-8)
    np.testing.assert_allclose(res.fitted["fitted"], res.fitted["actual"], rtol=1e-12)


def test_fit_metrics_known_values():
    fm = contrib.fit_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert fm["mape"] == pytest.approx(100 * (1 / 3) / 3)
    assert fm["rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert fm["r2"] == pytest.approx(1 - 1 / 2)
    assert fm["n_obs"] == 3
    zero = contrib.fit_metrics(np.array([0.0, 2.0]), np.array([1.0, 2.0]))
    assert zero["mape"] == 0.0 and zero["mape_excluded_zero_actual"] == 1
    assert contrib.fit_metrics(np.array([2.0, 2.0]), np.array([1.0, 2.0]))["r2"] is None


# ------------------------------------------------------------------------------------ errors


def test_stale_features_are_refused():
    inputs = make_inputs()
    inputs["feature_scaler"]["media"]["act_tv"]["adstock_max"] *= 2.0
    with pytest.raises(ValueError, match="act_tv.*03_features"):
        contrib.compute_contributions(**inputs)


def test_bad_interval_and_mismatched_periods_are_refused():
    inputs = make_inputs(n_draws=5)
    with pytest.raises(ValueError, match="interval"):
        contrib.compute_contributions(**inputs, interval=1.5)
    inputs["features_df"] = inputs["features_df"].iloc[1:]
    with pytest.raises(ValueError, match="03_features"):
        contrib.compute_contributions(**inputs)


# ------------------------------------------------------------------------------------ stage + plots


def test_contribute_stage_writes_the_five_artifacts(outputs_root, tmp_path):
    inputs = make_inputs(zero_search_spend=True)
    run = Run(run_id="t", dir=outputs_root / "runs" / "t", spec=None)
    run.write_parquet("canonical_data.parquet", inputs["canonical_df"])
    run.write_json("column_info.json", inputs["column_info"])
    run.write_parquet("features.parquet", inputs["features_df"])
    run.write_json("feature_metadata.json", inputs["feature_metadata"])
    run.write_json("feature_scaler.json", inputs["feature_scaler"])
    run.write_json("model_metadata.json", inputs["model_metadata"])
    run.write_posterior(inputs["idata"])
    assert contrib.diagnostics_banner(run).startswith("diagnostics.json not found")
    res = contrib.contribute_stage(run)

    roi = json.loads(run.path("roi_metrics.json").read_text())
    assert {"interval", "channels"} <= set(roi) and roi["interval"] == 0.9
    assert "ROAS" in roi["definition"]
    for row in roi["channels"]:
        assert set(row) == ROI_KEYS
    assert [r["channel"] for r in roi["channels"]] == ["act_tv", "act_search"]
    assert roi["channels"][1]["roi"] is None

    summ = json.loads(run.path("contribution_summary.json").read_text())
    assert {"interval", "window", "total_actual", "total_fitted", "baseline", "channels", "method"} <= set(summ)
    assert set(summ["channels"][0]) == {
        "channel", "contribution", "contribution_low", "contribution_high", "share", "share_low", "share_high",
        "incremental", "incremental_low", "incremental_high",
    }  # fmt: skip
    fm = json.loads(run.path("fit_metrics.json").read_text())
    assert {"mape", "rmse", "r2", "n_obs"} <= set(fm)
    fitted = run.read_parquet("fitted.parquet")
    assert list(fitted.columns) == ["entity_id", "period_start", "window", "actual", "fitted", "fitted_low", "fitted_high",
                                    "predicted_low", "predicted_high"]
    ts = run.read_parquet("contributions.parquet")
    pd.testing.assert_frame_equal(ts, res.timeseries, check_dtype=False)

    run.write_json("diagnostics.json", {"passed": False})
    assert "provisional" in contrib.diagnostics_banner(run)
    run.write_json("diagnostics.json", {"passed": True})
    assert contrib.diagnostics_banner(run) == "diagnostics passed"

    rt = contrib.roi_table(res.roi)
    assert list(rt.columns) == ["spend", contrib.INCREMENTAL_LABEL, "90% interval", "ROI", "ROI 90% interval", "verdict"]
    tv = next(r for r in res.roi["channels"] if r["channel"] == "act_tv")
    assert rt.loc["TV", "ROI"] == f"{tv['roi']:.2f}" and rt.loc["TV", "spend"] == f"{tv['spend']:,.0f}"
    ct = contrib.contribution_table(res.summary)
    assert list(ct.index) == ["Baseline", *(display_name(d) for d in DRIVERS)]
    assert contrib.DECOMPOSITION_LABEL in ct.columns and contrib.INCREMENTAL_LABEL in ct.columns
    assert ct.loc["Baseline", contrib.INCREMENTAL_LABEL] == "–"  # no counterfactual for the baseline, never <NA>
    assert contrib.headline(res)["best_roi"].startswith("TV")
    assert contrib.fit_metrics_table(res.fit_metrics).loc["periods", "fitted window"] == f"{N_EST:,}"


def test_plots_return_figures():
    from matplotlib.figure import Figure

    res = contrib.compute_contributions(**make_inputs(zero_search_spend=True, n_draws=20))
    figs = [
        cplots.plot_fit(res.fitted, res.fit_metrics, target="sales"),
        cplots.plot_decomposition(res.timeseries),
        cplots.plot_roi(res.roi),
        cplots.plot_roi({"interval": 0.9, "channels": [], "channels_without_spend": DRIVERS}),
        cplots.plot_contribution_share(res.summary),
    ]
    for fig in figs:
        assert isinstance(fig, Figure)
        fig.canvas.draw()  # renders without error
    roi_ax = figs[2].axes[0]
    assert any("break-even" in t.get_text() for t in roi_ax.get_legend().get_texts())


# ------------------------------------------------------------------------------------ known truth


def test_roi_matches_the_sample_generators_known_truth():
    """With the generator's true parameters as a one-draw posterior, ROI and incremental sales
    reproduce the truth that ``mmm_lib.sample`` computed on its own (no sampling here)."""
    from mmm_lib.canonicalize import canonicalize
    from mmm_lib.spec import load_spec
    from mmm_lib.raw_io import load_raw

    repo = Path(__file__).resolve().parent.parent
    truth = json.loads((repo / "data" / "mmm_sample_small_truth.json").read_text())
    p = truth["params"]
    spec = load_spec(repo / "params" / "baseline.yaml")  # the generator's truth is the brand-level baseline model
    can, ci = canonicalize(load_raw(repo / "data" / "mmm_sample_small.csv"), spec)
    features_df, fm, scaler = build_features(can, ci, spec)
    chans = [c["driver"] for c in fm["channels"]]
    ctrls = [c["name"] for c in fm["controls"]]
    post = xr.Dataset(
        {
            "intercept": (("chain", "draw"), [[p["intercept_centred"]]]),
            "beta": (("chain", "draw", "channel"), [[[p["beta"][c] for c in chans]]]),
            "gamma": (("chain", "draw", "control"), [[[p["gamma"][c] for c in ctrls]]]),
        },
        coords={"channel": chans, "control": ctrls},
    )
    res = contrib.compute_contributions(
        can, ci, features_df, fm, scaler, {"target_center": p["target_center"], "channels": chans, "controls": ctrls},
        xr.DataTree.from_dict({"posterior": post}),
    )  # fmt: skip
    rows = {r["channel"]: r for r in res.roi["channels"]}
    assert set(rows) == set(truth["roi"])
    for ch, roi in truth["roi"].items():
        assert rows[ch]["roi"] == pytest.approx(roi, rel=1e-9)
        assert rows[ch]["contribution"] == pytest.approx(truth["contribution"][ch], rel=1e-9)


# ------------------------------------------------------------------------------------ report text and tables


def _roi_row(ch, roi, lo, hi, spend=1_234_567.0):
    return {"channel": ch, "spend_col": f"spend_{ch}", "spend": spend, "contribution": roi * spend,
            "contribution_low": lo * spend, "contribution_high": hi * spend, "roi": roi, "roi_low": lo, "roi_high": hi}


ROI_DOC = {
    "interval": 0.9,
    "channels": [_roi_row("act_tv", 1.61, 1.21, 2.05), _roi_row("act_digital", 0.52, 0.31, 0.84),
                 _roi_row("act_search", 1.1, 0.81, 2.65),
                 {**_roi_row("act_print", 0, 0, 0, spend=0.0), "roi": None, "roi_low": None, "roi_high": None}],
    "channels_without_spend": ["act_radio"],
    "notes": {},
}
SUMMARY_DOC = {
    "interval": 0.9,
    "window": {"start": "2023-01-02", "end": "2024-12-30", "n_periods": 104},
    "baseline": {"contribution": 8.0e6, "contribution_low": 7.5e6, "contribution_high": 8.4e6,
                 "share": 0.8, "share_low": 0.75, "share_high": 0.84},
    "channels": [{"channel": "act_tv", "contribution": 2.0e6, "contribution_low": 1.6e6, "contribution_high": 2.5e6,
                  "share": 0.2, "share_low": 0.16, "share_high": 0.25,
                  "incremental": 2.1e6, "incremental_low": 1.5e6, "incremental_high": 2.6e6}],
}  # fmt: skip


def test_verdict_pays_back_only_when_the_whole_interval_is_above_one():
    assert contrib.roi_verdict({"roi": 1.6, "roi_low": 1.01, "roi_high": 2}) == "pays back"
    assert contrib.roi_verdict({"roi": 0.5, "roi_low": 0.3, "roi_high": 0.99}) == "does not pay back"
    assert contrib.roi_verdict({"roi": 1.1, "roi_low": 0.8, "roi_high": 2.6}) == "inconclusive"
    assert contrib.roi_verdict({"roi": 1.1, "roi_low": 1.0, "roi_high": 2.6}) == "inconclusive"  # touching 1 is not above
    assert contrib.roi_verdict({"roi": None, "roi_low": None, "roi_high": None}) == "no ROI"


def test_executive_summary_has_one_sentence_per_channel_and_the_media_share():
    s = contrib.executive_summary(ROI_DOC, SUMMARY_DOC, {"act_search": "Paid search"})
    assert s.sentences[0].startswith("Media drove 20.0% of fitted sales from 2023-01-02 to 2024-12-30 (90%: 16.0–25.0%)")
    assert s.sentences[1] == "TV returned 1.61 per unit of spend (90%: 1.21–2.05): pays back."
    assert s.sentences[2] == "Digital returned 0.52 per unit of spend (90%: 0.31–0.84): does not pay back."
    assert s.sentences[3].startswith("Paid search returned 1.10 per unit of spend (90%: 0.81–2.65): inconclusive")
    assert s.sentences[4] == "Print had no spend in the window, so it has no ROI."
    assert s.sentences[5] == "Radio has no spend data, so it has no ROI."
    assert len(s.sentences) == 6 and str(s) == "\n".join(s.sentences)


def test_executive_summary_html_escapes_names():
    doc = {**ROI_DOC, "channels": [_roi_row("act_<b>x</b>", 2.0, 1.5, 2.5)], "channels_without_spend": []}
    html = contrib.executive_summary(doc, SUMMARY_DOC)._repr_html_()
    assert "<b>x</b>" not in html and "&lt;b&gt;" in html


def test_tables_are_formatted_for_reading():
    rt = contrib.roi_table(ROI_DOC, {"act_tv": "Television"})
    assert list(rt.index) == ["Television", "Digital", "Search", "Print"]  # no 0..N index
    assert rt.loc["Television", "spend"] == "1,234,567"
    assert rt.loc["Television", contrib.INCREMENTAL_LABEL] == "1,987,653"
    assert rt.loc["Television", "ROI"] == "1.61" and rt.loc["Television", "ROI 90% interval"] == "1.21 – 2.05"
    assert rt.loc["Print", "ROI"] == "–" and rt.loc["Print", "verdict"] == "no ROI"
    ct = contrib.contribution_table(SUMMARY_DOC)
    assert ct.loc["Baseline", contrib.DECOMPOSITION_LABEL] == "8,000,000"
    assert ct.loc["TV", f"{contrib.DECOMPOSITION_LABEL} (%)"] == "20.0%"
    assert ct.loc["TV", contrib.INCREMENTAL_LABEL] == "2,100,000"
    for t in (rt, ct):
        text = t.to_string()
        assert "<NA>" not in text and "nan" not in text.lower() and "e+" not in text
    fm = contrib.fit_metrics_table({"r2": 0.91234, "mape": 3.456, "rmse": 123456.789, "n_obs": 104,
                                    "mape_excluded_zero_actual": 0, "holdout": None})  # fmt: skip
    assert fm.loc["RMSE (target units)", "fitted window"] == "123,456.79"
    assert fm.loc["R²", "fitted window"] == "0.9123"
    ent = contrib.entity_roi_table({"channels": ROI_DOC["channels"][:1],
                                    "entities": [{"entity_id": "s1", "channels": [_roi_row("act_tv", 1.5, 1.2, 1.9)]}]})
    assert ent.loc["s1", "TV"] == "1.50 [1.20 – 1.90]"


def test_channel_names_table_maps_shown_names_to_data_columns():
    t = contrib.channel_names_table(SUMMARY_DOC, {"act_tv": "Television"})
    assert t.loc["Television", "column in the data"] == "act_tv"

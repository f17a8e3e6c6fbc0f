"""`mmm compare`: runs of the same data ranked by ELPD-LOO and holdout error, refused otherwise.

Run folders are written by hand with small synthetic artifacts (no sampling): a log-likelihood made
from a model that is close to the observations and one that is biased, so the ranking is known.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from mmm_lib.cli import main
from mmm_lib.compare import CompareRefused, compare_runs, ranking_table, write_comparison
from mmm_lib.storage import write_json

ENTITIES = ["store_a", "store_b", "store_c"]
N_CARRY, N_EST = 4, 30
PERIODS = pd.date_range("2023-01-02", periods=N_CARRY + N_EST, freq="W-MON")


def _sales(scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    rows = [{"entity_id": e, "period_start": p, "sales": float(round(1000 * (k + 1) * scale + rng.normal(0, 50), 2))}
            for k, e in enumerate(ENTITIES) for p in PERIODS]  # fmt: skip
    return pd.DataFrame(rows)


def make_run(
    root: Path,
    run_id: str,
    *,
    level: str = "entity",
    bias: float = 0.0,
    holdout: int = 0,
    crps: float | None = None,
    n_est: int = N_EST,
    sales: pd.DataFrame | None = None,
    target: str = "sales",
    transforms: str = "learned",
    saturation: str = "hill",
    channels: tuple[str, ...] = ("act_tv", "act_radio"),
    roi: tuple[float, ...] = (1.8, 0.4),
    passed: bool = True,
    log_likelihood: bool = True,
    brand_entity_dim: bool = False,
) -> Path:
    """A finished run folder: canonical data, metadata, diagnostics, fit/ROI metrics and posterior.nc.

    ``bias`` shifts the model's predictions on the z scale: 0 fits the data, 0.08 is clearly worse.
    """
    d = root / "runs" / run_id
    d.mkdir(parents=True)
    df = (sales if sales is not None else _sales()).copy()
    periods = PERIODS[: N_CARRY + n_est]
    df = df[df["period_start"].isin(periods)]
    window = np.where(df["period_start"] < periods[N_CARRY], "carryover", "estimation")
    if holdout:
        window[df["period_start"].isin(periods[-holdout:]).to_numpy()] = "holdout"
    df.insert(2, "window", window)
    df = df.rename(columns={"sales": target})
    if level == "brand":
        df = df.groupby(["period_start", "window"], as_index=False)[target].sum()
        df.insert(0, "entity_id", "brand")
    df.to_parquet(d / "canonical_data.parquet", index=False)
    entities = ENTITIES if level == "entity" else ["brand"]
    fitted = periods[N_CARRY : N_CARRY + n_est - holdout]
    windows = {
        "carryover_start": str(periods[0].date()), "estimation_start": str(periods[N_CARRY].date()),
        "end": str((periods[-1] + pd.Timedelta(days=7)).date()), "n_carryover": N_CARRY, "n_estimation": n_est - holdout,
        "first_period": str(periods[0].date()), "first_estimation_period": str(periods[N_CARRY].date()),
        "last_period": str(periods[-1].date()),
    }  # fmt: skip
    if holdout:
        windows.update(n_holdout=holdout, first_holdout_period=str(periods[-holdout].date()))
    write_json(d / "column_info.json", {
        "grain": "WEEK", "target": target, "drivers": list(channels), "spend": {c: f"spend_{c}" for c in channels},
        "controls": [], "aggregation": {target: "sum"}, "level": level, "entities": entities,
        "source_entities": ENTITIES, "n_source_entities": len(ENTITIES), "windows": windows,
    })  # fmt: skip
    est = df[df["window"] == "estimation"]
    z_obs_tab = np.log1p(est.pivot(index="entity_id", columns="period_start", values=target).loc[entities].to_numpy())
    centres = dict(zip(entities, z_obs_tab.mean(axis=1)))
    z_obs = z_obs_tab - z_obs_tab.mean(axis=1, keepdims=True)
    write_json(d / "model_metadata.json", {
        "model": f"{transforms}_{level}", "transforms": transforms, "level": level, "saturation": saturation,
        "target_centers": centres, "entities": entities, "channels": list(channels),
        "channel_features": [f"media__{c}" for c in channels], "controls": [], "control_features": [],
        "n_obs": int(z_obs.size), "estimation_start": str(fitted[0].date()), "estimation_end": str(fitted[-1].date()),
    })  # fmt: skip
    write_json(d / "run_spec.json", {
        "data_path": "/data/sample.csv", "target_col": target, "drivers": list(channels),
        "model": {"transforms": transforms, "level": level},
        "feature_config": {"saturation": {"type": saturation}},
        "windows": {"carryover_months": 1, "estimation_months": 7, "holdout_periods": holdout},
    })  # fmt: skip
    write_json(d / "status.json", {"run_id": run_id, "status": "completed", "stage": None})
    write_json(d / "diagnostics.json", {
        "passed": passed, "model_checks_passed": True,
        "metrics": {"max_r_hat": 1.003 if passed else 1.04, "min_ess_bulk": 800.0, "divergences": 0},
        "findings": [] if passed else [{"severity": "warning", "code": "RHAT_HIGH", "message": "R-hat 1.04 for <beta>"}],
        "loo": None,
    })  # fmt: skip
    hold = None
    if holdout:
        m = {"mape": 2.0 + (crps or 0) / 1000, "rmse": 100.0, "crps": crps, "coverage_50": 0.5, "coverage_90": 0.83,
             "n_obs": holdout}  # fmt: skip
        hold = {"periods": holdout, "start": str(periods[-holdout].date()), "end": str(periods[-1].date()),
                "brand": m, "entity": None}  # fmt: skip
    write_json(d / "fit_metrics.json", {"mape": 3.0, "rmse": 200.0, "r2": 0.9, "n_obs": int(z_obs.size), "holdout": hold})
    write_json(d / "roi_metrics.json", {"interval": 0.9, "channels": [
        {"channel": c, "spend": 1e5, "contribution": r * 1e5, "roi": r, "roi_low": 0.6 * r, "roi_high": 1.5 * r}
        for c, r in zip(channels, roi)]})  # fmt: skip

    rng = np.random.default_rng(zlib.crc32(run_id.encode()))
    chains, draws = 2, 200
    # The baseline model's z has no entity dim; other brand-level models keep one entity named "brand".
    keep_entity = level == "entity" or brand_entity_dim
    obs_dims = ("entity", "period") if keep_entity else ("period",)
    z = z_obs if keep_entity else z_obs[0]
    mu = z[None, None] + bias + rng.normal(0, 0.01, (chains, draws, *z.shape))
    sd = 0.05
    ll = -0.5 * ((z[None, None] - mu) / sd) ** 2 - np.log(sd * np.sqrt(2 * np.pi))
    coords = {"chain": np.arange(chains), "draw": np.arange(draws), "period": fitted.to_numpy()}
    if keep_entity:
        coords["entity"] = entities
    groups = {
        "posterior": xr.Dataset({"sigma": (("chain", "draw"), np.abs(rng.normal(sd, 0.005, (chains, draws))))},
                                coords={"chain": coords["chain"], "draw": coords["draw"]}),
        "observed_data": xr.Dataset({"z": (obs_dims, z)}, coords={k: coords[k] for k in obs_dims}),
    }  # fmt: skip
    if log_likelihood:
        groups["log_likelihood"] = xr.Dataset({"z": (("chain", "draw", *obs_dims), ll)}, coords=coords)
    xr.DataTree.from_dict(groups).to_netcdf(d / "posterior.nc", engine="netcdf4")
    (d / "index.html").write_text("<html></html>")
    return d


def test_the_better_log_likelihood_ranks_first_with_a_positive_lead(outputs_root):
    make_run(outputs_root, "biased", bias=0.08, transforms="fixed")
    make_run(outputs_root, "close", bias=0.0, transforms="learned")
    res = compare_runs(["biased", "close"])
    loo = res["loo"]
    assert loo["ranked"] and loo["reason"] is None
    group = loo["groups"][0]
    assert [r["run_id"] for r in group["ranking"]] == ["close", "biased"]
    assert group["ranking"][0]["rank"] == 1 and group["ranking"][0]["elpd_diff"] == 0
    assert group["ranking"][1]["elpd_diff"] < 0  # ArviZ's sign: this run's ELPD minus the best's
    lead = group["lead"]
    assert lead["best"] == "close" and lead["elpd_diff"] > 4 and lead["elpd_diff"] > 2 * lead["se"]
    assert lead["verdict"] == "a clear difference"
    assert group["observations"] == "3 entities × 30 weeks"
    # No holdout: not ranked, and the page says how to get one.
    assert not res["holdout"]["ranked"] and "windows.holdout_periods" in res["holdout"]["reason"]
    assert res["headline"][0].startswith("ELPD-LOO: close ranks first")
    assert {"key": "model.transforms", "values": {"biased": "fixed", "close": "learned"}} in res["differences"]
    table = ranking_table(res)
    assert table["run"].tolist() == ["close", "biased"] and table["LOO rank"].tolist() == ["1", "2"]


@pytest.mark.parametrize(("diff", "dse", "word"), [(2.0, 0.5, "tie"), (10.0, 6.0, "not a clear"), (10.0, 2.0, "clear")])
def testelpd_verdict_thresholds(diff, dse, word):
    from mmm_lib.compare import elpd_verdict

    assert word in elpd_verdict(diff, dse)


def test_holdout_ranks_by_brand_crps(outputs_root):
    make_run(outputs_root, "a", holdout=6, crps=900.0)
    make_run(outputs_root, "b", holdout=6, crps=600.0, bias=0.05)
    res = compare_runs(["a", "b"])
    ho = res["holdout"]
    assert ho["ranked"] and ho["periods"] == 6 and ho["start"] == str(PERIODS[-6].date())
    assert [r["run_id"] for r in ho["ranking"]] == ["b", "a"] and ho["ranking"][0]["rank"] == 1
    assert res["loo"]["groups"][0]["lead"]["best"] == "a"
    assert any("criteria disagree" in h for h in res["headline"])
    assert res["loo"]["groups"][0]["ranking"][0]["n_obs"] == 3 * (N_EST - 6)


def test_different_data_is_refused_naming_the_period(outputs_root):
    make_run(outputs_root, "a")
    other = _sales()
    other.loc[(other["entity_id"] == "store_b") & (other["period_start"] == PERIODS[10]), "sales"] += 500.0
    make_run(outputs_root, "b", sales=other)
    with pytest.raises(CompareRefused, match=r"the data differ: the brand total of 'sales' differs in 1 of 30 periods "
                                             rf"\(first at {PERIODS[10].date()}"):  # fmt: skip
        compare_runs(["a", "b"])


def test_different_window_target_or_holdout_is_refused(outputs_root):
    make_run(outputs_root, "a")
    make_run(outputs_root, "shorter", n_est=24)
    make_run(outputs_root, "held", holdout=4, crps=1.0)
    make_run(outputs_root, "revenue", target="revenue")
    with pytest.raises(CompareRefused, match=r"estimation window differs: .*\(30 weeks\) in 'a'.*\(24 weeks\) in 'shorter'"):
        compare_runs(["a", "shorter"])
    with pytest.raises(CompareRefused, match=r"holdout differs: no holdout in 'a', the last 4 weeks held out"):
        compare_runs(["a", "held"])
    with pytest.raises(CompareRefused, match=r"target differs: 'sales' in 'a', 'revenue' in 'revenue'"):
        compare_runs(["a", "revenue"])


@pytest.mark.parametrize("brand_entity_dim", [False, True])
def test_brand_vs_entity_is_not_ranked_by_loo_but_by_holdout(outputs_root, brand_entity_dim):
    make_run(outputs_root, "brand", level="brand", transforms="fixed", holdout=6, crps=700.0, roi=(1.5, 0.5),
             brand_entity_dim=brand_entity_dim)
    make_run(outputs_root, "entity", level="entity", holdout=6, crps=650.0)
    res = compare_runs(["brand", "entity"])  # same data: the brand total of the panel is the brand series
    loo = res["loo"]
    assert not loo["ranked"] and len(loo["groups"]) == 2
    assert "different observations" in loo["reason"] and "30 weeks" not in loo["reason"]  # fitted: 24 weeks
    assert "'brand': 24 weeks of the brand total" in loo["reason"] and "3 entities × 24 weeks" in loo["reason"]
    assert all(g["lead"] is None for g in loo["groups"])
    assert res["holdout"]["ranked"] and res["holdout"]["ranking"][0]["run_id"] == "entity"
    assert res["headline"][0].startswith("ELPD-LOO: not ranked")
    assert {(r["run_id"], r["channel"]) for r in res["roi"]} == {
        (r, c) for r in ("brand", "entity") for c in ("act_tv", "act_radio")}
    assert ranking_table(res)["LOO rank"].tolist() == ["–", "–"]


def test_two_brand_level_runs_are_ranked_whatever_their_entity_dim(outputs_root):
    make_run(outputs_root, "baseline", level="brand", bias=0.08, transforms="fixed")
    make_run(outputs_root, "learned_brand", level="brand", brand_entity_dim=True)
    loo = compare_runs(["baseline", "learned_brand"])["loo"]
    assert loo["ranked"] and loo["groups"][0]["observations"] == "30 weeks of the brand total"
    assert loo["groups"][0]["lead"]["best"] == "learned_brand"


def test_run_without_log_likelihood_is_listed_not_ranked(outputs_root):
    make_run(outputs_root, "old", log_likelihood=False)
    make_run(outputs_root, "new")
    loo = compare_runs(["old", "new"])["loo"]
    assert not loo["ranked"] and loo["unavailable"][0]["run_id"] == "old"
    assert "rerun 04_fit" in loo["reason"]


def test_page_is_self_contained_and_escapes_names(outputs_root):
    evil = "<script>alert(1)</script>"
    make_run(outputs_root, "a", channels=(evil, "act_tv"), holdout=5, crps=10.0, passed=False)
    make_run(outputs_root, "b", channels=(evil, "act_tv"), holdout=5, crps=12.0, bias=0.05)
    res = compare_runs(["a", "b"], name="evil_test")
    paths = write_comparison(res)
    assert paths["index"] == outputs_root / "compare" / "evil_test" / "index.html"
    page = paths["index"].read_text()
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;beta&gt;" in page  # findings are escaped too
    assert "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert "FAILED" in page and "best LOO" in page and "best holdout" in page
    assert json.loads((paths["json"]).read_text())["roi"][0]["channel"] == evil


def test_refusals_of_bad_requests():
    with pytest.raises(CompareRefused, match="at least two runs"):
        compare_runs(["a"])
    with pytest.raises(CompareRefused, match="listed twice"):
        compare_runs(["a", "a"])
    with pytest.raises(CompareRefused, match="not found"):
        compare_runs(["nope", "neither"])


def test_cli_writes_page_and_json(outputs_root, capsys):
    make_run(outputs_root, "fixed", bias=0.08, transforms="fixed")
    make_run(outputs_root, "learned")
    assert main(["compare", "fixed", "learned"]) == 0
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert out["name"] == "fixed_vs_learned" and out["best_loo"] == "learned" and out["best_holdout"] is None
    folder = outputs_root / "compare" / "fixed_vs_learned"
    assert Path(out["index"]) == folder / "index.html" and (folder / "compare.json").is_file()
    saved = json.loads((folder / "compare.json").read_text())
    assert saved["loo"]["groups"][0]["lead"]["best"] == "learned" and saved["name"] == "fixed_vs_learned"
    assert "LOO rank" in cap.err and "learned" in cap.err and "page:" in cap.err


def test_cli_exit_codes(outputs_root, capsys):
    make_run(outputs_root, "a")
    make_run(outputs_root, "short", n_est=20)
    assert main(["compare", "a", "short"]) == 2
    assert "estimation window differs" in capsys.readouterr().err
    assert main(["compare", "a", "ghost"]) == 2
    assert "'ghost' not found" in capsys.readouterr().err
    assert main(["compare", "a", "short", "--name", "../escape"]) == 2
    assert main(["compare", "a"]) == 2
    (outputs_root / "runs" / "short" / "model_metadata.json").unlink()
    make_run(outputs_root, "b")
    (outputs_root / "runs" / "b" / "model_metadata.json").unlink()
    assert main(["compare", "a", "b"]) == 1
    assert "run 04_fit" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["compare"])
    assert e.value.code == 2

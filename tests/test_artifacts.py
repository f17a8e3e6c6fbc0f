"""Typed artifacts (mmm_lib.artifacts) and the stage read → compute → write pattern (mmm_lib.stages).

Real artifacts validate and round-trip unchanged (same keys, same order, same bytes as the unvalidated
writer); a corrupted one is refused on read with the file, the field and the stage to rerun; an invalid
write raises before anything touches the disk.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from mmm_lib import artifacts
from mmm_lib.artifacts import ARTIFACT_MODELS, PRODUCED_BY, ArtifactInvalid
from mmm_lib.canonicalize import canonicalize
from mmm_lib.features import build_features
from mmm_lib.raw_io import load_raw
from mmm_lib.spec import load_spec
from mmm_lib.stages import STAGE_IO, read_inputs, write_outputs
from mmm_lib.status import ALL_STAGES, STAGES
from mmm_lib.storage import Run, to_plain, open_run, repo_root

REPO = repo_root()
FAST = REPO / "params" / "fast.yaml"
NB_DIR = REPO / "notebooks"


def _old_bytes(obj) -> str:
    """What ``storage.write_json`` wrote before artifacts were validated."""
    return json.dumps(to_plain(obj), indent=2, allow_nan=False) + "\n"


def _same_order(a, b) -> bool:
    """Equal, with every dict's keys in the same order."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same_order(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_order(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


def _model_metadata(features, meta, scaler, spec) -> dict:
    """``model_metadata.json`` as 04_fit builds it, without sampling (timings as the sampler records them)."""
    import xarray as xr

    from mmm_lib.model import from_artifacts
    from mmm_lib.model_pymc import model_metadata

    mmm = from_artifacts(features, meta, scaler, spec.model)
    post = xr.Dataset(attrs={"mmm_sampler": spec.nuts_sampler, "mmm_cores": 2, "mmm_compile_time_s": 1.5,
                             "mmm_sampling_time_s": 2.25, "mmm_wall_time_s": 4.0, "inference_library": "pymc",
                             "inference_library_version": "x"})  # fmt: skip
    return model_metadata(mmm, spec, xr.DataTree.from_dict({"posterior": post}))


def _stage_outputs(spec_path: Path, overrides: list[str] | None = None) -> dict[str, dict]:
    """The typed JSON artifacts of 02–04 for a spec, computed as the stages compute them (no sampling)."""
    spec = load_spec(spec_path, overrides)
    canonical, column_info = canonicalize(load_raw(spec.data_path, spec), spec)
    features, meta, scaler = build_features(canonical, column_info, spec)
    return {
        "canonical": canonical, "features": features, "column_info.json": column_info,
        "feature_metadata.json": meta, "feature_scaler.json": scaler,
        "model_metadata.json": _model_metadata(features, meta, scaler, spec),
    }  # fmt: skip


@pytest.fixture(scope="module")
def produced() -> dict[str, dict]:
    return _stage_outputs(FAST)


@pytest.fixture
def run(produced, outputs_root) -> Run:
    """A run folder holding the fast spec's 02–04 artifacts, written through write_outputs."""
    r = open_run(FAST, "typed", create=True)
    write_outputs(r, "02_canonicalize", {"canonical_data.parquet": produced["canonical"],
                                         "column_info.json": produced["column_info.json"]})
    write_outputs(r, "03_features", {"features.parquet": produced["features"],
                                     "feature_metadata.json": produced["feature_metadata.json"],
                                     "feature_scaler.json": produced["feature_scaler.json"]})
    write_outputs(r, "04_fit", {"model_metadata.json": produced["model_metadata.json"]})
    return r


def _hand_edit(run: Run, name: str, edit) -> None:
    data = json.loads(run.path(name).read_text())
    edit(data)
    run.path(name).write_text(json.dumps(data, indent=2))  # bypasses validation, as a text editor would


# ------------------------------------------------------------------------------------ the registry


def test_registry_covers_the_cross_stage_json_artifacts_and_their_producers():
    assert set(ARTIFACT_MODELS) == {"column_info.json", "feature_metadata.json", "feature_scaler.json", "model_metadata.json"}
    assert {n: PRODUCED_BY[n] for n in ARTIFACT_MODELS} == {
        "column_info.json": "02_canonicalize", "feature_metadata.json": "03_features",
        "feature_scaler.json": "03_features", "model_metadata.json": "04_fit",
    }  # fmt: skip
    from mmm_lib import storage

    assert storage.PRODUCED_BY is PRODUCED_BY  # one table, not a copy
    for model in ARTIFACT_MODELS.values():
        assert model.model_config.get("extra") == "forbid"


# ------------------------------------------------------------------------------------ real artifacts


@pytest.mark.parametrize(
    "overrides",
    [None, ["model.transforms=fixed", "model.level=brand"], ["model.transforms=fixed", "model.level=entity"],
     ["model.level=brand", "feature_config.saturation.type=logistic"]],
    ids=["learned_entity", "baseline", "fixed_entity", "learned_brand_logistic"],
)
def test_every_model_configuration_writes_valid_artifacts_unchanged(overrides, outputs_root):
    out = _stage_outputs(FAST, overrides)
    run = open_run(FAST, "cfg", create=True)
    for name in ARTIFACT_MODELS:
        artifacts.parse_artifact(name, to_plain(out[name]))
        run.write_json(name, out[name])
        assert run.path(name).read_text() == _old_bytes(out[name]), f"{name}: validation changed the bytes written"
        assert _same_order(run.read_json(name), json.loads(_old_bytes(out[name])))


@pytest.mark.slow
def test_a_real_fast_run_writes_valid_artifacts_byte_for_byte(outputs_root):
    """The fast spec through every stage in process (a real NUTS fit), written with write_outputs."""
    from mmm_lib.pipeline import run_in_process

    spec = load_spec(FAST, ["draws=50", "tune=50"])
    res = run_in_process(load_raw(spec.data_path, spec), spec)
    run = open_run(FAST, "real", create=True)
    write_outputs(run, "02_canonicalize", {"canonical_data.parquet": res.canonical, "column_info.json": res.column_info})
    write_outputs(run, "03_features", {"features.parquet": res.features, "feature_metadata.json": res.feature_metadata,
                                       "feature_scaler.json": res.feature_scaler})
    from mmm_lib.model_pymc import fit_outputs

    write_outputs(run, "04_fit", fit_outputs(res.fit))
    from mmm_lib.contributions import contribution_outputs

    write_outputs(run, "06_contribute", contribution_outputs(res.contributions))
    produced = {"column_info.json": res.column_info, "feature_metadata.json": res.feature_metadata,
                "feature_scaler.json": res.feature_scaler, "model_metadata.json": res.fit["metadata"]}
    for name, obj in produced.items():
        assert run.path(name).read_text() == _old_bytes(obj), f"{name} differs from the unvalidated writer's bytes"
        assert _same_order(run.read_json(name), json.loads(_old_bytes(obj)))
        assert run.read_model(name) == artifacts.parse_artifact(name, json.loads(_old_bytes(obj)))
    md = run.read_model("model_metadata.json")
    assert md.sampler is not None and md.sampler.draws == 50 and md.n_obs > 0


def test_older_runs_validate_and_get_defaults(run):
    # an early model_metadata.json: fewer keys, in another order
    old = {"model": "seed", "target_transform": "log1p", "target_center": 6.9, "likelihood": "StudentT",
           "channels": ["act_tv"], "channel_features": ["media__act_tv"], "controls": [], "control_features": [],
           "priors": {"beta": "HalfNormal(sigma_beta)"}, "sampler": {"nuts_sampler": "pymc", "draws": 10, "tune": 10,
           "chains": 2, "target_accept": 0.9, "random_seed": 1}, "n_obs": 104, "estimation_start": "2023-01-02",
           "estimation_end": "2024-12-23", "sampling_time_s": 1.0, "versions": {"pymc": "5"}}  # fmt: skip
    run.path("model_metadata.json").write_text(json.dumps(old))
    assert _same_order(run.read_json("model_metadata.json"), old)  # nothing added, lost or reordered
    md = run.read_model("model_metadata.json")
    assert (md.transforms, md.level, md.target_centers, md.activity_scale) == ("fixed", "brand", None, None)
    # column_info.json before entity-level models and column mapping
    _hand_edit(run, "column_info.json", lambda d: [d.pop(k) for k in ("level", "entities", "notes", "source_columns")])
    ci = run.read_model("column_info.json")
    assert (ci.level, ci.entities, ci.notes, ci.source_columns) == ("brand", ["brand"], [], None)
    # feature_metadata.json before activity columns and the logistic saturation
    _hand_edit(run, "feature_metadata.json",
               lambda d: [d["saturation"].pop("lam"), *(c.pop("activity") for c in d["channels"])])
    fm = run.read_model("feature_metadata.json")
    assert fm.saturation.lam is None and all(c.activity is None for c in fm.channels)


# ------------------------------------------------------------------------------------ corrupted on disk


def _set(path: str, value):
    def edit(d):
        *head, last = path.split(".")
        for p in head:
            d = d[int(p)] if p.isdigit() else d[p]
        d[last] = value

    return edit


CORRUPTIONS = [
    # name, edit, field named in the message, stage to rerun
    ("feature_metadata.json", _set("channels.0.decay", "x"), "channels.0.decay", "03_features"),
    ("feature_metadata.json", _set("controls.0.kind", "weather"), "controls.0.kind", "03_features"),
    ("column_info.json", lambda d: d.pop("drivers"), "drivers", "02_canonicalize"),
    ("column_info.json", _set("windows.end", "2024-13-45"), "windows.end", "02_canonicalize"),
    ("feature_scaler.json", _set("media.act_tv.adstock_max", -1.0), "media.act_tv.adstock_max", "03_features"),
    ("feature_scaler.json", _set("colour", "blue"), "colour", "03_features"),
    ("model_metadata.json", _set("sampler.surprise", 1), "sampler.surprise", "04_fit"),
    ("model_metadata.json", _set("channels", "act_tv"), "channels", "04_fit"),
]


@pytest.mark.parametrize("name,edit,field,stage", CORRUPTIONS, ids=[f"{c[0]}:{c[2]}" for c in CORRUPTIONS])
def test_a_corrupted_artifact_is_refused_on_read_naming_file_field_and_stage(run, name, edit, field, stage):
    _hand_edit(run, name, edit)
    with pytest.raises(ArtifactInvalid) as info:
        run.read_json(name)
    msg = str(info.value)
    assert name in msg and f"{field}:" in msg and f"rerun {stage}" in msg, msg
    assert info.value.stage == stage and info.value.name == name
    assert isinstance(info.value, ValueError)
    # a stage that reads it fails the same way before computing anything
    reader = next(s for s, (ins, _) in STAGE_IO.items() if name in ins)
    with pytest.raises(ArtifactInvalid, match=f"rerun {stage}"):
        read_inputs(run, reader)


def test_missing_field_and_unknown_field_messages(run):
    _hand_edit(run, "feature_metadata.json", lambda d: (d.pop("trend"), d.update(extra_key=1)))
    with pytest.raises(ArtifactInvalid) as info:
        run.read_json("feature_metadata.json")
    assert "trend: Field required" in str(info.value)
    assert "extra_key: Extra inputs are not permitted" in str(info.value)


def test_unreadable_json_names_the_stage_to_rerun(run):
    run.path("feature_scaler.json").write_text('{"media": ')
    with pytest.raises(ArtifactInvalid, match=r"feature_scaler\.json.*not readable JSON.*rerun 03_features"):
        run.read_json("feature_scaler.json")


def test_unregistered_json_artifacts_pass_through(run):
    run.write_json("diagnostics.json", {"passed": True, "anything": [1, 2]})
    assert run.read_json("diagnostics.json") == {"passed": True, "anything": [1, 2]}


# ------------------------------------------------------------------------------------ invalid writes


def test_write_json_refuses_invalid_data_and_leaves_no_partial_file(run, produced):
    before = run.path("feature_metadata.json").read_bytes()
    bad = copy.deepcopy(produced["feature_metadata.json"])
    bad["channels"][0]["decay"] = "x"
    with pytest.raises(ArtifactInvalid) as info:
        run.write_json("feature_metadata.json", bad)
    msg = str(info.value)
    assert msg.startswith("feature_metadata.json: channels.0.decay: Input should be a valid number")
    assert "(got 'x')" in msg and "the 03_features stage wrote an invalid artifact" in msg
    assert run.path("feature_metadata.json").read_bytes() == before  # previous artifact intact
    assert not [p.name for p in run.dir.iterdir() if p.name.endswith(".tmp")]

    with pytest.raises(ValueError, match="model_metadata.json: channels: Field required"):
        run.write_json("model_metadata.json", {"model": "x", "channel_features": [], "controls": [], "control_features": []})
    run.path("model_metadata.json").unlink()
    with pytest.raises(ArtifactInvalid):
        run.write_json("model_metadata.json", {"model": "x"})
    assert not run.path("model_metadata.json").exists()


def test_write_outputs_validates_everything_before_writing_anything(outputs_root, produced):
    r = open_run(FAST, "atomic", create=True)
    bad = copy.deepcopy(produced["feature_scaler.json"])
    bad["trend"]["std"] = "wide"
    with pytest.raises(ArtifactInvalid, match=r"feature_scaler\.json: trend\.std"):
        write_outputs(r, "03_features", {"features.parquet": produced["features"],
                                         "feature_metadata.json": produced["feature_metadata.json"],
                                         "feature_scaler.json": bad})
    assert sorted(p.name for p in r.dir.iterdir()) == ["run_spec.json"]


# ------------------------------------------------------------------------------------ stages


def test_stage_io_is_one_table_consistent_with_the_producers():
    assert list(STAGE_IO) == ALL_STAGES
    written = [n for _, outs in STAGE_IO.values() for n in outs]
    assert len(written) == len(set(written))
    assert set(written) == set(PRODUCED_BY) - {"run_spec.json"}
    for i, stage in enumerate(ALL_STAGES):
        ins, outs = STAGE_IO[stage]
        assert all(PRODUCED_BY[n] == stage for n in outs)
        for n in ins:  # every input comes from an earlier stage
            assert ALL_STAGES.index(PRODUCED_BY[n]) < i, (stage, n)


def test_read_inputs_and_write_outputs_round_trip(run, produced):
    inputs = read_inputs(run, "03_features")
    assert list(inputs) == ["canonical_data.parquet", "column_info.json"]
    assert _same_order(inputs["column_info.json"], json.loads(_old_bytes(produced["column_info.json"])))
    paths = write_outputs(run, "02_canonicalize", {"column_info.json": inputs["column_info.json"]})
    assert paths == [run.path("column_info.json")]
    with pytest.raises(ValueError, match=r"03_features does not write \['fit_metrics.json'\]"):
        write_outputs(run, "03_features", {"fit_metrics.json": {}})
    with pytest.raises(ValueError, match="unknown stage"):
        read_inputs(run, "07_report")


def test_missing_input_names_the_stage_to_run_first(outputs_root):
    r = open_run(FAST, "empty", create=True)
    from mmm_lib.storage import ArtifactMissing

    with pytest.raises(ArtifactMissing, match="features.parquet.*run 03_features"):
        read_inputs(r, "04_fit")


@pytest.mark.parametrize("stage", STAGES)
def test_notebooks_use_the_stage_pattern(stage):
    nb = json.loads((NB_DIR / f"{stage}.ipynb").read_text())
    src = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    ins, outs = STAGE_IO[stage]
    if ins:
        assert f'inputs = read_inputs(run, "{stage}")' in src
    assert f'write_outputs(run, "{stage}", {{' in src
    for name in outs:
        assert f'"{name}":' in src, f"{stage} does not write {name} through write_outputs"
    for direct in ("run.read_json(", "run.write_json(", "run.read_parquet(", "run.write_parquet(",
                   "run.read_posterior(", "run.write_posterior("):
        assert direct not in src, f"{stage}: {direct} bypasses read_inputs/write_outputs"

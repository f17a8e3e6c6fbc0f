"""One read → compute → write pattern for the six stages: which artifacts each reads and writes.

Every notebook opens its run, reads what it needs with ``inputs = read_inputs(run, "03_features")``
(a dict keyed by artifact name), computes, and saves with
``write_outputs(run, "03_features", {"features.parquet": ..., ...})``. :data:`STAGE_IO` is the single
table of what each stage reads and writes: the outputs come from
:data:`mmm_lib.artifacts.PRODUCED_BY` (which stage writes which artifact), the inputs are listed here.

Everything goes through :class:`~mmm_lib.storage.Run`: atomic writes, "run stage N first" when an
input is missing, and validation of the typed JSON artifacts (:mod:`mmm_lib.artifacts`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .artifacts import PRODUCED_BY, check_for_write
from .status import ALL_STAGES
from .storage import to_plain

# Artifacts a stage writes outside write_outputs: run_spec.json by open_run(create=True) (and the
# runner) before 01_validate runs; source.<ext> (name depends on the file) by raw_io.keep_source.
_WRITTEN_ELSEWHERE = {"run_spec.json"}

# A fitted run: what the model object and its posterior are rebuilt from (06 and 07 read exactly these).
_FITTED_RUN = (
    "canonical_data.parquet",
    "column_info.json",
    "features.parquet",
    "feature_metadata.json",
    "feature_scaler.json",
    "model_metadata.json",
    "posterior.nc",
)

# What each stage reads (in this order). 06_contribute also reads diagnostics.json, if present, for its
# banner only (contributions.diagnostics_banner): it is not an input.
_INPUTS: dict[str, tuple[str, ...]] = {
    "01_validate": (),  # the input file named by the spec: Run.data_source()
    "02_canonicalize": ("raw_data.parquet",),
    "03_features": ("canonical_data.parquet", "column_info.json"),
    "04_fit": ("features.parquet", "feature_metadata.json", "feature_scaler.json"),
    "05_diagnose": ("model_metadata.json", "posterior.nc"),
    "06_contribute": _FITTED_RUN,
    "07_optimize": _FITTED_RUN,  # 06's artifacts are not needed: every number is recomputed from the model
}

# stage -> (inputs, outputs)
STAGE_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    stage: (
        _INPUTS[stage],
        tuple(name for name, by in PRODUCED_BY.items() if by == stage and name not in _WRITTEN_ELSEWHERE),
    )
    for stage in ALL_STAGES
}


def _io(stage: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        return STAGE_IO[stage]
    except KeyError:
        raise ValueError(f"unknown stage {stage!r}; the stages are {list(STAGE_IO)}") from None


def inputs_of(stage: str) -> tuple[str, ...]:
    """The artifacts ``stage`` reads, in order."""
    return _io(stage)[0]


def outputs_of(stage: str) -> tuple[str, ...]:
    """The artifacts ``stage`` writes with :func:`write_outputs`, in order."""
    return _io(stage)[1]


def _read(run: Any, name: str) -> Any:
    if name.endswith(".json"):
        return run.read_json(name)
    if name.endswith(".parquet"):
        return run.read_parquet(name)
    if name == "posterior.nc":
        return run.read_posterior()
    raise ValueError(f"no reader for artifact {name!r}")


def _write(run: Any, name: str, value: Any) -> Path:
    if name.endswith(".json"):
        return run.write_json(name, value)
    if name.endswith(".parquet"):
        return run.write_parquet(name, value)
    if name == "posterior.nc":
        return run.write_posterior(value)
    raise ValueError(f"no writer for artifact {name!r}")


def read_inputs(run: Any, stage: str) -> dict[str, Any]:
    """Every artifact ``stage`` reads, keyed by artifact name (JSON as validated dicts, tables as DataFrames,
    ``posterior.nc`` as a DataTree).

    Raises
    ------
    storage.ArtifactMissing
        An input is not there; the message names the stage to run first.
    artifacts.ArtifactInvalid
        A JSON input does not match its model; the message names the field and the stage to rerun.
    """
    return {name: _read(run, name) for name in inputs_of(stage)}


def write_outputs(run: Any, stage: str, outputs: dict[str, Any]) -> list[Path]:
    """Write ``stage``'s artifacts from ``outputs`` (keyed by artifact name), atomically, in :data:`STAGE_IO` order.

    A subset is fine (01_validate writes ``raw_data.parquet`` before it validates). Every typed JSON
    artifact is validated before anything is written, so an invalid one leaves the run folder as it was.

    Returns
    -------
    list[Path]
        The written files.

    Raises
    ------
    ValueError
        A name the stage does not write (the message lists the ones it does).
    artifacts.ArtifactInvalid
        A JSON artifact that does not match its model.
    """
    names = outputs_of(stage)
    unknown = [n for n in outputs if n not in names]
    if unknown:
        raise ValueError(f"{stage} does not write {unknown}; its artifacts are {list(names)}")
    for name in names:
        if name in outputs and name.endswith(".json"):
            check_for_write(name, to_plain(outputs[name]))
    return [_write(run, name, outputs[name]) for name in names if name in outputs]


__all__ = ["STAGE_IO", "inputs_of", "outputs_of", "read_inputs", "write_outputs"]

"""Datasets: add (keep the file byte-for-byte + parquet + validation), list, show, remove.

The dataset operations (add, list, show, columns, remove) as library calls; ``mmm datasets …`` prints their results.

A dataset that runs use is not replaced or removed without ``force_used``/``force``: the message names the runs.
Each run keeps its own copy of the file it was fitted on (``source.<ext>``); before a dataset goes, runs made
before runs kept one get a copy, so no run loses its input. One unreadable ``metadata.json`` is listed as such
(naming the file) instead of breaking ``datasets list``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from .status import now_iso
from .storage import (
    dataset_dir,
    outputs_root,
    read_json,
    read_parquet,
    read_records,
    validate_id,
    write_bytes,
    write_json,
    write_parquet,
)


def add_dataset(path: str | Path, dataset_id: str, *, force: bool = False, spec_path: str | Path | None = None,
                force_used: bool = False) -> dict[str, Any]:
    """Store an uploaded file as dataset ``dataset_id`` and validate its structure.

    Keeps ``source.<ext>`` byte-for-byte with its SHA-256 in ``metadata.json``, writes
    ``raw_data.parquet`` and ``validation_summary.json``. Returns the metadata.

    Parameters
    ----------
    spec_path
        A run spec whose ``columns`` mapping, drivers and controls describe a file that is not in
        the standard naming (a Meridian or Robyn export); without it roles come from the standard
        column names and prefixes.
    force
        Replace an existing dataset with this id.
    force_used
        Replace it even when runs use it (``PermissionError`` naming them otherwise): their specs then name
        different data; each keeps its own copy of the file it was fitted on.
    """
    from .input_file import read_input
    from .raw_io import load_raw, parquet_safe
    from .spec import load_spec
    from .validation import validate

    validate_id(dataset_id, "dataset_id")
    src = Path(path)
    if not src.is_file():
        raise FileNotFoundError(f"no such file: {src}")
    folder = dataset_dir(dataset_id)
    if folder.exists() and not force:
        raise FileExistsError(f"dataset {dataset_id!r} already exists; use --force to replace it or pick another --id")
    users = runs_using(dataset_id) if folder.exists() else []
    if users and not force_used:
        raise PermissionError(
            f"dataset {dataset_id!r} is used by runs {users}: replacing it would leave their specs naming data they "
            f"were not fitted on; add the new file under another --id, delete those runs first, or pass "
            f"--force --even-if-used to replace it anyway (each run keeps its own copy of its input)"
        )
    inp = read_input(src)  # opened once, size-limited; the copy and the table are the same bytes
    data = inp.data
    # The spec describes the file's columns; its own data_path/dataset_id are not used here.
    spec = load_spec(spec_path) if spec_path is not None else None
    df = load_raw(inp, spec)
    report = validate(df, spec)
    if folder.exists():
        _keep_inputs_of(dataset_id, users)
        shutil.rmtree(folder)
    ext = src.suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,10}", ext):
        ext = ".dat"  # the copy's name must stay a plain file name whatever the user's was
    write_bytes(folder / f"source{ext}", data)
    write_parquet(folder / "raw_data.parquet", parquet_safe(df))
    summary = report.summary()
    write_json(folder / "validation_summary.json", summary)
    meta = {
        "dataset_id": dataset_id,
        "source_name": src.name,
        "source_file": f"source{ext}",
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "n_rows": int(len(df)),
        "columns": [str(c) for c in df.columns],
        "created_at": now_iso(),
        "validated_with_spec": None if spec_path is None else str(spec_path),
        "validation_ok": bool(summary.get("ok")),
        "counts": summary.get("counts"),
    }
    write_json(folder / "metadata.json", meta)
    return meta


_LIST_KEYS = ("dataset_id", "source_name", "n_rows", "created_at", "validation_ok")


def list_datasets() -> list[dict[str, Any]]:
    """One row per dataset; a dataset whose ``metadata.json`` cannot be read is listed with ``unreadable``
    naming the file and why, not left to break the list."""
    root = outputs_root() / "datasets"
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        meta = d / "metadata.json"
        if meta.is_file():
            try:
                m = read_json(meta)
                if not isinstance(m, dict):
                    raise ValueError(f"a JSON {type(m).__name__}, not an object")
            except (OSError, ValueError) as e:
                out.append({**dict.fromkeys(_LIST_KEYS), "dataset_id": d.name,
                            "unreadable": f"{meta}: {_why(e)}; add the file again with `mmm datasets add PATH "
                                          f"--id {d.name} --force`"})
                continue
            out.append({k: m.get(k) for k in _LIST_KEYS})
    return out


def _why(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"not valid JSON ({e.msg} at line {e.lineno})"
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(e)


def show_dataset(dataset_id: str) -> dict[str, Any]:
    folder = dataset_dir(dataset_id)
    if not (folder / "metadata.json").is_file():
        raise FileNotFoundError(f"dataset {dataset_id!r} not found; `mmm datasets list` shows what exists")
    meta = read_json(folder / "metadata.json")
    meta["validation"] = read_json(folder / "validation_summary.json")
    return meta


def raw_records(dataset_id: str, limit: int | None = None) -> list[dict[str, Any]]:
    show_dataset(dataset_id)
    return read_records(dataset_dir(dataset_id) / "raw_data.parquet", limit)


def column_types(dataset_id: str) -> dict[str, Any]:
    """Column → role (id, target, driver, spend, control, other) and dtype.

    Roles are the ones validation resolved when the dataset was added (the standard names, or the
    ``--spec`` mapping), so this never guesses differently from what was validated.
    """
    summary = show_dataset(dataset_id)["validation"]
    roles, keys = summary.get("roles", {}), summary.get("columns", {})
    role = {c: "id" for c in (keys.get("entity", "entity_id"), keys.get("period", "period_start")) if c}
    role.update({c: "driver" for c in roles.get("drivers", [])})
    role.update({c: "spend" for c in (roles.get("spend") or {}).values() if c})
    role.update({c: "control" for c in roles.get("controls", [])})
    for c in (keys.get("target", roles.get("target")), keys.get("target_multiplier")):
        if c:
            role[c] = "target"
    df = read_parquet(dataset_dir(dataset_id) / "raw_data.parquet")
    return {"columns": [{"name": str(c), "role": role.get(str(c), "other"), "dtype": str(df[c].dtype)}
                        for c in df.columns]}


def runs_using(dataset_id: str) -> list[str]:
    """Runs whose spec names ``dataset_id``; a run whose ``run_spec.json`` cannot be read counts as one (it may)."""
    root = outputs_root() / "runs"
    users = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            spec = d / "run_spec.json"
            if not spec.is_file():
                continue
            try:
                uses = read_json(spec).get("dataset_id") == dataset_id
            except (OSError, ValueError, AttributeError):
                uses = True
            if uses:
                users.append(d.name)
    return users


def _keep_inputs_of(dataset_id: str, users: list[str]) -> None:
    """Before a dataset goes: every run on it that keeps no copy of its input gets one (runs made before runs kept
    one), when the dataset's file is the one the run validated."""
    from .storage import keep_dataset_source, run_dir

    for run_id in users:
        folder = run_dir(run_id)
        try:
            src = read_json(folder / "validation_summary.json").get("source") or {}
        except (OSError, ValueError, AttributeError):
            continue
        name = src.get("file")
        if src.get("dataset_id") == dataset_id and name and not (folder / str(name)).is_file():
            try:
                keep_dataset_source(folder, dataset_id, src.get("sha256"))
            except (OSError, ValueError):
                pass  # not the file this run validated: nothing of it to keep


def remove_dataset(dataset_id: str, *, force: bool = False) -> dict[str, Any]:
    """Delete a dataset; refused while runs use it unless ``force`` (the runs keep their own copies of their input)."""
    folder = dataset_dir(dataset_id)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset {dataset_id!r} not found")
    users = runs_using(dataset_id)
    if users and not force:
        raise PermissionError(
            f"dataset {dataset_id!r} is used by runs {users}; delete those runs first or pass --force "
            f"(each run keeps its own copy of its input)"
        )
    _keep_inputs_of(dataset_id, users)
    shutil.rmtree(folder)
    return {"deleted": dataset_id, "runs_using_it": users}

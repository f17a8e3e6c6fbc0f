"""Datasets: add (keep the file byte-for-byte + parquet + validation), list, show, remove.

The dataset operations (add, list, show, columns, remove) as library calls; ``mmm datasets …`` prints their results.
"""

from __future__ import annotations

import hashlib
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


def add_dataset(path: str | Path, dataset_id: str, *, force: bool = False, spec_path: str | Path | None = None
                ) -> dict[str, Any]:
    """Store an uploaded file as dataset ``dataset_id`` and validate its structure.

    Keeps ``source.<ext>`` byte-for-byte with its SHA-256 in ``metadata.json``, writes
    ``raw_data.parquet`` and ``validation_summary.json``. Returns the metadata.

    Parameters
    ----------
    spec_path
        A run spec whose ``columns`` mapping, drivers and controls describe a file that is not in
        the standard naming (a Meridian or Robyn export); without it roles come from the standard
        column names and prefixes.
    """
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
    data = src.read_bytes()
    # The spec describes the file's columns; its own data_path/dataset_id are not used here.
    spec = load_spec(spec_path) if spec_path is not None else None
    df = load_raw(src, spec)
    report = validate(df, spec)
    if folder.exists():
        shutil.rmtree(folder)
    ext = src.suffix.lower() or ".dat"
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


def list_datasets() -> list[dict[str, Any]]:
    root = outputs_root() / "datasets"
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if (d / "metadata.json").is_file():
            m = read_json(d / "metadata.json")
            out.append({k: m.get(k) for k in ("dataset_id", "source_name", "n_rows", "created_at", "validation_ok")})
    return out


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
    root = outputs_root() / "runs"
    users = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            spec = d / "run_spec.json"
            if spec.is_file() and read_json(spec).get("dataset_id") == dataset_id:
                users.append(d.name)
    return users


def remove_dataset(dataset_id: str, *, force: bool = False) -> dict[str, Any]:
    """Delete a dataset; refused while runs use it unless ``force``."""
    folder = dataset_dir(dataset_id)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset {dataset_id!r} not found")
    users = runs_using(dataset_id)
    if users and not force:
        raise PermissionError(
            f"dataset {dataset_id!r} is used by runs {users}; delete those runs first or pass --force"
        )
    shutil.rmtree(folder)
    return {"deleted": dataset_id, "runs_using_it": users}

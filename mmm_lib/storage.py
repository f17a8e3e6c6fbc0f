"""Paths and atomic artifact I/O: the one module that knows where things live.

Layout (root = ``$MMM_OUTPUTS`` or ``<repo>/outputs``)::

    datasets/<dataset_id>/raw_data.parquet, validation_summary.json, metadata.json, source.<ext>
    runs/<run_id>/run_spec.json, status.json, <stage artifacts>, notebooks/, reports/, index.html

Every write goes to a temp file in the same folder (``.<name>.<random>.tmp``), flushed to disk and renamed
into place, so a reader never sees a half-written artifact and a full disk leaves the previous version
intact. A process killed mid-write can leave such a temporary behind: :func:`remove_temporaries` clears
them (``mmm run --resume`` does). :func:`describe_os_error` turns a failed write (disk full, read-only
folder) into one line naming the folder and the fix.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import json
import os
import re
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from filelock import FileLock, Timeout

from . import artifacts
from .artifacts import ArtifactInvalid
from .spec import RunSpec, load_spec, spec_to_dict

if TYPE_CHECKING:
    import pandas as pd

# mkstemp creates 0600 files; artifacts should get the usual permissions (0666 minus the umask).
_UMASK = os.umask(0)
os.umask(_UMASK)
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ArtifactMissing(FileNotFoundError):
    """An upstream artifact a stage needs is not there (run the earlier stage first)."""


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


_OUTPUTS: contextvars.ContextVar[Path | None] = contextvars.ContextVar("mmm_outputs_root", default=None)


def outputs_root() -> Path:
    """Root of datasets and runs: the folder :func:`using_outputs` set in this context (a thread, a task), else
    ``$MMM_OUTPUTS`` if set, else ``<repo>/outputs``."""
    root = _OUTPUTS.get()
    if root is not None:
        return root
    env = os.environ.get("MMM_OUTPUTS")
    return Path(env).expanduser().resolve() if env else repo_root() / "outputs"


@contextlib.contextmanager
def using_outputs(root: str | Path | None) -> Iterator[Path]:
    """Within the block, :func:`outputs_root` is ``root`` in this thread or task only (``None``: unchanged).

    What a library call that is given its outputs root uses (``run_pipeline(..., outputs=...)``, a batch task on
    a worker running several), so nothing is read from or written to the process environment."""
    if root is None:
        yield outputs_root()
        return
    token = _OUTPUTS.set(Path(root).expanduser().resolve())
    try:
        yield _OUTPUTS.get()  # type: ignore[misc]
    finally:
        _OUTPUTS.reset(token)


def validate_id(value: str, kind: str = "run_id") -> str:
    """Refuse ids that could escape the outputs folder or break a file name.

    Allowed: letters, digits, ``.``, ``_``, ``-``; must start with a letter or digit; ≤ 128 chars.
    """
    if not isinstance(value, str) or not _ID_RE.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{kind} {value!r} is not allowed: use letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit, no '..', no path separators), e.g. 'brand_q3'"
        )
    return value


LOCK_FILE = ".lock"  # in a run folder while a run writes it (mmm_lib.runner holds it)


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, as psutil reports it), or ``None`` when there is no
    such process. With the pid it names one process for good: a pid reused by another program has another start time."""
    try:
        import psutil  # a dependency of ipykernel, so present wherever a stage can run
    except ImportError:  # pragma: no cover - fall back to "is there a process with this pid"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0.0
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:  # pragma: no cover - access denied: it exists
        return 0.0


def owner_record() -> dict[str, Any]:
    """This process as the owner of a run: pid, start time and host (``status.json`` ``owner``)."""
    pid = os.getpid()
    return {"pid": pid, "started": process_start_time(pid), "host": socket.gethostname()}


def owner_alive(owner: dict[str, Any] | None) -> bool | None:
    """Whether the process an ``owner`` record names still runs: ``None`` when that cannot be told (no record,
    or another host), else ``False`` when the pid is gone or now belongs to a process started at another time."""
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return None
    if owner.get("host") not in (None, socket.gethostname()):
        return None
    started = process_start_time(owner["pid"])
    if started is None:
        return False
    recorded = owner.get("started")
    if isinstance(recorded, (int, float)) and recorded and started and abs(started - recorded) > 1.0:
        return False  # the pid was reused by a later process
    return True


def lock_held(folder: Path) -> bool:
    """Whether a live process holds ``folder``'s run lock.

    The file alone says nothing: a run killed with SIGKILL leaves it behind, and the OS has already
    dropped its lock. So the lock is tried (without waiting) rather than the file looked for. Where it cannot
    be tried (a read-only folder), the owner recorded in ``status.json`` (pid and start time) decides.
    """
    path = Path(folder) / LOCK_FILE
    if not path.exists():
        return False
    probe = FileLock(path, timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return True
    except OSError:
        try:
            owner = read_json(Path(folder) / "status.json").get("owner")
        except (OSError, ValueError, AttributeError):
            return False
        return bool(owner_alive(owner))
    probe.release()
    return False


def run_dir(run_id: str) -> Path:
    return outputs_root() / "runs" / validate_id(run_id, "run_id")


def dataset_dir(dataset_id: str) -> Path:
    return outputs_root() / "datasets" / validate_id(dataset_id, "dataset_id")


TEMP_GLOB = ".*.tmp"  # what _atomic's temporaries look like


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)
        # On disk before the rename: a crash or power loss then leaves the old file or the new one, never an empty one.
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the atomic-write temporaries a killed process left in ``folder`` and its subfolders.

    Only call it while holding the folder's run lock: then nobody else is writing there.
    """
    gone = []
    for p in sorted(Path(folder).rglob(TEMP_GLOB)):
        if p.is_file() and not p.is_symlink():
            try:
                p.unlink()
                gone.append(p)
            except OSError:
                pass
    return gone


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in blocks (a posterior can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def describe_os_error(exc: OSError, where: Path | str | None = None) -> str:
    """One line for a failed write: what happened, where, and what to do (disk full, read-only folder, …)."""
    place = exc.filename or where or outputs_root()
    folder = Path(place) if Path(place).is_dir() else Path(place).parent
    if exc.errno in _SPACE:
        return (f"no space left on the disk holding {folder} ({exc.strerror}): free some space "
                f"(`df -h {folder}` shows it) or set MMM_OUTPUTS to a folder on a larger disk")
    if exc.errno in _READ_ONLY:
        return (f"cannot write to {place} ({exc.strerror}): make {folder} writable, or set MMM_OUTPUTS to a "
                "writable folder")
    return f"could not write {place}: {exc.strerror or exc}"


def to_plain(o: Any) -> Any:
    """Numpy/pandas values to plain JSON types; NaN/inf become null (JSON has neither)."""
    if isinstance(o, dict):
        return {str(k): to_plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [to_plain(v) for v in o]
    if isinstance(o, np.ndarray):
        return to_plain(o.tolist())
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, (int, np.integer)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return float(o) if np.isfinite(o) else None
    pd = sys.modules.get("pandas")  # not imported here: a process without pandas holds no Timestamp
    if pd is not None and isinstance(o, pd.Timestamp):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    return o


def write_json(path: Path, obj: Any) -> Path:
    text = json.dumps(to_plain(obj), indent=2, allow_nan=False)
    return _atomic(path, lambda p: p.write_text(text + "\n", encoding="utf-8"))


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ArtifactMissing(f"missing artifact: {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def write_parquet(path: Path, df: pd.DataFrame) -> Path:
    return _atomic(path, lambda p: df.to_parquet(p, index=False))


def read_parquet(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ArtifactMissing(f"missing artifact: {path}")
    import pandas as pd

    return pd.read_parquet(path)


def read_records(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """A parquet artifact as JSON-able records (dates in ISO format), what the CLI prints."""
    df = read_parquet(path)
    if limit is not None:
        df = df.head(limit)
    return json.loads(df.to_json(orient="records", date_format="iso"))


def write_bytes(path: Path, data: bytes) -> Path:
    return _atomic(path, lambda p: p.write_bytes(data))


def keep_dataset_source(folder: Path, dataset_id: str, expected_sha256: str | None = None) -> dict[str, Any]:
    """Copy dataset ``dataset_id``'s uploaded file (``source.<ext>``) into a run folder, byte for byte.

    A run on a dataset then keeps its own input like a run on a ``data_path`` does, so replacing or deleting the
    dataset later cannot take away what the run was fitted on. ``expected_sha256`` (what 01_validate recorded)
    must match: a dataset replaced while the run read it is refused (``ValueError``).

    Returns
    -------
    dict
        ``{"dataset_id", "file", "sha256", "bytes"}``.
    """
    from .input_file import read_input

    ds = dataset_dir(dataset_id)
    meta = read_json(ds / "metadata.json")
    name = str(meta.get("source_file") or "")
    if not re.fullmatch(r"source(\.[a-z0-9]{1,10}){1,2}", name):
        raise ValueError(f"dataset {dataset_id!r}: metadata.json names no kept file (source_file {name!r}); "
                         f"add the dataset again with `mmm datasets add PATH --id {dataset_id} --force`")
    data = read_input(ds / name, [Path(os.path.realpath(ds))]).data
    sha = hashlib.sha256(data).hexdigest()
    for want, what in ((expected_sha256, "this run validated"), (meta.get("sha256"), "its metadata.json records")):
        if want and sha != want:
            raise ValueError(f"dataset {dataset_id!r}: {name} (SHA-256 {sha[:12]}…) is not the file {what} "
                             f"({want[:12]}…): it was replaced or damaged; run this spec again with --restart")
    target = Path(folder) / name
    if not (target.is_file() and sha256_file(target) == sha):
        write_bytes(target, data)
    return {"dataset_id": dataset_id, "file": name, "sha256": sha, "bytes": len(data)}


def write_netcdf(path: Path, datatree: Any) -> Path:
    """Write an xarray DataTree (the posterior) atomically with the netCDF4 engine."""
    return _atomic(path, lambda p: datatree.to_netcdf(p, engine="netcdf4"))


def read_netcdf(path: Path) -> Any:
    """Load a DataTree eagerly and close the file (a lazily open file blocks overwriting)."""
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise ArtifactMissing(f"missing artifact: {path}")
    return xr.load_datatree(path, engine="netcdf4")


# Which stage writes which artifact ("run stage N first" messages): kept with the artifact models.
PRODUCED_BY = artifacts.PRODUCED_BY


@dataclass
class Run:
    """One run folder plus its spec: what every notebook opens first.

    Stages talk only through the artifacts in :attr:`dir`; use :meth:`read_json`,
    :meth:`write_parquet` etc. with the standard artifact names.
    """

    run_id: str
    dir: Path
    spec: RunSpec

    def path(self, name: str) -> Path:
        return self.dir / name

    def _need(self, name: str) -> Path:
        p = self.path(name)
        if not p.is_file():
            stage = PRODUCED_BY.get(name, "the earlier stages")
            raise ArtifactMissing(
                f"run {self.run_id!r} has no {name} (in {self.dir}); run {stage} for this run first"
            )
        return p

    def _load_json(self, name: str) -> Any:
        path = self._need(name)
        try:
            return read_json(path)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            stage = artifacts.producer(name)
            raise ArtifactInvalid(
                f"{name} of run {self.run_id!r} ({path}) is not readable JSON ({e}); it was edited by hand or "
                f"damaged: rerun {stage} for this run (and the stages after it)",
                name, stage, [str(e)],
            ) from None

    def read_json(self, name: str) -> Any:
        """A JSON artifact as a plain dict; a registered one (:data:`~mmm_lib.artifacts.ARTIFACT_MODELS`)
        is validated first (:class:`~mmm_lib.artifacts.ArtifactInvalid` names the file, field and stage to rerun)."""
        return artifacts.check_on_read(name, self._load_json(name), where=f"run {self.run_id!r} ({self.dir})")

    def read_model(self, name: str) -> Any:
        """A registered JSON artifact as its typed model (defaults filled in for fields older runs lack)."""
        if name not in artifacts.ARTIFACT_MODELS:
            raise KeyError(f"{name} has no artifact model; typed ones: {sorted(artifacts.ARTIFACT_MODELS)}")
        return artifacts.parse_artifact(name, self.read_json(name))

    def write_json(self, name: str, obj: Any) -> Path:
        """Write a JSON artifact atomically; a registered one is validated first and refused, with
        nothing written, when invalid (:class:`~mmm_lib.artifacts.ArtifactInvalid`)."""
        return write_json(self.path(name), artifacts.check_for_write(name, to_plain(obj)))

    def read_parquet(self, name: str) -> pd.DataFrame:
        return read_parquet(self._need(name))

    def write_parquet(self, name: str, df: pd.DataFrame) -> Path:
        return write_parquet(self.path(name), df)

    def read_posterior(self) -> Any:
        return read_netcdf(self._need("posterior.nc"))

    def write_posterior(self, datatree: Any) -> Path:
        return write_netcdf(self.path("posterior.nc"), datatree)

    def data_source(self) -> Any:
        """The input file this run reads, opened once, checked as opened and read into memory.

        ``data_path``, or the dataset's ``raw_data.parquet``. Returns an
        :class:`~mmm_lib.input_file.InputFile`: hand it to :func:`~mmm_lib.raw_io.keep_source` and
        :func:`~mmm_lib.raw_io.load_raw` so both use the same bytes, never the name again. The file must
        still be a regular file inside the folders the spec check allowed (the allowed roots, and the
        folder of the path the check resolved, not resolved again): a symlink swapped in since the spec was
        loaded is refused with :class:`~mmm_lib.input_file.DataFormatError`.
        """
        from .input_file import read_input
        from .spec import allowed_data_roots

        if self.spec.data_path is not None:
            p = Path(self.spec.data_path)
            return read_input(p, allowed_data_roots() + ([p.parent] if p.is_absolute() else []))
        folder = dataset_dir(self.spec.dataset_id)
        p = folder / "raw_data.parquet"
        if not p.is_file():
            raise ArtifactMissing(
                f"dataset {self.spec.dataset_id!r} not found ({p}); add it with "
                f"`mmm datasets add PATH --id {self.spec.dataset_id}` or set data_path in the spec"
            )
        return read_input(p, [Path(os.path.realpath(folder))])


def open_run(spec_path: str | Path, run_id: str, create: bool = False) -> Run:
    """Open (or with ``create=True`` create) the run folder ``runs/<run_id>`` for a spec.

    The first stage creates it and writes ``run_spec.json``; later stages open it and fail
    with a clear message if it does not exist yet.
    """
    spec = load_spec(spec_path)
    d = run_dir(run_id)
    if create:
        d.mkdir(parents=True, exist_ok=True)
        write_json(d / "run_spec.json", spec_to_dict(spec))
    elif not d.is_dir():
        raise ArtifactMissing(f"run {run_id!r} does not exist ({d}); run 01_validate (or `mmm run`) first")
    return Run(run_id=run_id, dir=d, spec=spec)

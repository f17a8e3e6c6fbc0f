"""Process-level settings that must be in place before PyTensor or JAX is imported.

The compile caches are shared by every run and every notebook kernel: PyTensor's numba code (a cold compile
costs a minute, a warm one seconds) and JAX's compiled XLA programs (the baseline model's sampler, numpyro:
about 5 s saved per fit). Both live under :func:`cache_dir` (README "Performance"). Fastmath is off so a cold and
a warm cache give bit-identical draws for the same random_seed (measured: numba's fastmath changes a cold
compile's results, not a warm one's; a cached XLA program is the program a cold compile makes). docs/STACK.md
has the measurements and the reasons.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def cache_dir() -> Path:
    """Compile cache: ``$MMM_CACHE`` or ``~/.cache/mmm_lib``."""
    env = os.environ.get("MMM_CACHE")
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "mmm_lib"


CORES_ENV = "MMM_CORES"  # set by a run for its kernels: at most this many chains sample at once


def machine_cores() -> int:
    """The cores this process may run on (CPU pinning and cgroup cpusets respected)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def usable_cores() -> int:
    """:func:`machine_cores`, or fewer when the run that started this kernel was given a core count."""
    cores = machine_cores()
    given = os.environ.get(CORES_ENV, "").strip()
    return max(1, min(cores, int(given))) if given.isdigit() else cores


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def compile_settings(cache: str | Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables a process that compiles and samples needs, computed without changing any environment.

    Parameters
    ----------
    cache
        The compile cache folder (PyTensor's ``base_compiledir`` and JAX's cache under it). Given, it replaces the
        cache named in ``environ``; ``None``: the cache ``environ`` names, else :func:`cache_dir`.
    environ
        The variables the process starts with (default ``os.environ``): what the user set there is kept
        (a ``base_compiledir`` or ``fastmath`` in ``PYTENSOR_FLAGS``, BLAS thread counts).

    Returns
    -------
    dict
        ``MMM_CACHE``, ``PYTENSOR_FLAGS`` (the cache, fastmath off), ``JAX_COMPILATION_CACHE_DIR``,
        ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` and the BLAS thread counts (1 unless set: chains run one
        per core, and BLAS threads on top of that only oversubscribe a small machine).
    """
    environ = os.environ if environ is None else environ
    flags = [f for f in environ.get("PYTENSOR_FLAGS", "").split(",") if f]
    if cache is not None:
        root = Path(cache).expanduser().resolve()
        flags = [f for f in flags if not f.strip().startswith("base_compiledir")]
        jax = str(root / "jax")
    else:
        root = Path(environ["MMM_CACHE"]).expanduser().resolve() if environ.get("MMM_CACHE") else cache_dir()
        jax = environ.get("JAX_COMPILATION_CACHE_DIR") or str(root / "jax")
    if not any("base_compiledir" in f for f in flags):
        flags.append(f"base_compiledir={root / 'pytensor'}")
    if not any("fastmath" in f for f in flags):
        flags.append("numba__fastmath=False")
    out = {"MMM_CACHE": str(root), "PYTENSOR_FLAGS": ",".join(flags), "JAX_COMPILATION_CACHE_DIR": jax,
           # every compile is kept, also short ones
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")}
    out.update({var: environ.get(var, "1") for var in THREAD_VARS})
    return out


def configure_environment(cache: str | Path | None = None) -> dict[str, str]:
    """Put :func:`compile_settings` into this process's environment (before PyTensor or JAX is imported).

    For a process that compiles in itself (a notebook kernel, a script); a run passes the same settings to its
    kernels without changing its own environment. Returns the variables set.
    """
    skip_slow_schema_formats()
    settings = compile_settings(cache)
    os.environ.update(settings)
    return settings


def skip_slow_schema_formats() -> None:
    """Keep jsonschema from importing ``rfc3987_syntax`` in this process.

    nbformat (read by papermill, nbconvert and the runner) imports jsonschema, which imports ``rfc3987_syntax`` when
    it is installed (JupyterLab's dependencies bring it) to check the ``iri`` formats. That module builds a parser
    at import: 2.5–7 s on the 2-core machine (``python -X importtime -c "import papermill"``), paid by every
    ``mmm run`` before its first stage. Notebook schemas use no ``iri`` format, so marking the module absent
    changes no check nbformat makes. Does nothing once jsonschema is imported. Called by
    :func:`configure_environment` (before a run imports papermill) and by :func:`mmm_lib.report.export_html`
    (reports rendered outside a run).
    """
    import sys

    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]

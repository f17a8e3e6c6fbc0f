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
from pathlib import Path


def cache_dir() -> Path:
    """Compile cache: ``$MMM_CACHE`` or ``~/.cache/mmm_lib``."""
    env = os.environ.get("MMM_CACHE")
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "mmm_lib"


def configure_environment() -> dict[str, str]:
    """Set PYTENSOR_FLAGS (compile dir, no fastmath) and BLAS threads unless the user set them.

    Returns the variables it set, so a runner can pass the same to notebook kernels.
    """
    skip_slow_schema_formats()
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    extra = []
    if "base_compiledir" not in flags:
        extra.append(f"base_compiledir={cache_dir() / 'pytensor'}")
    if "fastmath" not in flags:
        extra.append("numba__fastmath=False")
    if extra:
        os.environ["PYTENSOR_FLAGS"] = ",".join([f for f in [flags, *extra] if f])
    # JAX keeps compiled programs here (read when jax is first imported); every compile is kept, also short ones.
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache_dir() / "jax"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    # Chains run one per core; BLAS threads on top of that only oversubscribe a small machine.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    return {k: os.environ[k] for k in ("PYTENSOR_FLAGS", "JAX_COMPILATION_CACHE_DIR", "OMP_NUM_THREADS",
                                       "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


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

"""Process-level settings that must be in place before PyTensor is imported.

The PyTensor/numba compile cache is shared by every run and every notebook kernel: a cold compile
costs minutes, a warm one seconds (README "Performance"). Fastmath is off so a cold and a warm
cache give bit-identical draws for the same random_seed (measured: numba's fastmath changes a cold compile's
results, not a warm one's). docs/STACK.md has the measurements and the reasons.
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
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    extra = []
    if "base_compiledir" not in flags:
        extra.append(f"base_compiledir={cache_dir() / 'pytensor'}")
    if "fastmath" not in flags:
        extra.append("numba__fastmath=False")
    if extra:
        os.environ["PYTENSOR_FLAGS"] = ",".join([f for f in [flags, *extra] if f])
    # Chains run one per core; BLAS threads on top of that only oversubscribe a small machine.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    return {k: os.environ[k] for k in ("PYTENSOR_FLAGS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}

"""A PyMC model compiled for nutpie (numba backend), with C callbacks numba keeps between processes.

``nutpie.compile_pymc_model(model, backend="numba")`` compiles the model's log density (with its gradient) and the
function that expands a draw to every variable with PyTensor's numba backend, then wraps each in a numba C callback
that nutpie's Rust sampler calls. PyTensor caches its own functions on disk, but nutpie's two callbacks close over
per-process objects (the data arrays, a record type with random field names), so numba compiles them again in every
process, and compiling a callback optimises everything it calls once more: on the example's default model
(``params/example.yaml``, 5 stores × 104 weeks, 3 channels) 7–10 s for the log-density callback and ~3 s for the
expand callback, in every fit.

:func:`compile_model` builds the same model object nutpie builds, with callbacks generated as source that refers
to nothing per process: the data arrays are reached through pointers in ``user_data`` (a table of addresses and
shapes that nutpie hands to every call), and each callback is registered with PyTensor's numba cache under a key
made of PyTensor's own key of the function it calls and a hash of the callback's source. A second process fitting
a model of the same structure loads both callbacks from the cache in ~0.2 s each. The callbacks compute exactly
what nutpie's do (same functions called, same checks and return codes), so a seed gives the same draws either way.

Only what nutpie itself does differently from :func:`nutpie.compile_pymc_model` with its defaults is here; it uses
nutpie's own helpers for the rest, and falls back to ``nutpie.compile_pymc_model`` where they are missing (another
nutpie version). ``with_data`` (swapping data without recompiling) is not offered by the returned object.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import warnings
from typing import Any

import numpy as np

# nutpie's C signatures: logp(dim, x, grad_out, logp_out, user_data) and expand(dim, n_expanded, x, out, user_data).
_LOGP_SRC = """
def mmm_nutpie_logp(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
        table = carray(user_data_, ({n_table},), np.uint64)
{arrays}
        x = carray(x_, ({n_dim},))
        out = carray(out_, ({n_dim},))
        logp = carray(logp_, ())
        logp_val, grad = inner(x{args})
        logp[()] = logp_val
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:
        return 1
    return 0
"""

_EXPAND_SRC = """
def mmm_nutpie_expand(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    try:
        table = carray(user_data_, ({n_table},), np.uint64)
{arrays}
        x = carray(x_, ({n_dim},))
        out = carray(out_, ({n_expanded},))
        (values,) = inner(x{args})
        out[...] = values
    except Exception:
        return -2
    return 0
"""


def _pointer_table(arrays: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """One uint64 table for all data arrays: each array's address followed by its shape; and where each starts."""
    table: list[int] = []
    starts = []
    for a in arrays:
        starts.append(len(table))
        table += [a.ctypes.data, *a.shape]
    return np.array(table or [0], dtype=np.uint64), starts


def _array_lines(arrays: list[np.ndarray], starts: list[int], used: list[int]) -> tuple[str, str]:
    """Source lines viewing the arrays the function takes (``used``: indices into ``arrays``), and its arguments."""
    lines, args = [], []
    for i in used:
        a, at = arrays[i], starts[i]
        shape = "".join(f"int(table[{at + 1 + k}]), " for k in range(a.ndim))
        lines.append(f"        a{i} = carray(as_pointer(table[{at}]), ({shape}), np.{a.dtype.type.__name__})")
        args.append(f", a{i}")
    return "\n".join(lines), "".join(args)


def _cache_key(inner: Any, src: str) -> str | None:
    """PyTensor's cache key of the function called plus a hash of the callback's source (None: not cacheable)."""
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    py_func = getattr(inner, "py_func", None)
    inner_key = CACHED_SRC_FUNCTIONS.get(py_func) if py_func is not None else None
    if inner_key is None:
        return None
    versions = ",".join(importlib.metadata.version(p) for p in ("nutpie", "pytensor", "numba"))
    return hashlib.sha256(f"{inner_key}\n{versions}\n{src}".encode()).hexdigest()


def _c_callback(template: str, name: str, signature: Any, inner: Any, arrays: list[np.ndarray], starts: list[int],
                used: list[int], n_table: int, **sizes: int) -> Any:
    """The C callback ``template`` describes, cached on disk by numba when PyTensor caches ``inner``."""
    import numba
    from nutpie.compile_pymc import address_as_void_pointer
    from pytensor.link.numba.cache import compile_numba_function_src

    lines, args = _array_lines(arrays, starts, used)
    src = template.format(arrays=lines, args=args, n_table=n_table, **sizes)
    key = _cache_key(inner, src)
    env = {"__name__": __name__, "carray": numba.carray, "np": np, "inner": inner, "as_pointer": address_as_void_pointer}
    func = compile_numba_function_src(src, name, global_env=env, cache_key=key)
    with warnings.catch_warnings():  # what nutpie silences too: a callable numba cannot cache is compiled each time
        warnings.filterwarnings("ignore", message="Cannot cache compiled function", category=numba.NumbaWarning)
        return numba.cfunc(signature, cache=key is not None)(func)


def compile_model(model: Any) -> Any:
    """``nutpie.compile_pymc_model(model, backend="numba")``, with C callbacks numba loads from its cache.

    Returns nutpie's ``CompiledPyMCModel``, for ``nutpie.sample``. Chains start as nutpie's do (the model's
    support point, jittered); draws are those of ``nutpie.compile_pymc_model`` for the same seed.
    """
    import nutpie

    try:
        import numba
        from nutpie.compile_pymc import (  # noqa: F401  (address_as_void_pointer: used by the callbacks)
            CompiledPyMCModel, _make_functions, _prepare_dims_and_coords, _wrap_with_lock, address_as_void_pointer)
        from pymc.initial_point import make_initial_point_fn
        from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS  # noqa: F401
    except ImportError:  # another nutpie or PyTensor: theirs, compiled in every process
        return nutpie.compile_pymc_model(model, backend="numba")

    class _Compiled(CompiledPyMCModel):
        def with_data(self, **updates: Any) -> Any:
            raise NotImplementedError("compile the model again (mmm_lib.nutpie_compile.compile_model) to change its data")

    # As nutpie.compile_pymc_model does by default: start at the support point, jittered.
    initial_point = _wrap_with_lock(make_initial_point_fn(model=model, overrides=None, default_strategy="support_point",
                                                          jitter_rvs=set(model.free_RVs), return_transformed=True))
    n_dim, n_expanded, logp_pt, expand_pt, initial_point_fn, shape_info, reparameterized = _make_functions(
        model, mode="NUMBA", compute_grad=True, join_expanded=True, pymc_initial_point_fn=initial_point)

    shared = list(dict.fromkeys([*logp_pt.get_shared(), *expand_pt.get_shared()]))
    arrays = []
    for var in shared:
        a = np.array(var.get_value(), order="C", copy=True)
        a.flags.writeable = False
        arrays.append(a)
    table, starts = _pointer_table(arrays)
    position = {var: i for i, var in enumerate(shared)}

    logp_sig = numba.types.int64(numba.types.uint64, numba.types.CPointer(numba.types.double),
                                 numba.types.CPointer(numba.types.double), numba.types.CPointer(numba.types.double),
                                 numba.types.voidptr)
    expand_sig = numba.types.int64(numba.types.uint64, numba.types.uint64, numba.types.CPointer(numba.types.double),
                                   numba.types.CPointer(numba.types.double), numba.types.voidptr)
    logp_c = _c_callback(_LOGP_SRC, "mmm_nutpie_logp", logp_sig, logp_pt.vm.jit_fn, arrays, starts,
                         [position[v] for v in logp_pt.get_shared()], len(table), n_dim=n_dim)
    expand_c = _c_callback(_EXPAND_SRC, "mmm_nutpie_expand", expand_sig, expand_pt.vm.jit_fn, arrays, starts,
                           [position[v] for v in expand_pt.get_shared()], len(table), n_dim=n_dim,
                           n_expanded=n_expanded)

    dims, coords = _prepare_dims_and_coords(model, shape_info, reparameterized)
    keys = {var: f"shared_{i}" for i, var in enumerate(shared)}
    return _Compiled(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info)},
        compiled_logp_func=logp_c,
        compiled_expand_func=expand_c,
        initial_point_func=initial_point_fn,
        shared_data={keys[var]: a for var, a in zip(shared, arrays)},  # keeps the arrays the table points at alive
        shared_var_keys=keys,
        user_data=table,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=logp_pt,
        expand_func=expand_pt,
        reparameterized_names=reparameterized,
    )

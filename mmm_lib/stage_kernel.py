"""An IPython kernel that imports its stage's modules before it answers its first request.

``python -m mmm_lib.stage_kernel --preload pandas,mmm_lib.features -f CONNECTION_FILE [ipykernel options]``
is ipykernel's launcher plus the imports: the kernel app is initialised first (so a module that switches on
inline figures finds its kernel, as it would in the notebook), then the modules are imported, then the kernel
starts answering. :class:`mmm_lib.kernels.StageKernels` starts the next stage's kernel this way while the
current stage runs. A module that fails to import is skipped: the notebook's import cell then reports it.
"""

from __future__ import annotations

import importlib
import sys


def main(argv: list[str]) -> None:
    preload: list[str] = []
    if argv[:1] == ["--preload"]:
        preload = [m for m in argv[1].split(",") if m]
        argv = argv[2:]
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(argv)
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the notebook's own import raises it where the user sees it
            pass
    if "mmm_lib.plots" in sys.modules:  # imported before this process was a kernel (a forked kernel): switch now
        sys.modules["mmm_lib.plots"].enable_inline_figures()
    app.start()


if __name__ == "__main__":
    if sys.path and sys.path[0] == "":  # as ipykernel_launcher: not the working folder first on the path
        del sys.path[0]
    main(sys.argv[1:])

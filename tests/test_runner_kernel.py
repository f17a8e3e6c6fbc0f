"""runner's kernel path: a stage kernel is shut down by request, never interrupted, so a successful
run prints no ``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.``."""

from __future__ import annotations

import io

import nbformat
import pytest

from mmm_lib import runner

# papermill ends each notebook with a kernel_info request and shuts the kernel down when the reply
# arrives. This cell keeps the kernel inside that request's handler for a while after replying, so
# the race that printed the ERROR in stage 02 of `make run` happens every time instead of sometimes.
SLOW_KERNEL_INFO = """\
import time
k = get_ipython().kernel
reply = k.shell_handlers["kernel_info_request"]
async def slow_kernel_info(*args):
    await reply(*args)
    time.sleep(1.5)
k.shell_handlers["kernel_info_request"] = slow_kernel_info
print("ok")
"""


@pytest.mark.slow
def test_kernel_shutdown_prints_no_error(tmp_path, capfd):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SLOW_KERNEL_INFO)]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    stdout, stderr = io.StringIO(), io.StringIO()
    capfd.readouterr()
    runner._run_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", {}, "python3", stdout, stderr)
    # the kernel process inherits this process's fd 2: whatever it logs lands in capfd
    out, err = capfd.readouterr()
    assert "ok" in stdout.getvalue()
    assert "ERROR" not in err + out and "KeyboardInterrupt" not in err + out, err
    assert "ERROR" not in stderr.getvalue()


def test_stage_kernels_are_not_interrupted_on_shutdown():
    km_class = runner._kernel_manager_class()
    assert km_class is runner._kernel_manager_class()  # one class, built once
    from jupyter_client import AsyncKernelManager

    assert issubclass(km_class, AsyncKernelManager)
    assert km_class._async_interrupt_kernel is not AsyncKernelManager._async_interrupt_kernel

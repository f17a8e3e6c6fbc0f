"""Figures for each stage (one module per stage); every function returns a matplotlib Figure.

Importing this package inside a Jupyter kernel turns on inline figure display, so a returned
Figure renders as an embedded PNG in the notebook and in its HTML report (papermill kernels do
not do this on their own for figures made without pyplot).
"""


def _enable_inline_figures() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: nothing to display into
        return
    ip = get_ipython()
    if ip is not None and getattr(ip, "kernel", None) is not None:
        ip.run_line_magic("matplotlib", "inline")


_enable_inline_figures()

"""Figures for each stage (one module per stage); every function returns a matplotlib Figure.

Importing this package inside a Jupyter kernel turns on inline figure display, so a returned
Figure renders as an embedded PNG in the notebook and in its HTML report (papermill kernels do
not do this on their own for figures made without pyplot).
"""


from typing import Any

from matplotlib.figure import Figure


def date_axis(ax: Any) -> None:
    """Concise date ticks (``2024``, ``Apr``, ``Jul``) on a time axis."""
    import matplotlib.dates as mdates

    loc = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))


def note_figure(text: str) -> Figure:
    """A one-line figure holding ``text``, where a plot does not apply (e.g. a brand-level model).

    The text sits on an empty axis: IPython renders a figure without axes as "<Figure ...>" text, no image.
    """
    fig = Figure(figsize=(9, 0.6))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.text(0.01, 0.5, text, va="center", fontsize=10, color="0.3")
    return fig


def enable_inline_figures() -> None:
    """Inline figure display in the running Jupyter kernel (nothing outside one). Run at import; a kernel forked
    from a process that imported this package before any kernel existed runs it again once it is one.

    Figures are rendered at their own size (``bbox_inches=None``), not cropped to their drawn content as the inline
    backend does by default: finding that content draws the whole figure once more before the real draw, and every
    figure here lays itself out (``layout="constrained"``) so nothing lies outside it. Measured on the trace and rank
    plots of a 63-parameter fit: 1.4–1.5 s → 1.0 s and 1.0 s → 0.7 s per figure.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: nothing to display into
        return
    ip = get_ipython()
    if ip is not None and getattr(ip, "kernel", None) is not None:
        ip.run_line_magic("matplotlib", "inline")
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png", bbox_inches=None)


enable_inline_figures()

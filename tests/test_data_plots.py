"""mmm_lib.plots.data: the 02 series figure sums an entity-level panel and keeps its right-axis labels inside."""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from test_canonicalize import spec_for

from mmm_lib.canonicalize import canonicalize
from mmm_lib.plots.data import plot_canonical_series
from panels import make_panel


def test_entity_level_series_is_the_brand_total_with_right_labels_inside_the_figure():
    raw = make_panel()
    can, info = canonicalize(raw, spec_for(model={"level": "entity"}))
    assert can["entity_id"].nunique() > 1  # a panel: one row per store and period
    fig = plot_canonical_series(can, info)
    FigureCanvasAgg(fig).draw()
    line = fig.axes[0].get_lines()[0]
    brand = can.groupby("period_start")["sales"].sum().sort_index().to_numpy()
    np.testing.assert_allclose(line.get_ydata(), brand)  # one point per period, not a zigzag over stores
    renderer = fig.canvas.get_renderer()
    twins = [ax for ax in fig.axes if ax.yaxis.get_label_position() == "right"]
    assert twins
    for ax in twins:  # the spend axis label is drawn inside the figure, not clipped at its right edge
        assert ax.yaxis.label.get_window_extent(renderer).x1 <= fig.bbox.x1 - 2

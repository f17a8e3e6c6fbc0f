"""Tests for mmm_lib.plots.checks: the model-check figures of 04_fit and 05_diagnose on hand-built groups.

Each plot returns a matplotlib Figure that renders to PNG and is not left open in pyplot (arviz-plots
draws on pyplot figures; an open one would be shown twice in a notebook).
"""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure
from test_diagnostics import ENTITIES, add_model_groups, make_idata, metadata
from test_prior_check import make_fit
from test_prior_check import meta as prior_meta

from mmm_lib.plots.checks import plot_pareto_k, plot_ppc_density, plot_ppc_entities, plot_ppc_time, plot_prior_predictive


def rendered(fig: Figure) -> Figure:
    from IPython.core.pylabtools import print_figure

    assert isinstance(fig, Figure)
    assert print_figure(fig, "png"), "IPython would show this figure as text, not as an image"
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"
    assert plt.get_fignums() == [], "a pyplot figure was left open (it would show twice in a notebook)"
    return fig


def titles(fig: Figure) -> list[str]:
    return [a.get_title() for a in fig.axes if a.get_visible() and a.get_title()]


@pytest.fixture(scope="module")
def checked():
    return add_model_groups(make_idata(n_draws=300), pred_sd={"store_b": 0.01}, outlier=(2, 30, 2.0))


def test_ppc_time_plots_the_brand_total_with_its_coverage(checked):
    fig = rendered(plot_ppc_time(checked, metadata()))
    (title,) = titles(fig)
    assert title.startswith("Brand total sales") and "90% band covers" in title
    assert fig.axes[0].get_ylabel() == "sales per period"


def test_ppc_entities_has_one_panel_per_store_and_names_coverage(checked):
    fig = rendered(plot_ppc_entities(checked, metadata()))
    t = titles(fig)
    assert [x.split(":")[0] for x in t] == ENTITIES
    assert "90% band covers" in t[1]
    worst = rendered(plot_ppc_entities(checked, metadata(), max_entities=1))
    assert [x.split(":")[0] for x in titles(worst)] == ["store_b"]  # the narrow one: lowest coverage
    brand = add_model_groups(make_idata(n_draws=200), entities=None)
    note = rendered(plot_ppc_entities(brand, metadata(None)))
    assert "Brand-level model" in note.axes[0].texts[0].get_text()


def test_ppc_density_is_arviz_plots_per_store(checked):
    fig = rendered(plot_ppc_density(checked, metadata(), num_samples=10))
    assert titles(fig) == ENTITIES
    assert "observed (black)" in fig.get_suptitle()


def test_predictive_plots_need_metadata_and_show_a_note_without_groups():
    with pytest.raises(ValueError, match="model_metadata"):
        plot_ppc_time(add_model_groups(make_idata(n_draws=100)), {})
    old_run = make_idata(n_draws=100)  # fitted before predictive checks: a note, not an error (05 runs on)
    for plot in (plot_ppc_time, plot_ppc_entities, plot_ppc_density):
        assert "re-run 04_fit" in rendered(plot(old_run, metadata())).axes[0].texts[0].get_text()


def test_pareto_k_plot_labels_the_influential_period(checked):
    fig = rendered(plot_pareto_k(checked))
    ax = fig.axes[0]
    assert ax.get_ylabel() == "Pareto k" and "store/geo" in ax.get_xlabel()
    assert "above" in ax.get_title() and not ax.get_title().startswith("PSIS-LOO Pareto k: 0 of")
    assert any(t.get_text() == "store_c, 2023-07-31" for t in ax.texts)
    note = rendered(plot_pareto_k(make_idata(n_draws=100)))
    assert "log_likelihood" in note.axes[0].texts[0].get_text()


@pytest.mark.filterwarnings("error::RuntimeWarning")  # no overflow from prior draws far beyond exp's range
@pytest.mark.parametrize("entities", [["store_a", "store_b"], None])
def test_prior_predictive_plot_uses_a_log_axis(entities):
    fig = rendered(plot_prior_predictive(make_fit(prior_sd=8.0, entities=entities), prior_meta(entities)))
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == (len(entities) if entities else 1)
    assert all(a.get_yscale() == "log" for a in axes)
    assert "tighten the priors" in fig.get_suptitle()
    note = rendered(plot_prior_predictive(make_idata(n_draws=50), prior_meta()))
    assert "re-run 04_fit" in note.axes[0].texts[0].get_text()


def test_check_modules_do_not_import_pymc():
    """05_diagnose must not pay PyMC's start-up: the checks and their plots are numpy, ArviZ and matplotlib."""
    import subprocess
    import sys

    code = ("import mmm_lib.diagnostics, mmm_lib.prior_check, mmm_lib.plots.checks, mmm_lib.plots.fit, sys; "
            "print(sorted(m for m in ('pymc', 'pytensor', 'nutpie') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""Figures from saved results: one figure API, sized for a page, for the library's users.

Imported on demand (``import xpnet`` does not load matplotlib).  Everything takes plain
host arrays (from saved results), draws with the Agg backend and writes PNGs atomically.

========================  ==============================================================
module                    what
========================  ==============================================================
:mod:`~.base`             page size, :data:`PALETTE`, :class:`Ref` lines, caption, saving
:mod:`~.curves`           :class:`Curve` (band, thin or each seed), :class:`Panel`,
                          :func:`plot_panels`
:mod:`~.metrics`          training curves and chance lines from ``History.to_dict()``
:mod:`~.points`           :func:`plot_xy` (a search), :func:`plot_dot_rows` (log-x rows)
:mod:`~.bars`             :class:`BarPanel`, :func:`plot_bars` (grouped bars, seed dots)
:mod:`~.heatmaps`         :func:`plot_heatmaps` (log colour scale shared by panels)
========================  ==============================================================

The library knows no data set: a chance level comes from ``n_classes``
(:func:`chance_refs`) or from the caller (``BarPanel(chance=...)``, a :class:`Ref`).

Imports: :mod:`xpnet.base`, :mod:`xpnet.errors`.
"""

from xpnet.plots.bars import BarPanel, plot_bars
from xpnet.plots.base import (
    DPI,
    PAGE_WIDTH,
    PALETTE,
    Ref,
    add_caption,
    draw_refs,
    page_figure,
    save_figure,
    save_page,
    spread,
    spread_caption,
)
from xpnet.plots.curves import SEEDS, Curve, Panel, draw_curve, plot_panels
from xpnet.plots.heatmaps import plot_heatmaps
from xpnet.plots.metrics import (
    METRIC_LABELS,
    chance_refs,
    metric_curves,
    metric_values,
    training_panels,
)
from xpnet.plots.points import DotPanel, plot_dot_rows, plot_xy

__all__ = [
    "DPI", "METRIC_LABELS", "PAGE_WIDTH", "PALETTE", "SEEDS", "BarPanel", "Curve", "DotPanel",
    "Panel", "Ref", "add_caption", "chance_refs", "draw_curve", "draw_refs", "metric_curves",
    "metric_values", "page_figure", "plot_bars", "plot_dot_rows", "plot_heatmaps",
    "plot_panels", "plot_xy", "save_figure", "save_page", "spread", "spread_caption",
    "training_panels",
]

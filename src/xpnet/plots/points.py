"""Markers: x-y searches (:func:`plot_xy`) and log-x dot rows (:func:`plot_dot_rows`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from xpnet.plots.base import PAGE_WIDTH, PALETTE, Ref, draw_refs, page_figure, save_page, spread


def plot_xy(path, title: str, xlabel: str, ylabel: str, series: dict, *, caption: str = "",
            marks=(), refs=()) -> Path:
    """Markers joined by lines: ``series = {label: (x (n,), y (n,) or (n, k))}``.

    A 2-D ``y`` draws its median with a min-max error bar.  ``marks`` are
    ``(x, y, label)`` points to single out (e.g. the chosen value): a star and a
    vertical line; ``refs`` are horizontal :class:`Ref` lines or ``(y, label)`` pairs.

    Args:
        path: where to write the PNG.
        title: the figure's title.
        xlabel, ylabel: the axis labels.
        series: ``{label: (x, y)}`` as above: each series' x values go here (there is
            no ``x=`` argument).
        caption: text under the plot.
        marks, refs: see above.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    >>> import tempfile
    >>> lams = [1e-4, 1e-3, 1e-2]
    >>> accs = [[50.1, 50.3], [51.0, 51.4], [49.2, 49.0]]  # (3 lambdas, 2 seeds)
    >>> path = plot_xy(Path(tempfile.mkdtemp()) / "search.png", "Lambda search",
    ...                "lambda", "validation accuracy (%)", {"coarse": (lams, accs)},
    ...                marks=[(1e-3, 51.2, "best")])
    >>> path.name
    'search.png'
    """
    fig, (ax,) = page_figure(1, panel_height=3.6, width=0.8 * PAGE_WIDTH)
    for k, (label, (xs, ys)) in enumerate(series.items()):
        xs = np.asarray(xs, dtype=np.float64)
        order = np.argsort(xs)
        mid, lo, hi = spread(ys)
        color = PALETTE[k % len(PALETTE)]
        ax.plot(xs[order], mid[order], "o-", color=color, label=label)
        if np.ndim(ys) == 2:
            ax.vlines(xs, lo, hi, color=color, lw=1.2)
    for x, y, label in marks:
        ax.axvline(x, color="black", lw=0.8, alpha=0.5)
        ax.plot([x], [y], "*", color="black", ms=14, zorder=5, label=label)
    draw_refs(ax, refs)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save_page(fig, path, title, caption)


@dataclasses.dataclass
class DotPanel:
    """One subplot of :func:`plot_dot_rows`: ``series = {name: (n_rows,) values}``.

    NaN means "no such entry in this row" (nothing is drawn).

    Args:
        title: the subplot's title.
        series: ``{name: values (n_rows,)}``; a name keeps its marker across panels.

    >>> DotPanel("BN", {"max error": [1e-9, 3e-8], "mean error": [1e-10, float("nan")]}).title
    'BN'
    """

    title: str
    series: dict


#: Colours of :func:`plot_dot_rows`' vertical reference lines, in order.
DOT_REF_COLORS = ("#009E73", "#D55E00", "#CC79A7")


def plot_dot_rows(path, title: str, rows: list[str], panels: list[DotPanel], xlabel: str, *,
                  caption: str = "", refs=(), ncols: int = 2, floor: float = 1e-17) -> Path:
    """Log-x dot plots with one row per item (top to bottom), panels sharing both axes.

    Each series has its own marker, a little above or below the row's centre, so the
    entries of a row never hide each other.  ``refs`` are vertical ``(x, label)``
    lines (targets), dashed in :data:`DOT_REF_COLORS`; values below ``floor`` (exact
    zeros) are drawn at ``floor``.  The height grows with the rows, the width stays a page's.

    Args:
        path: where to write the PNG.
        title: the figure's title.
        rows: the row labels, top to bottom (``n_rows``).
        panels: :class:`DotPanel` objects, one subplot each.
        xlabel: the x-axis label (under the bottom row of panels).
        caption: text under the panels.
        refs: ``(x, label)`` vertical lines.
        ncols: panels per row.
        floor: the smallest x drawn.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    >>> import tempfile
    >>> panels = [DotPanel("BN", {"max": [1e-9, 3e-8]}), DotPanel("no BN", {"max": [2e-9, 0.0]})]
    >>> path = plot_dot_rows(Path(tempfile.mkdtemp()) / "errors.png", "Gradient errors",
    ...                      ["W1", "W2"], panels, "relative error", refs=[(1e-6, "target")])
    >>> path.name
    'errors.png'
    """
    n = len(rows)
    fig, axes = page_figure(len(panels), ncols, panel_height=max(2.8, 0.6 + 0.3 * n),
                            sharex=True, sharey=True)
    names = list(dict.fromkeys(name for p in panels for name in p.series))
    markers = "os^Dvp"
    offsets = (np.arange(len(names)) - (len(names) - 1) / 2) * min(0.18, 0.7 / len(names))
    lines = [Ref(x, label, DOT_REF_COLORS[j % len(DOT_REF_COLORS)], "--", axis="x")
             for j, (x, label) in enumerate(refs)]
    drawn = [x for x, _ in refs]
    for ax, panel in zip(axes, panels, strict=True):
        for k, name in enumerate(names):
            if name not in panel.series:
                continue
            v = np.asarray(panel.series[name], dtype=np.float64)
            ok = np.isfinite(v)
            xs = np.maximum(v[ok], floor)
            drawn += xs.tolist()
            ax.plot(xs, np.flatnonzero(ok) + offsets[k], markers[k % len(markers)],
                    color=PALETTE[k % len(PALETTE)], ms=5, ls="none", label=name)
        draw_refs(ax, lines)
        ax.set_xscale("log")
        ax.set_title(panel.title)
        ax.grid(axis="x", alpha=0.3)
        for y in np.arange(n - 1) + 0.5:
            ax.axhline(y, color="0.9", lw=0.6, zorder=0)
    axes[0].set_yticks(np.arange(n), rows)
    axes[0].set_ylim(n - 0.5, -0.5)  # first row on top, a half row of room at each end
    axes[0].set_xlim(min(drawn) / 10, max(drawn) * 10)
    for ax in axes[-ncols:]:
        ax.set_xlabel(xlabel)
    legend = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    order = [label for label in [*names, *(label for _, label in refs)] if label in legend]
    fig.legend([legend[label] for label in order], order, loc="outside right center",
               fontsize="small")
    return save_page(fig, path, title, caption)

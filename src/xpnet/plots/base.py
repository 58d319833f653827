"""What every figure shares: the page size, the palette, reference lines, caption and saving.

Figures are drawn with the Agg backend (no display needed), sized for a page (about
990 px wide at 110 dpi) and written as PNGs atomically (:func:`save_figure`).  Each
carries its title on top and a caption under its panels (:func:`add_caption`).
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xpnet.base.atomic import atomic_write  # noqa: E402

#: Figure width in inches; at ``DPI`` this is ~990 px, a markdown page's width.
PAGE_WIDTH = 9.0
DPI = 110
#: Colour-blind safe colours (Okabe-Ito), in the order settings get them.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


@dataclasses.dataclass(frozen=True)
class Ref:
    """A reference line (a chance level, a target, a chosen value) across the axes.

    Horizontal at y = ``value`` (``axis="y"``) or vertical at x = ``value`` (``axis="x"``);
    by default dark grey and dotted.  Where a list of refs is asked for, a ``(value,
    label)`` pair stands for ``Ref(value, label)``.

    Args:
        value: where the line is, in data units.
        label: its legend entry (None: none).
        color, style, width: matplotlib's colour, line style and width.
        axis: ``"y"`` (a horizontal line at y = value) or ``"x"`` (vertical).

    >>> Ref(10.0, "chance (10 %)")
    Ref(value=10.0, label='chance (10 %)', color='0.35', style=':', width=1.2, axis='y')
    """

    value: float
    label: str | None = None
    color: str = "0.35"
    style: str = ":"
    width: float = 1.2
    axis: str = "y"


def draw_refs(ax, refs) -> None:
    """Draw :class:`Ref` lines (or ``(value, label)`` pairs) on ``ax``, in order.

    Args:
        ax: a matplotlib Axes.
        refs: :class:`Ref` objects or ``(value, label)`` pairs.

    Returns:
        None.

    >>> fig, (ax,) = page_figure(1)
    >>> draw_refs(ax, [(10.0, "chance"), Ref(2.5, "chosen", axis="x")])
    >>> [line.get_label() for line in ax.lines]
    ['chance', 'chosen']
    >>> plt.close(fig)
    """
    for ref in refs:
        ref = ref if isinstance(ref, Ref) else Ref(*ref)
        line = ax.axhline if ref.axis == "y" else ax.axvline
        line(ref.value, color=ref.color, ls=ref.style, lw=ref.width, label=ref.label)


def spread(values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NaN-ignoring median, min and max over the last axis (the k models of each point).

    Args:
        values: ``(n, k)`` (or ``(n,)``: one model, returned three times).

    Returns:
        ``(median, min, max)``, each ``(n,)``; NaN where a row is all NaN.

    >>> mid, lo, hi = spread([[1.0, 2.0, 9.0], [4.0, float("nan"), 6.0]])
    >>> mid, lo, hi
    (array([2., 5.]), array([1., 4.]), array([9., 6.]))
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        return v, v, v
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        return np.nanmedian(v, axis=-1), np.nanmin(v, axis=-1), np.nanmax(v, axis=-1)


def spread_caption(n_models: int, what: str = "seeds") -> str:
    """The caption sentence for a band over ``n_models`` (a :class:`Curve`'s default).

    Args:
        n_models: the models each band spans (1: one run per line).
        what: what they are called in the sentence.

    Returns:
        The sentence.

    >>> spread_caption(3)[:39]
    'Line: median of 3 seeds; band: their mi'
    >>> spread_caption(1)
    'One run per line.'
    """
    if n_models <= 1:
        return "One run per line."
    return (f"Line: median of {n_models} {what}; band: their min-max range. Where the "
            f"{what} split (some train, some stay at chance), each is a thin line instead.")


def page_figure(n_panels: int, ncols: int | None = None, panel_height: float = 3.0,
                sharex=False, sharey=False, width: float = PAGE_WIDTH):
    """A page-wide figure of ``n_panels`` subplots (extra grid cells are hidden).

    Args:
        n_panels: the number of subplots.
        ncols: subplots per row (default: all in one row).
        panel_height: inches per row.
        sharex, sharey: as in ``matplotlib.pyplot.subplots``.
        width: the figure's width in inches (default :data:`PAGE_WIDTH`).

    Returns:
        ``(fig, axes)``: the Figure and a list of ``n_panels`` Axes, row by row.

    >>> fig, axes = page_figure(3, ncols=2)
    >>> len(axes), float(fig.get_figwidth())
    (3, 9.0)
    >>> plt.close(fig)
    """
    ncols = min(ncols or n_panels, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(width, panel_height * nrows + 0.9),
                             squeeze=False, sharex=sharex, sharey=sharey,
                             layout="constrained")
    axes = list(grid.flat)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def add_caption(fig, title: str, caption: str = "") -> None:
    """The figure's title on top and ``caption`` (wrapped to the width) underneath.

    Args:
        fig: a matplotlib Figure.
        title: the title.
        caption: text under the panels ("" for none).

    Returns:
        None.

    >>> fig, _ = page_figure(1)
    >>> add_caption(fig, "Loss", "Median of 3 seeds.")
    >>> fig.get_suptitle()
    'Loss'
    >>> plt.close(fig)
    """
    fig.suptitle(title)
    if caption:
        chars = int(fig.get_figwidth() * 13)  # small-font characters per inch, about
        fig.supxlabel(textwrap.fill(caption, chars), fontsize="small")


def save_figure(fig, path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (folders made as needed) and close it.

    Args:
        fig: a matplotlib Figure.
        path: where to write the PNG.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    >>> import tempfile
    >>> fig, (ax,) = page_figure(1)
    >>> _ = ax.plot([0, 1], [1, 0])
    >>> save_figure(fig, Path(tempfile.mkdtemp()) / "line.png").stat().st_size > 0
    True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return path


def save_page(fig, path, title: str, caption: str = "") -> Path:
    """Finish a figure: its title and caption (:func:`add_caption`), then :func:`save_figure`.

    Args:
        fig: a matplotlib Figure.
        path: where to write the PNG.
        title, caption: as in :func:`add_caption`.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    >>> import tempfile
    >>> fig, (ax,) = page_figure(1)
    >>> _ = ax.plot([0, 1], [1, 0])
    >>> save_page(fig, Path(tempfile.mkdtemp()) / "line.png", "A line", "Falls.").name
    'line.png'
    """
    add_caption(fig, title, caption)
    return save_figure(fig, path)

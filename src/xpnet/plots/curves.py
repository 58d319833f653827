"""Curves over training (or any x) in panels: :class:`Curve`, :class:`Panel`, :func:`plot_panels`.

A curve's ``values`` are ``(n_points, k)``: k models, usually seeds.  How the k
models are drawn is the curve's ``seeds``:

- ``"band"`` (the default): their median as the line and their min-max range as a
  shaded band, so the band never leaves the range of the data; NaN entries (a
  diverged model) are left out.
- ``"thin"``: each model its own thin line, for seeds that split (some train, some
  stay at chance), where a median would draw values no seed produced.
- ``"each"``: each model a full line through its finite points; a model that
  diverged (``diverged``, its step) ends in an ``x`` with a note inside the axes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from xpnet.plots.base import PALETTE, draw_refs, page_figure, save_page, spread

#: How a curve draws its k models (see the module's docstring).
SEEDS = ("band", "thin", "each")


@dataclasses.dataclass
class Curve:
    """One setting: ``x`` ``(n,)`` and ``values`` ``(n,)`` or ``(n, k)``, drawn as ``seeds`` says.

    ``diverged`` ``(k,)``: each model's divergence step, -1 for never (``seeds="each"``).
    ``width`` (default 1.6; 1.3 for ``"each"``) and ``marker`` keep a line visible where
    another overlaps it; the marker is drawn every tenth of the way at size 4, or at
    every point for ``"each"`` (lines of a few points, such as one per layer).

    Args:
        label: the legend entry.
        x: ``(n,)`` x values (update steps, epochs, ...).
        values: ``(n,)`` or ``(n, k)``: k models' values at each x (NaN: none).
        linestyle: matplotlib's line style (``"-"``, ``"--"``, ...).
        color: a colour; None takes the panel's next :data:`~xpnet.plots.base.PALETTE` one.
        seeds: ``"band"``, ``"thin"`` or ``"each"`` (see the module's docstring).
        width, marker: line width and marker (see above).
        diverged: ``(k,)`` divergence steps, -1 for never (``seeds="each"``).

    >>> curve = Curve("BN", x=[0, 50, 100], values=[[2.3, 2.2], [1.6, 1.8], [1.2, 1.4]])
    >>> curve.seeds, curve.linestyle
    ('band', '-')
    """

    label: str
    x: object
    values: object
    linestyle: str = "-"
    color: str | None = None
    seeds: str = "band"
    width: float | None = None
    marker: str | None = None
    diverged: object = None

    def __post_init__(self):
        if self.seeds not in SEEDS:
            raise ValueError(f"Curve seeds must be one of {SEEDS}, not {self.seeds!r}.")


@dataclasses.dataclass
class Panel:
    """One subplot: a title, axis labels, its curves and reference lines.

    ``refs`` are :class:`~xpnet.plots.base.Ref` lines or ``(y, label)`` pairs (e.g. the
    chance level); ``spans`` are shaded x ranges ``(lo, hi, label, color)`` under the
    curves; ``ylim`` fixes the y range (else automatic, or shared by :func:`plot_panels`);
    ``xticks`` is ``(positions, labels)`` or None (automatic).

    Args:
        title: the subplot's title.
        ylabel: its y-axis label.
        curves: :class:`Curve` objects.
        xlabel: its x-axis label (default ``"update step"``).
        logy, logx: log scales.
        refs, ylim, spans, xticks: see above.

    >>> panel = Panel("loss", "cross-entropy", [Curve("BN", [0, 1], [2.3, 1.9])],
    ...               refs=[(2.303, "chance")])
    >>> panel.xlabel, len(panel.curves)
    ('update step', 1)
    """

    title: str
    ylabel: str
    curves: list
    xlabel: str = "update step"
    logy: bool = False
    refs: list = dataclasses.field(default_factory=list)
    ylim: tuple | None = None
    logx: bool = False
    spans: list = dataclasses.field(default_factory=list)
    xticks: tuple | None = None


def draw_curve(ax, curve: Curve, color) -> None:
    """Draw one :class:`Curve` in ``color`` as its ``seeds`` says.

    Args:
        ax: a matplotlib Axes.
        curve: the :class:`Curve`.
        color: its colour.

    Returns:
        None.

    >>> from xpnet.plots.base import page_figure, plt
    >>> fig, (ax,) = page_figure(1)
    >>> draw_curve(ax, Curve("BN", [0, 1, 2], [[3, 2], [2, 1], [1, 1]]), "#0072B2")
    >>> [line.get_label() for line in ax.lines], len(ax.collections)  # line and band
    (['BN'], 1)
    >>> plt.close(fig)
    """
    x = np.asarray(curve.x, dtype=np.float64)
    v = np.asarray(curve.values, dtype=np.float64)
    if curve.seeds == "each":
        draw_each_seed(ax, curve, x, v, color)
        return
    width = 1.6 if curve.width is None else curve.width
    style = dict(ls=curve.linestyle, color=color, marker=curve.marker, markevery=0.1,
                 markersize=4)
    if curve.seeds == "thin" and v.ndim == 2 and v.shape[1] > 1:
        for j in range(v.shape[1]):
            ax.plot(x, v[:, j], lw=0.5 * width + 0.2, alpha=0.85,
                    label=f"{curve.label} (each seed)" if j == 0 else None, **style)
        return
    mid, lo, hi = spread(v)
    ax.plot(x, mid, lw=width, label=curve.label, **style)
    if v.ndim == 2 and v.shape[1] > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)


def draw_each_seed(ax, curve: Curve, x, y, color) -> None:
    """Every model a line (legend label once); a diverged one ends in an ``x`` and a note."""
    y = y[:, None] if y.ndim == 1 else y
    div = (np.full(y.shape[1], -1) if curve.diverged is None
           else np.asarray(curve.diverged, dtype=np.float64).reshape(-1))
    width = 1.3 if curve.width is None else curve.width
    labelled, marked = False, False
    for j in range(y.shape[1]):
        ok = np.isfinite(y[:, j])
        if not ok.any():
            continue
        ax.plot(x[ok], y[ok, j], ls=curve.linestyle, marker=curve.marker, color=color,
                lw=width, alpha=0.9 if y.shape[1] == 1 else 0.75,
                label=None if labelled else curve.label)
        labelled = True
        if div[j] >= 0:
            last = np.flatnonzero(ok)[-1]
            ax.plot(x[last], y[last, j], "x", color=color, ms=9, mew=2.2, zorder=5)
            if not marked:
                n_div = int((div >= 0).sum())
                text = "diverged" if n_div == y.shape[1] else f"{n_div}/{y.shape[1]} diverged"
                text += f" (step {int(div[div >= 0].min())})"
                note = ax.annotate(text, (x[last], y[last, j]), xytext=(4, 6),
                                   textcoords="offset points", color=color, fontsize="small",
                                   fontweight="bold", annotation_clip=True,
                                   bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none",
                                             alpha=0.8))
                note.divergence_note = True
                marked = True


def keep_notes_inside(ax) -> None:
    """Turn divergence notes towards the inside of the axes (call once limits are set)."""
    to_axes = ax.transAxes.inverted()
    notes = [t for t in ax.texts if getattr(t, "divergence_note", False)]
    for k, note in enumerate(notes):  # stacked: one line of text apart
        fx, fy = to_axes.transform(ax.transData.transform(note.xy))
        right, top = fx > 0.55, fy > 0.75
        note.set_horizontalalignment("right" if right else "left")
        note.set_verticalalignment("top" if top else "bottom")
        note.xyann = (-6 if right else 6, -8 - 14 * k if top else 6 + 14 * k)


def plot_panels(path, title: str, panels: list[Panel], *, caption: str = "",
                ncols: int | None = None, panel_height: float = 3.0, sharex=False,
                sharey=False, legend: int | None = None) -> Path:
    """Curve panels on one page-wide figure; returns the path.

    Curves without a colour take :data:`~xpnet.plots.base.PALETTE` colours in order.
    ``legend`` puts one legend in that panel (default: one in every panel that has
    labelled lines).  With ``sharex`` only the bottom row gets x labels.

    Args:
        path: where to write the PNG (e.g. the first item of
            ``ctx.figure_path_and_link(name)``).
        title: the figure's title.
        panels: :class:`Panel` objects, one subplot each.
        caption: text under the panels.
        ncols: subplots per row (default: all in one row).
        panel_height: inches per row.
        sharex, sharey: shared axes, as in ``matplotlib.pyplot.subplots``.
        legend: the index of the one panel that gets a legend (default: every panel).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    >>> import tempfile
    >>> steps = [0, 50, 100]
    >>> loss = Panel("loss", "cross-entropy", [
    ...     Curve("training", steps, [[2.3, 2.3], [1.7, 1.8], [1.4, 1.5]]),
    ...     Curve("validation", steps, [[2.3, 2.3], [1.9, 2.0], [1.8, 1.8]], "--")])
    >>> path = plot_panels(Path(tempfile.mkdtemp()) / "loss.png", "Loss", [loss],
    ...                    caption="Median of 2 seeds; band: their range.")
    >>> path.name, path.stat().st_size > 0
    ('loss.png', True)
    """
    fig, axes = page_figure(len(panels), ncols, panel_height, sharex, sharey)
    for i, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
        for lo, hi, label, color in panel.spans:
            ax.axvspan(lo, hi, color=color, alpha=0.15, lw=0, label=label)
        for k, curve in enumerate(panel.curves):
            draw_curve(ax, curve, curve.color or PALETTE[k % len(PALETTE)])
        draw_refs(ax, panel.refs)
        if panel.logx:
            ax.set_xscale("log")
        if panel.logy:
            ax.set_yscale("log")
        if panel.xticks is not None:
            ax.set_xticks(*panel.xticks)
        if panel.ylim is not None:
            ax.set_ylim(*panel.ylim)
        ax.set_title(panel.title)
        if not sharex or i >= len(panels) - (ncols or len(panels)):  # bottom row only
            ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        keep_notes_inside(ax)
        if (legend is None or legend == i) and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    return save_page(fig, path, title, caption)

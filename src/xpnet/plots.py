"""Figures from saved results, sized for a page: about 990 px wide at 110 dpi.

Everything here takes plain host arrays (from ``results.json``), draws with the Agg
backend (no display needed) and writes PNGs atomically (:func:`save_figure`).

A curve's ``values`` are ``(n_points, k)``: k models, usually seeds.  By default the
line is their median and the shaded band their min-max range, so the band never
leaves the range of the data; a curve marked ``per_seed`` (seeds that split, some
training and some stuck) draws each model as its own thin line instead.  NaN entries
(a diverged model) are left out.  Each figure carries a caption under its panels that
says what the lines and bands are (:func:`spread_caption` words the usual one).
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

from xpnet.atomic import atomic_write  # noqa: E402
from xpnet.codec import to_float_array  # noqa: E402

#: Figure width in inches; at :data:`DPI` this is ~990 px, a markdown page's width.
PAGE_WIDTH = 9.0
DPI = 110
#: Colour-blind safe colours (Okabe-Ito), in the order settings get them.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
#: Style of reference lines (chance level, targets).
REF_STYLE = dict(color="0.35", ls=":", lw=1.2)


@dataclasses.dataclass
class Curve:
    """One setting: ``x`` ``(n,)`` and ``values`` ``(n,)`` or ``(n, k)``.

    ``per_seed`` draws the k models as thin lines instead of median and min-max band.
    ``width`` and ``marker`` keep a line visible where another overlaps it.
    """

    label: str
    x: object
    values: object
    linestyle: str = "-"
    color: str | None = None
    per_seed: bool = False
    width: float = 1.6
    marker: str | None = None


@dataclasses.dataclass
class Panel:
    """One subplot: a title, axis labels, its curves and horizontal reference lines.

    ``refs`` are ``(y, label)`` pairs (e.g. the chance level), drawn dotted; ``ylim``
    fixes the y range (else automatic, or shared by :func:`plot_panels`).
    """

    title: str
    ylabel: str
    curves: list
    xlabel: str = "update step"
    logy: bool = False
    refs: list = dataclasses.field(default_factory=list)
    ylim: tuple | None = None


def spread(values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NaN-ignoring median, min and max over the last axis of ``(n, k)``; ``(n,)`` each."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        return v, v, v
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        return np.nanmedian(v, axis=-1), np.nanmin(v, axis=-1), np.nanmax(v, axis=-1)


def spread_caption(n_models: int, what: str = "seeds") -> str:
    """The caption sentence for :func:`draw_curve`'s lines and bands over ``n_models``."""
    if n_models <= 1:
        return "One run per line."
    return (f"Line: median of {n_models} {what}; band: their min-max range. Where the "
            f"{what} split (some train, some stay at chance), each is a thin line instead.")


def save_figure(fig, path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return path


def page_figure(n_panels: int, ncols: int | None = None, panel_height: float = 3.0,
                sharex=False, sharey=False, width: float = PAGE_WIDTH):
    """A page-wide figure of ``n_panels`` subplots; returns ``(fig, axes)`` (a list)."""
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
    """The figure's title on top and ``caption`` (wrapped to the width) underneath."""
    fig.suptitle(title)
    if caption:
        chars = int(fig.get_figwidth() * 13)  # small-font characters per inch, about
        fig.supxlabel(textwrap.fill(caption, chars), fontsize="small")


def draw_curve(ax, curve: Curve, color) -> None:
    """Median line and min-max band, or one thin line per model (``curve.per_seed``)."""
    x = np.asarray(curve.x, dtype=np.float64)
    v = np.asarray(curve.values, dtype=np.float64)
    style = dict(ls=curve.linestyle, color=color, marker=curve.marker, markevery=0.1,
                 markersize=4)
    if curve.per_seed and v.ndim == 2 and v.shape[1] > 1:
        for j in range(v.shape[1]):
            ax.plot(x, v[:, j], lw=0.5 * curve.width + 0.2, alpha=0.85,
                    label=f"{curve.label} (each seed)" if j == 0 else None, **style)
        return
    mid, lo, hi = spread(v)
    ax.plot(x, mid, lw=curve.width, label=curve.label, **style)
    if v.ndim == 2 and v.shape[1] > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)


def draw_refs(ax, refs) -> None:
    """Dotted horizontal reference lines ``(y, label)``."""
    for y, label in refs:
        ax.axhline(y, label=label, **REF_STYLE)


def plot_panels(path, title: str, panels: list[Panel], *, caption: str = "",
                ncols: int | None = None, panel_height: float = 3.0, sharex=False,
                sharey=False, legend: int | None = None) -> Path:
    """Curve panels on one page-wide figure; returns the path.

    Curves without a colour take :data:`PALETTE` colours in order.  ``legend`` puts
    one legend in that panel (default: one in every panel).
    """
    fig, axes = page_figure(len(panels), ncols, panel_height, sharex, sharey)
    for i, (ax, panel) in enumerate(zip(axes, panels)):
        for k, curve in enumerate(panel.curves):
            draw_curve(ax, curve, curve.color or PALETTE[k % len(PALETTE)])
        draw_refs(ax, panel.refs)
        if panel.logy:
            ax.set_yscale("log")
        if panel.ylim is not None:
            ax.set_ylim(*panel.ylim)
        ax.set_title(panel.title)
        if not sharex or i >= len(panels) - (ncols or len(panels)):  # bottom row only
            ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if legend is None or legend == i:
            ax.legend(fontsize="small")
    add_caption(fig, title, caption)
    return save_figure(fig, path)


# ------------------------------------------------------------- training curves
#: The metrics of ``History.to_dict()`` that :func:`training_panels` draws.
METRIC_LABELS = {"cost": "cost (loss + L2)", "loss": "cross-entropy loss",
                 "accuracy": "accuracy (%)"}


def metric_values(history: dict, key: str, columns=None) -> np.ndarray:
    """History metric ``key`` as floats ``(n_points, k)``; accuracies in percent."""
    values = to_float_array(history["metrics"][key])
    if columns is not None:
        values = values[:, list(columns)]
    return 100 * values if key.endswith("accuracy") else values


def chance_refs(metric: str, n_classes: int | None) -> list:
    """The chance level of ``metric`` for ``n_classes`` guessed uniformly, as refs."""
    if not n_classes or metric == "cost":
        return []
    if metric == "loss":
        return [(math.log(n_classes), f"chance (ln {n_classes})")]
    return [(100 / n_classes, f"chance ({100 / n_classes:g} %)")]


def metric_curves(history: dict, metric: str, columns=None, label: str = "",
                  color: str | None = None, per_seed: bool = False, **style) -> list[Curve]:
    """Training (solid) and validation (dashed) curves of ``metric`` (cost, loss, accuracy)."""
    curves = []
    for split, ls, name in (("train", "-", "training"), ("val", "--", "validation")):
        key = f"{split}_{metric}"
        if key in history["metrics"]:
            curves.append(Curve(f"{label}{name}", history["steps"],
                                metric_values(history, key, columns), ls, color, per_seed,
                                **style))
    return curves


def training_panels(history: dict, columns=None, label: str = "", n_classes: int | None = None,
                    per_seed: bool = False, metrics=("cost", "loss", "accuracy")) -> list[Panel]:
    """Cost, loss and accuracy (%) panels, training vs validation, from ``History.to_dict()``.

    ``columns`` selects models (e.g. the seeds of one setting); default all.  With
    ``n_classes`` the loss and accuracy panels get a chance-level reference line.
    """
    return [Panel(metric, METRIC_LABELS[metric],
                  metric_curves(history, metric, columns, label, per_seed=per_seed),
                  refs=chance_refs(metric, n_classes))
            for metric in metrics]


# ------------------------------------------------------------------ x-y plots
def plot_xy(path, title: str, xlabel: str, ylabel: str, series: dict, *, caption: str = "",
            marks=(), refs=()) -> Path:
    """Markers joined by lines: ``series = {label: (x (n,), y (n,) or (n, k))}``.

    A 2-D ``y`` draws its median with a min-max error bar.  ``marks`` are
    ``(x, y, label)`` points to single out (e.g. the chosen value): a star and a
    vertical line; ``refs`` are horizontal ``(y, label)`` lines.
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
    add_caption(fig, title, caption)
    return save_figure(fig, path)


# ------------------------------------------------------------------- dot rows
@dataclasses.dataclass
class DotPanel:
    """One subplot of :func:`plot_dot_rows`: ``series = {name: (n_rows,) values}``.

    NaN means "no such entry in this row" (nothing is drawn).
    """

    title: str
    series: dict


def plot_dot_rows(path, title: str, rows: list[str], panels: list[DotPanel], xlabel: str, *,
                  caption: str = "", refs=(), ncols: int = 2, floor: float = 1e-17) -> Path:
    """Log-x dot plots with one row per item (top to bottom), panels sharing both axes.

    Each series has its own marker, a little above or below the row's centre, so the
    entries of a row never hide each other.  ``refs`` are vertical ``(x, label)``
    lines (targets); values below ``floor`` (exact zeros) are drawn at ``floor``.
    The height grows with the rows, the width stays a page's.
    """
    n = len(rows)
    fig, axes = page_figure(len(panels), ncols, panel_height=max(2.8, 0.6 + 0.3 * n),
                            sharex=True, sharey=True)
    names = list(dict.fromkeys(name for p in panels for name in p.series))
    markers = "os^Dvp"
    offsets = (np.arange(len(names)) - (len(names) - 1) / 2) * min(0.18, 0.7 / len(names))
    ref_colors = ("#009E73", "#D55E00", "#CC79A7")
    drawn = [x for x, _ in refs]
    for ax, panel in zip(axes, panels):
        for k, name in enumerate(names):
            if name not in panel.series:
                continue
            v = np.asarray(panel.series[name], dtype=np.float64)
            ok = np.isfinite(v)
            xs = np.maximum(v[ok], floor)
            drawn += xs.tolist()
            ax.plot(xs, np.flatnonzero(ok) + offsets[k], markers[k % len(markers)],
                    color=PALETTE[k % len(PALETTE)], ms=5, ls="none", label=name)
        for j, (x, label) in enumerate(refs):
            ax.axvline(x, color=ref_colors[j % len(ref_colors)], ls="--", lw=1.2, label=label)
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
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    order = [label for label in [*names, *(label for _, label in refs)] if label in legend]
    fig.legend([legend[label] for label in order], order, loc="outside right center",
               fontsize="small")
    add_caption(fig, title, caption)
    return save_figure(fig, path)

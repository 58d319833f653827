"""Figures of the studies that compare settings over seeds: one thin line (or dot) per seed.

A mean ± std band over seeds that split (some train, some stay at chance) draws values
no seed produced, so these figures show every seed: a curve is one thin line per seed,
a bar is the mean of the seeds that did not diverge with each seed as a dot on it.
Divergence is marked inside the axes where it happened: an ``x`` at the last finite
point of a curve, a hatched bar (up to the last finite validation accuracy) labelled
"diverged".  Accuracies are in percent.  Every figure carries a caption (what a line,
dot and band are) under its panels and is sized for a page (about 1000 px wide).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xpnet.plots import PALETTE, add_caption, page_figure, plt, save_figure

#: Chance accuracy on 10 classes, in percent.
CHANCE = 10.0
#: Colours of the settings a figure compares (xpnet.plots' colour-blind-safe palette).
COLORS = PALETTE


@dataclasses.dataclass
class Line:
    """One setting: ``x`` ``(n,)`` and ``y`` ``(n,)`` or ``(n, k)`` (k seeds, one line each).

    ``diverged`` ``(k,)`` holds each seed's divergence step (-1: never); a diverged
    seed's line ends at its last finite point, marked with an ``x``.
    """

    label: str
    x: object
    y: object
    color: str | None = None
    style: str = "-"
    diverged: object = None
    width: float = 1.3


@dataclasses.dataclass
class LinePanel:
    """One subplot of :func:`plot_lines`."""

    title: str
    ylabel: str
    lines: list
    xlabel: str = "update step"
    logx: bool = False
    logy: bool = False
    #: Reference lines ``(value, label, color, style)``: horizontal (y) and vertical (x).
    hlines: list = dataclasses.field(default_factory=list)
    vlines: list = dataclasses.field(default_factory=list)
    #: Shaded x ranges ``(lo, hi, label, color)``.
    spans: list = dataclasses.field(default_factory=list)
    ylim: tuple | None = None
    #: ``(positions, labels)`` of the x ticks, or None (automatic).
    xticks: tuple | None = None


@dataclasses.dataclass
class BarPanel:
    """One subplot of :func:`plot_bars`: groups on x, one bar per series in each.

    ``series`` maps a name to ``(values, diverged, last)``, each ``(G, k)``: per group
    and seed the value (NaN if diverged), whether it diverged, and the last finite
    value before it did (drawn as a hatched bar when all seeds of a cell diverged).
    """

    title: str
    ylabel: str
    groups: list
    series: dict
    xlabel: str = ""
    chance: float | None = CHANCE


def _figure(n_panels: int, ncols: int | None, height: float, sharey: bool, sharex=False):
    return page_figure(n_panels, ncols, panel_height=height, sharex=sharex, sharey=sharey)


def draw_line(ax, line: Line, color) -> None:
    """Draw one :class:`Line` (every seed; the legend label once; divergence marks)."""
    x = np.asarray(line.x, dtype=np.float64)
    y = np.asarray(line.y, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    div = (np.full(y.shape[1], -1) if line.diverged is None
           else np.asarray(line.diverged, dtype=np.float64).reshape(-1))
    labelled, marked = False, False
    for j in range(y.shape[1]):
        ok = np.isfinite(y[:, j])
        if not ok.any():
            continue
        ax.plot(x[ok], y[ok, j], line.style, color=color, lw=line.width,
                alpha=0.9 if y.shape[1] == 1 else 0.75,
                label=None if labelled else line.label)
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


def plot_lines(path, title: str, panels: list[LinePanel], caption: str, *, ncols=None,
               height: float = 3.3, sharey: bool | str = False, legend_panel: int | None = None,
               ylim=None):
    """Panels of per-seed lines; one legend (in ``legend_panel``, default every panel)."""
    fig, axes = _figure(len(panels), ncols, height, sharey)
    for i, (ax, panel) in enumerate(zip(axes, panels)):
        for lo, hi, label, color in panel.spans:
            ax.axvspan(lo, hi, color=color, alpha=0.15, lw=0, label=label)
        for k, line in enumerate(panel.lines):
            draw_line(ax, line, line.color or COLORS[k % len(COLORS)])
        for value, label, color, style in panel.hlines:
            ax.axhline(value, color=color, ls=style, lw=1.0, label=label)
        for value, label, color, style in panel.vlines:
            ax.axvline(value, color=color, ls=style, lw=1.2, label=label)
        if panel.logx:
            ax.set_xscale("log")
        if panel.logy:
            ax.set_yscale("log")
        if panel.xticks is not None:
            ax.set_xticks(*panel.xticks)
        if (panel.ylim or ylim) is not None:
            ax.set_ylim(*(panel.ylim or ylim))
        ax.set_title(panel.title)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        keep_notes_inside(ax)
        if legend_panel is None or legend_panel == i:
            handles, labels = ax.get_legend_handles_labels()
            if handles:
                ax.legend(fontsize="small", loc="best")
    add_caption(fig, title, caption)
    return save_figure(fig, path)


def plot_bars(path, title: str, panels: list[BarPanel], caption: str, *, ncols=None,
              height: float = 3.6, ymax: float | None = None):
    """Grouped bars (mean over the seeds that trained), each seed a dot on its bar.

    A cell whose seeds all diverged is a hatched outline up to their last finite
    value, labelled "diverged" inside the axes; a diverged seed of a cell that
    otherwise trained is an ``x`` at its last finite value.
    """
    fig, axes = _figure(len(panels), ncols, height, sharey=True)
    any_x = any_hatch = False
    for ax, panel in zip(axes, panels):
        G, S = len(panel.groups), len(panel.series)
        width = 0.8 / max(1, S)
        centres = np.arange(G)
        for i, (name, (values, diverged, last)) in enumerate(panel.series.items()):
            color = COLORS[i % len(COLORS)]
            values = np.asarray(values, dtype=np.float64).reshape(G, -1)
            diverged = np.asarray(diverged, dtype=bool).reshape(G, -1)
            last = np.asarray(last, dtype=np.float64).reshape(G, -1)
            pos = centres - 0.4 + width * (i + 0.5)
            ok = np.isfinite(values) & ~diverged
            with np.errstate(invalid="ignore"):
                means = np.array([values[g, ok[g]].mean() if ok[g].any() else np.nan
                                  for g in range(G)])
            drawn = np.isfinite(means)
            ax.bar(pos[drawn], means[drawn], width, color=color, alpha=0.85, label=name)
            k = values.shape[1]
            jitter = (np.arange(k) - (k - 1) / 2) * width / max(k, 4)
            for g in range(G):
                if drawn[g]:
                    ax.plot(pos[g] + jitter[ok[g]], values[g, ok[g]], "o", color="black",
                            ms=3.5, zorder=4)
                    inside = means[g] > 8
                    ax.text(pos[g], means[g] / 2 if inside else means[g] + 1,
                            f"{means[g]:.1f}", ha="center", va="center" if inside else "bottom",
                            fontsize="small", color="white" if inside else "black",
                            fontweight="bold", clip_on=True)
                bad = diverged[g] & np.isfinite(last[g])
                if drawn[g] and bad.any():
                    ax.plot(pos[g] + jitter[bad], last[g, bad], "x", color="black", ms=6,
                            mew=1.8, zorder=4)
                    any_x = True
                elif not drawn[g]:
                    any_hatch = True
                    height_g = float(np.nanmean(last[g])) if np.isfinite(last[g]).any() else 0
                    ax.bar(pos[g], height_g, width, facecolor="none", edgecolor=color,
                           hatch="///", lw=1.2)
                    ax.text(pos[g], max(height_g, 0) + 1.0, "diverged", rotation=90,
                            ha="center", va="bottom", fontsize="small", color=color,
                            fontweight="bold", clip_on=True)
        if panel.chance is not None:
            ax.axhline(panel.chance, color="grey", ls=":", lw=1.0, label="chance (10 %)")
        ax.set_xticks(centres, panel.groups)
        ax.set_title(panel.title)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(axis="y", alpha=0.3)
        if ymax is not None:
            ax.set_ylim(0, ymax)
    handles, labels = axes[0].get_legend_handles_labels()
    seed = plt.Line2D([], [], ls="", marker="o", color="black", ms=3.5, label="one seed")
    extra = [seed]
    if any_hatch:
        extra.append(plt.Rectangle((0, 0), 1, 1, facecolor="none", edgecolor="black",
                                   hatch="///", label="all seeds diverged (last finite val.)"))
    if any_x:
        extra.append(plt.Line2D([], [], ls="", marker="x", color="black", ms=6, mew=1.8,
                                label="diverged seed (last finite val.)"))
    entries = handles + extra
    # Across the top of the last panel, above the bars (callers leave the headroom).
    axes[-1].legend(entries, labels + [h.get_label() for h in extra], fontsize="small",
                    loc="upper center", ncols=min(len(entries), 5 if len(axes) == 1 else 3),
                    framealpha=0.9)
    add_caption(fig, title, caption)
    return save_figure(fig, path)


def plot_heatmaps(path, title: str, panels: list, caption: str, *, cbar_label: str,
                  ylabel: str = "", height: float = 3.4, vmin=None, vmax=None):
    """Side-by-side heat maps sharing one colour scale.

    Args:
        panels: ``(title, matrix (rows, n), x (n,), row_labels, xlabel)`` tuples; colours
            are ``log10(matrix)``.
    """
    logs = [np.log10(np.maximum(np.asarray(m, dtype=np.float64), 1e-30)) for _, m, *_ in panels]
    finite = np.concatenate([v[np.isfinite(v)] for v in logs])
    vmin = np.floor(finite.min()) if vmin is None else vmin
    vmax = np.ceil(finite.max()) if vmax is None else vmax
    fig, axes = _figure(len(panels), None, height, sharey=True)
    image = None
    for ax, (ptitle, _, x, rows, xlabel), values in zip(axes, panels, logs):
        x = np.asarray(x, dtype=np.float64)
        edges = np.concatenate([[x[0]], (x[1:] + x[:-1]) / 2, [x[-1]]])
        image = ax.pcolormesh(edges, np.arange(len(rows) + 1), values, cmap="viridis",
                              vmin=vmin, vmax=vmax, shading="flat")
        ax.set_yticks(np.arange(len(rows)) + 0.5, rows)
        ax.invert_yaxis()
        ax.set_title(ptitle)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel(ylabel)
    cbar = fig.colorbar(image, ax=axes, shrink=0.9)
    cbar.set_label(cbar_label)
    add_caption(fig, title, caption)
    return save_figure(fig, path)

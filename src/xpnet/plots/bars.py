"""Grouped bars over seeds: :class:`BarPanel` and :func:`plot_bars`.

A bar is the mean of the seeds that did not diverge, with each seed a dot on it (a
mean ± std over seeds that split, some training and some at chance, would draw a
value no seed produced).  A cell whose seeds all diverged is a hatched bar up to their
last finite value, labelled "diverged" inside the axes.  Values are in percent.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from xpnet.plots.base import PALETTE, Ref, draw_refs, page_figure, plt, save_page


@dataclasses.dataclass
class BarPanel:
    """One subplot of :func:`plot_bars`: groups on x, one bar per series in each.

    ``series`` maps a name to ``(values, diverged, last)``, each ``(G, k)``: per group
    and seed the value (NaN if diverged), whether it diverged, and the last finite
    value before it did (drawn as a hatched bar when all seeds of a cell diverged).
    ``chance``: a dotted reference line at that value (in percent), or None.

    Args:
        title: the subplot's title.
        ylabel: its y-axis label.
        groups: the G group labels on x.
        series: ``{name: (values, diverged, last)}``, each ``(G, k)`` (see above).
        xlabel: its x-axis label.
        chance: see above.

    >>> panel = BarPanel("3-layer", "test accuracy (%)", ["BN", "no BN"],
    ...                  {"sigma 0.1": ([[53.0, 52.6], [51.9, 52.2]], [[0, 0], [0, 0]],
    ...                                 [[53.0, 52.6], [51.9, 52.2]])}, chance=10.0)
    >>> panel.groups, panel.chance
    (['BN', 'no BN'], 10.0)
    """

    title: str
    ylabel: str
    groups: list
    series: dict
    xlabel: str = ""
    chance: float | None = None


def draw_bars(ax, panel: BarPanel) -> tuple[bool, bool]:
    """Draw one panel's bars, dots and marks; returns (any diverged seed, any hatched bar)."""
    any_x = any_hatch = False
    G, S = len(panel.groups), len(panel.series)
    width = 0.8 / max(1, S)
    centres = np.arange(G)
    for i, (name, (values, diverged, last)) in enumerate(panel.series.items()):
        color = PALETTE[i % len(PALETTE)]
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
        draw_refs(ax, [Ref(panel.chance, f"chance ({panel.chance:g} %)", "grey", width=1.0)])
    ax.set_xticks(centres, panel.groups)
    return any_x, any_hatch


def plot_bars(path, title: str, panels: list[BarPanel], *, caption: str = "", ncols=None,
              panel_height: float = 3.6, ymax: float | None = None) -> Path:
    """Grouped bars (mean over the seeds that trained), each seed a dot on its bar.

    A cell whose seeds all diverged is a hatched outline up to their last finite
    value, labelled "diverged" inside the axes; a diverged seed of a cell that
    otherwise trained is an ``x`` at its last finite value.  One legend, across the
    top of the last panel (leave headroom with ``ymax``).

    Args:
        path: where to write the PNG.
        title: the figure's title.
        panels: :class:`BarPanel` objects, one subplot each (sharing y).
        caption: text under the panels.
        ncols: panels per row (default: all in one row).
        panel_height: inches per row.
        ymax: the top of the y axis (default automatic).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    >>> import tempfile
    >>> values = [[53.0, 52.6], [float("nan"), float("nan")]]  # (2 groups, 2 seeds)
    >>> panel = BarPanel("3-layer", "test accuracy (%)", ["eta 0.03", "eta 0.8"],
    ...                  {"no BN": (values, [[0, 0], [1, 1]], [[53.0, 52.6], [11.0, 9.8]])})
    >>> plot_bars(Path(tempfile.mkdtemp()) / "bars.png", "Rates", [panel], ymax=70).name
    'bars.png'
    """
    fig, axes = page_figure(len(panels), ncols, panel_height, sharey=True)
    any_x = any_hatch = False
    for ax, panel in zip(axes, panels, strict=True):
        x, hatch = draw_bars(ax, panel)
        any_x, any_hatch = any_x or x, any_hatch or hatch
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
    axes[-1].legend(entries, labels + [h.get_label() for h in extra], fontsize="small",
                    loc="upper center", ncols=min(len(entries), 5 if len(axes) == 1 else 3),
                    framealpha=0.9)
    return save_page(fig, path, title, caption)

"""Figures from saved results: curves with a +-std band over models, bars, x-y plots.

Everything here takes plain host arrays (from ``results.json``), draws with the Agg
backend (no display needed) and writes PNGs atomically: a temp file in the target
folder, then ``os.replace``.  A curve's ``values`` are ``(n_points, k)``: k models
(usually seeds) whose mean is drawn as a line and, when ``k > 1``, mean +- std as a
shaded band.  NaN entries (a diverged model) are left out of the mean.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xpnet.atomic import atomic_write  # noqa: E402


@dataclasses.dataclass
class Curve:
    """One line: ``x`` ``(n,)`` and ``values`` ``(n,)`` or ``(n, k)``."""

    label: str
    x: object
    values: object
    linestyle: str = "-"
    color: str | None = None


@dataclasses.dataclass
class Panel:
    """One subplot: a title, axis labels and its curves."""

    title: str
    ylabel: str
    curves: list
    xlabel: str = "update step"
    logy: bool = False


def mean_std(values) -> tuple[np.ndarray, np.ndarray]:
    """NaN-ignoring mean and std over the last axis of ``(n, k)``; ``(n,)`` each."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        return v, np.zeros_like(v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        return np.nanmean(v, axis=-1), np.nanstd(v, axis=-1)


def save_figure(fig, path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format="png", dpi=110)
    finally:
        plt.close(fig)
    return path


def plot_panels(path, title: str, panels: list[Panel], ncols: int | None = None) -> Path:
    """A row (or grid) of curve panels sharing one title; returns the path."""
    ncols = ncols or len(panels)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False,
                             layout="constrained")
    for ax, panel in zip(axes.flat, panels):
        for curve in panel.curves:
            x = np.asarray(curve.x, dtype=np.float64)
            mean, std = mean_std(curve.values)
            (line,) = ax.plot(x, mean, curve.linestyle, color=curve.color, label=curve.label)
            if np.ndim(curve.values) == 2 and np.shape(curve.values)[1] > 1:
                ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2,
                                linewidth=0)
        if panel.logy:
            ax.set_yscale("log")
        ax.set_title(panel.title)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if panel.curves:
            ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return save_figure(fig, path)


def training_panels(history: dict, columns=None, label: str = "") -> list[Panel]:
    """Cost, loss and accuracy panels, train vs validation, from ``History.to_dict()``.

    ``columns`` selects models (e.g. the seeds of one setting); default all.
    """
    steps = history["steps"]
    panels = []
    for metric, ylabel in (("cost", "cost"), ("loss", "cross-entropy loss"),
                           ("accuracy", "accuracy")):
        curves = []
        for split, style in (("train", "-"), ("val", "--")):
            key = f"{split}_{metric}"
            if key not in history["metrics"]:
                continue
            values = _nan_array(history["metrics"][key])
            if columns is not None:
                values = values[:, list(columns)]
            name = "training" if split == "train" else "validation"
            curves.append(Curve(f"{label}{name}", steps, values, style))
        panels.append(Panel(metric, ylabel, curves))
    return panels


def plot_grouped_bars(path, title: str, groups: list[str], series: dict, ylabel: str,
                      xlabel: str = "", logy: bool = False, floor: float = 1e-17,
                      missing_text: str = "") -> Path:
    """Bars for ``groups`` (x ticks), one colour per series.

    Args:
        series: ``{name: (means, stds)}``, each ``(len(groups),)``; ``stds`` may be None.
            A NaN mean draws no bar but writes ``missing_text`` (e.g. "diverged").
        logy: log y axis; values are clipped below at ``floor``.
    """
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(groups) * max(1, len(series))), 4.0),
                           layout="constrained")
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (name, (means, stds)) in enumerate(series.items()):
        means = np.asarray(means, dtype=np.float64)
        heights = np.maximum(means, floor) if logy else means
        err = None if stds is None else np.asarray(stds, dtype=np.float64)
        pos = x - 0.4 + width * (i + 0.5)
        ok = np.isfinite(heights)
        ax.bar(pos[ok], heights[ok], width, yerr=None if err is None else err[ok], label=name,
               capsize=3)
        if missing_text:
            for p, m in zip(pos, means):
                if not np.isfinite(m):
                    ax.text(p, floor if logy else 0.0, missing_text, rotation=90,
                            ha="center", va="bottom", fontsize="small")
    if logy:
        ax.set_yscale("log")
    ax.set_xticks(x, groups, rotation=45 if len(groups) > 6 else 0,
                  ha="right" if len(groups) > 6 else "center")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_xy(path, title: str, xlabel: str, ylabel: str, series: dict) -> Path:
    """Markers joined by lines: ``series = {label: (x (n,), y (n,) or (n, k))}``."""
    fig, ax = plt.subplots(figsize=(6.0, 4.0), layout="constrained")
    for label, (xs, ys) in series.items():
        xs = np.asarray(xs, dtype=np.float64)
        order = np.argsort(xs)
        mean, std = mean_std(ys)
        ax.errorbar(xs[order], mean[order], yerr=std[order], marker="o", capsize=3,
                    label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def _nan_array(rows) -> np.ndarray:
    """JSON rows (None for NaN) as a float array ``(n, M)``."""
    return np.array([[np.nan if v is None else v for v in row] for row in rows],
                    dtype=np.float64)

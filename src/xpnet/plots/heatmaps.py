"""Heat maps over x and rows (e.g. layers over training) sharing one log colour scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xpnet.plots.base import page_figure, save_page


def plot_heatmaps(path, title: str, panels: list, *, caption: str = "", cbar_label: str,
                  ylabel: str = "", panel_height: float = 3.4, vmin=None, vmax=None) -> Path:
    """Side-by-side heat maps sharing one colour scale.

    Args:
        path: where to write the PNG.
        title: the figure's title.
        panels: ``(title, matrix (rows, n), x (n,), row_labels, xlabel)`` tuples; colours
            are ``log10(matrix)``, from ``vmin`` to ``vmax`` (default: whole decades
            around the finite values).
        caption: text under the panels.
        cbar_label: the colour bar's label.
        ylabel: the first panel's y-axis label.
        panel_height: inches.
        vmin, vmax: the colour scale's ends, in log10 units.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    >>> import tempfile
    >>> var = [[1e-2, 1e-1, 1.0], [1e-4, 1e-3, 1e-2]]  # (2 layers, 3 points)
    >>> path = plot_heatmaps(Path(tempfile.mkdtemp()) / "var.png", "Variance",
    ...                      [("BN", var, [0, 50, 100], ["layer 1", "layer 2"], "step")],
    ...                      cbar_label="log10 variance")
    >>> path.name
    'var.png'
    """
    logs = [np.log10(np.maximum(np.asarray(m, dtype=np.float64), 1e-30)) for _, m, *_ in panels]
    finite = np.concatenate([v[np.isfinite(v)] for v in logs])
    vmin = np.floor(finite.min()) if vmin is None else vmin
    vmax = np.ceil(finite.max()) if vmax is None else vmax
    fig, axes = page_figure(len(panels), None, panel_height, sharey=True)
    image = None
    for ax, (ptitle, _, x, rows, xlabel), values in zip(axes, panels, logs, strict=True):
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
    return save_page(fig, path, title, caption)

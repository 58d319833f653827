"""Training curves from a saved history (``History.to_dict()``): curves, panels, chance lines."""

from __future__ import annotations

import math

import numpy as np

from xpnet.codec import to_float_array
from xpnet.plots.curves import Curve, Panel

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
    """The chance level of ``metric`` for ``n_classes`` guessed uniformly, as ``(y, label)``."""
    if not n_classes or metric == "cost":
        return []
    if metric == "loss":
        return [(math.log(n_classes), f"chance (ln {n_classes})")]
    return [(100 / n_classes, f"chance ({100 / n_classes:g} %)")]


def metric_curves(history: dict, metric: str, columns=None, label: str = "",
                  color: str | None = None, per_seed: bool = False, **style) -> list[Curve]:
    """Training (solid) and validation (dashed) curves of ``metric`` (cost, loss, accuracy).

    ``per_seed`` draws each model as a thin line (``Curve(seeds="thin")``) instead of a
    median and band; ``style`` goes to :class:`Curve` (``width``, ``marker``).
    """
    curves = []
    for split, ls, name in (("train", "-", "training"), ("val", "--", "validation")):
        key = f"{split}_{metric}"
        if key in history["metrics"]:
            curves.append(Curve(f"{label}{name}", history["steps"],
                                metric_values(history, key, columns), ls, color,
                                seeds="thin" if per_seed else "band", **style))
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

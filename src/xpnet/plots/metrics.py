"""Training curves from a saved history (``History.to_dict()``): curves, panels, chance lines."""

from __future__ import annotations

import math

import numpy as np

from xpnet.base.codec import to_float_array
from xpnet.plots.curves import Curve, Panel

#: The metrics of ``History.to_dict()`` that :func:`training_panels` draws.
METRIC_LABELS = {"cost": "cost (loss + L2)", "loss": "cross-entropy loss",
                 "accuracy": "accuracy (%)"}


def metric_values(history: dict, key: str, columns=None) -> np.ndarray:
    """History metric ``key`` as floats ``(n_points, k)``; accuracies in percent.

    Args:
        history: ``History.to_dict()`` (a training record's ``"history"``).
        key: a metric, e.g. ``"val_loss"`` or ``"train_accuracy"``.
        columns: model indices to keep; default every model.

    Returns:
        float64 array ``(n_points, k)``, None as NaN; a metric ending in ``accuracy``
        times 100.

    >>> history = {"steps": [0, 10], "metrics": {"val_accuracy": [[0.1, 0.1], [0.4, None]]}}
    >>> metric_values(history, "val_accuracy")
    array([[10., 10.],
           [40., nan]])
    """
    values = to_float_array(history["metrics"][key])
    if columns is not None:
        values = values[:, list(columns)]
    return 100 * values if key.endswith("accuracy") else values


def chance_refs(metric: str, n_classes: int | None) -> list:
    """The chance level of ``metric`` for ``n_classes`` guessed uniformly, as ``(y, label)``.

    Args:
        metric: ``"loss"`` (ln C), ``"accuracy"`` (100 / C %) or ``"cost"`` (none).
        n_classes: C; None or 0 gives no line.

    Returns:
        A list of ``(y, label)`` pairs (empty, or one) for a :class:`Panel`'s ``refs``.

    >>> chance_refs("accuracy", 10), chance_refs("cost", 10)
    ([(10.0, 'chance (10 %)')], [])
    """
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

    Args:
        history: ``History.to_dict()`` (a training record's ``"history"``).
        metric: ``"cost"``, ``"loss"`` or ``"accuracy"``.
        columns: model indices (e.g. ``grid.columns(lam=0.01)``); default every model.
        label: prefix of the curves' labels (``label + "training"``, ...).
        color: the curves' colour (None: the panel's next).
        per_seed: each model a thin line.

    Returns:
        A list of :class:`Curve`: training, then validation (those the history has).

    >>> history = {"steps": [0, 10], "metrics": {"train_loss": [[2.3], [1.9]],
    ...                                          "val_loss": [[2.3], [2.0]]}}
    >>> [(c.label, c.linestyle) for c in metric_curves(history, "loss", label="BN ")]
    [('BN training', '-'), ('BN validation', '--')]
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

    Args:
        history: ``History.to_dict()`` (a training record's ``"history"``).
        columns: model indices; default every model.
        label: prefix of the curves' labels.
        n_classes: the class count for chance lines (None: none).
        per_seed: each model a thin line.
        metrics: the panels, in order.

    Returns:
        A list of :class:`Panel`, one per metric, for :func:`plot_panels`.

    >>> history = {"steps": [0, 10], "metrics": {
    ...     f"{split}_{m}": [[2.3], [1.9]] for split in ("train", "val")
    ...     for m in ("cost", "loss", "accuracy")}}
    >>> panels = training_panels(history, n_classes=10)
    >>> [(p.title, len(p.curves)) for p in panels], panels[2].refs
    ([('cost', 2), ('loss', 2), ('accuracy', 2)], [(10.0, 'chance (10 %)')])
    """
    return [Panel(metric, METRIC_LABELS[metric],
                  metric_curves(history, metric, columns, label, per_seed=per_seed),
                  refs=chance_refs(metric, n_classes))
            for metric in metrics]

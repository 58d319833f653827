"""Hyper-parameter searches: log-uniform grids, coarse -> fine, run in lockstep.

A search step is *one* :class:`~xpnet.network.network.Network` whose M models differ only in
the searched value (all share one seed, hence one initialisation and one batch order),
so eight values of lambda cost one batched training run rather than eight.

Typical use (the DD2424 lambda search)::

    coarse = log_uniform_grid(-5, -1, 8)
    net, hist = train_lockstep(config, schedule, train, val, lam=coarse, seeds=0)
    best = best_value(coarse, final_scores(hist))
    fine = fine_grid(best, spacing=grid_spacing(coarse), n=8)
"""

from __future__ import annotations

import math

import numpy as np

from xpnet.base import inputs
from xpnet.errors import DivergedError, XpnetError
from xpnet.network.network import Network, NetworkConfig
from xpnet.training import DeviceSplit, History, TrainConfig, train


def log_uniform_grid(lo_exp: float, hi_exp: float, n: int) -> np.ndarray:
    """``n`` values with ``log10`` evenly spaced over ``[lo_exp, hi_exp]``, shape ``(n,)``."""
    n = inputs.whole("A grid's n", n, 1)
    if not (_finite(lo_exp) and _finite(hi_exp) and lo_exp <= hi_exp):
        raise XpnetError(f"A grid needs finite exponents with lo_exp <= hi_exp, got {lo_exp!r} "
                         f"and {hi_exp!r}.")
    inputs.check_memory(8 * n, f"A grid of {n} values", "ask for fewer values")
    if n == 1:
        return np.array([10.0 ** ((lo_exp + hi_exp) / 2)])
    # Python's power, not NumPy's: NumPy 2.4's vectorised power gives 9.999999999999999e-06
    # for 10 ** -5, and a grid value that moves with the NumPy release moves the
    # fingerprints of stored runs (which then run again).
    return np.array([10.0 ** float(x) for x in np.linspace(lo_exp, hi_exp, n)])


def grid_spacing(values) -> float:
    """The step in ``log10`` between neighbours of a log-uniform grid (0 for one value)."""
    arr = inputs.numbers(values)
    if arr is None or arr.size == 0 or not np.all(np.isfinite(arr) & (arr > 0)):
        raise XpnetError(f"A log-uniform grid holds positive numbers, got {values!r}.")
    logs = np.sort(np.log10(arr.reshape(-1)))
    return float(np.min(np.diff(logs))) if logs.size > 1 else 0.0


def fine_grid(best: float, spacing: float, n: int = 8) -> np.ndarray:
    """``n`` log-uniform values spanning ``best * 10**(+-spacing)``, shape ``(n,)``.

    With ``spacing`` the coarse grid's step this covers the gap to both coarse
    neighbours of the best value, where the true optimum must lie if the score is
    unimodal.
    """
    if not (_finite(best) and best > 0):
        raise XpnetError(f"The best value must be positive to refine around it, got {best!r}.")
    if not (_finite(spacing) and spacing >= 0):
        raise XpnetError(f"The spacing must be a finite number of at least 0, got {spacing!r}.")
    centre = math.log10(best)
    return log_uniform_grid(centre - spacing, centre + spacing, n)


def search_scores(values, diverged_step=None) -> np.ndarray:
    """Per model search scores ``(M,)``: ``values``, NaN where a model diverged.

    ``values`` are each model's final figure (say the last validation accuracy) and
    ``diverged_step`` its divergence step (``-1`` or NaN: did not diverge), as a live
    :class:`~xpnet.training.loop.History` or a stored run record's columns hold them.  A
    diverged model, or one without a finite value, is excluded: its score is NaN, which
    never wins :func:`best_index`.
    """
    held = np.asarray(values, dtype=object).reshape(-1)
    scores = inputs.numbers([np.nan if v is None else v for v in held])  # None: stored NaN
    if scores is None:
        raise XpnetError(f"Search scores must be numbers, got {values!r}.")
    scores = scores.reshape(-1)
    scores[~np.isfinite(scores)] = np.nan
    if diverged_step is not None:
        scores[np.asarray(diverged_step, dtype=np.float64).reshape(-1) >= 0] = np.nan
    return scores


def final_scores(history: History, key: str = "val_accuracy") -> np.ndarray:
    """Per model, the last recorded ``key`` ``(M,)`` as :func:`search_scores`."""
    return search_scores(history.metrics[key][-1], history.diverged_step)


def best_index(scores) -> int:
    """Index of the highest score; NaN and -inf never win (ties: the first).  A
    :class:`~xpnet.errors.DivergedError` when no score is finite (every model diverged)."""
    scores = search_scores(scores)
    if scores.size == 0:
        raise XpnetError("A search needs one score at least to pick the best.")
    clean = np.where(np.isfinite(scores), scores, -np.inf)
    if not np.any(np.isfinite(clean)):
        raise DivergedError("Every value of the search diverged; try a smaller learning rate.")
    return int(np.argmax(clean))


def best_value(values, scores) -> float:
    """The value with the highest score."""
    values = np.asarray(values)
    if values.shape[:1] != np.shape(scores)[:1]:
        raise XpnetError(f"The search has {len(values)} values but {len(scores)} scores; give "
                         "one score per value.")
    return float(values[best_index(scores)])


def _finite(value) -> bool:
    return inputs.is_number(value) and bool(np.isfinite(value))


def train_lockstep(config: NetworkConfig, schedule, train_data: DeviceSplit,
                   val_data: DeviceSplit | None = None, train_config: TrainConfig | None = None,
                   *, seeds=0, lam=0.0, sigma=None, device=None, backend=None,
                   dtype: str = "float32", **train_kwargs):
    """Create one Network of M models (per-model ``seeds``, ``lam``, ``sigma``) and train it.

    Args:
        seeds, lam, sigma: scalars or ``(M,)`` sequences; M is the longest.
        device: a device flag (``"cpu"``, ``"cuda"``, ...) or a Backend; default ``"cpu"``.
            ``backend=`` is the older name of the same argument and still works.
        train_config: batch size, momentum, ... (:class:`~xpnet.training.loop.TrainConfig`).
        train_kwargs: passed to :func:`xpnet.training.loop.train` (callbacks, progress, desc).

    Returns:
        ``(net, history)`` with ``history.metrics[key]`` of shape ``(n_points, M)``.
    """
    if device is not None and backend is not None and device != backend:
        raise XpnetError("Give the device once, as device= (backend= is its older name).")
    device = device if device is not None else backend if backend is not None else "cpu"
    net = Network.create(config, seeds=seeds, lam=lam, sigma=sigma, device=device,
                         dtype=dtype)
    history = train(net, schedule, train_data, val_data, train_config, **train_kwargs)
    return net, history

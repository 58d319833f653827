"""Inverted dropout on hidden layers: masks drawn on the host, applied on the device.

In train mode each hidden layer's activations ``(M, n, d_l)`` are multiplied by a mask
that keeps a unit with probability ``1 - p`` and scales the kept ones by ``1 / (1 - p)``
(``p`` is ``NetworkConfig.dropout``, one rate per model), so eval mode needs no
correction and uses no mask.

Design rule 5: like the batch orders, the masks come from a seeded
``numpy.random.Generator`` on the host (model m's depend only on its seed, the epoch
and its rate) and are uploaded to the device, so a seed gives the same run on every
device.  Training draws an epoch's keep-masks in the background and uploads them once
per epoch as booleans; a step turns its slice into per-layer float masks on the device.
Rate 0 for every model costs nothing: no masks are drawn and the step gets ``None``.
"""

from __future__ import annotations

import numpy as np

#: Mixed into each model's seed, so the mask stream differs from the batch orders' (7).
_STREAM = 11


def rates(net) -> np.ndarray | None:
    """The per-model dropout rates ``(M,)`` of ``net``, or None when all are zero (or the
    net has no hidden layer)."""
    p = net.per_model_host["dropout"]
    return p if np.any(p > 0) and net.config.hidden else None


def keep_masks(seeds, p: np.ndarray, shape: tuple[int, ...], epoch: int) -> np.ndarray:
    """Host keep-masks: bool ``(*shape[:-2], M, *shape[-2:])`` for rates ``p`` ``(M,)``.

    ``shape`` is ``(steps, n, D)`` for an epoch of steps (or ``(n, D)`` for one batch),
    with ``D`` the hidden widths side by side.  Model m keeps a unit where its uniform
    draw from ``default_rng([seeds[m], epoch, 11])`` is at least ``p[m]``; a model of
    rate 0 keeps every unit and draws nothing.
    """
    M = p.shape[0]
    seeds = [int(s) for s in np.asarray(seeds).reshape(-1)]
    seeds = seeds * M if len(seeds) == 1 else seeds
    axis = len(shape) - 2
    if len(set(seeds)) == 1:  # one draw serves every rate
        u = np.random.default_rng([seeds[0], epoch, _STREAM]).random(shape)
        return np.expand_dims(u, axis) >= p.reshape((M, 1, 1))
    keep = np.ones((*shape[:-2], M, *shape[-2:]), dtype=bool)
    for m in range(M):
        if p[m] > 0:
            u = np.random.default_rng([seeds[m], epoch, _STREAM]).random(shape)
            keep[(slice(None),) * axis + (m,)] = u >= p[m]
    return keep


def device_masks(net, keep) -> list:
    """Per hidden layer, the float mask ``(M, n, d_l)`` for a device keep-mask
    ``(M, n, D)`` (bool): 0 where dropped, ``1 / (1 - p)`` where kept."""
    xp = net.xp
    full = xp.astype(keep, net.dtype) * net.dropout_scale
    masks, start = [], 0
    for width in net.config.hidden:
        masks.append(full[..., start:start + width])
        start += width
    return masks


def fixed_masks(net, n: int, epoch: int = 0) -> list[np.ndarray] | None:
    """Host float64 masks ``(M, n, d_l)`` per hidden layer for one batch of ``n`` (drawn
    from the net's seeds as for ``epoch``); None without dropout.  What a gradient check
    holds fixed."""
    p = rates(net)
    if p is None:
        return None
    keep = keep_masks(net.seeds or [0], p, (n, sum(net.config.hidden)), epoch)
    full = keep / (1.0 - p).reshape(-1, 1, 1)
    bounds = np.cumsum((0, *net.config.hidden))
    return [full[..., a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

"""Numerical gradient checks: centred differences against the analytic gradients.

Used in float64 on a reduced problem (the first ``d`` features and ``n`` samples), as
``torch.autograd.gradcheck`` is.  Batch norm runs in train mode without touching the
running averages, and dropout with fixed masks, so every cost evaluation sees the same
function.

The numerical side uses the model axis: every perturbed copy of the parameters is one
"model" of a temporary network, so a chunk of hundreds of cost evaluations is one
batched forward pass instead of a Python loop.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xpnet.backend.devices import get_backend, to_numpy
from xpnet.network.network import Network
from xpnet.nn import dropout

# Fourth-order centred stencil: f'(x) ~ sum_k w_k f(x + o_k h) / h, error O(h^4).
_OFFSETS = np.array([-2.0, -1.0, 1.0, 2.0])
_WEIGHTS = np.array([1.0, -8.0, 8.0, -1.0]) / 12.0


@dataclasses.dataclass
class ParamError:
    """How one parameter's analytic gradient compares with the numerical one."""

    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    mean_rel_error: float
    share_below: float  # fraction of entries with relative error below the threshold

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def relative_error(analytic: np.ndarray, numeric: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """Entrywise ``|ga - gn| / max(eps, |ga| + |gn|)``."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    return np.abs(analytic - numeric) / np.maximum(eps, np.abs(analytic) + np.abs(numeric))


def _reference_dtype(net, extended: bool):
    """longdouble (on the CPU, whatever the net's device) where it is wider than float64."""
    if extended and np.finfo(np.longdouble).eps < 1e-17:
        return np.longdouble
    return np.dtype(str(net.dtype).rsplit(".", 1)[-1])


def numerical_gradients(net, X, Y, *, h: float = 1e-5, extended: bool = True,
                        chunk: int = 128, masks=None) -> dict[str, np.ndarray]:
    """Fourth-order centred-difference gradients of each model's train-mode cost.

    Args:
        net: a :class:`~xpnet.network.network.Network` with M models (float64 for a real check).
        X: ``(n, d_in)`` inputs and Y: ``(n, C)`` one-hot labels (host or device).
        h: stencil step.
        extended: evaluate costs on the CPU in ``numpy.longdouble`` where that is wider
            than float64 (x86-64, aarch64), so the reference is limited by the stencil
            rather than by float64 rounding of the cost (~1e-15), for a net on any device.
        chunk: entries perturbed per batched evaluation.
        masks: fixed dropout masks, host ``(M, n, d_l)`` per hidden layer, or None.

    Returns:
        dict of host arrays shaped like ``net.params``: ``(M, ...)``.
    """

    dtype = _reference_dtype(net, extended)
    backend = get_backend("cpu") if dtype == np.longdouble else net.backend
    host_params = {k: np.asarray(to_numpy(v), dtype=dtype) for k, v in net.params.items()}
    host_buffers = {k: np.asarray(to_numpy(v), dtype=dtype) for k, v in net.buffers.items()}
    Xd = backend.asarray(np.asarray(to_numpy(X), dtype=dtype))
    Yd = backend.asarray(np.asarray(to_numpy(Y), dtype=dtype))
    n_points = len(_OFFSETS)

    grads = {name: np.zeros(p.shape, dtype=np.float64) for name, p in host_params.items()}
    for m in range(net.n_models):
        for name, target in host_params.items():
            size = target[m].size
            for start in range(0, size, chunk):
                entries = np.arange(start, min(start + chunk, size))
                copies = n_points * entries.size
                params = {k: np.repeat(v[m:m + 1], copies, axis=0)
                          for k, v in host_params.items()}
                flat = params[name].reshape(copies, -1)
                flat[np.arange(copies), np.repeat(entries, n_points)] += np.tile(
                    _OFFSETS * h, entries.size)
                probe = Network(
                    net.config, {k: backend.asarray(v) for k, v in params.items()},
                    {k: backend.asarray(np.repeat(v[m:m + 1], copies, axis=0))
                     for k, v in host_buffers.items()},
                    np.full(copies, net.lam_host[m]), backend,
                    per_model={k: np.full(copies, v[m]) for k, v in net.per_model_host.items()})
                probe_masks = None if masks is None else [
                    backend.asarray(np.repeat(np.asarray(mask[m:m + 1], dtype=dtype), copies,
                                              axis=0)) for mask in masks]
                costs = to_numpy(probe.train_cost(Xd, Yd, probe_masks)).reshape(
                    entries.size, n_points)
                grads[name][m].reshape(-1)[entries] = (costs @ _WEIGHTS.astype(dtype)) / h
    return grads


def check_gradients(net, X, Y, *, h: float = 1e-5, threshold: float = 1e-6,
                    eps: float = 1e-6, extended: bool = True,
                    masks=None) -> list[ParamError]:
    """Compare analytic and numerical gradients for every parameter of ``net``.

    ``eps`` floors the denominator of the relative error: below it the figure measures
    absolute error in units of ``eps``.  Fourth-order differences in extended precision
    resolve gradients to ~1e-13, so entries whose true gradient is zero or ~1e-9 (dead
    units, deep nets without batch norm) would otherwise report noise as error.

    A net with dropout is checked with fixed masks: ``masks`` (host ``(M, n, d_l)`` per
    hidden layer) or, by default, :func:`xpnet.nn.dropout.fixed_masks` of its seeds.

    Returns one :class:`ParamError` per parameter, in layer order; with M > 1 models
    the figures cover all models' entries together.
    """
    if masks is None:
        masks = dropout.fixed_masks(net, int(np.shape(to_numpy(X))[-2]))
    # The analytic side runs the net's own training step, on its device (host inputs move).
    Xd = net.backend.asarray(np.asarray(to_numpy(X)), dtype=net.dtype)
    Yd = net.backend.asarray(np.asarray(to_numpy(Y)), dtype=net.dtype)
    device_masks = None if masks is None else [
        net.backend.asarray(np.asarray(mask), dtype=net.dtype) for mask in masks]
    _, _, analytic = net.loss_and_gradients(Xd, Yd, update_stats=False, masks=device_masks)
    numeric = numerical_gradients(net, X, Y, h=h, extended=extended, masks=masks)
    report = []
    for name in layer_order(net.params):
        ga = to_numpy(analytic[name]).astype(np.float64)
        gn = numeric[name]
        rel = relative_error(ga, gn, eps)
        report.append(ParamError(
            name=name, shape=tuple(ga.shape),
            max_abs_error=float(np.max(np.abs(ga - gn))),
            max_rel_error=float(np.max(rel)), mean_rel_error=float(np.mean(rel)),
            share_below=float(np.mean(rel < threshold))))
    return report


def layer_order(params) -> list[str]:
    """Parameter names sorted by layer, then W, b, gamma, beta (then any other, by name)."""
    known = ["W", "b", "gamma", "beta"]

    def key(name):
        kind = name.rstrip("0123456789")
        return (int(name[len(kind):]), known.index(kind) if kind in known else len(known),
                kind)
    return sorted(params, key=key)

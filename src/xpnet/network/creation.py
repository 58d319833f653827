"""Initialising M models of one architecture: :meth:`Network.create
<xpnet.network.network.Network.create>` calls :func:`~xpnet.network.creation.create`.

Weights are drawn on the host from each model's seeded generator (design rule 5) and moved
to the device; biases and the normalization's parameters and buffers start at their
registry entry's values.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xpnet.backend.devices import Backend, get_backend
from xpnet.errors import XpnetError
from xpnet.network.config import _per_model
from xpnet.nn import options, registry
from xpnet.nn.init import layer_weights


def create(cls, config, *, n_models: int | None = None, seeds=0, lam=0.0, sigma=None,
           device: str | Backend = "cpu", dtype: str = "float32", **per_model):
    """``cls`` (a :class:`~xpnet.network.network.Network`) of M new models; the arguments
    are :meth:`Network.create <xpnet.network.network.Network.create>`'s."""
    backend = device if isinstance(device, Backend) else get_backend(device)
    names = options.per_model_names(type(config))
    unknown = set(per_model) - set(names)
    if unknown:
        raise XpnetError(f"Network.create got an unknown option {sorted(unknown)[0]!r}; "
                         f"the per-model options are {', '.join(names)}.")
    given = {name: v for name, v in per_model.items() if v is not None}
    defaults = [getattr(config, name) for name in names if name not in given]
    lengths = [np.size(v) for v in (seeds, lam, sigma, *given.values(), *defaults)
               if v is not None]
    M = int(n_models or max(lengths))
    seeds_arr = np.asarray(seeds, dtype=np.int64).reshape(-1)
    if seeds_arr.size == 1:
        seeds_arr = np.full(M, seeds_arr[0])
    if seeds_arr.shape != (M,):
        raise XpnetError(f"seeds must be one int or one per model ({M}).")
    lam_arr = _per_model(lam, M, "lam")
    if np.any(lam_arr < 0) or not np.all(np.isfinite(lam_arr)):
        raise XpnetError("lam must be finite and non-negative.")
    sigma_arr = None if sigma is None else _per_model(sigma, M, "sigma")
    fields = {f.name: f for f in dataclasses.fields(config)}
    values = {name: _per_model(options.check_field(fields[name], v), M, name)
              for name, v in given.items()}
    if config.init == "normal" and sigma_arr is None:
        raise XpnetError("init='normal' needs sigma, for example sigma=1e-3.")

    rngs = [np.random.default_rng(int(s)) for s in seeds_arr]
    dt = backend.dtype(dtype)
    params, buffers = {}, {}
    sizes = config.sizes
    norm = registry.normalization(config.norm)
    for l in range(1, config.n_layers + 1):
        d_in, d_out = sizes[l - 1], sizes[l]
        W = layer_weights(rngs, config.init, d_in, d_out, sigma_arr)
        params[f"W{l}"] = backend.asarray(W, dtype=dt)
        if config.has_bias(l):
            params[f"b{l}"] = backend.asarray(np.zeros((M, 1, d_out)), dtype=dt)
        if config.has_norm(l):
            for store, initial in ((params, norm.params), (buffers, norm.buffers)):
                for name, value in initial.items():
                    store[f"{name}{l}"] = backend.asarray(np.full((M, 1, d_out), value),
                                                          dtype=dt)
    return cls(config, params, buffers, lam_arr, backend, seeds_arr, values)

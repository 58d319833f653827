"""Network checkpoints: ``.npz`` files of host arrays and a JSON config, never pickle.

:meth:`Network.save <xpnet.network.Network.save>` and :meth:`Network.load
<xpnet.network.Network.load>` call these.
"""

from __future__ import annotations

import json
import os

import numpy as np

from xpnet import options
from xpnet.atomic import atomic_write
from xpnet.backend import Backend, get_backend, to_numpy
from xpnet.errors import CheckpointError, XpnetError


def state_dict(net) -> dict[str, np.ndarray]:
    """Every array of ``net`` as host NumPy, plus the config, for :func:`save`."""
    state = {f"param/{k}": to_numpy(v) for k, v in net.params.items()}
    state.update({f"buffer/{k}": to_numpy(v) for k, v in net.buffers.items()})
    state["lam"] = net.lam_host
    state.update(net.per_model_host)  # "bn_eps", "dropout", ...: float64 (M,)
    meta = {"config": net.config.to_dict(), "seeds": net.seeds, "format": 1}
    state["meta"] = np.array(json.dumps(meta))
    return state


def save(net, path) -> None:
    """Write a ``.npz`` checkpoint of ``net`` atomically (no pickle inside)."""
    with atomic_write(path) as f:
        np.savez(f, **state_dict(net))


def load(cls, path, device: str | Backend = "cpu", dtype: str | None = None):
    """``cls`` (:class:`~xpnet.network.Network`) from a checkpoint written by :func:`save`
    onto ``device``, without pickle."""
    from xpnet import network  # the config class as xpnet.network names it (a study may extend it)

    backend = device if isinstance(device, Backend) else get_backend(device)
    try:
        with np.load(os.fspath(path), allow_pickle=False) as f:
            state = {k: f[k] for k in f.files}
        meta = json.loads(str(state.pop("meta")))
        config = network.NetworkConfig.from_dict(meta["config"])
    except (OSError, ValueError, KeyError, TypeError, XpnetError) as exc:
        reason = str(exc).split(". ")[0].rstrip(".")  # the message stays one sentence
        raise CheckpointError(
            f"{path} is not a readable xpnet checkpoint ({reason}); pass a file written "
            "by Network.save.") from None
    dt = backend.dtype(dtype) if dtype else None
    params, buffers = {}, {}
    for key, value in state.items():
        kind, _, name = key.partition("/")
        if kind == "param":
            params[name] = backend.asarray(value, dtype=dt)
        elif kind == "buffer":
            buffers[name] = backend.asarray(value, dtype=dt)
    net = cls(config, params, buffers, state["lam"], backend, meta.get("seeds"),
              {name: state.get(name) for name in options.per_model_names(type(config))})
    expected = cls.create(config, n_models=net.n_models, device="cpu", dtype="float64")
    for name, value in expected.params.items():
        if name not in params or tuple(params[name].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{path} does not match its own config at {name}; the file is damaged.")
    return net

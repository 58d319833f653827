"""Network checkpoints: ``.npz`` files of host arrays and a JSON config, never pickle.

:meth:`Network.save <xpnet.network.network.Network.save>` and :meth:`Network.load
<xpnet.network.network.Network.load>` call these.  A checkpoint of M models holds

- ``meta``: JSON text ``{"config": NetworkConfig fields, "seeds": M ints or null,
  "format": 2, "members": the other members' names}``;
- ``lam`` ``(M,)`` and one ``(M,)`` member per per-model field of the config (``bn_eps``,
  ``dropout``, ...), floating point;
- ``param/<name>`` and ``buffer/<name>``: the arrays :func:`shapes` lists, floating point,
  one dtype for all;
- what an estimator adds (:data:`EXTRAS`: ``classifier``, ``classes``, ``search``), read by
  :mod:`xpnet.estimators.files`.

Format 1 (files written before issue 34) has no ``members`` list; its per-model members
must be those a file of its age held (``_FORMAT1_PER_MODEL``), and one it lacks takes
the config's value.

:func:`read` trusts nothing: the file is read with :class:`xpnet.base.npz.NpzReader` (no
member inflated before its declared size is known to be what ``meta`` implies); every
member's dtype and shape is checked against the config, every value (finite, running
variances at least 0, ``lam`` at least 0, per-model options in their ranges), the set of
members against what the format allows.  Each failure is one
:class:`~xpnet.errors.CheckpointError` sentence naming the file and the member.
"""

from __future__ import annotations

import json
import os

import numpy as np

from xpnet.backend.devices import Backend, get_backend, to_numpy
from xpnet.base.atomic import atomic_write
from xpnet.base.npz import NpzReader
from xpnet.errors import CheckpointError, OutputError
from xpnet.network.checkpoint_reader import (  # noqa: F401 (what estimators' files use too)
    _REMEDY,
    EXTRAS,
    FORMAT,
    Contents,
    Reader,
    check_values,
    clause,
    is_int,
    json_kind,
    shapes,
    short,
)


# ------------------------------------------------------------------------ saving
def state_dict(net) -> dict[str, np.ndarray]:
    """Every array of ``net`` as host NumPy, plus ``meta`` (the config), for :func:`save`."""
    state = {f"param/{k}": to_numpy(v) for k, v in net.params.items()}
    state.update({f"buffer/{k}": to_numpy(v) for k, v in net.buffers.items()})
    state["lam"] = net.lam_host
    state.update(net.per_model_host)  # "bn_eps", "dropout", ...: float64 (M,)
    meta = {"config": net.config.to_dict(), "seeds": net.seeds, "format": FORMAT}
    state["meta"] = np.array(json.dumps(meta))
    return state


def save(net, path) -> None:
    """Write a ``.npz`` checkpoint of ``net`` atomically (no pickle inside)."""
    write(path, state_dict(net))


def write(path, state: dict[str, np.ndarray]) -> None:
    """Write ``state`` (a :func:`state_dict`, perhaps with :data:`EXTRAS`) to ``path``
    atomically, ``meta`` listing its members; a network whose values :func:`read` would
    refuse (NaN weights after a divergence, ...) is refused here, and ``path`` is left as
    it was."""
    meta = json.loads(str(state["meta"]))
    meta["members"] = sorted(k for k in state if k != "meta")
    state = {**state, "meta": np.array(json.dumps(meta))}
    check_values(state, lambda member, problem: CheckpointError(
        f"This network cannot be saved: its {member} {problem}; fix or retrain the model "
        "(a diverged one cannot be restored from a file)."))
    target = os.fspath(path)
    if os.path.isdir(target):
        raise OutputError(f"{target} is a folder; pass a file path to save to, such as "
                          f"{os.path.join(target, 'network.npz')}.")
    try:
        with atomic_write(target) as f:
            np.savez(f, **state)
    except OSError as exc:
        folder = os.path.dirname(os.path.abspath(target))
        if not os.path.isdir(folder):
            raise OutputError(f"{target} cannot be written: its folder {folder} does not "
                              "exist; create it first or pass another path.") from None
        raise OutputError(f"{target} cannot be written ({exc.strerror or exc}); pass a path "
                          "in a folder you can write to.") from None


# ----------------------------------------------------------------------- loading
def load(cls, path, device: str | Backend = "cpu", dtype: str | None = None):
    """``cls`` (:class:`~xpnet.network.network.Network`) from a checkpoint written by :func:`save`
    onto ``device``, without pickle; every member checked (see the module)."""
    return network(cls, read(path), device, dtype)


def network(cls, contents: Contents, device: str | Backend = "cpu", dtype: str | None = None):
    """``cls`` built from checked ``contents`` on ``device`` (in ``dtype`` if given)."""
    backend = device if isinstance(device, Backend) else get_backend(device)
    dt = backend.dtype(dtype) if dtype else None
    params = {k: backend.asarray(v, dtype=dt) for k, v in contents.params.items()}
    buffers = {k: backend.asarray(v, dtype=dt) for k, v in contents.buffers.items()}
    return cls(contents.config, params, buffers, contents.lam, backend, contents.seeds,
               contents.per_model)


def read(path, remedy: str = _REMEDY, extras: tuple[str, ...] = ()) -> Contents:
    """The checked contents of the checkpoint at ``path``; ``extras`` (names among
    :data:`EXTRAS`) are read too where present (JSON parsed), after their headers are
    checked by :func:`check_extra_header`.  Errors end with ``remedy``."""
    with NpzReader(path, remedy) as f:
        return Reader(f).read(extras)

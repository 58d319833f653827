"""An optimizer's state as host arrays in logical shapes, and back: what
:meth:`SGDUpdate.state_dict <xpnet.training.optim.SGDUpdate.state_dict>` and
:meth:`AdamUpdate.state_dict <xpnet.training.optim.AdamUpdate.state_dict>` return and their
``load_state_dict`` take (a run checkpoint, :mod:`xpnet.training.resume`, holds it).

The names, each a host NumPy array:

- ``velocity/<param>`` (SGD with momentum), ``m/<param>`` and ``v/<param>`` (Adam):
  ``(M, *shape)``, the parameter's own shape (``W1`` ``(M, d_in, d_out)``), whatever the
  update keeps them in (one flat array of every parameter, or one array each);
- ``momentum`` (SGD) and ``weight_decay`` (AdamW): ``()`` when every model shares it,
  else ``(M,)``, float64;
- ``t`` (Adam): ``()`` int64, the steps taken (the bias correction's).

The L2 decay is not in it: it follows the network's ``lam`` (``set_decay``).
"""

from __future__ import annotations

import array_api_compat
import numpy as np

from xpnet.backend.devices import to_numpy
from xpnet.errors import CheckpointError

#: The update's per-parameter state, by name, and the attribute of its flat array.
KINDS = (("velocity", "_velocity_flat"), ("m", "_m_flat"), ("v", "_v_flat"))
#: Per-model options an update may hold, as a float or device ``(M, 1, 1)``.
OPTIONS = ("momentum", "weight_decay")


def state_dict(update) -> dict[str, np.ndarray]:
    """``update``'s state (see the module docstring), copied to the host."""
    out = {}
    for kind, _ in KINDS:
        views = getattr(update, kind, None)
        for name, value in (views or {}).items():
            out[f"{kind}/{name}"] = np.array(to_numpy(value), copy=True)
    for option in OPTIONS:
        value = getattr(update, option, None)
        if value is not None:
            out[option] = (np.array(value, dtype=np.float64) if isinstance(value, float)
                           else to_numpy(value).astype(np.float64).reshape(-1))
    if hasattr(update, "t"):
        out["t"] = np.array(update.t, dtype=np.int64)
    return out


def expected(update, n_models: int) -> dict[str, tuple]:
    """The shape of each array :func:`load` needs for an update of ``n_models`` models
    (a per-model option may also be ``()``)."""
    out = {}
    for kind, _ in KINDS:
        for name, value in (getattr(update, kind, None) or {}).items():
            out[f"{kind}/{name}"] = (n_models, *value.shape[1:])
    for option in OPTIONS:
        if getattr(update, option, None) is not None:
            out[option] = (n_models,)
    if hasattr(update, "t"):
        out["t"] = ()
    return out


def load(update, state: dict) -> None:
    """Give ``update`` the state :func:`state_dict` returned (of the same kind of update,
    any number of models), on the update's device and in its dtype."""
    xp = update.xp
    missing = [name for name in expected(update, 0) if name not in state]
    if missing:
        raise CheckpointError(f"The optimizer state lacks {missing[0]!r}; it was saved by "
                              "another optimizer, so start the run again.")
    for kind, flat_attr in KINDS:
        views = getattr(update, kind, None)
        if not views:
            continue
        like = next(iter(views.values()))
        device = array_api_compat.device(like)
        arrays = {name: xp.asarray(np.ascontiguousarray(state[f"{kind}/{name}"]),
                                   dtype=like.dtype, device=device) for name in views}
        if update.layout is None:
            setattr(update, kind, arrays)
        else:
            flat = update.layout.flatten(xp, arrays)
            setattr(update, flat_attr, flat)
            setattr(update, kind, update.layout.views(xp, flat))
    for option in OPTIONS:
        if getattr(update, option, None) is None:
            continue
        values = np.asarray(state[option], dtype=np.float64)
        if values.ndim == 0:
            setattr(update, option, float(values))
        else:
            like = update.velocity if option == "momentum" else update.m
            like = next(iter(like.values()))
            setattr(update, option, xp.asarray(values[:, None, None].copy(), dtype=like.dtype,
                                               device=array_api_compat.device(like)))
    if hasattr(update, "t"):
        update.t = int(state["t"])

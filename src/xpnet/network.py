"""A K-layer fully connected network with a registry's layers, for M models at once.

Layer ``l`` (1-based) maps ``d_{l-1} -> d_l`` with weights ``W{l}`` ``(M, d_{l-1}, d_l)``.
Hidden layers are ``dense -> [normalization] -> activation -> [dropout]``, the
normalization and activation named by the config and looked up in
:mod:`xpnet.registry`; the output layer is dense and feeds a softmax cross-entropy.  A
dense layer followed by a normalization has no bias (its ``beta`` plays that role; for
batch norm a bias there would have zero gradient); other dense layers have ``b{l}``
``(M, 1, d_l)``.  Normalized layers have the entry's parameters (``gamma{l}``,
``beta{l}``) and buffers (batch norm's running averages ``mean{l}``, ``var{l}``), all
``(M, 1, d_l)``.  Config fields marked ``per_model`` (``leaky_slope``, ``dropout``,
``bn_eps``) may differ between the M models: ``Network.per_model[name]`` ``(M,)``.

Cost of model m = mean cross-entropy + the L2 term of :mod:`xpnet.l2`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import numpy as np

from xpnet import l2, layers, registry
from xpnet.atomic import atomic_write
from xpnet.backend import Backend, get_backend, to_numpy
from xpnet.errors import CheckpointError, XpnetError
from xpnet.init import INITS, layer_weights
from xpnet.per_model import broadcast as _per_model
from xpnet.per_model import check as check_per_model
from xpnet.per_model import fields_of


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Architecture of a network: ``d_in -> hidden[0] -> ... -> n_classes``."""

    d_in: int = 3072
    hidden: tuple[int, ...] = (50, 50)
    n_classes: int = 10
    norm: str | None = "batch"            # registry name: "batch", "layer" or None
    activation: str = "relu"              # registry name: "relu", "leaky_relu", "tanh"
    leaky_slope: float = dataclasses.field(default=0.01, metadata={"per_model": True})
    dropout: float = dataclasses.field(default=0.0, metadata={"per_model": True})
    init: str = "he"
    bn_momentum: float = 0.9
    bn_eps: float = dataclasses.field(default=1e-5, metadata={"per_model": True})

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.d_in < 1 or self.n_classes < 2 or any(h < 1 for h in self.hidden):
            raise XpnetError("Layer sizes must be positive and n_classes at least 2.")
        if self.init not in INITS:
            raise XpnetError(f"Unknown init {self.init!r}; use one of: {', '.join(INITS)}.")
        registry.normalization(self.norm)
        registry.activation(self.activation)
        for name in per_model_fields():
            value = getattr(self, name)
            check_per_model(name, np.asarray(value, dtype=np.float64).reshape(-1))
            object.__setattr__(self, name, float(value) if np.ndim(value) == 0
                               else tuple(float(v) for v in value))

    @property
    def batch_norm(self) -> bool:
        """Whether hidden layers use batch norm (``norm == "batch"``), for old readers."""
        return self.norm == "batch"

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.d_in, *self.hidden, self.n_classes)

    @property
    def n_layers(self) -> int:
        """K, the number of dense layers."""
        return len(self.hidden) + 1

    def has_norm(self, layer: int) -> bool:
        """Whether 1-based ``layer`` is followed by a normalization."""
        return self.norm is not None and layer < self.n_layers

    def has_bias(self, layer: int) -> bool:
        """Whether 1-based ``layer``'s affine map has a bias ``b{layer}``."""
        return not self.has_norm(layer) or registry.normalization(self.norm).dense_bias

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_fields_init = NetworkConfig.__init__


@functools.wraps(_fields_init)
def _init_accepting_batch_norm(self, *args, batch_norm: bool | None = None, **kwargs):
    # The legacy keyword of configs before the registry: True -> "batch", False -> None.
    if batch_norm is not None:
        kwargs["norm"] = "batch" if batch_norm else None
    _fields_init(self, *args, **kwargs)


NetworkConfig.__init__ = _init_accepting_batch_norm


def per_model_fields() -> tuple[str, ...]:
    """Names of the :class:`NetworkConfig` fields that take one value per model."""
    return fields_of(NetworkConfig)


class Network:
    """M networks of one architecture, trained in lockstep on the leading model axis.

    Build one with :meth:`Network.create`.  ``params`` and ``buffers`` are dicts of
    device arrays named as in the module docstring; ``lam`` is the device ``(M,)``
    array of L2 strengths.  Each per-model config field (:func:`per_model_fields`) is
    a host float64 ``(M,)`` array ``per_model_host[name]`` and a device one
    ``per_model[name]`` (the config's value unless given per model); ``bn_eps`` and
    ``bn_eps_host`` are batch norm's.
    """

    def __init__(self, config: NetworkConfig, params: dict, buffers: dict, lam,
                 backend: Backend, seeds=None, bn_eps=None, per_model: dict | None = None):
        self.config = config
        self.params = params
        self.buffers = buffers
        self.backend = backend
        self.xp = backend.xp
        self.lam_host = np.asarray(to_numpy(lam), dtype=np.float64).reshape(-1)
        self.n_models = int(self.lam_host.shape[0])
        self.dtype = params["W1"].dtype
        self.lam = backend.asarray(self.lam_host, dtype=self.dtype)
        given = {"bn_eps": bn_eps, **(per_model or {})}
        self.per_model_host = {}
        for name in per_model_fields():
            value = getattr(config, name) if given.get(name) is None else given[name]
            self.per_model_host[name] = _per_model(to_numpy(value) if hasattr(value, "shape")
                                                   else value, self.n_models, name)
        self.per_model = {k: backend.asarray(v, dtype=self.dtype)
                          for k, v in self.per_model_host.items()}
        self.bn_eps_host, self.bn_eps = self.per_model_host["bn_eps"], self.per_model["bn_eps"]
        self.norm_entry = registry.normalization(config.norm)
        self.activation_entry = registry.activation(config.activation)
        #: Dropout's scale of a kept unit, ``1 / (1 - p)`` ``(M, 1, 1)``.
        self.dropout_scale = backend.asarray(
            (1.0 / (1.0 - self.per_model_host["dropout"]))[:, None, None], dtype=self.dtype)
        self._entry_options = {}
        self.seeds = None if seeds is None else [int(s) for s in np.asarray(seeds).reshape(-1)]

    def entry_options(self, entry) -> dict:
        """The keyword options a registry entry's ``forward`` takes (its ``options``):
        per-model fields as device ``(M, 1, 1)`` arrays, others as the config's value."""
        if entry is None:
            return {}
        key = (type(entry).__name__, entry.name)
        if key not in self._entry_options:
            self._entry_options[key] = {
                name: self.per_model[name][:, None, None] if name in self.per_model
                else getattr(self.config, name) for name in entry.options}
        return self._entry_options[key]

    # ----------------------------------------------------------------- creation
    @classmethod
    def create(cls, config: NetworkConfig, *, n_models: int | None = None, seeds=0,
               lam=0.0, sigma=None, device: str | Backend = "cpu", dtype: str = "float32",
               **per_model) -> Network:
        """Initialise M models.

        Args:
            seeds: int or ``(M,)``; model m's weights come from ``default_rng(seeds[m])``.
            lam: L2 strength, scalar or ``(M,)``.
            sigma: weight std for ``init="normal"``, scalar or ``(M,)``.
            per_model: overrides of per-model config fields by name, scalar or ``(M,)``
                (``bn_eps=[1e-5, 1e-3]``, ``dropout=[0, 0.1, 0.3]``); None keeps the
                config's value.
            n_models: M; by default the length of the longest of seeds, lam, sigma and
                the per-model values (the config's included).
        """
        backend = device if isinstance(device, Backend) else get_backend(device)
        unknown = sorted(set(per_model) - set(per_model_fields()))
        if unknown:
            raise XpnetError(f"Unknown per-model option {unknown[0]!r}; use one of: "
                             f"{', '.join(per_model_fields())}.")
        per_model = {name: getattr(config, name) if per_model.get(name) is None
                     else per_model[name] for name in per_model_fields()}
        lengths = [np.size(v) for v in (seeds, lam, sigma, *per_model.values()) if v is not None]
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
        per_model_arr = {name: _per_model(v, M, name) for name, v in per_model.items()}
        for name, values in per_model_arr.items():
            check_per_model(name, values)
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
        return cls(config, params, buffers, lam_arr, backend, seeds_arr,
                   per_model=per_model_arr)

    # ------------------------------------------------------------------ forward
    def forward(self, X, *, train: bool = True, update_stats: bool = True, masks=None):
        """Scores for a batch.

        Args:
            X: shared ``(n, d_in)`` or per-model ``(M, n, d_in)`` inputs.
            train: batch statistics (True) or running averages (False) in batch norm.
            update_stats: in train mode, fold the batch statistics into the running
                averages (False for gradient checks).
            masks: in train mode, dropout masks ``(M, n, d_l)`` per hidden layer
                (:mod:`xpnet.dropout`), or None for no dropout.

        Returns:
            ``scores`` ``(M, n, n_classes)`` and the list of per-layer caches
            ``(dense, norm, activation, mask)``.
        """
        return self._forward(X, train, update_stats, masks=masks)

    def layer_inputs(self, X, *, train: bool = True) -> list[tuple]:
        """What each hidden layer's units receive, for inputs ``X`` ``(n, d_in)``.

        Returns, per hidden layer ``l = 1 .. K-1``, ``(s, z)``: the dense output ``s``
        (the normalization's input) and the activation's input ``z`` (the
        normalization's output, or ``s`` without one), each ``(M, n, d_l)``.  Train mode
        uses the batch statistics of ``X`` (and no dropout); the running averages are
        left as they are.
        """
        inputs: list[tuple] = []
        self._forward(X, train, False, inputs)
        return inputs

    def _forward(self, X, train: bool, update_stats: bool, inputs: list | None = None,
                 masks=None):
        """:meth:`forward`; appends each hidden layer's ``(s, z)`` to ``inputs`` if given."""
        p, buffers = self.params, self.buffers
        xp = self.xp
        K = self.config.n_layers
        norm, act = self.norm_entry, self.activation_entry
        norm_options, act_options = self.entry_options(norm), self.entry_options(act)
        h, caches = X, []
        for l in range(1, K + 1):
            s, dense_cache = layers.dense_forward(h, p[f"W{l}"], p.get(f"b{l}"))
            if l == K:
                caches.append((dense_cache, None, None, None))
                return s, caches
            norm_cache, z = None, s
            if norm is not None:
                z, norm_cache, new_buffers = norm.forward(
                    s, {k: p[f"{k}{l}"] for k in norm.params},
                    {k: buffers[f"{k}{l}"] for k in norm.buffers}, train=train, xp=xp,
                    **norm_options)
                if train and update_stats:
                    for k, value in new_buffers.items():
                        buffers[f"{k}{l}"] = value
            if inputs is not None:
                inputs.append((s, z))
            h, act_cache = act.forward(z, xp=xp, **act_options)
            mask = masks[l - 1] if train and masks is not None else None
            if mask is not None:
                h = h * mask
            caches.append((dense_cache, norm_cache, act_cache, mask))
        raise AssertionError("unreachable")

    def regularisation(self):
        """The L2 term of the cost per model, shape ``(M,)`` (see :mod:`xpnet.l2`)."""
        return l2.penalty(self.lam, self.params, self.xp)

    @property
    def decay(self):
        """Per-model L2 gradient factor ``(M, 1, 1)``: ``d(regularisation)/dW = decay * W``."""
        return l2.gradient_factor(self.lam)[:, None, None]

    def train_cost(self, X, Y, masks=None):
        """Train-mode (batch-statistics) cost ``(M,)`` without touching running averages;
        ``masks`` as for :meth:`forward`."""
        scores, _ = self.forward(X, train=True, update_stats=False, masks=masks)
        loss, _ = layers.softmax_cross_entropy(scores, Y)
        return loss + self.regularisation()

    # ----------------------------------------------------------------- backward
    def loss_and_gradients(self, X, Y, *, update_stats: bool = True, masks=None):
        """Train-mode loss, cost and gradients of every parameter, the L2 term included.

        Uses the backend's training step (:attr:`Backend.data_gradients`), the same
        code that :func:`xpnet.training.train` runs, so a gradient check covers it.

        Args:
            X: ``(n, d_in)`` or ``(M, n, d_in)``.
            Y: one-hot labels ``(n, C)`` or ``(M, n, C)``.
            masks: dropout masks as for :meth:`forward`, or None.

        Returns:
            ``(loss, cost, grads)``: loss and cost ``(M,)``; grads a dict keyed like
            ``params`` with arrays of the same shapes.
        """
        loss, grads = self.loss_and_data_gradients(X, Y, update_stats=update_stats,
                                                   masks=masks)
        for name in grads:
            if l2.is_penalised(name):
                grads[name] = grads[name] + self.decay * self.params[name]
        return loss, loss + self.regularisation(), grads

    def loss_and_data_gradients(self, X, Y, *, update_stats: bool = True, scale=None,
                                masks=None):
        """Loss ``(M,)`` and gradients of the loss alone, without the L2 term.

        The backend's step (:mod:`xpnet.backprop` or a faster one it carries); the
        optimiser applies the decay in place.  ``scale`` ``(M, 1, 1)`` is multiplied
        into every gradient (see :func:`xpnet.backprop.loss_and_data_gradients`);
        ``masks`` are dropout's (passed on only when given).
        """
        extra = {} if masks is None else {"masks": masks}
        return self.backend.data_gradients(self, X, Y, update_stats=update_stats,
                                           scale=scale, **extra)

    # --------------------------------------------------------------- evaluation
    def evaluate(self, X, y, Y, *, chunk: int = 10000):
        """Eval-mode loss, cost and accuracy over a whole set, in chunks of samples.

        Args:
            X: ``(N, d_in)`` inputs; y: ``(N,)`` integer labels; Y: ``(N, C)`` one-hot.

        Returns:
            dict of device arrays ``loss``, ``cost``, ``accuracy``, each ``(M,)``.
        """
        xp = self.xp
        N = X.shape[0]
        loss_sum, correct = None, None
        for start in range(0, N, chunk):
            stop = min(start + chunk, N)
            scores, _ = self.forward(X[start:stop, ...], train=False)
            loss, _ = layers.softmax_cross_entropy(scores, Y[start:stop, ...], xp=xp)
            hits = xp.sum(xp.astype(xp.argmax(scores, axis=-1) == y[start:stop], self.dtype),
                          axis=-1)
            part = loss * (stop - start)
            loss_sum = part if loss_sum is None else loss_sum + part
            correct = hits if correct is None else correct + hits
        loss = loss_sum / N
        return {"loss": loss, "cost": loss + self.regularisation(), "accuracy": correct / N}

    def predict(self, X, *, chunk: int = 10000):
        """Eval-mode class predictions ``(M, N)`` for inputs ``(N, d_in)``."""
        xp = self.xp
        N = X.shape[0]  # slices stop at N: the standard leaves out-of-bounds stops undefined
        parts = [xp.argmax(self.forward(X[s:min(s + chunk, N), ...], train=False)[0], axis=-1)
                 for s in range(0, N, chunk)]
        return xp.concat(parts, axis=-1)

    # ------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, np.ndarray]:
        """Every array as host NumPy, plus the config, for :meth:`save`."""
        state = {f"param/{k}": to_numpy(v) for k, v in self.params.items()}
        state.update({f"buffer/{k}": to_numpy(v) for k, v in self.buffers.items()})
        state["lam"] = self.lam_host
        state["bn_eps"] = self.bn_eps_host
        state.update({f"per_model/{k}": v for k, v in self.per_model_host.items()
                      if k != "bn_eps"})
        meta = {"config": self.config.to_dict(), "seeds": self.seeds, "format": 1}
        state["meta"] = np.array(json.dumps(meta))
        return state

    def save(self, path) -> None:
        """Write a ``.npz`` checkpoint atomically (no pickle inside)."""
        with atomic_write(path) as f:
            np.savez(f, **self.state_dict())

    @classmethod
    def load(cls, path, device: str | Backend = "cpu", dtype: str | None = None) -> Network:
        """Load a checkpoint written by :meth:`save` onto ``device``, without pickle."""
        backend = device if isinstance(device, Backend) else get_backend(device)
        try:
            with np.load(os.fspath(path), allow_pickle=False) as f:
                state = {k: f[k] for k in f.files}
            meta = json.loads(str(state.pop("meta")))
            config = NetworkConfig(**meta["config"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
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
        per_model = {k.partition("/")[2]: v for k, v in state.items()
                     if k.startswith("per_model/")}
        net = cls(config, params, buffers, state["lam"], backend, meta.get("seeds"),
                  state.get("bn_eps"), per_model=per_model)
        expected = cls.create(config, n_models=net.n_models, device="cpu", dtype="float64")
        for name, value in expected.params.items():
            if name not in params or tuple(params[name].shape) != tuple(value.shape):
                raise CheckpointError(
                    f"{path} does not match its own config at {name}; the file is damaged.")
        return net

    def __repr__(self) -> str:
        c = self.config
        return (f"Network(sizes={c.sizes}, norm={c.norm!r}, activation={c.activation!r}, "
                f"init={c.init!r}, "
                f"n_models={self.n_models}, device={self.backend.name!r}, dtype={self.dtype})")


def one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Host one-hot encoding ``(n, n_classes)`` float64 of integer labels ``(n,)``."""
    y = np.asarray(y)
    out = np.zeros((y.shape[0], n_classes))
    out[np.arange(y.shape[0]), y] = 1.0
    return out

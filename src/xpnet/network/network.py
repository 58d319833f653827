"""A K-layer fully connected network with a registry's layers, for M models at once.

Layer ``l`` (1-based) maps ``d_{l-1} -> d_l`` with weights ``W{l}`` ``(M, d_{l-1}, d_l)``.
Hidden layers are ``dense -> [normalization] -> activation -> [dropout]``, the
normalization and activation named by the config and looked up in
:mod:`xpnet.nn.registry`; the output layer is dense and feeds a softmax cross-entropy.  A
dense layer followed by a normalization has no bias (its ``beta`` plays that role; for
batch norm a bias there would have zero gradient); other dense layers have ``b{l}``
``(M, 1, d_l)``.  Normalized layers have the entry's parameters (``gamma{l}``,
``beta{l}``) and buffers (batch norm's running averages ``mean{l}``, ``var{l}``), all
``(M, 1, d_l)``.  Config fields marked per model (``leaky_slope``, ``dropout``,
``bn_eps``) may differ between the M models: ``Network.per_model[name]`` ``(M,)``.

Cost of model m = mean cross-entropy + the L2 term of :mod:`xpnet.nn.l2`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xpnet.backend.devices import Backend, to_numpy
from xpnet.errors import XpnetError
from xpnet.network import checkpoint, creation
from xpnet.network.config import NetworkConfig, _per_model  # noqa: F401 (NetworkConfig re-exported)
from xpnet.nn import l2, layers, options, registry
from xpnet.step.averages import RunningAverages
from xpnet.step.flat import FlatLayout, FlatParams


class Network:
    """M networks of one architecture, trained in lockstep on the leading model axis.

    Build one with :meth:`Network.create`.  ``params`` and ``buffers`` are dicts of
    device arrays named as in the module docstring; ``lam`` is the device ``(M,)``
    array of L2 strengths and ``bn_eps`` the device ``(M,)`` array of batch norm's
    epsilon (``config.bn_eps`` unless given per model).  The parameters are views of
    ``flat_params.parts`` (:mod:`xpnet.step.flat`: ``W1`` stored transposed on its own, the
    rest side by side), for one update of all and one wide first-layer product.
    """

    def __init__(self, config: NetworkConfig, params: dict, buffers: dict, lam,
                 backend: Backend, seeds=None, per_model: dict | None = None):
        """``per_model`` maps per-model fields of the config (``bn_eps``, ``dropout``...)
        to one value or one per model; a field it leaves out takes the config's value."""
        self.config = config
        self.params = params
        self.buffers = buffers
        self.backend = backend
        self.xp = backend.xp
        self.lam_host = np.asarray(to_numpy(lam), dtype=np.float64).reshape(-1)
        self.n_models = int(self.lam_host.shape[0])
        self.dtype = params["W1"].dtype
        self.lam = backend.asarray(self.lam_host, dtype=self.dtype)
        given = per_model or {}
        #: Every per-model field as host float64 ``(M,)`` and as a device ``(M,)`` array.
        self.per_model_host = {
            name: _per_model(getattr(config, name) if given.get(name) is None
                             else to_numpy(given[name]), self.n_models, name)
            for name in options.per_model_names(type(config))}
        self.per_model = {name: backend.asarray(v, dtype=self.dtype)
                          for name, v in self.per_model_host.items()}
        self.norm_entry = registry.normalization(config.norm)
        self.activation_entry = registry.activation(config.activation)
        self._entry_options = {}
        self.seeds = None if seeds is None else [int(s) for s in np.asarray(seeds).reshape(-1)]
        self.averages = None  # RunningAverages, when the normalization keeps them
        self.lay_out_averages()
        self.flat_params = None
        self.lay_out_params()

    def lay_out_params(self) -> None:
        """Lay the parameters out flat (:class:`~xpnet.step.flat.FlatParams`); ``params``
        then holds views of the parts."""
        layout = FlatLayout.of(self.params, [n for n in self.params if l2.is_penalised(n)])
        self.flat_params = FlatParams(self.xp, self.params, layout)

    def lay_out_averages(self) -> None:
        """Lay the running averages side by side in one array (the buffers become its
        slices: :class:`~xpnet.step.averages.RunningAverages`), so that each step folds them
        all at once; a no-op for a normalization without running averages."""
        norm = self.norm_entry
        if norm is None or norm.averages is None or not self.buffers:
            return
        names = [f"{k}{l}" for l in range(1, self.config.n_layers) for k in norm.buffers]
        self.averages = RunningAverages(self.xp, self.buffers, names,
                                        self.average_momentum(norm), self.dtype,
                                        self.backend.device)

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

    def average_momentum(self, entry):
        """The momentum of a normalization's running averages (its ``averages`` field):
        per model ``(M, 1, 1)`` on the device, or the config's value (None without)."""
        name = entry.averages
        if name is None:
            return None
        return (self.per_model[name][:, None, None] if name in self.per_model
                else getattr(self.config, name))

    @property
    def dropout_scale(self):
        """Dropout's scale of a kept unit, ``1 / (1 - p)`` ``(M, 1, 1)`` on the device."""
        return 1.0 / (1.0 - self.per_model["dropout"][:, None, None])

    @property
    def bn_eps_host(self) -> np.ndarray:
        return self.per_model_host["bn_eps"]

    @property
    def bn_eps(self):
        return self.per_model["bn_eps"]

    # ----------------------------------------------------------------- creation
    @classmethod
    def create(cls, config: NetworkConfig, *, n_models: int | None = None, seeds=0,
               lam=0.0, sigma=None, device: str | Backend = "cpu",
               dtype: str = "float32", **per_model) -> Network:
        """Initialise M models.

        Args:
            seeds: int or ``(M,)``; model m's weights come from ``default_rng(seeds[m])``.
            lam: L2 strength, scalar or ``(M,)``.
            sigma: weight std for ``init="normal"``, scalar or ``(M,)``.
            per_model: the config's per-model fields by name (``bn_eps=...``,
                ``dropout=[0, 0.1, 0.3]``), scalar or ``(M,)``; default the config's.
            n_models: M; by default the length of the longest of seeds, lam, sigma and
                the per-model values.
        """
        return creation.create(cls, config, n_models=n_models, seeds=seeds, lam=lam,
                               sigma=sigma, device=device, dtype=dtype, **per_model)

    # ------------------------------------------------------------- model axis
    def take_models(self, keep) -> None:
        """Model j becomes the former model ``keep[j]`` (host int64 ``(k,)``), in place.

        Every per-model array is gathered along its leading model axis with ``xp.take``
        on a device index array (no host round trip of the parameters): ``params``,
        ``buffers``, ``lam``, ``bn_eps``, every ``per_model`` entry, and the host copies
        and ``seeds``.  ``keep`` may leave models out (successive halving,
        :mod:`xpnet.search.halving`) and repeat them (population-based training copies a model
        into several places); afterwards ``n_models == len(keep)``.
        """
        keep = np.asarray(keep, dtype=np.int64).reshape(-1)
        if keep.size == 0 or keep.min() < 0 or keep.max() >= self.n_models:
            raise XpnetError(f"take_models needs indices of the {self.n_models} models, "
                             f"got {keep.tolist()}.")
        idx = self.backend.asarray(keep)
        xp = self.xp
        for store in (self.params, self.buffers):
            for name, value in store.items():
                store[name] = xp.take(value, idx, axis=0)
        own = vars(self)  # attributes, not read-only aliases of the per-model tables
        for attr in ("lam_host", "bn_eps_host", "lam", "bn_eps"):
            if attr in own:
                own[attr] = (own[attr][keep] if attr.endswith("_host")
                             else xp.take(own[attr], idx, axis=0))
        for attr in ("per_model_host", "per_model"):  # per-model option tables, if any
            table = own.get(attr)
            if isinstance(table, dict):
                for name, value in table.items():
                    table[name] = (value[keep] if isinstance(value, np.ndarray)
                                   else xp.take(value, idx, axis=0))
        if self.seeds is not None:
            self.seeds = [self.seeds[int(i)] for i in keep]
        self.n_models = int(keep.size)
        self._entry_options = {}  # built from the per-model arrays just compacted
        self.lay_out_averages()
        self.lay_out_params()

    def set_lam(self, lam) -> None:
        """New L2 strengths, one or one per model (host), checked as :meth:`create` does."""
        lam = _per_model(lam, self.n_models, "lam")
        if np.any(lam < 0) or not np.all(np.isfinite(lam)):
            raise XpnetError("lam must be finite and non-negative.")
        self.lam_host = lam
        self.lam = self.backend.asarray(lam, dtype=self.dtype)

    def set_per_model(self, name: str, value) -> None:
        """New values of the per-model option ``name`` (``"dropout"``, ``"bn_eps"``...),
        one or one per model (host), checked against the option's range."""
        if name not in self.per_model_host:
            raise XpnetError(f"{name!r} is not a per-model option of this network; the "
                             f"per-model options are {', '.join(self.per_model_host)}.")
        field = {f.name: f for f in dataclasses.fields(self.config)}[name]
        values = _per_model(options.check_field(field, value), self.n_models, name)
        self.per_model_host[name] = values
        self.per_model[name] = self.backend.asarray(values, dtype=self.dtype)
        self._entry_options = {}  # built from the per-model arrays just replaced

    # ------------------------------------------------------------------ forward
    def forward(self, X, *, train: bool = True, update_stats: bool = True, masks=None):
        """Scores for a batch.

        Args:
            X: shared ``(n, d_in)`` or per-model ``(M, n, d_in)`` inputs.
            train: batch statistics (True) or running averages (False) in batch norm.
            update_stats: in train mode, fold the batch statistics into the running
                averages (False for gradient checks).
            masks: in train mode, dropout masks ``(M, n, d_l)`` per hidden layer
                (:mod:`xpnet.nn.dropout`), or None for no dropout.

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
        h, caches, batch_stats = X, [], {}
        for l in range(1, K + 1):
            s, dense_cache = layers.dense_forward(h, p[f"W{l}"], p.get(f"b{l}"))
            if l == K:
                caches.append((dense_cache, None, None, None))
                if batch_stats:
                    self.averages.fold(self.buffers, batch_stats)
                return s, caches
            norm_cache, z = None, s
            if norm is not None:
                z, norm_cache, new_buffers = norm.forward(
                    s, {k: p[f"{k}{l}"] for k in norm.params},
                    {k: buffers[f"{k}{l}"] for k in norm.buffers}, train=train, xp=xp,
                    **norm_options)
                if train and update_stats:
                    for k, value in new_buffers.items():
                        if norm.averages is not None:
                            batch_stats[f"{k}{l}"] = value
                        else:
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
        """The L2 term of the cost per model, shape ``(M,)`` (see :mod:`xpnet.nn.l2`)."""
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

        Uses the backend's training step (``Backend.data_gradients``), the same
        code that :func:`xpnet.training.loop.train` runs, so a gradient check covers it.

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
                                masks=None, score_factor=None):
        """Loss ``(M,)`` and gradients of the loss alone, without the L2 term.

        The backend's step (:mod:`xpnet.step.backprop` or a faster one it carries); the
        optimiser applies the decay in place.  ``scale`` ``(M, 1, 1)`` is multiplied
        into every gradient, ``score_factor`` ``(M, 1, 1)`` replaces the mean's ``1 / n``
        in the score gradient (see :func:`xpnet.step.backprop.loss_and_data_gradients`);
        ``masks`` are dropout's.  The last two are passed on only when given.
        """
        extra = {} if masks is None else {"masks": masks}
        if score_factor is not None:
            extra["score_factor"] = score_factor
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
        return checkpoint.state_dict(self)

    def save(self, path) -> None:
        """Write a ``.npz`` checkpoint atomically (no pickle inside)."""
        checkpoint.save(self, path)

    @classmethod
    def load(cls, path, device: str | Backend = "cpu", dtype: str | None = None) -> Network:
        """Load a checkpoint written by :meth:`save` onto ``device``, without pickle."""
        return checkpoint.load(cls, path, device, dtype)

    def __getstate__(self) -> dict:
        # Modules do not pickle (the backend pickles as its device flag), and the flat
        # layouts are rebuilt on unpickling: the arrays travel once, as params and buffers.
        state = dict(self.__dict__)
        for name in ("xp", "flat_params", "averages"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.xp = self.backend.xp
        self.averages = self.flat_params = None
        self.lay_out_averages()
        self.lay_out_params()

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

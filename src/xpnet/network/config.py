"""The architecture options of a network: :class:`NetworkConfig`, the one home of them.

Re-exported by :mod:`xpnet.network` (``from xpnet.network import NetworkConfig``).  What
reads the config class of a file or a spec looks it up in this module at each call, so a
study that extends it here brings its new fields everywhere.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xpnet.base import inputs
from xpnet.errors import XpnetError
from xpnet.nn import options, registry


def _positive(a):
    return a > 0


def _unit_interval(a):
    return (a >= 0) & (a <= 1)


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Architecture of a network: ``d_in`` inputs, the ``hidden`` widths, ``n_classes`` outputs.

    The one home of the model options: ``Classifier``'s keywords, the suite's spec and
    fingerprints, and saved files are derived from these fields (see :mod:`xpnet.nn.options`).
    Fields marked per model (``leaky_slope``, ``dropout``, ``bn_eps``) take one number or
    one per model (``Network.create`` also takes them per model, by name).

    Attributes:
        norm: the normalization after each hidden layer's affine map, a name in
            :data:`xpnet.nn.registry.NORMALIZATIONS` (``"batch"``, ``"layer"``) or None.
        activation: the hidden layers' activation, a name in
            :data:`xpnet.nn.registry.ACTIVATIONS` (``"relu"``, ``"leaky_relu"``, ``"tanh"``,
            ``"elu"``).
        leaky_slope: the negative slope of ``"leaky_relu"``.
        dropout: inverted-dropout rate of the hidden layers in training, in [0, 1).
        init: ``"he"``, ``"xavier"`` or ``"normal"`` (then ``sigma`` is the weights' std).
        bn_momentum: weight of the old running average in batch norm.
        bn_eps: the normalization's epsilon (batch norm's, layer norm's).
    """

    d_in: int = 3072
    hidden: tuple[int, ...] = (50, 50)
    n_classes: int = 10
    norm: str | None = "batch"
    activation: str = "relu"
    leaky_slope: float = options.per_model(0.01, "of at least 0", lambda a: a >= 0)
    dropout: float = options.per_model(0.0, "in [0, 1)", lambda a: (a >= 0) & (a < 1))
    init: str = "he"
    bn_momentum: float = options.shared(0.9, "in [0, 1]", _unit_interval)
    bn_eps: float = options.per_model(1e-5, "above 0", _positive)

    def __post_init__(self):
        sizes = inputs.numbers([self.d_in, self.n_classes])
        hidden = inputs.numbers(self.hidden)
        if (sizes is None or hidden is None or hidden.ndim != 1
                or not np.all(np.isfinite(sizes) & (sizes == np.round(sizes)))
                or not np.all(np.isfinite(hidden) & (hidden == np.round(hidden)))):
            raise XpnetError("Layer sizes must be whole numbers: d_in, n_classes and the "
                             f"hidden widths, got d_in={self.d_in!r}, hidden={self.hidden!r}, "
                             f"n_classes={self.n_classes!r}.")
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden.tolist()))
        object.__setattr__(self, "d_in", int(sizes[0]))
        object.__setattr__(self, "n_classes", int(sizes[1]))
        if self.d_in < 1 or self.n_classes < 2 or any(h < 1 for h in self.hidden):
            raise XpnetError("Layer sizes must be positive and n_classes at least 2.")
        # Widths whose weights cannot fit in memory even in float32: refused before
        # anything is allocated (the estimators check again with M, dtype and the data).
        inputs.check_memory(4 * inputs.weight_count(self.sizes),
                            f"A network of sizes {self.sizes} (its weights, one model)",
                            "use narrower layers")
        options.check_fields(self)

    @classmethod
    def from_dict(cls, d: dict) -> NetworkConfig:
        """The config a dict of fields describes; a legacy ``batch_norm`` bool names ``norm``
        (True: ``"batch"``, False: None), and missing fields take their defaults."""
        d = dict(d)
        if "batch_norm" in d:
            legacy = d.pop("batch_norm")
            d.setdefault("norm", "batch" if legacy else None)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise XpnetError(f"Unknown network option {sorted(unknown)[0]!r}; use the fields "
                             "of xpnet.NetworkConfig.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @property
    def batch_norm(self) -> bool:
        """Whether the hidden layers use batch norm (``norm == "batch"``)."""
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

    def spec_dict(self) -> dict:
        """The fingerprinted form: ``to_dict()`` as the suite's first spec format wrote it.

        ``norm`` ``"batch"`` / None is written as ``batch_norm`` True / False, and a field
        the first format did not have is left out while it holds its default, so the
        fingerprints of runs stored before it existed stay what they were.
        """
        d = self.to_dict()
        if d["norm"] in ("batch", None):
            d["batch_norm"] = d.pop("norm") == "batch"
        for f in dataclasses.fields(self):
            if f.name not in _FIRST_SPEC and f.name in d and d[f.name] == f.default:
                del d[f.name]
        return d


#: The fields of the first spec format (what it always wrote, ``batch_norm`` for ``norm``).
_FIRST_SPEC = ("d_in", "hidden", "n_classes", "init", "bn_momentum", "bn_eps")


def _per_model(value, M, name) -> np.ndarray:
    """Broadcast a scalar or length-M sequence to a float64 host array ``(M,)``."""
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.full(M, arr[0])
    if arr.shape != (M,):
        raise XpnetError(f"{name} must be a scalar or have one value per model ({M}).")
    return arr

"""What the option dataclasses share: per-model fields and the check of every value.

A model option is a field of a frozen dataclass (:class:`~xpnet.network.network.NetworkConfig`,
the optimizers of :mod:`xpnet.training.optim`); everything else (``Classifier``'s keywords, the
suite's spec, fingerprints, saved files) is derived from those fields.  A field's
``metadata`` says what this module needs to know of it:

- ``"per_model": True``: the value may be one number or one number per model;
- ``"valid": (rule, test)``: ``test(values)`` is True where a float64 array of values is
  allowed, ``rule`` says so in words (``"in [0, 1)"``);
- a field that names an entry (``norm``, ``activation``, ``init``) is checked against
  :func:`choices`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xpnet.base import inputs
from xpnet.errors import XpnetError
from xpnet.nn import registry
from xpnet.nn.init import INITS


def per_model(default, rule: str, test) -> dataclasses.Field:
    """A numeric field that takes one value or one per model, valid where ``test`` holds."""
    return dataclasses.field(default=default,
                             metadata={"per_model": True, "valid": (rule, test)})


def shared(default, rule: str, test) -> dataclasses.Field:
    """A numeric field that takes one value for all models, valid where ``test`` holds."""
    return dataclasses.field(default=default, metadata={"valid": (rule, test)})


def per_model_names(cls) -> tuple[str, ...]:
    """The fields of dataclass ``cls`` that take one value per model."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("per_model"))


def choices() -> dict[str, tuple]:
    """The names each naming option accepts: ``norm`` and ``activation`` are the layer
    registry's entries (:mod:`xpnet.nn.registry`), looked up at each call so an entry
    registered later is accepted."""
    return {"norm": (*registry.NORMALIZATIONS, None), "activation": tuple(registry.ACTIVATIONS),
            "init": tuple(INITS)}


def check_choice(name: str, value) -> None:
    """Raise a one-sentence error unless ``value`` is a name option ``name`` accepts."""
    allowed = choices()[name]
    if not (value is None or isinstance(value, str)) or value not in allowed:
        names = ", ".join(repr(a) for a in allowed)
        raise XpnetError(f"Unknown {name} {value!r}; use one of: {names}.")


def check_field(field: dataclasses.Field, value):
    """``value`` of a numeric field, checked: a float (or a tuple of floats per model).

    A tuple is allowed only for per-model fields; the error names the field and its rule.
    """
    rule, test = field.metadata["valid"]
    many = field.metadata.get("per_model", False)
    what = f"{field.name} must be a number {rule}" + (" or one per model" if many else "")
    arr = inputs.numbers(value)
    if arr is None or arr.size == 0 or (arr.ndim > 0 and not many):
        raise XpnetError(f"{what}, got {value!r}.")
    if not np.all(np.isfinite(arr) & test(arr)):
        raise XpnetError(f"{what}, got {value!r}.")
    return float(arr) if arr.ndim == 0 else tuple(float(v) for v in arr.tolist())


def check_fields(obj) -> None:
    """Check and normalise (in place, on a frozen dataclass) every field with a rule."""
    for field in dataclasses.fields(obj):
        if "valid" in field.metadata:
            object.__setattr__(obj, field.name, check_field(field, getattr(obj, field.name)))
        elif field.name in choices():
            check_choice(field.name, getattr(obj, field.name))

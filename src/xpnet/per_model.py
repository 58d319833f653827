"""Per-model option values: one value for all M models, or one per model.

A config field marked ``metadata={"per_model": True}`` (``NetworkConfig.bn_eps``,
``dropout``, ``leaky_slope``) takes a scalar or a sequence of M values; the network
keeps it as a host float64 ``(M,)`` array.  This module broadcasts such values and
checks them against their field's rule, in one sentence when they break it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xpnet.errors import XpnetError

#: What the values of a field must satisfy besides being finite, and the sentence.
RULES = {
    "bn_eps": (lambda v: v > 0, "bn_eps must be positive"),
    "dropout": (lambda v: (v >= 0) & (v < 1), "dropout must be in [0, 1)"),
    "leaky_slope": (lambda v: v == v, "leaky_slope must be a finite number"),
}


def fields_of(config_class) -> tuple[str, ...]:
    """Names of the dataclass fields of ``config_class`` marked ``per_model``."""
    return tuple(f.name for f in dataclasses.fields(config_class)
                 if f.metadata.get("per_model"))


def check(name: str, values: np.ndarray) -> None:
    """Raise the one-sentence error for values ``(k,)`` of field ``name`` that break its
    rule."""
    rule, sentence = RULES.get(name, (lambda v: v == v, f"{name} must be finite"))
    if values.size == 0 or not np.all(np.isfinite(values) & rule(values)):
        raise XpnetError(f"{sentence}, got {values.tolist()}.")


def broadcast(value, M: int, name: str) -> np.ndarray:
    """A scalar or length-M sequence as a float64 host array ``(M,)``."""
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.full(M, arr[0])
    if arr.shape != (M,):
        raise XpnetError(f"{name} must be a scalar or have one value per model ({M}).")
    return arr

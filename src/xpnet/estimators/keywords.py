"""The estimators' keywords: their own, and the network's, derived from the option dataclasses.

Classifier's network keywords are the fields of
:class:`~xpnet.network.config.NetworkConfig` (looked up in :mod:`xpnet.network.config` at
each call, so that an extended config brings its fields along), never listed here.
"""

from __future__ import annotations

import dataclasses

from xpnet.network import config as network_config
from xpnet.nn import options

#: Classifier's own keywords and their defaults; the network's come from the fields of
#: :class:`~xpnet.network.config.NetworkConfig` (:func:`network_keywords`), never listed here.
OWN = {"lam": 0.005, "seeds": 0, "sigma": None, "momentum": 0.0, "optimizer": None,
       "schedule": None, "batch_size": 100, "n_classes": None, "evals_per_cycle": 10,
       "train_eval_size": 10000, "device": "cpu", "dtype": "float32"}

#: Own keywords that take one value for all models or one per model.
OWN_PER_MODEL = ("lam", "seeds", "sigma", "momentum")


def network_keywords() -> dict:
    """The network options ``Classifier`` takes, with their defaults: every field of
    ``NetworkConfig`` but the sizes, which come from the data (and ``hidden``)."""
    return {f.name: f.default for f in dataclasses.fields(network_config.NetworkConfig)
            if f.name not in ("d_in", "hidden", "n_classes")}


def keywords() -> list[str]:
    """Every constructor argument, in order: what ``get_params`` returns."""
    return ["hidden", *network_keywords(), *OWN]


def per_model_keywords() -> tuple[str, ...]:
    """Constructor arguments that take one value for all models or one per model."""
    return (*OWN_PER_MODEL, *options.per_model_names(network_config.NetworkConfig))

"""The training step: forward and backward for M models, and how its arrays are laid out.

- :mod:`~xpnet.step.backprop`: the array-API reference step (every backend's fast step is
  tested against it);
- :mod:`~xpnet.step.flat`: every parameter of M models in one array, for one update;
- :mod:`~xpnet.step.averages`: batch norm's running averages, laid out flat and folded at once;
- :mod:`~xpnet.step.rates`: the per-step factors (rate, decay) put on the device per epoch;
- :mod:`~xpnet.step.liveness`: which models still train, tracked on the device;
- :mod:`~xpnet.step.wide`: the first layer of models that share a batch as one wide product.

The backends' own fast steps live in :mod:`xpnet.backend` (design rule 2).

Imports: :mod:`xpnet.nn`, :mod:`xpnet.base`, :mod:`xpnet.errors`.
"""

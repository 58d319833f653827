"""What a network is made of: layers as forward/backward pairs and their registry.

- :mod:`~xpnet.nn.layers`: dense, softmax cross-entropy, batch and layer norm's maths;
- :mod:`~xpnet.nn.registry`: activations and normalizations by name, one entry each
  (built-ins in :mod:`~xpnet.nn.activations` and :mod:`~xpnet.nn.norms`);
- :mod:`~xpnet.nn.dropout`: inverted dropout with host-drawn masks;
- :mod:`~xpnet.nn.init`: weight initialisers; :mod:`~xpnet.nn.l2`: the L2 convention;
- :mod:`~xpnet.nn.options`: per-model option fields and the check of every value.

Array-API code (design rule 1).

Imports: :mod:`xpnet.base`, :mod:`xpnet.errors`.
"""

"""A network of M models: its architecture options, its arrays, checkpoints, gradient checks.

- :mod:`~xpnet.network.config`: :class:`NetworkConfig`, the one home of the model options;
- :mod:`~xpnet.network.network`: :class:`Network` (the model axis, forward, gradients,
  evaluation); :mod:`~xpnet.network.creation`: initialising M models;
- :mod:`~xpnet.network.checkpoint`: ``.npz`` checkpoints, written and read without pickle
  (:mod:`~xpnet.network.checkpoint_reader`: every member checked before anything is built);
- :mod:`~xpnet.network.gradcheck`: centred differences against the analytic gradients.

Imports: :mod:`xpnet.backend`, :mod:`xpnet.step`, :mod:`xpnet.nn`, :mod:`xpnet.base`,
:mod:`xpnet.errors`.
"""

from xpnet.network.config import NetworkConfig
from xpnet.network.network import Network, one_hot

__all__ = ["Network", "NetworkConfig", "one_hot"]

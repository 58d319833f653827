"""Searching hyper-parameters on the model axis: grids and population schedules.

- :mod:`~xpnet.search.sweep`: log-uniform grids, coarse -> fine, trained in lockstep;
- :mod:`~xpnet.search.halving`: successive halving inside one lockstep network;
- :mod:`~xpnet.search.pbt`: population-based training inside one lockstep network.

Imports: :mod:`xpnet.training`, :mod:`xpnet.network`, :mod:`xpnet.backend`,
:mod:`xpnet.nn`, :mod:`xpnet.base`, :mod:`xpnet.errors`.
"""

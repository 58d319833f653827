"""Devices: a device flag becomes an array namespace, a device and that backend's step.

- :mod:`~xpnet.backend.devices`: :class:`Backend`, :func:`get_backend`, :func:`to_numpy`;
- :mod:`~xpnet.backend.numpy_step`: the CPU backend's in-place NumPy step.

Imports: :mod:`xpnet.step`, :mod:`xpnet.nn`, :mod:`xpnet.base`, :mod:`xpnet.errors`.
"""

from xpnet.backend.devices import (
    DEVICES,
    USER_DEVICES,
    Backend,
    get_backend,
    namespace_of,
    to_numpy,
)

__all__ = ["DEVICES", "USER_DEVICES", "Backend", "get_backend", "namespace_of", "to_numpy"]

"""Device selection: a device flag becomes an array namespace and a device.

``get_backend("cpu")`` gives NumPy, ``get_backend("cuda")`` CuPy and
``get_backend("strict")`` the ``array_api_strict`` reference namespace (for tests),
all through ``array_api_compat`` so the core sees one standard API.  Randomness is
drawn on the host with NumPy and moved to the device (see :meth:`Backend.asarray`),
so one seed gives the same run on every device up to float rounding.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from xpnet.errors import BackendError

DEVICES = ("cpu", "cuda", "strict")


@dataclasses.dataclass(frozen=True)
class Backend:
    """An array namespace ``xp``, the device arrays are created on, and the training step.

    ``data_gradients(net, X, Y, *, update_stats, scale) -> (loss, grads)`` is the step
    networks on this backend train with: :func:`xpnet.backprop.loss_and_data_gradients`
    (the array-API reference) unless the backend carries a faster one of its own
    (design rule 2: backend-specific speed lives here, not in the core).
    """

    name: str
    xp: Any
    device: Any
    data_gradients: Callable = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.data_gradients is None:
            from xpnet.backprop import loss_and_data_gradients

            object.__setattr__(self, "data_gradients", loss_and_data_gradients)

    def asarray(self, host_array, dtype=None):
        """Move a host (NumPy) array or Python scalar to this backend's device."""
        if isinstance(dtype, str):
            dtype = self.dtype(dtype)
        return self.xp.asarray(host_array, dtype=dtype, device=self.device)

    def dtype(self, name: str):
        """The namespace's dtype object for a name such as ``"float32"``."""
        try:
            return getattr(self.xp, name)
        except AttributeError:
            raise BackendError(f"Unknown dtype {name!r}; use float32 or float64.") from None

    def synchronize(self) -> None:
        """Block until queued device work is done (a no-op on the CPU)."""
        if self.name == "cuda":
            import cupy

            cupy.cuda.get_current_stream().synchronize()


def get_backend(device: str = "cpu") -> Backend:
    """Return the backend for ``device`` in ``{"cpu", "cuda", "strict"}``.

    Raises :class:`BackendError` with what to install when the library or GPU is missing.
    """
    if device == "cpu":
        import array_api_compat.numpy as xp

        from xpnet.numpy_step import loss_and_data_gradients

        return Backend("cpu", xp, "cpu", loss_and_data_gradients)
    if device == "strict":
        try:
            import array_api_strict as xp
        except ImportError:
            raise BackendError(
                'The "strict" device needs array-api-strict; run pip install "xpnet[dev]".'
            ) from None
        return Backend("strict", xp, xp.Device("CPU_DEVICE"))
    if device == "cuda":
        return _cuda_backend()
    raise BackendError(f"Unknown device {device!r}; use one of: cpu, cuda.")


def _cuda_backend() -> Backend:
    try:
        import cupy
    except ImportError:
        raise BackendError(
            '--device cuda needs CuPy; run pip install "xpnet[cuda12]" (or "xpnet[cuda13]" '
            "for CUDA 13 drivers), or use --device cpu."
        ) from None
    except Exception as exc:  # a broken CuPy install raises all sorts of things
        raise BackendError(
            f"CuPy is installed but failed to import ({type(exc).__name__}); reinstall the "
            'cupy package that matches your CUDA driver ("xpnet[cuda12]" or "xpnet[cuda13]"), '
            "or use --device cpu."
        ) from None
    try:
        n_gpus = cupy.cuda.runtime.getDeviceCount()
    except Exception:
        n_gpus = 0
    if n_gpus < 1:
        raise BackendError(
            "CuPy is installed but no usable NVIDIA GPU or driver was found; "
            "use --device cpu or run on a machine with a GPU."
        )
    import array_api_compat.cupy as xp

    return Backend("cuda", xp, cupy.cuda.Device())


def to_numpy(x) -> np.ndarray:
    """Copy any backend's array (or a scalar) to a host NumPy array."""
    if isinstance(x, np.ndarray):
        return x
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)  # NumPy scalars, array_api_strict arrays (CPU), Python numbers


def namespace_of(*arrays):
    """The array namespace of the given arrays (``array_api_compat.array_namespace``)."""
    import array_api_compat

    return array_api_compat.array_namespace(*arrays)

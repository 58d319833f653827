"""Device selection: a device flag becomes an array namespace and a device.

``get_backend("cpu")`` gives NumPy, ``get_backend("cuda")`` CuPy,
``get_backend("torch")`` PyTorch tensors on the CPU (``"torch:cuda"``, ``"torch:mps"`` on a
GPU) and ``get_backend("strict")`` the ``array_api_strict`` reference namespace (for
tests), all through ``array_api_compat`` so the core sees one standard API.
``get_backend("strict:device1")`` puts the strict namespace's arrays on a non-CPU device
that, like a GPU, refuses to mix with host arrays: CI's stand-in for CuPy.  Randomness is
drawn on the host with NumPy and moved to the device (see :meth:`Backend.asarray`),
so one seed gives the same run on every device up to float rounding.
"""

from __future__ import annotations

import dataclasses
import os
import types
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from xpnet.backend import numpy_step
from xpnet.errors import BackendError
from xpnet.step import backprop

#: What a host value without ``flags`` (a Python scalar or list) counts as: writable.
_WRITABLE = types.SimpleNamespace(writeable=True)

DEVICES = ("cpu", "cuda", "torch", "torch:cuda", "torch:mps", "strict", "strict:device1")
#: The device flags a user picks from (the strict ones are for tests).
USER_DEVICES = DEVICES[:5]

# What brings CuPy together with the CUDA libraries it loads (cuBLAS, NVRTC, ...).
INSTALL_CUPY = 'pip install "xpnet[cuda12]" (or "xpnet[cuda13]" for CUDA 13 drivers)'
INSTALL_TORCH = 'pip install ".[torch]"'


@dataclasses.dataclass(frozen=True)
class Backend:
    """An array namespace ``xp``, the device arrays are created on, and the training step.

    ``data_gradients(net, X, Y, *, update_stats, scale[, masks, score_factor]) ->
    (loss, grads)`` is the step networks on this backend train with:
    :func:`xpnet.step.backprop.loss_and_data_gradients`
    (the array-API reference) unless the backend carries a faster one of its own
    (design rule 2: backend-specific speed lives here, not in the core).
    """

    name: str
    xp: Any
    device: Any
    data_gradients: Callable = dataclasses.field(default=None, repr=False, compare=False)
    #: The in-place form of one Adam step (``xpnet.training.optim.AdamUpdate._update``
    #: is the reference), or None: the reference form.
    adam_update: Callable | None = dataclasses.field(default=None, repr=False, compare=False,
                                                      kw_only=True)
    #: The device flag this backend answers to (``"torch:cuda"``, ``"strict:device1"``...);
    #: ``name`` by default.
    flag: str = ""

    def __post_init__(self):
        if not self.flag:
            object.__setattr__(self, "flag", self.name)
        if self.data_gradients is None:
            object.__setattr__(self, "data_gradients", backprop.loss_and_data_gradients)

    def __reduce__(self):
        # A backend holds a module (its namespace); pickled, it is its flag, so a pickled
        # Classifier (scikit-learn's joblib workers) finds its backend again on unpickling.
        return get_backend, (self.flag,)

    def asarray(self, host_array, dtype=None):
        """Move a host (NumPy) array or Python scalar to this backend's device."""
        if isinstance(dtype, str):
            dtype = self.dtype(dtype)
        if self.name == "torch" and not getattr(host_array, "flags", _WRITABLE).writeable:
            # A read-only array (the mapped data cache) becomes a CPU tensor on the same
            # memory, which PyTorch warns about; xpnet never writes to its data tensors.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                return self.xp.asarray(host_array, dtype=dtype, device=self.device)
        return self.xp.asarray(host_array, dtype=dtype, device=self.device)

    def dtype(self, name: str):
        """The namespace's dtype object for a name such as ``"float32"``."""
        if name == "float64" and self.flag == "torch:mps":
            raise BackendError("Apple's MPS has no float64; use float32 on --device torch:mps, "
                               "or --device torch for float64.")
        try:
            return getattr(self.xp, name)
        except AttributeError:
            raise BackendError(f"Unknown dtype {name!r}; use float32 or float64.") from None

    def synchronize(self) -> None:
        """Block until queued device work is done (a no-op on the CPU)."""
        if self.name == "cuda":
            import cupy

            cupy.cuda.get_current_stream().synchronize()
        elif self.name == "torch" and self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
        elif self.name == "torch" and self.device.type == "mps":
            import torch

            torch.mps.synchronize()

    def release_staging(self) -> None:
        """Hand back host memory kept from uploads: CuPy's pool of pinned (page-locked)
        staging buffers, which otherwise holds on to about 740 MB for CIFAR-10 for good.
        Call it once data is on the device (:meth:`DeviceSplit.from_host` does)."""
        if self.name == "cuda":
            import cupy

            cupy.get_default_pinned_memory_pool().free_all_blocks()

    def describe(self) -> dict:
        """Which device computes, for a run's record: ``{"device": flag}`` plus, on a GPU,
        its ``gpu`` name, its ``gpu_index`` as this process numbers it and the
        ``CUDA_VISIBLE_DEVICES`` it was picked under (one worker per GPU shows here)."""
        info = {"device": self.flag}
        if self.name == "cuda":
            import cupy

            index = self.device.id
            name = cupy.cuda.runtime.getDeviceProperties(index)["name"]
            info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        elif self.name == "torch" and self.device.type == "cuda":
            import torch

            index = self.device.index
            info["gpu"] = torch.cuda.get_device_name(index)
        elif self.name == "torch" and self.device.type == "mps":
            return {**info, "gpu": "Apple MPS"}
        else:
            return info
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return {**info, "gpu_index": int(index), "cuda_visible_devices": visible}


def get_backend(device: str = "cpu") -> Backend:
    """Return the backend for a device flag.

    - ``"cpu"``: NumPy, training with :mod:`xpnet.backend.numpy_step`;
    - ``"cuda"``: CuPy on the current GPU, probed with a small matmul, an elementwise
      kernel and a reduction before it is handed out;
    - ``"torch"``: PyTorch tensors on the CPU through ``array_api_compat.torch``, training
      with the array-API step (no autograd: the gradients are ours);
    - ``"torch:cuda"``, ``"torch:mps"``: the same on PyTorch's current CUDA (or ROCm) GPU,
      or on Apple's MPS, probed like ``"cuda"`` (MPS has no float64);
    - ``"strict"``: ``array_api_strict`` on its CPU device;
    - ``"strict:<device>"``: ``array_api_strict`` with every array on
      ``array_api_strict.Device("<device>")``, say ``"strict:device1"``.  Off the CPU
      device it refuses what CuPy refuses: combining its arrays with host (CPU-device)
      arrays in either operand order, indexing with host indices and ``np.asarray``.
      The test matrix runs the core on it to catch host/device mixing without a GPU.
      Its ``name`` is ``"strict"``; ``device`` tells the two apart.

    Raises :class:`BackendError` with what to install when the library or GPU is missing.
    """
    if device == "cpu":
        import array_api_compat.numpy as xp

        return Backend("cpu", xp, "cpu", numpy_step.loss_and_data_gradients,
                       adam_update=numpy_step.adam_update)
    if device == "strict" or device.startswith("strict:"):
        return _strict_backend(device.partition(":")[2] or "CPU_DEVICE")
    if device == "cuda":
        return _cuda_backend()
    if device in ("torch", "torch:cuda", "torch:mps"):
        return _torch_backend(device)
    raise BackendError(f"Unknown device {device!r}; use one of: {', '.join(USER_DEVICES)}.")


def _strict_backend(device_name: str) -> Backend:
    try:
        import array_api_strict as xp
    except ImportError:
        raise BackendError(
            'The "strict" device needs array-api-strict; run pip install "xpnet[dev]".'
        ) from None
    try:
        device = xp.Device(device_name)
    except ValueError:
        raise BackendError(f"array_api_strict has no device {device_name!r}; use strict, "
                           "strict:device1 or strict:device2.") from None
    return Backend("strict", xp, device, flag="strict" if device_name == "CPU_DEVICE"
                   else f"strict:{device_name}")


def _cuda_backend() -> Backend:
    try:
        import cupy
    except ImportError:
        raise BackendError(
            f"--device cuda needs CuPy; run {INSTALL_CUPY}, or use --device cpu."
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
    try:
        _probe_cuda(cupy)
        import array_api_compat.cupy as xp
    except Exception as exc:  # ImportError (libcublasLt), DynamicLibNotFoundError, ...
        raise BackendError(
            f"CuPy sees a GPU but cannot compute on it ({_first_line(exc)}), most likely "
            f"because CUDA libraries are missing; run {INSTALL_CUPY}, which brings "
            "CuPy's CUDA libraries, or use --device cpu."
        ) from None
    return Backend("cuda", xp, cupy.cuda.Device())


def _torch_backend(flag: str) -> Backend:
    try:
        import torch
    except ImportError:
        raise BackendError(
            f"--device {flag} needs PyTorch; run {INSTALL_TORCH}, or use --device cpu."
        ) from None
    kind = flag.partition(":")[2] or "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise BackendError(
            f"PyTorch {torch.__version__} sees no CUDA GPU (no GPU, no driver or a CPU-only "
            "build); use --device torch or run on a machine with a GPU."
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise BackendError(
            f"PyTorch {torch.__version__} sees no Apple MPS device (it needs Apple silicon "
            "and macOS 12.3 or later); use --device torch."
        )
    device = torch.device(kind, torch.cuda.current_device()) if kind == "cuda" else \
        torch.device(kind)
    try:
        import array_api_compat.torch as xp

        _probe_torch(torch, device)
    except Exception as exc:  # a broken build, a driver mismatch, an unsupported GPU...
        fallback = "cpu" if kind == "cpu" else "torch"
        raise BackendError(
            f"PyTorch cannot compute on {device} ({_first_line(exc)}); reinstall a PyTorch "
            f"build that matches this machine, or use --device {fallback}."
        ) from None
    return Backend("torch", xp, device, flag=flag)


def _probe_torch(torch, device) -> None:
    """A matmul, an elementwise kernel and a reduction on ``device``, waited for."""
    a = torch.ones((2, 2), dtype=torch.float32, device=device)
    value = float(torch.sum(torch.clamp(a @ a, min=0.0)))
    if value != 8.0:
        raise RuntimeError(f"a 2x2 test matmul summed to {value}, not 8")


def _probe_cuda(cupy) -> None:
    """Run what training needs once: cuBLAS (matmul), NVRTC kernels (elementwise, reduction).

    CuPy 14 loads those libraries lazily, so a machine with a driver but no CUDA
    libraries passes ``getDeviceCount`` and fails at the first ``@``.
    """
    a = cupy.ones((2, 2), dtype=cupy.float32)
    product = cupy.matmul(a, a)  # cuBLAS: [[2, 2], [2, 2]]
    total = cupy.sum(cupy.maximum(product, 0.0))  # an elementwise kernel, a reduction
    value = float(total)  # waits for the kernels: an asynchronous failure surfaces here
    if value != 8.0:
        raise RuntimeError(f"a 2x2 test matmul summed to {value}, not 8")


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message``, trimmed to fit inside a one-sentence error."""
    lines = str(exc).strip().splitlines()
    detail = lines[0].strip().rstrip(".").replace(". ", "; ")[:160] if lines else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def to_numpy(x) -> np.ndarray:
    """Copy any backend's array (or a scalar) to a host NumPy array."""
    if isinstance(x, np.ndarray):
        return x
    module = type(x).__module__
    if module.startswith("cupy"):
        return x.get()
    if module.startswith("torch"):
        return x.detach().cpu().numpy()  # a copy off a GPU; the tensor's own memory on the CPU
    if module.startswith("array_api_strict"):
        import array_api_strict

        # Off its CPU device array_api_strict refuses np.asarray, as CuPy does: copy over
        # (to_device returns the array itself when it is already there).
        x = x.to_device(array_api_strict.Device("CPU_DEVICE"))
    return np.asarray(x)  # NumPy scalars, array_api_strict arrays (CPU), Python numbers


def namespace_of(*arrays):
    """The array namespace of the given arrays (``array_api_compat.array_namespace``)."""
    import array_api_compat

    return array_api_compat.array_namespace(*arrays)

"""What the bench prints about the machine: CPUs, BLAS and its threads, GPU, PyTorch."""

from __future__ import annotations

import os
import platform

import numpy as np

from experiments import BLAS_THREAD_VARS


def machine_info(backend, use_torch) -> dict:
    """Versions, CPU counts, BLAS (name, threads, thread variables), GPU of ``backend``."""
    info = {"device": backend.flag, "python": platform.python_version(),
            "numpy": np.__version__, "cpu_count": os.cpu_count()}
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["cpus_usable"] = os.cpu_count()
    try:
        info["blas"] = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:
        info["blas"] = "unknown"
    info["thread_env"] = {k: os.environ[k] for k in
                          BLAS_THREAD_VARS if k in os.environ}
    try:
        from threadpoolctl import threadpool_info

        info["blas_threads"] = sorted({int(pool["num_threads"]) for pool in threadpool_info()
                                       if pool.get("user_api") == "blas"})
    except Exception:
        pass
    if backend.name == "cuda":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(backend.device.id)
        name = props["name"]
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        info["cupy"] = cupy.__version__
    elif "gpu" in backend.describe():
        info["gpu"] = backend.describe()["gpu"]
    if use_torch or backend.name == "torch":
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def torch_available() -> bool:
    """Whether ``torch`` imports."""
    try:
        import torch  # noqa: F401
    except Exception:
        return False
    return True

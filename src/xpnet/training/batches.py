"""The data on the device and each step's batch: :class:`DeviceSplit`, the batch orders
(drawn on the host from each model's seed, design rule 5) and the gather of a batch."""

from __future__ import annotations

import dataclasses

import numpy as np

from xpnet.network.network import one_hot


@dataclasses.dataclass
class DeviceSplit:
    """One data split on the device: ``X`` ``(N, d)``, labels ``y`` ``(N,)``, one-hot ``Y``."""

    X: object
    y: object
    Y: object

    @classmethod
    def from_host(cls, backend, X, y, n_classes, dtype) -> DeviceSplit:
        """Upload host inputs ``(N, d)`` and integer labels ``(N,)`` to ``backend``."""
        X = np.asarray(X)
        y = np.asarray(y, dtype=np.int64)
        split = cls(backend.asarray(X, dtype=dtype), backend.asarray(y),
                    backend.asarray(one_hot(y, n_classes), dtype=dtype))
        backend.release_staging()
        return split

    @property
    def size(self) -> int:
        return int(self.X.shape[0])

    def head(self, n: int) -> DeviceSplit:
        n = min(n, self.size)
        return DeviceSplit(self.X[:n, ...], self.y[:n], self.Y[:n, ...])


def batch_orders(seeds, n_samples: int, epoch: int) -> np.ndarray:
    """Host batch orders for one epoch: ``(n_samples,)`` if all seeds agree, else ``(M, n)``.

    Model m's order depends only on its seed and the epoch.  int32 when it fits (half
    the bytes to upload), else int64.
    """
    seeds = [int(s) for s in seeds]
    dtype = np.int32 if n_samples < 2**31 else np.int64
    if len(set(seeds)) == 1:
        return np.random.default_rng([seeds[0], epoch, 7]).permutation(n_samples).astype(dtype)
    return np.stack([np.random.default_rng([s, epoch, 7]).permutation(n_samples)
                     for s in seeds]).astype(dtype)


def gather(xp, data, idx, n_models: int):
    """Rows ``idx`` of ``data`` ``(N, k)``: ``(B, k)`` for ``idx`` ``(B,)``, else ``(M, B, k)``."""
    if idx.ndim == 1:
        return xp.take(data, idx, axis=0)
    flat = xp.take(data, xp.reshape(idx, (-1,)), axis=0)
    return xp.reshape(flat, (n_models, idx.shape[-1], data.shape[-1]))

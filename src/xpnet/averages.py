"""Running averages of batch statistics (batch norm's ``mean{l}``, ``var{l}``), folded for
every layer at once.

A normalization whose registry entry names ``averages`` (a momentum field of the config)
keeps per-layer buffers ``(M, 1, d_l)`` that each train step moves towards the batch's
statistics: ``running = momentum * running + (1 - momentum) * batch``.  Per layer that is
three array calls; :class:`RunningAverages` keeps every layer's buffers as slices of one
array ``flat`` ``(M, 1, D)`` and folds them all with one ``concat`` and one matrix product
with the row ``[momentum, 1 - momentum]``: two calls whatever the depth (issue 28).
"""

from __future__ import annotations


class RunningAverages:
    """The buffers ``names`` of a network laid side by side, and the fold's weights.

    Args:
        xp: the array namespace.
        buffers: the network's buffers dict; the named entries become slices of ``flat``.
        names: the buffers to keep side by side, in fold order.
        momentum: a float, or per model ``(M, 1, 1)`` (a view of ``Network.per_model``,
            fixed until the network's models change, which lays the averages out anew).
        dtype, device: of the weights row.
    """

    def __init__(self, xp, buffers: dict, names, momentum, dtype, device):
        self.xp = xp
        self.names = tuple(names)
        self.flat = xp.concat([buffers[name] for name in self.names], axis=-1)
        self._place(buffers, self.flat)
        if isinstance(momentum, (int, float)):
            m = float(momentum)
            self.weights = xp.asarray([[m, 1.0 - m]], dtype=dtype, device=device)  # (1, 2)
        else:
            self.weights = xp.concat([momentum, 1.0 - momentum], axis=-1)  # (M, 1, 2)

    def _place(self, buffers: dict, flat) -> None:
        start = 0
        views = []
        for name in self.names:
            width = buffers[name].shape[-1]
            views.append(flat[..., start:start + width])
            start += width
        for name, view in zip(self.names, views, strict=True):
            buffers[name] = view
        self._views = tuple(views)

    def fold(self, buffers: dict, batch: dict) -> None:
        """Fold the batch statistics ``{buffer name: (M, 1, d)}`` (the names of
        :attr:`names`, in that order) into ``buffers``, in two array calls.

        The new buffers are slices of a new ``flat``; if an entry of ``buffers`` was
        replaced since (a load, a user), the current values are gathered first.
        """
        xp = self.xp
        old = self.flat
        if any(buffers[name] is not view
               for name, view in zip(self.names, self._views, strict=True)):
            old = xp.concat([buffers[name] for name in self.names], axis=-1)
        both = xp.concat([old, *(batch[name] for name in self.names)], axis=-1)  # (M,1,2D)
        self.flat = self.weights @ xp.reshape(both, (both.shape[0], 2, old.shape[-1]))
        self._place(buffers, self.flat)

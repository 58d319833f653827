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

from xpnet.step.flat import FlatLayout


class RunningAverages:
    """The buffers ``names`` of a network laid side by side, and the fold's weights.

    The layout is :class:`~xpnet.step.flat.FlatLayout`'s, the parameters' (no decay, no head).

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
        self.layout = FlatLayout.of({name: buffers[name] for name in names}, ())
        self.flat = self.layout.flatten(xp, buffers)[0]
        self._place(buffers)
        if isinstance(momentum, (int, float)):
            m = float(momentum)
            self.weights = xp.asarray([[m, 1.0 - m]], dtype=dtype, device=device)  # (1, 2)
        else:
            self.weights = xp.concat([momentum, 1.0 - momentum], axis=-1)  # (M, 1, 2)

    def _place(self, buffers: dict) -> None:
        self._views = self.layout.views(self.xp, [self.flat])
        buffers.update(self._views)

    def fold(self, buffers: dict, batch: dict) -> None:
        """Fold the batch statistics ``{buffer name: (M, 1, d)}`` into ``buffers``, in two
        array calls.

        The new buffers are slices of a new ``flat``; if an entry of ``buffers`` was
        replaced since (a load, a user), the current values are gathered first.
        """
        xp = self.xp
        old = self.flat
        if any(buffers[name] is not view for name, view in self._views.items()):
            old = self.layout.flatten(xp, buffers)[0]
        both = xp.concat([old, *(batch[name] for name in self.layout.names)],
                         axis=-1)  # (M, 1, 2 D)
        self.flat = self.weights @ xp.reshape(both, (both.shape[0], 2, old.shape[-1]))
        self._place(buffers)

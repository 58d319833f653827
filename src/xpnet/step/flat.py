"""Every parameter of M models in one array, so that an optimizer updates them all at once.

A network's parameters are a dozen small arrays (``W1``... ``(M, d_in, d_out)``,
``gamma1``... ``(M, 1, d)``).  Updated one by one, each costs its own array calls, on a
GPU its own kernel launches (issue 28).  :class:`FlatLayout` lays them side by side in one
array ``flat`` ``(M, 1, P)`` and makes each parameter a view of it, reshaped to its own
shape, so that an update touches many parameters per call.

The order is ``W1``, the other weight matrices, then the rest, so that the weights L2
decay applies to are the slice ``flat[..., :n_decayed]``.  ``W1`` (the *head*: the input
layer's weights, ``(M, 3072, d_1)`` for CIFAR-10, by far the largest array) is updated on
its own, in ``flat[..., :n_head]``: laying its gradient beside the others would copy the
largest gradient of the step (measured on PyTorch's CPU at M = 64: 19 ms a step, more
than the update).  The others' gradients, small, are laid side by side in one ``concat``
(:meth:`FlatLayout.flatten_tail`) that lines up with ``flat[..., n_head:]``.

The layout is metadata only (names, shapes, offsets): it does not depend on M, so it
survives successive halving, which re-lays the kept models out.
"""

from __future__ import annotations

import dataclasses
import math

HEAD = "W1"


@dataclasses.dataclass(frozen=True)
class FlatLayout:
    """Where each parameter lives in the flat array.

    Attributes:
        names: parameter names: the head (``W1``) if present, the other decayed ones, the rest.
        shapes: each parameter's shape without the model axis (``(d_in, d_out)``, ``(1, d)``).
        n_decayed: the number of leading columns that hold decayed parameters.
        n_head: the head's columns (0 without a head).
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    n_decayed: int
    n_head: int

    @classmethod
    def of(cls, params: dict, decayed) -> FlatLayout:
        """The layout of ``params`` (arrays ``(M, ...)``); ``decayed`` names the parameters
        L2 decay applies to.  ``W1`` heads the layout when it is one of them."""
        decayed = set(decayed)
        head = [HEAD] if HEAD in params and HEAD in decayed else []
        names = tuple(head + [n for n in params if n in decayed and n not in head]
                      + [n for n in params if n not in decayed])
        shapes = tuple(tuple(int(s) for s in params[n].shape[1:]) for n in names)
        sizes = dict(zip(names, (math.prod(shape) for shape in shapes), strict=True))
        return cls(names, shapes, sum(sizes[n] for n in names if n in decayed),
                   sizes[HEAD] if head else 0)

    @property
    def size(self) -> int:
        """P: the numbers per model."""
        return sum(math.prod(shape) for shape in self.shapes)

    @property
    def head(self) -> str | None:
        """The parameter updated on its own, or None."""
        return self.names[0] if self.n_head else None

    def flatten(self, xp, arrays: dict):
        """``arrays`` (one per name, ``(M, ...)``) side by side: ``(M, 1, P)``, one call."""
        return _side_by_side(xp, arrays, self.names)

    def flatten_tail(self, xp, arrays: dict):
        """All but the head side by side, ``(M, 1, P - n_head)``: one ``concat``, lined up
        with ``flat[..., n_head:]``.

        Each array is reshaped to ``(M, 1, -1)`` first: a view for a contiguous array (what
        the steps produce for these); a strided one would be copied there.
        """
        return _side_by_side(xp, arrays, self.names[1:] if self.n_head else self.names)

    def views(self, xp, flat) -> dict:
        """Each name's view of ``flat`` ``(M, 1, P)``, reshaped to ``(M, *shape)``."""
        M = flat.shape[0]
        out, start = {}, 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            size = math.prod(shape)
            out[name] = xp.reshape(flat[..., start:start + size], (M, *shape))
            start += size
        return out

    def parts(self, flat) -> list:
        """``flat`` (parameters or optimizer state, ``(M, 1, P)``) as an update runs over
        it: the head's columns, then the others' (just ``[flat]`` without a head).

        Slices of ``flat``, not the parameters' ``(M, d_in, d_out)`` views: NumPy adds
        into a strided 3-D view 4x slower than into the same memory seen as
        ``(M, 1, n)`` (measured at M = 64: 15 ms against 3.5 ms).
        """
        if not self.n_head:
            return [flat]
        tail = [flat[..., self.n_head:]] if len(self.names) > 1 else []
        return [flat[..., :self.n_head], *tail]

    def gradient_parts(self, xp, grads: dict) -> list[tuple]:
        """The gradients lined up with :meth:`parts`, each with the number of its leading
        decayed columns (-1: all of it): ``[(head's gradient as (M, 1, -1), -1), (the
        others side by side, n_decayed - n_head)]``; every one a view of the step's
        contiguous gradients but the ``concat``."""
        out = []
        if self.n_head:
            g = grads[self.head]
            out.append((xp.reshape(g, (g.shape[0], 1, -1)), -1))
        if len(self.names) > (1 if self.n_head else 0):
            out.append((self.flatten_tail(xp, grads), self.n_decayed - self.n_head))
        return out


def _side_by_side(xp, arrays: dict, names):
    M = arrays[names[0]].shape[0]
    return xp.concat([xp.reshape(arrays[n], (M, 1, -1)) for n in names], axis=-1)


class FlatParams:
    """A params dict laid out flat: ``flat`` ``(M, 1, P)`` and the views ``params`` holds.

    :meth:`current` tells whether ``params`` still holds exactly these views (an entry
    replaced, by a load or a user, makes the flat array stale: optimizers then update
    entry by entry).
    """

    def __init__(self, xp, params: dict, layout: FlatLayout):
        self.layout = layout
        self.flat = layout.flatten(xp, params)
        self.views = layout.views(xp, self.flat)
        params.update(self.views)

    def current(self, params: dict) -> bool:
        """Whether every entry of ``params`` is still this layout's view (and no more)."""
        return len(params) == len(self.views) and all(
            params.get(name) is view for name, view in self.views.items())

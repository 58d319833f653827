"""Every parameter of M models in two arrays, so that an optimizer updates them all at once.

A network's parameters are a dozen small arrays (``W1``... ``(M, d_in, d_out)``,
``gamma1``... ``(M, 1, d)``).  Updated one by one, each costs its own array calls, on a
GPU its own kernel launches (issue 28).  :class:`FlatLayout` lays them out in *parts*, a
list of at most two arrays ``(M, 1, n)``, and makes each parameter a view of its part,
reshaped to its own shape, so that an update touches many parameters per call:

* the **head**, ``W1`` (the input layer's weights, ``(M, 3072, d_1)`` for CIFAR-10, by
  far the largest array), in a part of its own ``(M, 1, d_in * d_out)``, *transposed*:
  each model's ``W1^T`` ``(d_out, d_in)`` row by row, the models one after the other.  The
  part is then the wide ``Wt`` ``(M * d_out, d_in)`` of :mod:`xpnet.step.wide`, so models
  that share a batch compute their first layer's forward product and weight gradient
  as one wide product each, straight on the stored weights and into the gradient's
  layout (:mod:`xpnet.backend.numpy_step`).  ``params["W1"]`` stays ``(M, d_in, d_out)``, a
  transposed view; a gradient of ``W1`` that is the transposed view of a contiguous
  ``(M, d_out, d_in)`` array (what both steps return) lines up with the head without a
  copy, and copying the largest gradient beside the others would cost more than the
  update (measured on PyTorch's CPU at M = 64: 19 ms a step);
* the **tail**, every other parameter side by side ``(M, 1, P - n_head)``: the other
  weight matrices first, so that the weights L2 decay applies to are its leading
  columns, then the rest.  Their gradients, small, are laid side by side in one
  ``concat`` (:meth:`FlatLayout.flatten_tail`) that lines up with it.

A layout without ``W1`` among its decayed arrays has no head: one part.  The layout is
metadata only (names, shapes, offsets): it does not depend on M, so it survives
successive halving and population changes, which re-lay the kept models out.
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

    def flatten(self, xp, arrays: dict) -> list:
        """``arrays`` (one per name, ``(M, ...)``) laid out: the parts ``[head, tail]``
        (``[all]`` without a head), each ``(M, 1, n)``, fresh arrays."""
        if not self.n_head:
            return [_side_by_side(xp, arrays, self.names)]
        W = arrays[self.head]
        head = xp.reshape(xp.linalg.matrix_transpose(W), (W.shape[0], 1, -1), copy=True)
        return [head, *([self.flatten_tail(xp, arrays)] if len(self.names) > 1 else [])]

    def flatten_tail(self, xp, arrays: dict):
        """All but the head side by side, ``(M, 1, P - n_head)``: one ``concat``, lined up
        with the tail part.

        Each array is reshaped to ``(M, 1, -1)`` first: a view for a contiguous array (what
        the steps produce for these); a strided one would be copied there.
        """
        return _side_by_side(xp, arrays, self.names[1:] if self.n_head else self.names)

    def views(self, xp, parts: list) -> dict:
        """Each name's view of the ``parts``, reshaped to ``(M, *shape)`` (the head's
        transposed back)."""
        M = parts[0].shape[0]
        out, start, part = {}, 0, parts[-1]
        for name, shape in zip(self.names, self.shapes, strict=True):
            size = math.prod(shape)
            if name == self.head:
                out[name] = xp.linalg.matrix_transpose(
                    xp.reshape(parts[0], (M, shape[1], shape[0])))
                continue
            out[name] = xp.reshape(part[..., start:start + size], (M, *shape))
            start += size
        return out

    def decayed_parts(self, parts: list) -> list:
        """The decayed columns of each part (views), for the L2 decay's one multiply each."""
        if not self.n_head:
            return [parts[0][..., :self.n_decayed]]
        tail = self.n_decayed - self.n_head
        return [parts[0], *([parts[1][..., :tail]] if tail else [])]

    def gradient_parts(self, xp, grads: dict) -> list[tuple]:
        """The gradients lined up with the parts, each with the number of its leading
        decayed columns (-1: all of it): ``[(head's gradient, transposed, as (M, 1, -1),
        -1), (the others side by side, n_decayed - n_head)]``; the head's a view of a
        gradient laid out as the steps lay it out (see the module docstring), the others'
        the ``concat``."""
        out = []
        if self.n_head:
            g = xp.linalg.matrix_transpose(grads[self.head])
            out.append((xp.reshape(g, (g.shape[0], 1, -1)), -1))
        if len(self.names) > (1 if self.n_head else 0):
            out.append((self.flatten_tail(xp, grads), self.n_decayed - self.n_head))
        return out


def _side_by_side(xp, arrays: dict, names):
    M = arrays[names[0]].shape[0]
    return xp.concat([xp.reshape(arrays[n], (M, 1, -1)) for n in names], axis=-1)


class FlatParams:
    """A params dict laid out flat: the ``parts`` (:meth:`FlatLayout.flatten`) and the
    views ``params`` holds.

    :meth:`current` tells whether ``params`` still holds exactly these views (an entry
    replaced, by a load or a user, makes the flat arrays stale: optimizers then update
    entry by entry).
    """

    def __init__(self, xp, params: dict, layout: FlatLayout):
        self.layout = layout
        self.parts = layout.flatten(xp, params)
        self.views = layout.views(xp, self.parts)
        params.update(self.views)

    def current(self, params: dict) -> bool:
        """Whether every entry of ``params`` is still this layout's view (and no more)."""
        return len(params) == len(self.views) and all(
            params.get(name) is view for name, view in self.views.items())

"""Every parameter of M models in one array, so that an optimizer updates them all at once.

A network's parameters are a dozen small arrays (``W1``... ``(M, d_in, d_out)``,
``gamma1``... ``(M, 1, d)``).  Updated one by one, each costs its own array calls, on a
GPU its own kernel launches (issue 28).  :class:`FlatLayout` lays them side by side in one
array ``flat`` ``(M, 1, P)`` and makes each parameter a view of it, reshaped to its own
shape: an update written on ``flat`` touches every parameter, and the gradients, laid out
the same way by :meth:`FlatLayout.flatten` (one ``concat``), line up with it.

The weight matrices come first, so the ones L2 decay applies to are the slice
``flat[..., :n_decayed]``.  The layout is metadata only (names, shapes, offsets): it does
not depend on M, so it survives successive halving, which re-lays the kept models out.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class FlatLayout:
    """Where each parameter lives in the flat array.

    Attributes:
        names: parameter names, the decayed ones first.
        shapes: each parameter's shape without the model axis (``(d_in, d_out)``, ``(1, d)``).
        n_decayed: the number of leading columns that hold decayed parameters.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    n_decayed: int

    @classmethod
    def of(cls, params: dict, decayed) -> FlatLayout:
        """The layout of ``params`` (arrays ``(M, ...)``), the names in ``decayed`` first."""
        decayed = set(decayed)
        names = tuple([n for n in params if n in decayed] + [n for n in params if n not in decayed])
        shapes = tuple(tuple(int(s) for s in params[n].shape[1:]) for n in names)
        n_decayed = sum(math.prod(shape) for n, shape in zip(names, shapes, strict=True)
                        if n in decayed)
        return cls(names, shapes, n_decayed)

    @property
    def size(self) -> int:
        """P: the numbers per model."""
        return sum(math.prod(shape) for shape in self.shapes)

    def flatten(self, xp, arrays: dict):
        """``arrays`` (one per name, ``(M, ...)``) side by side: ``(M, 1, P)``, one call.

        Each array is reshaped to ``(M, 1, -1)`` first: a view for a contiguous array (what
        the steps produce); a strided one would be copied there.
        """
        M = arrays[self.names[0]].shape[0]
        return xp.concat([xp.reshape(arrays[n], (M, 1, -1)) for n in self.names], axis=-1)

    def views(self, xp, flat) -> dict:
        """Each name's view of ``flat`` ``(M, 1, P)``, reshaped to ``(M, *shape)``."""
        M = flat.shape[0]
        out, start = {}, 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            size = math.prod(shape)
            out[name] = xp.reshape(flat[..., start:start + size], (M, *shape))
            start += size
        return out


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

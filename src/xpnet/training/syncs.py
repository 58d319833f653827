"""Counting host syncs: the one check of design rule 6 (no host sync inside a step).

Every way a device array's values reach the host goes through a *door* of its array
library's public API: a conversion (``float``, ``int``, ``bool``, ``complex``, ``index``),
a host copy (``__array__``, ``__buffer__``, ``__dlpack__``), or a library's own method
(CuPy's ``get``/``item``/``tolist`` and ``cupy.asnumpy``, PyTorch's
``item``/``tolist``/``cpu``/``numpy``, array_api_strict's ``to_device``), plus
:func:`xpnet.backend.devices.to_numpy`.  :func:`counting` instruments those doors while a
:class:`SyncCounter` (a training :class:`~xpnet.training.loop.Callback`) marks each step: a
door opened between ``on_step_begin`` and ``on_step_end`` is a sync in the step (on a
GPU, a stall).  Used by the tests (on ``strict:device1`` and ``torch``) and by the bench
(on a GPU).  NumPy arrays already live on the host: on ``cpu`` there is nothing to count.
"""

from __future__ import annotations

import collections
import contextlib
import sys
from unittest import mock

import xpnet.backend.devices
from xpnet.training.history import Callback

_CONVERSIONS = ("__bool__", "__int__", "__float__", "__complex__", "__index__", "__array__",
                "__dlpack__")
#: Per backend name, the methods of its array type that hand a value (or buffer) to the host.
ARRAY_DOORS = {"cuda": (*_CONVERSIONS, "get", "item", "tolist"),
               "torch": (*_CONVERSIONS, "item", "tolist", "cpu", "numpy"),
               "strict": (*_CONVERSIONS, "__buffer__", "to_device")}


def host_doors(backend) -> list[tuple[object, str]]:
    """``(owner, attribute)`` pairs through which ``backend``'s arrays reach the host."""
    names = ARRAY_DOORS.get(backend.name)
    if names is None:
        return []
    array_type = type(backend.asarray([0.0]))
    doors = [(array_type, name) for name in names]
    if backend.name == "cuda":
        import cupy

        doors.append((cupy, "asnumpy"))
    return [(owner, name) for owner, name in doors if hasattr(owner, name)]


class SyncCounter(Callback):
    """Counts opened doors: ``inside`` a step as ``(step, door)``, ``outside`` as ``door``;
    ``counts`` per door inside steps, ``steps_seen`` the steps it marked."""

    def __init__(self):
        self.step = None
        self.inside: list[tuple[int, str]] = []
        self.outside: list[str] = []
        self.counts = collections.Counter()
        self.steps_seen = 0

    def on_step_begin(self, step):
        self.step = step
        self.steps_seen += 1

    def on_step_end(self, step):
        self.step = None

    def note(self, door: str) -> None:
        if self.step is None:
            self.outside.append(door)
        else:
            self.inside.append((self.step, door))
            self.counts[door] += 1


@contextlib.contextmanager
def counting(counter: SyncCounter, backend):
    """Within the block, every door of ``backend`` (and ``to_numpy``) notes to ``counter``."""
    with contextlib.ExitStack() as stack:
        for owner, name in host_doors(backend):
            stack.enter_context(mock.patch.object(
                owner, name, _noting(counter, name, getattr(owner, name))))
        original = xpnet.backend.devices.to_numpy
        counted = _noting(counter, "to_numpy", original)
        # Modules hold their own reference (from xpnet.backend.devices import to_numpy): patch each.
        for module_name, module in list(sys.modules.items()):
            if (module_name == "xpnet" or module_name.startswith("xpnet.")) and \
                    getattr(module, "to_numpy", None) is original:
                stack.enter_context(mock.patch.object(module, "to_numpy", counted))
        yield counter


def _noting(counter: SyncCounter, door: str, original):
    def counted(*args, **kwargs):
        counter.note(door)
        return original(*args, **kwargs)
    return counted

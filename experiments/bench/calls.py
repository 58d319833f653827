"""Array-library calls per training step: the bench's CPU proxy for GPU kernel launches.

On a GPU the generic (array-API) step is bound by how many kernels it launches, not by
their arithmetic: each small CuPy call costs some 15-25 us of host time.  This module
counts those calls on the CPU by running :func:`xpnet.training.loop.train` with the reference
step :func:`xpnet.step.backprop.loss_and_data_gradients` on a *counting namespace*: a proxy
around ``array_api_compat.numpy`` whose arrays (:class:`CountedArray`) wrap NumPy arrays.

What counts as one call (one kernel launch on a GPU):

* each call of a namespace function that returns an array (``xp.sum``, ``xp.where``,
  ``xp.take``, ``xp.astype``, ``xp.ones``, ``xp.asarray``, ``xp.linalg.matmul``, ...),
  except the *views* in :data:`VIEWS` (``reshape``, ``matrix_transpose``, ...), which
  only relabel memory; a ``reshape`` that has to copy (of a strided array) counts, as
  ``reshape[copy]``;
* each arithmetic, comparison or bitwise operator on an array, unary (``-x``, ``~x``),
  reflected (``2.0 * x``) and in place (``x -= y``) alike, ``@`` included;
* indexing with an index array (a gather) and every ``x[...] = v`` (a copy or fill);
  basic indexing (integers, slices, ``None``, ``...``) and ``.mT`` are views: free.

Not counted: shape and dtype look-ups, Python arithmetic on scalars, and host
conversions (``float(x)``: those are host syncs, counted by :mod:`xpnet.training.syncs`).
Only calls between a step's ``on_step_begin`` and ``on_step_end`` count, so the
per-epoch upload of the batch order and the record points stay out.

The count is that of the calls the Python code makes: a library may launch more than one
kernel for a call (CuPy copies a non-contiguous batched ``matmul`` operand first) or
fewer (a fused expression), so it is the lever the code controls, not a profile.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import types

import numpy as np

from xpnet.backend.devices import Backend
from xpnet.step.backprop import loss_and_data_gradients as generic_step
from xpnet.training import Callback, DeviceSplit

#: The generic step's calls per training step measured before issue 28's reductions
#: (commit 7bc9d74), for the bench's nets at batch 100 (M does not change them).
#: Issue 28's goal is at most ``GOAL`` of these.
BASELINE = {"3-layer": 113, "9-layer": 353}
GOAL = 0.6

#: The nets counted: hidden sizes of the 3072-...-10 batch-norm nets (the reports').
NETS = {"3-layer": (50, 50), "9-layer": (50, 30, 20, 20, 10, 10, 10, 10)}

#: Namespace functions that return a view (or metadata) and launch nothing.
VIEWS = frozenset({"reshape", "matrix_transpose", "permute_dims", "expand_dims", "squeeze",
                   "broadcast_to", "broadcast_arrays"})


class CallCounter(Callback):
    """Counts array-library calls by name, only inside training steps.

    ``per_step`` holds one :class:`collections.Counter` per step seen; ``armed`` is true
    between a step's begin and end (or inside :meth:`counting`, for tests).
    """

    def __init__(self):
        self.armed = False
        self.current = collections.Counter()
        self.per_step: list[collections.Counter] = []

    def add(self, name: str) -> None:
        if self.armed:
            self.current[name] += 1

    def on_step_begin(self, step):
        self.current = collections.Counter()
        self.armed = True

    def on_step_end(self, step):
        self.armed = False
        self.per_step.append(self.current)

    @contextlib.contextmanager
    def counting(self):
        """Count every call inside ``with counter.counting() as seen:`` (outside training);
        ``seen`` is the :class:`collections.Counter` of the calls by name."""
        self.current = collections.Counter()
        self.armed = True
        try:
            yield self.current
        finally:
            self.armed = False


# ------------------------------------------------------------------ the array wrapper
def _unwrap(value):
    if isinstance(value, CountedArray):
        return value._a
    if isinstance(value, (tuple, list)):
        return type(value)(_unwrap(v) for v in value)
    return value


def _is_array_index(key) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (CountedArray, np.ndarray, list)) for k in keys)


class CountedArray:
    """A NumPy array whose operators report to a :class:`CallCounter`."""

    __slots__ = ("_a", "_ns")
    __hash__ = None  # == returns an array
    __array_ufunc__ = None  # NumPy operators defer to ours: no uncounted escape via __array__

    def __init__(self, array, ns):
        self._a = array
        self._ns = ns

    def _wrap(self, value):
        return self._ns._wrap(value)

    # metadata and views: free
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    device = property(lambda self: "cpu")
    mT = property(lambda self: self._wrap(np.swapaxes(self._a, -1, -2)))

    def __array_namespace__(self, api_version=None):
        return self._ns

    def __getitem__(self, key):
        if _is_array_index(key):
            self._ns.counter.add("getitem[array]")
        return self._wrap(self._a[_unwrap(key)])

    def __setitem__(self, key, value):
        self._ns.counter.add("setitem")
        self._a[_unwrap(key)] = _unwrap(value)

    # host conversions: syncs, not launches
    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._a, dtype=dtype)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        return self._a.__index__()

    def __bool__(self):
        return bool(self._a)

    def __len__(self):
        return len(self._a)

    def __repr__(self):
        return f"CountedArray({self._a!r})"


def _binary(name, in_place=False):
    """A counted operator; ``in_place`` ones keep the wrapper, whose array NumPy updated."""
    def op(self, other):
        result = getattr(self._a, name)(_unwrap(other))
        if result is NotImplemented:
            return result
        self._ns.counter.add(name)
        if in_place:
            self._a = result  # NumPy's in-place operators return the same array
            return self
        return self._wrap(result)
    op.__name__ = name
    return op


def _unary(name):
    def op(self):
        self._ns.counter.add(name)
        return self._wrap(getattr(self._a, name)())
    op.__name__ = name
    return op


_ARITHMETIC = ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and",
               "or", "xor", "lshift", "rshift")
for _name in _ARITHMETIC:
    setattr(CountedArray, f"__{_name}__", _binary(f"__{_name}__"))
    setattr(CountedArray, f"__r{_name}__", _binary(f"__r{_name}__"))
    setattr(CountedArray, f"__i{_name}__", _binary(f"__i{_name}__", in_place=True))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(CountedArray, f"__{_name}__", _binary(f"__{_name}__"))
for _name in ("neg", "pos", "invert", "abs"):
    setattr(CountedArray, f"__{_name}__", _unary(f"__{_name}__"))


# ------------------------------------------------------------------ the namespace
class CountingNamespace(types.SimpleNamespace):
    """``array_api_compat.numpy`` (or one of its submodules) with every call counted.

    Attributes that are not functions (dtypes, constants) pass through unchanged.
    """

    def __init__(self, counter: CallCounter, module=None, prefix: str = "", root=None):
        import array_api_compat.numpy

        module = module if module is not None else array_api_compat.numpy
        # Arrays the linalg part returns belong to the whole namespace (one namespace).
        super().__init__(counter=counter, _module=module, _prefix=prefix, _root=root or self)
        self.linalg = None if prefix else CountingNamespace(counter, module.linalg, "linalg.",
                                                            root=self)

    def _wrap(self, value):
        if isinstance(value, (np.ndarray, np.generic)):
            return CountedArray(np.asarray(value), self._root)
        if isinstance(value, tuple):
            return tuple(self._wrap(v) for v in value)
        if isinstance(value, list):
            return [self._wrap(v) for v in value]
        return value

    def __getattr__(self, name):
        attr = getattr(self._module, name)
        if not callable(attr) or isinstance(attr, type):
            return attr  # dtypes (classes on NumPy), constants
        counted = name not in VIEWS
        label = self._prefix + name

        def call(*args, **kwargs):
            result = attr(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
            wrapped = self._wrap(result)
            if counted and wrapped is not result:  # it returned an array
                self.counter.add(label)
            elif name == "reshape" and not np.may_share_memory(result, _unwrap(args[0])):
                self.counter.add("reshape[copy]")  # a strided array, copied
            return wrapped

        call.__name__ = name
        setattr(self, name, call)  # look it up once
        return call


def counting_backend(counter: CallCounter) -> Backend:
    """A CPU backend on the counting namespace that trains with the generic step."""
    return Backend("cpu", CountingNamespace(counter), "cpu", generic_step)


# ------------------------------------------------------------------ measurement
@dataclasses.dataclass(frozen=True)
class StepCalls:
    """Calls per step of one net: ``total`` (the same every step, or ``None`` if they
    differ), ``per_step`` totals and ``by_name`` for the last step."""

    net: str
    n_models: int
    total: int | None
    per_step: tuple[int, ...]
    by_name: dict


def calls_per_step(net: str = "3-layer", n_models: int = 1, *, steps: int = 2,
                   batch_size: int = 100, d_in: int = 3072, n_classes: int = 10,
                   lam: float = 0.005) -> StepCalls:
    """Count the generic step's calls in ``steps`` steps of :func:`xpnet.training.loop.train`
    for ``n_models`` models (one seed each) of the batch-norm net ``net`` (a :data:`NETS`
    key) on random data ``(steps * batch_size, d_in)``."""
    from experiments.bench.runners import train_steps
    from xpnet.network.network import Network, NetworkConfig, one_hot

    counter = CallCounter()
    backend = counting_backend(counter)
    config = NetworkConfig(d_in=d_in, hidden=NETS[net], n_classes=n_classes, norm="batch")
    model = Network.create(config, seeds=list(range(n_models)), lam=lam, device=backend,
                           dtype="float32")
    rng = np.random.default_rng(0)
    n = steps * batch_size
    X = rng.standard_normal((n, d_in), dtype=np.float32)
    y = rng.integers(0, n_classes, n)
    split = DeviceSplit(backend.asarray(X), backend.asarray(y),
                        backend.asarray(one_hot(y, n_classes), dtype="float32"))
    train_steps(model, split, steps, batch_size=batch_size, callbacks=[counter])
    totals = tuple(sum(c.values()) for c in counter.per_step)
    return StepCalls(net, n_models, totals[0] if len(set(totals)) == 1 else None, totals,
                     dict(counter.per_step[-1]))


def calls_line(counts: list[StepCalls]) -> str:
    """The bench's line: calls per step per net and M, beside the baseline and the goal."""
    parts = []
    for net in dict.fromkeys(c.net for c in counts):
        mine = [c for c in counts if c.net == net]
        figures = ", ".join(f"{'varies' if c.total is None else c.total} at M={c.n_models}"
                            for c in mine)
        base = BASELINE.get(net)
        ratio = (f" ({mine[0].total / base:.0%} of the baseline {base}; goal <= {GOAL:.0%})"
                 if base and mine[0].total is not None else "")
        parts.append(f"{net} {figures}{ratio}")
    return ("calls per step of the array-API reference step (array-library calls counted on "
            "the CPU; one kernel launch each on a GPU): " + " | ".join(parts))

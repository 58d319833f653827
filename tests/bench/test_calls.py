"""The call counter (experiments/bench/calls.py): the CPU proxy for GPU kernel launches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from experiments.bench import calls
from experiments.bench.calls import BASELINE, GOAL, CallCounter, CountingNamespace
from experiments.bench.runners import make_net, train_steps
from xpnet.backend.devices import get_backend, to_numpy
from xpnet.step.backprop import loss_and_data_gradients as generic_step
from xpnet.training import DeviceSplit


def test_counter_counts_a_known_expression_exactly():
    counter = CallCounter()
    xp = CountingNamespace(counter)
    a = xp.asarray([[1.0, 2.0], [3.0, 4.0]])  # outside counting: not counted
    idx = xp.asarray([1, 0])
    with counter.counting() as seen:
        b = xp.sum(a * 2.0 + a, axis=0)  # __mul__, __add__, sum
        c = 1.0 - xp.linalg.matrix_transpose(a) @ a  # matmul, __rsub__ (transpose: a view)
        v = xp.reshape(a, (4,))[1:3]  # views: free
        g = a[idx, ...]  # a gather
        a += 1.0  # in place
        mask = ~(a > 2.0)  # __gt__, __invert__
        n_rows = a.shape[0]  # metadata: free
    assert dict(seen) == {"__mul__": 1, "__add__": 1, "sum": 1, "__matmul__": 1,
                          "__rsub__": 1, "getitem[array]": 1, "__iadd__": 1, "__gt__": 1,
                          "__invert__": 1}
    base = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(to_numpy(b), (base * 3).sum(axis=0))
    np.testing.assert_array_equal(to_numpy(c), 1.0 - base.T @ base)
    np.testing.assert_array_equal(to_numpy(v), [3.0, 4.0])  # a view: sees a += 1
    np.testing.assert_array_equal(to_numpy(g), base[[1, 0]])
    np.testing.assert_array_equal(to_numpy(a), base + 1.0)
    np.testing.assert_array_equal(to_numpy(mask), ~(base + 1.0 > 2.0))
    assert n_rows == 2
    b * 2.0  # disarmed again: not counted
    np.ones(2) + b  # NumPy defers to the counted array (no uncounted escape)
    assert sum(seen.values()) == 9


def test_a_reshape_counts_only_when_it_copies():
    counter = CallCounter()
    xp = CountingNamespace(counter)
    a = xp.asarray(np.arange(12.0).reshape(3, 4))
    with counter.counting() as seen:
        xp.reshape(a, (4, 3))  # contiguous: a view
        xp.reshape(xp.linalg.matrix_transpose(a), (12,))  # strided: a copy
    assert dict(seen) == {"reshape[copy]": 1}


def _split(backend, n=200):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 3072), dtype=np.float32)
    return DeviceSplit.from_host(backend, X, rng.integers(0, 10, n), 10,
                                 backend.dtype("float32"))


def test_counting_namespace_trains_like_numpy():
    """The counted run computes what the generic step computes on NumPy itself."""
    numpy_generic = dataclasses.replace(get_backend("cpu"), data_gradients=generic_step)
    counted = calls.counting_backend(CallCounter())
    params = []
    for backend in (numpy_generic, counted):
        net = make_net(backend, 2)
        train_steps(net, _split(backend), 2, batch_size=100)
        if backend is counted:  # nothing left the counting namespace uncounted
            assert all(isinstance(v, calls.CountedArray) for v in net.params.values())
        params.append({k: to_numpy(v) for k, v in net.params.items()})
    for name, value in params[0].items():
        np.testing.assert_array_equal(params[1][name], value, err_msg=name)


@pytest.mark.parametrize("net", sorted(BASELINE))
def test_calls_per_step_are_fixed_whatever_m_and_within_the_baseline(net):
    one, many = calls.calls_per_step(net, 1, steps=3), calls.calls_per_step(net, 64, steps=2)
    assert one.total is not None and len(set(one.per_step)) == 1  # the same every step
    assert many.total == one.total  # independent of M
    assert one.by_name == many.by_name
    assert one.by_name["__matmul__"] > 0 and one.by_name["take"] == 2  # the batch gathers
    assert one.total <= BASELINE[net], f"{net}: {one.total} calls per step, more than before"
    assert one.total <= REACHED[net], f"{net}: {one.total} calls per step, more than reached"


#: What issue 28 reached (63 % and 58 % of the baseline), plus one call since issue 38
#: stored W1 apart as the wide transposed head (its L2 decay is a multiply of its own): a
#: guard against regressions.
REACHED = {"3-layer": 72, "9-layer": 204}


@pytest.mark.parametrize("net", [
    pytest.param("3-layer", marks=pytest.mark.xfail(
        strict=True, reason="72 calls, 64 %: two hidden layers leave too few to share")),
    "9-layer"])
def test_calls_per_step_meet_the_goal(net):
    assert calls.calls_per_step(net, 1).total <= GOAL * BASELINE[net]


def test_calls_line_names_nets_models_and_the_goal():
    line = calls.calls_line([calls.StepCalls("3-layer", 1, 113, (113,), {}),
                             calls.StepCalls("3-layer", 64, 113, (113,), {})])
    assert "3-layer 113 at M=1, 113 at M=64" in line and "goal <= 60%" in line

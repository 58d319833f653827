"""The first layer of k models sharing a batch: one wide product against the batched form.

``python -m experiments.bench --wide 8,64`` times, for the 3072 -> 50 first layer at
batch 100 and each k, the layer's forward product and weight gradient in three forms,
round-robin in one run (best of ``--repeats`` rounds):

* **wide** -- :mod:`xpnet.step.wide`: ``x @ [W_1 ... W_k]`` ``(n, d) @ (d, k*h)`` and
  ``dWt = dout^T @ x`` ``(k*h, n) @ (n, d)``: two products for all k models;
* **broadcast** -- what the step computes today for models of one seed: the shared
  ``x`` ``(n, d)`` broadcast against ``W`` ``(k, d, h)``, ``dW = (dout^T @ x)^T``;
* **stacked** -- the same with each model's own copy of the batch ``(k, n, d)``, as
  when every model has its own seed.

It checks that the three agree, then prints ``wide/broadcast`` and ``wide/stacked``
(below 1: the wide product is faster).
"""

from __future__ import annotations

import math
import time

import numpy as np

from xpnet.step.wide import wide_forward, wide_weight_grad, wide_weights

D, H, BATCH = 3072, 50, 100


def _forms(xp, x, xs, W, Wt, dout, k):
    T = xp.linalg.matrix_transpose

    def wide():
        return wide_forward(x, Wt, k, xp=xp), wide_weight_grad(x, dout, xp=xp)

    def broadcast():
        return x @ W, T(T(dout) @ x)

    def stacked():
        return xs @ W, T(T(dout) @ xs)

    return {"wide": wide, "broadcast": broadcast, "stacked": stacked}


def measure_wide(backend, ks=(8, 64), *, repeats: int = 5, inner: int = 3,
                 dtype: str = "float32") -> list[dict]:
    """Per k, best seconds per call (forward product + weight gradient) of each form and
    the ratios ``wide_over_broadcast``, ``wide_over_stacked``; raises if they disagree."""
    xp = backend.xp
    rng = np.random.default_rng(0)
    rows = []
    for k in ks:
        x = backend.asarray(rng.standard_normal((BATCH, D)), dtype=dtype)
        W = backend.asarray(rng.standard_normal((k, D, H)) * math.sqrt(2.0 / D), dtype=dtype)
        dout = backend.asarray(rng.standard_normal((k, BATCH, H)), dtype=dtype)
        xs = xp.broadcast_to(x, (k, BATCH, D)) * 1.0  # a real (k, n, d) copy
        Wt = wide_weights(W, xp=xp)
        forms = _forms(xp, x, xs, W, Wt, dout, k)
        _check_agree(backend, forms, k)
        best = {name: math.inf for name in forms}
        for _ in range(repeats):
            for name, fn in forms.items():
                backend.synchronize()
                t0 = time.perf_counter()
                for _ in range(inner):
                    out = fn()
                backend.synchronize()
                best[name] = min(best[name], (time.perf_counter() - t0) / inner)
                del out
        rows.append({"k": k, "s_per_call": best,
                     "wide_over_broadcast": best["wide"] / best["broadcast"],
                     "wide_over_stacked": best["wide"] / best["stacked"]})
    return rows


def _check_agree(backend, forms, k):
    from xpnet.backend.devices import to_numpy
    from xpnet.step.wide import stacked_weights

    ref_s, ref_dw = (to_numpy(a) for a in forms["broadcast"]())
    s, dWt = forms["wide"]()
    xp = backend.xp
    got = {"wide": (to_numpy(s), to_numpy(stacked_weights(dWt, k, xp=xp))),
           "stacked": tuple(to_numpy(a) for a in forms["stacked"]())}
    for name, (s, dw) in got.items():
        scale = max(float(np.abs(ref_dw).max()), 1.0)
        if not (np.allclose(s, ref_s, rtol=1e-4, atol=1e-4 * scale)
                and np.allclose(dw, ref_dw, rtol=1e-4, atol=1e-4 * scale)):
            raise AssertionError(f"the {name} first layer differs from the broadcast one")


def wide_lines(rows) -> list[str]:
    """The bench's lines for :func:`measure_wide`."""
    lines = [f"first layer {D}->{H}, batch {BATCH}, forward product + weight gradient for k "
             "models sharing a batch (ms per call; ratio below 1: wide is faster):",
             f"{'k':>5} {'wide':>9} {'broadcast':>10} {'stacked':>9} {'wide/broadcast':>15} "
             f"{'wide/stacked':>13}"]
    for r in rows:
        t = r["s_per_call"]
        lines.append(f"{r['k']:>5} {t['wide'] * 1e3:>9.3g} {t['broadcast'] * 1e3:>10.3g} "
                     f"{t['stacked'] * 1e3:>9.3g} {r['wide_over_broadcast']:>14.2f}x "
                     f"{r['wide_over_stacked']:>12.2f}x")
    return lines

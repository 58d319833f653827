"""The bench's host-sync check: the training step must never wait for the device.

Two pieces of evidence, both taken from outside the library:

* **counting** -- while :func:`xpnet.training.loop.train` is inside a step, every
  device-to-host door of the array library's public API is counted by
  :mod:`xpnet.training.syncs` (the same counter the tests use): CuPy's on cuda, PyTorch's on the
  torch devices (on ``torch``, CPU tensors, the count is the evidence a CUDA run would
  wait nowhere), array_api_strict's on ``strict``.  Must be 0.  NumPy arrays already
  live on the host, so on ``cpu`` there is nothing to count.
* **timing** (cuda) -- right before the first step, a kernel that keeps the GPU busy
  for ``spin_seconds`` is queued on the training stream.  Work on one stream runs in
  order, so any synchronisation inside a step would wait for it; a loop whose host
  time is a small fraction of ``spin_seconds`` never waited.
"""

from __future__ import annotations

import time

import numpy as np

from experiments.bench.runners import BenchError, train_steps
from xpnet.training.syncs import SyncCounter, counting, host_doors


class StepWatch(SyncCounter):
    """:class:`xpnet.training.syncs.SyncCounter` that also times the host's run of the steps.

    Before the first step it waits for the device and, given a ``spin`` function,
    queues the busy kernel; ``t_start`` is then, ``t_end`` the end of the last step.
    """

    def __init__(self, backend, spin=None, spin_seconds: float = 0.0):
        super().__init__()
        self.backend, self.spin, self.spin_seconds = backend, spin, spin_seconds
        self.t_start = self.t_end = None

    def on_step_begin(self, step):
        if self.t_start is None:
            self.backend.synchronize()  # only the spinner is pending from here on
            if self.spin is not None:
                self.spin(self.spin_seconds)
            self.t_start = time.perf_counter()
        super().on_step_begin(step)

    def on_step_end(self, step):
        super().on_step_end(step)
        self.t_end = time.perf_counter()


# -------------------------------------------------------------------------- spinner
_SPIN_SOURCE = r"""
extern "C" __global__ void xpnet_bench_spin(unsigned long long ns) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < ns);
}
"""


def _spinner(backend):
    """A function that queues a kernel keeping the GPU busy for ``seconds`` (cuda only)."""
    import cupy

    kernel = cupy.RawKernel(_SPIN_SOURCE, "xpnet_bench_spin")

    def spin(seconds):
        kernel((1,), (1,), (np.uint64(int(seconds * 1e9)),))

    spin(0.0)  # compile and load now, not inside the checked window
    backend.synchronize()
    return spin


def check_host_syncs(net, split, *, steps=3, spin_seconds=1.0, batch_size=100):
    """Show that the training step of :func:`xpnet.training.loop.train` never waits for the
    device (see the module docstring); ``net`` trains ``steps`` steps in place.

    ``steps`` stays small so the queued kernels fit CUDA's launch queue.  Returns a
    dict: ``passed``, ``method``, ``steps``, ``loop_host_s``, ``spin_s``, ``total_s``,
    ``host_conversions`` (the total) and ``conversions`` (per API name).
    """
    backend = net.backend
    if not host_doors(backend):
        raise BenchError(f"The host-sync check needs a device (--device cuda or a torch "
                         f"device); {backend.name} arrays already live on the host.")
    cuda = backend.name == "cuda"
    watch = StepWatch(backend, _spinner(backend) if cuda else None, spin_seconds)
    with counting(watch, backend):
        train_steps(net, split, steps, batch_size=batch_size, callbacks=[watch])
    t_done = time.perf_counter()
    if watch.steps_seen != steps:
        raise BenchError(f"The host-sync check saw {watch.steps_seen} of {steps} training steps; "
                         "update experiments/bench/syncs.py to xpnet.training.loop's callbacks.")
    loop_s = watch.t_end - watch.t_start
    total_s = t_done - watch.t_start
    n_conversions = sum(watch.counts.values())
    passed = n_conversions == 0
    if cuda:  # the spinner really held the device (total >= spin) and the loop never waited
        passed = passed and loop_s < 0.25 * spin_seconds and total_s >= 0.9 * spin_seconds
    return {"passed": bool(passed), "method": "spinner+count" if cuda else "count",
            "steps": steps, "loop_host_s": loop_s, "spin_s": spin_seconds if cuda else None,
            "total_s": total_s, "host_conversions": n_conversions,
            "conversions": dict(watch.counts)}


def sync_line(res) -> str:
    """The bench's one-line summary of :func:`check_host_syncs`."""
    counted = ", ".join(f"{n} {name}" for name, n in sorted(res["conversions"].items()))
    calls = (f"{res['host_conversions']} device-to-host conversions"
             + (f" ({counted})" if counted else ""))
    verdict = "PASS" if res["passed"] else "FAIL"
    if res["method"] == "count":
        return f"host-sync check: {verdict} ({calls} in the steps)"
    return (f"host-sync check: {verdict} -- with the GPU held "
            f"busy {res['spin_s']:.2f} s by a kernel queued before step 1, the host ran "
            f"{res['steps']} training steps in {res['loop_host_s'] * 1e3:.1f} ms "
            f"(device done after {res['total_s']:.2f} s); {calls} in the steps; a "
            "device-to-host copy in a step would have waited for the kernel")

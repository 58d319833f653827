"""When and in what order the studies' runs start.

Every study runs once, on a thread of its own; its runs are independent units that it
submits and later waits for.  The dispatcher holds submitted runs until every study is
either waiting for a record or finished — so it knows the whole of what the studies can
submit now — and then starts them, highest priority first
(:meth:`experiments.suite.context.Context.priority`: chained studies' runs, then the
longest).  A study that waits lets the others go on; when a record arrives its study
submits its next runs (a chain's next link) and waits again, and those start next.

- On a Dask cluster all runs held go out at once, sorted: Dask's scheduler keeps the
  queue and hands a worker the highest-priority run when it is free.  A study busy for
  a while between its waits (drawing figures, say) does not hold the others' runs back
  for longer than :data:`HOLD_S`.
- In this process (``--workers 1``) the main thread computes one run at a time, the
  highest-priority one held, once every study is waiting: the order is the same on every
  invocation, and Ctrl-C reaches the run that is computing.
"""

from __future__ import annotations

import contextlib
import threading
import time

from experiments.suite import checkpoints, interrupts, tasks
from experiments.suite import spec as specs
from experiments.suite.store import fingerprint

#: Seconds a held run waits on a busy study before a cluster gets it anyway.
HOLD_S = 1.0


class Dispatcher:
    """Holds the studies' runs and starts them on ``executor`` (see the module docstring).

    ``n_studies`` study threads take part; each calls :meth:`finished` when done and wraps
    its waits in :meth:`waiting`.  The main thread calls :meth:`serve`.
    """

    def __init__(self, executor, reporter, data_settings, n_studies: int, checkpoints=None):
        self.executor = executor
        self.reporter = reporter
        self.data_settings = data_settings
        #: The output folder's :class:`~experiments.suite.checkpoints.CheckpointStore`
        #: (None: runs save no checkpoints).
        self.checkpoints = checkpoints
        self._cond = threading.Condition()
        self._busy = n_studies  # study threads neither waiting nor finished
        self._plans: dict[str, tuple] = {}  # later links: name -> (work, name it waits on)
        self._held: list = []   # RunHandles not started yet
        self._held_since = 0.0

    # ------------------------------------------------------------ study threads
    def add(self, handle) -> None:
        """Hold ``handle`` (a :class:`~experiments.suite.handle.RunHandle`) until it starts."""
        with self._cond:
            if not self._held:
                self._held_since = time.monotonic()
            self._held.append(handle)
            self.reporter.run_queued(handle.name, handle.steps, handle.cost, handle.spec)
            self._cond.notify_all()

    def plan(self, name: str, work: float, after: str | None) -> None:
        """A study will submit run ``name`` (``work`` estimated seconds) once run ``after``
        has finished (see :meth:`Context.plan <experiments.suite.context.Context.plan>`)."""
        with self._cond:
            self._plans[name] = (work, after)

    def planned(self, study: str) -> bool:
        """Whether ``study`` has planned any later link."""
        with self._cond:
            return any(name.split("/", 1)[0] == study for name in self._plans)

    def tail(self, name: str) -> float:
        """The longest path of planned work that waits on run ``name``, in seconds."""
        with self._cond:
            return max((work + self.tail(later) for later, (work, after)
                        in self._plans.items() if after == name), default=0.0)

    @contextlib.contextmanager
    def waiting(self):
        """The calling study waits for a run inside this block."""
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._busy += 1

    def finished(self) -> None:
        """The calling study has returned (or raised)."""
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    # -------------------------------------------------------------- main thread
    def serve(self, done) -> None:
        """Start held runs as they become due until ``done()`` is true (main thread)."""
        while not done():
            interrupts.check()  # a signal whose KeyboardInterrupt a finalizer swallowed
            batch = self._due()
            if batch:
                self.reporter.begin()  # every study has planned: the first line
            for i, handle in enumerate(batch):
                self._start(handle, upcoming=len(batch) - i - 1)

    def _due(self) -> list:
        """The runs to start now, highest priority first (waits at most 0.2 s)."""
        with self._cond:
            if not self._ready():
                self._cond.wait(0.2)  # short waits keep Ctrl-C responsive
            if not self._ready():
                return []
            self._held.sort(key=lambda h: -h.priority)
            take = 1 if self.executor.one_at_a_time else len(self._held)
            batch, self._held = self._held[:take], self._held[take:]
            self._held_since = time.monotonic()
            return batch

    def _ready(self) -> bool:
        if not self._held:
            return False
        if self._busy <= 0:
            return True
        held_long = time.monotonic() - self._held_since > HOLD_S
        return held_long and not self.executor.one_at_a_time

    def _start(self, handle, upcoming: int) -> None:
        """Hand ``handle``'s run to the executor, cut into parts where workers would idle
        (or as its checkpoints were saved), each part going on from its checkpoint."""
        store = self.checkpoints if handle.fn is tasks.train_and_test else None
        parts = [handle.spec]
        if handle.splittable:
            n = specs.n_models(handle.spec)
            saved = None if store is None else store.split_of(handle.name)
            left = self.reporter.work_left()
            share = handle.cost / left if left > 0 else 0.0
            parts = specs.split_spec(handle.spec,
                                     saved or self.executor.parts_for(n, upcoming, share))
        self.reporter.run_submitted(handle.name, handle.steps, n_parts=len(parts))
        fp = fingerprint(handle.spec)
        keys = [checkpoints.part_key(handle.name, len(parts), i, fingerprint(part))
                for i, part in enumerate(parts)]
        saved = {} if store is None else store.claim(handle.name, keys)
        start = time.perf_counter()  # the in-process executor computes inside submit()
        futures = [self.executor.submit(
            tasks.execute, tasks.portable(handle.fn), part, self.data_settings,
            handle.name if len(parts) == 1 else f"{handle.name}#{i}", self.executor.publish,
            None if store is None else (keys[i], store.every),
            saved.get(keys[i]), key=f"{handle.name}#{i}-{fp}", priority=handle.priority)
            for i, part in enumerate(parts)]
        handle.started(futures, specs.merge_records if len(parts) > 1 else None, start)

    def run_ended(self, name: str) -> None:
        """Run ``name`` (``"study/key"``) is saved, or reused: its checkpoints go."""
        if self.checkpoints is not None:
            self.checkpoints.finish(name)


class Immediate(Dispatcher):
    """Starts each run the moment it is submitted: a Context used outside a suite (a test,
    a notebook) on ``executor`` (say :class:`~experiments.suite.executor.InProcess`)."""

    def __init__(self, executor, reporter, data_settings):
        super().__init__(executor, reporter, data_settings, n_studies=0)

    def add(self, handle) -> None:
        self.reporter.run_queued(handle.name, handle.steps, handle.cost, handle.spec)
        self._start(handle, upcoming=0)

    @contextlib.contextmanager
    def waiting(self):
        yield

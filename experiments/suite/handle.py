"""A submitted run and how a study waits for it: :class:`RunHandle`, :class:`RunFailed`
and the :data:`ABORT` event that stops every wait when the suite stops.

A handle is made by :meth:`Context.submit <experiments.suite.context.Context.submit>`
(``ctx``: that study's context), started by the dispatcher, and stores the run's record in
``results.json`` the moment its last part finishes.
"""

from __future__ import annotations

import threading
import time

from xpnet.errors import OutputError, XpnetError

#: Set when the suite stops (Ctrl-C, SIGTERM): study threads waiting on runs give up.
ABORT = threading.Event()



class RunFailed(XpnetError):
    """A run raised; names its study and key (``run``: ``"study/key"``); the run's error
    is its ``__cause__``."""

    def __init__(self, message: str, run: str = ""):
        super().__init__(message)
        self.run = run


class RunHandle:
    """A submitted run: its record once every part has finished (see :meth:`Context.submit`).

    Made by :meth:`Context.submit`, started by the dispatcher (:meth:`started`), and
    stored in ``results.json`` the moment it finishes, on whichever thread learns of it,
    whether or not a study is waiting for it yet.
    """

    def __init__(self, ctx, key: str, spec: dict, fn=None, *,
                 splittable: bool = False, steps: int = 0, priority: float = 0.0,
                 cost: float = 0.0):
        self.ctx, self.key, self.spec, self.fn = ctx, key, spec, fn
        self.name = f"{ctx.study_name}/{key}"
        self.splittable, self.steps, self.priority = splittable, steps, priority
        self.cost = cost  # estimated seconds (experiments.suite.spec.estimated_seconds)
        self._merge = None
        self._futures: list = []
        self._pending = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._record = self._error = None
        #: Cancelled (the suite is stopping): neither finished nor failed.
        self._stopped = False
        self._start = 0.0

    @classmethod
    def finished(cls, ctx, key, record) -> RunHandle:
        handle = cls(ctx, key, record.get("spec"))
        handle._record = record
        handle._done.set()
        return handle

    @property
    def done(self) -> bool:
        """Whether the run has finished (or failed): :meth:`result` then returns at once.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp())  # runs train as they are submitted
        >>> ctx.submit_train("2-layer", seeds=ctx.seeds, hidden=(8,),
        ...                  schedule=ctx.cyclical(1)).done
        True
        """
        return self._done.is_set()

    def started(self, futures: list, merge, start: float) -> None:
        """The dispatcher has handed the run's parts to the executor as ``futures`` at
        ``start`` (``time.perf_counter()``); ``merge(records)`` joins the parts' records
        (None: one part)."""
        self._merge, self._futures, self._pending = merge, futures, len(futures)
        self._start = start
        for future in futures:
            future.add_done_callback(self._part_done)

    def _part_done(self, _future) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending:
                return
        try:
            # Done futures answer at once; the timeout guards Dask's callback thread (which
            # the interpreter joins at exit) against a future that can never answer.
            parts = [f.result(timeout=60) for f in self._futures]
            record = self._merge(parts) if self._merge else parts[0]
            self._record = self.ctx.store_run(self.key, self.spec, record,
                                              time.perf_counter() - self._start)
            self.ctx.dispatcher.run_ended(self.name)
        except Exception as exc:  # a run's error, a cancelled future, a full disk
            self._error = exc
            self._stopped = any(f.cancelled() for f in self._futures)
        except BaseException as exc:  # Ctrl-C during an in-process run's save: stop now
            self._error = exc
            raise
        finally:
            self._done.set()
            self.ctx.reporter.run_finished(self.name, failed=self._error is not None,
                                           stopped=self._stopped)

    def wait(self) -> None:
        """Return once the run has finished, failed or not (its record is then saved).

        Returns None; unlike :meth:`result`, a failed run raises nothing here.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp())
        >>> handle = ctx.submit_train("2-layer", seeds=ctx.seeds, hidden=(8,),
        ...                           schedule=ctx.cyclical(1))
        >>> handle.wait(); handle.done
        True
        """
        while not self._done.wait(0.2):  # short waits keep Ctrl-C responsive
            if ABORT.is_set():
                raise KeyboardInterrupt

    def result(self) -> dict:
        """The run's record, waiting for it to finish if it has not.

        Returns:
            The record as saved in ``results.json``: what the run function returned
            (a training run: ``test_accuracy``, ``test_loss``, ``diverged_step``,
            ``last_val_accuracy``, each ``(M,)`` with None for a diverged model;
            ``history`` with ``steps``, ``epochs``, ``eta`` and ``metrics``, each metric
            ``(n_points, M)``; ``n_models``), plus ``spec``, ``fingerprint``,
            ``wall_s``, ``compute_s`` and ``finished_at``.

        Raises:
            RunFailed: the run raised (the message names the study and run).

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp())
        >>> record = ctx.submit_train("2-layer", seeds=ctx.seeds, hidden=(8,),
        ...                           schedule=ctx.cyclical(1)).result()
        >>> record["n_models"], len(record["test_accuracy"]), sorted(record["history"])
        (2, 2, ['diverged_step', 'epochs', 'eta', 'metrics', 'steps', 'stopped_step'])
        """
        self.ctx.waits += 1
        if not self.done:
            with self.ctx.dispatcher.waiting():
                self.wait()
        if self._stopped:  # cancelled because the suite is stopping (Ctrl-C, SIGTERM)
            raise KeyboardInterrupt
        if self._error is not None:
            if isinstance(self._error, OutputError) or not isinstance(self._error, Exception):
                raise self._error
            err = self._error
            what = str(err) if isinstance(err, XpnetError) else f"{type(err).__name__}: {err}"
            raise RunFailed(f"Run {self.name} failed: {what}", run=self.name) from err
        return self._record

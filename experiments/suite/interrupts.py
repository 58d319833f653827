"""Ctrl-C and SIGTERM: the suite stops within seconds whenever they come, in one line.

:func:`install` (the CLI's first step) routes SIGINT and SIGTERM to one handler that
remembers the first signal (the exit status is ``128 + signal``: 130 for SIGINT, 143 for
SIGTERM) and, inside :func:`cuttable` (the suite's work), raises
:class:`KeyboardInterrupt` in the main thread, where the suite stops what it does, keeps
what has finished and ends its cluster.  Two kinds of moment must not be cut short, and
there the signal is only remembered:

- the local cluster's start-up (inside :func:`deferred`, which acts on the signal as it
  ends): Dask's ``SpecCluster`` cut mid-start is left half made, and its exit hook then
  printed a traceback (the cluster is closed after it has started);
- the clean-up itself (closing the cluster, releasing the folder's lock: outside
  :func:`cuttable`), which a second signal would otherwise cut, ending the process with
  a traceback.

A terminal's Ctrl-C signals the whole process group, the local cluster's workers too:
they are started where SIGINT is blocked (:func:`main_thread_only`), so only the suite
takes it, and ends them.

A signal is never lost: Python runs a handler wherever the main thread is, and a
:class:`KeyboardInterrupt` raised inside a finalizer (a ``__del__`` method, a weakref
callback, run by the garbage collector at any allocation, which a Dask client's objects
keep busy) is swallowed by the interpreter ("Exception ignored in ...").  So the
suite's loops also poll :func:`check`, which raises once a signal has come, and the exit
status says a signal came even when every run finished.

A SIGINT the parent process left ignored (a shell's background job) stays ignored, as
POSIX programs do.  This module imports nothing but the standard library, so the CLI
installs it before its heavy imports.
"""

from __future__ import annotations

import contextlib
import signal
import threading

#: The signals that stop the suite.
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))

#: The first signal, and how many :func:`deferred` blocks the main thread is in.  Only the
#: main thread touches them (Python runs signal handlers there), so they need no lock.
_state = {"signal": None, "depth": 0}


def _handler(signum, frame) -> None:
    if _state["signal"] is None:
        _state["signal"] = signum
    if _state["depth"] == 0:
        raise KeyboardInterrupt


def install() -> dict:
    """Route SIGINT and SIGTERM to the suite's handler (from the main thread; elsewhere
    nothing happens) and forget any earlier signal.

    From here a signal is only remembered, except inside :func:`cuttable` (the work),
    so the caller's clean-up and its last words are never cut short.

    Returns:
        The handlers this replaced, for :func:`restore`.
    """
    _state.update(signal=None, depth=1)
    previous = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for signum in SIGNALS:
        old = signal.getsignal(signum)
        if signum == getattr(signal, "SIGINT", None) and old is signal.SIG_IGN:
            continue  # left ignored by the parent (a background job): stays ignored
        previous[signum] = old
        signal.signal(signum, _handler)
    return previous


def restore(previous: dict) -> None:
    """Put back the handlers :func:`install` replaced."""
    for signum, old in previous.items():
        signal.signal(signum, old if old is not None else signal.SIG_DFL)


def received() -> int | None:
    """The first signal that came since :func:`install`, or None."""
    return _state["signal"]


def check() -> None:
    """Raise :class:`KeyboardInterrupt` if a signal has come (see the module docstring:
    one raised by the handler may have been swallowed)."""
    if _state["signal"] is not None:
        raise KeyboardInterrupt


def exit_status() -> int:
    """``128 + signal`` of the first signal (130 SIGINT, 143 SIGTERM); 130 for an
    interrupt no signal caused (a ``KeyboardInterrupt`` raised in-process)."""
    return 128 + int(_state["signal"] or getattr(signal, "SIGINT", 2))


@contextlib.contextmanager
def deferred(act_after: bool = True):
    """A block a signal does not cut (main thread only): it is remembered, and
    (``act_after``) raised as :class:`KeyboardInterrupt` when the outermost such block
    ends."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if act_after and _state["depth"] == 0 and _state["signal"] is not None:
            raise KeyboardInterrupt


@contextlib.contextmanager
def cuttable():
    """The block a signal cuts short at once (the suite's work), inside the state
    :func:`install` leaves, where a signal is only remembered; a signal that came before
    the block is acted on as it starts."""
    _state["depth"] -= 1
    try:
        check()
        yield
    finally:
        _state["depth"] += 1


@contextlib.contextmanager
def main_thread_only():
    """Threads started inside this block, and the processes they start, never take
    SIGINT: it stays the main thread's.

    A Ctrl-C in a terminal signals every process of its group, the local cluster's
    worker processes too, which Dask's nannies start from its event-loop thread: each
    printed a ``KeyboardInterrupt`` traceback.  Threads and processes inherit the signal
    mask of the thread that starts them, so blocking SIGINT here (in the main thread,
    while Dask starts its loop thread and the first workers) keeps it blocked in that
    thread and every worker it starts, restarts included; the workers end when the suite
    closes its cluster.  A SIGINT that comes meanwhile waits, and is handled (by the main
    thread) as the block ends.  SIGTERM is left alone: the nannies stop their workers
    with it.
    """
    sigint = getattr(signal, "SIGINT", None)
    if (not hasattr(signal, "pthread_sigmask") or sigint is None
            or threading.current_thread() is not threading.main_thread()):
        yield
        return
    # The first process a thread spawns starts multiprocessing's resource tracker, which
    # unblocks SIGINT in that thread when it has (SIG_UNBLOCK after its own SIG_BLOCK):
    # start it first, from here, so Dask's thread finds it running and keeps its mask.
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {sigint})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)

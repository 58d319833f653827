"""What the suite tells the user while it runs, wherever the runs execute.

Runs report ``{"run": name, "event": "start" | "step", ...}`` events through
:class:`ProgressEvents` (on a Dask worker over the :data:`PROGRESS_TOPIC` event topic;
in-process to a handler the executor passes); the client's :class:`Reporter` turns them
into one display:

- on a terminal, a tqdm bar over training *steps* across all submitted runs (time is
  proportional to steps, not to runs or studies), with the counts of done, running and
  queued runs and each running run's step;
- elsewhere (a log file, CI), plain lines: one per finished run and a status line every
  ``status_every`` seconds, without carriage returns;
- with ``--no-progress``, nothing but the lines the suite prints itself.
"""

from __future__ import annotations

import sys
import threading
import time

from xpnet.training import Callback

#: Steps a gradient check or other untrained run counts for in the bar.
UNTRAINED_RUN_STEPS = 200
#: Dask topic on which workers publish run progress.
PROGRESS_TOPIC = "xpnet-progress"
#: Progress events per training run (plus its start and end).
PROGRESS_EVENTS = 40


# ------------------------------------------------------------------ run side
def dask_worker():
    """The Dask worker running this code, or None (in-process)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:
        return None


class ProgressEvents(Callback):
    """Publishes a run's step count a few dozen times per training (never per step).

    ``publish(event)`` sends one event to the client (None: nowhere).
    """

    def __init__(self, run: str, publish=None):
        self.run = run
        self.publish = publish or (lambda event: None)
        self.every = 1

    def on_train_begin(self, total_steps, n_models):
        self.every = max(1, total_steps // PROGRESS_EVENTS)
        self.publish({"run": self.run, "event": "start", "total": total_steps})

    def on_step_end(self, step):
        if (step + 1) % self.every == 0:
            self.publish({"run": self.run, "event": "step", "step": step + 1})

    def on_train_end(self, history):
        self.publish({"run": self.run, "event": "step", "step": history.stopped_step})


# ---------------------------------------------------------------- client side


class Reporter:
    """Counts runs and steps; thread-safe (events arrive on Dask's and the suite's threads)."""

    def __init__(self, enabled: bool = True, stream=None, status_every: float = 30.0):
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.status_every = status_every
        self.lock = threading.RLock()
        self.total = {}     # run -> steps it will take (all its parts together)
        self.done_steps = {}  # run -> steps done so far
        self.parts = {}     # part name ("run#i") -> (run, steps done in that part)
        self.state = {}  # run -> "queued" | "running" | "done" | "failed" | "stopped" | "reused"
        self.bar = None
        self._last_status = time.monotonic()

    # ----------------------------------------------------------- suite side
    def run_queued(self, run: str, steps: int) -> None:
        """A run the suite has and will start soon: counts in the total now."""
        with self.lock:
            self.total.setdefault(run, steps or UNTRAINED_RUN_STEPS)
            self.done_steps.setdefault(run, 0)
            self.state.setdefault(run, "queued")

    def run_submitted(self, run: str, steps: int, n_parts: int = 1) -> None:
        with self.lock:
            self.total[run] = (steps or UNTRAINED_RUN_STEPS) * n_parts
            self.done_steps[run] = 0
            self.state[run] = "queued"
            self._refresh(grow=True)

    def run_reused(self, run: str) -> None:
        with self.lock:
            self.state[run] = "reused"

    def run_finished(self, run: str, failed: bool = False, stopped: bool = False) -> None:
        """A run ended: it finished, failed, or was stopped with the suite (not a failure)."""
        with self.lock:
            if run not in self.total:
                return
            self.state[run] = "stopped" if stopped else "failed" if failed else "done"
            self.done_steps[run] = self.total[run]
            if self.enabled and not self.tty:
                what = {"done": "finished"}.get(self.state[run], self.state[run])
                self._line(f"{what}: {run} ({self._counts()})")
            self._refresh()

    def say(self, line: str) -> None:
        """A line the suite always prints (study summaries), above any bar."""
        with self.lock:
            if self.bar is not None:
                self.bar.write(line, file=self.stream)
            else:
                print(line, file=self.stream, flush=True)

    def warn(self, text: str) -> None:
        """A failure's line (or traceback) on stderr, above any bar, with or without the
        progress display."""
        with self.lock:
            if self.bar is not None:
                self.bar.write(text, file=sys.stderr)
            else:
                print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.n = self.bar.total = sum(self.total.values())
                self.bar.refresh()
                self.bar.close()
                self.bar = None

    # ------------------------------------------------------------ run side
    def handle(self, message: dict) -> None:
        """One progress event from a run (any thread)."""
        name = str(message.get("run", ""))
        run = name.split("#", 1)[0]
        with self.lock:
            if run not in self.total or self.state.get(run) in ("done", "failed", "stopped"):
                return
            if message.get("event") == "resumed":
                self.say(f"{name}: resumed from its checkpoint at step {message.get('step')}")
            elif message.get("event") == "refused":
                self.warn(f"{name}: its checkpoint cannot be used ({message.get('reason')}); "
                          "it trains from step 0")
            if self.state[run] == "queued":
                self.state[run] = "running"
            if message.get("event") == "step":
                _, before = self.parts.get(name, (run, 0))
                step = int(message.get("step") or 0)
                self.parts[name] = (run, step)
                self.done_steps[run] = min(self.total[run],
                                           self.done_steps[run] + max(0, step - before))
            self._refresh()

    # -------------------------------------------------------------- display
    def _counts(self) -> str:
        states = list(self.state.values())
        done = states.count("done") + states.count("reused")
        text = (f"{done} done, {states.count('running')} running, "
                f"{states.count('queued')} queued")
        for state in ("failed", "stopped"):
            if states.count(state):
                text += f", {states.count(state)} {state}"
        return text

    def _running(self) -> str:
        parts = [f"{run} {self.done_steps[run]}/{self.total[run]}"
                 for run, state in self.state.items() if state == "running"]
        return "; ".join(parts[:3]) + (f" +{len(parts) - 3}" if len(parts) > 3 else "")

    def _refresh(self, grow: bool = False) -> None:
        if not self.enabled:
            return
        steps_total = sum(self.total.values())
        steps_done = sum(self.done_steps.values())
        if self.tty:
            if self.bar is None:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=steps_total, desc="suite", unit="step",
                                dynamic_ncols=True, file=self.stream)
            if grow:
                self.bar.total = steps_total
            self.bar.n = steps_done
            running = self._running()
            self.bar.set_postfix_str(self._counts() + (f" | {running}" if running else ""),
                                     refresh=True)
            return
        now = time.monotonic()
        if now - self._last_status >= self.status_every:
            self._last_status = now
            share = 100.0 * steps_done / steps_total if steps_total else 0.0
            self._line(f"status: {share:.0f} % of {steps_total} steps; {self._counts()}"
                       + (f"; running {self._running()}" if self._running() else ""))

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

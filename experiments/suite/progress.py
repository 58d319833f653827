"""What the suite tells the user while it runs, wherever the runs execute.

Runs report ``{"run": name, "event": "start" | "step" | "resumed", ...}`` events through
:class:`ProgressEvents` (on a Dask worker over the :data:`PROGRESS_TOPIC` event topic;
in-process to a handler the executor passes); the client's :class:`Reporter` turns them
into one display, in units of *work* (:mod:`experiments.suite.estimate`: an 81-model run
weighs 81 one-model runs), with the time elapsed and the time left:

- a first line once the runs are planned: the output folder, the executor and its
  workers, the runs, and the whole job's estimated duration on this machine;
- on a terminal, a tqdm bar over the work of every run planned, with elapsed and left, the
  counts of done, running and queued runs and each running run's step;
- elsewhere (a log file, CI), plain lines: one per finished run and a status line every
  ``status_every`` seconds (``status 14:02:11: 12:34 elapsed, 21:10 left; 37 % of the
  work; ...``: the clock time, for a log), without carriage returns;
- with ``--no-progress``, nothing but the lines the suite prints itself (the first line
  among them).
"""

from __future__ import annotations

import datetime as _dt
import sys
import threading
import time

from experiments.suite import estimate
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
#: A run's states; "planned": a chained study's later link, not submitted yet.
ENDED = ("done", "failed", "stopped")


class Reporter:
    """Counts runs, steps and work; thread-safe (events arrive on Dask's and the suite's
    threads).  ``clock`` gives seconds (tests pass their own)."""

    def __init__(self, enabled: bool = True, stream=None, status_every: float = 30.0,
                 clock=time.monotonic):
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.status_every = status_every
        self.clock = clock
        self.t0 = clock()
        self.lock = threading.RLock()
        self.total = {}     # run -> steps it will take (all its parts together)
        self.done_steps = {}  # run -> steps done so far
        self.parts = {}     # part name ("run#i") -> (run, steps done in that part)
        self.state = {}  # run -> "planned" | "queued" | "running" | ENDED | "reused"
        self.work = {}      # run -> its estimated work (one-core seconds)
        self.specs = {}     # run -> its spec, for a halving run's work curve
        self.n_parts = {}   # run -> the parts it was cut into
        self.timing = {}    # part -> [start, last event, end or None, work at start]
        self.opening = None  # the first line's start (the folder, the executor)
        self.speed = estimate.Speed(1.0)
        self.workers = 1
        self.began = False
        self.bar = None
        self._last_status = clock()

    # ----------------------------------------------------------- suite side
    def configure(self, opening: str, rate: float, workers: int) -> None:
        """What the first line starts with, this machine's calibrated speed (work per
        second of a worker) and the number of workers."""
        with self.lock:
            self.opening, self.speed, self.workers = opening, estimate.Speed(rate), workers

    def begin(self) -> None:
        """Say the first line (once): the folder, the executor, the runs planned, the
        estimated duration."""
        with self.lock:
            if self.began or self.opening is None:
                return
            self.began = True
            states = list(self.state.values())
            reused = states.count("reused")
            left = self.figures()["left"]
            ends = _dt.datetime.now() + _dt.timedelta(seconds=left)
            self.say(f"{self.opening}; {len(states)} runs ({len(states) - reused} to train"
                     f"{f', {reused} reused' if reused else ''}); "
                     f"{estimate.words(left)} on this machine (until about "
                     f"{ends:%H:%M}), from its measured speed")

    def run_planned(self, run: str, steps: int, work: float, spec=None) -> None:
        """A run a chained study will submit later: its work counts from now on."""
        with self.lock:
            if run not in self.state:
                self.run_queued(run, steps, work, spec)
                self.state[run] = "planned"

    def run_queued(self, run: str, steps: int, work: float = 0.0, spec=None) -> None:
        """A run the suite has and will start soon: counts in the total now."""
        with self.lock:
            if self.state.get(run, "planned") != "planned":
                return
            self.total[run] = steps or UNTRAINED_RUN_STEPS
            self.done_steps[run] = 0
            self.state[run] = "queued"
            self.work[run] = (work if steps else estimate.UNTRAINED_WORK) + estimate.RUN_OVERHEAD
            self.specs[run] = spec
            self.n_parts[run] = 1

    def run_submitted(self, run: str, steps: int, n_parts: int = 1) -> None:
        with self.lock:
            self.run_queued(run, steps)
            self.total[run] = (steps or UNTRAINED_RUN_STEPS) * n_parts
            self.done_steps[run] = 0
            self.n_parts[run] = n_parts
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
            now = self.clock()
            for name, (owner, _) in list(self.parts.items()):
                if owner == run and self.timing.get(name) and self.timing[name][2] is None:
                    self.timing[name][2] = now
                    self.parts[name] = (run, self.total[run] // self.n_parts[run])
            if self.enabled and not self.tty and not stopped:
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
                self.bar.refresh()
                self.bar.close()
                self.bar = None

    # ------------------------------------------------------------ run side
    def handle(self, message: dict) -> None:
        """One progress event from a run (any thread)."""
        name = str(message.get("run", ""))
        run = name.split("#", 1)[0]
        event = message.get("event")
        with self.lock:
            if run not in self.total or self.state.get(run) in (*ENDED, "planned"):
                return
            if self.state[run] == "queued":
                self.state[run] = "running"
            now = self.clock()
            timing = self.timing.setdefault(name, [now, now, None, 0.0])
            if event == "resumed":
                step = int(message.get("step") or 0)
                timing[3] = self._part_work(run, step)  # done before: not this speed's
                self.say(f"{name}: resumed from its checkpoint at step {step}")
            elif event == "refused":
                self.warn(f"{name}: its checkpoint cannot be used ({message.get('reason')}); "
                          "it trains from step 0")
            if event in ("step", "resumed"):
                _, before = self.parts.get(name, (run, 0))
                step = int(message.get("step") or 0)
                self.parts[name] = (run, step)
                timing[1] = now
                self.done_steps[run] = min(self.total[run],
                                           self.done_steps[run] + max(0, step - before))
            self._refresh()

    # -------------------------------------------------------------- figures
    def work_left(self) -> float:
        """The estimated work of the runs not ended yet (planned ones included)."""
        with self.lock:
            return sum(self.work.get(run, 0.0) for run, state in self.state.items()
                       if state in ("planned", "queued", "running"))

    def _part_work(self, run: str, step: int) -> float:
        """The work a part of ``run`` has done at ``step``."""
        steps = self.total[run] // self.n_parts[run]
        return self.work[run] / self.n_parts[run] * estimate.work_done(self.specs.get(run),
                                                                      step, steps)

    def figures(self) -> dict:
        """``elapsed``, ``left`` (seconds), ``share`` (of the work done, 0..1) and ``rate``
        (work per second of a worker) now."""
        total = done = left = longest = measured = busy = 0.0
        now = self.clock()
        for run, state in self.state.items():
            if state == "reused":
                continue
            work = self.work.get(run, 0.0)
            total += work
            if state in ENDED:
                done += work
                continue
            run_done = 0.0
            for owner, step in self.parts.values():
                if owner == run:
                    part_done = self._part_work(run, step)
                    run_done += part_done
                    longest = max(longest, work / self.n_parts[run] - part_done)
            if not any(owner == run for owner, _ in self.parts.values()):
                longest = max(longest, work)
            done += run_done
            left += work - run_done
        for name, (start, last, end, base) in self.timing.items():
            run, step = self.parts.get(name, (name.split("#", 1)[0], 0))
            if run in self.work and self.state.get(run) in ("running", "done"):
                measured += self._part_work(run, step) - base
                busy += (end or last) - start
        rate = self.speed.rate(measured, busy)
        return {"elapsed": now - self.t0, "share": done / total if total else 0.0,
                "rate": rate, "left": estimate.time_left(left, longest, rate, self.workers)}

    # -------------------------------------------------------------- display
    def _counts(self) -> str:
        states = list(self.state.values())
        done = states.count("done") + states.count("reused")
        text = (f"{done} done, {states.count('running')} running, "
                f"{states.count('queued') + states.count('planned')} queued")
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
        now = self.clock()
        if not self.tty and now - self._last_status < self.status_every:
            return
        figures = self.figures()
        share = figures["share"]
        times = (f"{estimate.clock(figures['elapsed'])} elapsed, "
                 f"{estimate.clock(figures['left'])} left")
        running = self._running()
        if self.tty:
            if self.bar is None:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=1000, dynamic_ncols=True, file=self.stream,
                                bar_format="suite {percentage:3.0f}%|{bar}| {desc}")
            self.bar.n = round(1000 * share)
            self.bar.set_description_str(f"{times} | {self._counts()}"
                                         + (f" | {running}" if running else ""), refresh=True)
            return
        self._last_status = now
        self._line(f"status {_dt.datetime.now():%H:%M:%S}: {times}; {100 * share:.0f} % of "
                   f"the work; {self._counts()}" + (f"; running {running}" if running else ""))

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

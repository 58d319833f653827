"""A finish time you can trust (experiments.suite.estimate and the Reporter's figures): work
counts what runs compute, chained runs count from the start, the speed is the workers'
own once they have run a while, and the lines carry elapsed and left."""

from __future__ import annotations

import io
import re

import pytest

from experiments.suite import estimate
from experiments.suite.progress import Reporter

OVERHEAD = estimate.RUN_OVERHEAD


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_time_left_is_the_work_left_over_the_measured_speed_of_the_workers():
    clock = Clock()
    reporter = Reporter(enabled=False, clock=clock)
    reporter.configure("Output folder out; 2 workers", rate=1.0, workers=2)
    reporter.run_queued("s/long", 100, work=400.0)
    reporter.run_queued("s/short", 100, work=200.0)
    # Before any run: the calibrated speed, the longest run on one worker.
    assert reporter.figures()["left"] == pytest.approx(400.0 + OVERHEAD)
    reporter.run_submitted("s/long", 100)
    reporter.run_submitted("s/short", 100)
    reporter.handle({"run": "s/long", "event": "start", "total": 100})
    reporter.handle({"run": "s/short", "event": "start", "total": 100})
    clock.now = 300.0  # each worker did a quarter of its run's work: half the speed
    reporter.handle({"run": "s/long", "event": "step", "step": 25})
    reporter.handle({"run": "s/short", "event": "step", "step": 25})
    figures = reporter.figures()
    done = (600.0 + 2 * OVERHEAD) / 4
    measured = (1.0 * estimate.PRIOR_S + done) / (estimate.PRIOR_S + 600.0)
    assert figures["rate"] == pytest.approx(measured)
    assert figures["share"] == pytest.approx(0.25)
    # The long run's 300 left on one worker outlasts the 450 left on two.
    assert figures["left"] == pytest.approx(0.75 * (400.0 + OVERHEAD) / measured)
    assert figures["elapsed"] == 300.0


def test_a_chained_run_counts_from_the_start_so_the_total_does_not_jump():
    clock = Clock()
    reporter = Reporter(enabled=False, clock=clock)
    reporter.configure("out", rate=1.0, workers=1)
    reporter.run_queued("s/coarse", 100, work=100.0)
    reporter.run_planned("s/fine", 100, work=300.0)
    before = reporter.figures()["left"]
    assert before == pytest.approx(400.0 + 2 * OVERHEAD)
    reporter.run_submitted("s/coarse", 100)
    reporter.handle({"run": "s/coarse", "event": "start"})
    clock.now = 100.0
    reporter.handle({"run": "s/coarse", "event": "step", "step": 100})
    reporter.run_finished("s/coarse")
    reporter.run_queued("s/fine", 100, work=300.0)  # the next link comes: no jump
    figures = reporter.figures()
    assert figures["left"] == pytest.approx((300.0 + OVERHEAD) / figures["rate"])
    assert reporter.state["s/fine"] == "queued"


def test_steps_a_resumed_run_did_before_its_checkpoint_are_not_speed():
    clock = Clock()
    reporter = Reporter(enabled=False, clock=clock)
    reporter.configure("out", rate=1.0, workers=1)
    reporter.run_queued("s/r", 100, work=1000.0)
    reporter.run_submitted("s/r", 100)
    reporter.handle({"run": "s/r", "event": "start"})
    reporter.handle({"run": "s/r", "event": "resumed", "step": 90})
    clock.now = 10.0
    reporter.handle({"run": "s/r", "event": "step", "step": 91})
    figures = reporter.figures()
    assert figures["share"] == pytest.approx(0.91)
    assert figures["rate"] == pytest.approx(
        (estimate.PRIOR_S + 0.01 * (1000.0 + OVERHEAD)) / (estimate.PRIOR_S + 10))


def test_a_halving_runs_first_steps_weigh_more_than_its_last():
    spec = {"schedule": {"type": "ConstantLR", "eta": 0.1, "steps": 100, "cycle_length": 100},
            "models": {"seeds": list(range(9))}, "n_train": 1000,
            "train": {"evals_per_cycle": 10, "batch_size": 100},
            "halving": {"rungs": [50], "eta": 3, "min_models": 1, "metric": "val_accuracy",
                        "group_size": 1, "unit": "steps"}}
    # 9 models for 50 steps, 3 for the last 50: 450 + 150 model-steps.
    assert estimate.work_done(spec, 50, 100) == pytest.approx(450 / 600)
    assert estimate.work_done(spec, 100, 100) == 1.0
    assert estimate.work_done(None, 25, 100) == 0.25


def test_the_first_line_and_the_status_lines_say_elapsed_and_left():
    clock = Clock()
    stream = io.StringIO()
    reporter = Reporter(stream=stream, status_every=0.0, clock=clock)
    reporter.configure("Output folder runs/x; local cluster, 2 CPU workers", rate=1.0,
                       workers=2)
    reporter.run_queued("s/a", 100, work=600.0)
    reporter.run_queued("s/b", 100, work=600.0)
    reporter.run_reused("s/c")
    reporter.begin()
    reporter.begin()  # once
    reporter.run_submitted("s/a", 100)
    reporter.handle({"run": "s/a", "event": "start"})
    clock.now = 65.0
    reporter.handle({"run": "s/a", "event": "step", "step": 10})
    lines = stream.getvalue().splitlines()
    assert re.fullmatch(r"Output folder runs/x; local cluster, 2 CPU workers; 3 runs \(2 to "
                        r"train, 1 reused\); about 10 min on this machine \(until about "
                        r"\d\d:\d\d\), from its measured speed", lines[0])
    assert sum(line.startswith("Output folder") for line in lines) == 1
    assert re.fullmatch(r"status \d\d:\d\d:\d\d: 1:05 elapsed, \d+:\d\d left; 5 % of the "
                        r"work; 1 done, 1 running, 1 queued; running s/a 10/100", lines[-1])


def test_the_calibration_measures_this_machines_speed(tmp_path):
    from experiments.suite.sandbox import sandbox

    rate = estimate.calibrate(sandbox(tmp_path).env)
    assert 0.01 < rate < 100  # work per second: about 1 on the machine the estimate fits
    assert estimate.clock(3723) == "1:02:03" and estimate.clock(65) == "1:05"
    assert estimate.words(20) == "under a minute" and estimate.words(4200) == "about 1 h 10 min"

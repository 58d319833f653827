"""Progress that tells the truth: plain lines off a terminal, totals known up front,
and no time spent on runs whose every model has diverged."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from experiments.suite.progress import UNTRAINED_RUN_STEPS, Reporter
from xpnet import ConstantLR, Network, NetworkConfig, TrainConfig, get_backend
from xpnet.data.synthetic import write_cifar_batches
from xpnet.training import DeviceSplit, train

REPO = Path(__file__).resolve().parents[2]


def test_off_a_terminal_the_reporter_prints_plain_lines():
    stream = io.StringIO()
    reporter = Reporter(stream=stream, status_every=0.0, clock=lambda: 0.0)
    reporter.run_queued("a/x", 100)
    reporter.run_submitted("a/x", 100)
    reporter.run_submitted("b/gc", 0)
    reporter.handle({"run": "a/x", "event": "start", "total": 100})
    reporter.handle({"run": "a/x", "event": "step", "step": 50})
    reporter.run_finished("a/x")
    reporter.run_finished("b/gc", failed=True)
    reporter.say("a: 1 run")
    reporter.close()
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    status = [line for line in lines if line.startswith("status ")]
    assert any(re.fullmatch(r"status \d\d:\d\d:\d\d: 0:00 elapsed, \d+:\d\d left; \d+ % of "
                            r"the work; 0 done, 1 running, 1 queued; running a/x 50/100", line)
               for line in status), status
    assert "finished: a/x (1 done, 0 running, 1 queued)" in lines
    assert "failed: b/gc (1 done, 0 running, 0 queued, 1 failed)" in lines
    assert lines[-1] == "a: 1 run"
    assert reporter.total["b/gc"] == UNTRAINED_RUN_STEPS


def test_disabled_reporter_prints_only_what_the_suite_says():
    stream = io.StringIO()
    reporter = Reporter(enabled=False, stream=stream, status_every=0.0)
    reporter.run_submitted("a/x", 10)
    reporter.handle({"run": "a/x", "event": "step", "step": 10})
    reporter.run_finished("a/x")
    reporter.say("a: done")
    assert stream.getvalue() == "a: done\n"


def test_split_parts_add_up_to_the_runs_steps():
    reporter = Reporter(enabled=False)
    reporter.run_submitted("s/r", 100, n_parts=2)
    for part in ("s/r#0", "s/r#1"):
        reporter.handle({"run": part, "event": "step", "step": 100})
    assert reporter.done_steps["s/r"] == reporter.total["s/r"] == 200


def test_a_logged_suite_has_no_carriage_returns(tmp_path):
    data = tmp_path / "data"
    write_cifar_batches(data, n_per_batch=200, seed=1)
    env = {**os.environ, "XPNET_WORKERS": "1"}
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "--quick", "--only",
                           "overfit,depth_bn", "--seeds", "1", "--data-dir", str(data),
                           "--out", str(tmp_path / "out")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stdout and "\r" not in proc.stderr
    assert "finished: overfit/4-layer-bn-100" in proc.stdout
    assert sum(line.startswith("finished: depth_bn/") for line in proc.stdout.splitlines()) == 4


def _tiny_splits(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 20)).astype(np.float32)
    y = rng.integers(0, 4, n)
    be = get_backend("cpu")
    return DeviceSplit.from_host(be, X, y, 4, "float32")


def test_a_run_whose_models_all_diverged_stops_early():
    tr = _tiny_splits()
    config = NetworkConfig(d_in=20, hidden=(16,), n_classes=4, norm=None,
                           init="normal")
    net = Network.create(config, seeds=[0, 1], sigma=10.0)
    with np.errstate(all="ignore"):
        hist = train(net, ConstantLR(eta=1e3, steps=400, cycle_length=20), tr, tr,
                     TrainConfig(batch_size=20, momentum=0.9), progress=False)
    assert np.all(hist.diverged_step >= 0)
    assert hist.stopped_step < 400
    assert hist.steps[-1] == hist.stopped_step
    assert hist.stopped_step <= int(np.max(hist.diverged_step)) + 20  # the next record point


def test_a_run_with_a_healthy_model_trains_to_the_end():
    tr = _tiny_splits()
    config = NetworkConfig(d_in=20, hidden=(16,), n_classes=4, norm=None,
                           init="normal")
    net = Network.create(config, seeds=[0, 1], sigma=[0.01, 10.0])
    with np.errstate(all="ignore"):
        hist = train(net, ConstantLR(eta=[0.01, 1e3], steps=100, cycle_length=20), tr, tr,
                     TrainConfig(batch_size=20), progress=False)
    assert hist.diverged_step[0] == -1 and hist.diverged_step[1] >= 0
    assert hist.stopped_step == 100 and hist.steps[-1] == 100

"""The order runs start in: each study runs once, chained studies' runs and later links
go first, the longest runs next, and a cluster gets the first wave in one batch."""

from __future__ import annotations

import pytest


def test_a_chains_head_goes_first_by_the_work_that_waits_on_it(tiny_data, tmp_path,
                                                              monkeypatch):
    """A run's priority is the longest path of work it starts: its own estimated seconds
    and its planned later links' (the lambda search's coarse -> fine -> final)."""
    from experiments.run import main
    from experiments.suite.executor import InProcess
    from experiments.suite.spec import estimated_seconds

    real = InProcess.submit
    priorities, costs = {}, {}

    def recording(self, fn, *args, key, priority=0):
        priorities[key.split("#")[0]] = priority
        costs[key.split("#")[0]] = estimated_seconds(args[1])
        return real(self, fn, *args, key=key, priority=priority)

    monkeypatch.setattr(InProcess, "submit", recording)
    code = main(["--quick", "--only", "lambda_search,lr_bn", "--no-progress", "--seeds", "1",
                 "--data-dir", str(tiny_data), "--out", str(tmp_path / "out")])
    assert code == 0
    coarse, fine, final = (f"lambda_search/{k}" for k in ("coarse", "fine", "final"))
    assert priorities[final] == pytest.approx(costs[final])
    assert priorities[fine] == pytest.approx(costs[fine] + costs[final])
    assert priorities[coarse] == pytest.approx(costs[coarse] + costs[fine] + costs[final])
    # Nothing waits on lr_bn's runs: their own estimated seconds order them.
    assert priorities["lr_bn/bn"] == pytest.approx(costs["lr_bn/bn"])


def test_a_cluster_gets_the_first_wave_at_once_chains_and_longest_runs_first(
        tiny_data, tmp_path, monkeypatch, capsys):
    from experiments.run import main
    from experiments.suite.executor import InProcess

    real = InProcess.submit
    submitted = []

    def recording(self, fn, *args, key, priority=0):
        submitted.append((key.split("#")[0], priority))
        return real(self, fn, *args, key=key, priority=priority)

    monkeypatch.setattr(InProcess, "submit", recording)
    monkeypatch.setattr(InProcess, "one_at_a_time", False)  # as a cluster does
    code = main(["--quick", "--only", "depth_bn,lambda_search,lr_bn", "--no-progress",
                 "--seeds", "1", "--data-dir", str(tiny_data), "--out", str(tmp_path / "out")])
    assert code == 0
    names = [name for name, _ in submitted]
    assert len(names) == len(set(names)) == 9  # each run once
    first_wave = submitted[:7]  # depth_bn's 4, lr_bn's 2, the lambda search's coarse run
    assert first_wave[0][0] == "lambda_search/coarse"
    assert {name.split("/")[0] for name, _ in first_wave[1:]} == {"depth_bn", "lr_bn"}
    priorities = [priority for _, priority in first_wave]
    assert priorities == sorted(priorities, reverse=True)
    assert priorities[1] > priorities[-1]  # their estimated seconds order them
    assert "(4 trained, 0 reused)" in capsys.readouterr().out  # depth_bn's, not reused


def test_each_study_runs_once_per_invocation(tiny_data, tmp_path, monkeypatch):
    """No planning pass: a study's code runs once, and its runs still start in one batch."""
    from experiments.run import main
    from experiments.studies import load_study

    calls = []
    for name in ("depth_bn", "lambda_search"):
        module = load_study(name)
        monkeypatch.setattr(module, "run", lambda ctx, real=module.run, name=name: (
            calls.append(name), real(ctx))[1])
    code = main(["--quick", "--only", "depth_bn,lambda_search", "--no-progress", "--seeds",
                 "1", "--data-dir", str(tiny_data), "--out", str(tmp_path / "out")])
    assert code == 0
    assert sorted(calls) == ["depth_bn", "lambda_search"]


def test_longer_runs_are_estimated_to_take_longer(tiny_data):
    from experiments.suite import spec as specs
    from experiments.suite import tasks as runs
    from experiments.suite.context import Context, Settings

    ctx = Context(Settings(quick=True, data_dir=str(tiny_data)), None, tiny_data, None,
                  "depth_bn", runs.DataSettings(str(tiny_data), False, True, "cpu"), None)
    base = dict(hidden=(50, 50), seeds=0)
    one = specs.estimated_seconds(ctx.train_spec(**base))
    assert one > 0
    assert specs.estimated_seconds(ctx.train_spec(**{**base, "seeds": [0, 1, 2]})) > 2.5 * one
    assert specs.estimated_seconds(ctx.train_spec(**base, schedule=ctx.cyclical(4))) > 1.9 * one
    assert specs.estimated_seconds(ctx.train_spec(hidden=(50,) * 8, seeds=0)) > one
    assert specs.estimated_seconds(ctx.train_spec(hidden=(200, 50), seeds=0)) > 3 * one

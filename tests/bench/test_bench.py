"""Smoke test of the benchmark harness (experiments/bench/) on tiny sizes on the CPU."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from experiments.bench import cli as bench
from experiments.bench import runners as bench_runners
from experiments.bench import syncs as bench_syncs
from xpnet.backend.devices import get_backend
from xpnet.training import DeviceSplit

TINY = ["--device", "cpu", "--n-samples", "1000", "--epochs", "1", "--repeats", "1"]


def _positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_cpu_bench_prints_ratios_and_writes_json(tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    rc = bench.main(TINY + ["--no-torch", "--sweep", "--models", "1,2",
                            "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "s/epoch" in out and "ours/matmul" in out
    assert "generic step" in out and "numpy_step/generic" in out
    assert "layer norm + Adam: ours" in out and "vs batch norm + SGD" in out
    assert "torch eager n/a" in out
    assert "vs one-after-another" in out
    assert "peak GPU memory: n/a" in out
    assert "calls per step of the array-API reference step" in out and "9-layer" in out

    data = json.loads(out_json.read_text())
    assert data["device"] == "cpu"
    assert data["config"]["n_samples"] == 1000 and data["config"]["batch_size"] == 100
    single = data["single"]
    for key in ("ours_s_per_epoch", "matmul_s_per_epoch", "ours_over_matmul",
                "generic_s_per_epoch", "step_over_generic"):
        assert _positive(single[key]), key
    assert single["step"] == "numpy_step"
    for key in ("ours_s_per_epoch", "ours_over_matmul", "over_recipe"):
        assert _positive(data["layer_adam"][key]), key
    assert single["torch_s_per_epoch"] is None and single["ours_over_torch"] is None
    assert [row["models"] for row in data["sweep"]] == [1, 2]
    calls = data["calls_per_step"]
    assert set(calls) == {"3-layer", "9-layer"} and set(calls["3-layer"]) == {"1", "64"}
    assert calls["3-layer"]["1"] == calls["3-layer"]["64"] > 0
    for row in data["sweep"]:
        assert row["calls_per_step"] == calls["3-layer"]["1"]
        for key in ("s_per_epoch", "model_epochs_per_s", "speedup_vs_sequential",
                    "matmul_s_per_epoch", "ours_over_matmul"):
            assert _positive(row[key]), key
    # Peak GPU memory is per contender and only measured on a GPU.
    assert set(single["peak_bytes"]) == {"ours", "matmul", "generic", "torch"}
    assert all(v is None for v in single["peak_bytes"].values())
    assert all(row["peak_bytes"] is None for row in data["sweep"])
    assert not list(tmp_path.glob(".bench-*"))  # the atomic write left no temporary file


def test_cpu_bench_with_torch(capsys):
    pytest.importorskip("torch")
    rc = bench.main(TINY + ["--n-samples", "500", "--no-sweep"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "torch eager" in out and "ours/torch" in out and "torch eager n/a" not in out


def test_torch_bench_races_ours_against_torch_eager_on_the_same_tensors(tmp_path, capsys,
                                                                       monkeypatch):
    """--device torch: our array-API step on torch tensors, the matmul-only step and
    PyTorch eager autograd, all on the tensors of one DeviceSplit; the host-sync count."""
    torch = pytest.importorskip("torch")
    seen = []
    real_runner = bench_runners.torch_runner

    def spying_runner(X, y, **kwargs):
        seen.append((X, y))
        return real_runner(X, y, **kwargs)

    monkeypatch.setattr(bench, "torch_runner", spying_runner)
    splits = []
    real_from_host = bench.DeviceSplit.from_host
    monkeypatch.setattr(bench.DeviceSplit, "from_host", classmethod(
        lambda cls, *a, **k: splits.append(real_from_host(*a, **k)) or splits[-1]))
    out_json = tmp_path / "bench.json"
    rc = bench.main(["--device", "torch", "--n-samples", "500", "--epochs", "1", "--repeats",
                     "1", "--sweep", "--models", "1,2", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("device torch |") and f"PyTorch {torch.__version__}" in out
    assert "ours/matmul" in out and "ours/torch" in out and "torch eager n/a" not in out
    assert "generic step" not in out  # torch trains with the generic step itself
    assert "host-sync check: PASS (0 device-to-host conversions in the steps)" in out
    data = json.loads(out_json.read_text())
    single = data["single"]
    assert data["device"] == "torch" and single["step"] == "backprop"
    for key in ("ours_s_per_epoch", "matmul_s_per_epoch", "torch_s_per_epoch",
                "ours_over_torch", "ours_over_matmul"):
        assert _positive(single[key]), key
    assert [row["models"] for row in data["sweep"]] == [1, 2]
    assert data["sync_check"]["passed"] and data["sync_check"]["method"] == "count"
    # PyTorch eager ran on the very tensors ours trained on (one upload, no copies).
    assert len(splits) == 1 and len(seen) == 1  # the race (peaks are measured on CUDA)
    assert all(X is splits[0].X and y is splits[0].y for X, y in seen)


@pytest.mark.parametrize("argv, fragment", [
    (["--device", "tpu"], "--device"),
    (["--epochs", "0"], "whole number of at least 1"),
    (["--models", "1,x"], "whole number of at least 1"),
    (["--n-samples", "50"], "--batch-size"),
    (["--check-syncs"], "needs --device cuda or a torch device"),
    (["--device", "torch:gpu"], "--device"),
])
def test_bad_flags_exit_2_with_one_line(argv, fragment, capsys):
    assert bench.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err and "Traceback" not in err


def test_missing_json_folder_is_a_user_error(tmp_path, capsys):
    rc = bench.main(TINY + ["--no-torch", "--json", str(tmp_path / "nope" / "b.json")])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


def test_cuda_without_cupy_is_one_sentence(capsys):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except Exception:
        pass
    rc = bench.main(["--device", "cuda", "--n-samples", "200", "--no-torch"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "CuPy" in err and "\n" not in err


@pytest.mark.parametrize("flag, missing", [("torch:cuda", "sees no CUDA GPU"),
                                           ("torch:mps", "sees no Apple MPS device")])
def test_torch_gpu_flag_without_the_device_is_one_sentence(flag, missing, monkeypatch,
                                                           capsys):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert bench.main(["--device", flag, "--n-samples", "200"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("bench: PyTorch ") and missing in err and "\n" not in err
    assert captured.out == ""


def _tiny_split(backend, n=300):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, bench_runners.D_IN), dtype=np.float32)
    y = rng.integers(0, bench_runners.N_CLASSES, n)
    return DeviceSplit.from_host(backend, X, y, bench_runners.N_CLASSES,
                                 backend.dtype("float32"))


def _leaky(backend):
    """``backend`` whose training step copies the loss to the host (a Python float)."""
    step = backend.data_gradients

    def leaky_step(net, X, Y, **kwargs):
        loss, grads = step(net, X, Y, **kwargs)
        float(net.xp.sum(loss))  # the deliberate device-to-host conversion
        return loss, grads

    return dataclasses.replace(backend, data_gradients=leaky_step)


@pytest.mark.parametrize("leak", [False, True], ids=["clean-step", "float-in-step"])
def test_sync_check_counts_host_conversions_inside_steps(leak):
    """On array_api_strict (a CPU stand-in for a device) the check counts conversions
    through the array type's public API, inside the real loop's steps only: the loop's
    own record points (before and after the steps) convert too, and must not count."""
    backend = get_backend("strict")
    split = _tiny_split(backend)
    net = bench_runners.make_net(_leaky(backend) if leak else backend, 1)
    array_type = type(split.X)
    originals = {name: vars(array_type).get(name) for name in ("__float__", "__array__", "item")}
    res = bench_syncs.check_host_syncs(net, split, steps=2)
    assert res["method"] == "count" and res["steps"] == 2 and res["loop_host_s"] >= 0
    if leak:
        assert not res["passed"]
        assert res["conversions"] == {"__float__": 2} and res["host_conversions"] == 2
        assert "FAIL (2 device-to-host conversions (2 __float__)" in bench_syncs.sync_line(res)
    else:
        assert res["passed"] and res["host_conversions"] == 0 and res["conversions"] == {}
    # The probes are undone.
    assert {name: vars(array_type).get(name) for name in originals} == originals


def test_sync_check_needs_a_device():
    backend = get_backend("cpu")
    net = bench_runners.make_net(backend, 1)
    with pytest.raises(bench_runners.BenchError, match="needs a device"):
        bench_syncs.check_host_syncs(net, _tiny_split(backend), steps=1)


def test_scaling_takes_turns_and_compares_the_best_walls(tiny_data, capsys):
    from experiments.bench.scaling import run_scaling

    result = run_scaling([1, 2], str(tiny_data), studies="overfit", quick=True, repeats=2)
    out = capsys.readouterr().out
    workers = [int(line.split()[1].rstrip(":")) for line in out.splitlines()
               if line.startswith("workers ")]
    assert workers == [1, 2, 1, 2]  # the counts take turns
    one, two = result["rows"]
    assert len(one["walls_s"]) == len(two["walls_s"]) == 2
    assert one["wall_s"] == min(one["walls_s"]) and two["wall_s"] == min(two["walls_s"])
    assert one["same_numbers"] and two["same_numbers"]
    assert two["ratio"] == pytest.approx(two["wall_s"] / one["wall_s"])
    assert f"scaling 2 vs 1 workers: {two['ratio']:.2f}x (best of 2 " in out


def test_wide_first_layer_prints_the_ratios(tmp_path, capsys):
    out_json = tmp_path / "wide.json"
    assert bench.main(["--device", "cpu", "--wide", "2,3", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "wide/broadcast" in out and "wide/stacked" in out
    rows = json.loads(out_json.read_text())["wide"]
    assert [row["k"] for row in rows] == [2, 3]
    for row in rows:
        assert _positive(row["wide_over_broadcast"]) and _positive(row["wide_over_stacked"])
        assert set(row["s_per_call"]) == {"wide", "broadcast", "stacked"}

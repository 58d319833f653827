"""Smoke test of the benchmark harness (experiments/bench.py) on tiny sizes on the CPU."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from experiments import bench
from xpnet.backend import get_backend
from xpnet.train import DeviceSplit

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
    assert "torch eager n/a" in out
    assert "vs one-after-another" in out
    assert "peak GPU memory: n/a" in out

    data = json.loads(out_json.read_text())
    assert data["device"] == "cpu"
    assert data["config"]["n_samples"] == 1000 and data["config"]["batch_size"] == 100
    single = data["single"]
    for key in ("ours_s_per_epoch", "matmul_s_per_epoch", "ours_over_matmul"):
        assert _positive(single[key]), key
    assert single["torch_s_per_epoch"] is None and single["ours_over_torch"] is None
    assert [row["models"] for row in data["sweep"]] == [1, 2]
    for row in data["sweep"]:
        for key in ("s_per_epoch", "model_epochs_per_s", "speedup_vs_sequential",
                    "matmul_s_per_epoch", "ours_over_matmul"):
            assert _positive(row[key]), key
    assert data["peak_gpu_bytes"] is None
    assert not list(tmp_path.glob(".bench-*"))  # the atomic write left no temporary file


def test_cpu_bench_with_torch(capsys):
    pytest.importorskip("torch")
    rc = bench.main(TINY + ["--n-samples", "500", "--no-sweep"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "torch eager" in out and "ours/torch" in out and "torch eager n/a" not in out


@pytest.mark.parametrize("argv, fragment", [
    (["--device", "tpu"], "--device"),
    (["--epochs", "0"], "positive integer"),
    (["--models", "1,x"], "positive integer"),
    (["--n-samples", "50"], "--batch-size"),
    (["--check-syncs"], "needs --device cuda"),
])
def test_bad_flags_exit_2_with_one_line(argv, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        bench.main(argv)
    assert info.value.code == 2
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


def test_sync_check_hooks_the_real_training_loop():
    """On the cpu the check can only count host copies, but it must find the loop."""
    backend = get_backend("cpu")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, bench.D_IN), dtype=np.float32)
    y = rng.integers(0, bench.N_CLASSES, 300)
    split = DeviceSplit.from_host(backend, X, y, bench.N_CLASSES, backend.dtype("float32"))
    net = bench.make_net(backend, 1)
    res = bench.check_host_syncs(net, split, backend, steps=2)
    assert res["passed"] and res["method"] == "count"
    assert res["to_numpy_calls"] == 0 and res["loop_host_s"] >= 0
    # The hooks are undone.
    from xpnet.backend import to_numpy
    assert bench.train_module.to_numpy is to_numpy
    assert bench.train_module.__name__ == "xpnet.train"

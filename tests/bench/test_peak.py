"""The --peak bench: the step's FLOP count, the GEMM peak, the shares and --compare (tiny)."""

from __future__ import annotations

import json
import math

import numpy as np

from experiments.bench import cli as bench
from experiments.bench import peak
from xpnet.backend.devices import get_backend
from xpnet.training import batch_orders


def test_step_flops_counts_forward_and_backward_without_the_input_gradient():
    # 3072-50-50-10 at batch 100: 30.72 + 0.5 + 0.1 MFLOP forward, as much for the weight
    # gradients, and the input gradients of layers 2 and 3 (0.5 + 0.1): 63.24 MFLOP.
    assert peak.step_flops((3072, 50, 50, 10), 100) == 63_240_000
    # One layer: no input gradient at all, forward and weight gradient 2 * n * a * b each.
    assert peak.step_flops((7, 3), 5) == 2 * (2 * 5 * 7 * 3)
    assert peak.step_flops((4, 3, 2), 5) == 2 * (120 + 60) + 60


def test_gemm_peak_is_a_rate():
    rate = peak.gemm_peak(get_backend("cpu"), n=64, repeats=2)
    assert math.isfinite(rate) and rate > 0


def test_shared_nets_have_one_batch_order_and_own_nets_one_each():
    backend = get_backend("cpu")
    shared = peak.make_peak_net(backend, 3, "shared")
    own = peak.make_peak_net(backend, 3, "own")
    assert batch_orders(shared.seeds, 50, 0).shape == (50,)
    assert batch_orders(own.seeds, 50, 0).shape == (3, 50)
    assert len(set(np.round(shared.lam_host, 12))) == 3  # a lambda sweep


def test_peak_bench_prints_shares_and_compares_files(tmp_path, capsys):
    out_json = tmp_path / "peak.json"
    rc = bench.main(["--device", "cpu", "--peak", "--n-samples", "700", "--models", "1,2",
                     "--repeats", "1", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "GEMM peak" in out and "shared batch" in out and "own batches" in out
    assert "LN+Adam/BN+SGD" in out
    data = json.loads(out_json.read_text())["peak"]
    assert data["step_flops_per_model"] == 63_240_000 and data["gemm_peak_flops"] > 0
    assert [row["models"] for row in data["rows"]] == [1, 2]
    for row in data["rows"]:
        for mode in peak.MODES:
            assert 0 < row["share"][mode] < math.inf
            assert row["s_per_step"][mode] > 0
        assert row["layer_adam_over_recipe"] > 0

    assert bench.main(["--compare", f"{out_json},{out_json}", str(out_json)]) == 0
    table = capsys.readouterr().out
    assert "best of 2 run(s) before and 1 after" in table
    assert table.count("1.00x") == 6  # (1, 2) x (shared, own, LN+Adam), the same file


def test_compare_with_a_wrong_file_is_one_sentence(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert bench.main(["--compare", str(bad), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "is not a file that --peak --json wrote" in err and err.count("\n") == 1

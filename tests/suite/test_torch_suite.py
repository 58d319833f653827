"""The study suite on PyTorch tensors (``--device torch``), and the GPU flags without a GPU."""

from __future__ import annotations

import json

import pytest

from experiments.run import main
from tests.conftest import QUICK_DEPTH_BN, assert_depth_bn_close, torch_or_skip

torch = torch_or_skip()


@pytest.mark.cifar
@pytest.mark.slow
def test_quick_depth_bn_on_torch_in_process_is_close_to_cpu(cifar_root, quick_depth_bn_cpu,
                                                            tmp_path):
    out = tmp_path / "out"
    assert main([*QUICK_DEPTH_BN, "--device", "torch", "--workers", "1", "--data-dir",
                 str(cifar_root), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["meta"]["device"].startswith("torch (")
    assert results["meta"]["versions"]["torch"] == torch.__version__
    assert_depth_bn_close(results, quick_depth_bn_cpu)


@pytest.mark.parametrize("flag, missing", [("torch:cuda", "sees no CUDA GPU"),
                                           ("torch:mps", "sees no Apple MPS device")])
def test_torch_gpu_flag_without_the_device_exits_2_in_one_sentence(
        flag, missing, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    out = tmp_path / "out"
    assert main(["--device", flag, "--quick", "--no-progress", "--data-dir",
                 str(tmp_path / "never-read"), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: PyTorch ") and missing in err and "--device torch" in err
    assert "\n" not in err and err.endswith(".") and ". " not in err
    assert not out.exists()  # nothing written before the device was vetted

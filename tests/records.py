"""One check that two run records hold the same numbers (up to float rounding)."""

from __future__ import annotations

import numpy as np


def assert_same_record(a: dict, b: dict, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Records ``a`` and ``b`` of one run: same steps, rates, divergence and stops, and
    metrics and per-model results equal to ``rtol``/``atol`` (NaN where the other is NaN)."""
    assert a["n_models"] == b["n_models"]
    for key in ("steps", "eta", "diverged_step", "stopped_step"):
        assert a["history"][key] == b["history"][key], key
    assert a["history"]["metrics"].keys() == b["history"]["metrics"].keys()
    for key, rows in b["history"]["metrics"].items():
        np.testing.assert_allclose(np.array(a["history"]["metrics"][key], dtype=float),
                                   np.array(rows, dtype=float), rtol=rtol, atol=atol,
                                   equal_nan=True, err_msg=key)
    for key in ("test_accuracy", "test_loss", "last_val_accuracy", "diverged_step"):
        np.testing.assert_allclose(np.array(a[key], dtype=float), np.array(b[key], dtype=float),
                                   rtol=rtol, atol=atol, equal_nan=True, err_msg=key)

"""Hyper-parameter search helpers: grids, picking the best, lockstep training."""

from __future__ import annotations

import numpy as np
import pytest

from xpnet import CyclicalLR, DeviceSplit, NetworkConfig, TrainConfig, get_backend
from xpnet.errors import XpnetError
from xpnet.search.sweep import (
    best_index,
    best_value,
    final_scores,
    fine_grid,
    grid_spacing,
    log_uniform_grid,
    search_scores,
    train_lockstep,
)


def test_log_uniform_grid_spans_the_exponents_evenly():
    grid = log_uniform_grid(-5, -1, 8)
    assert grid.shape == (8,)
    assert grid[0] == pytest.approx(1e-5) and grid[-1] == pytest.approx(1e-1)
    steps = np.diff(np.log10(grid))
    np.testing.assert_allclose(steps, 4 / 7)
    assert grid_spacing(grid) == pytest.approx(4 / 7)


def test_fine_grid_brackets_the_best_value_between_coarse_neighbours():
    coarse = log_uniform_grid(-5, -1, 8)
    best = coarse[4]
    fine = fine_grid(best, grid_spacing(coarse), 8)
    assert fine.shape == (8,)
    assert fine[0] == pytest.approx(coarse[3]) and fine[-1] == pytest.approx(coarse[5])
    assert fine.min() < best < fine.max()


def test_best_ignores_nan_and_diverged():
    values = [1e-4, 1e-3, 1e-2]
    assert best_index([0.4, np.nan, 0.3]) == 0
    assert best_value(values, [0.1, 0.5, np.inf * -1]) == 1e-3
    with pytest.raises(XpnetError):
        best_index([np.nan, -np.inf])
    with pytest.raises(XpnetError):
        fine_grid(0.0, 0.5)


def test_search_scores_exclude_diverged_models_from_stored_columns():
    # A stored record: last finite val accuracy (None -> NaN) and the divergence step.
    last = [0.5, 0.9, np.nan, 0.7]
    diverged = [-1.0, 120.0, 40.0, -1.0]
    scores = search_scores(last, diverged)
    np.testing.assert_array_equal(np.isnan(scores), [False, True, True, False])
    assert best_value([1e-4, 1e-3, 1e-2, 1e-1], scores) == 1e-1
    np.testing.assert_array_equal(search_scores([0.2, np.inf]), [0.2, np.nan])


def test_train_lockstep_trains_one_network_with_one_model_per_lambda():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 12)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    backend = get_backend("cpu")
    train = DeviceSplit.from_host(backend, X[:150], y[:150], 2, "float32")
    val = DeviceSplit.from_host(backend, X[150:], y[150:], 2, "float32")
    lams = log_uniform_grid(-4, 1, 4)
    config = NetworkConfig(d_in=12, hidden=(8,), n_classes=2, norm=None)
    net, history = train_lockstep(config, CyclicalLR(1e-3, 1e-1, n_s=45, cycles=2), train, val,
                                  TrainConfig(batch_size=10), seeds=0, lam=lams, backend=backend,
                                  progress=False)
    assert net.n_models == 4
    np.testing.assert_allclose(net.lam_host, lams)
    assert history.metrics["val_accuracy"].shape[1] == 4
    scores = final_scores(history)
    assert scores.shape == (4,)
    # Weak regularisation learns this separable problem; lambda = 10 cannot.
    assert scores[0] > 0.8
    assert scores[-1] < 0.7
    assert best_index(scores) < 3


def test_grid_values_do_not_move_with_the_numpy_release():
    """Python's power gives the decades exactly (NumPy 2.4's gives 9.999999999999999e-06
    for 10 ** -5); the grid's values are in the fingerprints of stored runs."""
    grid = log_uniform_grid(-5, -1, 5)
    assert grid.tolist() == [1e-05, 1e-04, 1e-03, 1e-02, 1e-01]

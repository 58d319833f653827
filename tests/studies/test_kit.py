"""The study kit's Grid: model order, columns and per-model values."""

from __future__ import annotations

import pytest

from experiments.studies.kit import Grid


def test_the_first_setting_varies_slowest_and_the_seed_fastest():
    grid = Grid([0, 1], sigma=(0.1, 0.001), eps=(1e-3, 1e-5, 1e-8))
    assert grid.n_models == 12
    assert grid.values("seeds") == (0, 1) * 6
    assert grid.values("sigma") == (0.1,) * 6 + (0.001,) * 6
    assert grid.values("eps")[:6] == (1e-3, 1e-3, 1e-5, 1e-5, 1e-8, 1e-8)
    # model (i * 3 + j) * 2 + s has sigma[i], eps[j], seed s
    assert grid.columns(sigma=0.001, eps=1e-5) == [(1 * 3 + 1) * 2, (1 * 3 + 1) * 2 + 1]
    assert grid.columns(eps=1e-8) == [4, 5, 10, 11]
    assert grid.columns() == list(range(12))


def test_per_model_lists_hold_every_setting_and_the_seeds():
    grid = Grid(range(3), eta=(0.0005, 0.03))
    assert grid.per_model() == {"eta": [0.0005] * 3 + [0.03] * 3, "seeds": [0, 1, 2] * 2}


def test_an_unknown_setting_is_named():
    with pytest.raises(KeyError, match="no setting 'lam'; it has sigma"):
        Grid([0], sigma=(1.0,)).columns(lam=0.1)


def test_a_grid_of_seeds_alone_is_the_seeds():
    grid = Grid([3, 4])
    assert grid.n_models == 2 and grid.columns() == [0, 1] and grid.per_model() == {
        "seeds": [3, 4]}

"""The study kit: what a study (built-in, or a file of your own) builds on.

A study is a module with ``NAME``, ``DESCRIPTION`` and ``run(ctx) -> dict``.  ``ctx`` is
an :class:`experiments.suite.context.Context`; what a study calls on it:

- ``ctx.seeds``, ``ctx.quick``, ``ctx.data`` (the host data set), ``ctx.cyclical(cycles)``
  (the reports' schedule), ``ctx.train_config(**changes)`` (batch 100, ...);
- ``ctx.submit_train(key, grid, hidden=..., ...)``: one lockstep training run of the
  models of a :class:`Grid` (any other argument of ``ctx.train_spec``: ``batch_norm``,
  ``init``, ``lam``, ``schedule``, ``train``, ``n_train``, ``halving``: an
  :class:`xpnet.Halving` that drops the losing models at its rungs), returns a handle;
- ``ctx.submit(key, spec, fn)``: any other run, ``fn(env, spec, callbacks) -> dict`` a
  top-level function (it may run on another machine; ``env.split("train")`` is the
  data on the device, ``env.data`` on the host);
- ``handle.result()``: the run's record (submit every independent run first, then ask:
  they run concurrently); a stored record with the same spec is reused, not rerun;
- ``ctx.figure_path(name)``: where to save a figure, and its link for the report.

``run`` returns ``{"summary": str, "headline": [[setting, ours, reports], ...],
"tables": [{"title", "columns", "rows", "note"?}], "figures": [links], "notes": [str],
"differences": [{"setting", "ours", "reports", "cause"}]}`` (all but ``summary``
optional).  The helpers below read records: :func:`column`, :func:`test_cell`,
:func:`mean_test`, :func:`seeds_split`, :func:`metric`.
"""

from __future__ import annotations

import itertools

import numpy as np

from experiments.report.markdown import accuracy_cell, mean_or_nan, split_outcome
from experiments.suite.context import BATCH  # noqa: F401  (re-exported for studies)
from xpnet.codec import to_float_array

#: The reports' architectures.
ARCHS = {
    "2-layer": (50,),
    "3-layer": (50, 50),
    "4-layer": (50, 30, 20),
    "9-layer": (50, 30, 20, 20, 10, 10, 10, 10),
}
#: The reports' L2 factor.
LAMBDA = 0.005
#: Claims one study tests for another, the key of its ``evidence`` (see the report's
#: ``tested_by``): that eps, not batch norm as such, stalls a deep BN net from tiny
#: weights (tested by bn_eps for init_sensitivity).
EPS_CLAIM = "eps-stalls-tiny-init"


class Grid:
    """The models of one lockstep run: every combination of per-model settings, per seed.

    ``Grid(seeds, sigma=(1e-1, 1e-3), eps=(1e-3, 1e-5))`` is 2 x 2 x len(seeds) models;
    the first setting varies slowest and the seed fastest, so model
    ``(i * 2 + j) * len(seeds) + s`` has ``sigma[i]``, ``eps[j]`` and seed ``seeds[s]``.
    Settings named ``lam``, ``sigma``, ``eps`` or ``momentum`` reach the network and
    optimiser directly through ``ctx.submit_train``; any other (a learning rate, a
    label) is for the study to use, say in a per-model schedule via :meth:`values`.
    """

    def __init__(self, seeds, **settings):
        self.seeds = tuple(seeds)
        self.settings = {name: tuple(values) for name, values in settings.items()}
        combos = itertools.product(*self.settings.values(), self.seeds)
        self._models = [dict(zip([*self.settings, "seeds"], combo, strict=True))
                        for combo in combos]

    @property
    def n_models(self) -> int:
        return len(self._models)

    def values(self, name: str) -> tuple:
        """Setting ``name`` (or ``"seeds"``) of every model, in model order: ``(M,)``."""
        return tuple(model[name] for model in self._models)

    def per_model(self) -> dict:
        """Every setting and the seeds as per-model lists: ``{name: [M values]}``."""
        return {name: list(self.values(name)) for name in [*self.settings, "seeds"]}

    def columns(self, **where) -> list[int]:
        """The models whose settings equal ``where`` (all seeds of them), in order."""
        unknown = set(where) - set(self.settings)
        if unknown:
            raise KeyError(f"The grid has no setting {sorted(unknown)[0]!r}; it has "
                           f"{', '.join(self.settings) or 'only seeds'}.")
        return [m for m, model in enumerate(self._models)
                if all(model[k] == v for k, v in where.items())]


# ------------------------------------------------------------ record helpers
def column(record: dict, field: str, columns=None) -> np.ndarray:
    """A per-model field of a run record as floats ``(M,)`` or its ``columns``."""
    values = to_float_array(record[field])
    return values if columns is None else values[list(columns)]


def test_cell(record: dict, columns=None) -> str:
    """Test accuracy over the chosen models, naming divergence (see ``accuracy_cell``)."""
    return accuracy_cell(column(record, "test_accuracy", columns),
                         column(record, "diverged_step", columns),
                         column(record, "last_val_accuracy", columns))


def seeds_split(record: dict, columns=None) -> bool:
    """Whether the chosen models' test accuracies split (see ``report.split_outcome``)."""
    return split_outcome(column(record, "test_accuracy", columns)) is not None


def mean_test(record: dict, columns=None) -> float:
    """Mean test accuracy of the chosen models (NaN when all diverged)."""
    return mean_or_nan(column(record, "test_accuracy", columns))


def metric(record: dict, key: str) -> np.ndarray:
    """A history metric ``(n_points, M)`` with NaN for missing values."""
    return to_float_array(record["history"]["metrics"][key])

"""The study kit: what a study (built-in, or a file of your own) builds on.

A study is a module with ``NAME``, ``DESCRIPTION`` and ``run(ctx) -> dict``.  ``ctx`` is
an :class:`experiments.suite.context.Context`; what a study calls on it:

- ``ctx.seeds``, ``ctx.quick``, ``ctx.data`` (the host data set), ``ctx.cyclical(cycles)``
  (the reports' schedule), ``ctx.train_config(**changes)`` (batch 100, ...);
- ``ctx.submit_train(key, grid, hidden=..., ...)``: one lockstep training run of the
  models of a :class:`Grid` (any other argument of ``ctx.train_spec``: every field of
  ``xpnet.NetworkConfig`` such as ``norm``, ``init`` or ``dropout``; ``lam``,
  ``schedule``, ``train``, ``optimizer=Adam(...)``, ``n_train``, ``halving``: an
  :class:`xpnet.Halving` that drops the losing models at its rungs), returns a handle;
- ``ctx.submit(key, spec, fn)``: any other run, ``fn(env, spec, callbacks) -> dict`` a
  top-level function (it may run on another machine; ``env.split("train")`` is the
  data on the device, ``env.data`` on the host);
- ``handle.result()``: the run's record (submit every independent run first, then ask:
  they run concurrently); a stored record with the same spec is reused, not rerun;
- ``ctx.plan(key, after=..., **settings)``: a run the study will submit once run ``after``
  is in (a chain's next link), declared before that one is submitted, with stand-in
  values: it counts in the suite's estimate from the start and puts its chain first;
- ``ctx.figure_path_and_link(name)`` (also ``ctx.figure_path``): ``(path, link)``, where to
  save a figure and its link for the report.

Every name above has its arguments, return value and a runnable example in its own
docstring (``tests/test_docstrings.py`` runs them); a study's calls can be tried in a
notebook on tiny data with :func:`experiments.suite.sandbox.sandbox`.

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
from xpnet.base.codec import to_float_array

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
    Settings named ``lam``, ``sigma``, ``momentum`` or like a per-model field of
    ``xpnet.NetworkConfig`` (``bn_eps``, also spelt ``eps``; ``dropout``...) reach the
    network and optimiser directly through ``ctx.submit_train``; any other (a learning
    rate, a label) is for the study to use, say in a per-model schedule via :meth:`values`.

    Args:
        seeds: the seeds of every setting (an iterable of ints), e.g. ``ctx.seeds``.
        **settings: per-model settings, each a sequence of values; every combination
            of them is a setting, trained once per seed.

    >>> grid = Grid([0, 1], lam=(0.0, 1e-2))
    >>> grid.n_models, grid.values("lam"), grid.values("seeds")
    (4, (0.0, 0.0, 0.01, 0.01), (0, 1, 0, 1))
    """

    def __init__(self, seeds, **settings):
        self.seeds = tuple(seeds)
        self.settings = {name: tuple(values) for name, values in settings.items()}
        combos = itertools.product(*self.settings.values(), self.seeds)
        self._models = [dict(zip([*self.settings, "seeds"], combo, strict=True))
                        for combo in combos]

    @property
    def n_models(self) -> int:
        """M, the number of models: the product of the settings' lengths and the seeds'.

        >>> Grid(range(3), sigma=(0.1, 0.001)).n_models
        6
        """
        return len(self._models)

    def values(self, name: str) -> tuple:
        """Setting ``name`` (or ``"seeds"``) of every model, in model order.

        Args:
            name: a setting of the grid, or ``"seeds"``.

        Returns:
            A tuple of M values, model ``m``'s at index ``m``.

        >>> Grid([0, 1], eta=(0.01, 0.1)).values("eta")
        (0.01, 0.01, 0.1, 0.1)
        """
        return tuple(model[name] for model in self._models)

    def per_model(self) -> dict:
        """Every setting and the seeds as per-model lists (what a run's spec stores).

        Returns:
            ``{name: [M values]}`` for each setting, then ``"seeds"``.

        >>> Grid([0, 1], lam=(0.0, 0.1)).per_model()
        {'lam': [0.0, 0.0, 0.1, 0.1], 'seeds': [0, 1, 0, 1]}
        """
        return {name: list(self.values(name)) for name in [*self.settings, "seeds"]}

    def columns(self, **where) -> list[int]:
        """The models whose settings equal ``where`` (all seeds of them), in order.

        Args:
            **where: setting names and the values to pick; none picks every model.

        Returns:
            The model indices, a list of ints (index a record's per-model values with it).

        Raises:
            KeyError: ``where`` names a setting the grid does not have.

        >>> grid = Grid([0, 1], sigma=(0.1, 0.001), eps=(1e-3, 1e-5))
        >>> grid.columns(sigma=0.001), grid.columns(sigma=0.1, eps=1e-5)
        ([4, 5, 6, 7], [2, 3])
        """
        unknown = set(where) - set(self.settings)
        if unknown:
            raise KeyError(f"The grid has no setting {sorted(unknown)[0]!r}; it has "
                           f"{', '.join(self.settings) or 'only seeds'}.")
        return [m for m, model in enumerate(self._models)
                if all(model[k] == v for k, v in where.items())]


# ------------------------------------------------------------ record helpers
# The examples read ``RECORD``-like dicts: a training run's record, as ``handle.result()``
# returns it (``None`` for a diverged model's value, as results.json stores it).
def column(record: dict, field: str, columns=None) -> np.ndarray:
    """A per-model field of a run record as floats, ``None`` (a diverged model) as NaN.

    Args:
        record: a training run's record (``handle.result()``).
        field: a per-model field: ``test_accuracy``, ``test_loss``, ``diverged_step``,
            ``last_val_accuracy``, or one a study's run function adds.
        columns: model indices (``grid.columns(...)``); default every model.

    Returns:
        float64 array ``(M,)``, or ``(len(columns),)``.

    >>> record = {"test_accuracy": [0.52, None, 0.50]}
    >>> column(record, "test_accuracy"), column(record, "test_accuracy", [0, 2])
    (array([0.52,  nan, 0.5 ]), array([0.52, 0.5 ]))
    """
    values = to_float_array(record[field])
    return values if columns is None else values[list(columns)]


def test_cell(record: dict, columns=None) -> str:
    """Test accuracy over the chosen models as a table cell, naming divergence.

    Args:
        record: a training run's record (``test_accuracy``, ``diverged_step`` and
            ``last_val_accuracy`` are read).
        columns: model indices; default every model.

    Returns:
        ``"mean ± std %"`` over the models (see ``report.markdown.accuracy_cell``), with
        ``"(k/M diverged at step N)"`` where some diverged, or the seeds one by one
        where they split (some train, some stay at chance).

    >>> record = {"test_accuracy": [0.52, 0.5, None], "diverged_step": [-1, -1, 40],
    ...           "last_val_accuracy": [0.53, 0.51, 0.1]}
    >>> test_cell(record, [0, 1])
    '51.0 ± 1.0 %'
    >>> test_cell(record)
    '51.0 ± 1.0 % (1/3 diverged at step 40)'
    """
    return accuracy_cell(column(record, "test_accuracy", columns),
                         column(record, "diverged_step", columns),
                         column(record, "last_val_accuracy", columns))


def seeds_split(record: dict, columns=None) -> bool:
    """Whether the chosen models' test accuracies split: some stay at chance, some train.

    Args:
        record: a training run's record (``test_accuracy`` is read).
        columns: model indices; default every model.

    Returns:
        True when they split (see ``report.markdown.split_outcome``), else False.

    >>> seeds_split({"test_accuracy": [0.1, 0.45, 0.47]})
    True
    >>> seeds_split({"test_accuracy": [0.44, 0.45, 0.47]})
    False
    """
    return split_outcome(column(record, "test_accuracy", columns)) is not None


def mean_test(record: dict, columns=None) -> float:
    """Mean test accuracy of the chosen models that did not diverge.

    Args:
        record: a training run's record (``test_accuracy`` is read).
        columns: model indices; default every model.

    Returns:
        A float in [0, 1]; NaN when every chosen model diverged.

    >>> round(mean_test({"test_accuracy": [0.5, None, 0.4]}), 3)
    0.45
    """
    return mean_or_nan(column(record, "test_accuracy", columns))


def metric(record: dict, key: str) -> np.ndarray:
    """A history metric of a training run at its record points, NaN for missing values.

    Args:
        record: a training run's record; ``record["history"]["steps"]`` are the points'
            update steps.
        key: ``train_loss``, ``train_cost``, ``train_accuracy``, ``val_loss``,
            ``val_cost`` or ``val_accuracy``.

    Returns:
        float64 array ``(n_points, M)``.

    >>> record = {"history": {"steps": [0, 50], "metrics": {
    ...     "val_loss": [[2.3, 2.3], [1.5, None]]}}}
    >>> metric(record, "val_loss")
    array([[2.3, 2.3],
           [1.5, nan]])
    """
    return to_float_array(record["history"]["metrics"][key])

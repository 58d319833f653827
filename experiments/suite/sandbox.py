"""A study's ``ctx`` outside the suite: try a study's calls in a notebook, a test or a doc
example, in this process, on tiny generated data (or your own)."""

from __future__ import annotations

from pathlib import Path

from experiments.suite import tasks
from experiments.suite.context import Context, Settings
from experiments.suite.dispatch import Immediate
from experiments.suite.executor import InProcess
from experiments.suite.progress import Reporter
from experiments.suite.store import ResultStore

#: Images per batch file of the generated data: 1,000 training images (500 of them
#: held out for validation, as ``--quick`` does) and 200 test images.
SANDBOX_BATCH = 200


def sandbox(out_dir, *, study: str = "my_study", seeds: int = 2, data_dir=None,
            quick: bool = True) -> Context:
    """A :class:`~experiments.suite.context.Context` whose runs train at once, here.

    Args:
        out_dir: the output folder: its ``results.json`` gets every finished run (and a
            run stored there with the same spec is reused), figures go to its
            ``figures/``.
        study: the study's name (its runs' entry in ``results.json``).
        seeds: ``ctx.seeds`` is ``[0, ..., seeds - 1]``.
        data_dir: a folder holding ``cifar-10-batches-py``; default: a tiny learnable
            look-alike written to ``out_dir/data``
            (:func:`xpnet.data.synthetic.write_cifar_batches`).
        quick: the ``--quick`` data slice and schedules.

    Returns:
        The context; ``ctx.submit_train(...)`` trains before it returns its handle.

    >>> import tempfile
    >>> ctx = sandbox(tempfile.mkdtemp(), study="demo")
    >>> ctx.seeds, ctx.quick, ctx.data.X_train.shape
    ([0, 1], True, (500, 3072))
    """
    out_dir = Path(out_dir)
    if data_dir is None:
        from xpnet.data.synthetic import write_cifar_batches

        data_dir = out_dir / "data"
        if not (data_dir / "cifar-10-batches-py").is_dir():
            write_cifar_batches(data_dir, n_per_batch=SANDBOX_BATCH, seed=0)
    data_dir = str(Path(data_dir).absolute())
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    settings = Settings(quick=quick, seeds=seeds, data_dir=data_dir, progress=False)
    data = tasks.DataSettings(data_dir, quick=quick)
    reporter = Reporter(enabled=False)
    return Context(settings, ResultStore(out_dir), out_dir,
                   Immediate(InProcess(), reporter, data), study, data, reporter)

"""The built-in studies, one module each, in the order they run and are reported, and
studies of your own from a file (``--study FILE``).

A study is a module with ``NAME``, ``DESCRIPTION`` and ``run(ctx) -> dict`` (and
``CHAINED = True`` when its later runs wait on its earlier ones: declare those later links
up front with ``ctx.plan(key, after=..., ...)``, so that the suite's estimate counts them
and the chain starts early); :mod:`experiments.studies.kit` is what the built-in ones and
yours build on.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

from experiments.suite.args import UsageError

#: Study modules in the order they run (and appear in the report).
STUDY_NAMES = ("gradcheck", "overfit", "depth_bn", "lambda_search", "lambda_halving", "pbt",
               "init_sensitivity", "lr_bn", "lr_range", "bn_eps", "activations",
               "norm_opt")


def load_study(name: str):
    """The built-in study module ``experiments.studies.<name>``."""
    return importlib.import_module(f"experiments.studies.{name}")


def load_study_file(path: str | Path, taken=()):
    """The study in the Python file ``path``, imported as a module of its own.

    Its ``NAME`` defaults to the file's stem and ``DESCRIPTION`` to its docstring's first
    line; ``taken`` holds names already in use.  Functions defined in the file are
    pickled by value, so Dask workers that cannot import the file still run them.
    Raises :class:`UsageError` (one sentence) for a file that is missing, does not
    import, has no ``run(ctx)``, or reuses a study's name.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"The study file {path} does not exist; pass --study the path of a "
                         "Python file that defines run(ctx).")
    module_name = "xpnet_study_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"The study file {path} is not a Python file; pass --study a .py "
                         "file that defines run(ctx).")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UsageError(f"The study file {path} failed to import ({type(exc).__name__}: "
                         f"{first[:200]}); fix it and run again.") from None
    if not callable(getattr(module, "run", None)):
        raise UsageError(f"The study file {path} defines no run(ctx) function; add one "
                         "(see README, 'Write a study').")
    module.NAME = str(getattr(module, "NAME", path.stem))
    doc = (module.__doc__ or "").strip().splitlines()
    module.DESCRIPTION = str(getattr(module, "DESCRIPTION", doc[0] if doc else module.NAME))
    if module.NAME in STUDY_NAMES or module.NAME in taken:
        raise UsageError(f"The study file {path} is named {module.NAME!r}, which another "
                         "study already uses; set NAME in the file to a new name.")
    _pickle_by_value(module)
    return module


def _pickle_by_value(module) -> None:
    """Let Dask ship the file's functions to workers that cannot import it."""
    try:
        import cloudpickle
    except ImportError:  # no Dask installed: runs stay in this process
        return
    cloudpickle.register_pickle_by_value(module)

"""The built-in studies, one module each, in the order they run and are reported.

Each module has ``NAME``, ``DESCRIPTION`` and ``run(ctx) -> dict`` (and ``CHAINED = True``
when its later runs wait on its earlier ones); :mod:`experiments.studies.kit` is what
they, and a study of your own, build on.
"""

from __future__ import annotations

import importlib

#: Study modules in the order they run (and appear in the report).
STUDY_NAMES = ("gradcheck", "overfit", "depth_bn", "lambda_search", "init_sensitivity",
               "lr_bn", "lr_range", "bn_eps", "activations")


def load_study(name: str):
    """The built-in study module ``experiments.studies.<name>``."""
    return importlib.import_module(f"experiments.studies.{name}")

"""Sphinx configuration of xpnet's manual (MyST Markdown pages, an API reference from the
docstrings).  Built in CI by ``.ci/run`` as ``sphinx-build -W --keep-going -n docs build/docs``;
the code examples on the pages run in ``tests/test_docs.py``, not here.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "docs" / "_ext")]  # no install needed

import xpnet  # noqa: E402

project = "xpnet"
author = "the xpnet authors"
copyright = "the xpnet authors"
release = version = xpnet.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "namespaces",  # after napoleon: see docs/_ext/namespaces.py
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "build"]
templates_path = ["_templates"]
root_doc = "index"

# MyST: headings get anchors (README-style links such as [x](library.md#shapes)),
# ``$...$`` maths, ::: fences for directives.
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# The reference: each object documented once, in the module that defines it
# (autosummary's recursive walk over xpnet and experiments); the short API's names
# (xpnet.__all__) are listed on xpnet's own page, linked to those homes.
autosummary_generate = True
autosummary_ignore_module_all = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # a dataclass's Attributes: section, not a second entry per field


def _short_api() -> list[str]:
    """``module.qualname`` of every class and function in ``xpnet.__all__``, where it lives."""
    homes = []
    for name in xpnet.__all__:
        obj = getattr(xpnet, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            homes.append(f"{obj.__module__}.{obj.__qualname__}")
    return homes


autosummary_context = {"short_api": _short_api()}

# Nitpicky (-n): every cross-reference resolves.  Without network in CI there is no
# intersphinx, so names from other libraries (NumPy, Dask, ...) stay plain text.
EXTERNAL = ("numpy", "np", "pathlib", "collections", "typing", "os", "concurrent", "dask",
            "distributed", "matplotlib", "torch", "cupy", "array_api_strict", "sklearn",
            "pandas", "pd", "argparse", "threading", "subprocess", "tqdm", "types", "io",
            "datetime", "enum", "dataclasses", "contextlib", "signal", "tarfile", "logging", "abc",
            "cloudpickle", "hashlib", "fcntl", "socket", "multiprocessing")
nitpick_ignore_regex = [(r"py:.*", rf"({'|'.join(EXTERNAL)})(\..*)?")]
# JSON's type name, read as a Python class by some docstring whose place Sphinx does not
# report ("<unknown>"): not a name of ours.
nitpick_ignore = [("py:class", "string")]

html_theme = "pydata_sphinx_theme"
html_title = "xpnet"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
# The left column only where it has something to list: the reference's pages.  The guides
# are one level deep, so there it would be an empty "Section Navigation" heading.
html_sidebars = {"*": [], "api/**": ["sidebar-nav-bs"]}
html_show_sourcelink = False

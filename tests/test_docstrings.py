"""The study API, documented to the last argument: every name the manual's "Writing a
study" page (and README's "Write a study") offers has a docstring with an example, every
example runs, and the page's table of plotting functions has their real signatures.

The names: the study kit's (``Grid`` and the record helpers), every public attribute of
a study's ``ctx`` and of the handles it returns, every function and class
``xpnet.plots`` exports, and the sandbox and results loaders the docs point to.  A new
public name there without an example fails here.
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import inspect
import re
import tempfile
from pathlib import Path

import pytest

import xpnet.plots
from experiments.suite.context import Context
from experiments.suite.view import StudyView

REPO = Path(__file__).resolve().parents[1]


def public(cls) -> list[str]:
    return [f"{cls.__name__}.{name}" for name in vars(cls) if not name.startswith("_")]


def plots_api() -> dict[str, list[str]]:
    by_module: dict[str, list[str]] = {}
    for name in xpnet.plots.__all__:
        obj = getattr(xpnet.plots, name)
        if callable(obj):
            by_module.setdefault(obj.__module__, []).append(name)
    return by_module


#: module -> the qualified names in it that must carry a runnable example.
API = {
    "experiments.studies.kit": ["Grid", "Grid.n_models", "Grid.values", "Grid.per_model",
                                "Grid.columns", "column", "test_cell", "seeds_split",
                                "mean_test", "metric"],
    "experiments.suite.context": public(Context),
    "experiments.suite.view": public(StudyView),
    "experiments.suite.handle": ["RunHandle.result", "RunHandle.done", "RunHandle.wait"],
    "experiments.suite.sandbox": ["sandbox"],
    "experiments.results": ["load", "read_results", "flatten"],
    **plots_api(),
}
NAMES = [(module, name) for module, names in API.items() for name in names]


def lookup(module, qualname: str):
    obj = module
    for part in qualname.split("."):
        obj = vars(obj)[part] if isinstance(obj, type) else getattr(obj, part)
    return obj


def doc_of(obj) -> str:
    return inspect.getdoc(obj.fget if isinstance(obj, property) else obj) or ""


@pytest.mark.parametrize(("module_name", "qualname"), NAMES,
                         ids=[f"{m.rsplit('.', 1)[-1]}.{n}" for m, n in NAMES])
def test_the_docstring_has_arguments_a_return_value_and_an_example_that_runs(
        module_name, qualname, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # examples' folders go here
    module = importlib.import_module(module_name)
    obj = lookup(module, qualname)
    doc = doc_of(obj)
    assert ">>>" in doc, f"{qualname} has no example"
    target = obj.fget if isinstance(obj, property) else obj
    takes = [p for p in inspect.signature(target).parameters if p not in ("self", "cls")]
    if takes and not isinstance(obj, property):
        assert "Args:" in doc, f"{qualname} does not list its arguments"
    if not isinstance(obj, (type, property)):
        assert "Return" in doc, f"{qualname} does not say what it returns"
    finder = doctest.DocTestFinder(recurse=False)
    tests = [t for t in finder.find(target, f"{module_name}.{qualname}", module=module,
                                    globs=vars(module).copy()) if t.examples]
    assert tests, f"{qualname}'s example was not found"
    runner = doctest.DocTestRunner()
    for test in tests:
        runner.run(test, out=lambda text: pytest.fail(f"{qualname}'s example:\n{text}"))
    assert runner.failures == 0 and runner.tries > 0


def write_a_study_page() -> str:
    """docs/writing-a-study.md, where writing a study is explained in full."""
    return (REPO / "docs" / "writing-a-study.md").read_text(encoding="utf-8")


def write_a_study_section() -> str:
    """README's short "Write a study" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text.split("## Write a study", 1)[1].split("\n## ", 1)[0]


def test_every_ctx_name_the_docs_offer_is_in_the_checked_api():
    offered = set(re.findall(r"\bctx\.(\w+)", write_a_study_page() + write_a_study_section()))
    assert {"submit_train", "figure_path_and_link", "seeds"} <= offered
    checked = {name.split(".", 1)[1] for name in
               (*API["experiments.suite.context"], *API["experiments.suite.view"])}
    assert offered <= checked, offered - checked


def plain_signature(obj) -> str:
    """``name(a, b=1, *, c='')``: the signature without annotations, as README writes it."""
    factories = ({f.name: f.default_factory() for f in dataclasses.fields(obj)
                  if f.default_factory is not dataclasses.MISSING}
                 if dataclasses.is_dataclass(obj) else {})
    parts, star = [], False
    for p in inspect.signature(obj).parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        if p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
        elif p.name in factories:
            parts.append(f"{p.name}={factories[p.name]!r}")
        else:
            parts.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return f"{obj.__name__}({', '.join(parts)})"


def test_the_docs_list_the_plotting_functions_with_their_real_signatures():
    figures = write_a_study_page().split("\n## Figures\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)(\(.*?\))` \|", figures, flags=re.M)
    assert len(rows) >= 10
    for name, signature in rows:
        assert plain_signature(getattr(xpnet.plots, name)) == name + signature
    for name in ("plot_panels", "plot_xy", "plot_bars", "plot_dot_rows", "plot_heatmaps"):
        assert name in dict(rows), f"docs/writing-a-study.md's table has no row for {name}"

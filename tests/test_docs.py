"""The manual (``docs/``): every Python example on its pages runs as written, every
built-in study has its section, and every name of ``xpnet.__all__`` is in the API
reference.

A page's ```` ```python ```` blocks run in order in one namespace, as a reader would paste
them into one session, from a working folder whose ``../shared/data`` holds a tiny
CIFAR-10 look-alike made by :mod:`xpnet.data.synthetic` (so the pages' own relative path
is used, nothing is substituted), and whose ``runs/quick`` holds a sandbox run (what
``--quick --out runs/quick`` would have left, for the results page).  The tiny set has
5,100 training images, so ``load_cifar10``'s default 5,000 validation images leave 100
for training: one step an epoch at batch 100, and the pages' ``n_s_epochs=5`` schedules
are 20 steps here.  A block written ```` ```{code-block} python ```` with a caption
``NAME.py`` is a study file: it is loaded as ``--study`` loads it and its ``run(ctx)``
runs on a :func:`~experiments.suite.sandbox.sandbox` context.  The Sphinx build itself
(``sphinx-build -W -n``) runs in ``.ci/run``.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

import xpnet
from experiments.studies import STUDY_NAMES, load_study_file
from experiments.studies.kit import Grid
from experiments.suite.sandbox import sandbox
from xpnet.data.synthetic import write_cifar_batches

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(p.stem for p in DOCS.glob("*.md"))
FENCE = re.compile(r"^( *)```(python|\{code-block\} python)\n(.*?)^\1```", re.M | re.S)
#: Python blocks shown but not run, by a phrase they contain, and why.
NOT_RUN = {"SLURMCluster": "it needs dask-jobqueue and a Slurm cluster to submit jobs to"}


def page_blocks(page: str) -> list[tuple[str | None, str]]:
    """``(caption, code)`` of each Python block of ``docs/<page>.md``, in order; the caption
    (a study file's name) only for ``{code-block}`` blocks."""
    out = []
    for indent, kind, body in FENCE.findall((DOCS / f"{page}.md").read_text(encoding="utf-8")):
        body = textwrap.dedent(body) if indent else body  # a block inside a list item
        caption = None
        if kind != "python":
            options = re.match(r"((?::\w[\w-]*:.*\n)*)\n?", body)
            caption = (re.findall(r"^:caption: (.+)$", options.group(1), re.M) or [None])[0]
            body = body[options.end():]
        out.append((caption, body))
    return out


def runnable(page: str) -> list[str]:
    return [code for caption, code in page_blocks(page)
            if caption is None and not any(phrase in code for phrase in NOT_RUN)]


def study_files() -> list[tuple[str, str, str]]:
    return [(page, caption, code) for page in PAGES for caption, code in page_blocks(page)
            if caption is not None]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A working folder with ``../shared/data`` (tiny) and a finished ``runs/quick``."""
    root = tmp_path_factory.mktemp("docs")
    write_cifar_batches(root / "shared" / "data", n_per_batch=1020, seed=3)
    work = root / "work"
    ctx = sandbox(work / "runs" / "quick", study="my_lambdas")
    ctx.submit_train("2-layer", Grid(ctx.seeds, lam=(0.0, 1e-2)), hidden=(8,),
                     schedule=ctx.cyclical(1)).result()
    return work


def check_getting_started(ns, printed, workdir):
    assert np.array(printed[0].strip("[]").split(), dtype=float).shape == (3,)


def check_library(ns, printed, workdir):
    scores = np.array(printed[0].strip("[]").split(), dtype=float)  # the five lines' print
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    assert np.asarray(ns["labels"]).shape == (3, 1020)
    assert np.asarray(ns["probs"]).shape == (3, 1020, 10)
    assert (workdir / "three-lambdas.npz").is_file()


def check_model_options(ns, printed, workdir):
    assert np.asarray(ns["drop"].score_all(*ns["data"].test)).shape == (3,)
    assert ns["soft"].network_.config.activation == "softplus"


def check_scikit_learn(ns, printed, workdir):
    folds = np.array(printed[0].strip("[]").split(), dtype=float)
    assert folds.shape == (3,) and folds.min() > 0.9
    search, best = ns["search"], ns["best"]
    assert search.best_params_["classifier__lam"] != 3.0 and best.best_params_["lam"] != 3.0
    assert best.cv_results_["mean_test_score"].shape == (3,) and best.best_score_ > 0.9


def check_halving(ns, printed, workdir):
    clf, history = ns["clf"], ns["history"]
    assert clf.n_models == 1 and history.metrics["val_accuracy"].shape[1] == 27
    assert np.sum(history.dropped_step >= 0) == 26 and len(printed) >= 2


def check_pbt(ns, printed, workdir):
    history, clf = ns["history"], ns["clf"]
    assert clf.n_models == 8 and history.pbt_steps and len(printed) == 3
    assert history.lineage(ns["best"])["ancestry"][-1][1] == ns["best"]


def check_writing_a_study(ns, printed, workdir):
    assert ns["column"](ns["record"], "test_accuracy").shape == (4,)
    assert ns["metric"](ns["record"], "val_accuracy").shape[1] == 4


def check_results(ns, printed, workdir):
    assert set(ns["models"]["lam"]) == {0.0, 1e-2} and len(ns["curves"]) > 0


#: What each page's examples must have made, beyond running.
CHECKS = {name.removeprefix("check_").replace("_", "-"): fn
          for name, fn in dict(globals()).items() if name.startswith("check_")}
NEEDS = {"scikit-learn": "sklearn", "results": "pandas"}


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)])
def test_the_python_examples_on_the_page_run_as_written(page, workdir, monkeypatch, capsys):
    if page in NEEDS:
        pytest.importorskip(NEEDS[page], reason=f'{NEEDS[page]} is not installed; '
                                                'pip install ".[dev]"')
    monkeypatch.chdir(workdir)
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(runnable(page)):
        exec(compile(block, f"docs/{page}.md (python block {i + 1})", "exec"), namespace)
    assert page in CHECKS, f"say in CHECKS what docs/{page}.md's examples must make"
    CHECKS[page](namespace, capsys.readouterr().out.splitlines(), workdir)


def test_every_page_with_examples_is_checked_and_only_known_blocks_are_not_run():
    assert set(CHECKS) == {p for p in PAGES if runnable(p)}
    shown = [code for page in PAGES for caption, code in page_blocks(page) if caption is None]
    skipped = [phrase for code in shown for phrase in NOT_RUN if phrase in code]
    assert sorted(skipped) == sorted(NOT_RUN)  # each exception is used, once


@pytest.mark.parametrize(("page", "caption", "code"), study_files(),
                         ids=[caption for _, caption, _ in study_files()])
def test_the_study_files_on_the_pages_run(page, caption, code, tmp_path):
    path = tmp_path / caption
    path.write_text(code, encoding="utf-8")
    study = load_study_file(path)
    ctx = sandbox(tmp_path / "out", study=study.NAME)
    result = study.run(ctx)
    assert isinstance(result["summary"], str) and result["summary"]
    for link in result.get("figures", []):
        assert (ctx.out_dir / link).is_file() and Path(link).name.startswith(study.NAME + "_")


def test_every_study_has_its_section_on_the_studies_page():
    text = (DOCS / "studies.md").read_text(encoding="utf-8")
    for name in STUDY_NAMES:
        assert f"### `{name}`" in text, f"docs/studies.md has no section for {name}"
        assert f".. automodule:: experiments.studies.{name}" in text
        assert f"| `{name}` |" in text, f"docs/studies.md's table has no row for {name}"


def test_every_name_of_xpnet_all_is_in_the_api_reference(tmp_path):
    """autosummary generates the reference's pages as the build does (``docs/conf.py``,
    its templates): each short-API name is listed on xpnet's page and has its own page."""
    sphinx = pytest.importorskip("sphinx.application", reason='pip install ".[docs]"')
    src = tmp_path / "docs"
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns("generated", "_build"))
    sphinx.Sphinx(src, src, tmp_path / "out", tmp_path / "doctrees", "dummy",
                  status=None, warning=None, freshenv=True)
    generated = src / "api" / "generated"
    listed = (generated / "xpnet.rst").read_text(encoding="utf-8")
    for name in (n for n in xpnet.__all__ if n != "__version__"):
        obj = getattr(xpnet, name)
        home = f"{obj.__module__}.{obj.__qualname__}"
        assert re.search(rf"^\s+{re.escape(home)}$", listed, re.M), f"xpnet.{name} is not listed"
        assert (generated / f"{home}.rst").is_file(), f"xpnet.{name} has no page"

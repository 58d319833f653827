"""README's library code runs as written (its study file runs in
``tests/studies/test_study_files.py``; the manual's examples in ``tests/test_docs.py``).

The Python blocks of a README section run in order in one namespace, as a reader would
paste them into one session, from a working folder whose ``../shared/data`` holds a tiny
CIFAR-10 look-alike made by :mod:`xpnet.data.synthetic` (so the README's own relative path is
used, nothing is substituted).  That tiny set is used even when the real data is at
``XPNET_DATA``: it keeps the test at a few seconds.  It has 5,100 training images, so
``load_cifar10``'s default 5,000 validation images leave 100 for training: one step an
epoch at batch 100, so the README's ``n_s_epochs=5`` schedule is 20 steps here.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from xpnet.data.synthetic import write_cifar_batches

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    """The fenced ``python`` blocks of the README section under ``## {section}``."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README has no section '## {section}'"
    return re.findall(r"^```python\n(.*?)^```", match.group(1), re.M | re.S)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A working folder whose ``../shared/data`` holds the tiny data set."""
    root = tmp_path_factory.mktemp("readme")
    write_cifar_batches(root / "shared" / "data", n_per_batch=1020, seed=3)
    (root / "work").mkdir()
    return root / "work"


def test_the_library_section_runs_as_written(workdir, monkeypatch, capsys):
    blocks = python_blocks("Using the library")
    assert len(blocks) == 1 and "Classifier" in blocks[0]
    assert len(blocks[0].strip().splitlines()) == 5  # the five-line model
    monkeypatch.chdir(workdir)
    namespace: dict = {"__name__": "__readme__"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md (python block {i + 1})", "exec"), namespace)

    printed = capsys.readouterr().out.splitlines()
    scores = np.array(printed[0].strip("[]").split(), dtype=float)  # the five lines' print
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    assert namespace["history"].metrics["val_accuracy"].shape[1] == 3


def test_readme_links_only_to_pages_that_exist():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#]+)", text)
    assert len(links) >= 10
    for link in links:
        assert (README.parent / link).is_file(), f"README links to a missing page: {link}"


def test_readme_stays_a_front_door():
    assert README.stat().st_size < 15_000  # the manual is in docs/

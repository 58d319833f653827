"""Runs that never end on their own, for tests that interrupt the suite.

A test that sends Ctrl-C or SIGTERM to ``python -m experiments.run`` must know that the
suite is still running when the signal lands: on the tiny test data a whole suite can
finish in the moment between "a first run is stored" and the signal.  :func:`hold_env`
gives the environment of a suite process in which the named runs wait an hour before
they start computing (far longer than any test's timeout), wherever they execute: in
the suite's own process or on the Dask workers it starts (whose processes inherit the
environment).  It works through a ``sitecustomize`` module on ``PYTHONPATH``, which every
Python process imports at start-up; it wraps :func:`experiments.suite.tasks.execute`,
the task every executor runs.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: How long a held run waits: far longer than any test waits for anything.
HOLD_S = 3600

SITECUSTOMIZE = f'''\
import os

if os.environ.get("XPNET_TEST_HOLD"):
    import time

    import experiments.suite.tasks as _tasks

    _HELD = set(os.environ["XPNET_TEST_HOLD"].split(","))
    _real_execute = _tasks.execute

    def execute(fn, spec, settings, run, publish=None):
        if run.split("#", 1)[0] in _HELD:  # "study/key", or "study/key#i" for a part
            time.sleep({HOLD_S})
        return _real_execute(fn, spec, settings, run, publish)

    _tasks.execute = execute
'''


def hold_env(folder: Path, *runs: str) -> dict:
    """Environment variables under which the runs named ``"study/key"`` never finish.

    ``folder`` receives the ``sitecustomize.py``.  ``PYTHONPATH`` gets it, the checkout
    (so that ``experiments`` imports at start-up, before ``-m`` adds the working folder)
    and the caller's entries made absolute.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    inherited = [str((REPO / p).resolve()) for p in
                 os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"PYTHONPATH": os.pathsep.join([str(folder), str(REPO), *inherited]),
            "XPNET_TEST_HOLD": ",".join(runs)}

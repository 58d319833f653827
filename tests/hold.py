"""Runs that never end on their own, and a cluster start-up the test lets go, for tests
that interrupt the suite or look at it while it runs.

A test that sends Ctrl-C or SIGTERM to ``python -m experiments.run`` must know that the
suite is still running when the signal lands: on the tiny test data a whole suite can
finish in the moment between "a first run is stored" and the signal.  :func:`hold_env`
gives the environment of a suite process in which the named runs wait an hour before
they start computing (far longer than any test's timeout), wherever they execute: in
the suite's own process or on the Dask workers it starts (whose processes inherit the
environment).  With ``startup=True`` the local Dask cluster's start-up waits too, in its
first nanny's start, until the test calls :func:`release`.  Each hold says it has been
reached by a file in the hold folder (:func:`held`), so a test knows the suite stands
at that point.  It works through a ``sitecustomize`` module on ``PYTHONPATH``, which
every Python process imports at start-up; it wraps :func:`experiments.suite.tasks.execute`,
the task every executor runs, and ``distributed.Nanny.start_unsafe``.
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
    from pathlib import Path

    import experiments.suite.tasks as _tasks

    _HELD = set(os.environ["XPNET_TEST_HOLD"].split(","))
    _MARKS = Path(os.environ["XPNET_TEST_HOLD_DIR"])
    _real_execute = _tasks.execute

    def execute(fn, spec, settings, run, *args, **kwargs):
        if run.split("#", 1)[0] in _HELD:  # "study/key", or "study/key#i" for a part
            (_MARKS / "held-run").write_text(run)
            time.sleep({HOLD_S})
        return _real_execute(fn, spec, settings, run, *args, **kwargs)

    _tasks.execute = execute

if os.environ.get("XPNET_TEST_HOLD_CHECKPOINT"):
    import time
    from pathlib import Path

    from experiments.suite import checkpoints as _checkpoints

    _AT = dict(item.rsplit("@", 1) for item in
               os.environ["XPNET_TEST_HOLD_CHECKPOINT"].split(","))
    _MARKS = Path(os.environ["XPNET_TEST_HOLD_DIR"])
    _real_write = _checkpoints.Slot.write

    def write(self, data, step):
        _real_write(self, data, step)
        name = self.run.split("#", 1)[0]
        if name in _AT and step >= int(_AT[name]):
            (_MARKS / ("held-checkpoint-" + name.replace("/", "--"))).write_text(str(step))
            time.sleep({HOLD_S})

    _checkpoints.Slot.write = write

if os.environ.get("XPNET_TEST_HOLD_STARTUP"):
    import asyncio
    from pathlib import Path

    import distributed

    _STARTUP = Path(os.environ["XPNET_TEST_HOLD_DIR"])
    _real_start = distributed.Nanny.start_unsafe

    async def start_unsafe(self):
        (_STARTUP / "held-startup").touch()
        while not (_STARTUP / "release").exists():
            await asyncio.sleep(0.02)
        return await _real_start(self)

    distributed.Nanny.start_unsafe = start_unsafe
'''


def hold_env(folder: Path, *runs: str, startup: bool = False, checkpoints=None) -> dict:
    """Environment variables under which the runs named ``"study/key"`` never finish,
    and with ``startup`` the local cluster's start-up waits for :func:`release`.

    ``checkpoints`` maps runs (``"study/key"``) to a step: each such run, once it has
    handed over its first checkpoint at that step or later, waits there (its checkpoint is
    then on its way to the output folder, or in it).

    ``folder`` receives the ``sitecustomize.py`` and the files that say a hold was
    reached.  ``PYTHONPATH`` gets it, the checkout (so that ``experiments`` imports at
    start-up, before ``-m`` adds the working folder) and the caller's entries made
    absolute.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    inherited = [str((REPO / p).resolve()) for p in
                 os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {"PYTHONPATH": os.pathsep.join([str(folder), str(REPO), *inherited]),
           "XPNET_TEST_HOLD": ",".join(runs), "XPNET_TEST_HOLD_DIR": str(folder)}
    if startup:
        env["XPNET_TEST_HOLD_STARTUP"] = "1"
    if checkpoints:
        env["XPNET_TEST_HOLD_CHECKPOINT"] = ",".join(f"{run}@{step}"
                                                     for run, step in checkpoints.items())
    return env


def held(folder: Path, what: str = "run") -> bool:
    """Whether a process of :func:`hold_env`'s ``folder`` has reached its hold:
    ``"run"`` (a held run, which waits from then on) or ``"startup"``."""
    return (folder / f"held-{what}").exists()


def release(folder: Path) -> None:
    """Let a cluster start-up held by :func:`hold_env` go on."""
    (folder / "release").touch()

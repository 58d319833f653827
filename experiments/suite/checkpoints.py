"""Checkpoints inside a run: a suite's training run saves its whole state at record points,
at most every ``--checkpoint-every`` seconds, so that a stop (Ctrl-C, SIGTERM, SIGKILL, a
lost worker) loses at most that much of it (:mod:`xpnet.training.resume` says what a
checkpoint holds, and why it needs no random generator state).

- The run, wherever it trains (:func:`experiments.suite.tasks.execute`), saves through a
  :class:`Slot`: in this process the checkpoint goes to the client with the run's progress
  events; on a Dask worker it waits in the worker's outbox and a small progress event says
  so, and the client's :class:`Courier` fetches it (``Client.run``, through the scheduler:
  no worker needs to reach the client's disk, nor the client a worker's).
- :class:`CheckpointStore`, in the client (the output folder's one writer), writes
  ``OUT/checkpoints/<study>/<key>.<parts>.<part>.<fingerprint>.npz`` atomically, hands a
  starting run its checkpoint (and the split into model groups it was saved in), and removes
  a run's checkpoints once its record is saved.  A checkpoint whose run is not this run any
  more (another spec) is removed when the run starts; one that cannot be read is set aside
  and the run starts from step 0, saying so.
"""

from __future__ import annotations

import queue
import re
import threading
from pathlib import Path

from xpnet.base.atomic import atomic_write

#: Seconds between two checkpoints of a run, by default (``--checkpoint-every``).
EVERY_S = 180.0
#: The folder under ``OUT``.
FOLDER = "checkpoints"


def _safe(key: str) -> str:
    """A run key as a file name: letters, digits and ``_=-`` kept, the rest ``_`` (dots
    separate the fields of a checkpoint's name)."""
    return re.sub(r"[^A-Za-z0-9_=-]", "_", key)


def part_key(run: str, n_parts: int, part: int, fp: str) -> str:
    """The name of part ``part`` of ``n_parts`` of ``run`` (``"study/key"``) whose spec has
    fingerprint ``fp``: ``study/key.parts.part.fp``."""
    study, _, key = run.partition("/")
    return f"{_safe(study)}/{_safe(key)}.{n_parts}.{part}.{fp}"


class CheckpointStore:
    """The checkpoints of one output folder (the client's, its one writer); thread-safe.

    ``every``: seconds between two checkpoints of a run (0: none); ``warn(line)`` says a
    problem once (a checkpoint that cannot be written, say, on a full disk).
    """

    def __init__(self, out_dir, every: float = EVERY_S, warn=print):
        self.folder = Path(out_dir) / FOLDER
        self.every = float(every)
        self.warn = warn
        self._lock = threading.Lock()
        self._closed: set[str] = set()  # parts whose run has ended: late arrivals dropped
        self._warned = False
        #: Checkpoints written by this invocation (a count, for the cost of them).
        self.written = 0

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def _files(self, run: str) -> dict[str, Path]:
        """``{part key: path}`` of the checkpoints ``run`` has on disk."""
        study, _, key = run.partition("/")
        folder = self.folder / _safe(study)
        if not folder.is_dir():
            return {}
        out = {}
        for path in folder.iterdir():
            fields = path.name[:-4].rsplit(".", 3) if path.name.endswith(".npz") else []
            if len(fields) == 4 and fields[0] == _safe(key):
                out[f"{_safe(study)}/{path.name[:-4]}"] = path
        return out

    def split_of(self, run: str) -> int | None:
        """The number of parts ``run``'s checkpoints were saved in (None: it has none)."""
        counts = {int(k.rsplit(".", 3)[1]) for k in self._files(run)
                  if k.rsplit(".", 3)[1].isdigit()}
        return max(counts) if counts else None

    def claim(self, run: str, keys: list[str]) -> dict[str, bytes]:
        """``run`` starts in the parts ``keys``: their checkpoints' bytes, by key; the run's
        other checkpoints (another split, an older spec) are removed."""
        found = {}
        with self._lock:
            self._closed.difference_update(keys)
            for key, path in self._files(run).items():
                if key not in keys:
                    path.unlink(missing_ok=True)
                    continue
                try:
                    found[key] = path.read_bytes()
                except OSError:
                    pass
        return found

    def write(self, key: str, data: bytes) -> None:
        """Save part ``key``'s newest checkpoint, unless its run has ended meanwhile."""
        with self._lock:
            if key in self._closed or self.every <= 0:
                return
            path = self.path(key)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_write(path) as f:
                    f.write(data)
                self.written += 1
            except OSError as exc:
                if not self._warned:
                    self._warned = True
                    self.warn(f"A checkpoint could not be written to {path.parent} "
                              f"({exc.strerror or exc}); runs go on without it.")

    def finish(self, run: str) -> None:
        """``run`` has ended (its record is saved): remove its checkpoints, now and later."""
        with self._lock:
            for key, path in self._files(run).items():
                self._closed.add(key)
                path.unlink(missing_ok=True)

    def forget(self, study: str) -> None:
        """Remove every checkpoint of ``study`` (``--force``: its runs start afresh)."""
        with self._lock:
            folder = self.folder / _safe(study)
            if folder.is_dir():
                for path in folder.glob("*.npz"):
                    path.unlink(missing_ok=True)

    def set_aside(self, key: str) -> None:
        """Part ``key``'s checkpoint cannot be used: it goes, and the part starts afresh."""
        with self._lock:
            self.path(key).unlink(missing_ok=True)

    def tidy(self) -> None:
        """Remove the folder if no checkpoint is left in it (the suite's last act), and the
        temp files of writes a kill cut short."""
        try:
            for stray in self.folder.glob("*/.*.tmp"):
                stray.unlink(missing_ok=True)
            for folder in sorted(self.folder.glob("*"), reverse=True):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            if self.folder.is_dir() and not any(self.folder.iterdir()):
                self.folder.rmdir()
        except OSError:
            pass


# ------------------------------------------------------------------ run side
_OUTBOX: dict[str, bytes] = {}
_OUTBOX_LOCK = threading.Lock()


def take(key: str) -> bytes | None:
    """The newest checkpoint part ``key`` left in this worker's outbox (None: none), taken
    out of it (the client calls this on the worker, ``Client.run``)."""
    with _OUTBOX_LOCK:
        return _OUTBOX.pop(key, None)


class Slot:
    """Where one part of a suite's run keeps its checkpoint: the protocol of
    :func:`xpnet.training.resume.run` (``read``, ``write``, ``remove``, ``resumed``,
    ``refused``).

    Args:
        key: the part's :func:`part_key`.
        data: the checkpoint it starts from (bytes), or None.
        publish: the run's progress channel (see :mod:`experiments.suite.progress`).
        run: the part's name in progress events.
        outbox: on a Dask worker: keep checkpoints in this process's outbox for the client
            to fetch, and publish only that one is there (events travel through the
            scheduler, which keeps the last ones).
    """

    def __init__(self, key: str, data: bytes | None, publish, run: str, worker=None):
        self.key, self.data, self.publish, self.run = key, data, publish, run
        self.worker = worker
        self.name = f"the checkpoint of {run}"

    def read(self):
        return self.data

    def write(self, data: bytes, step: int) -> None:
        event = {"run": self.run, "event": "checkpoint", "key": self.key, "step": int(step)}
        if self.worker is None:
            event["data"] = data
        else:
            with _OUTBOX_LOCK:
                _OUTBOX[self.key] = data
            event["worker"] = self.worker
        self.publish(event)

    def remove(self) -> None:
        """Nothing here: the client removes a run's checkpoints once its record is saved."""
        with _OUTBOX_LOCK:
            _OUTBOX.pop(self.key, None)

    def resumed(self, step: int) -> None:
        self.publish({"run": self.run, "event": "resumed", "step": int(step)})

    def refused(self, error) -> None:
        self.publish({"run": self.run, "event": "refused", "key": self.key,
                      "reason": str(error)})


# --------------------------------------------------------------- client side
class Courier:
    """Fetches the checkpoints workers announce, on a thread of its own, into ``store``.

    ``fetch(worker, key)`` returns the bytes :func:`take` finds there (or None).
    """

    def __init__(self, fetch, store: CheckpointStore):
        self.fetch, self.store = fetch, store
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="checkpoints", daemon=True)
        self._thread.start()

    def announce(self, event: dict) -> None:
        self._queue.put(event)

    def _work(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            try:
                data = self.fetch(event["worker"], event["key"])
            except Exception:  # the worker or the client is gone: the run says what matters
                continue
            if data:
                self.store.write(event["key"], data)

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

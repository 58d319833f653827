"""What every study shares: settings, data, the result store, and cached training runs.

A *run* is one lockstep training (one Network of M models) or one other unit of work
(a gradient check of one config).  Each run has a readable key inside its study and a
fingerprint of everything that determines its result; :meth:`Context.run_once` returns
the stored record when key and fingerprint match and otherwise computes it and saves
it to ``results.json`` at once (atomically), so an interrupted suite resumes where it
stopped.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import hashlib
import importlib
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from xpnet import CyclicalLR, DeviceSplit, NetworkConfig, to_numpy
from xpnet.errors import OutputError
from xpnet.atomic import write_text_atomic
from xpnet.sweep import train_lockstep

#: Study modules in the order they run (and appear in the report).
STUDY_NAMES = ("gradcheck", "overfit", "depth_bn", "lambda_search", "init_sensitivity",
               "lr_bn")

#: The reports' architectures.
ARCHS = {
    "2-layer": (50,),
    "3-layer": (50, 50),
    "4-layer": (50, 30, 20),
    "9-layer": (50, 30, 20, 20, 10, 10, 10, 10),
}

BATCH = 100
LAMBDA = 0.005


def load_study(name: str):
    """The study module ``experiments.<name>`` (has NAME, DESCRIPTION, run(ctx))."""
    return importlib.import_module(f"experiments.{name}")


def now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def fingerprint(obj) -> str:
    """A short stable hash of a JSON-able object."""
    text = json.dumps(to_jsonable(obj), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def to_jsonable(obj):
    """NumPy scalars/arrays to Python, non-finite floats to None, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def library_versions(device: str) -> dict:
    """Versions of the libraries that shape the numbers."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("xpnet", "numpy", "array-api-compat", "matplotlib", "tqdm"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    if device == "cuda":
        try:
            import cupy

            out["cupy"] = cupy.__version__
        except Exception:  # reported as absent; get_backend has already vetted it
            out["cupy"] = "not importable"
    return out


# --------------------------------------------------------------------- storage
class ResultStore:
    """``results.json`` in memory, written atomically after every change.

    The file is valid JSON at every instant: each save writes a temp file in the same
    folder, fsyncs it and ``os.replace``-s it over the old one.
    """

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / "results.json"
        self.data = {"format": 1, "meta": {}, "studies": {}}
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise OutputError(
                    f"{self.path} exists but is not readable JSON ({type(exc).__name__}); "
                    "move it away or choose another --out.") from None
            if isinstance(loaded, dict) and isinstance(loaded.get("studies"), dict):
                self.data = loaded
                self.data.setdefault("meta", {})

    def study(self, name: str) -> dict:
        return self.data["studies"].setdefault(name, {"runs": {}})

    def save(self) -> None:
        text = json.dumps(to_jsonable(self.data), indent=1, allow_nan=False)
        try:
            write_text_atomic(self.path, text)
            _fsync_dir(self.path.parent)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            hint = ("free some space" if exc.errno == errno.ENOSPC
                    else "check the folder's permissions")
            raise OutputError(
                f"Could not write {self.path} ({reason}); {hint} and run again with the "
                "same --out to resume from the last saved run.") from None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_writable(out_dir: Path) -> None:
    """Create ``out_dir`` (and ``figures/``) and prove it writable with a probe file."""
    try:
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".probe-")
        os.write(fd, b"probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OutputError(
            f"The output folder {out_dir} is not writable ({reason}); pass --out with a "
            "folder you can write to.") from None


# --------------------------------------------------------------------- context
@dataclasses.dataclass
class Settings:
    """The CLI choices that every study sees."""

    quick: bool = False
    seeds: int = 3
    device: str = "cpu"
    data_dir: str | None = None
    download: bool = False
    force: bool = False
    progress: bool = True

    def scale(self) -> dict:
        """What makes results of one invocation comparable with another's."""
        return {"quick": self.quick, "seeds": self.seeds}


class Context:
    """Handed to ``study.run(ctx)``: data, schedules, figure paths and cached runs."""

    def __init__(self, settings: Settings, store: ResultStore, out_dir: Path, backend):
        self.settings = settings
        self.store = store
        self.out_dir = Path(out_dir)
        self.backend = backend
        self.study_name = ""
        self.trained = 0
        self.reused = 0
        self.reused_s = 0.0
        self._data = None
        self._splits = None

    # ------------------------------------------------------------------ data
    @property
    def quick(self) -> bool:
        return self.settings.quick

    @property
    def seeds(self) -> list[int]:
        return list(range(self.settings.seeds))

    @property
    def data(self):
        """The host :class:`xpnet.data.Dataset` (loaded once; smaller with --quick)."""
        if self._data is None:
            from xpnet.data import load_cifar10

            kwargs = dict(limit=1000, n_val=500) if self.quick else dict(n_val=5000)
            self._data = load_cifar10(self.settings.data_dir, download=self.settings.download,
                                      progress=self.settings.progress, **kwargs)
        return self._data

    def split(self, name: str) -> DeviceSplit:
        """``"train"``, ``"val"`` or ``"test"`` on the device (float32)."""
        if self._splits is None:
            d = self.data
            self._splits = {
                s: DeviceSplit.from_host(self.backend, getattr(d, f"X_{s}"),
                                         getattr(d, f"y_{s}"), d.n_classes, "float32")
                for s in ("train", "val", "test")}
        return self._splits[name]

    def data_sizes(self) -> dict:
        """Split sizes and a fingerprint of the training statistics.

        Part of every run's spec, so a folder resumed with other data (another
        --data-dir of the same size) retrains instead of reusing stale runs.
        """
        d = self.data
        stats = hashlib.sha256(np.ascontiguousarray(d.mean, dtype=np.float64).tobytes()
                               + np.ascontiguousarray(d.std, dtype=np.float64).tobytes())
        return {"train": len(d.y_train), "val": len(d.y_val), "test": len(d.y_test),
                "train_stats": stats.hexdigest()[:16]}

    def cyclical(self, cycles: int, n_train: int | None = None) -> CyclicalLR:
        """The reports' schedule: eta 1e-5..1e-1, n_s = 5 epochs of batch 100."""
        n = n_train or len(self.data.y_train)
        return CyclicalLR(1e-5, 1e-1, n_s=max(1, 5 * n // BATCH), cycles=cycles)

    # --------------------------------------------------------------- figures
    def figure_path(self, name: str) -> tuple[Path, str]:
        """Absolute path and report-relative link of figure ``<study>_<name>.png``."""
        rel = f"figures/{self.study_name}_{name}.png"
        return self.out_dir / rel, rel

    # ------------------------------------------------------------------ runs
    def run_once(self, key: str, spec: dict, compute) -> dict:
        """The stored record of run ``key`` if its ``spec`` is unchanged, else ``compute()``.

        ``compute()`` returns a JSON-able dict; it is stored with the spec, the wall
        time and a timestamp, and ``results.json`` is rewritten before returning.
        """
        runs = self.store.study(self.study_name)["runs"]
        fp = fingerprint(spec)
        old = runs.get(key)
        if old is not None and old.get("fingerprint") == fp and not self.settings.force:
            self.reused += 1
            self.reused_s += float(old.get("wall_s") or 0.0)
            return old
        start = time.perf_counter()
        record = compute()
        self.backend.synchronize()
        record = to_jsonable(record)
        record.update(spec=to_jsonable(spec), fingerprint=fp,
                      wall_s=round(time.perf_counter() - start, 3), finished_at=now())
        runs[key] = record
        self.store.save()
        self.trained += 1
        return record

    def train_run(self, key: str, *, hidden, seeds, lam=LAMBDA, sigma=None,
                  batch_norm: bool = True, init: str = "he", schedule=None,
                  momentum: float = 0.0, batch_size: int = BATCH, n_train: int | None = None,
                  evals_per_cycle: int = 10) -> dict:
        """Train one Network of M models (per-model seeds, lam, sigma) and test it.

        Returns the record: ``history`` (``History.to_dict()``, metrics ``(n_points, M)``),
        ``test_accuracy``/``test_loss`` ``(M,)`` (None for diverged models), ``diverged_step``
        ``(M,)`` and ``last_val_accuracy`` ``(M,)`` (the last finite value).
        """
        config = NetworkConfig(d_in=self.data.X_train.shape[1], hidden=tuple(hidden),
                               n_classes=self.data.n_classes, batch_norm=batch_norm, init=init)
        train_data = self.split("train")
        if n_train is not None:
            train_data = train_data.head(n_train)
        schedule = schedule or self.cyclical(2)
        spec = {"config": config.to_dict(), "seeds": list(np.atleast_1d(seeds)),
                "lam": list(np.atleast_1d(lam)),
                "sigma": None if sigma is None else list(np.atleast_1d(sigma)),
                "schedule": {"type": type(schedule).__name__, **dataclasses.asdict(schedule)},
                "momentum": momentum, "batch_size": batch_size, "n_train": train_data.size,
                "data": self.data_sizes(), "evals_per_cycle": evals_per_cycle}

        def compute():
            with np.errstate(all="ignore"):  # a diverging model overflows by design
                return self._train_and_test(config, schedule, train_data, seeds, lam, sigma,
                                            batch_size, momentum, evals_per_cycle, key)

        return self.run_once(key, spec, compute)

    def _train_and_test(self, config, schedule, train_data, seeds, lam, sigma, batch_size,
                        momentum, evals_per_cycle, key) -> dict:
        """Train a fresh Network and evaluate it on the test split (see :meth:`train_run`)."""
        net, history = train_lockstep(
            config, schedule, train_data, self.split("val"), seeds=seeds, lam=lam,
            sigma=sigma, backend=self.backend, batch_size=batch_size, momentum=momentum,
            evals_per_cycle=evals_per_cycle, train_eval_size=None if self.quick else 10000,
            progress=self.settings.progress, desc=f"{self.study_name}/{key}")
        test = self.split("test")
        result = net.evaluate(test.X, test.y, test.Y)
        dead = history.diverged
        acc = to_numpy(result["accuracy"]).astype(np.float64)
        loss = to_numpy(result["loss"]).astype(np.float64)
        acc[dead] = np.nan
        loss[dead] = np.nan
        return {"history": history.to_dict(), "test_accuracy": acc, "test_loss": loss,
                "diverged_step": history.diverged_step,
                "last_val_accuracy": history.last_finite("val_accuracy"),
                "n_models": net.n_models}


# ------------------------------------------------------------ record helpers
def column(record: dict, field: str, columns=None) -> np.ndarray:
    """A per-model field of a run record as floats ``(M,)`` or its ``columns``."""
    values = np.array([np.nan if v is None else v for v in record[field]], dtype=np.float64)
    return values if columns is None else values[list(columns)]


def test_cell(record: dict, columns=None) -> str:
    """Test accuracy over the chosen models, naming divergence (see ``accuracy_cell``)."""
    from xpnet.report import accuracy_cell

    return accuracy_cell(column(record, "test_accuracy", columns),
                         column(record, "diverged_step", columns),
                         column(record, "last_val_accuracy", columns))


def mean_test(record: dict, columns=None) -> float:
    """Mean test accuracy of the chosen models (NaN when all diverged)."""
    from xpnet.report import mean_or_nan

    return mean_or_nan(column(record, "test_accuracy", columns))


def metric(record: dict, key: str) -> np.ndarray:
    """A history metric ``(n_points, M)`` with NaN for missing values."""
    rows = record["history"]["metrics"][key]
    return np.array([[np.nan if v is None else v for v in row] for row in rows],
                    dtype=np.float64)

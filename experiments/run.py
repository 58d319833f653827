"""Run the DD2424 Assignment 3 studies: ``python -m experiments.run [options]``.

Writes ``OUT/results.json`` (every number, saved after every finished run),
``OUT/figures/*.png`` and ``OUT/report.md``.  Running again with the same ``--out``
resumes: finished studies and finished runs are not recomputed unless ``--force``.
Errors a user can fix end in one sentence on stderr and exit status 2; Ctrl-C (or
SIGTERM) keeps what has finished and exits with 130.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shlex
import signal
import sys
import time
from pathlib import Path

from experiments.common import (
    STUDY_NAMES, Context, ResultStore, Settings, check_writable, library_versions,
    load_study, now)
from xpnet.errors import DataError, XpnetError


class UsageError(XpnetError):
    """A bad command-line flag or value."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (exit 2), without the usage block."""

    def error(self, message):
        raise UsageError(f"{message[:1].upper()}{message[1:]}; see --help.")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m experiments.run",
                description="Reproduce the DD2424 Assignment 3 studies on CIFAR-10.")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="array backend: NumPy on the CPU or CuPy on an NVIDIA GPU")
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder holding cifar-10-batches-py (default: $XPNET_DATA, then "
                        "~/.cache/xpnet)")
    p.add_argument("--download", action="store_true", help="fetch CIFAR-10 if it is absent")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default runs/<timestamp>); reuse it to resume")
    p.add_argument("--only", metavar="A,B", help="comma-separated studies to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the studies and exit")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: small data and schedules (numbers not comparable)")
    p.add_argument("--seeds", type=_positive_int, default=3, metavar="N",
                   help="seeds per setting, trained together on the model axis (default 3)")
    p.add_argument("--force", action="store_true", help="recompute finished studies and runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def select_studies(only: str | None) -> list[str]:
    """Study names from ``--only`` (all by default), in suite order."""
    if only is None:
        return list(STUDY_NAMES)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in STUDY_NAMES]
    if unknown or not wanted:
        what = f"Unknown study {unknown[0]!r}" if unknown else "No study named"
        raise UsageError(f"{what} in --only; choose from: {', '.join(STUDY_NAMES)}.")
    return [name for name in STUDY_NAMES if name in wanted]


def describe_device(backend) -> str:
    if backend.name == "cuda":
        try:
            import cupy

            name = cupy.cuda.runtime.getDeviceProperties(backend.device.id)["name"]
            return f"cuda ({name.decode() if isinstance(name, bytes) else name})"
        except Exception:
            return "cuda"
    return f"cpu ({os.cpu_count()} cores, {platform.machine()})"


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


class Suite:
    """Runs the chosen studies against one output folder."""

    def __init__(self, args, names: list[str], out: Path, backend, argv=()):
        self.names = names
        self.argv = list(argv)
        self.out = out
        self.settings = Settings(quick=args.quick, seeds=args.seeds, device=args.device,
                                 data_dir=args.data_dir, download=args.download,
                                 force=args.force, progress=not args.no_progress)
        self.store = ResultStore(out)
        self.ctx = Context(self.settings, self.store, out, backend)
        self.backend = backend
        self.trained = 0

    def say(self, line: str) -> None:
        from tqdm.auto import tqdm

        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()

    def prepare(self) -> None:
        """Record the invocation; refuse to mix scales or data in one folder unless --force."""
        meta = self.store.data["meta"]
        scale = self.settings.scale()
        self._keep_comparable("scale", scale, lambda old: (
            f"--seeds {old['seeds']}{' --quick' if old['quick'] else ''}"))
        try:
            data = self.ctx.data_sizes()  # loads the data (or fails) before anything trains
        except OSError as exc:  # --data-dir names a file, a name too long, ... (not --out)
            where = exc.filename or self.settings.data_dir or "the default data location"
            raise DataError(
                f"Cannot use the data folder {where} ({exc.strerror or type(exc).__name__}); "
                "pass --data-dir an existing folder that holds cifar-10-batches-py, or one "
                "that --download can create.") from None
        self._keep_comparable("data", data, lambda old: (
            f"other data than {self.settings.data_dir or 'the default data location'}"))
        meta.setdefault("created", now())
        meta.update(updated=now(), device=describe_device(self.backend),
                    quick=self.settings.quick, seeds=self.settings.seeds,
                    versions=library_versions(self.backend.name),
                    command=" ".join(["python -m experiments.run",
                                      *(shlex.quote(a) for a in self.argv)]))
        self.store.save()

    def _keep_comparable(self, key: str, value, describe_old) -> None:
        """Store ``meta[key] = value``, refusing stored results made with another value.

        With --force the old results are dropped instead.
        """
        meta = self.store.data["meta"]
        old = meta.get(key)
        if old is not None and old != value and self.store.data["studies"]:
            if not self.settings.force:
                raise UsageError(f"{self.out} holds results made with {describe_old(old)}; "
                                 "use another --out or add --force to replace them.")
            self.store.data["studies"] = {}
        meta[key] = value

    def finished(self, name: str) -> bool:
        entry = self.store.data["studies"].get(name)
        return bool(entry and entry.get("status") == "done" and not self.settings.force
                    and all((self.out / f).is_file() for f in entry.get("figures", [])))

    def run_study(self, name: str) -> None:
        module = load_study(name)
        ctx = self.ctx
        ctx.study_name, ctx.trained, ctx.reused, ctx.reused_s = name, 0, 0, 0.0
        entry = self.store.study(name)
        if self.settings.force:
            entry["runs"] = {}  # stale keys of an older layout go too
        entry.update(description=module.DESCRIPTION, status="running")
        start = time.perf_counter()
        try:
            result = module.run(ctx)
        finally:
            self.trained += ctx.trained
        wall = time.perf_counter() - start
        entry.update(result)
        # Runs reused from an earlier invocation count with the time they took then.
        entry.update(status="done", finished_at=now(), wall_s=round(wall + ctx.reused_s, 1))
        self.store.save()
        self.say(f"{name}: {len(entry['runs'])} runs ({ctx.trained} trained, {ctx.reused} "
                 f"reused), {entry['wall_s']:.0f} s, {result.get('summary', '')}")

    def run(self) -> int:
        from tqdm.auto import tqdm

        from xpnet.report import write_report

        self.prepare()
        start = time.perf_counter()
        with tqdm(self.names, desc="suite", unit="study", disable=not self.settings.progress,
                  dynamic_ncols=True) as bar:
            for name in bar:
                bar.set_postfix_str(name)
                if self.finished(name):
                    runs = len(self.store.data["studies"][name].get("runs", {}))
                    self.say(f"{name}: skipped (already done, {runs} runs reused)")
                    continue
                self.run_study(name)
        self.store.data["meta"]["wall_s_last_invocation"] = round(time.perf_counter() - start, 1)
        self.store.save()
        self.write_report(write_report)
        self.say(f"Trained {self.trained} runs in {time.perf_counter() - start:.0f} s; "
                 f"report: {self.out / 'report.md'}")
        return 0

    def write_report(self, writer) -> None:
        writer(self.store.data, self.out / "report.md", order=STUDY_NAMES)


def main(argv=None) -> int:
    out = None
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _raise_interrupt)
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        if args.list:
            for name in STUDY_NAMES:
                print(f"{name:18s} {load_study(name).DESCRIPTION}")
            return 0
        names = select_studies(args.only)
        out = Path(args.out or Path("runs") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
        from xpnet.backend import get_backend

        backend = get_backend(args.device)
        check_writable(out)
        return Suite(args, names, out, backend, argv).run()
    except XpnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a figure or the report could not be written (disk full, ...)
        reason = exc.strerror or type(exc).__name__
        print(f"error: Could not write to {out} ({reason}); free some space or fix the "
              "folder and run again with the same --out to resume.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f" in {out / 'results.json'}" if out is not None else ""
        print(f"Interrupted: finished runs are saved{where}; run again with the same --out "
              "to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

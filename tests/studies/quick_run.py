"""One study's ``--quick`` run through the command line, on tiny synthetic CIFAR-10 files,
for a module's fixture: the output folder and its ``results.json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from xpnet.data.synthetic import write_cifar_batches

REPO = Path(__file__).resolve().parents[2]


def quick_run(tmp_path_factory, study: str, *args: str) -> tuple[Path, dict]:
    """Run ``experiments.run --quick --only STUDY ARGS`` on one worker; ``(out, results)``."""
    root = tmp_path_factory.mktemp(f"tiny-{study}")
    write_cifar_batches(root, n_per_batch=200, seed=3)
    out = tmp_path_factory.mktemp(study) / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", "--quick", "--only", study, *args,
         "--workers", "1", "--no-progress", "--data-dir", str(root), "--out", str(out)],
        cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, json.loads((out / "results.json").read_text(encoding="utf-8"))

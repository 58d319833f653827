"""Import the scripts of ci/ (a folder of scripts, not a package) by their path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

CI = Path(__file__).resolve().parents[2] / "ci"


def ci_module(name: str):
    """The module ``ci/<name>.py``, loaded once."""
    key = f"xpnet_ci_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, CI / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]

"""The command-line pieces shared by ``experiments.run`` and ``experiments.bench``.

A bad flag or value ends in one sentence and exit status 2, never argparse's usage
block: the parser raises :class:`UsageError`, which each entry point prints as
``error: <sentence>`` on stderr.
"""

from __future__ import annotations

import argparse

from xpnet.errors import XpnetError


class UsageError(XpnetError):
    """A bad command-line flag or value."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (exit 2), without the usage block."""

    def error(self, message):
        raise UsageError(f"{message[:1].upper()}{message[1:]}; see --help.")


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def seconds(text: str) -> float:
    """An argparse ``type``: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, not {text!r}")
    return value


def positive_int_list(text: str) -> list[int]:
    """An argparse ``type``: a comma-separated list of whole numbers of at least 1."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected a comma-separated list such as 1,8,64,256")
    return [positive_int(p) for p in parts]

"""``python -m experiments`` is ``python -m experiments.run``."""

import sys

from experiments.run import main

if __name__ == "__main__":  # importable (by Sphinx, pydoc) without running
    sys.exit(main())

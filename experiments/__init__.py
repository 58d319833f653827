"""The DD2424 Assignment 3 study suite, built on :mod:`xpnet`.

One module per study (``gradcheck``, ``overfit``, ``depth_bn``, ``lambda_search``,
``lambda_halving``, ``init_sensitivity``, ``lr_bn``, ...), each a thin declaration of its runs and a
``run(ctx)``; :mod:`experiments.suite.context` holds the shared data, result store and
cached training; :mod:`experiments.run` is the CLI.

The networks' matrices are small (batch 100 x 3072 x 50), and a multi-threaded BLAS
spends more time synchronising its threads than computing on them, catastrophically
so on a busy machine (measured: 30 s instead of 0.7 s for the overfit study on two
shared cores).  So the suite asks for one BLAS thread unless the environment already
says otherwise; this must happen before NumPy is first imported.  This is the one home
of that default: ``tests/conftest.py`` imports this package first to get it.
"""

import os

#: The environment variables that set the BLAS (and OpenMP) thread counts.
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

for _var in BLAS_THREAD_VARS:
    os.environ.setdefault(_var, "1")

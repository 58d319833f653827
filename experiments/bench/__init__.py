"""The benchmarks: timings as ratios measured in one run (``python -m experiments.bench``).

``cli`` parses the flags and prints; ``runners`` times the training step against its
baselines; ``peak`` sets the step against the machine's GEMM peak; ``syncs`` counts host
syncs in the step; ``scaling`` times the suite on 1..N Dask workers.
"""

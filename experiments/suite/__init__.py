"""The engine: runs as pure functions of their specs, executed in this process or on a
Dask cluster, stored resumably in ``results.json``.  It imports no study.
"""

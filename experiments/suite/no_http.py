"""No HTTP server on the local cluster: Dask starts one on its scheduler and on every
worker, whatever ``dashboard_address`` says (dask/distributed#8136: ``None`` does not
turn it off), and it answers any local process without credentials (the scheduler's
``/info`` pages list the workers, their logs and the tasks' call stacks).

The local cluster starts with no HTTP routes (see
:func:`experiments.suite.executor.start_local_cluster`), so nothing is served even in
the moment before these plugins, registered once it is up, stop the servers: the
scheduler's at once, each worker's as it joins (also one its nanny restarts).
``--dashboard`` keeps the scheduler's open instead.
"""

from __future__ import annotations

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin


def stop_http(server) -> None:
    """Stop the HTTP server of a Dask ``server`` (a scheduler or a worker), on its loop,
    and drop it from the services it announces."""
    http = getattr(server, "http_server", None)
    if http is not None:
        http.stop()
    server.services.pop("dashboard", None)


class SchedulerWithoutHTTP(SchedulerPlugin):
    """Stops the scheduler's HTTP server when registered."""

    name = "xpnet-scheduler-without-http"

    async def start(self, scheduler) -> None:
        stop_http(scheduler)


class WorkerWithoutHTTP(WorkerPlugin):
    """Stops each worker's HTTP server as it joins."""

    name = "xpnet-worker-without-http"
    idempotent = True

    def setup(self, worker) -> None:
        stop_http(worker)

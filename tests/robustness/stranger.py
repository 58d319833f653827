"""Another process on the machine trying to run code on a Dask cluster's ports.

``python stranger.py MARKER_DIR ADDRESS...`` tries, on each ``tcp://`` or ``tls://``
address, what Dask lets a peer do: the ``run`` request of a worker or nanny (run a
function there) and the scheduler's ``broadcast`` of ``run`` to its workers (what
``Client.run`` sends).  Over ``tls://`` it tries without credentials (as Dask's client
comes, and as a TLS client that presents no certificate and trusts any server's), and
with credentials of its own (``Security.temporary()``: a certificate the cluster has
never seen).  All attempts run at once.  The
function it sends creates a file in MARKER_DIR, wherever it runs.  Prints one JSON line:
``[[address, credentials, request, outcome], ...]`` with outcome ``"ran"`` or the error's
type name.
"""

from __future__ import annotations

import asyncio
import json
import sys

TIMEOUT_S = 3


def attempts(address: str):
    """``(credentials name, connection_args)`` for each way to connect to ``address``."""
    if address.startswith("tcp://"):
        return [("none", {})]
    import ssl

    from distributed.security import Security

    anonymous = ssl.create_default_context()
    anonymous.check_hostname = False
    anonymous.verify_mode = ssl.CERT_NONE
    return [("none", {}), ("no certificate", {"ssl_context": anonymous}),
            ("its own", Security.temporary().get_connection_args("client"))]


async def try_all(marker_dir: str, addresses: list[str]) -> list:
    from distributed.core import rpc
    from distributed.protocol.pickle import dumps

    def mark():
        import os
        import pathlib

        pathlib.Path(marker_dir, f"ran-in-{os.getpid()}").write_text("ran")
        return "ran"

    async def attempt(address, creds, args, request):
        try:
            async with rpc(address, timeout=TIMEOUT_S, connection_args=args) as peer:
                if request == "run":
                    call = peer.run(function=dumps(mark))
                else:
                    call = peer.broadcast(msg={"op": "run", "function": dumps(mark)})
                answer = await asyncio.wait_for(call, 2 * TIMEOUT_S)
            outcome = "ran" if "ran" in repr(answer) else f"answered {answer!r:.80}"
        except Exception as exc:  # every refusal is an outcome to report
            outcome = type(exc).__name__
        return [address, creds, request, outcome]

    return await asyncio.gather(*[attempt(address, creds, args, request)
                                  for address in addresses
                                  for creds, args in attempts(address)
                                  for request in ("run", "broadcast")])


if __name__ == "__main__":
    print(json.dumps(asyncio.run(try_all(sys.argv[1], sys.argv[2:]))))

"""An httpx transport that spreads requests over several small connection pools.

httpcore's pool does O(connections^2) bookkeeping on every request (each connection is
checked against every other, with a poll() per idle socket): at 32+ connections that
costs milliseconds of CPU per request and caps a run far below its rate. Several pools
of a few connections each keep the same number of connections at a fraction of the cost.
"""

from __future__ import annotations

from typing import Final

import httpx

CONNECTIONS_PER_POOL: Final = 4


class SpreadTransport(httpx.AsyncBaseTransport):
    """Each request goes to the pool with the fewest requests in flight."""

    def __init__(self, connections: int, *, per_pool: int = CONNECTIONS_PER_POOL) -> None:
        count = max(1, -(-connections // per_pool))
        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        # One TLS context for all pools: each new one re-reads the CA bundle (~50 ms of CPU).
        tls = httpx.create_ssl_context()
        self._pools = [httpx.AsyncHTTPTransport(limits=limits, verify=tls) for _ in range(count)]
        self._busy = [0] * count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._pools)), key=self._busy.__getitem__)
        self._busy[index] += 1
        try:
            response = await self._pools[index].handle_async_request(request)
            # Bodies here are small JSON: read now, so the connection is free on return.
            await response.aread()
        finally:
            self._busy[index] -= 1
        return response

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()

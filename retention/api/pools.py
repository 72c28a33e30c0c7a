"""httpcore's connection pools under httpx's transport interface, kept cheap at high
concurrency: the transport of the API client under an event loop other than asyncio
(trio), where the lean transport (api.transport) cannot run. Imported only then, so
an asyncio run never loads httpcore or h11.

Two costs in httpcore grow with the number of pooled connections and dominate a run's
CPU at 32+ requests in flight: the pool re-checks every connection on each request,
and each check asks anyio for the raw socket through `extra()`, which rebuilds a dict
of attribute getters (and calls getpeername) every time. So requests are spread over
several small pools, and each connection's socket is looked up once and kept.

Only public interfaces are used: httpx's transport API above, httpcore's pool, network
backend and stream below. httpx's own transport is not used, as it offers no way to
choose httpcore's network backend.
"""

# httpcore's stream and backend interfaces take `timeout` parameters; we only pass them on.
# ruff: noqa: ASYNC109

from __future__ import annotations

import ssl
import typing
from typing import Final

import httpcore
import httpx

from retention.api.sockets import input_poller, is_socket_readable

CONNECTIONS_PER_POOL: Final = 4


class _SocketCachingStream(httpcore.AsyncNetworkStream):
    """Delegates to anyio's stream; answers `socket`/`is_readable` from a cached socket."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket = inner.get_extra_info("socket")
        self._poller = input_poller(self._socket)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        wrapped = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _SocketCachingStream(wrapped)

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "socket":
            return self._socket
        if info == "is_readable":
            return is_socket_readable(self._socket, self._poller)
        return self._inner.get_extra_info(info)


class _SocketCachingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _SocketCachingStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _SocketCachingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# httpcore's exceptions as httpx's (the client catches httpx's). Looked up along the
# exception's class hierarchy, so the most specific one wins.
_AS_HTTPX: Final[dict[type[Exception], type[httpx.TransportError]]] = {
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
}


def as_httpx_error(err: Exception) -> httpx.TransportError | None:
    """httpx's counterpart of an httpcore exception (its text kept), or None."""
    for kind in type(err).__mro__:
        counterpart = _AS_HTTPX.get(kind)
        if counterpart is not None:
            return counterpart(str(err))
    return None


def small_pool(connections: int, tls: ssl.SSLContext) -> httpcore.AsyncConnectionPool:
    """An httpcore pool (public API) whose connections cache their socket."""
    return httpcore.AsyncConnectionPool(
        ssl_context=tls,
        max_connections=connections,
        max_keepalive_connections=connections,
        network_backend=_SocketCachingBackend(),
    )


class SpreadTransport(httpx.AsyncBaseTransport):
    """Several small httpcore pools under httpx's transport interface; each request goes
    to the pool with the fewest in flight. The body is read before returning (answers
    here are small JSON), so the connection is free again when the client sees it."""

    def __init__(self, connections: int, *, per_pool: int = CONNECTIONS_PER_POOL) -> None:
        count = max(1, -(-connections // per_pool))
        # One TLS context for all pools: each new one re-reads the CA bundle (~50 ms of CPU).
        tls = httpx.create_ssl_context()
        self._pools = [small_pool(per_pool, tls) for _ in range(count)]
        self._busy = [0] * count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._pools)), key=self._busy.__getitem__)
        url = request.url
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        self._busy[index] += 1
        try:
            answer = await self._pools[index].handle_async_request(core)
            try:
                body = await answer.aread()
            finally:
                await answer.aclose()
        except Exception as err:
            mapped = as_httpx_error(err)
            if mapped is None:
                raise
            raise mapped from err
        finally:
            self._busy[index] -= 1
        return httpx.Response(
            answer.status, headers=answer.headers, content=body, extensions=answer.extensions
        )

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()

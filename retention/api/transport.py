"""The API client's HTTP/1.1 transport, under httpx's transport interface: requests
written straight to asyncio sockets (TLS by asyncio's own ssl support), answers read by
api.http11 as their bytes arrive, connections kept alive and reused.

Below `AsyncClient.request`, httpx's own transport goes through httpcore's pool and
h11's state machine, with several passes through the event loop per request: a third
of a deletion's CPU (docs/BENCHMARKS.md, issue 18.1). Here a request costs one write,
one future and the parse of its answer. The exceptions stay httpx's and mean what they
mean from httpcore, which the client's rules on what may have taken effect rely on
(tests/api/test_lean_transport.py checks them side by side).
"""

# Each of httpx's timeouts (connect, write, read, pool) ends in its own exception type,
# so they are passed as figures to where each applies, not as one outer scope.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import math
import re
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import anyio
import httpx

from retention.api.http11 import RawResponse, ResponseParser, decoded_body
from retention.api.sockets import input_poller, is_socket_readable

if TYPE_CHECKING:
    import select

    from retention.api.pools import SpreadTransport

# -- the lean HTTP/1.1 transport ------------------------------------------------------

_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET: Final = re.compile(rb"[\x21-\x7e]+")
_BAD_VALUE: Final = re.compile(rb"[\x00\r\n]")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def request_bytes(request: httpx.Request, body: bytes) -> bytes:
    """The request line, the headers and the body as they go on the wire. A method,
    target or header that would break the framing raises httpx.LocalProtocolError,
    as h11 does (nothing of the offending value is shown)."""
    method, target = request.method.encode("ascii"), request.url.raw_path
    if _TOKEN.fullmatch(method) is None or _TARGET.fullmatch(target) is None:
        raise httpx.LocalProtocolError("illegal request line")
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    chunked = False
    for name, value in request.headers.raw:
        if _TOKEN.fullmatch(name) is None or _BAD_VALUE.search(value) is not None:
            raise httpx.LocalProtocolError("illegal header name or value")
        if name.lower() == b"transfer-encoding":
            chunked = value.strip().lower() == b"chunked"
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    if chunked:
        parts += (b"%x\r\n" % len(body), body, b"\r\n0\r\n\r\n") if body else (b"0\r\n\r\n",)
    elif body:
        parts.append(body)
    return b"".join(parts)


# A request extension: called with the status code as soon as the response's last byte
# is parsed, before the waiting task runs (the gate may free the request's place then).
ON_ANSWER: Final = "retention.on_answer"


def _has_body(request: httpx.Request) -> bool:
    """httpx frames every request with content by Content-Length or Transfer-Encoding."""
    return any(
        name.lower() in (b"content-length", b"transfer-encoding") for name, _ in request.headers.raw
    )


def _read_error(exc: BaseException) -> httpx.ReadError:
    err = httpx.ReadError(str(exc) or type(exc).__name__)
    err.__cause__ = exc
    return err


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time. The response is read
    as its bytes come in (no task is woken before it is complete)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: tuple[str, str, int]) -> None:
        self.loop = loop
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._socket: socket.socket | None = None
        self._poller: select.poll | None = None
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[RawResponse] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False
        self._last_read = 0.0
        self._read_timeout = 0.0
        self._timer: asyncio.TimerHandle | None = None  # the read deadline, re-armed
        self._on_answer: Callable[[int], None] | None = None  # ON_ANSWER of this request

    # asyncio's callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._socket = transport.get_extra_info("socket")
        self._poller = input_poller(self._socket)

    def data_received(self, data: bytes) -> None:
        waiter, parser = self._waiter, self._parser
        if waiter is None or parser is None or waiter.done():
            self.abort()  # bytes nobody asked for: this connection cannot be trusted
            return
        self._last_read = self.loop.time()
        try:
            response = parser.feed(data)
        except httpx.RemoteProtocolError as err:
            waiter.set_exception(err)
            self.abort()
            return
        if response is not None:
            try:
                self._answered(response.status)
            finally:
                waiter.set_result(response)

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_exception(httpx.WriteError("connection lost while writing"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _ended(self, exc: BaseException | None) -> None:
        self.closed = True
        waiter, parser = self._waiter, self._parser
        if waiter is None or parser is None or waiter.done():
            return
        if exc is not None:
            waiter.set_exception(_read_error(exc))
            return
        try:
            response = parser.feed_eof()
        except httpx.RemoteProtocolError as err:
            waiter.set_exception(err)
            return
        try:
            self._answered(response.status)
        finally:
            waiter.set_result(response)

    def _answered(self, status: int) -> None:
        on_answer, self._on_answer = self._on_answer, None
        if on_answer is not None:
            on_answer(status)

    # ours

    def reusable(self) -> bool:
        """Open, idle and not readable (an idle connection with bytes or EOF waiting is
        dead or confused: it is never sent a request)."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        return not is_socket_readable(self._socket, self._poller)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(
        self,
        data: bytes,
        *,
        head_only: bool,
        read_timeout: float | None,
        write_timeout: float | None,
        on_answer: Callable[[int], None] | None = None,
    ) -> RawResponse:
        """Send one request, return its response; the connection is left for the caller
        to keep or abort."""
        transport = self.transport
        if self.closed or transport is None:
            raise httpx.ConnectError("connection closed before the request was sent")
        self._parser = ResponseParser(head_only=head_only)
        waiter: asyncio.Future[RawResponse] = self.loop.create_future()
        self._waiter = waiter
        self._on_answer = on_answer
        try:
            try:
                transport.write(data)
            except (OSError, RuntimeError) as err:  # a transport closing under us
                raise httpx.WriteError(str(err) or type(err).__name__) from err
            if self._paused:
                await self._drain(write_timeout)
            if read_timeout is not None and not waiter.done():
                self._read_timeout = read_timeout
                self._last_read = self.loop.time()
                self._timer = self.loop.call_later(read_timeout, self._read_deadline, waiter)
            return await waiter
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._waiter = self._parser = None
            self._on_answer = None

    def _read_deadline(self, waiter: asyncio.Future[RawResponse]) -> None:
        """httpcore's read timeout: this long without a byte (re-armed when some came)."""
        if waiter.done():
            return
        quiet = self.loop.time() - self._last_read
        if quiet < self._read_timeout:
            self._timer = self.loop.call_later(
                self._read_timeout - quiet, self._read_deadline, waiter
            )
            return
        waiter.set_exception(httpx.ReadTimeout("timed out"))
        self.abort()

    async def _drain(self, timeout: float | None) -> None:
        drained = self._drained = self.loop.create_future()
        timer = None
        if timeout is not None:
            timer = self.loop.call_later(timeout, _time_out_write, drained)
        try:
            await drained
        finally:
            if timer is not None:
                timer.cancel()
            self._drained = None


def _time_out_write(drained: asyncio.Future[None]) -> None:
    if not drained.done():
        drained.set_exception(httpx.WriteTimeout("timed out"))


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive over asyncio's own sockets and TLS, under httpx's
    transport interface: an httpx.Request in, an httpx.Response (body read, gzip and
    deflate undone) out, httpx's exceptions as httpcore raises them:

    - ConnectError / ConnectTimeout: no connection (refused, DNS, TLS handshake, or
      `connect` seconds passed); PoolTimeout: no free connection within `pool`
      seconds. Nothing of the request was sent.
    - WriteTimeout / WriteError, ReadTimeout (`read` seconds without a byte), ReadError
      (the connection broke), RemoteProtocolError (it ended before a whole response,
      or the response is malformed or over a limit, see api.http11): the request
      may have been sent.

    At most `connections` in use at once; idle ones are reused newest first. `tls`:
    the context for https (default: httpx's, verifying against certifi's CAs). asyncio
    only: under another event loop (trio), requests go through SpreadTransport.
    """

    def __init__(self, connections: int, *, tls: ssl.SSLContext | None = None) -> None:
        self._limit = max(1, connections)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(self._limit)
        self._idle: list[_Connection] = []
        self._open = 0
        self._tls = tls  # None: httpx's verifying context, made when first needed
        self._other_loops: SpreadTransport | None = None

    def tls_context(self) -> ssl.SSLContext:
        """httpx's verifying context (certifi's CAs), made on the first https request:
        reading the CA bundle costs ~50 ms of CPU that an http run never needs."""
        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        return self._tls

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if self._other_loops is None:
                from retention.api.pools import SpreadTransport

                self._other_loops = SpreadTransport(self._limit)
            return await self._other_loops.handle_async_request(request)
        if loop is not self._loop:
            self._start(loop)
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}")
        origin = (scheme, url.raw_host.decode("ascii"), url.port or _DEFAULT_PORTS[scheme])
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        body = await request.aread() if _has_body(request) else b""
        data = request_bytes(request, body)
        await self._take_slot(timeouts.get("pool"))
        try:
            connection = self._idle_connection(origin)
            if connection is None:
                connection = await self._connect(loop, origin, timeouts.get("connect"))
            try:
                raw = await connection.exchange(
                    data,
                    head_only=request.method == "HEAD",
                    read_timeout=timeouts.get("read"),
                    write_timeout=timeouts.get("write"),
                    on_answer=request.extensions.get(ON_ANSWER),
                )
            except BaseException:
                connection.abort()
                self._open -= 1
                raise
            self._put_back(connection, raw.keep_alive)
        finally:
            self._slots.release()
        headers, content = decoded_body(raw.headers, raw.body)
        return httpx.Response(
            raw.status,
            headers=headers,
            content=content,
            extensions={"http_version": raw.http_version, "reason_phrase": raw.reason},
        )

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """A new event loop (a new `anyio.run`): connections of the last one are gone."""
        for connection in self._idle:
            connection.closed = True
        self._loop, self._idle, self._open = loop, [], 0
        self._slots = asyncio.Semaphore(self._limit)

    async def _take_slot(self, timeout: float | None) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # returns at once, without a pass through the loop
            return
        with anyio.move_on_after(timeout if timeout is not None else math.inf) as scope:
            await self._slots.acquire()
        if scope.cancelled_caught:
            raise httpx.PoolTimeout("no free connection in time")

    def _idle_connection(self, origin: tuple[str, str, int]) -> _Connection | None:
        """The newest idle connection to `origin` still fit for use; dead ones go."""
        idle = self._idle
        for index in range(len(idle) - 1, -1, -1):
            connection = idle[index]
            if not connection.reusable():
                del idle[index]
                connection.abort()
                self._open -= 1
            elif connection.origin == origin:
                del idle[index]
                return connection
        return None

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, origin: tuple[str, str, int], timeout: float | None
    ) -> _Connection:
        if self._open >= self._limit and self._idle:  # make room: the oldest idle one goes
            self._idle.pop(0).close()
            self._open -= 1
        scheme, host, port = origin
        tls = self.tls_context() if scheme == "https" else None
        connection: _Connection | None = None
        try:
            with anyio.move_on_after(timeout if timeout is not None else math.inf) as scope:
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop, origin),
                    host.strip("[]"),
                    port,
                    ssl=tls,
                    server_hostname=host.strip("[]") if tls is not None else None,
                )
        except OSError as err:  # refused, DNS, TLS handshake (ssl.SSLError), the kernel's timeout
            raise httpx.ConnectError(str(err) or type(err).__name__) from err
        if scope.cancelled_caught or connection is None:
            raise httpx.ConnectTimeout("timed out")
        self._open += 1
        return connection

    def _put_back(self, connection: _Connection, keep_alive: bool) -> None:
        if keep_alive and not connection.closed:
            self._idle.append(connection)
        else:
            connection.close()
            self._open -= 1

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        self._open -= len(idle)
        if self._other_loops is not None:
            await self._other_loops.aclose()

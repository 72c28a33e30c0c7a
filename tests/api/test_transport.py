"""The httpcore transport (api.pools, used under trio): its own socket check, the
httpcore pools it serves httpx from (public interfaces only), httpcore's errors as
httpx's, bodies read and decoded."""

from __future__ import annotations

import gzip
import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx
import pytest

from retention.api import pools as transport_module
from retention.api.sockets import input_poller, is_socket_readable


@pytest.mark.parametrize("kept_poller", [False, True])
def test_a_socket_is_readable_when_data_waits_or_the_peer_closed(kept_poller: bool) -> None:
    ours, peer = socket.socketpair()
    poller = input_poller(ours) if kept_poller else None
    with ours, peer:
        assert not is_socket_readable(ours, poller)  # an idle, live connection
        peer.sendall(b"x")
        assert is_socket_readable(ours, poller)
        assert ours.recv(1) == b"x"
        assert not is_socket_readable(ours, poller)
        peer.close()
        assert is_socket_readable(ours, poller)  # the next read returns b"": it is dead
    assert is_socket_readable(ours, poller)  # closed on our side: no descriptor


def test_a_missing_or_closed_socket_counts_as_readable() -> None:
    assert is_socket_readable(None)
    closed = socket.socket()
    closed.close()
    assert is_socket_readable(closed)


class _KeepAliveHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a second request can reuse the connection

    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def loopback_url() -> Iterator[str]:
    with _serving(_KeepAliveHandler) as url:
        yield url


@pytest.mark.anyio
async def test_requests_go_through_our_pools_and_their_socket_cache(
    loopback_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests go through httpcore pools whose network backend is ours (an upgrade of
    httpcore that stops honouring `network_backend` fails here, not silently)."""
    streams: list[transport_module._SocketCachingStream] = []
    readable_checks: list[bool] = []
    real_init = transport_module._SocketCachingStream.__init__
    real_extra = transport_module._SocketCachingStream.get_extra_info

    def counting_init(self: transport_module._SocketCachingStream, inner: Any) -> None:
        real_init(self, inner)
        streams.append(self)

    def recording_extra(self: transport_module._SocketCachingStream, info: str) -> Any:
        value = real_extra(self, info)
        if info == "is_readable":
            readable_checks.append(bool(value))
        return value

    monkeypatch.setattr(transport_module._SocketCachingStream, "__init__", counting_init)
    monkeypatch.setattr(transport_module._SocketCachingStream, "get_extra_info", recording_extra)

    spread = transport_module.SpreadTransport(connections=1)
    async with httpx.AsyncClient(transport=spread, base_url=loopback_url) as client:
        for _ in range(3):
            response = await client.get("/agents")
            assert response.json() == {"ok": True}

    # One connection, opened by our backend and reused: httpcore asked our stream, not
    # anyio's, whether the idle connection was still alive.
    assert len(streams) == 1
    assert streams[0].get_extra_info("socket") is not None  # looked up once, kept
    assert readable_checks
    assert not any(readable_checks)


class _GzipHandler(_KeepAliveHandler):
    def do_GET(self) -> None:
        body = gzip.compress(b'{"zipped": true}')
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _HangUpHandler(_KeepAliveHandler):
    def do_GET(self) -> None:
        self.close_connection = True  # reads the request, answers nothing


@pytest.mark.anyio
async def test_a_compressed_body_arrives_decoded() -> None:
    with _serving(_GzipHandler) as url:
        async with httpx.AsyncClient(transport=transport_module.SpreadTransport(2)) as client:
            response = await client.get(url + "/agents")
    assert response.json() == {"zipped": True}


@pytest.mark.anyio
async def test_httpcore_failures_come_out_as_httpx_errors() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    spread = transport_module.SpreadTransport(2)
    async with httpx.AsyncClient(transport=spread) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{closed_port}/agents")
        with _serving(_HangUpHandler) as url, pytest.raises(httpx.RemoteProtocolError):
            await client.get(url + "/agents")


def test_each_httpcore_error_has_its_httpx_counterpart() -> None:
    pairs = {
        httpcore.ReadTimeout: httpx.ReadTimeout,
        httpcore.ConnectTimeout: httpx.ConnectTimeout,
        httpcore.PoolTimeout: httpx.PoolTimeout,
        httpcore.WriteError: httpx.WriteError,
        httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
        httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    }
    for core, expected in pairs.items():
        mapped = transport_module.as_httpx_error(core("text kept"))
        assert type(mapped) is expected and str(mapped) == "text kept"
    assert transport_module.as_httpx_error(ValueError("not httpcore's")) is None

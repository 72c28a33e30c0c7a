"""The transport: its own socket check, and the httpcore pools it puts inside httpx."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from retention.api import transport as transport_module
from retention.api.transport import is_socket_readable


def test_a_socket_is_readable_when_data_waits_or_the_peer_closed() -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        assert not is_socket_readable(ours)  # an idle, live connection
        peer.sendall(b"x")
        assert is_socket_readable(ours)
        assert ours.recv(1) == b"x"
        assert not is_socket_readable(ours)
        peer.close()
        assert is_socket_readable(ours)  # the next read returns b"": the connection is dead


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


@pytest.fixture
def loopback_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeepAliveHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.anyio
async def test_requests_go_through_the_replaced_pool_and_its_socket_cache(
    loopback_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If an httpx or httpcore upgrade stops `_small_pool` from replacing httpx's pool,
    requests silently fall back to the stock pool: this test fails instead."""
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

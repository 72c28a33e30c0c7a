"""The lean HTTP/1.1 transport over loopback, against servers that answer with exact
bytes: it raises the httpx exception httpcore raises for the same misbehaviour (the
client decides from it whether a DELETE may have taken effect), reads the same
bodies, reuses connections, and speaks TLS with a verifying context."""

from __future__ import annotations

import contextlib
import datetime
import gzip
import ipaddress
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import anyio
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from retention.api.client import CartesiaClient, connect_failure
from retention.api.errors import Unreachable
from retention.api.pools import SpreadTransport
from retention.api.transport import ON_ANSWER, LeanTransport

pytestmark = pytest.mark.anyio

Script = Callable[[socket.socket], None]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def read_head(conn: socket.socket) -> bytes:
    """The request's bytes up to the blank line ('' if the client went away)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return data
        data += piece
    return data


@contextmanager
def raw_server(script: Script, *, tls: ssl.SSLContext | None = None) -> Iterator[RawServer]:
    """A loopback server that runs `script` on every connection it accepts."""
    server = RawServer(script, tls)
    try:
        yield server
    finally:
        server.close()


class RawServer:
    def __init__(self, script: Script, tls: ssl.SSLContext | None) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._script, self._tls = script, tls
        self.accepted = 0
        self.requests: list[bytes] = []
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            self._script(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        for conn in self._conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        self._accepting.join(timeout=5)


def answer(*responses: bytes) -> Script:
    """Answers each request on a connection with the next of `responses`, then waits
    for the client to close."""

    def script(conn: socket.socket) -> None:
        for response in responses:
            if not read_head(conn):
                return
            conn.sendall(response)
        while conn.recv(65536):
            pass

    return script


def transports() -> list[Callable[[], httpx.AsyncBaseTransport]]:
    return [lambda: LeanTransport(2), lambda: SpreadTransport(2)]


IDS = ["lean", "httpcore"]


async def get(
    make: Callable[[], httpx.AsyncBaseTransport], url: str, *, read: float = 5.0
) -> httpx.Response:
    timeout = httpx.Timeout(5.0, read=read)
    async with httpx.AsyncClient(transport=make(), timeout=timeout) as client:
        return await client.get(url + "/agents/calls/x")


def hang_up(conn: socket.socket) -> None:
    read_head(conn)


def reset(conn: socket.socket) -> None:
    read_head(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def silent(conn: socket.socket) -> None:
    read_head(conn)
    while conn.recv(65536):
        pass


def send_then_close(data: bytes) -> Script:
    def script(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(data)

    return script


# Misbehaviours, and the exception httpcore raises for each (checked on both sides).
FAILURES: dict[str, tuple[Script, type[httpx.TransportError]]] = {
    "hang up after the request": (hang_up, httpx.RemoteProtocolError),
    "reset after the request": (reset, httpx.ReadError),
    "status line then close": (send_then_close(b"HTTP/1.1 200 OK\r\n"), httpx.RemoteProtocolError),
    "body cut short": (
        send_then_close(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
        httpx.RemoteProtocolError,
    ),
    "chunks cut short": (
        send_then_close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"),
        httpx.RemoteProtocolError,
    ),
    "garbage status line": (
        send_then_close(b"SPDY/9 200 OK\r\n\r\n"),
        httpx.RemoteProtocolError,
    ),
    "malformed Content-Length": (
        send_then_close(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nok"),
        httpx.RemoteProtocolError,
    ),
    "unsupported transfer coding": (
        send_then_close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok"),
        httpx.RemoteProtocolError,
    ),
    "a head of 200 KiB": (
        send_then_close(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 200_000 + b"\r\n\r\n"),
        httpx.RemoteProtocolError,
    ),
}


@pytest.mark.parametrize("make", transports(), ids=IDS)
@pytest.mark.parametrize("case", FAILURES.keys())
async def test_each_misbehaviour_raises_what_httpcore_raises(
    make: Callable[[], httpx.AsyncBaseTransport], case: str
) -> None:
    script, expected = FAILURES[case]
    with raw_server(script) as server, pytest.raises(httpx.TransportError) as caught:
        await get(make, server.url)
    assert type(caught.value) is expected


@pytest.mark.parametrize("make", transports(), ids=IDS)
async def test_silence_is_a_read_timeout(make: Callable[[], httpx.AsyncBaseTransport]) -> None:
    with raw_server(silent) as server, pytest.raises(httpx.ReadTimeout):
        await get(make, server.url, read=0.2)


def trickle(conn: socket.socket) -> None:
    read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
    for byte in b"okok":
        time.sleep(0.1)
        conn.sendall(bytes([byte]))
    while conn.recv(65536):
        pass


@pytest.mark.parametrize("make", transports(), ids=IDS)
async def test_the_read_timeout_is_between_bytes_not_for_the_whole_body(
    make: Callable[[], httpx.AsyncBaseTransport],
) -> None:
    """As httpcore's: a byte every 0.1 s never trips a 0.25 s read timeout, though the
    body takes longer than that (the whole attempt is bounded by the client)."""
    with raw_server(trickle) as server:
        response = await get(make, server.url, read=0.25)
    assert response.content == b"okok"


@pytest.mark.parametrize("make", transports(), ids=IDS)
async def test_a_refused_connection_is_a_connect_error_with_its_cause(
    make: Callable[[], httpx.AsyncBaseTransport],
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(httpx.ConnectError) as caught:
        await get(make, f"http://127.0.0.1:{port}")
    assert connect_failure(caught.value) == "connection refused (nothing listens there)"


GZIPPED = gzip.compress(b'{"zipped": true}')
BODIES: dict[str, bytes] = {
    "length": OK,
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1\r\no\r\n1\r\nk\r\n0\r\n\r\n",
    "until close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok",
    "interim 100 first": b"HTTP/1.1 100 Continue\r\n\r\n" + OK,
    "gzip": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
    % (len(GZIPPED), GZIPPED),
    "404 with a body": b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
}


@pytest.mark.parametrize("make", transports(), ids=IDS)
@pytest.mark.parametrize("case", BODIES.keys())
async def test_answers_read_the_same(
    make: Callable[[], httpx.AsyncBaseTransport], case: str
) -> None:
    with raw_server(send_then_close(BODIES[case])) as server:
        response = await get(make, server.url)
    expected = {"gzip": b'{"zipped": true}', "404 with a body": b"no"}.get(case, b"ok")
    assert response.content == expected
    assert response.status_code == (404 if case == "404 with a body" else 200)


@pytest.mark.parametrize("case", BODIES.keys())
async def test_the_answer_callback_runs_once_with_the_last_byte_before_the_caller_resumes(
    case: str,
) -> None:
    """ON_ANSWER (the gate may free the request's place) is told the status as soon as
    the answer is whole, from the protocol's callback, before the waiting task runs."""
    calls: list[tuple[int, bool]] = []  # each call: the status; had the caller resumed?
    resumed = False
    request = httpx.Request(
        "GET",
        "http://placeholder/x",
        extensions={
            "timeout": {"read": 5.0},
            ON_ANSWER: lambda status: calls.append((status, resumed)),
        },
    )
    with raw_server(send_then_close(BODIES[case])) as server:
        request.url = httpx.URL(server.url + "/agents/calls/x")
        transport = LeanTransport(1)
        response = await transport.handle_async_request(request)
        resumed = True
        await transport.aclose()
    assert calls == [(response.status_code, False)]


@pytest.mark.parametrize(
    "script", [hang_up, reset, send_then_close(OK[:-1])], ids=["hang-up", "reset", "cut short"]
)
async def test_no_answer_no_callback(script: Script) -> None:
    """A request that gets no whole answer never calls ON_ANSWER: its place is freed
    when the caller leaves the gate, after the error."""
    calls: list[int] = []
    request = httpx.Request("GET", "http://placeholder/x", extensions={ON_ANSWER: calls.append})
    with raw_server(script) as server:
        request.url = httpx.URL(server.url + "/agents/calls/x")
        transport = LeanTransport(1)
        with pytest.raises(httpx.HTTPError):
            await transport.handle_async_request(request)
        await transport.aclose()
    assert calls == []


async def test_the_request_goes_out_as_httpx_built_it() -> None:
    seen: list[bytes] = []

    def script(conn: socket.socket) -> None:
        seen.append(read_head(conn))
        conn.sendall(OK)

    with raw_server(script) as server:
        async with httpx.AsyncClient(transport=LeanTransport(1)) as client:
            await client.delete(server.url + "/agents/calls/a%2Fb?x=1", headers={"X-T": "v"})
    lines = seen[0].split(b"\r\n")
    assert lines[0] == b"DELETE /agents/calls/a%2Fb?x=1 HTTP/1.1"
    assert f"Host: {server.url.removeprefix('http://')}".encode() in lines
    assert b"X-T: v" in lines


async def test_a_body_goes_out_framed() -> None:
    seen: list[bytes] = []

    def script(conn: socket.socket) -> None:
        data = read_head(conn)
        while not data.endswith(b"payload"):
            data += conn.recv(65536)
        seen.append(data)
        conn.sendall(OK)

    with raw_server(script) as server:
        async with httpx.AsyncClient(transport=LeanTransport(1)) as client:
            await client.post(server.url + "/x", content=b"payload")
    assert b"Content-Length: 7\r\n\r\npayload" in seen[0]


async def test_an_illegal_header_is_refused_before_anything_is_sent() -> None:
    with raw_server(answer(OK)) as server:
        transport = LeanTransport(1)
        request = httpx.Request("GET", server.url, headers={"X": "a"})
        request.headers._list[-1] = (b"X", b"x", b"a\r\nInjected: 1")  # past httpx's own check
        with pytest.raises(httpx.LocalProtocolError):
            await transport.handle_async_request(request)
        await transport.aclose()
    assert server.accepted == 0


async def test_keep_alive_reuses_one_connection_and_close_opens_a_new_one() -> None:
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    with raw_server(answer(OK, OK, OK)) as kept, raw_server(answer(close)) as closing:
        async with httpx.AsyncClient(transport=LeanTransport(4)) as client:
            for _ in range(3):
                assert (await client.get(kept.url)).content == b"ok"
            for _ in range(3):
                assert (await client.get(closing.url)).content == b"ok"
    assert kept.accepted == 1
    assert closing.accepted == 3


async def test_an_idle_connection_the_server_closed_is_not_used_again() -> None:
    closed = threading.Event()

    def once_then_close(conn: socket.socket) -> None:
        read_head(conn)
        conn.sendall(OK)
        conn.shutdown(socket.SHUT_WR)
        closed.set()
        while conn.recv(65536):
            pass

    with raw_server(once_then_close) as server:
        async with httpx.AsyncClient(transport=LeanTransport(1)) as client:
            await client.get(server.url)
            await anyio.to_thread.run_sync(closed.wait, 5)
            response = await client.get(server.url)  # on a new connection, no error
    assert response.content == b"ok"
    assert server.accepted == 2


async def test_bytes_nobody_asked_for_end_the_connection_not_the_answer() -> None:
    extra = OK + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno"
    with raw_server(answer(extra, OK)) as server:
        async with httpx.AsyncClient(transport=LeanTransport(1)) as client:
            assert (await client.get(server.url)).content == b"ok"
            assert (await client.get(server.url)).content == b"ok"
    assert server.accepted == 2


async def test_no_free_connection_in_time_is_a_pool_timeout() -> None:
    with raw_server(silent) as server:
        timeout = httpx.Timeout(5.0, pool=0.1)
        client = httpx.AsyncClient(transport=LeanTransport(1), timeout=timeout)
        async with client, anyio.create_task_group() as group:
            group.start_soon(client.get, server.url)  # holds the only connection
            await anyio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout):
                await client.get(server.url)
            group.cancel_scope.cancel()
    assert server.accepted == 1


async def test_a_connection_cancelled_mid_request_is_dropped_and_its_place_freed() -> None:
    with raw_server(silent) as server:
        transport = LeanTransport(1)
        async with httpx.AsyncClient(transport=transport) as client:
            with anyio.move_on_after(0.1):
                await client.get(server.url)
            with anyio.move_on_after(0.1):
                await client.get(server.url)  # the place is free again: a new connection
    assert server.accepted == 2


async def test_connecting_past_the_connect_timeout_is_a_connect_timeout() -> None:
    # A listener that never accepts, its backlog full: the next handshake never ends.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:  # without waiting: the ones past the backlog never finish
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
        try:
            timeout = httpx.Timeout(5.0, connect=0.2)
            async with httpx.AsyncClient(transport=LeanTransport(1), timeout=timeout) as client:
                with pytest.raises(httpx.ConnectTimeout):
                    await client.get(url)
        finally:
            for filler in fillers:
                filler.close()


# -- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


async def test_https_is_verified_against_the_ca_bundle(certificate: tuple[Path, Path]) -> None:
    """The default context verifies: a self-signed certificate is refused, and the
    client names the cause without the URL."""
    with raw_server(answer(OK), tls=server_tls(certificate)) as server:
        async with CartesiaClient(base_url=server.url, api_key="sk_car_tlsTest0001") as client:
            with pytest.raises(Unreachable) as caught:
                await client.first_contact()
    assert caught.value.reason.startswith("TLS certificate verification failed")


async def test_https_with_a_trusted_certificate_keeps_its_connection(
    certificate: tuple[Path, Path],
) -> None:
    trusted = ssl.create_default_context(cafile=str(certificate[0]))
    with raw_server(answer(OK, OK), tls=server_tls(certificate)) as server:
        async with httpx.AsyncClient(transport=LeanTransport(1, tls=trusted)) as client:
            for _ in range(2):
                assert (await client.get(server.url)).content == b"ok"
    assert server.accepted == 1


async def test_plain_http_on_an_https_url_fails_the_handshake() -> None:
    answers_at_once = raw_server(lambda conn: conn.sendall(OK))  # plain bytes to a ClientHello
    with answers_at_once as server, pytest.raises(httpx.ConnectError) as caught:
        await get(lambda: LeanTransport(1), server.url.replace("http:", "https:"))
    assert connect_failure(caught.value).startswith("TLS")


# -- other event loops ------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_under_trio_requests_go_through_httpcore(anyio_backend: str) -> None:
    with raw_server(answer(OK, OK)) as server:
        transport = LeanTransport(1)
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(2):
                assert (await client.get(server.url)).content == b"ok"
    assert server.accepted == 1

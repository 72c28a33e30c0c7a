"""Serve a SandboxApp over real loopback sockets with uvicorn.

`serve_in_thread` is for tests (a background thread, clean shutdown on exit);
`serve_forever` is the `retention sandbox` command (main thread, exits cleanly on
SIGINT/SIGTERM). The socket is bound before uvicorn starts, so port 0 yields
the real port before anything is printed or yielded.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any

import uvicorn

from retention.sandbox.app import DroppedConnection, SandboxApp

_STARTUP_TIMEOUT_S = 10.0


class _QuietDrops(logging.Filter):
    """uvicorn logs a traceback for every exception; an injected drop is not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


class _Server(uvicorn.Server):
    """Tells when it listens; and exits 0 on SIGINT/SIGTERM, where uvicorn re-raises them."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv4 or IPv6 by the host's form)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that name it,
    # and without it every small response stalls ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _config(app: SandboxApp, **extra: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,  # leave logging to the host process
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        **extra,
    )


@contextlib.contextmanager
def serve_in_thread(app: SandboxApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` from a background thread; yields its base URL, stops on exit."""
    sock = bind(host, port)
    ready = threading.Event()
    server = _Server(_config(app), on_ready=ready.set)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as err:  # reported to the caller below
            failure.append(err)
        finally:
            ready.set()  # wake the caller when startup failed

    thread = threading.Thread(target=run, name="sandbox-server", daemon=True)
    thread.start()
    try:
        ready.wait(_STARTUP_TIMEOUT_S)
        if not server.started:
            raise RuntimeError(f"sandbox server did not start: {failure[:1]!r}")
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=_STARTUP_TIMEOUT_S)
        sock.close()


def serve_forever(app: SandboxApp, sock: socket.socket, on_ready: Callable[[], None]) -> None:
    """Serve in the main thread until SIGINT/SIGTERM; `on_ready` runs once listening."""
    try:
        _Server(_config(app), on_ready=on_ready).run(sockets=[sock])
    finally:
        sock.close()

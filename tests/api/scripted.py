"""A small ASGI app whose every answer a test scripts: status, headers, body, pace.

Used in process (httpx.ASGITransport) or over loopback (the sandbox's uvicorn
runner). It records what it received, so a test can check what was sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qs

import anyio
import httpx

from retention.api.client import CartesiaClient
from retention.api.retry import RetryPolicy
from retention.sandbox import SandboxApp, serve_in_thread
from retention.sandbox.app import DroppedConnection

KEY = "sk_car_scriptedTestKey0042"
FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.005)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, str]


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b"{}"
    headers: tuple[tuple[str, str], ...] = ()
    chunk_delay: float = 0.0  # seconds between one-byte chunks: a trickling server
    drop: bool = False  # cut the connection after the status line (over loopback)


Handler = Callable[[Received], Answer]


@dataclass
class Scripted:
    handler: Handler
    received: list[Received] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        request = Received(scope["method"], scope["path"], query)
        self.received.append(request)
        answer = self.handler(request)
        headers = [(b"content-type", b"application/json")]
        headers += [(k.encode(), v.encode()) for k, v in answer.headers]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        if answer.drop:
            raise DroppedConnection("scripted drop")
        if answer.chunk_delay:
            async with anyio.create_task_group() as group:
                # Stop trickling once the client hangs up, so the server can shut down.
                group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
                for index in range(len(answer.body)):
                    await anyio.sleep(answer.chunk_delay)
                    chunk = answer.body[index : index + 1]
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                group.cancel_scope.cancel()
        else:
            await send({"type": "http.response.body", "body": answer.body})

    def count(self, method: str) -> int:
        return sum(1 for r in self.received if r.method == method)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def in_process(app: Scripted, **options: Any) -> CartesiaClient:
    options = {"retry": FAST, "api_key": KEY, **options}
    return CartesiaClient(
        base_url="http://127.0.0.1", transport=httpx.ASGITransport(app=app), **options
    )


@contextmanager
def over_loopback(app: Scripted) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1, as the sandbox is served; yields the URL."""
    with serve_in_thread(cast(SandboxApp, app)) as base_url:
        yield base_url

"""The sandbox: a Cartesia-compatible Agents API as a plain ASGI3 application.

Every API request passes the fault knobs first (limits, 5xx, drops), then auth
and version checks, then its route; `/_sandbox/...` test hooks skip all of that.
`latency_ms` is a response time: each admitted request's answer, whatever it is,
leaves that long after the request arrived, the sandbox's own work included (a
request refused by `rate` or `max_in_flight` is answered at once). Tests drive
it in-process (httpx.ASGITransport) or under uvicorn.

Where API.md is silent, the sandbox chooses (and `Behaviour` can switch):
- `next_page` is the id of the page's last call (the SDK pages by that id too),
  null on the last page; `ending_before` pages go back towards newer calls.
- A cursor that is not a call of the listed agent: 400. Unknown agent: 404.
- DELETE of a non-terminal call: 400 (or 409); of an already-redacted call:
  200 with the unchanged `redacted_at` (or a 4xx); of a ZDR call: 200 like any.
- Listings carry `transcript: null` unless `expand=transcript`; a single GET has it.
- Error bodies are `{"error": code, "message": text}`; 429s carry `Retry-After`
  (whole seconds) and `retry-after-ms`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from datetime import UTC, date, datetime
from typing import Any, Final
from urllib.parse import parse_qs

import anyio
import httpx

from retention.api.models import Call
from retention.sandbox import hooks
from retention.sandbox.data import BadCursor, Dataset, NotTerminal, UnknownAgent, UnknownCall
from retention.sandbox.faults import (
    DEFAULT_BEHAVIOUR,
    NO_FAULTS,
    Behaviour,
    Faults,
    TokenBucket,
    retry_after_headers,
)
from retention.sandbox.wire import (
    Reply,
    SandboxStats,
    agent_body,
    call_body,
    encode,
    error_reply,
    json_reply,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OLDEST_VERSION: Final = date(2026, 3, 1)
_VERSION_FORMAT: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_CALLS: Final = "/agents/calls"
_5XX: Final = (500, 502, 503, 504)


class DroppedConnection(httpx.RemoteProtocolError):
    """Raised by the app to cut a connection mid-response.

    Under uvicorn the socket closes after the status line: the client sees a broken
    response. In-process, httpx.ASGITransport re-raises it to the client as is; it
    is an httpx.RemoteProtocolError there too, so client code handles both alike.
    """


class SandboxApp:
    """ASGI3 callable serving a `Dataset`; `faults` and `behaviour` may be swapped any time."""

    def __init__(
        self,
        dataset: Dataset,
        faults: Faults = NO_FAULTS,
        api_key: str = "sk_car_sandbox",
        rng_seed: int = 0,
        *,
        behaviour: Behaviour = DEFAULT_BEHAVIOUR,
    ) -> None:
        self.dataset = dataset
        self.faults = faults
        self.behaviour = behaviour
        self.api_key = api_key
        self.stats = SandboxStats()
        self.key_revoked = False
        self._rng = random.Random(rng_seed)
        self._bucket: TokenBucket | None = None
        self._auth = f"Bearer {api_key}".encode()

    # -- Python hooks for in-process tests (the HTTP hooks call these) -------

    def revoke_key(self) -> None:
        """From now on every API request answers 401."""
        self.key_revoked = True

    def restore_key(self) -> None:
        self.key_revoked = False

    def remove_agent(self, agent_id: str) -> bool:
        """The agent vanishes: not listed, its calls answer 404."""
        return self.dataset.remove_agent(agent_id)

    def override_call(self, call_id: str, fields: Mapping[str, object]) -> Call:
        return self.dataset.override(call_id, fields)

    def reset_stats(self) -> None:
        self.stats.reset()

    # -- ASGI ---------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith("/_sandbox/"):
            reply = await hooks.handle(self, scope["method"], path, receive)
            await _send(send, reply)
            return
        await self._api(scope, send)

    async def _api(self, scope: Scope, send: Send) -> None:
        method: str = scope["method"]
        route, handler = self._route(method, scope["path"])
        stats = self.stats
        reply = self._limit(self.faults)  # refused requests never count as in flight
        if reply is None:
            stats.in_flight += 1
            stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
            try:
                reply = await self._serve(route, handler, scope, send)
            except _Failed as failure:
                reply = failure.reply
            finally:
                stats.in_flight -= 1
        stats.requests[(route, reply.status)] += 1
        await _send(send, reply)

    async def _serve(self, route: str, handler: _Handler, scope: Scope, send: Send) -> Reply:
        """Work out the answer at once, then hold it until `latency_ms` after arrival.

        The latency is the API's response time, its own work included: a page that
        takes 2 ms to build still leaves 50 ms after its request arrived, not 52.
        Every outcome leaves at that deadline, injected 5xx and drops alike.
        """
        faults = self.faults
        deadline = None
        if faults.latency_ms or faults.jitter_ms:
            jitter = self._rng.uniform(-faults.jitter_ms, faults.jitter_ms)
            deadline = anyio.current_time() + max(0.0, faults.latency_ms + jitter) / 1000
        try:
            reply = self._answer(route, handler, scope, faults)
        except _Dropped:
            await _until(deadline)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"64")],
                }
            )
            raise DroppedConnection("sandbox dropped the connection (drop_rate)") from None
        except _Failed as failure:
            reply = failure.reply
        await _until(deadline)
        return reply

    def _answer(self, route: str, handler: _Handler, scope: Scope, faults: Faults) -> Reply:
        deferred = faults.after_effect and route.startswith("DELETE")
        if not deferred:
            self._maybe_fail(route, faults)
        refused = self._check_headers(scope)
        if refused is not None:
            return refused
        reply = handler(scope)
        if deferred:
            self._maybe_fail(route, faults)
        if reply.status == 200 and faults.malformed_rate and self._roll(faults.malformed_rate):
            self.stats.malformed[route] += 1
            return Reply(200, reply.body[: len(reply.body) // 2] + b"<!-- upstream", reply.headers)
        return reply

    def _limit(self, faults: Faults) -> Reply | None:
        if faults.max_in_flight is not None and self.stats.in_flight >= faults.max_in_flight:
            wait = max(0.05, faults.latency_ms / 1000)  # a slot frees within about one latency
            return error_reply(
                429,
                "too_many_requests",
                "Too many concurrent requests.",
                *retry_after_headers(wait, faults.retry_after_ms),
            )
        if faults.rate is None:
            self._bucket = None
            return None
        if self._bucket is None or self._bucket.rate != faults.rate:
            self._bucket = TokenBucket(faults.rate)
        wait = self._bucket.take()
        if wait > 0:
            return error_reply(
                429,
                "rate_limited",
                "Rate limit exceeded.",
                *retry_after_headers(wait, faults.retry_after_ms),
            )
        return None

    def _maybe_fail(self, route: str, faults: Faults) -> None:
        if faults.drop_rate and self._roll(faults.drop_rate):
            self.stats.dropped[route] += 1
            raise _Dropped
        if faults.error_rate and self._roll(faults.error_rate):
            status = self._rng.choice(_5XX)
            raise _Failed(error_reply(status, "server_error", "Injected upstream failure."))

    def _roll(self, share: float) -> bool:
        return self._rng.random() < share

    def _check_headers(self, scope: Scope) -> Reply | None:
        auth = version = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"cartesia-version":
                version = value
        if self.key_revoked or auth != self._auth:
            return error_reply(401, "unauthorized", "Invalid or missing API key.")
        if version is None:
            return error_reply(400, "missing_version", "The Cartesia-Version header is required.")
        if not _supported_version(version.decode("latin-1")):
            return error_reply(400, "bad_version", "Unsupported Cartesia-Version.")
        return None

    # -- routes -------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[str, _Handler]:
        if path == "/agents":
            return _only(method, "GET", "GET /agents", self._list_agents)
        if path == _CALLS:
            return _only(method, "GET", "GET /agents/calls", self._list_calls)
        if path.startswith(_CALLS + "/") and path.count("/") == 3:
            if method == "DELETE":
                return "DELETE /agents/calls/{call_id}", self._delete_call
            return _only(method, "GET", "GET /agents/calls/{call_id}", self._get_call)
        if path.startswith("/agents/") and path.count("/") == 2:
            return _only(method, "GET", "GET /agents/{agent_id}", self._get_agent)
        return "other", _not_found

    def _list_agents(self, scope: Scope) -> Reply:
        plans = [self.dataset.agent_plan(a.id) for a in self.dataset.agents()]
        return json_reply(200, {"summaries": [agent_body(p) for p in plans]})

    def _get_agent(self, scope: Scope) -> Reply:
        try:
            plan = self.dataset.agent_plan(scope["path"].rsplit("/", 1)[1])
        except UnknownAgent:
            return error_reply(404, "not_found", "Agent not found.")
        return json_reply(200, agent_body(plan))

    def _list_calls(self, scope: Scope) -> Reply:
        query = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        agent_id = query.get("agent_id", [""])[0]
        if not agent_id:
            return error_reply(400, "invalid_request", "agent_id is required.")
        try:
            limit = int(query.get("limit", ["10"])[0])
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return error_reply(400, "invalid_request", "limit must be between 1 and 100.")
        after = query.get("starting_after", [None])[0] or None
        before = query.get("ending_before", [None])[0] or None
        transcripts = "transcript" in query.get("expand", [""])[0].split(",")
        self.stats.transcript_requests += transcripts
        duplicate = (
            after is not None
            and limit > 1
            and bool(self.faults.duplicate_rate)
            and self._roll(self.faults.duplicate_rate)
        )
        try:
            calls, more = self.dataset.page(
                agent_id,
                limit=limit - duplicate,
                starting_after=after,
                ending_before=before,
                transcripts=transcripts,
            )
            if duplicate and after is not None:  # the cursor's own call, served again
                repeated = self.dataset.get_call(after, transcript=transcripts)
                calls = [c for c in (repeated,) if c is not None] + calls
        except UnknownAgent:
            status = self.behaviour.unknown_agent_status
            if status == 200:
                return json_reply(200, {"data": [], "next_page": None})
            return error_reply(status, "not_found", "Agent not found.")
        except BadCursor:
            return error_reply(400, "invalid_request", "Cursor is not a call of this agent.")
        next_page = calls[-1].id if more and calls else None
        if next_page is not None and self.faults.stuck_cursor and after is not None:
            next_page = after
        return json_reply(200, {"data": [call_body(c) for c in calls], "next_page": next_page})

    def _get_call(self, scope: Scope) -> Reply:
        call = self.dataset.get_call(scope["path"].rsplit("/", 1)[1])
        if call is None:
            return error_reply(404, "not_found", "Call not found.")
        return json_reply(200, call_body(call))

    def _delete_call(self, scope: Scope) -> Reply:
        call_id = scope["path"].rsplit("/", 1)[1]
        current = self.dataset.get_call(call_id, transcript=False)
        if current is None:
            return error_reply(404, "not_found", "Call not found.")
        if current.redacted_at is not None:
            status = self.behaviour.redelete_status
            if status != 200:
                return error_reply(status, "already_redacted", "Call was already deleted.")
            return json_reply(200, call_body(current))
        try:
            redacted = self.dataset.redact(call_id, datetime.now(UTC))
        except NotTerminal:
            return error_reply(
                self.behaviour.nonterminal_delete_status,
                "invalid_status",
                "Only completed or failed calls can be deleted.",
            )
        except UnknownCall:
            return error_reply(404, "not_found", "Call not found.")
        self.stats.deletions += 1
        return json_reply(200, call_body(redacted))


_Handler = Callable[[Scope], Reply]


class _Dropped(Exception):
    """Short-circuits a request whose connection is to be cut (drop_rate)."""


class _Failed(Exception):
    """Short-circuits a request with an injected error reply."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _only(method: str, allowed: str, route: str, handler: _Handler) -> tuple[str, _Handler]:
    if method == allowed:
        return route, handler
    return route, _method_not_allowed


def _not_found(scope: Scope) -> Reply:
    return error_reply(404, "not_found", "No such route.")


def _method_not_allowed(scope: Scope) -> Reply:
    return error_reply(405, "method_not_allowed", "Method not allowed.")


def _supported_version(version: str) -> bool:
    """`2026-03-01` or any later date; anything else is refused."""
    if not _VERSION_FORMAT.fullmatch(version):
        return False
    try:
        return date.fromisoformat(version) >= OLDEST_VERSION
    except ValueError:
        return False


async def _until(deadline: float | None) -> None:
    """Sleep until `deadline` (anyio's clock); at once when it has passed or is None."""
    if deadline is not None:
        await anyio.sleep(max(0.0, deadline - anyio.current_time()))


async def _send(send: Send, reply: Reply) -> None:
    await send(
        {"type": "http.response.start", "status": reply.status, "headers": reply.raw_headers()}
    )
    await send({"type": "http.response.body", "body": reply.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


__all__ = ["DroppedConnection", "SandboxApp", "encode"]

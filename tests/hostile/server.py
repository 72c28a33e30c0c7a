"""A hostile, Cartesia-compatible Agents API (ASGI3), served by uvicorn on loopback.

Every answer is built as raw bytes, so it can be anything: a status the API
never documented, a truncated or non-JSON body, an error body carrying the API
key and personal data, a dropped connection, a DELETE that took effect before
an odd answer. What it does to one request is drawn DETERMINISTICALLY from
`Hostility.seed` and the request's identity (method, route, call id or agent id
and cursor, attempt number), never from arrival order: concurrent scheduling in
the client cannot change an example's behaviour. `Hostility` is the whole
behaviour space as a short value, so a failure reproduces from its `repr`.

The server lies only where the product cannot tell: a 2xx JSON body carrying
`redacted_at` always carries the true one, and 404 always means "no such call".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qs, unquote

import anyio
import uvicorn

from retention.sandbox.app import DroppedConnection
from retention.sandbox.server import base_url, bind
from tests.hostile.world import API_KEY, ERROR_PERSONAL, PERSON, PHONE_TO, World

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

FAULT_KINDS: Final = ("status", "odd_2xx", "bad_body", "drop", "delay", "throttle")
CLEAN_AFTER_ATTEMPTS: Final = 3  # from the 4th try of one request on, answers are honest
_CALLS: Final = "/agents/calls"
_REDACTED_KEPT: Final = (
    "id",
    "agent_id",
    "agent_name",
    "zdr_enabled",
    "redacted_at",
    "start_time",
    "end_time",
    "status",
    "end_reason",
    "deployment_id",
    "deployment_version_id",
    "deployment_region",
)


@dataclass(frozen=True)
class Hostility:
    """The behaviour space of one example; `Hostility.calm()` is a well-behaved API.

    `share` is the chance that one request (one key, one attempt) is disturbed;
    `kinds` the disturbances drawn from; `cycle` makes every later page of a
    listing repeat the first; `undecodable` puts one undecodable call on pages.
    """

    seed: int = 0
    share: float = 0.0
    kinds: tuple[str, ...] = ()
    cycle: bool = False
    undecodable: bool = False

    @staticmethod
    def calm() -> Hostility:
        return Hostility()


@dataclass(frozen=True)
class Received:
    """One API request as the server saw it, and what it did."""

    method: str
    route: str
    call_id: str | None  # decoded from the raw path, for call routes
    attempt: int
    answer: str  # e.g. "200", "202", "drop"
    took_effect: bool = False  # a DELETE that redacted the call


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()
    drop: bool = False


@dataclass
class HostileApp:
    world: World
    hostility: Hostility = field(default_factory=Hostility)
    api_key: str = API_KEY
    log: list[Received] = field(default_factory=list)
    redacted: dict[str, str] = field(default_factory=dict)  # call id -> our redacted_at
    on_request: Callable[[int], None] | None = None  # called with the request count
    _attempts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._calls = self.world.by_id()

    # -- state --------------------------------------------------------------

    def current(self, call_id: str) -> dict[str, Any] | None:
        """The call as a GET shows it now: the redacted shape once redacted."""
        spec = self._calls.get(call_id)
        if spec is None:
            return None
        body = spec.body
        when = self.redacted.get(call_id)
        if when is None and body.get("redacted_at") is None:
            return dict(body)
        kept = {k: v for k, v in body.items() if k in _REDACTED_KEPT}
        kept["redacted_at"] = when if when is not None else body["redacted_at"]
        return kept

    def deletes(self) -> list[Received]:
        return [r for r in self.log if r.method == "DELETE"]

    # -- ASGI ---------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        answer = await self._answer(scope)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(64 if answer.drop else len(answer.body)).encode()),
            *answer.headers,
        ]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        if answer.drop:
            raise DroppedConnection("hostile server dropped the connection")
        await send({"type": "http.response.body", "body": answer.body})

    async def _answer(self, scope: Scope) -> Answer:
        method: str = scope["method"]
        raw_path = bytes(scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        raw_path = raw_path.split("?", 1)[0]
        query = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        call_id: str | None = None
        if raw_path.startswith(_CALLS + "/"):
            call_id = unquote(raw_path[len(_CALLS) + 1 :])
            route, key = f"{method} /agents/calls/{{id}}", call_id
        elif raw_path == _CALLS:
            agent_id = query.get("agent_id", [""])[0]
            cursor = query.get("starting_after", [""])[0]
            route, key = "GET /agents/calls", f"{agent_id}|{cursor}"
        else:
            route, key = f"{method} {raw_path}", ""
        with self._lock:
            attempt = self._attempts.get(f"{route}|{key}", 0)
            self._attempts[f"{route}|{key}"] = attempt + 1
            count = len(self.log) + 1
        if self.on_request is not None:
            self.on_request(count)
        rng = random.Random(_digest(self.hostility.seed, route, key, attempt))
        disturbed = (
            attempt < CLEAN_AFTER_ATTEMPTS
            and bool(self.hostility.kinds)
            and rng.random() < self.hostility.share
        )
        kind = rng.choice(self.hostility.kinds) if disturbed else None
        if kind == "delay":
            await anyio.sleep(rng.choice([0.001, 0.005, 0.02, 0.08]))
            kind = None
        refused = _check_headers(scope, self.api_key)
        effect = False
        if refused is not None:
            answer = refused
        elif method == "DELETE" and call_id is not None:
            answer, effect = self._delete(call_id, kind, rng)
        elif kind is not None:
            answer = _disturbed(kind, rng, body=self._honest(method, raw_path, query, rng).body)
        else:
            answer = self._honest(method, raw_path, query, rng)
        shown = "drop" if answer.drop else str(answer.status)
        self.log.append(Received(method, route, call_id, attempt, shown, effect))
        return answer

    # -- honest answers -----------------------------------------------------

    def _honest(
        self, method: str, path: str, query: dict[str, list[str]], rng: random.Random
    ) -> Answer:
        if method != "GET":
            return _json(405, {"error_code": "method_not_allowed"})
        if path == "/agents":
            summaries = [{"id": a.id, "name": a.name} for a in self.world.agents]
            return _json(200, {"summaries": summaries})
        if path == _CALLS:
            return self._page(query, rng)
        if path.startswith(_CALLS + "/"):
            call = self.current(unquote(path[len(_CALLS) + 1 :]))
            if call is None:
                return _json(404, {"error_code": "not_found", "request_id": "req_get"})
            return _json(200, call)
        return _json(404, {"error_code": "not_found"})

    def _page(self, query: dict[str, list[str]], rng: random.Random) -> Answer:
        agent_id = query.get("agent_id", [""])[0]
        if agent_id not in {a.id for a in self.world.agents}:
            return _json(404, {"error_code": "not_found"})
        try:
            limit = max(1, min(100, int(query.get("limit", ["10"])[0])))
        except ValueError:
            limit = 10
        calls = self.world.calls_of(agent_id)
        ids = [c.id for c in calls]
        after = query.get("starting_after", [""])[0]
        start = 0
        if after:
            if after not in ids:
                return _json(400, {"error_code": "invalid_cursor", "request_id": "req_page"})
            start = ids.index(after) + 1
            if self.hostility.cycle:
                start = 0  # every later page repeats the first: a cursor cycle
        chosen = ids[start : start + limit]
        more = start + limit < len(ids)
        body: list[object] = [self.current(i) for i in chosen]
        if self.hostility.undecodable and body and rng.random() < 0.5:
            spot = rng.randrange(len(body))
            odd = dict(self.current(chosen[spot]) or {})
            odd.update(zdr_enabled="maybe", start_time="last tuesday")
            body[spot] = odd
        next_page = chosen[-1] if more and chosen else None
        return _json(200, {"data": body, "next_page": next_page})

    # -- DELETE ---------------------------------------------------------------

    def _delete(self, call_id: str, kind: str | None, rng: random.Random) -> tuple[Answer, bool]:
        spec = self._calls.get(call_id)
        if spec is None:
            return _json(404, {"error_code": "not_found", "request_id": "req_del"}), False
        before = self.current(call_id) or {}
        already = before.get("redacted_at") is not None
        terminal = spec.body.get("status") in ("completed", "failed")
        effect = False
        if not already and terminal and (kind is None or rng.random() < 0.5):
            with self._lock:
                stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                self.redacted.setdefault(call_id, stamp)
            effect = True
        now = self.current(call_id) or {}
        if kind is None:
            if not terminal and not already:
                return _json(400, {"error_code": "invalid_status", "request_id": "r1"}), effect
            return _json(200, now), effect
        if kind == "status" and not effect and not already and rng.random() < 0.2:
            return _json(404, {"error_code": "not_found", "request_id": "req_del"}), effect
        return _disturbed(kind, rng, body=_encode(now)), effect


def _disturbed(kind: str, rng: random.Random, *, body: bytes) -> Answer:
    """A disturbed answer of `kind`; `body` is what an honest 200 would have carried."""
    if kind == "drop":
        return Answer(200, b"", drop=True)
    if kind == "throttle":
        headers = rng.choice(
            [
                ((b"retry-after-ms", b"20"),),
                ((b"retry-after", b"0"),),
                ((b"retry-after", b"1"), (b"retry-after-ms", b"5")),
                (),
            ]
        )
        return Answer(429, _error_body(rng), headers)
    if kind == "odd_2xx":
        status = rng.choice([200, 202, 204])
        shapes = [b"", b'{"status":"accepted"}', body[: len(body) // 2], b"<html>ok</html>"]
        return Answer(status, rng.choice(shapes))
    if kind == "bad_body":
        status = rng.choice([200, 500, 503])
        return Answer(status, rng.choice([body[: len(body) // 3], _error_body(rng), b"\xff\xfe"]))
    status = rng.choice([301, 302, 400, 409, 422, 429, 500, 503])
    extra: list[tuple[bytes, bytes]] = []
    if rng.random() < 0.5:
        extra.append((b"x-should-retry", rng.choice([b"true", b"false"])))
    if rng.random() < 0.3:
        extra.append((b"retry-after-ms", rng.choice([b"10", b"oops", b"-5"])))
    if status in (301, 302):
        extra.append((b"location", f"http://127.0.0.1:9/{API_KEY}".encode()))
    return Answer(status, _error_body(rng), tuple(extra))


def _error_body(rng: random.Random) -> bytes:
    """An error body: plain, or carrying the key and personal data in some encoding."""
    escaped_key = "".join(f"\\u{ord(c):04x}" for c in API_KEY)
    choices = [
        _encode({"error_code": "upstream_error", "request_id": "req_abc123"}),
        _encode({"error_code": "bad", "message": f"key {API_KEY} for {ERROR_PERSONAL}"}),
        f'{{"error_code":"x","message":"{escaped_key} {PERSON}"}}'.encode(),
        f"upstream said: Authorization: Bearer {API_KEY}; caller {PHONE_TO}".encode(),
        b"",
    ]
    return rng.choice(choices)


def _check_headers(scope: Scope, api_key: str) -> Answer | None:
    headers = dict(scope["headers"])
    if headers.get(b"authorization") != f"Bearer {api_key}".encode():
        return _json(401, {"error_code": "unauthorized"})
    if b"cartesia-version" not in headers:
        return _json(400, {"error_code": "missing_version"})
    return None


def _digest(*parts: object) -> int:
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _encode(value: object) -> bytes:
    return json.dumps(value).encode()


def _json(status: int, value: object) -> Answer:
    return Answer(status, _encode(value))


@contextlib.contextmanager
def serving(app: HostileApp) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1, port 0, from a thread; yields the base URL."""
    sock = bind("127.0.0.1", 0)
    config = uvicorn.Config(
        app, lifespan="on", log_config=None, log_level="critical", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(1000):
            if server.started:
                break
            threading.Event().wait(0.01)
        assert server.started, "hostile server did not start"
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

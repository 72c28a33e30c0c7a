"""The async client of the Cartesia Agents API: HTTP in, typed models and typed errors out.

One pooled `httpx.AsyncClient` per `CartesiaClient`. Every attempt, retries included,
passes through the shared gate (rate and in-flight limits), so retries never storm.
Nothing here logs or raises the API key, a call's id or any personal data.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self, TypeVar
from urllib.parse import quote

import anyio
import httpx
import msgspec

from retention import __version__
from retention.api.errors import (
    ApiError,
    AuthError,
    InsecureBaseURL,
    MalformedResponse,
    MissingAPIKey,
    NotFound,
    PaginationError,
    Rejected,
    RetriesExhausted,
    TransportFailure,
    Unavailable,
    excerpt,
)
from retention.api.models import API_VERSION, Agent, AgentList, Call, CallPage
from retention.api.retry import RetryPolicy, parse_retry_after
from retention.api.transport import SpreadTransport
from retention.log import get_logger

T = TypeVar("T")
Method = Literal["GET", "DELETE"]

# Explicit, so that a hung server never hangs a run: connect fast, reads may be slow.
DEFAULT_TIMEOUT_SECONDS: Final = 30.0


def request_timeout(seconds: float) -> httpx.Timeout:
    """Timeouts from one figure: read and write `seconds`, connecting at most 10 s."""
    return httpx.Timeout(
        connect=min(10.0, seconds), read=seconds, write=seconds, pool=max(60.0, seconds)
    )


DEFAULT_TIMEOUT: Final = request_timeout(DEFAULT_TIMEOUT_SECONDS)
MAX_PAGE_SIZE: Final = 100
# Failures after which the request may have reached the server (and a DELETE taken effect).
_MAYBE_DELIVERED: Final = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
_TRANSIENT_TRANSPORT: Final = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
_TIME_FIELDS: Final = ("start_time", "end_time", "redacted_at")
_AGENT_TIME_FIELDS: Final = ("created_at", "updated_at", "deleted_at")

_HOST: Final = re.compile(r"[A-Za-z0-9.\-]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")  # name, IPv4, IPv6

_log = get_logger(__name__)


class Gate(Protocol):
    """Admission control shared by every request (implemented by run.limiter.RateLimiter)."""

    def slot(self) -> AbstractAsyncContextManager[None]:
        """Wait for a rate token and an in-flight place; hold the place while inside."""
        ...

    def throttled(self, retry_after: float | None) -> None:
        """A 429 was answered: slow down, pause everyone for `retry_after` seconds."""
        ...

    def succeeded(self) -> None:
        """A request went through: recover gradually."""
        ...


class _OpenGate:
    """No limits: for one-off use; a run always passes its RateLimiter."""

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        yield

    def throttled(self, retry_after: float | None) -> None:
        pass

    def succeeded(self) -> None:
        pass


@dataclass
class ClientStats:
    """Counters of what went over the wire; bounded (keyed by status, not by call)."""

    requests: int = 0  # attempts sent, retries included
    retries: int = 0
    throttled: int = 0  # 429s answered
    transport_errors: int = 0  # timeouts, refused and dropped connections
    malformed: int = 0  # 2xx bodies that did not decode
    deletes_resent: int = 0  # DELETEs sent again after an attempt that may have taken effect
    by_status: Counter[int] = field(default_factory=Counter)


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: the only hosts plain http:// may reach."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str) -> httpx.URL:
    """Parse and vet the base URL before any connection: https, or http to loopback only."""
    try:
        url = httpx.URL(base_url.strip())
    except (httpx.InvalidURL, TypeError) as err:
        raise InsecureBaseURL(f"malformed base URL: {err}", where="base URL") from None
    shown = url.copy_with(username=None, password=None) if url.userinfo else url
    if url.scheme not in ("http", "https") or not _HOST.fullmatch(url.host):
        raise InsecureBaseURL(
            f"{shown} is not an http(s) URL with a host", where="base URL"
        ) from None
    if url.userinfo:
        raise InsecureBaseURL(
            f"{shown} must not carry credentials; use the API key", where="base URL"
        )
    if url.query or url.fragment:
        raise InsecureBaseURL(f"{shown} must not have a query or fragment", where="base URL")
    if url.scheme == "http" and not is_loopback_host(url.host):
        raise InsecureBaseURL(
            f"plain http:// is refused for {url.host}, which is not loopback "
            "(127.0.0.0/8, ::1, localhost); use https://",
            where="base URL",
        )
    return url


def _check_api_key(api_key: str | None) -> str:
    key = (api_key or "").strip()
    if not key:
        raise MissingAPIKey("no API key: set CARTESIA_API_KEY or pass --api-key-file")
    if any(ch.isspace() for ch in key) or not key.isascii() or not key.isprintable():
        raise MissingAPIKey("the API key contains spaces or unprintable characters")
    return key


def _aware(value: datetime | None) -> datetime | None:
    """The API's timestamps are UTC; a zone-less one is read as UTC, never as local time."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _with_aware_times(item: T, names: tuple[str, ...]) -> T:
    naive = {
        name: _aware(getattr(item, name))
        for name in names
        if (value := getattr(item, name)) is not None and value.tzinfo is None
    }
    return msgspec.structs.replace(item, **naive) if naive else item  # type: ignore[type-var]


def _decode_call(body: bytes) -> Call:
    return _with_aware_times(msgspec.json.decode(body, type=Call), _TIME_FIELDS)


def _decode_page(body: bytes) -> CallPage:
    page = msgspec.json.decode(body, type=CallPage)
    calls = tuple(_with_aware_times(call, _TIME_FIELDS) for call in page.data)
    return msgspec.structs.replace(page, data=calls)


def _decode_agents(body: bytes) -> list[Agent]:
    agents = msgspec.json.decode(body, type=AgentList).summaries
    return [_with_aware_times(agent, _AGENT_TIME_FIELDS) for agent in agents]


class CartesiaClient:
    """Typed access to the few Agents API endpoints a retention run needs."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        gate: Gate | None = None,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, so sharing it is safe
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 64,
    ) -> None:
        self.base_url = check_base_url(base_url)
        self._api_key = _check_api_key(api_key)
        self.gate: Gate = gate if gate is not None else _OpenGate()
        self.retry = retry
        self.stats = ClientStats()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {self._api_key}",
                "Cartesia-Version": API_VERSION,
                "Accept": "application/json",
                "User-Agent": f"cartesia-retention/{__version__}",
            },
            timeout=timeout,
            # Small pools with cached sockets: httpcore's single pool costs milliseconds of
            # CPU per request at dozens of connections (see api/transport.py).
            transport=transport if transport is not None else SpreadTransport(max_connections),
            follow_redirects=False,  # a redirect is an answer to show, not to follow blindly
        )

    def __repr__(self) -> str:
        return f"CartesiaClient(base_url={str(self.base_url)!r})"

    async def __aenter__(self) -> Self:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- endpoints -------------------------------------------------------------------

    async def list_agents(self) -> list[Agent]:
        """Every agent, deleted ones included (their calls still fall under retention)."""
        return await self._request("GET", "/agents", "/agents", _decode_agents)

    async def get_call(self, call_id: str) -> Call:
        return await self._request(
            "GET", "/agents/calls/{call_id}", _call_path(call_id), _decode_call
        )

    async def delete_call(self, call_id: str) -> Call:
        """Redact a call; returns the call as the API now has it (`redacted_at` set).

        Raises Rejected on 400/409/422 (already redacted? not terminal?): read the call
        again to know. `err.resent` says an earlier attempt may already have redacted it.
        """
        return await self._request(
            "DELETE", "/agents/calls/{call_id}", _call_path(call_id), _decode_call
        )

    async def iter_calls(
        self, agent_id: str, *, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncIterator[Call]:
        """Every call of one agent, newest first, page by page.

        Pages by `starting_after` = the last call's id, as the official SDK does against
        the real API, since `next_page`'s form is undocumented; `next_page` serves as the
        end signal (null ends) and as a check: a `next_page` equal to the cursor just
        sent, a page ending on that cursor, or a page of nothing new means the listing
        does not advance, and PaginationError is raised (before yielding that page)
        rather than looping forever. An empty page ends too. Calls repeated from the
        page just before (a list shifting under us) are skipped; only that page's ids
        are remembered, so memory stays flat however many calls the agent has.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}")
        cursor: str | None = None
        previous_ids: frozenset[str] = frozenset()
        while True:
            params = {"agent_id": agent_id, "limit": str(page_size)}
            if cursor is not None:
                params["starting_after"] = cursor
            page = await self._request(
                "GET", "/agents/calls", "/agents/calls", _decode_page, params=params
            )
            if not page.data:
                return
            fresh = [call for call in page.data if call.id not in previous_ids]
            last_id = page.data[-1].id
            stuck = not fresh or last_id == cursor
            if stuck and page.next_page is None:
                return  # nothing new, and the server says this is the end anyway
            if stuck or (cursor is not None and page.next_page == cursor):
                raise PaginationError(
                    None,
                    "the list of calls does not advance: the API answered the same cursor again",
                    method="GET",
                    route="/agents/calls",
                )
            for call in fresh:
                yield call
            if page.next_page is None:
                return
            cursor = last_id
            previous_ids = frozenset(call.id for call in page.data)

    # -- one request, with retries ---------------------------------------------------

    async def _request(
        self,
        method: Method,
        route: str,
        path: str,
        decode: Callable[[bytes], T],
        *,
        params: Mapping[str, str] | None = None,
    ) -> T:
        attempt = 0
        throttles = 0  # 429 answers so far: bounded apart from the other failures
        maybe_delivered = False  # an earlier attempt may have reached the server
        while True:
            attempt += 1
            if method == "DELETE" and maybe_delivered:
                self.stats.deletes_resent += 1
            retry_after: float | None = None
            failure: ApiError
            try:
                async with self.gate.slot():
                    self.stats.requests += 1
                    response = await self._http.request(method, path, params=params)
            except _TRANSIENT_TRANSPORT as err:
                self.stats.transport_errors += 1
                delivered = isinstance(err, _MAYBE_DELIVERED)
                failure = TransportFailure(
                    None,
                    f"{type(err).__name__}: {excerpt(str(err), secret=self._api_key)}",
                    method=method,
                    route=route,
                    attempts=attempt,
                    resent=maybe_delivered,
                )
                maybe_delivered = maybe_delivered or delivered
                if not self.retry.retry_transport_errors:
                    raise RetriesExhausted(failure, attempts=attempt) from None
            except httpx.HTTPError as err:  # not transient (e.g. a protocol misuse): no retry
                raise ApiError(
                    None,
                    f"{type(err).__name__}: {excerpt(str(err), secret=self._api_key)}",
                    method=method,
                    route=route,
                    attempts=attempt,
                    resent=maybe_delivered,
                ) from None
            else:
                status = response.status_code
                self.stats.by_status[status] += 1
                body = excerpt(response.text, secret=self._api_key) if status >= 300 else ""
                common: dict[str, Any] = {
                    "method": method,
                    "route": route,
                    "attempts": attempt,
                    "resent": maybe_delivered,
                }
                if 200 <= status < 300:
                    try:
                        value = decode(response.content)
                    except (msgspec.DecodeError, UnicodeDecodeError) as err:
                        self.stats.malformed += 1
                        failure = MalformedResponse(status, f"{type(err).__name__}", **common)
                        if not self.retry.retry_malformed:
                            raise failure from None
                    else:
                        self.gate.succeeded()
                        return value
                else:
                    if status == 429:
                        self.stats.throttled += 1
                        throttles += 1
                        retry_after = parse_retry_after(response.headers)
                        self.gate.throttled(retry_after)
                    elif status < 500 and status != 408:
                        self.gate.succeeded()  # the API is keeping up; this answer is final
                    if status >= 500:
                        maybe_delivered = True
                    if status in (401, 403):
                        raise AuthError(status, body, **common)
                    transient = status in (408, 429) or status >= 500
                    if not self.retry.retryable_status(method, status, response.headers):
                        if status == 404:
                            raise NotFound(status, body, **common)
                        if transient:  # the server said x-should-retry: false
                            failure = Unavailable(status, body, **common)
                            raise RetriesExhausted(failure, attempts=attempt)
                        if 400 <= status < 500:
                            raise Rejected(status, body, **common)
                        raise ApiError(status, body, **common)  # 1xx/3xx: unexpected
                    if status != 429:
                        retry_after = parse_retry_after(response.headers)
                    failure = Unavailable(status, body, **common)
            if failure.status == 429 and throttles <= self.retry.max_throttled:
                pass  # paced by the limiter's shared pause, not a failed attempt
            elif attempt - throttles >= self.retry.max_attempts or failure.status == 429:
                raise RetriesExhausted(failure, attempts=attempt)
            delay = self.retry.delay(attempt, retry_after)
            _log.info(
                "api.retry",
                method=method,
                route=route,
                status=failure.status,
                error=type(failure).__name__,
                attempt=attempt,
                delay=round(delay, 3),
            )
            self.stats.retries += 1
            await anyio.sleep(delay)


def _call_path(call_id: str) -> str:
    if not call_id or call_id in (".", ".."):
        raise ValueError("a call id must be a non-empty path segment")
    return f"/agents/calls/{quote(call_id, safe='')}"

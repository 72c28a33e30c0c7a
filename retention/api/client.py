"""The async client of the Cartesia Agents API: HTTP in, typed models and typed errors out.

One pooled `httpx.AsyncClient` per `CartesiaClient`. Every attempt, retries included,
passes through the shared gate (rate and in-flight limits), so retries never storm.
Nothing here logs or raises the API key, a call's id or any personal data.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self, TypeVar
from urllib.parse import quote

import anyio
import httpx
import msgspec

from retention import __version__
from retention.api.decode import decode_agents, decode_call, decode_page
from retention.api.errors import (
    ApiError,
    AuthError,
    InsecureBaseURL,
    InvalidId,
    MalformedResponse,
    MissingAPIKey,
    NotFound,
    PaginationError,
    Rejected,
    RetriesExhausted,
    TransportFailure,
    Unavailable,
    Unreachable,
    error_identity,
)
from retention.api.ids import id_problem, is_valid_id
from retention.api.models import API_VERSION, Agent, Call, UnreadableCall
from retention.api.paging import CursorCycle
from retention.api.retry import RetryPolicy, parse_retry_after
from retention.api.transport import SpreadTransport
from retention.log import get_logger, register_secret

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
CALL_ROUTE: Final = "/agents/calls/{call_id}"
LIST_ROUTE: Final = "/agents/calls"
# Answers that say the server did not act on the request (see ApiError).
CLEAR_REFUSALS: Final = frozenset({401, 403, 404, 429})
# Failures that happen before any byte of the request is sent.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_TRANSIENT_TRANSPORT: Final = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
WHOLE_REQUEST_TIMEOUT: Final = "WholeRequestTimeout"  # the --timeout bound on one attempt

_HOST: Final = re.compile(r"[A-Za-z0-9.\-]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")  # name, IPv4, IPv6

_log = get_logger(__name__)


class Gate(Protocol):
    """Admission control shared by every request (implemented by api.limiter.RateLimiter)."""

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


def _require_id(value: str, *, method: Method, route: str) -> str:
    problem = id_problem(value)
    if problem is not None:
        raise InvalidId(problem, method=method, route=route)
    return value


def _call_path(call_id: str, method: Method) -> str:
    """The URL path of one call; an id that may not go into a URL raises InvalidId."""
    _require_id(call_id, method=method, route=CALL_ROUTE)
    return f"/agents/calls/{quote(call_id, safe='')}"


def _whole_request_seconds(timeout: float | httpx.Timeout) -> float:
    """The bound on one attempt, sending and the whole body included: `--timeout`."""
    if isinstance(timeout, httpx.Timeout):
        return timeout.read if timeout.read is not None else DEFAULT_TIMEOUT_SECONDS
    return float(timeout)


@dataclass(slots=True)
class _Attempts:
    """One request's progress through its attempts."""

    method: Method
    route: str
    count: int = 0  # attempts so far, 429s included
    throttles: int = 0  # 429 answers so far: bounded apart from the other failures
    reached: bool = False  # an earlier attempt may have taken effect (see ApiError)
    started: float | None = None  # when the first attempt was let through the gate
    first_contact: bool = False  # a connect failure ends it at once (Unreachable)

    def common(self, effect: bool) -> dict[str, Any]:
        """The fields every error of the current attempt carries."""
        return {
            "method": self.method,
            "route": self.route,
            "attempts": self.count,
            "resent": self.reached,
            "may_have_taken_effect": self.reached or effect,
        }


@dataclass(frozen=True, slots=True)
class _Retry:
    """A failed attempt worth another: the failure and the server's requested wait."""

    failure: ApiError
    retry_after: float | None = None


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
        register_secret(self._api_key)
        self.gate: Gate = gate if gate is not None else _OpenGate()
        self.retry = retry
        # One attempt (connect, send, the whole body read) ends after this many seconds.
        self.request_seconds = _whole_request_seconds(timeout)
        # All attempts of one request, their waits and 429s included, end after this.
        self.budget_seconds = retry.time_budget(self.request_seconds)
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
        """Every agent, deleted ones included (their calls still fall under retention).

        Agents whose id is not a usable id (see api.ids) are returned as they are:
        the caller decides; `iter_calls` refuses them with InvalidId.
        """
        return await self._request("GET", "/agents", "/agents", decode_agents)

    async def first_contact(self) -> list[Agent]:
        """`list_agents` as a run's first request: a failure to connect at all (refused,
        DNS, TLS, connect timeout) raises Unreachable at once instead of retrying, so a
        wrong base URL is reported in seconds. Other failures are retried as usual."""
        return await self._request("GET", "/agents", "/agents", decode_agents, first=True)

    async def get_call(self, call_id: str) -> Call:
        """One call. InvalidId before sending for an unusable id; a body that does not
        decode is MalformedResponse (retried first), never an UnreadableCall."""
        return await self._request("GET", CALL_ROUTE, _call_path(call_id, "GET"), decode_call)

    async def delete_call(self, call_id: str) -> Call:
        """Redact a call; returns the call as the API answered it (2xx with a Call body).

        Raises NotFound on 404 and, for every other answer, an ApiError whose
        `may_have_taken_effect` says whether any attempt may have redacted the call:
        AuthError (401/403), Rejected (other 4xx), RetriesExhausted (5xx, 408, 429,
        dropped or timed out, after retries), MalformedResponse (a 2xx whose body is
        not a Call: never resent, always `may_have_taken_effect`), ApiError (1xx/3xx),
        InvalidId (before sending). The caller reads the call to learn what happened.
        """
        return await self._request("DELETE", CALL_ROUTE, _call_path(call_id, "DELETE"), decode_call)

    async def iter_calls(
        self, agent_id: str, *, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncIterator[Call | UnreadableCall]:
        """Every call of one agent, newest first, page by page.

        An entry that does not decode into a Call comes as an UnreadableCall in its
        place: the rest of the page and the listing go on. An agent id that may not
        go into a URL raises InvalidId before anything is sent.

        Pages by `starting_after` = the last entry's id, as the official SDK does
        against the real API, since `next_page`'s form is undocumented; `next_page`
        serves as the end signal (null ends) and, when the last entry has no usable
        id, as the cursor. The listing ends with PaginationError, before yielding
        the offending page, when it does not advance (`next_page` echoing the cursor
        sent, a page ending on that cursor, a page of nothing new), when a page ends
        where an earlier one ended (api.paging: exact over the last 64 pages; a longer
        cycle is caught by Brent's method within a few rounds, after yielding calls
        already yielded), or when a page holds a call that started after the oldest
        call already yielded (calls come newest first; null times are ignored).
        Calls repeated from the page just before (a list shifting under us) are
        skipped. Memory stays flat however many calls the agent has.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}")
        _require_id(agent_id, method="GET", route=LIST_ROUTE)
        cursor: str | None = None
        cycle = CursorCycle()
        previous_ids: frozenset[str] = frozenset()
        oldest: datetime | None = None  # the oldest start_time yielded so far
        while True:
            params = {"agent_id": agent_id, "limit": str(page_size)}
            if cursor is not None:
                params["starting_after"] = cursor
            page = await self._request("GET", LIST_ROUTE, LIST_ROUTE, decode_page, params=params)
            if not page.entries:
                return
            fresh = [e for e in page.entries if e.id is None or e.id not in previous_ids]
            last_id = page.entries[-1].id
            stuck = not fresh or (last_id is not None and last_id == cursor)
            if stuck and page.next_page is None:
                return  # nothing new, and the server says this is the end anyway
            if stuck or (cursor is not None and page.next_page == cursor):
                raise _pagination("the list of calls does not advance: the same cursor again")
            following = _cursor_after(last_id, page.next_page)
            if following is not None and cycle.seen(following):
                raise _pagination("the list of calls repeats a page already listed")
            times = [e.start_time for e in fresh if isinstance(e, Call) and e.start_time]
            if times and oldest is not None and max(times) > oldest:
                raise _pagination("the list of calls went back to newer calls")
            if times:
                oldest = min(times) if oldest is None else min(oldest, *times)
            for entry in fresh:
                yield entry
            if page.next_page is None:
                return
            if following is None:
                raise _pagination("the list of calls cannot go on: no usable cursor after a page")
            cursor = following
            previous_ids = frozenset(e.id for e in page.entries if e.id is not None)

    # -- one request, with retries ---------------------------------------------------

    async def _request(
        self,
        method: Method,
        route: str,
        path: str,
        decode: Callable[[bytes], T],
        *,
        params: Mapping[str, str] | None = None,
        first: bool = False,
    ) -> T:
        """Attempts until one succeeds, one fails for good, or the bounds are reached."""
        attempts = _Attempts(method, route, first_contact=first)
        while True:
            attempts.count += 1
            answer = await self._attempt(attempts, path, decode, params)
            if not isinstance(answer, _Retry):
                self.gate.succeeded()
                return answer
            delay = self._retry_delay(attempts, answer)
            _log.info(
                "api.retry",
                method=method,
                route=route,
                status=answer.failure.status,
                error=type(answer.failure).__name__,
                error_code=answer.failure.error_code,
                request_id=answer.failure.request_id,
                attempt=attempts.count,
                delay=round(delay, 3),
            )
            self.stats.retries += 1
            await anyio.sleep(delay)

    async def _attempt(
        self,
        attempts: _Attempts,
        path: str,
        decode: Callable[[bytes], T],
        params: Mapping[str, str] | None,
    ) -> T | _Retry:
        """One attempt: the decoded value, a failure worth retrying, or a raised error."""
        method = attempts.method
        if method == "DELETE" and attempts.reached:
            self.stats.deletes_resent += 1
        try:
            async with self.gate.slot():
                if attempts.started is None:
                    attempts.started = anyio.current_time()
                self.stats.requests += 1
                with anyio.fail_after(self.request_seconds):
                    response = await self._http.request(method, path, params=params)
        except (httpx.ConnectError, httpx.ConnectTimeout) as err:
            if attempts.first_contact:
                self.stats.transport_errors += 1
                raise Unreachable(
                    None, reason=connect_failure(err), **attempts.common(False)
                ) from None
            return self._transport_failure(attempts, err)
        except (TimeoutError, *_TRANSIENT_TRANSPORT) as err:
            return self._transport_failure(attempts, err)
        except httpx.HTTPError as err:  # not transient (e.g. a protocol misuse): no retry
            raise ApiError(
                None, reason=type(err).__name__, **attempts.common(not isinstance(err, _NOT_SENT))
            ) from None
        try:
            return self._classify(attempts, response, decode)
        finally:
            attempts.reached = attempts.reached or response.status_code not in CLEAR_REFUSALS

    def _transport_failure(self, attempts: _Attempts, err: Exception) -> _Retry:
        self.stats.transport_errors += 1
        # httpx's text may hold the URL (and so a call's id): only the class is kept.
        reason = WHOLE_REQUEST_TIMEOUT if isinstance(err, TimeoutError) else type(err).__name__
        sent = not isinstance(err, _NOT_SENT)
        failure = TransportFailure(None, reason=reason, **attempts.common(sent))
        attempts.reached = attempts.reached or sent
        if not self.retry.retry_transport_errors:
            raise RetriesExhausted(failure, attempts=attempts.count) from None
        return _Retry(failure)

    def _classify(
        self, attempts: _Attempts, response: httpx.Response, decode: Callable[[bytes], T]
    ) -> T | _Retry:
        """An answer: the decoded value, a retryable failure, or the error to raise."""
        status = response.status_code
        self.stats.by_status[status] += 1
        common = attempts.common(status not in CLEAR_REFUSALS)
        if 200 <= status < 300:
            try:
                return decode(response.content)
            except (msgspec.DecodeError, UnicodeDecodeError) as err:
                self.stats.malformed += 1
                failure = MalformedResponse(status, reason=type(err).__name__, **common)
                # A DELETE answered 2xx may have taken effect: never send it again.
                if attempts.method == "DELETE" or not self.retry.retry_malformed:
                    raise failure from None
                return _Retry(failure)
        error_code, request_id = error_identity(response.content)
        common.update(error_code=error_code, request_id=request_id)
        retry_after: float | None = None
        if status == 429:
            self.stats.throttled += 1
            attempts.throttles += 1
            retry_after = parse_retry_after(response.headers)
            self.gate.throttled(retry_after)
        elif status < 500 and status != 408:
            self.gate.succeeded()  # the API is keeping up; this answer is final
        if status in (401, 403):
            raise AuthError(status, **common)
        if not self.retry.retryable_status(attempts.method, status, response.headers):
            if status == 404:
                raise NotFound(status, **common)
            if status in (408, 429) or status >= 500:  # the server said x-should-retry: false
                raise RetriesExhausted(Unavailable(status, **common), attempts=attempts.count)
            if 400 <= status < 500:
                raise Rejected(status, **common)
            raise ApiError(status, **common)  # 1xx/3xx: unexpected
        if status != 429:
            retry_after = parse_retry_after(response.headers)
        return _Retry(Unavailable(status, **common), retry_after)

    def _retry_delay(self, attempts: _Attempts, answer: _Retry) -> float:
        """How long to wait before the next attempt; raises when there is none."""
        failure = answer.failure
        throttled = failure.status == 429
        if throttled and attempts.throttles <= self.retry.max_throttled:
            pass  # paced by the limiter's shared pause, not a failed attempt
        elif throttled or attempts.count - attempts.throttles >= self.retry.max_attempts:
            raise RetriesExhausted(failure, attempts=attempts.count)
        delay = self.retry.delay(attempts.count, answer.retry_after)
        started = attempts.started if attempts.started is not None else anyio.current_time()
        if anyio.current_time() - started + delay > self.budget_seconds:
            raise RetriesExhausted(failure, attempts=attempts.count, budget_spent=True)
        return delay


def _cursor_after(last_id: str | None, next_page: str | None) -> str | None:
    """Where the next page starts: the page's last entry's id, else `next_page`, and
    only when usable as an id (api.ids); None when neither is."""
    for candidate in (last_id, next_page):
        if candidate is not None and is_valid_id(candidate):
            return candidate
    return None


def _pagination(reason: str) -> PaginationError:
    return PaginationError(None, method="GET", route=LIST_ROUTE, reason=reason)


def connect_failure(err: BaseException) -> str:
    """Why a connection failed, in words, from the exception chain (never the URL)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return "DNS lookup failed (no such host?)"
        if isinstance(current, ssl.SSLCertVerificationError):
            detail = current.verify_message or "certificate not trusted"
            return f"TLS certificate verification failed ({detail})"
        if isinstance(current, ssl.SSLError):
            return "TLS handshake failed (is it an https server?)"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused (nothing listens there)"
        if isinstance(current, httpx.ConnectTimeout | TimeoutError):
            return "no answer to the connection (connect timeout)"
        current = current.__cause__ or current.__context__
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).lower()
    if "name or service not known" in text or "nodename nor servname" in text:
        return "DNS lookup failed (no such host?)"
    if "connection refused" in text:
        return "connection refused (nothing listens there)"
    if "ssl" in text or "certificate" in text:
        return "TLS handshake failed"
    return type(err).__name__

"""The async client of the Cartesia Agents API: HTTP in, typed models and typed errors out.

In layers, each a small step (as httpx is): a request is built once from parts prepared
at start (`_Requests`); each attempt passes the shared gate (rate and in-flight limits,
so retries never storm) and comes back as a value or a typed failure (`_attempt`,
`answer_error`); the retry policy says whether that failure is worth another attempt
and how long to wait (api.retry); `ClientStats` counts. All attempts of one request
share a time budget. Nothing here logs or raises the API key, a call's id or any
personal data.
"""

from __future__ import annotations

import socket
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self, TypeVar
from urllib.parse import quote, urlencode

import anyio
import httpx
import msgspec

from retention import __version__, defaults
from retention.api.decode import decode_agents, decode_call, decode_page
from retention.api.errors import (
    ApiError,
    AuthError,
    InvalidId,
    MalformedResponse,
    NotFound,
    Rejected,
    RetriesExhausted,
    TransportFailure,
    Unavailable,
    Unreachable,
    error_identity,
)
from retention.api.ids import id_problem
from retention.api.models import API_VERSION, Agent, Call, UnreadableCall
from retention.api.paging import LIST_ROUTE, PageWalk
from retention.api.retry import GiveUp, RetryPolicy, parse_retry_after
from retention.api.transport import ON_ANSWER, LeanTransport
from retention.log import get_logger, register_secret
from retention.settings import check_api_key, check_base_url, ignored_proxy

T = TypeVar("T")
Method = Literal["GET", "DELETE"]

# Explicit, so that a hung server never hangs a run: connect fast, reads may be slow.
DEFAULT_TIMEOUT_SECONDS: Final = defaults.TIMEOUT_SECONDS


def request_timeout(seconds: float) -> httpx.Timeout:
    """Timeouts from one figure: read and write `seconds`, connecting at most 10 s."""
    return httpx.Timeout(
        connect=min(10.0, seconds), read=seconds, write=seconds, pool=max(60.0, seconds)
    )


DEFAULT_TIMEOUT: Final = request_timeout(DEFAULT_TIMEOUT_SECONDS)
MAX_PAGE_SIZE: Final = 100
CALL_ROUTE: Final = "/agents/calls/{call_id}"
# Answers that say the server did not act on the request (see ApiError).
CLEAR_REFUSALS: Final = frozenset({401, 403, 404, 429})
# Failures that happen before any byte of the request is sent.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_CONNECT_FAILED: Final = (httpx.ConnectError, httpx.ConnectTimeout)
_TRANSIENT_TRANSPORT: Final = (
    TimeoutError,
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
WHOLE_REQUEST_TIMEOUT: Final = "WholeRequestTimeout"  # the --timeout bound on one attempt

_log = get_logger(__name__)


Answered = Callable[[], None]


def _release_on_success(answered: Answered) -> Callable[[int], None]:
    """The transport's ON_ANSWER: a success frees its place before its task runs again.
    An error answer keeps it until handled: a 401 closes the gate and a 429 cuts the
    limit before anyone else is let in."""

    def on_answer(status: int) -> None:
        if 200 <= status < 300:
            answered()

    return on_answer


class Gate(Protocol):
    """Admission control shared by every request (implemented by api.limiter.RateLimiter)."""

    def slot(self, *, ahead: bool = False) -> AbstractAsyncContextManager[Answered | None]:
        """Wait for a rate token and an in-flight place; hold the place while inside.
        `ahead`: a read the run's other work waits on (a page, a call's state), let in
        before the requests already waiting, where the gate queues them. It may yield a
        callable that frees the place early: the transport calls it once the answer's
        last byte is in (`transport.ON_ANSWER`)."""
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
    async def slot(self, *, ahead: bool = False) -> AsyncIterator[Answered | None]:
        yield None

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

    def failed(self, failure: ApiError) -> None:
        """Count one failed attempt by its kind."""
        if isinstance(failure, TransportFailure | Unreachable):
            self.transport_errors += 1
        elif isinstance(failure, MalformedResponse):
            self.malformed += 1
        elif failure.status == 429:
            self.throttled += 1


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


def answer_error(status: int, *, retryable: bool, **common: Any) -> ApiError:
    """The typed error of an answer that is not 2xx (`common`: see `_Attempts.common`)."""
    if status in (401, 403):
        return AuthError(status, **common)
    if retryable or status in (408, 429) or status >= 500:
        return Unavailable(status, **common)
    if status == 404:
        return NotFound(status, **common)
    if 400 <= status < 500:
        return Rejected(status, **common)
    return ApiError(status, **common)  # 1xx/3xx: unexpected


def transport_error(err: Exception, *, first_contact: bool, **common: Any) -> ApiError:
    """The typed error of an attempt that got no answer. httpx's text may hold the URL
    (and so a call's id): only the exception's class is kept."""
    if first_contact and isinstance(err, _CONNECT_FAILED):
        return Unreachable(None, reason=connect_failure(err), **common)
    if isinstance(err, _TRANSIENT_TRANSPORT):
        reason = WHOLE_REQUEST_TIMEOUT if isinstance(err, TimeoutError) else type(err).__name__
        return TransportFailure(None, reason=reason, **common)
    return ApiError(None, reason=type(err).__name__, **common)  # e.g. a protocol misuse


def gave_up(failure: ApiError, attempts: int) -> ApiError:
    """What a failure that gets no further attempt raises: a transient one is wrapped."""
    if isinstance(failure, Unavailable | TransportFailure):
        return RetriesExhausted(failure, attempts=attempts)
    return failure


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
class _Failed:
    """A failed attempt: its typed failure, whether it is worth another attempt, and
    the wait the server asked for."""

    failure: ApiError
    retryable: bool
    retry_after: float | None = None


class _Requests:
    """httpx.Requests built from parts prepared once: the origin and path prefix of the
    base URL, every header (Host included) and the timeouts. `AsyncClient.request`
    would merge the URL, headers and cookies again for every request, a sixth of the
    CPU of a deletion (docs/BENCHMARKS.md)."""

    def __init__(self, base_url: httpx.URL, api_key: str, timeout: httpx.Timeout) -> None:
        netloc = base_url.netloc.decode("ascii")
        path = base_url.raw_path.decode("ascii").rstrip("/")
        self._prefix = f"{base_url.scheme}://{netloc}{path}"
        self._headers = httpx.Headers(
            {
                "Host": netloc,
                "Authorization": f"Bearer {api_key}",
                "Cartesia-Version": API_VERSION,
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
                "Connection": "keep-alive",
                "User-Agent": f"cartesia-retention/{__version__}",
            }
        )
        self._extensions = {"timeout": timeout.as_dict()}

    def build(self, method: str, path: str, params: Mapping[str, str] | None) -> httpx.Request:
        url = self._prefix + path
        if params:
            url += "?" + urlencode(params, quote_via=quote)
        return httpx.Request(method, url, headers=self._headers, extensions=self._extensions)


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
        self._api_key = check_api_key(api_key)
        register_secret(self._api_key)
        self.gate: Gate = gate if gate is not None else _OpenGate()
        self.retry = retry
        # One attempt (connect, send, the whole body read) ends after this many seconds.
        self.request_seconds = _whole_request_seconds(timeout)
        # All attempts of one request, their waits and 429s included, end after this.
        self.budget_seconds = retry.time_budget(self.request_seconds)
        self.stats = ClientStats()
        # Our own HTTP/1.1 transport: httpcore and h11 were a third of a deletion's CPU
        # (see api/transport.py). Requests go straight to the transport (httpx's
        # interface): no cookies, no redirects.
        self._transport = transport if transport is not None else LeanTransport(max_connections)
        self._requests = _Requests(self.base_url, self._api_key, httpx.Timeout(timeout))
        if transport is None and (variable := ignored_proxy(self.base_url)) is not None:
            _log.warning(
                "api.proxy_ignored",
                variable=variable,
                hint="the job connects to the API directly, never through a proxy: let it"
                " reach the API, or name the API's host in NO_PROXY to say that is meant",
            )

    def __repr__(self) -> str:
        return f"CartesiaClient(base_url={str(self.base_url)!r})"

    async def __aenter__(self) -> Self:
        await self._transport.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._transport.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        await self._transport.aclose()

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
        walk = PageWalk()
        while True:
            params = {"agent_id": agent_id, "limit": str(page_size)}
            if walk.cursor is not None:
                params["starting_after"] = walk.cursor
            page = await self._request("GET", LIST_ROUTE, LIST_ROUTE, decode_page, params=params)
            for entry in walk.take(page):
                yield entry
            if not walk.advance():
                return

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
        request = self._requests.build(method, path, params)
        attempts = _Attempts(method, route, first_contact=first)
        while True:
            attempts.count += 1
            outcome = await self._attempt(attempts, request, decode)
            if not isinstance(outcome, _Failed):
                self.gate.succeeded()
                return outcome
            self.stats.failed(outcome.failure)
            delay = self._wait(attempts, outcome)
            self.stats.retries += 1
            _log_retry(attempts, outcome.failure, delay)
            await anyio.sleep(delay)

    def _wait(self, attempts: _Attempts, outcome: _Failed) -> float:
        """The wait before the next attempt; raises the failure when there is none."""
        failure = outcome.failure
        if not outcome.retryable:
            raise gave_up(failure, attempts.count) from None
        started = attempts.started if attempts.started is not None else anyio.current_time()
        wait = self.retry.next_wait(
            attempts=attempts.count,
            throttles=attempts.throttles,
            throttled=failure.status == 429,
            retry_after=outcome.retry_after,
            spent=anyio.current_time() - started,
            budget=self.budget_seconds,
        )
        if isinstance(wait, GiveUp):
            budget_spent = wait is GiveUp.BUDGET
            raise RetriesExhausted(failure, attempts=attempts.count, budget_spent=budget_spent)
        return wait

    async def _attempt(
        self, attempts: _Attempts, request: httpx.Request, decode: Callable[[bytes], T]
    ) -> T | _Failed:
        """One attempt through the gate: the decoded value or a typed failure."""
        if attempts.method == "DELETE" and attempts.reached:
            self.stats.deletes_resent += 1
        try:
            # Reads go ahead of waiting DELETEs: a page feeds every worker, and a page
            # queued behind a full gate's DELETEs would slow its agent's whole chain. Not
            # once answered 429: a retry let straight in would spend its 429 budget in
            # the first second of a storm, before the limits have come down to the API's.
            ahead = attempts.method == "GET" and not attempts.throttles
            async with self.gate.slot(ahead=ahead) as answered:
                if answered is not None:  # a fresh dict: the built ones share theirs
                    on_answer = _release_on_success(answered)
                    request.extensions = {**request.extensions, ON_ANSWER: on_answer}
                if attempts.started is None:
                    attempts.started = anyio.current_time()
                self.stats.requests += 1
                with anyio.fail_after(self.request_seconds):
                    response = await self._transport.handle_async_request(request)
                    await response.aread()  # ours has read it; in-process ones have not
        except (TimeoutError, httpx.HTTPError) as err:
            sent = not isinstance(err, _NOT_SENT)
            failure = transport_error(
                err, first_contact=attempts.first_contact, **attempts.common(sent)
            )
            attempts.reached = attempts.reached or sent
            return _Failed(failure, self.retry.is_retryable(attempts.method, failure, {}))
        try:
            return self._answer(attempts, response, decode)
        finally:
            attempts.reached = attempts.reached or response.status_code not in CLEAR_REFUSALS

    def _answer(
        self, attempts: _Attempts, response: httpx.Response, decode: Callable[[bytes], T]
    ) -> T | _Failed:
        """An answer: the decoded value, or a typed failure (the gate told of its pace)."""
        status, headers, method = response.status_code, response.headers, attempts.method
        self.stats.by_status[status] += 1
        if 200 <= status < 300:
            try:
                return decode(response.content)
            except (msgspec.DecodeError, UnicodeDecodeError) as err:
                reason = type(err).__name__
                failure: ApiError = MalformedResponse(
                    status, reason=reason, **attempts.common(True)
                )
                return _Failed(failure, self.retry.is_retryable(method, failure, headers))
        common = attempts.common(status not in CLEAR_REFUSALS)
        error_code, request_id = error_identity(response.content)
        retryable = self.retry.retryable_status(method, status, headers)
        failure = answer_error(
            status, retryable=retryable, error_code=error_code, request_id=request_id, **common
        )
        retry_after = parse_retry_after(headers)
        self._pace(attempts, status, retry_after)
        return _Failed(failure, retryable, retry_after)

    def _pace(self, attempts: _Attempts, status: int, retry_after: float | None) -> None:
        """Tell the shared gate what an answer says of the API's pace."""
        if status == 429:
            attempts.throttles += 1
            self.gate.throttled(retry_after)
        elif status < 500 and status != 408:
            self.gate.succeeded()  # the API is keeping up; this answer is final


def _log_retry(attempts: _Attempts, failure: ApiError, delay: float) -> None:
    _log.info(
        "api.retry",
        method=attempts.method,
        route=attempts.route,
        status=failure.status,
        error=type(failure).__name__,
        error_code=failure.error_code,
        request_id=failure.request_id,
        attempt=attempts.count,
        delay=round(delay, 3),
    )


_DNS_FAILED: Final = "DNS lookup failed (no such host?)"
_REFUSED: Final = "connection refused (nothing listens there)"
# Causes found in an exception's chain, in words (checked in this order).
_CAUSES: Final[tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...]] = (
    (socket.gaierror, _DNS_FAILED),
    (ssl.SSLError, "TLS handshake failed (is it an https server?)"),
    (ConnectionRefusedError, _REFUSED),
    ((httpx.ConnectTimeout, TimeoutError), "no answer to the connection (connect timeout)"),
)
# Failing that, what the message says (lowercased).
_TEXT_CAUSES: Final = (
    ("name or service not known", _DNS_FAILED),
    ("nodename nor servname", _DNS_FAILED),
    ("connection refused", _REFUSED),
    ("ssl", "TLS handshake failed"),
    ("certificate", "TLS handshake failed"),
)


def connect_failure(err: BaseException) -> str:
    """Why a connection failed, in words, from the exception chain (never the URL)."""
    for current in _chain(err):
        words = _cause_in_words(current)
        if words is not None:
            return words
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).lower()
    return next((words for needle, words in _TEXT_CAUSES if needle in text), type(err).__name__)


def _chain(err: BaseException) -> Iterator[BaseException]:
    """`err`, then its causes and contexts, each once."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _cause_in_words(err: BaseException) -> str | None:
    if isinstance(err, ssl.SSLCertVerificationError):
        detail = err.verify_message or "certificate not trusted"
        return f"TLS certificate verification failed ({detail})"
    return next((words for kind, words in _CAUSES if isinstance(err, kind)), None)

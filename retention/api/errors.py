"""Typed errors of the API client.

Each carries the HTTP status (None when no answer came), the method, the route
*template* (never a call's id) and, when the API's error body holds them as short
plain tokens, its `error_code` and `request_id`. Nothing else of a response body is
kept anywhere: not in the error, its message, its repr, nor any log line. None ever
holds the request, its headers or the API key.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from retention.log import scrub_text

_TOKEN: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_LETTER: Final = re.compile(r"[A-Za-z]")


class _ErrorIdentity(msgspec.Struct):
    error_code: object = None
    request_id: object = None


def plain_token(value: object) -> str | None:
    """`value` when it is a short plain token safe to show, else None.

    At most 64 characters of `A-Z a-z 0-9 _ . : -`, at least one of them a letter
    (so a phone number or another bare number never passes), and nothing key-like.
    """
    if not isinstance(value, str) or _TOKEN.fullmatch(value) is None:
        return None
    if _LETTER.search(value) is None or "sk_car" in value.lower():
        return None
    return value if scrub_text(value) == value else None


def error_identity(body: bytes) -> tuple[str | None, str | None]:
    """The API's (`error_code`, `request_id`) from an error body, each only when it is
    a plain token (see `plain_token`); the rest of the body is never read."""
    try:
        found = msgspec.json.decode(body, type=_ErrorIdentity)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return None, None
    return plain_token(found.error_code), plain_token(found.request_id)


class ApiError(Exception):
    """The API answered something other than success, or could not be reached.

    `may_have_taken_effect` is True when any attempt of this request, this one
    included, may have reached the server and was not answered with a clear refusal.
    Exactly: an attempt counts unless it was never sent (refused connection, connect
    or pool timeout, refused by the gate) or its answer was 401, 403, 404 or 429,
    which say the server did not act. Any other answer (2xx, 3xx, every other 4xx,
    5xx) and every failure after the request may have been written (read or write
    timeout or error, dropped connection, the whole-request deadline) counts.
    `resent` is the same fact for the attempts before the last one only.
    """

    def __init__(
        self,
        status: int | None,
        *,
        method: str = "",
        route: str = "",
        attempts: int = 1,
        resent: bool = False,
        may_have_taken_effect: bool = False,
        error_code: str | None = None,
        request_id: str | None = None,
        reason: str = "",
    ) -> None:
        self.status = status
        self.method = method
        self.route = route
        self.attempts = attempts
        self.resent = resent
        self.may_have_taken_effect = may_have_taken_effect or resent
        self.error_code = plain_token(error_code)
        self.request_id = plain_token(request_id)
        # Our own words (an exception class name, "time budget spent"), never a body.
        self.reason = scrub_text(reason)
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.method} {self.route}: " if self.method else ""
        if self.status is not None:
            what = f"HTTP {self.status}"
        else:
            what = "not sent" if self.attempts == 0 else "no response"
        ids = [
            f"{name}={value}"
            for name, value in (("error_code", self.error_code), ("request_id", self.request_id))
            if value is not None
        ]
        detail = ", ".join(([self.reason] if self.reason else []) + ids)
        return f"{where}{what} ({detail})" if detail else f"{where}{what}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._message()!r})"


class AuthError(ApiError):
    """401/403: the key is wrong or lacks the right. Never retried; the run stops."""


class NotFound(ApiError):
    """404: no such agent or call."""


class Rejected(ApiError):
    """Any other 4xx (400, 409, 422...). Not retried: after a DELETE, the caller reads
    the call again to learn whether it was already redacted or is no longer terminal."""


class Unavailable(ApiError):
    """A transient answer: 408, 429 or 5xx. Retried; surfaces wrapped in RetriesExhausted."""


class TransportFailure(ApiError):
    """No usable answer: timeout, refused or dropped connection. Retried like Unavailable.
    Only the exception's class name is kept: httpx's text may hold the URL."""


class Unreachable(ApiError):
    """The first request of a run could not connect at all (refused, DNS, TLS, connect
    timeout): the base URL is wrong or the API is down. Not retried; `reason` says why
    in words (no URL: the caller names it)."""


class MalformedResponse(ApiError):
    """A 2xx whose body is not the JSON the API documents (e.g. truncated). A GET is
    retried; a DELETE never is (it may have taken effect): the caller reads the call."""


class PaginationError(ApiError):
    """The list of an agent's calls does not advance, repeats itself or goes back in
    time: stopping that agent's listing beats looping forever."""


class InvalidId(ApiError):
    """An id that must never go into a URL (see api.ids). Raised before anything is
    sent, so `attempts` is 0 and nothing may have taken effect."""

    def __init__(self, problem: str, *, method: str, route: str) -> None:
        super().__init__(
            None, method=method, route=route, attempts=0, reason=f"invalid id: {problem}"
        )
        self.problem = problem


class RetriesExhausted(ApiError):
    """Gave up on a transient failure after `attempts` tries or once the request's time
    budget was spent; `cause` is the last failure."""

    def __init__(self, cause: ApiError, *, attempts: int, budget_spent: bool = False) -> None:
        self.cause = cause
        self.budget_spent = budget_spent
        why = "time budget spent" if budget_spent else f"gave up after {attempts} attempts"
        last = f"{type(cause).__name__}: {cause.reason}" if cause.reason else type(cause).__name__
        super().__init__(
            cause.status,
            method=cause.method,
            route=cause.route,
            attempts=attempts,
            resent=cause.resent,
            may_have_taken_effect=cause.may_have_taken_effect,
            error_code=cause.error_code,
            request_id=cause.request_id,
            reason=f"{why}, last {last}",
        )

"""Typed errors of the API client.

Each carries the HTTP status (None when no answer came), the method and the route
*template* (never a call's id or any personal data) and a trimmed, scrubbed excerpt
of the response body. None ever holds the request, its headers or the API key.
"""

from __future__ import annotations

from typing import Final

from retention.errors import UserError
from retention.log import scrub_text

BODY_EXCERPT_CHARS: Final = 200


def excerpt(text: str, *, secret: str | None = None, limit: int = BODY_EXCERPT_CHARS) -> str:
    """One line of at most `limit` characters, with anything key-like blanked out."""
    if secret:
        text = text.replace(secret, "[redacted]")
    text = scrub_text(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ApiError(Exception):
    """The API answered something other than success, or could not be reached."""

    def __init__(
        self,
        status: int | None,
        body: str = "",
        *,
        method: str = "",
        route: str = "",
        attempts: int = 1,
        resent: bool = False,
    ) -> None:
        self.status = status
        self.body = excerpt(body)
        self.method = method
        self.route = route
        self.attempts = attempts
        # True when an earlier attempt of this request may already have reached the
        # server (timeout, dropped connection, 5xx): a DELETE may then have taken effect.
        self.resent = resent
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.method} {self.route}: " if self.method else ""
        what = f"HTTP {self.status}" if self.status is not None else "no response"
        return f"{where}{what}: {self.body}" if self.body else f"{where}{what}"

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
    """No usable answer: timeout, refused or dropped connection. Retried like Unavailable."""


class MalformedResponse(ApiError):
    """A 2xx whose body is not the JSON the API documents (e.g. truncated). Retried."""


class PaginationError(ApiError):
    """The list of an agent's calls does not advance: stopping beats looping forever."""


class RetriesExhausted(ApiError):
    """Gave up on a transient failure after `attempts` tries; `cause` is the last one."""

    def __init__(self, cause: ApiError, *, attempts: int) -> None:
        self.cause = cause
        super().__init__(
            cause.status,
            f"gave up after {attempts} attempts ({type(cause).__name__}): {cause.body}",
            method=cause.method,
            route=cause.route,
            attempts=attempts,
            resent=cause.resent,
        )


class InsecureBaseURL(UserError):
    """A base URL that is malformed, or plain http:// to a host that is not loopback."""


class MissingAPIKey(UserError):
    """No API key, or a blank one."""

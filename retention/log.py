"""One structlog pipeline for the whole tool, set up in one place.

JSON lines when stderr is not a terminal, readable key=value when it is; always on
stderr, never amid a command's output. The last processor before rendering is a
guard that drops any value that looks like an API key and any key that names
personal data, whatever a caller passed by mistake.

The CLI's group callback configures it once for every command. Importing this module
already installs the same pipeline, so no line is ever rendered by structlog's
default (stdout, unredacted), even by code run outside the CLI.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final, TextIO, cast

import structlog
from structlog.typing import FilteringBoundLogger

# Keys whose values are personal data or secrets; never rendered.
SENSITIVE_KEYS: Final = frozenset(
    {
        "api_key",
        "authorization",
        "transcript",
        "summary",
        "error_message",
        "metadata",
        "telephony_params",
        "to",
        "from",
        "from_",
        "phone_number",
        "phone_numbers",
    }
)
_KEY_PATTERN: Final = re.compile(r"sk_car_[A-Za-z0-9_\-]+|Bearer\s+\S+")
REDACTED: Final = "[redacted]"
# Escapes a key may hide behind: JSON/Python `\uXXXX` `\UXXXXXXXX` `\xXX`, percent
# `%XX` and HTML `&#NN;`/`&#xXX;`, any hex case. A token holding one is also read
# decoded; when a key shows there, the whole token is blanked.
_ESCAPE: Final = re.compile(
    r"\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8}|\\x[0-9A-Fa-f]{2}|%[0-9A-Fa-f]{2}"
    r"|&#[0-9]{1,7};|&#[xX][0-9A-Fa-f]{1,6};"
)
_TOKEN: Final = re.compile(r"[^\s\"']+")
_DECODE_ROUNDS: Final = 4  # double (and deeper) encodings are unwrapped too
MIN_SECRET_CHARS: Final = 8  # shorter "secrets" would blank ordinary words
_MAX_SECRETS: Final = 32
_secrets: dict[str, None] = {}  # known keys, newest last (an ordered, bounded set)


def register_secret(secret: str) -> None:
    """Scrub this exact value (a configured API key) from every output, in any encoding,
    whatever its shape. Values under 8 characters are ignored."""
    if len(secret) >= MIN_SECRET_CHARS:
        _secrets.pop(secret, None)
        _secrets[secret] = None
        while len(_secrets) > _MAX_SECRETS:
            del _secrets[next(iter(_secrets))]


def _unescape_one(match: re.Match[str]) -> str:
    escape = match.group(0)
    if escape.startswith("&#"):
        body = escape[2:-1]
        code = int(body[1:], 16) if body[:1] in ("x", "X") else int(body)
    else:
        code = int(escape[2:] if escape[0] == "\\" else escape[1:], 16)
    return chr(code) if code <= 0x10FFFF else escape


def decoded_view(text: str) -> str:
    """`text` with every escape above decoded, repeatedly (a few rounds)."""
    for _ in range(_DECODE_ROUNDS):
        decoded = _ESCAPE.sub(_unescape_one, text)
        if decoded == text:
            break
        text = decoded
    return text


def _holds_secret(text: str) -> bool:
    return _KEY_PATTERN.search(text) is not None or any(s in text for s in _secrets)


def _scrub_token(match: re.Match[str]) -> str:
    token = match.group(0)
    if _ESCAPE.search(token) is None:
        return token
    return REDACTED if _holds_secret(decoded_view(token)) else token


def scrub_text(text: str) -> str:
    """Blank out anything in free text that looks like a Cartesia API key or bearer
    token, or is a registered secret, whether written plainly or escaped."""
    text = _KEY_PATTERN.sub(REDACTED, text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "\\" not in text and "%" not in text and "&#" not in text:
        return text
    return _TOKEN.sub(_scrub_token, text)


def _scrub_value(value: object) -> object:
    if isinstance(value, str):
        return scrub_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, BaseException):
        return scrub_text(f"{type(value).__name__}: {value}")
    if isinstance(value, dict):
        return {
            key: REDACTED if str(key).lower() in SENSITIVE_KEYS else _scrub_value(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub_value(item) for item in value]
    return value  # numbers, dates, enums: rendered by the renderer, nothing free-form


def redact_processor(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the last guard against secrets and personal data."""
    for key in list(event_dict):
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        elif key not in ("exc_info", "stack_info"):
            event_dict[key] = _scrub_value(event_dict[key])
    return event_dict


class _CurrentStderr:
    """Whatever `sys.stderr` is at each write: tests and callers may swap it after setup."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(
    *, json_lines: bool | None = None, level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """Configure structlog. `json_lines=None` picks JSON unless `stream` is a terminal."""
    out: Any = stream if stream is not None else _CurrentStderr()
    as_json = json_lines if json_lines is not None else not out.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    """A bound structlog logger; `run_id` is added through contextvars by the run."""
    return cast(FilteringBoundLogger, structlog.get_logger(name))


configure()  # the default until the CLI configures it (see the module's docstring)

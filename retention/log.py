"""One structlog pipeline for the whole tool, set up in one place.

JSON lines when stderr is not a terminal, readable key=value when it is. The last
processor before rendering is a guard that drops any value that looks like an
API key and any key that names personal data, whatever a caller passed by mistake.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final, TextIO

import structlog

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


def scrub_text(text: str) -> str:
    """Blank out anything in free text that looks like a Cartesia API key or bearer token."""
    return _KEY_PATTERN.sub(REDACTED, text)


def redact_processor(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the last guard against secrets and personal data."""
    for key in list(event_dict):
        value = event_dict[key]
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = scrub_text(value)
        elif isinstance(value, BaseException):
            event_dict[key] = scrub_text(f"{type(value).__name__}: {value}")
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


def get_logger(name: str | None = None) -> Any:
    """A bound structlog logger; `run_id` is added through contextvars by the run."""
    return structlog.get_logger(name)

"""Where the API key, the base URL and `--now` come from, shared by run, explain and audit.

The key comes from `--api-key-file` (a mounted secret; surrounding whitespace is
stripped) or else `CARTESIA_API_KEY`. Messages name the file or the variable,
never the value.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from retention.errors import UserError

API_KEY_ENV: Final = "CARTESIA_API_KEY"
BASE_URL_ENV: Final = "CARTESIA_BASE_URL"
DEFAULT_BASE_URL: Final = "https://api.cartesia.ai"
MAX_KEY_FILE_BYTES: Final = 4096


def resolve_api_key(api_key_file: Path | None) -> str:
    """The API key from the file when given, else from CARTESIA_API_KEY."""
    if api_key_file is not None:
        where = f"--api-key-file {api_key_file}"
        try:
            with api_key_file.open("rb") as handle:
                data = handle.read(MAX_KEY_FILE_BYTES + 1)
        except OSError as err:
            raise UserError(
                f"cannot read: {err.strerror or type(err).__name__}", where=where
            ) from None
        if len(data) > MAX_KEY_FILE_BYTES:
            raise UserError("too large to be an API key file", where=where)
        try:
            key = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise UserError("not UTF-8 text", where=where) from None
        if not key:
            raise UserError("the file is empty", where=where)
        return key
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise UserError(f"no API key: set {API_KEY_ENV} or pass --api-key-file")
    return key


def resolve_base_url(flag: str | None) -> str:
    """`--base-url`, else CARTESIA_BASE_URL, else the public API (the client vets it)."""
    if flag is not None and flag.strip():
        return flag.strip()
    return os.environ.get(BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL


def parse_now(text: str | None, flag: str = "--now") -> datetime:
    """The instant ages are measured from: `--now` (RFC 3339; UTC if no offset), else now."""
    if text is None:
        return datetime.now(UTC)
    raw = text.strip()
    try:
        moment = datetime.fromisoformat(raw[:-1] + "+00:00" if raw[-1:] in "zZ" and raw else raw)
    except ValueError:
        raise UserError(
            f"`{text}` is not an RFC 3339 time such as 2026-03-01T00:00:00Z", where=flag
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

"""Where the API key, the base URL and `--now` come from, shared by run, explain and audit,
and the checks they pass before any connection (the one place that vets a base URL).

The key comes from `--api-key-file` (a mounted secret; surrounding whitespace is
stripped) or else `CARTESIA_API_KEY`. Messages name the file or the variable,
never the value.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from retention.errors import InsecureBaseURL, MissingAPIKey, UserError
from retention.timestamps import as_utc

if TYPE_CHECKING:
    import httpx

API_KEY_ENV: Final = "CARTESIA_API_KEY"
BASE_URL_ENV: Final = "CARTESIA_BASE_URL"
DEFAULT_BASE_URL: Final = "https://api.cartesia.ai"
MAX_KEY_FILE_BYTES: Final = 4096
_HOST: Final = re.compile(r"[A-Za-z0-9.\-]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")  # name, IPv4, IPv6


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
    import httpx  # here: `validate` and `plan` never need it (~30 ms of start-up)

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


def check_api_key(api_key: str | None) -> str:
    """The key with surrounding whitespace stripped; refused (never echoed) when blank
    or holding spaces or unprintable characters."""
    key = (api_key or "").strip()
    if not key:
        raise MissingAPIKey(f"no API key: set {API_KEY_ENV} or pass --api-key-file")
    if any(ch.isspace() for ch in key) or not key.isascii() or not key.isprintable():
        raise MissingAPIKey("the API key contains spaces or unprintable characters")
    return key


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
    return as_utc(moment)


def ignored_proxy(url: httpx.URL) -> str | None:
    """The name of a proxy variable the environment sets for `url`'s scheme (HTTPS_PROXY
    or ALL_PROXY for https; in any letter case; NO_PROXY honoured), or None. The job
    does not use proxies: it connects to the API directly, and says so when one is set.
    Only the variable's name is ever shown: a proxy URL may carry credentials."""
    import urllib.request  # here: only a client is built with it

    if is_loopback_host(url.host):
        return None
    names = ("HTTPS_PROXY", "ALL_PROXY") if url.scheme == "https" else ("HTTP_PROXY", "ALL_PROXY")
    for name in names:
        for spelled in (name, name.lower()):
            if os.environ.get(spelled, "").strip():
                return None if urllib.request.proxy_bypass(url.host) else spelled
    return None

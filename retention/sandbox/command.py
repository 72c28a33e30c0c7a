"""`retention sandbox`: build the app from flags, listen, print the URL, serve until a signal."""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

from retention.errors import UserError
from retention.sandbox.app import SandboxApp
from retention.sandbox.data import Dataset, DatasetSpec
from retention.sandbox.faults import Behaviour, Faults
from retention.sandbox.server import base_url, bind, serve_forever


@dataclass(frozen=True)
class SandboxOptions:
    host: str
    port: int
    spec: DatasetSpec
    faults: Faults
    behaviour: Behaviour
    api_key: str
    allow_non_loopback: bool = False


def parse_now(text: str | None, flag: str = "--now") -> datetime:
    """An RFC 3339 instant with an offset, as UTC; the current time when not given."""
    if text is None:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"not an RFC 3339 date-time: {text!r}", where=flag) from None
    if moment.tzinfo is None:
        raise UserError(f"needs a UTC offset such as Z or +02:00: {text!r}", where=flag)
    return moment.astimezone(UTC)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run_sandbox(options: SandboxOptions) -> int:
    """Serve until SIGINT/SIGTERM; prints exactly one `serving URL` line on stdout."""
    if not options.allow_non_loopback and not is_loopback(options.host):
        raise UserError(
            f"refusing to listen on non-loopback host {options.host!r}"
            " (add --allow-non-loopback to mean it)",
            where="--host",
        )
    app = SandboxApp(
        Dataset(options.spec),
        options.faults,
        api_key=options.api_key,
        behaviour=options.behaviour,
    )
    try:
        sock = bind(options.host.strip("[]"), options.port)
    except OSError as err:
        raise UserError(
            f"cannot listen on {options.host}:{options.port}: {err.strerror}", where="--port"
        ) from None
    url = base_url(sock)

    def announce() -> None:
        sys.stdout.write(f"serving {url}\n")
        sys.stdout.flush()

    serve_forever(app, sock, on_ready=announce)
    return 0

"""`audit certificate --api`: a fresh read of each erased call, in the log's order.

Rows come from the certificate's spool in chunks; each chunk is read concurrently
through the run's client and rate limiter, then handed on in order, so the document
lists the calls as the log does while memory stays bounded by the chunk. A call is
confirmed when the API shows `redacted_at` set and equal (as an instant) to the
logged value, and none of the sensitive fields (transcript, summary, error message,
metadata, phone numbers) left. Only field names are ever reported, never values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from retention.api.client import CartesiaClient
from retention.api.errors import ApiError, AuthError, NotFound
from retention.api.models import Call
from retention.audit.verify import parse_instant
from retention.timestamps import as_utc, rfc3339


@dataclass(slots=True)
class ErasureCheck:
    base_url: str
    started_at: datetime
    finished_at: datetime | None = None
    checked: int = 0
    confirmed: int = 0
    not_confirmed: int = 0  # the API shows something else (other instant, null, 404, fields)
    unreadable: int = 0
    refused_status: int | None = None
    verdicts: dict[str, int] = field(default_factory=dict)  # verdict -> calls

    @property
    def holds(self) -> bool:
        return self.refused_status is None and self.confirmed == self.checked


def remaining_fields(call: Call) -> list[str]:
    """Names of the sensitive fields the API still shows for the call (never values)."""
    left = [
        name
        for name in ("transcript", "summary", "error_message", "metadata")
        if getattr(call, name)
    ]
    phone = call.telephony_params
    if phone is not None and (phone.to or phone.from_):
        left.append("phone numbers")
    return left


async def verdict(client: CartesiaClient, row: dict[str, Any]) -> tuple[str, str]:
    """(verdict, what the API shows) for one erased call; raises AuthError on 401/403."""
    try:
        call = await client.get_call(str(row["call_id"]))
    except NotFound:
        return "not_found", "404"
    except AuthError:
        raise
    except ApiError as err:
        return "unreadable", f"unreadable (HTTP {err.status or 'none'})"
    seen = call.redacted_at
    if seen is None:
        return "not_redacted", "redacted_at null"
    seen = as_utc(seen)
    if seen != parse_instant(row["redacted_at"]):
        return "differs", f"redacted_at {rfc3339(seen)}"
    left = remaining_fields(call)
    if left:
        return "fields_remain", "still shows " + ", ".join(left)
    return "confirmed", f"redacted_at {rfc3339(seen)}; sensitive fields gone"


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _check_chunk(
    client: CartesiaClient,
    chunk: list[dict[str, Any]],
    results: list[tuple[str, str] | None],
    check: ErasureCheck,
    workers: int,
) -> None:
    """Read the chunk's calls concurrently into `results`; a 401/403 stops them all."""
    limit = anyio.Semaphore(max(1, workers))

    async def one(index: int, row: dict[str, Any]) -> None:
        async with limit:
            try:
                results[index] = await verdict(client, row)
            except AuthError as err:
                if check.refused_status is None:
                    check.refused_status = err.status or 401
                group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for index, row in enumerate(chunk):
            group.start_soon(one, index, row)


async def check_erasures(
    client: CartesiaClient,
    rows: Iterable[dict[str, Any]],
    emit: Callable[[dict[str, Any]], None],
    *,
    workers: int,
) -> ErasureCheck:
    """Read every row's call, emitting each row (with `api` and `api_shows`) in order.
    After a 401/403 the remaining rows are emitted unchecked."""
    check = ErasureCheck(base_url=str(client.base_url), started_at=datetime.now(UTC))
    for chunk in _chunks(rows, max(1, workers) * 4):
        results: list[tuple[str, str] | None] = [None] * len(chunk)
        if check.refused_status is None:
            await _check_chunk(client, chunk, results, check, workers)
        for row, result in zip(chunk, results, strict=True):
            if result is None:
                emit({**row, "api": "not_checked", "api_shows": ""})
                continue
            kind, shows = result
            check.checked += 1
            check.verdicts[kind] = check.verdicts.get(kind, 0) + 1
            if kind == "confirmed":
                check.confirmed += 1
            elif kind == "unreadable":
                check.unreadable += 1
            else:
                check.not_confirmed += 1
            emit({**row, "api": kind, "api_shows": shows})
    check.finished_at = datetime.now(UTC)
    return check

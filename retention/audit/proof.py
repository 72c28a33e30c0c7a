"""`retention audit verify --api`: confirm every logged redaction against the API.

A second streaming pass over the (already verified) log sends each `deleted` and
`already_redacted` line through a bounded stream to a pool of workers, which read
the call with the run's own client and rate limiter and compare `redacted_at` as
instants. Memory stays flat: the stream is bounded, and of the mismatches only the
first few (by line) are kept; the rest are counted.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from retention.api.client import CartesiaClient
from retention.api.errors import ApiError, AuthError, NotFound
from retention.audit.events import REDACTION_EVENTS
from retention.audit.reader import LineFormatError, parse_line
from retention.audit.segments import iter_log_lines
from retention.audit.verify import parse_instant
from retention.timestamps import as_utc, rfc3339

MISMATCHES_KEPT: Final = 20
MismatchKind = Literal["differs", "not_redacted", "not_found", "unreadable"]


@dataclass(frozen=True, slots=True)
class Claim:
    """One line's claim: the API shows this call redacted at this instant."""

    line: int
    call_id: str
    logged: str
    logged_at: datetime


@dataclass(frozen=True, slots=True)
class Mismatch:
    line: int
    call_id: str
    logged: str
    seen: str  # the API's redacted_at, "null", or why it could not be read
    kind: MismatchKind


@dataclass(slots=True)
class ApiProof:
    base_url: str
    started_at: datetime
    finished_at: datetime | None = None
    to_check: int = 0  # redaction lines in the log
    confirmed: int = 0
    mismatched: int = 0  # the API disagrees (other instant, null, 404)
    unreadable: int = 0  # no answer after retries: not proven either way
    refused_status: int | None = None  # 401/403 stopped the check
    _kept: list[tuple[int, Mismatch]] = field(default_factory=list)

    @property
    def checked(self) -> int:
        return self.confirmed + self.mismatched + self.unreadable

    @property
    def complete(self) -> bool:
        return self.refused_status is None and self.checked == self.to_check

    @property
    def holds(self) -> bool:
        return self.complete and self.confirmed == self.to_check

    @property
    def first_mismatches(self) -> list[Mismatch]:
        return sorted((item for _, item in self._kept), key=lambda m: m.line)

    def note(self, mismatch: Mismatch) -> None:
        if mismatch.kind == "unreadable":
            self.unreadable += 1
        else:
            self.mismatched += 1
        # A max-heap on line number: keep the earliest lines, drop later ones.
        entry = (-mismatch.line, mismatch)
        if len(self._kept) < MISMATCHES_KEPT:
            heapq.heappush(self._kept, entry)
        elif entry[0] > self._kept[0][0]:
            heapq.heapreplace(self._kept, entry)


def _iso(instant: datetime | None) -> str:
    if instant is None:
        return "null"
    return rfc3339(instant)


async def _produce(
    paths: Path | Sequence[Path], max_lines: int, send: ObjectSendStream[Claim]
) -> None:
    # Local-disk reads through a 1 MiB buffer: blocking for microseconds, not worth a thread.
    async with send:
        # The log's segments too, numbered through the whole log as verify numbered them.
        for raw in iter_log_lines(paths):
            if raw.number > max_lines:
                return  # lines appended after the verified pass are not part of the proof
            if not raw.complete:
                continue
            try:
                record = parse_line(raw.data)
            except LineFormatError:
                continue
            if record.get("event") not in REDACTION_EVENTS:
                continue
            call_id, logged = record.get("call_id"), record.get("redacted_at")
            logged_at = parse_instant(logged)
            if isinstance(call_id, str) and isinstance(logged, str) and logged_at:
                await send.send(Claim(raw.number, call_id, logged, logged_at))


async def _check(
    client: CartesiaClient,
    claims: ObjectReceiveStream[Claim],
    proof: ApiProof,
    on_checked: Callable[[ApiProof], None],
    stop: Callable[[int], None],
) -> None:
    async with claims:
        async for claim in claims:
            try:
                call = await client.get_call(claim.call_id)
            except AuthError as err:
                stop(err.status or 401)
                return
            except NotFound:
                proof.note(Mismatch(claim.line, claim.call_id, claim.logged, "404", "not_found"))
            except ApiError as err:
                seen = f"unreadable ({type(err).__name__}, HTTP {err.status or 'none'})"
                proof.note(Mismatch(claim.line, claim.call_id, claim.logged, seen, "unreadable"))
            else:
                seen_at = None if call.redacted_at is None else as_utc(call.redacted_at)
                if seen_at == claim.logged_at:
                    proof.confirmed += 1
                else:
                    kind: MismatchKind = "not_redacted" if seen_at is None else "differs"
                    proof.note(
                        Mismatch(claim.line, claim.call_id, claim.logged, _iso(seen_at), kind)
                    )
            on_checked(proof)


async def prove_against_api(
    paths: Path | Sequence[Path],
    client: CartesiaClient,
    *,
    verified_lines: int,
    to_check: int,
    workers: int,
    on_checked: Callable[[ApiProof], None] = lambda _proof: None,
) -> ApiProof:
    """Re-read every call the first `verified_lines` lines claim redacted; never raises
    on API answers (401/403 stop the check and set `refused_status`)."""
    proof = ApiProof(base_url=str(client.base_url), started_at=datetime.now(UTC), to_check=to_check)
    send, receive = anyio.create_memory_object_stream[Claim](max_buffer_size=workers * 2)
    async with anyio.create_task_group() as group:

        def stop(status: int) -> None:
            if proof.refused_status is None:
                proof.refused_status = status
            group.cancel_scope.cancel()

        group.start_soon(_produce, paths, verified_lines, send)
        async with receive:
            for _ in range(max(1, workers)):
                group.start_soon(_check, client, receive.clone(), proof, on_checked, stop)
    proof.finished_at = datetime.now(UTC)
    return proof

"""Resolving the intents a killed run left open, before this run deletes anything.

For each `delete_requested` with no outcome, the call is read from the API:
- `redacted_at` set: `deleted`, with the API's `redacted_at`. The intent proves our
  DELETE was about to be sent, and the API confirms the redaction: the deletion is the
  killed run's, and this line completes its record.
- 404: `not_found`.
- not redacted: `failed` with error "not deleted: ...": the DELETE never took effect.
  The call is then decided afresh by this run like any other. A DELETE the killed run
  sent just before dying may still be on its way through the API, so an intent younger
  than the settle window (the request timeout) is read again once the window has
  passed since it was written; only then is it called not deleted.
If a call cannot be read (the API keeps failing), the run stops before any deletion
(exit 1) and leaves that intent open for the next run: never lose a redaction's record.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

import anyio

from retention.api.client import CartesiaClient
from retention.api.errors import ApiError, AuthError, NotFound
from retention.api.ids import is_valid_id
from retention.api.models import api_timestamp
from retention.audit.events import Event, OpenIntent
from retention.log import get_logger
from retention.policy.decision import ListingSkip
from retention.run.control import RunStopped
from retention.run.journal import Journal
from retention.run.stats import RunStats
from retention.timestamps import as_utc

_log = get_logger(__name__)

INVALID_ID: Final = "not deleted: invalid id (it may not go into a URL)"
NOT_DELETED: Final = "not deleted: the run that requested it stopped before the API confirmed"


class RecoveryIncomplete(Exception):
    """Some open intents could not be resolved; the run must not delete anything."""

    def __init__(self, unresolved: int) -> None:
        self.unresolved = unresolved
        super().__init__(
            f"{unresolved} deletion(s) left open by an earlier run could not be checked "
            "with the API; nothing was deleted, run again later"
        )


def settle_delay(intent: OpenIntent, settle: float, now: datetime) -> float:
    """Seconds left until `settle` seconds have passed since the intent was written."""
    try:
        written = datetime.fromisoformat(intent.ts.replace("Z", "+00:00"))
    except ValueError:
        return settle  # no usable time: assume it was just written
    return max(0.0, min(settle, settle - (now - as_utc(written)).total_seconds()))


async def recover(
    intents: Mapping[str, OpenIntent],
    client: CartesiaClient,
    journal: Journal,
    stats: RunStats,
    *,
    settle: float = 0.0,
) -> None:
    """Resolve every open intent (concurrently; the client's gate bounds the requests)."""
    if not intents:
        return
    _log.warning("audit.recovering", open_intents=len(intents))
    unresolved = 0
    refused = False

    async def resolve(intent: OpenIntent) -> None:
        nonlocal unresolved, refused
        keys = {"call_id": intent.call_id, "agent_id": intent.agent_id, "policy": intent.policy}
        if not is_valid_id(intent.call_id):
            # It was never sent (no request carries such an id): close it, or every later
            # run would stop on it.
            await journal.write(Event.FAILED, {**keys, "error": INVALID_ID})
            stats.recovered[ListingSkip.INVALID_ID.value] += 1
            return
        try:
            call = await client.get_call(intent.call_id)
            if call.redacted_at is None:
                delay = settle_delay(intent, settle, datetime.now(UTC))
                if delay > 0:
                    await anyio.sleep(delay)
                    call = await client.get_call(intent.call_id)
        except NotFound:
            await journal.write(Event.NOT_FOUND, keys)
            stats.recovered[Event.NOT_FOUND.value] += 1
            return
        except (AuthError, RunStopped):
            # Stop every other read at once; the caller sees one RunStopped, not a group.
            refused = True
            group.cancel_scope.cancel()
            return
        except ApiError as err:
            unresolved += 1
            _log.warning("audit.recovery_failed", error=type(err).__name__, status=err.status)
            return
        if call.id != intent.call_id:
            unresolved += 1  # an answer about another call says nothing about this one
            _log.warning("audit.recovery_failed", error="the API answered another call")
            return
        if call.redacted_at is not None:
            await journal.write(
                Event.DELETED, {**keys, "redacted_at": api_timestamp(call.redacted_at)}
            )
            stats.recovered[Event.DELETED.value] += 1
        else:
            await journal.write(Event.FAILED, {**keys, "error": NOT_DELETED})
            stats.recovered["not_deleted"] += 1

    async with anyio.create_task_group() as group:
        for intent in intents.values():
            group.start_soon(resolve, intent)
    if refused:
        raise RunStopped("the API refused the credentials while resolving open intents")
    if unresolved:
        raise RecoveryIncomplete(unresolved)
    _log.info("audit.recovered", **dict(stats.recovered))

"""Models parse the API's JSON leniently: unknown fields ignored, optional fields missing."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from retention.api.models import Call, CallPage


def test_call_ignores_unknown_fields_and_tolerates_missing_ones() -> None:
    raw = b'{"id":"c1","status":"completed","start_time":"2026-01-01T10:00:00Z","new":1}'
    call = msgspec.json.decode(raw, type=Call)
    assert call.id == "c1"
    assert call.start_time == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert call.redacted_at is None and call.metadata is None and call.terminal


def test_age_origin_falls_back_to_end_time() -> None:
    raw = (
        b'{"data":[{"id":"c","status":"failed","start_time":null,'
        b'"end_time":"2026-02-01T00:00:00+01:00"}],"next_page":null}'
    )
    page = msgspec.json.decode(raw, type=CallPage)
    assert page.data[0].age_origin == datetime(2026, 1, 31, 23, tzinfo=UTC)
    assert page.next_page is None


def test_non_terminal_statuses() -> None:
    for status in ("created", "started", "active", "cancelled", "mystery"):
        assert not Call(id="c", status=status).terminal

"""The journal as a unit: what a write promises, and in what order lines land."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from retention.audit.events import Event
from retention.audit.writer import AuditLog
from retention.run.journal import Journal


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def events(path: Path) -> list[tuple[str, str, str]]:
    records: list[dict[str, Any]] = [json.loads(line) for line in path.read_text().splitlines()]
    return [(r["run_id"], r["event"], r["call_id"]) for r in records]


@pytest.mark.anyio
async def test_a_durable_write_returns_once_its_line_is_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    keys = {"agent_id": "agent_1", "policy": "p"}
    with AuditLog(path) as log:
        journal = Journal(log, "r1")
        async with anyio.create_task_group() as group:
            group.start_soon(journal.run)
            await journal.write(Event.DELETE_REQUESTED, {"call_id": "c1", **keys})
            assert events(path) == [("r1", "delete_requested", "c1")]  # before anything else
            await journal.write(Event.NOT_FOUND, {"call_id": "c1", **keys}, durable=False)
            await journal.write(Event.DELETE_REQUESTED, {"call_id": "c2", **keys})
            # A durable write waits for its batch, and lines land in handover order.
            assert events(path) == [
                ("r1", "delete_requested", "c1"),
                ("r1", "not_found", "c1"),
                ("r1", "delete_requested", "c2"),
            ]
            await journal.write(
                Event.FAILED, {"call_id": "c2", "error": "x", **keys}, durable=False
            )
            await journal.close()  # drains what is queued
    assert events(path)[-1] == ("r1", "failed", "c2")
    assert len(events(path)) == 4

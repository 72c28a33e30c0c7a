"""The pipeline's DELETE outcome table as a unit: one call, one scripted answer, the
sandbox in process (httpx.ASGITransport). The end-to-end version over loopback is
tests/run/test_delete_outcomes.py; here each row's expected outcome is written out
by hand, and the whole table runs in about a second. (A dropped connection is left to
the loopback test: in process, httpx re-raises the app's own exception.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pytest

from retention.api.models import Call
from retention.audit.writer import AuditLog
from retention.policy.load import parse_policies
from retention.run.control import RunControl
from retention.run.journal import Journal
from retention.run.pipeline import NO_LONGER_TERMINAL, Pipeline, Settled
from retention.run.stats import RunStats
from retention.sandbox.data import Dataset, DatasetSpec
from tests.api.conftest import in_process
from tests.run.test_delete_outcomes import ANSWERS, ScriptedDeletes

NOW: Final = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BY_NAME: Final = {a.name: a for a in ANSWERS}

# (answer, the DELETE took effect, the confirming GET fails) -> (event, error or None).
# None for the event: unknown, the intent stays open. "deleted" after any answer: an
# answer means our DELETE reached the server, so a redaction seen then is ours.
TABLE: Final[dict[tuple[str, bool, bool], tuple[str | None, str | None]]] = {
    ("200 redacted", True, False): ("deleted", None),
    ("200 redacted", True, True): ("deleted", None),  # settled by the answer: no GET
    ("200 redacted", False, False): ("failed", "answered without redacted_at"),
    ("404", True, False): ("deleted", None),  # a 404 that hid a redaction
    ("404", False, False): ("failed", "HTTP 404"),
    ("404", False, True): (None, None),
    ("404 gone", False, False): ("not_found", None),
    ("200 without redacted_at", True, False): ("deleted", None),
    ("200 without redacted_at", False, False): ("failed", "answered without redacted_at"),
    ("200 another call", False, False): ("failed", "HTTP 200"),  # its body is no JSON
    ("200 another call", True, True): (None, None),
    ("409", False, False): ("failed", "HTTP 409"),
    ("500 no retry", True, False): ("deleted", None),
    ("500 no retry", False, False): ("failed", "HTTP 500"),
    ("500 no retry", True, True): (None, None),
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def first_due_call(dataset: Dataset) -> Call:
    return next(
        c
        for c in dataset.iter_all_calls(transcripts=False)
        if c.status == "completed" and c.redacted_at is None and not c.zdr_enabled
    )


async def outcome(
    tmp_path: Path, app: ScriptedDeletes, call: Call, control: RunControl | None = None
) -> Settled:
    """The pipeline's outcome for one DELETE of `call` against `app`."""
    policies = parse_policies([("p.yaml", "policies: [{name: all, delete_after: 0d}]")])
    with AuditLog(tmp_path / "audit.jsonl") as log:
        async with in_process(app) as client:
            pipeline = Pipeline(
                client=client,
                policies=policies,
                now=NOW,
                execute=True,
                concurrency=1,
                max_deletes=None,
                journal=Journal(log, "r1"),
                report=None,
                stats=RunStats(),
                control=control or RunControl(grace_period=1.0),
            )
            return await pipeline._send_delete(call)


def scripted(answer: str, effect: bool, unreadable: bool) -> tuple[ScriptedDeletes, Call]:
    dataset = Dataset(DatasetSpec(seed=11, agents=1, calls=12, now=NOW))
    return ScriptedDeletes(dataset, BY_NAME[answer], effect, unreadable), first_due_call(dataset)


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "effect", "unreadable"), list(TABLE))
async def test_each_answer_ends_in_its_row_of_the_table(
    tmp_path: Path, name: str, effect: bool, unreadable: bool
) -> None:
    event, error = TABLE[name, effect, unreadable]
    found = await outcome(tmp_path, *scripted(name, effect, unreadable))
    assert found.event == event
    if event == "deleted":
        assert found.extra["redacted_at"].startswith("20")  # the server's, as it wrote it
    if error is not None:
        assert error in found.extra["error"]


@pytest.mark.anyio
async def test_a_call_no_longer_terminal_is_not_deleted(tmp_path: Path) -> None:
    app, call = scripted("409", False, False)
    app.override_call(call.id, {"status": "active"})  # restarted since it was listed
    control = RunControl(grace_period=1.0)
    found = await outcome(tmp_path, app, call, control)
    assert (found.event, found.extra) == ("failed", {"error": NO_LONGER_TERMINAL})
    assert control.reason is None


def test_the_table_covers_every_scripted_answer_it_names() -> None:
    assert {name for name, _, _ in TABLE} <= set(BY_NAME)

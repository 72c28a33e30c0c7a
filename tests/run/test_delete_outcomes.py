"""The DELETE outcome table (README, "What a DELETE's answer means"), row by row.

A sandbox whose DELETE answers are scripted: for each kind of answer, with the
deletion taking effect on the server or not, and with the confirming GET readable
or not, every due call must end in the outcome the table gives, which is written
out here from the rule, not from the pipeline:

- a 2xx whose JSON body is this call with `redacted_at` set: `deleted`, no GET;
- anything else, a 404 included: GET the call; 404: `not_found`; redacted:
  `deleted` (an answer means our DELETE reached the server); not redacted:
  `failed`; unreadable: the intent stays open.

After every scenario a clean rerun must leave each call the server redacted with
exactly one outcome line carrying the server's `redacted_at`, and no `failed` line
for a call the server redacted while that DELETE was the one in flight.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pytest

from retention.api.models import TERMINAL_STATUSES
from retention.api.retry import RetryPolicy
from retention.policy.load import load_policies
from retention.run.command import RunSettings, run_command
from retention.sandbox.app import Receive, SandboxApp, Scope, Send
from retention.sandbox.data import Dataset, DatasetSpec
from retention.sandbox.server import serve_in_thread
from retention.sandbox.wire import call_body, encode
from tests.faults.support import API_KEY, NOW, audit_records, logged_redactions, write_policies

# One loopback run per row (about 2 s each); tests/run/test_outcome_table.py checks the
# same rows in process, in about a second, for `-m "not slow"`.
pytestmark = pytest.mark.slow

CATCH_ALL: Final = """\
policies:
  - name: everything
    delete_after: 0d
    match: {}
"""
CALLS: Final = 24


@dataclass(frozen=True)
class Answer:
    """A scripted answer to every DELETE; `body` None means this call's own body."""

    name: str
    status: int
    body: bytes | None = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    drop: bool = False  # promise a body, then close the connection
    redacted_body: bool = False  # the body is this call as redacted by the server
    gone: bool = False  # single-call GETs answer 404 too

    @property
    def settles(self) -> str | None:
        """What the answer alone settles, by the table: only this row. (A 404 is read
        again too: the GET's 404 gives `not_found`, a redaction it hid `deleted`.)"""
        if 200 <= self.status < 300 and self.redacted_body and not self.drop:
            return "deleted"
        return None


NO_RETRY: Final = ((b"x-should-retry", b"false"),)
JSON: Final = ((b"content-type", b"application/json"),)
ANSWERS: Final = (
    Answer("200 redacted", 200, None, JSON, redacted_body=True),
    Answer("404", 404, b'{"error_code":"not_found","request_id":"req_1"}', JSON),
    Answer("404 gone", 404, b"{}", JSON, gone=True),
    Answer("200 without redacted_at", 200, None, JSON),
    Answer("200 another call", 200, b"other", JSON),
    Answer("202 empty", 202),
    Answer("204 empty", 204),
    Answer("200 not JSON", 200, b"<html>upstream</html>"),
    Answer("200 truncated JSON", 200, b'{"id": "x", "redacted_at": "2026-'),
    Answer("301 redirect", 301, b"", ((b"location", b"http://127.0.0.1:9/elsewhere"),)),
    Answer("400", 400, b'{"error_code":"invalid_status"}', JSON),
    Answer("409", 409, b'{"error_code":"conflict"}', JSON),
    Answer("422", 422, b"{}", JSON),
    Answer("429 no retry", 429, b"{}", (*JSON, *NO_RETRY)),
    Answer("500 no retry", 500, b"{}", (*JSON, *NO_RETRY)),
    Answer("503 retried", 503, b"{}", ((b"retry-after-ms", b"1"),)),
    Answer("dropped", 200, b"", drop=True),
)


class ScriptedDeletes(SandboxApp):
    """The sandbox, except that DELETE answers `answer` (after redacting the call when
    `effect`), and single-call GETs fail while `unreadable`. `scripted` False: plain."""

    def __init__(self, dataset: Dataset, answer: Answer, effect: bool, unreadable: bool) -> None:
        super().__init__(dataset)
        self.answer = answer
        self.effect = effect
        self.unreadable = unreadable
        self.scripted = True
        self.redacted_by_delete: set[str] = set()
        self.delete_received: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        one_call = path.startswith("/agents/calls/") and scope.get("type") == "http"
        if self.scripted and one_call and scope["method"] == "DELETE":
            await self._scripted_delete(path.rsplit("/", 1)[1], send)
            return
        if self.scripted and one_call and scope["method"] == "GET" and self.unreadable:
            await _reply(send, 500, b"{}", (*JSON, *NO_RETRY))
            return
        if self.scripted and one_call and scope["method"] == "GET" and self.answer.gone:
            await _reply(send, 404, b"{}", JSON)
            return
        await super().__call__(scope, receive, send)

    async def _scripted_delete(self, call_id: str, send: Send) -> None:
        self.delete_received.add(call_id)
        before = self.dataset.get_call(call_id, transcript=False)
        if before is None:
            await _reply(send, 404, b"{}", JSON)
            return
        current = before
        if self.effect and before.status in TERMINAL_STATUSES and before.redacted_at is None:
            current = self.dataset.redact(call_id, datetime.now(UTC))
            self.redacted_by_delete.add(call_id)
        answer = self.answer
        if answer.drop:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"64")],
                }
            )
            raise ConnectionAbortedError("scripted drop")
        body = answer.body
        if answer.redacted_body or body is None:
            body = encode(call_body(current if answer.redacted_body else before))
        await _reply(send, answer.status, body, answer.headers)


async def _reply(
    send: Send, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@dataclass
class Scene:
    app: ScriptedDeletes
    url: str
    policies: Path
    log: Path


@pytest.fixture
def scene_factory(tmp_path: Path) -> Iterator[Any]:
    stack: list[Any] = []

    def make(answer: Answer, effect: bool, unreadable: bool) -> Scene:
        dataset = Dataset(DatasetSpec(seed=11, agents=2, calls=CALLS, now=NOW))
        app = ScriptedDeletes(dataset, answer, effect, unreadable)
        server = serve_in_thread(app)
        url = server.__enter__()
        stack.append(server)
        return Scene(app, url, write_policies(tmp_path / "p", CATCH_ALL), tmp_path / "a.jsonl")

    yield make
    for server in stack:
        server.__exit__(None, None, None)


def _due(app: ScriptedDeletes) -> set[str]:
    """Due under the catch-all rule, by DESIGN.md: terminal, not redacted, not ZDR, timed."""
    return {
        c.id
        for c in app.dataset.iter_all_calls(transcripts=False)
        if c.status in TERMINAL_STATUSES
        and c.redacted_at is None
        and not c.zdr_enabled
        and (c.start_time or c.end_time) is not None
        and (c.start_time or c.end_time) <= NOW  # type: ignore[operator]
    }


def _outcomes(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for record in records:
        if record["event"] in ("deleted", "already_redacted", "not_found", "failed"):
            found.setdefault(record["call_id"], []).append(record["event"])
    return found


def _open(records: list[dict[str, Any]]) -> set[str]:
    pending: set[str] = set()
    for record in records:
        if record["event"] == "delete_requested":
            pending.add(record["call_id"])
        elif record["event"] in ("deleted", "already_redacted", "not_found", "failed"):
            pending.discard(record["call_id"])
    return pending


def _run(scene: Scene) -> int:
    """`retention run --execute` as the CLI builds it, with quick retries."""
    return run_command(
        RunSettings(
            policies=load_policies([scene.policies]),
            api_key=API_KEY,
            base_url=scene.url,
            now=NOW,
            execute=True,
            audit_log=scene.log,
            timeout=0.5,
            grace_period=1.0,
            handle_signals=False,
            retry=RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.002),
        )
    )


CASES: Final = [
    pytest.param(answer, effect, unreadable, id=f"{answer.name}-{tag}-{get}")
    for answer in ANSWERS
    for effect, tag in ((True, "took effect"), (False, "no effect"))
    for unreadable, get in ((False, "GET ok"), (True, "GET fails"))
    # A body showing the redaction exists only when the redaction happened; a call
    # that is gone cannot also be redacted.
    if (effect or not answer.redacted_body) and not (effect and answer.gone)
]


@pytest.mark.parametrize(("answer", "effect", "unreadable"), CASES)
def test_each_answer_ends_in_what_the_api_did(
    answer: Answer,
    effect: bool,
    unreadable: bool,
    scene_factory: Any,
) -> None:
    scene: Scene = scene_factory(answer, effect, unreadable)
    due = _due(scene.app)
    assert due, "the dataset must have due calls"
    first = _run(scene)

    records = audit_records(scene.log)
    outcomes = _outcomes(records)
    settled = answer.settles
    if settled is not None:
        expected: str | None = settled
    elif unreadable:
        expected = None  # left open for the next run
    elif answer.gone:
        expected = "not_found"
    else:
        expected = "deleted" if effect else "failed"
    for call_id in due:
        got = outcomes.get(call_id, [])
        if expected is None:
            assert got == [], (call_id, got)
            assert call_id in _open(records)
        else:
            assert got == [expected], (call_id, got)
    # Never `failed` for a call our DELETE redacted.
    failed = {c for c, events in outcomes.items() if "failed" in events}
    assert not failed & scene.app.redacted_by_delete
    assert first == (0 if expected in ("deleted", "not_found") else 1)

    # A clean rerun settles what was left open and deletes what was not deleted.
    scene.app.scripted = False
    assert _run(scene) == 0
    records = audit_records(scene.log)
    assert not _open(records)
    logged = logged_redactions(records)
    server = {
        c.id: c.redacted_at
        for c in scene.app.dataset.iter_all_calls(transcripts=False)
        if c.redacted_at is not None
    }
    assert set(logged) == set(server)
    for call_id, when in server.items():
        assert logged[call_id] == {when}, call_id
    deleted_lines = [r for r in records if r["event"] in ("deleted", "already_redacted")]
    assert len(deleted_lines) == len(server), "one redaction line per redacted call"


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("effect", [True, False], ids=["took effect", "no effect"])
def test_a_refused_delete_stays_open_and_the_run_stops(
    status: int, effect: bool, scene_factory: Any
) -> None:
    """401/403 to a DELETE: the run stops (exit 4) and sends nothing more, not even the
    GET, so what the API did is unknown: never `failed`, the intent stays open; the
    next run asks and records it. Intents whose DELETE was never sent are `failed`."""
    scene: Scene = scene_factory(Answer(str(status), status, b"{}", JSON), effect, False)
    assert _run(scene) == 4
    records = audit_records(scene.log)
    requested = {r["call_id"] for r in records if r["event"] == "delete_requested"}
    received = scene.app.delete_received
    assert received
    assert received <= requested
    assert _open(records) == received
    outcomes = _outcomes(records)
    assert set(outcomes) == requested - received
    assert all(events == ["failed"] for events in outcomes.values())

    scene.app.scripted = False
    assert _run(scene) == 0
    records = audit_records(scene.log)
    assert not _open(records)
    server = {
        c.id: c.redacted_at
        for c in scene.app.dataset.iter_all_calls(transcripts=False)
        if c.redacted_at is not None
    }
    logged = logged_redactions(records)
    assert {c: {w} for c, w in server.items()} == logged

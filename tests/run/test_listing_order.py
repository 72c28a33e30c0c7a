"""The listing's levers: the largest agents first (sizes from the previous run's
`run_finished`), one page fetched ahead while the current one is decided, and the
number of listers. Sizes and orders are checked against the sandbox's dataset and
the requests the sandbox received, in the order it received them."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Final

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.api.models import Agent
from retention.audit.verify import verify_log
from retention.run.pipeline import LISTERS_MAX, LISTERS_MIN, listers_for
from retention.run.sizes import (
    MAX_SIZE,
    RECORDED_MAX,
    TAIL_BYTES,
    largest_first,
    previous_sizes,
    recorded,
)
from retention.sandbox.app import Receive, SandboxApp, Scope, Send
from retention.sandbox.data import Dataset, DatasetSpec
from tests.e2e.support import NOW, Workspace, run_cli, sandbox, workspace

__all__ = ["workspace"]  # the fixture, re-exported for pytest

CATCH_ALL: Final = """\
policies:
  - name: everything
    delete_after: 0d
"""


class Recording(SandboxApp):
    """The sandbox, noting each listing request (its agent, and whether it is the first
    page) and each DELETE, in the order they arrive."""

    def __init__(self, dataset: Dataset) -> None:
        super().__init__(dataset)
        self.events: list[tuple[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            query = scope.get("query_string", b"").decode()
            if method == "GET" and path == "/agents/calls":
                params = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
                page = "later" if "starting_after" in params else "first"
                self.events.append((page, params.get("agent_id", "")))
            elif method == "DELETE":
                self.events.append(("delete", ""))
        await super().__call__(scope, receive, send)

    def first_pages(self) -> list[str]:
        return [agent for kind, agent in self.events if kind == "first"]


def sizes_of(dataset: Dataset) -> dict[str, int]:
    """Calls per agent, counted from the dataset itself."""
    counts: dict[str, int] = {}
    for call in dataset.iter_all_calls(transcripts=False):
        counts[call.agent_id] = counts.get(call.agent_id, 0) + 1
    return counts


def test_a_run_records_each_agents_size_and_the_next_run_lists_the_largest_first(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, workspace: Workspace
) -> None:
    dataset = Dataset(DatasetSpec(seed=3, agents=9, calls=900, now=NOW))
    sizes = sizes_of(dataset)
    api_order = [agent.id for agent in dataset.agents()]
    by_size = sorted(api_order, key=lambda agent: -sizes.get(agent, 0))
    assert set(api_order[:LISTERS_MIN]) != set(by_size[:LISTERS_MIN])  # the test means something
    app = Recording(dataset)
    with sandbox(app) as url:
        first = run_cli(capsys, monkeypatch, workspace, url, "--concurrency", "1")
        assert first.code == 0, first.err
        # No hint yet: the API's order. (One request at a time, four listers.)
        assert set(app.first_pages()[:LISTERS_MIN]) == set(api_order[:LISTERS_MIN])
        finished = workspace.lines()[-1]
        assert finished["counts"]["listed_by_agent"] == {a: sizes.get(a, 0) for a in api_order}
        app.events.clear()
        second = run_cli(capsys, monkeypatch, workspace, url, "--concurrency", "1")
    assert second.code == 0, second.err
    assert set(app.first_pages()[:LISTERS_MIN]) == set(by_size[:LISTERS_MIN])
    assert verify_log(workspace.audit_log).intact  # the new field is part of the chain


def test_the_next_page_is_fetched_while_the_current_one_is_decided_one_page_ahead(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, workspace: Workspace
) -> None:
    dataset = Dataset(DatasetSpec(seed=5, agents=1, calls=450, now=NOW))
    workspace.policies.write_text(CATCH_ALL)
    app = Recording(dataset)
    with sandbox(app) as url:
        # One request at a time: a page's 100 calls take about 100 DELETEs to go out.
        result = run_cli(capsys, monkeypatch, workspace, url, "--execute", "--concurrency", "1")
    assert result.code == 0, result.err
    listed = [i for i, (kind, _) in enumerate(app.events) if kind != "delete"]
    deletes_before = [sum(1 for k, _ in app.events[:i] if k == "delete") for i in listed]
    # Page 2 is asked for as soon as page 1 is handed on, before its calls are deleted;
    # page 3 only once page 1's calls are through (one page ahead, never two).
    assert deletes_before[0] == 0
    assert deletes_before[1] < 10
    assert deletes_before[2] >= 50
    deleted = [line["call_id"] for line in workspace.lines() if line["event"] == "deleted"]
    assert len(deleted) == len(set(deleted)) == app.stats.deletions > 0


@given(agents=st.integers(0, 500), ceiling=st.integers(1, 1024), execute=st.booleans())
def test_listers_scale_with_agents_and_the_ceiling_within_bounds(
    agents: int, ceiling: int, execute: bool
) -> None:
    n = listers_for(agents, ceiling, execute=execute)
    assert 1 <= n <= max(1, min(agents, LISTERS_MAX))
    share = ceiling // 4 if execute else ceiling
    if agents >= LISTERS_MAX and share >= LISTERS_MAX:
        assert n == LISTERS_MAX
    if agents >= LISTERS_MIN:
        assert n >= LISTERS_MIN


def _agents(ids: list[str]) -> list[Agent]:
    return [Agent(id=agent_id, name=agent_id) for agent_id in ids]


@given(
    sizes=st.dictionaries(
        st.sampled_from([f"agent_{i:02d}" for i in range(30)]), st.integers(0, 10**6)
    ),
    extra=st.lists(st.sampled_from([f"new_{i}" for i in range(5)]), unique=True),
)
def test_largest_first_orders_known_agents_by_size_and_new_ones_first(
    sizes: dict[str, int], extra: list[str]
) -> None:
    ids = [*sizes, *extra]
    ordered = [agent.id for agent in largest_first(_agents(ids), sizes)]
    assert sorted(ordered) == sorted(ids)  # a permutation: nothing lost, nothing added
    assert ordered[: len(extra)] == extra  # sizes unknown, record not full: first, in order
    known = ordered[len(extra) :]
    assert all(sizes[a] >= sizes[b] for a, b in itertools.pairwise(known))


def test_agents_missing_from_a_full_record_go_last() -> None:
    sizes = {f"agent_{i:05d}": 10 + i for i in range(RECORDED_MAX)}
    ordered = [a.id for a in largest_first(_agents(["agent_small", *sizes]), sizes)]
    assert ordered[0] == f"agent_{RECORDED_MAX - 1:05d}"
    assert ordered[-1] == "agent_small"


def test_the_record_keeps_the_largest_agents_only() -> None:
    listed = {f"agent_{i:05d}": i for i in range(RECORDED_MAX + 50)}
    kept = recorded(listed)
    assert len(kept) == RECORDED_MAX
    assert min(kept.values()) == 50


def _log(path: Path, lines: list[bytes]) -> int:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return os.open(path, os.O_RDONLY)


def _finished(sizes: dict[str, int]) -> bytes:
    return json.dumps({"event": "run_finished", "counts": {"listed_by_agent": sizes}}).encode()


def test_a_size_no_agent_can_have_is_not_a_hint(tmp_path: Path) -> None:
    """JSON integers are unbounded: a count past MAX_SIZE (an edited or damaged log)
    is dropped, not turned into a priority that cannot be a float."""
    sizes = {"ok": MAX_SIZE, "huge": 10**400, "negative": -1}
    fd = _log(tmp_path / "a.jsonl", [_finished(sizes)])
    try:
        assert previous_sizes(fd) == {"ok": MAX_SIZE}
    finally:
        os.close(fd)


def test_sizes_come_from_the_last_run_finished_within_the_tail(tmp_path: Path) -> None:
    big = {f"agent_{i:06d}": i for i in range(5000)}  # a line longer than a read chunk
    filler = [json.dumps({"event": "deleted", "call_id": f"c{i}"}).encode() for i in range(300)]
    fd = _log(tmp_path / "a.jsonl", [_finished({"old": 1}), _finished(big), *filler])
    try:
        assert previous_sizes(fd) == big
    finally:
        os.close(fd)
    # Beyond the tail, or not a sizes record: no hint.
    far = [b"x" * 1000] * (TAIL_BYTES // 1000 + 2)
    fd = _log(tmp_path / "b.jsonl", [_finished({"old": 1}), *far])
    garbled = _log(tmp_path / "c.jsonl", [b'{"event": "run_finished", "counts": ['])
    try:
        assert previous_sizes(fd) == {}
        assert previous_sizes(garbled) == {}
        assert previous_sizes(None) == {}
    finally:
        os.close(fd)
        os.close(garbled)

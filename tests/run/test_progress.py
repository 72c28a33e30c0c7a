"""Progress and summary: a live line and tables on a terminal, log lines elsewhere."""

from __future__ import annotations

import io
import json
import re

import anyio
import pytest
import structlog

from retention.audit.events import Outcome
from retention.run.progress import print_summary, show_progress
from retention.run.stats import RunStats


class Terminal(io.StringIO):
    """A text stream that says it is a terminal, as stderr does in an interactive shell."""

    def isatty(self) -> bool:
        return True

    def text(self) -> str:
        """What a person reads: the output without colour and cursor escapes."""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.getvalue())


def busy_stats(*, dry_run: bool) -> RunStats:
    stats = RunStats(dry_run=dry_run, agents=3, scanned=1200, due=400)
    stats.throttled = 7
    stats.retries = 9
    for _ in range(395):
        stats.record_outcome("eu-30d", Outcome.WOULD_DELETE if dry_run else Outcome.DELETED)
    for _ in range(5):
        stats.record_outcome("default-90d", Outcome.FAILED)
    stats.kept["held"] = 12
    stats.skipped["zdr"] = 30
    return stats


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_on_a_terminal_a_live_line_shows_the_counters() -> None:
    out = Terminal()
    stats = busy_stats(dry_run=False)
    refreshed: list[int] = []
    with anyio.move_on_after(1.3):
        await show_progress(stats, lambda: refreshed.append(1), interval=60, stream=out)
    screen = out.text()
    assert refreshed  # the client's counters were pulled in while it ran
    for text in ("scanned 1200", "due 400", "deleted 395", "failed 5", "429s 7", "retries 9"):
        assert text in screen


@pytest.mark.anyio
async def test_elsewhere_a_structured_progress_line_every_interval() -> None:
    stats = busy_stats(dry_run=True)
    with structlog.testing.capture_logs() as logs, anyio.move_on_after(0.35):
        await show_progress(stats, lambda: None, interval=0.1, stream=io.StringIO())
    lines = [entry for entry in logs if entry["event"] == "run.progress"]
    assert len(lines) >= 2
    assert lines[-1]["scanned"] == 1200
    assert lines[-1]["would_delete"] == 395
    assert lines[-1]["throttled"] == 7


def test_summary_on_a_terminal_is_tables_by_outcome_and_policy() -> None:
    out = Terminal()
    stats = busy_stats(dry_run=False)
    stats.exit_code = 1
    print_summary(stats, stream=out)
    screen = out.text()
    for text in ("retention run", "deleted", "395", "kept: held", "skipped: zdr", "by policy"):
        assert text in screen
    assert "eu-30d" in screen
    assert "default-90d" in screen
    assert "7 answered 429; exit 1" in screen


def test_summary_elsewhere_is_one_log_line_with_counts_by_policy() -> None:
    stats = busy_stats(dry_run=True)
    stats.exit_code = 0
    with structlog.testing.capture_logs() as logs:
        print_summary(stats, stream=io.StringIO())
    (summary,) = [entry for entry in logs if entry["event"] == "run.summary"]
    assert summary["by_policy"] == {"default-90d": {"failed": 5}, "eu-30d": {"would_delete": 395}}
    assert summary["dry_run"] is True
    assert summary["skipped"] == {"zdr": 30}
    json.dumps(summary)  # a log line, so it must serialise


def test_the_summary_of_an_apply_has_a_row_per_dropped_reason_and_not_in_plan() -> None:
    out = Terminal()
    stats = busy_stats(dry_run=False)
    stats.exit_code = 0
    for _ in range(4):
        stats.record_outcome("eu-30d", Outcome.NOT_IN_PLAN)
    stats.dropped.update({"held by case-hold": 2, "gone": 1})
    for _ in range(3):
        stats.record_outcome("eu-30d", Outcome.DROPPED)
    print_summary(stats, stream=out)
    rows = {
        cells[0]: cells[1]
        for line in out.text().splitlines()
        if len(cells := [c.strip() for c in re.split(r"[│┃]", line) if c.strip()]) == 2
    }
    assert rows["dropped"] == "3"
    assert rows["dropped: held by case-hold"] == "2"
    assert rows["dropped: gone"] == "1"
    assert rows["not_in_plan"] == "4"

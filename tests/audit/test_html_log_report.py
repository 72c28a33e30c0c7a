"""`retention audit report LOG --html FILE` on a REAL log: runs against the sandbox (a
dry run, a run capped by --max-deletes, then the log rotated, a run stopped by
SIGTERM, a run with failed deletions). The page's numbers equal the log's lines
counted here by hand (and the deletions the sandbox itself shows); every chart number
is in a table; nothing personal, no URL, no script; Chromium renders it; a bad
output path is refused (exit 2) before anything is read; a long log's page stays the
same size (days and runs are bounded)."""

from __future__ import annotations

import gzip
import json
import re
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from retention.api.retry import RetryPolicy
from retention.audit.html_report import MAX_DAYS, MAX_RUNS
from retention.audit.synth import ChainWriter
from retention.cli import main
from retention.policy.load import load_policies
from retention.run.command import RunSettings, run_command
from retention.sandbox import SandboxApp, serve_in_thread
from retention.sandbox.content import sensitive_strings
from retention.sandbox.faults import Faults
from retention.settings import parse_now
from tests.e2e.support import (
    API_KEY,
    NOW_TEXT,
    POLICY_YAML,
    clean_env,
    expected_deletions,
    make_dataset,
    spawn,
)
from tests.run.htmlpage import Page
from tests.run.test_html_browser import HEIGHT, WIDTH, browse, png_pixels

DOOMED = 3  # deletions the last run's sandbox answers 503 to, every time


@dataclass(frozen=True)
class RealLog:
    app: SandboxApp
    log: Path
    records: list[dict[str, Any]]  # every line, segments first, read here by hand
    deleted_here: frozenset[str]  # calls the sandbox shows redacted by these runs
    page: Page
    html: Path


class _FailDeletes:
    """ASGI wrapper: DELETEs of the chosen calls answer 503 every time."""

    def __init__(self, app: SandboxApp, call_ids: set[str]) -> None:
        self.app, self.call_ids = app, call_ids

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = str(scope.get("path", ""))
        if scope.get("method") == "DELETE" and path.rsplit("/", 1)[-1] in self.call_ids:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        await self.app(scope, receive, send)


def _settings(tmp: Path, url: str, **changes: Any) -> RunSettings:
    return RunSettings(
        policies=load_policies([tmp / "policies.yaml"]),
        api_key=API_KEY,
        base_url=url,
        now=parse_now(NOW_TEXT),
        audit_log=tmp / "audit.jsonl",
        handle_signals=False,
        retry=RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.002),
        **changes,
    )


def _intents(log: Path) -> int:
    return log.read_bytes().count(b'"event":"delete_requested"') if log.exists() else 0


def _cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0  # pragma: no cover - main always exits


def _read_by_hand(log: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for segment in sorted(log.parent.glob(log.name + ".*.gz")):
        records += [json.loads(line) for line in gzip.decompress(segment.read_bytes()).splitlines()]
    return records + [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> RealLog:
    tmp = tmp_path_factory.mktemp("log-report")
    (tmp / "policies.yaml").write_text(POLICY_YAML)
    log = tmp / "audit.jsonl"
    app = SandboxApp(make_dataset(calls=240, agents=4), api_key=API_KEY)
    before = app.dataset.redacted_ids()
    with serve_in_thread(app) as url:
        assert run_command(_settings(tmp, url)) == 0  # a dry run
        assert run_command(_settings(tmp, url, execute=True, max_deletes=15)) == 3
        assert _cli("audit", "rotate", str(log)) == 0  # the report reads segments too
        app.faults = Faults(latency_ms=300)  # slow DELETEs, so SIGTERM lands mid-run
        args = ["run", "--policies", str(tmp / "policies.yaml"), "--audit-log", str(log)]
        args += ["--base-url", url, "--now", NOW_TEXT, "--execute", "--concurrency", "2"]
        env = clean_env(CARTESIA_API_KEY=API_KEY)
        stopped = spawn(args, env=env, cwd=tmp, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while _intents(log) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        stopped.send_signal(signal.SIGTERM)
        assert stopped.wait(60) == 5
        app.faults = Faults()
        doomed = set(sorted(expected_deletions(app.dataset))[:DOOMED])  # still due
        with serve_in_thread(_FailDeletes(app, doomed)) as failing:  # type: ignore[arg-type]
            assert run_command(_settings(tmp, failing, execute=True)) == 1
    html = tmp / "log.html"
    code = _cli("audit", "report", str(log), "--html", str(html))
    assert code == 0
    return RealLog(
        app=app,
        log=log,
        records=_read_by_hand(log),
        deleted_here=app.dataset.redacted_ids() - before,
        page=Page(html.read_text()),
        html=html,
    )


def test_the_runs_table_is_the_log_s_runs_counted_by_hand(real: RealLog) -> None:
    starts = [r for r in real.records if r["event"] == "run_started"]
    finishes = {r["run_id"]: r for r in real.records if r["event"] == "run_finished"}
    deleted = Counter(r["run_id"] for r in real.records if r["event"] == "deleted")
    failed = Counter(r["run_id"] for r in real.records if r["event"] == "failed")
    # What the runs did, as the test drove them (not as the log says).
    assert [finishes[r["run_id"]]["exit_code"] for r in starts] == [0, 3, 5, 1]
    table = real.page.tables["runs"]
    rows = table.rows[:-1]
    assert [row[1] for row in rows] == [r["run_id"] for r in starts]
    assert [row[2] for row in rows] == ["dry run", "execute", "execute", "execute"]
    assert [row[5] for row in rows] == ["0", "3", "5", "1"]
    assert [row[6] for row in rows] == [
        "",
        "--max-deletes reached",
        "a signal (SIGTERM or SIGINT)",
        "",
    ]
    assert [int(row[7]) for row in rows] == [deleted[r["run_id"]] for r in starts]
    assert [int(row[8]) for row in rows] == [failed[r["run_id"]] for r in starts]
    assert int(rows[1][7]) == 15  # the cap
    assert [int(row[8]) for row in rows] == [0, 0, 0, DOOMED]
    assert table.total is not None and int(table.total[7]) == len(real.deleted_here)


def test_deletions_per_day_and_by_policy_are_the_log_s(real: RealLog) -> None:
    per_day: dict[str, Counter[str]] = {}
    for r in real.records:
        if r["event"] == "deleted":
            per_day.setdefault(r["ts"][:10], Counter())[r["policy"]] += 1
    days = real.page.tables["days"]
    assert {row[0] for row in days.rows[:-1]} == set(per_day)
    for policy in {p for counts in per_day.values() for p in counts}:
        assert days.column(policy) == {day: c[policy] for day, c in per_day.items()}
    assert days.total is not None and int(days.total[-1]) == len(real.deleted_here)
    outcomes = Counter((r["policy"], r["event"]) for r in real.records if "call_id" in r)
    by_policy = real.page.tables["policy"]
    assert by_policy.column("deleted") == {"old-30d": outcomes["old-30d", "deleted"]}
    assert by_policy.column("failed") == {"old-30d": DOOMED}


def test_failures_by_cause_and_runs_stopped_early(real: RealLog) -> None:
    causes = Counter(r["error"] for r in real.records if r["event"] == "failed")
    assert real.page.tables["failures"].column("failed calls") == causes
    assert causes == {"gave up after 2 attempts: HTTP 503": DOOMED}
    assert real.page.tables["stops"].column("runs") == {
        "--max-deletes reached": 1,
        "a signal (SIGTERM or SIGINT)": 1,
    }
    listed = real.page.tables["stopped-runs"].rows
    assert [row[3] for row in listed] == ["--max-deletes reached", "a signal (SIGTERM or SIGINT)"]


def test_every_chart_number_is_in_a_table(real: RealLog) -> None:
    page = real.page
    runs = {row[0][:19] + " " + row[1][:8]: int(row[7]) for row in page.tables["runs"].rows[:-1]}
    assert page.chart("runs") == runs
    assert page.chart("days") == page.tables["days"].column("total")
    assert page.chart("policy") == page.tables["policy"].column("deleted")
    assert page.chart("failures") == page.tables["failures"].column("failed calls")
    assert page.chart("stops") == page.tables["stops"].column("runs")


def test_nothing_personal_no_url_no_script(real: RealLog) -> None:
    text = real.html.read_text()
    personal = {s for c in real.app.dataset.iter_all_calls() for s in sensitive_strings(c)}
    assert not [s for s in personal if s in text]
    assert not [r["call_id"] for r in real.records if "call_id" in r and r["call_id"] in text]
    assert not [r["agent_id"] for r in real.records if "agent_id" in r and r["agent_id"] in text]
    assert "127.0.0.1" not in text  # the API's address, from run_started's options
    assert not re.search(r"https?:|//[a-z]|url\(|@import", text, re.IGNORECASE)
    assert real.page.tags["script"] == real.page.tags["img"] == real.page.tags["link"] == 0
    assert not [k for k, _ in real.page.attributes if k in ("src", "href") or k.startswith("on")]


def test_chromium_renders_the_page(real: RealLog, tmp_path: Path) -> None:
    dom = Page(browse(real.html, tmp_path, "--dump-dom"))
    assert dom.tables.keys() == real.page.tables.keys()
    for name, table in real.page.tables.items():
        assert dom.tables[name].rows == table.rows, name
    shot = tmp_path / "log.png"
    browse(real.html, tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}")
    width, height, rows = png_pixels(shot)
    assert (width, height) == (WIDTH, HEIGHT)
    assert sum(1 for row in rows[::10] if len(set(row[1:])) > 2) > HEIGHT // 10 // 4


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("audit.jsonl", "names the audit log"),
        ("audit.jsonl.lock", "names the audit log's lock file"),
        ("audit.jsonl.state", "names the audit log's rotation state"),
        ("audit.jsonl.000001.gz", "names the segment"),
        ("x.txt", "the report must end in .html"),
    ],
)
def test_a_bad_output_path_is_refused_with_exit_2(
    real: RealLog, name: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = real.log.parent / name
    before = target.read_bytes() if target.exists() else None
    assert before is not None or name == "x.txt"
    assert _cli("audit", "report", str(real.log), "--html", str(target)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"retention: error: --html {target}: {says}")
    assert (target.read_bytes() if target.exists() else None) == before


def test_a_missing_directory_or_log_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "a.jsonl")
    assert _cli("audit", "report", missing, "--html", str(tmp_path / "a.html")) == 2
    assert "no such audit log" in capsys.readouterr().err
    out = tmp_path / "no" / "a.html"
    assert _cli("audit", "report", missing, "--html", str(out)) == 2
    assert "directory does not exist" in capsys.readouterr().err


def _nightly_log(path: Path, nights: int) -> None:
    """A run a night for `nights` nights, each deleting (night % 5) + 1 calls."""
    start = datetime(2025, 1, 1, 2, tzinfo=UTC)
    with path.open("wb") as out:
        writer = ChainWriter(out)
        for night in range(nights):
            at = start + timedelta(days=night)
            run_id = f"run-{night:05d}"
            stamp = [
                (at + timedelta(seconds=s)).isoformat().replace("+00:00", "Z") for s in range(4)
            ]
            writer.write(
                {"ts": stamp[0], "run_id": run_id, "event": "run_started", "dry_run": False}
            )
            for n in range(night % 5 + 1):
                keys = {"call_id": f"c{night}-{n}", "agent_id": "a", "policy": f"p{n % 2}"}
                writer.write(
                    {"ts": stamp[1], "run_id": run_id, "event": "delete_requested", **keys}
                )
                redacted = {"redacted_at": stamp[2], **keys}
                writer.write({"ts": stamp[2], "run_id": run_id, "event": "deleted", **redacted})
            end = {"exit_code": 0, "stopped_by": None}
            writer.write({"ts": stamp[3], "run_id": run_id, "event": "run_finished", **end})


def test_a_long_log_s_page_is_bounded_and_still_adds_up(tmp_path: Path) -> None:
    sizes = {}
    for nights in (400, 800):
        log, html = tmp_path / f"{nights}.jsonl", tmp_path / f"{nights}.html"
        _nightly_log(log, nights)
        assert _cli("audit", "report", str(log), "--html", str(html)) == 0
        page = Page(html.read_text())
        total = sum(night % 5 + 1 for night in range(nights))
        days, runs = page.tables["days"], page.tables["runs"]
        assert len(days.rows) == MAX_DAYS + 2  # the days kept, "earlier", the total
        assert days.rows[-2][0] == f"earlier ({nights - MAX_DAYS} days)"
        assert days.total is not None and int(days.total[-1]) == total
        assert len(runs.rows) == MAX_RUNS + 2
        assert runs.rows[0][0] == f"earlier ({nights - MAX_RUNS} runs)"
        assert runs.total is not None and int(runs.total[7]) == total
        assert runs.total[0] == f"all {nights} runs"
        last = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=nights - 1)
        assert days.rows[0][0] == last.date().isoformat()
        sizes[nights] = len(html.read_bytes())
    assert abs(sizes[800] - sizes[400]) < sizes[400] * 0.02

"""`retention explain --ids FILE` over loopback: one row per id, in input order, each
row as the rules (written out by hand below, not by the engine) decide the call."""

from __future__ import annotations

import csv
import hashlib
import io
import random
from collections.abc import Iterator
from datetime import timedelta
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from retention.api.client import CartesiaClient
from retention.api.limiter import RateLimiter
from retention.api.models import TERMINAL_STATUSES, Call
from retention.api.retry import RetryPolicy
from retention.cli import main
from retention.policy.load import parse_policies
from retention.policy.rows import ExplainRow
from retention.run.explain import READ_BATCH, explain_calls
from retention.run.idfile import IdLine
from retention.sandbox import Dataset, SandboxApp
from retention.sandbox.faults import Faults
from tests.e2e.support import API_KEY, NOW, NOW_TEXT, make_dataset, sandbox

POLICIES = """\
policies:
  - name: old-30d
    delete_after: 30d
    legal_basis: storage limitation, GDPR Art. 5(1)(e)
  - name: billing-hold
    retain_for: forever
    case: LIT-7
    match: {agents: ["billing*"]}
  - name: eu-hold
    retain_for: 26w
    category: EU customers
    match: {regions: [EU]}
"""
NOT_FOUND = ("call_not_there_1", "call_not_there_2")
UNUSABLE = ("bad id", "a/b", "..", "x" * 129)


def expected_row(call: Call, agent_names: dict[str, str]) -> tuple[str, ...]:
    """(decision, reason, policy, held_by, failed policy) by POLICIES, read literally."""
    if call.status not in TERMINAL_STATUSES:
        return ("skip", "not_terminal", "", "", "")
    if call.redacted_at is not None:
        return ("skip", "already_redacted", "", "", "")
    if call.zdr_enabled:
        return ("skip", "zdr", "", "", "")
    origin = call.start_time or call.end_time
    if origin is None:
        return ("skip", "no_timestamp", "", "", "")
    age = NOW - origin
    names = (call.agent_id, agent_names.get(call.agent_id, ""), call.agent_name or "")
    billing = any(fnmatchcase(name, "billing*") for name in names if name)
    eu = call.deployment_region == "EU"
    # The first retention rule (in file order) whose conditions the call fails.
    failed = "billing-hold" if not billing else ("eu-hold" if not eu else "")
    if age < timedelta(days=30):
        return ("keep", "not_yet_due", "old-30d", "", failed)
    holders = [
        name
        for name, holds in (
            ("billing-hold", billing),
            ("eu-hold", eu and age < timedelta(weeks=26)),
        )
        if holds
    ]
    if holders:
        return ("keep", "held", "old-30d", " ".join(holders), "")
    return ("delete", "due", "old-30d", "", failed)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    data = make_dataset(calls=300, agents=6, seed=7)
    billing = next(a.id for a in data.agents() if a.name == "billing")
    # A few billing calls in the EU, 40 days old: held by both holds.
    for call in list(data.iter_calls(billing, transcripts=False))[:6]:
        fields = {
            "deployment_region": "EU",
            "start_time": (NOW - timedelta(days=40)).isoformat(),
            "status": "completed",
            "redacted_at": None,
            "zdr_enabled": False,
        }
        data.override(call.id, fields)
    return data


@pytest.fixture(scope="module")
def app(dataset: Dataset) -> SandboxApp:
    return SandboxApp(dataset, api_key=API_KEY)


@pytest.fixture(scope="module")
def url(app: SandboxApp) -> Iterator[str]:
    with sandbox(app) as base_url:
        yield base_url


def the_ids(dataset: Dataset) -> list[str]:
    """Every call, shuffled, with unknown and unusable ids and a repeat among them."""
    ids = [call.id for call in dataset.iter_all_calls(transcripts=False)]
    random.Random(3).shuffle(ids)
    for position, odd in zip((5, 50, 120, 200, 260, 299), (*NOT_FOUND, *UNUSABLE), strict=True):
        ids.insert(position, odd)
    ids.insert(77, ids[10])
    return ids


def explain(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    tmp_path: Path,
    *flags: str,
    key: str = API_KEY,
) -> tuple[int, str, str]:
    monkeypatch.setenv("CARTESIA_API_KEY", key)
    monkeypatch.delenv("CARTESIA_BASE_URL", raising=False)
    policies = tmp_path / "policies.yaml"
    policies.write_text(POLICIES)
    argv = ["explain", "--policies", str(policies), "--base-url", url, "--now", NOW_TEXT, *flags]
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_every_id_gets_its_row_in_input_order_as_the_rules_read(
    dataset: Dataset,
    url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = the_ids(dataset)
    (tmp_path / "ids.txt").write_text("# DSR-118, exported today\n\n" + "\n".join(ids) + "\n")
    ids_file = str(tmp_path / "ids.txt")
    flags = ("--ids", ids_file, "--format", "csv", "--concurrency", "8")
    code, out, err = explain(capsys, monkeypatch, url, tmp_path, *flags)

    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(ids)
    names = {agent.id: agent.name for agent in dataset.agents()}
    seen: set[str] = set()
    for line, (given, row) in enumerate(zip(ids, rows, strict=True), start=3):
        if given in NOT_FOUND:
            assert (row["call_id"], row["decision"]) == (given, "not_found")
        elif given in UNUSABLE:
            assert (row["call_id"], row["decision"]) == (f"(line {line})", "unusable_id")
            assert row["policy"] == row["held_by"] == ""
        else:
            call = dataset.get_call(given)
            assert call is not None
            decision, reason, policy, held_by, failed = expected_row(call, names)
            assert row["call_id"] == given
            assert (row["decision"], row["reason"]) == (decision, reason), given
            assert (row["policy"], row["held_by"]) == (policy, held_by), given
            assert row["failed_condition"].split(":")[0] == failed, given
            if failed == "eu-hold":
                region = call.deployment_region
                assert row["failed_condition"] == f"eu-hold: region {region} is not EU"
            seen.add(decision + "/" + reason + ("/2" if " " in held_by else ""))
    # The dataset exercises every kind of row.
    assert {"delete/due", "keep/held", "keep/held/2", "keep/not_yet_due"} <= seen
    assert {"skip/not_terminal", "skip/zdr", "skip/already_redacted"} <= seen
    # Annotations of the policies named, never a metadata value or a phone number.
    held = next(r for r in rows if r["held_by"] == "billing-hold eu-hold")
    assert held["annotations"] == (
        "old-30d: legal basis: storage limitation, GDPR Art. 5(1)(e) | "
        "billing-hold: case: LIT-7 | eu-hold: category: EU customers"
    )
    for call in dataset.iter_all_calls(transcripts=False):
        params = call.telephony_params
        for number in (params.to, params.from_) if params is not None else ():
            assert not number or number.lstrip("+") not in out
        for value in (call.metadata or {}).values():
            if isinstance(value, str) and len(value) > 6:
                assert value not in out
    assert err.splitlines()[-1].startswith(f"explained {len(ids)} ids: ")


def test_a_csv_with_a_call_id_column_from_stdin_and_a_table(
    dataset: Dataset,
    url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = list(dataset.iter_all_calls(transcripts=False))[:12]
    text = "ticket,call_id,note\n" + "".join(f'T-{i},"{c.id}",x\n' for i, c in enumerate(calls))
    text += "T-99\n"  # no call_id cell
    stdin = io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    code, out, err = explain(capsys, monkeypatch, url, tmp_path, "--ids", "-")

    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == [
        "call_id",
        "decision",
        "reason",
        "policy",
        "held_by",
        "first",
        "failed",
        "condition",
    ]
    names = {agent.id: agent.name for agent in dataset.agents()}
    for call, line in zip(calls, lines[1:13], strict=True):
        decision, reason, policy, held_by, _ = expected_row(call, names)
        assert (
            line.split()[: 4 if policy else 3]
            == [call.id, decision, reason, policy][: 4 if policy else 3]
        )
        if held_by:
            assert held_by in line
    assert lines[13].split()[:2] == ["(line", "14)"]
    assert "the row has no `call_id` cell" in lines[13]
    # The annotations of the policies the rows named, once each, after the rows.
    assert "old-30d: legal basis: storage limitation, GDPR Art. 5(1)(e)" in lines[14:]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no call ids (give one per line, or a CSV with a `call_id` column)"),
        ("# only a comment\n\n", "no call ids"),
        ("ticket,call\nT-1,call_1\n", "line 1 looks like CSV, but no column is named `call_id`"),
    ],
)
def test_a_file_without_ids_is_exit_2_before_any_request(
    content: str,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "ids.txt").write_text(content)
    # Port 9 on loopback: nothing listens there, and no request is made anyway.
    flags = ("--ids", str(tmp_path / "ids.txt"))
    code, out, err = explain(capsys, monkeypatch, "http://127.0.0.1:9", tmp_path, *flags)
    assert (code, out) == (2, "")
    assert err.startswith(f"retention: error: --ids {tmp_path / 'ids.txt'}: {message}")
    assert len(err.splitlines()) == 1


def test_user_mistakes_are_one_line_and_exit_2(
    url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = tmp_path / "missing.txt"
    code, out, err = explain(capsys, monkeypatch, url, tmp_path, "--ids", str(missing))
    assert (code, out) == (2, "")
    assert err == f"retention: error: --ids {missing}: cannot read: No such file or directory\n"
    code, _, err = explain(capsys, monkeypatch, url, tmp_path, "call_1", "--ids", str(missing))
    assert (code, err) == (
        2,
        "retention: error: explain: give one CALL_ID, or --ids FILE for many\n",
    )
    code, _, err = explain(capsys, monkeypatch, url, tmp_path, "call_1", "--format", "csv")
    assert (code, err) == (2, "retention: error: explain: --format csv is for --ids FILE\n")
    (tmp_path / "ids.txt").write_text("call_1\n")
    flags = ("--ids", str(tmp_path / "ids.txt"))
    code, out, err = explain(capsys, monkeypatch, url, tmp_path, *flags, key="sk_car_wrong")
    assert code == 2 and "refused the credentials" in err and "sk_car_wrong" not in err
    assert len(err.splitlines()) == 1


@pytest.mark.slow
@pytest.mark.anyio
async def test_rows_stream_in_order_with_a_bounded_window_through_the_limiter(
    app: SandboxApp, url: str
) -> None:
    """Thousands of ids: the reader never gets more than the window (and one batch)
    ahead of the rows written, and the sandbox never sees more than `concurrency`
    requests at once, answered with jitter so they finish out of order."""
    ids = [call.id for call in app.dataset.iter_all_calls(transcripts=False)]
    total, window, workers = 2000, 16, 4
    read = 0

    def given() -> Iterator[IdLine]:
        nonlocal read
        for n in range(total):
            read += 1
            yield IdLine(n + 1, ids[n % len(ids)])

    written: list[ExplainRow] = []
    ahead: list[int] = []

    def emit(row: ExplainRow) -> None:
        written.append(row)
        ahead.append(read - len(written))

    app.faults = Faults(latency_ms=1, jitter_ms=1, max_in_flight=workers)
    app.reset_stats()
    try:
        gate = RateLimiter(5000, workers)
        async with CartesiaClient(base_url=url, api_key=API_KEY, gate=gate) as client:
            counts = await explain_calls(
                given(),
                client,
                parse_policies([("p.yaml", POLICIES)]),
                NOW,
                emit,
                workers=workers,
                window=window,
            )
    finally:
        app.faults = Faults()
    assert [row.call_id for row in written] == [ids[n % len(ids)] for n in range(total)]
    assert sum(counts.values()) == total
    assert max(ahead) <= window + READ_BATCH
    assert app.stats.peak_in_flight <= workers
    assert app.stats.count("/agents/calls/{call_id}", 429) == 0
    assert gate.counters.granted == total + 1  # every GET, and the agents, through the gate


@pytest.mark.anyio
async def test_a_call_that_cannot_be_read_gets_an_error_row(app: SandboxApp, url: str) -> None:
    ids = [call.id for call in app.dataset.iter_all_calls(transcripts=False)][:3]

    def given() -> Iterator[IdLine]:
        # Read once the agents are listed: from here on every answer is a 500.
        app.faults = Faults(error_rate=1.0)
        yield from (IdLine(n, call_id) for n, call_id in enumerate(ids, start=1))

    rows: list[ExplainRow] = []
    retry = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01)
    try:
        async with CartesiaClient(base_url=url, api_key=API_KEY, retry=retry) as client:
            counts = await explain_calls(
                given(),
                client,
                parse_policies([("p.yaml", POLICIES)]),
                NOW,
                rows.append,
                workers=2,
                window=4,
            )
    finally:
        app.faults = Faults()
    assert counts == {"error": 3}
    assert [(r.call_id, r.decision) for r in rows] == [(i, "error") for i in ids]
    assert all(r.reason.startswith("could not read the call: ") for r in rows)


def test_rows_never_show_a_phone_number_nor_its_digest(
    dataset: Dataset,
    url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    telephony = [c for c in dataset.iter_all_calls(transcripts=False) if c.telephony_params]
    numbers = {
        number
        for c in telephony
        if c.telephony_params is not None
        for number in (c.telephony_params.to, c.telephony_params.from_)
        if number
    }
    assert len(telephony) >= 20 and numbers
    digest = "sha256:" + hashlib.sha256(b"+15550100999").hexdigest()  # nobody's number
    rule = f"{{name: erase-one, delete_after: 0d, match: {{phone_numbers: [{digest!r}]}}}}"
    (tmp_path / "p.yaml").write_text(f"policies:\n  - {rule}\n")
    (tmp_path / "ids.txt").write_text("\n".join(c.id for c in telephony[:40]) + "\n")
    monkeypatch.setenv("CARTESIA_API_KEY", API_KEY)
    argv = ["explain", "--ids", str(tmp_path / "ids.txt"), "--policies", str(tmp_path / "p.yaml")]
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main([*argv, "--base-url", url, "--now", NOW_TEXT, "--format", "csv"])
    out, err = capsys.readouterr()
    assert done.value.code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    terminal = [r for r in rows if r["decision"] == "keep"]
    assert terminal and all(r["reason"] == "no_deletion_rule" for r in terminal)
    assert all(r["failed_condition"].startswith("erase-one: its `") for r in terminal)
    for number in numbers:
        assert number not in out + err and number.lstrip("+") not in out + err
    assert digest not in out and digest[7:] not in out

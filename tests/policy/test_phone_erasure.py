"""End to end over loopback: an erasure by phone digest, with a hold list in a value
file, deletes exactly the calls to or from that number except the held ones. The
expected set is read from the dataset by hand, not by the policy engine."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from retention.api.models import TERMINAL_STATUSES, Call
from retention.sandbox import Dataset, SandboxApp
from tests.e2e.support import (
    API_KEY,
    NOW,
    Workspace,
    make_dataset,
    read_audit,
    read_csv,
    run_cli,
    sandbox,
)


def digits(text: str | None) -> str:
    """The number as the test reads it: `+` and digits, separators dropped."""
    return "" if text is None else "".join(c for c in text if c.isdigit() or c == "+")


def erasable(call: Call, number: str, held: set[str]) -> bool:
    params = call.telephony_params
    if params is None or number not in (digits(params.to), digits(params.from_)):
        return False
    if call.status not in TERMINAL_STATUSES or call.redacted_at is not None:
        return False
    if call.zdr_enabled or (call.start_time is None and call.end_time is None):
        return False
    if (call.metadata or {}).get("customer_id") not in held:
        return True
    origin = call.start_time or call.end_time
    assert origin is not None
    return NOW - origin >= timedelta(weeks=52)  # the hold has run out


@pytest.fixture
def dataset() -> Dataset:
    return make_dataset(calls=400, agents=6, seed=7)


@pytest.fixture
def app(dataset: Dataset) -> SandboxApp:
    return SandboxApp(dataset, api_key=API_KEY)


@pytest.fixture
def url(app: SandboxApp) -> Iterator[str]:
    with sandbox(app) as base_url:
        yield base_url


def test_an_erasure_by_phone_digest_deletes_exactly_that_numbers_unheld_calls(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    app: SandboxApp,
    url: str,
) -> None:
    dataset = app.dataset
    # The person's number: an agent's line (every telephony call of it is `from` it)...
    plan = dataset.agent_plan(dataset.agents()[1].id)
    number = plan.number
    # ...and, spelt otherwise, the caller (`to`) of a few calls of another agent.
    other = dataset.agents()[2].id
    spelt = f"{number[:2]} ({number[2:5]}) {number[5:8]}-{number[8:]}"
    for call in list(dataset.iter_calls(other, transcripts=False))[:40:4]:
        if call.telephony_params is not None and call.telephony_params.to is not None:
            dataset.override(call.id, {"telephony_params": {"to": spelt, "from": "+15550000000"}})
    calls = list(dataset.iter_all_calls(transcripts=False))
    # Hold the customers of a few of those calls: their calls are kept.
    touching = [c for c in calls if erasable(c, number, set())]
    held = {str((c.metadata or {})["customer_id"]) for c in touching[::5] if c.metadata}
    held.discard("None")
    expected = {c.id for c in calls if erasable(c, number, held)}
    kept = {c.id for c in touching} - expected
    assert expected and kept and any(c.agent_id == other for c in touching)

    digest = "sha256:" + hashlib.sha256(number.encode()).hexdigest()
    (tmp_path / "erase.txt").write_text(f"# DSR-2026-118\n{digest}\n")
    (tmp_path / "holds.txt").write_text("\n".join(sorted(held)) + "\n")
    space = Workspace(tmp_path)
    space.policies.write_text(
        "policies:\n"
        "  - name: erasure-dsr-118\n    delete_after: 0d\n    request_id: DSR-2026-118\n"
        "    legal_basis: GDPR Art. 17\n    match: {phone_numbers: {file: erase.txt}}\n"
        "  - name: contract-hold\n    retain_for: 52w\n    case: C-42\n"
        "    match: {metadata: {customer_id: {file: holds.txt}}}\n"
    )

    result = run_cli(capsys, monkeypatch, space, url, "--execute", "--report", str(space.report()))

    assert result.code == 0, result.err
    assert dataset.redacted_ids() == expected
    lines = read_audit(space.audit_log)
    recorded = {s["path"]: s["sha256"] for s in lines[0]["policies"]}
    for name in ("erase.txt", "holds.txt"):
        path = tmp_path / name
        assert recorded[str(path)] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert {row["call_id"] for row in read_csv(space.report())} == expected
    # No phone number, in any spelling, reaches the output, the audit log or the report.
    texts = [result.out, result.err, space.audit_log.read_text(), space.report().read_text()]
    for text in texts:
        assert number not in text and number[2:] not in text and spelt not in text

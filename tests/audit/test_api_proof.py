"""`--api`: every redaction the log claims is read back from the sandbox API.

The log is built here from calls the sandbox itself redacted (its own Python
method), so the expected answers come from the sandbox's records, not from the
verifier under test.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from retention.api.client import CartesiaClient
from retention.api.limiter import RateLimiter
from retention.api.retry import RetryPolicy
from retention.audit.proof import ApiProof, prove_against_api
from retention.audit.synth import ChainWriter
from retention.audit.verify import verify_log
from retention.cli import main
from retention.sandbox.app import SandboxApp
from retention.sandbox.data import Dataset, DatasetSpec
from retention.sandbox.faults import Faults
from retention.sandbox.server import serve_in_thread

KEY = "sk_car_sandbox"
NOW = datetime(2026, 11, 20, tzinfo=UTC)


@dataclass(frozen=True)
class Redacted:
    call_id: str
    agent_id: str
    at: datetime


@dataclass(frozen=True)
class World:
    app: SandboxApp
    log: Path
    redacted: list[Redacted]  # in log order


def _ts(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def _build(tmp_path: Path) -> World:
    app = SandboxApp(Dataset(DatasetSpec(seed=3, agents=3, calls=120, now=NOW)))
    candidates = [
        call
        for call in app.dataset.iter_all_calls(transcripts=False)
        if call.terminal and call.redacted_at is None
    ][:6]
    already = next(
        call for call in app.dataset.iter_all_calls(transcripts=False) if call.redacted_at
    )
    redacted = []
    for n, call in enumerate(candidates):
        at = NOW + timedelta(seconds=n, milliseconds=250)
        app.dataset.redact(call.id, at)
        redacted.append(Redacted(call.id, call.agent_id, at))
    assert already.redacted_at is not None
    out = io.BytesIO()
    writer = ChainWriter(out)
    base = {"ts": "2026-11-20T00:00:00Z", "run_id": "run-a"}
    writer.write({**base, "event": "run_started", "dry_run": False})
    claims = [*redacted, Redacted(already.id, already.agent_id, already.redacted_at)]
    for n, item in enumerate(claims):
        ids = {"call_id": item.call_id, "agent_id": item.agent_id, "policy": "p"}
        writer.write({**base, "event": "delete_requested", **ids})
        event = "already_redacted" if item.call_id == already.id else "deleted"
        # Every other line writes the instant in another RFC 3339 spelling.
        shown = _ts(item.at) if n % 2 else item.at.astimezone(UTC).isoformat()
        writer.write({**base, "event": event, "redacted_at": shown, **ids})
    ids = {"call_id": "gone", "agent_id": "a", "policy": "p"}
    writer.write({**base, "event": "delete_requested", **ids})
    writer.write({**base, "event": "not_found", **ids})  # not a claim: never checked
    writer.write({**base, "event": "run_finished"})
    log = tmp_path / "audit.jsonl"
    log.write_bytes(out.getvalue())
    return World(app, log, claims)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return _build(tmp_path)


@pytest.fixture
def served(world: World) -> Iterator[str]:
    with serve_in_thread(world.app) as url:
        yield url


@pytest.mark.anyio
async def test_in_process_every_claim_is_confirmed(world: World) -> None:
    summary = verify_log(world.log)
    assert summary.intact
    client = CartesiaClient(
        base_url="http://127.0.0.1",
        api_key=KEY,
        gate=RateLimiter(1000, 4),
        transport=httpx.ASGITransport(app=world.app),
    )
    async with client:
        proof = await prove_against_api(
            world.log,
            client,
            verified_lines=summary.lines,
            to_check=summary.redactions,
            workers=4,
        )
    assert proof.to_check == proof.confirmed == len(world.redacted) == 7
    assert proof.holds and proof.first_mismatches == []


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "verify", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert KEY not in out + err
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, out, err


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTESIA_API_KEY", KEY)
    monkeypatch.delenv("CARTESIA_BASE_URL", raising=False)


def test_cli_confirms_a_clean_log_over_http(
    world: World, served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "evidence.json"
    code, out, _ = _verify(
        capsys, str(world.log), "--api", "--base-url", served, "--report", str(report)
    )
    assert code == 0, out
    assert "INTACT and CONFIRMED by the API (7 redactions)" in out
    import json

    check = json.loads(report.read_text())["api_check"]
    assert (check["to_check"], check["confirmed"], check["mismatched"]) == (7, 7, 0)
    assert check["finished_at"].endswith("Z")


def test_a_call_the_api_shows_unredacted_is_listed_and_exits_1(
    world: World, served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = world.redacted[2]
    reply = httpx.patch(f"{served}/_sandbox/calls/{victim.call_id}", json={"redacted_at": None})
    assert reply.status_code == 200
    other = world.redacted[4]
    later = other.at + timedelta(hours=1)
    world.app.override_call(other.call_id, {"redacted_at": later})
    report = tmp_path / "evidence.md"
    code, out, err = _verify(
        capsys, str(world.log), "--api", "--base-url", served, "--report", str(report)
    )
    assert code == 1
    assert "5 confirmed, 2 mismatched, 0 unreadable of 7" in out
    assert f"call {victim.call_id} logged " in out
    victim_line = next(line for line in out.splitlines() if victim.call_id in line)
    assert victim_line.endswith("API shows null")
    other_line = next(line for line in out.splitlines() if other.call_id in line)
    assert other_line.endswith(f"API shows {_ts(later)}")
    assert "NOT CONFIRMED" in err
    text = report.read_text()
    assert victim.call_id in text and "| null |" in text


def test_a_call_the_api_no_longer_knows_is_a_mismatch(
    world: World, served: str, capsys: pytest.CaptureFixture[str]
) -> None:
    world.app.remove_agent(world.redacted[0].agent_id)
    code, out, _ = _verify(capsys, str(world.log), "--api", "--base-url", served)
    assert code == 1
    assert "API shows 404" in out


def test_refused_credentials_before_any_check_exit_2(
    world: World, served: str, capsys: pytest.CaptureFixture[str]
) -> None:
    world.app.revoke_key()
    code, _, err = _verify(capsys, str(world.log), "--api", "--base-url", served)
    assert code == 2
    assert "refused the credentials (HTTP 401); nothing was checked" in err
    assert len(err.strip().splitlines()) == 1


def test_no_api_key_exits_2(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CARTESIA_API_KEY")
    code, _, err = _verify(capsys, str(world.log), "--api", "--base-url", "http://127.0.0.1:9")
    assert code == 2
    assert "CARTESIA_API_KEY" in err


def test_plain_http_to_a_remote_host_is_refused_before_reading(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _verify(capsys, str(world.log), "--api", "--base-url", "http://example.com")
    assert code == 2
    assert "not loopback" in err


def test_a_broken_log_is_not_checked_against_the_api(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = world.log.read_bytes().splitlines(keepends=True)
    world.log.write_bytes(b"".join([*lines[:2], *lines[3:]]))
    code, out, err = _verify(capsys, str(world.log), "--api", "--base-url", "http://127.0.0.1:9")
    assert code == 1
    assert "skipped" in err
    assert "BROKEN at line 3" in out


async def _prove_in_process(
    world: World, client: CartesiaClient, on_checked: Callable[[ApiProof], None]
) -> ApiProof:
    summary = verify_log(world.log)
    async with client:
        return await prove_against_api(
            world.log,
            client,
            verified_lines=summary.lines,
            to_check=summary.redactions,
            workers=1,
            on_checked=on_checked,
        )


def _client(world: World, retry: RetryPolicy = RetryPolicy()) -> CartesiaClient:  # noqa: B008
    return CartesiaClient(
        base_url="http://127.0.0.1",
        api_key=KEY,
        retry=retry,
        transport=httpx.ASGITransport(app=world.app),
    )


@pytest.mark.anyio
async def test_credentials_refused_part_way_stop_the_check(world: World) -> None:
    def revoke_after_three(proof: ApiProof) -> None:
        if proof.checked == 3:
            world.app.revoke_key()

    proof = await _prove_in_process(world, _client(world), revoke_after_three)
    assert proof.refused_status == 401
    assert proof.checked == proof.confirmed == 3
    assert not proof.complete and not proof.holds


@pytest.mark.anyio
async def test_a_call_the_api_cannot_serve_is_unproven_not_confirmed(world: World) -> None:
    world.app.faults = Faults(error_rate=1.0)
    proof = await _prove_in_process(
        world, _client(world, RetryPolicy(max_attempts=1)), lambda _proof: None
    )
    assert proof.unreadable == proof.to_check == 7
    assert proof.confirmed == proof.mismatched == 0
    assert not proof.holds
    assert all(m.kind == "unreadable" for m in proof.first_mismatches)

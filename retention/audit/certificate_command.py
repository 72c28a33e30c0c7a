"""`retention audit certificate LOG --policy SWEEP`: the evidence for one erasure request.

Exit status: 0 written (and, with --api, every erased call confirmed); 1 the log is
broken (no certificate is written from it), or the API does not confirm some call
(the certificate is written and says which); 2 bad input (unknown policy, output
path, flags, credentials refused before anything was checked); 4 the API refused
the credentials part-way (the certificate is written, the rest unchecked).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import anyio
import click

from retention import __version__
from retention.api.client import CartesiaClient
from retention.api.limiter import RateLimiter
from retention.audit.certificate import (
    NOT_ATTEMPTED,
    OPEN_INTENTS_LISTED,
    UNSETTLED,
    SweepFacts,
    read_sweep,
)
from retention.audit.certificate_doc import WRITERS, DocumentWriter, writer_for
from retention.audit.command import ApiOptions, refused_exit
from retention.audit.erasure_check import ErasureCheck, check_erasures
from retention.audit.events import REDACTION_EVENTS, Event, Outcome, RunMode
from retention.audit.evidence import iso, verdict_line
from retention.audit.paths import check_outputs
from retention.audit.signing import load_public_keys
from retention.audit.verify import LogSummary, verify_log
from retention.audit.writer import run_holds_lock
from retention.errors import ExitCode, UserError
from retention.settings import check_base_url

FLAG: Final = "--out"


class CertificatePathError(UserError):
    """--out names a format we do not write, or a place we cannot write to (exit 2)."""


def _check_out(out: Path | None) -> str:
    if out is None:
        return ".md"
    suffix = out.suffix.lower()
    if suffix not in WRITERS:
        raise CertificatePathError(
            "the certificate must end in .md, .html or .json", where=f"{FLAG} {out}"
        )
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise CertificatePathError("its directory does not exist", where=f"{FLAG} {out}")
    return suffix


def _checkpoint(summary: LogSummary, facts: SweepFacts) -> dict[str, Any]:
    point = facts.covering
    if point is None:
        return {
            "note": f"no signed checkpoint covers the policy's last line (seq "
            f"{facts.last_line_seq}) yet; a run with --signing-key adds one"
        }
    use = summary.signed_by.get(point.key)
    checked = (
        f"signature checked against {use.path}"
        if use is not None and use.path is not None
        else "signature not checked (give --public-key)"
    )
    return {
        "seq": point.seq,
        "covers_seq": point.covers_seq,
        "covers_hash": point.covers_hash,
        "key": point.key,
        "run_id": point.run_id,
        "ts": point.ts,
        "signature": checked,
    }


def _runs(facts: SweepFacts) -> list[dict[str, Any]]:
    rows = []
    for run in facts.runs:
        counts = run.counts or {}
        pending = run.pending() or {}
        mode = "?" if run.dry_run is None else RunMode.of(run.dry_run).value
        rows.append(
            {
                "run_id": run.run_id,
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "mode": mode,
                "exit_code": run.exit_code,
                "stopped_by": run.stopped_by,
                "policy_files": run.policy_files,
                "due": counts.get("due") if run.counts is not None else None,
                "erased": sum(run.logged[event] for event in REDACTION_EVENTS),
                Outcome.WOULD_DELETE.value: counts.get(Outcome.WOULD_DELETE)
                if run.dry_run
                else None,
                **{key: pending.get(key) for key in (*UNSETTLED, NOT_ATTEMPTED)},
                "held_by": run.held_by or {},
            }
        )
    return rows


def _files(facts: SweepFacts) -> list[dict[str, Any]]:
    """Each distinct policy file (path and digest) the runs loaded the policy from."""
    seen: dict[tuple[str, str], list[str]] = {}
    for run in facts.runs:
        if run.names_recorded:
            for entry in run.policy_files:
                seen.setdefault((entry["path"], entry["sha256"]), []).append(run.run_id)
    return [{"path": p, "sha256": d, "runs": ids} for (p, d), ids in seen.items()]


def _head(summary: LogSummary, facts: SweepFacts, made_at: datetime) -> dict[str, Any]:
    intents = sorted(facts.open_intents.items(), key=lambda item: item[1])
    return {
        "certificate": "erasure",
        "made_at": iso(made_at),
        "tool_version": __version__,
        "policy": {"name": facts.policy, "files": _files(facts)},
        "log": {
            "path": str(summary.path),
            "sha256": summary.sha256,
            "size": summary.size,
            "lines": summary.lines,
            "last_seq": summary.last_seq,
            "last_hash": summary.last_hash,
            "verdict": verdict_line(summary, None),
            "run_holds_lock": summary.run_holds_lock,
        },
        "runs": _runs(facts),
        "erased": {
            "calls": facts.erased,
            "by_event": dict(sorted(facts.erased_by_event.items())),
            "first_redacted_at": facts.first_redacted_at,
            "last_redacted_at": facts.last_redacted_at,
            Event.NOT_FOUND.value: facts.not_found,
        },
        "open_intents": {
            "count": len(intents),
            "calls": [call_id for call_id, _ in intents[:OPEN_INTENTS_LISTED]],
        },
        "checkpoint": _checkpoint(summary, facts),
    }


def _rows(spool: IO[str]) -> Iterator[dict[str, Any]]:
    spool.seek(0)
    for line in spool:
        row: dict[str, Any] = json.loads(line)
        yield row


def _api_tail(check: ErasureCheck, total: int) -> dict[str, Any]:
    return {
        "base_url": check.base_url,
        "started_at": iso(check.started_at),
        "finished_at": iso(check.finished_at),
        "erased_calls": total,
        "checked": check.checked,
        "confirmed": check.confirmed,
        "not_confirmed": check.not_confirmed,
        "unreadable": check.unreadable,
        "verdicts": dict(sorted(check.verdicts.items())),
        "credentials_refused": check.refused_status,
    }


async def _check(options: ApiOptions, spool: IO[str], writer: DocumentWriter) -> ErasureCheck:
    gate = RateLimiter(options.rate, options.concurrency)
    client = CartesiaClient(base_url=options.base_url, api_key=options.api_key, gate=gate)
    async with client:
        return await check_erasures(client, _rows(spool), writer.row, workers=options.concurrency)


def _write(
    target: IO[str],
    suffix: str,
    head: dict[str, Any],
    spool: IO[str],
    api: ApiOptions | None,
    total: int,
) -> ErasureCheck | None:
    writer = writer_for(suffix, target, api is not None)
    writer.head(head)
    check: ErasureCheck | None = None
    if api is None:
        for row in _rows(spool):
            writer.row(row)
    else:
        check = anyio.run(_check, api, spool, writer)
    writer.tail(_api_tail(check, total) if check is not None else None)
    return check


def certificate_command(
    path: Path,
    policy: str,
    *,
    out: Path | None,
    api: ApiOptions | None,
    public_keys: Sequence[Path] = (),
    witness: Path | None = None,
) -> int:
    """Run the whole command; returns the exit status (UserError for exit 2)."""
    check_outputs(path, {FLAG: out}, keep=[(f"the public key {key}", key) for key in public_keys])
    suffix = _check_out(out)
    if api is not None:
        check_base_url(api.base_url)
    keys = load_public_keys(public_keys) if public_keys else None
    summary = verify_log(path, lock_probe=run_holds_lock, keys=keys, witness_dir=witness)
    if summary.problem is not None:
        click.echo(
            f"retention: audit log broken: {path}: {summary.problem}; "
            "no certificate is made from a broken log",
            err=True,
        )
        return ExitCode.SOME_FAILED
    made_at = datetime.now(UTC)
    with tempfile.TemporaryFile("w+", encoding="ascii") as spool:
        facts = read_sweep(path, policy, max_lines=summary.lines, spool=spool)
        head = _head(summary, facts, made_at)
        if out is None:
            check = _write(sys.stdout, suffix, head, spool, api, facts.erased)
        else:
            check = _write_file(out, suffix, head, spool, api, facts.erased)
    if out is not None:
        click.echo(f"certificate {out}: {facts.erased} calls erased under {policy}", err=True)
    return _exit(check)


def _write_file(
    out: Path,
    suffix: str,
    head: dict[str, Any],
    spool: IO[str],
    api: ApiOptions | None,
    total: int,
) -> ErasureCheck | None:
    """Into a temporary file beside `out`, renamed over it once whole."""
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as target:
            check = _write(target, suffix, head, spool, api, total)
        if check is not None and check.refused_status is not None and check.checked == 0:
            tmp.unlink()
            return check
        os.replace(tmp, out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        reason = os.strerror(err.errno) if err.errno else type(err).__name__
        raise CertificatePathError(
            f"cannot write the certificate ({reason})", where=f"{FLAG} {out}"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return check


def _exit(check: ErasureCheck | None) -> int:
    if check is None:
        return ExitCode.OK
    if check.refused_status is not None:
        return refused_exit(check.refused_status, check.checked)
    if not check.holds:
        click.echo(
            f"retention: the API does not confirm {check.checked - check.confirmed} "
            f"of {check.checked} erased calls; see the certificate",
            err=True,
        )
        return ExitCode.SOME_FAILED
    return ExitCode.OK

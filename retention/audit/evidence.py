"""What `retention audit verify` prints, and the evidence file it writes (.md or .json).

Only facts the verifier derived are written: the file's digest, the chain's end,
counts, run ids and times, policy names, call ids of mismatches. Nothing free-form
is copied from the log (not even a `failed` line's `error`), so no transcript,
summary, phone number, metadata value or key can reach the evidence.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from retention import __version__, markdown
from retention.audit.events import LOGGED_OUTCOMES, RunMode
from retention.audit.proof import ApiProof
from retention.audit.verify import LogSummary
from retention.durable import replace_text
from retention.errors import UserError
from retention.timestamps import rfc3339

REPORT_SUFFIXES: Final = (".md", ".json")
RUNS_PRINTED: Final = 20
OUTCOME_ORDER: Final = tuple(str(event) for event in LOGGED_OUTCOMES)
LIVE_RUN_NOTE: Final = (
    "a run holds the lock: intents still being settled are reported as in flight, not as broken"
)


class ReportPathError(UserError):
    """--report names a format we do not write, or a place we cannot write to."""


def check_report_path(path: Path) -> None:
    """Fail before any work when --report cannot be honoured."""
    if path.suffix.lower() not in REPORT_SUFFIXES:
        raise ReportPathError(
            "the evidence report must end in .md or .json", where=f"--report {path}"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ReportPathError("its directory does not exist", where=f"--report {path}")


def iso(instant: datetime | None) -> str | None:
    return None if instant is None else rfc3339(instant)


def verdict_line(summary: LogSummary, proof: ApiProof | None) -> str:
    if summary.problem is not None:
        return f"BROKEN at {summary.problem}"
    if summary.run_holds_lock:
        text = "INTACT so far: the chain holds" if proof is None else _proof_verdict(proof)
        return f"{text}; {_in_flight(summary)}"
    if proof is None:
        return "INTACT: the chain holds and every delete_requested has one outcome"
    return _proof_verdict(proof)


def _in_flight(summary: LogSummary) -> str:
    text = f"a run holds the lock: {summary.in_flight} delete_requested in flight"
    return text + (", its last line being written" if summary.writing_line else "")


def _proof_verdict(proof: ApiProof) -> str:
    if proof.refused_status is not None:
        return f"UNPROVEN: the API refused the credentials (HTTP {proof.refused_status})"
    if proof.holds:
        return f"INTACT and CONFIRMED by the API ({proof.confirmed} redactions)"
    return (
        f"INTACT but NOT CONFIRMED: {proof.mismatched} mismatched, "
        f"{proof.unreadable} unreadable of {proof.to_check}"
    )


def _counts(counter: Counter[str]) -> dict[str, int]:
    return {key: counter[key] for key in sorted(counter)}


def evidence(summary: LogSummary, proof: ApiProof | None, *, made_at: datetime) -> dict[str, Any]:
    """The evidence as plain data (the JSON report; the Markdown one renders the same)."""
    problem = summary.problem
    return {
        "tool": {"name": "cartesia-retention", "version": __version__},
        "verified_at": iso(made_at),
        "log": {
            "path": str(summary.path.resolve()),
            "sha256": summary.sha256,
            "bytes": summary.size,
            "lines": summary.lines,
            "last_seq": summary.last_seq,
            "last_hash": summary.last_hash,
        },
        "verdict": {
            "intact": summary.intact,
            "text": verdict_line(summary, proof),
            "problems": summary.problems,
            "run_holds_lock": summary.run_holds_lock,
            "in_flight": summary.in_flight,
            "first_problem": None
            if problem is None
            else {"line": problem.line, "kind": problem.kind, "detail": problem.detail},
        },
        "runs": [
            {
                "run_id": run.run_id,
                "started_at": iso(run.started_at),
                "finished_at": iso(run.finished_at),
                "dry_run": run.dry_run,
                "outcomes": _counts(run.outcomes),
            }
            for run in summary.runs.values()
        ],
        "events": _counts(summary.events),
        "outcomes": _counts(summary.outcomes),
        "by_policy": {name: _counts(summary.by_policy[name]) for name in sorted(summary.by_policy)},
        "redacted_at": {
            "first": iso(summary.first_redacted_at),
            "last": iso(summary.last_redacted_at),
        },
        "api_check": None if proof is None else _proof_data(proof),
        "signatures": _signature_data(summary),
    }


def _signature_data(summary: LogSummary) -> dict[str, Any]:
    """Checkpoints, which key signed which, what no signature covers yet, the witness."""
    return {
        "checked": summary.signatures_checked,
        "checkpoints": summary.checkpoints,
        "last_checkpoint_seq": summary.last_checkpoint_seq or None,
        "uncovered_lines": summary.uncovered,
        "keys": [
            {
                "fingerprint": use.key_id,
                "public_key_file": str(use.path) if use.path else None,
                "checkpoints": use.checkpoints,
                "first_seq": use.first_seq,
                "last_seq": use.last_seq,
            }
            for use in summary.signed_by.values()
        ],
        "witness": None
        if summary.witness is None
        else {
            "directory": str(summary.witness),
            "witnessed": summary.witnessed,
            "found": summary.witness_found,
        },
    }


def signature_lines(data: dict[str, Any]) -> list[str]:
    """The signatures part of the summary, one fact a line."""
    sig = data["signatures"]
    how = "signature checked" if sig["checked"] else "signature NOT checked (no --public-key)"
    out = [f"checkpoints {sig['checkpoints']}" + (f", {how}" if sig["checkpoints"] else "")]
    for key in sig["keys"]:
        source = f" ({key['public_key_file']})" if key["public_key_file"] else ""
        out.append(
            f"  key {key['fingerprint']}{source}: {key['checkpoints']} checkpoints, "
            f"seq {key['first_seq']}..{key['last_seq']}"
        )
    if sig["uncovered_lines"]:
        after = sig["last_checkpoint_seq"]
        where = f"after the last checkpoint (seq {after})" if after else "and no checkpoint"
        out.append(
            f"not covered {sig['uncovered_lines']} lines {where}: no signature covers them yet"
        )
    witness = sig["witness"]
    if witness is not None:
        out.append(
            f"witness     {witness['found']} of {witness['witnessed']} witnessed checkpoints "
            f"found in the log ({witness['directory']})"
        )
    return out


def _proof_data(proof: ApiProof) -> dict[str, Any]:
    listed = proof.first_mismatches
    return {
        "base_url": proof.base_url,
        "started_at": iso(proof.started_at),
        "finished_at": iso(proof.finished_at),
        "to_check": proof.to_check,
        "checked": proof.checked,
        "confirmed": proof.confirmed,
        "mismatched": proof.mismatched,
        "unreadable": proof.unreadable,
        "refused_status": proof.refused_status,
        "holds": proof.holds,
        "first_mismatches": [
            {
                "line": item.line,
                "call_id": item.call_id,
                "logged": item.logged,
                "seen": item.seen,
                "kind": item.kind,
            }
            for item in listed
        ],
        "mismatches_not_listed": proof.mismatched + proof.unreadable - len(listed),
    }


def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [*markdown.table(header, rows), ""]


def _yes_no(flag: bool | None) -> str | None:
    return None if flag is None else ("yes" if flag else "no")


def to_markdown(data: dict[str, Any]) -> str:
    log, verdict = data["log"], data["verdict"]
    out = [
        "# Audit log evidence",
        "",
        f"- Verdict: **{verdict['text']}**",
        *([f"- Note: {LIVE_RUN_NOTE}"] if verdict["run_holds_lock"] else []),
        f"- Verified at: {data['verified_at']} by {data['tool']['name']} {data['tool']['version']}",
        f"- File: `{log['path']}` ({log['bytes']} bytes, {log['lines']} lines)",
        f"- SHA-256 of the file: `{log['sha256']}`",
        f"- Chain: last seq {log['last_seq']}, last hash `{log['last_hash']}`",
        f"- First / last `redacted_at`: {data['redacted_at']['first'] or '—'} / "
        f"{data['redacted_at']['last'] or '—'}",
        "",
        "## Runs",
        "",
    ]
    out += _md_table(
        ["run_id", "started", "finished", "dry run", *OUTCOME_ORDER],
        [
            [run["run_id"], run["started_at"], run["finished_at"], _yes_no(run["dry_run"])]
            + [run["outcomes"].get(name, 0) for name in OUTCOME_ORDER]
            for run in data["runs"]
        ],
    )
    out += ["## Deletions by policy", ""]
    out += _md_table(
        ["policy", *OUTCOME_ORDER],
        [
            [name, *(counts.get(outcome, 0) for outcome in OUTCOME_ORDER)]
            for name, counts in data["by_policy"].items()
        ],
    )
    out += ["## Signed checkpoints", ""]
    out += [f"- {line.strip()}" for line in signature_lines(data)] + [""]
    out += ["## Lines by event", ""]
    out += _md_table(["event", "lines"], [[k, v] for k, v in data["events"].items()])
    check = data["api_check"]
    out += ["## Check against the API", ""]
    if check is None:
        out += ["Not made (run with `--api`).", ""]
    else:
        out += [
            f"- API: {check['base_url']}, from {check['started_at']} to {check['finished_at']}",
            f"- Redactions to check: {check['to_check']}; checked {check['checked']}; "
            f"confirmed {check['confirmed']}; mismatched {check['mismatched']}; "
            f"unreadable {check['unreadable']}",
        ]
        if check["refused_status"] is not None:
            out.append(
                f"- Stopped: the API refused the credentials (HTTP {check['refused_status']})"
            )
        out.append("")
        if check["first_mismatches"]:
            out += _md_table(
                ["line", "call_id", "logged redacted_at", "API shows"],
                [
                    [m["line"], m["call_id"], m["logged"], m["seen"]]
                    for m in check["first_mismatches"]
                ],
            )
            if check["mismatches_not_listed"]:
                out += [f"…and {check['mismatches_not_listed']} more not listed.", ""]
    return "\n".join(out)


def write_report(path: Path, data: dict[str, Any]) -> None:
    text = (
        json.dumps(data, indent=2) + "\n"
        if path.suffix.lower() == ".json"
        else to_markdown(data) + "\n"
    )
    try:
        replace_text(path, text)
    except OSError as err:
        raise ReportPathError(
            f"cannot write the report ({os.strerror(err.errno) if err.errno else err})",
            where=f"--report {path}",
        ) from None


def summary_text(summary: LogSummary, proof: ApiProof | None) -> str:
    """The human summary printed on stdout."""
    data = evidence(summary, proof, made_at=datetime.now(UTC))
    log = data["log"]
    out = [
        f"audit log   {summary.path} ({log['lines']} lines, sha256 {log['sha256']})",
        f"chain       last seq {log['last_seq']}, last hash {log['last_hash']}",
        f"runs        {len(data['runs'])}",
    ]
    runs = data["runs"]
    if len(runs) > RUNS_PRINTED:
        out.append(f"  ({len(runs) - RUNS_PRINTED} earlier runs not shown; see --report)")
    for run in runs[-RUNS_PRINTED:]:
        mode = "mode ?" if run["dry_run"] is None else RunMode.of(run["dry_run"])
        counts = " ".join(f"{k}={v}" for k, v in run["outcomes"].items()) or "no deletions"
        out.append(
            f"  {run['run_id']}  {run['started_at'] or '?'} -> {run['finished_at'] or 'unfinished'}"
            f"  {mode}  {counts}"
        )
    out.append(
        "by outcome  " + (" ".join(f"{k}={v}" for k, v in data["outcomes"].items()) or "none")
    )
    if data["by_policy"]:
        out.append("by policy")
        for name, counts in data["by_policy"].items():
            out.append(f"  {name}: " + " ".join(f"{k}={v}" for k, v in counts.items()))
    first, last = data["redacted_at"]["first"], data["redacted_at"]["last"]
    out.append(f"redacted_at first {first or '—'}, last {last or '—'}")
    check = data["api_check"]
    if check is not None:
        out.append(
            f"api check   {check['confirmed']} confirmed, {check['mismatched']} mismatched, "
            f"{check['unreadable']} unreadable of {check['to_check']} ({check['base_url']})"
        )
        for m in check["first_mismatches"]:
            out.append(
                f"  line {m['line']}: call {m['call_id']} logged {m['logged']}, "
                f"API shows {m['seen']}"
            )
        if check["mismatches_not_listed"]:
            out.append(f"  …and {check['mismatches_not_listed']} more")
    out += signature_lines(data)
    if summary.run_holds_lock:
        out.append(f"lock        {LIVE_RUN_NOTE}")
    out.append(f"verdict     {verdict_line(summary, proof)}")
    return "\n".join(out)

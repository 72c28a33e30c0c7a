"""The work behind `retention audit verify`: verify, optionally prove, print, report.

Exit status: 0 the log holds (and, with --api, every redaction is confirmed);
1 the log is broken, or the API disagrees with it or could not be read for some
call; 2 bad input (missing or unreadable file, bad flag, credentials refused before
anything was checked); 4 the API refused the credentials part-way through.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import anyio
import click

from retention.api.client import CartesiaClient
from retention.api.limiter import RateLimiter
from retention.audit.evidence import (
    LIVE_RUN_NOTE,
    check_report_path,
    evidence,
    summary_text,
    verdict_line,
    write_report,
)
from retention.audit.paths import check_outputs
from retention.audit.proof import ApiProof, prove_against_api
from retention.audit.signing import PublicKey, load_public_keys
from retention.audit.verify import LogSummary, verify_log
from retention.audit.writer import run_holds_lock
from retention.errors import CredentialsRefused, ExitCode
from retention.log import get_logger
from retention.plan.proof import PlanProof, prove_plan
from retention.plan.store import Plan, open_plan
from retention.settings import check_base_url, resolve_api_key, resolve_base_url

PROGRESS_EVERY_SECONDS: Final = 5.0
_log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ApiOptions:
    base_url: str
    api_key: str
    rate: float
    concurrency: int


def _progress_reporter(total: int) -> tuple[Callable[[ApiProof], None], Callable[[], None]]:
    """A rich bar on a terminal; otherwise a log line at most every few seconds."""
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import Progress

        bar = Progress(console=Console(stderr=True), transient=True)
        task = bar.add_task("checking redactions against the API", total=total)
        bar.start()
        return (lambda proof: bar.update(task, completed=proof.checked)), bar.stop

    last = time.monotonic()

    def log_line(proof: ApiProof) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_SECONDS:
            last = now
            _log.info(
                "audit.verify.progress",
                checked=proof.checked,
                to_check=proof.to_check,
                confirmed=proof.confirmed,
                mismatched=proof.mismatched,
            )

    return log_line, lambda: None


async def _prove(paths: Sequence[Path], summary: LogSummary, options: ApiOptions) -> ApiProof:
    gate = RateLimiter(options.rate, options.concurrency)
    client = CartesiaClient(base_url=options.base_url, api_key=options.api_key, gate=gate)
    on_checked, done = _progress_reporter(summary.redactions)
    try:
        async with client:
            return await prove_against_api(
                paths,
                client,
                verified_lines=summary.lines,
                to_check=summary.redactions,
                workers=options.concurrency,
                on_checked=on_checked,
            )
    finally:
        done()


def verify_command(
    files: Path | Sequence[Path],
    *,
    report: Path | None,
    api: ApiOptions | None,
    public_keys: Sequence[Path] = (),
    witness: Path | None = None,
    plan: Path | None = None,
) -> int:
    """Run the whole command; returns the exit status (UserError for exit 2)."""
    # Never overwrite the log being verified, nor a key.
    paths = [files] if isinstance(files, Path) else list(files)
    for path in paths:
        check_outputs(
            path,
            {"--report": report},
            keep=[(f"the public key {key}", key) for key in public_keys]
            + ([(f"the plan {plan}", plan)] if plan is not None else []),
        )
    if report is not None:
        check_report_path(report)
    if api is not None:
        check_base_url(api.base_url)  # refuse a bad URL before reading millions of lines
    keys = load_public_keys(public_keys) if public_keys else None
    opened = open_plan(plan) if plan is not None else None  # a bad plan: exit 2, first
    try:
        code = _verify(paths, report, api, keys, witness, opened)
    finally:
        if opened is not None:
            opened.close()
    return code


def _verify(
    paths: Sequence[Path],
    report: Path | None,
    api: ApiOptions | None,
    keys: dict[str, PublicKey] | None,
    witness: Path | None,
    plan: Plan | None,
) -> int:
    summary = verify_log(paths, lock_probe=run_holds_lock, keys=keys, witness_dir=witness)
    if summary.run_holds_lock:
        click.echo(f"retention: {LIVE_RUN_NOTE}", err=True)
    proof: ApiProof | None = None
    if api is not None and summary.intact:
        proof = anyio.run(_prove, paths, summary, api)
    elif api is not None:
        click.echo("api check   skipped: the log itself is broken", err=True)
    planned: PlanProof | None = None
    if plan is not None and summary.intact:
        planned = prove_plan(paths, plan)
    elif plan is not None:
        click.echo("plan check  skipped: the log itself is broken", err=True)
    click.echo(summary_text(summary, proof))
    if planned is not None:
        click.echo(planned.text())
    if report is not None:
        write_report(report, evidence(summary, proof, made_at=datetime.now(UTC)))
    if summary.problem is not None:
        click.echo(f"retention: audit log broken: {summary.path}: {summary.problem}", err=True)
        return ExitCode.SOME_FAILED
    if planned is not None and not planned.holds:
        click.echo(f"retention: {planned.text().removeprefix('plan check  ')}", err=True)
        return ExitCode.SOME_FAILED
    if proof is None:
        return ExitCode.OK
    if proof.refused_status is not None:
        return refused_exit(proof.refused_status, proof.checked)
    if not proof.holds:
        click.echo(f"retention: {verdict_line(summary, proof)}", err=True)
        return ExitCode.SOME_FAILED
    return ExitCode.OK


def api_options(
    base_url: str | None, api_key_file: Path | None, rate: float, concurrency: int
) -> ApiOptions:
    """Credentials and limits for --api, resolved as a run resolves them."""
    return ApiOptions(resolve_base_url(base_url), resolve_api_key(api_key_file), rate, concurrency)


def refused_exit(status: int, checked: int) -> int:
    """The API refused the credentials during a check against it: exit 2 (one line) if
    nothing was checked yet, else exit 4 after saying how far the check went."""
    message = f"the API refused the credentials (HTTP {status})"
    if checked == 0:
        raise CredentialsRefused(message + "; nothing was checked", where="--api")
    click.echo(f"retention: error: --api: {message} after {checked} checks", err=True)
    return ExitCode.CREDENTIALS_REFUSED

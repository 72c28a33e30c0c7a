"""`retention demo`: the newcomer's tour, on a sandbox in this process.

Starts the sandbox on a free loopback port, plans the shipped example policies (a dry
run that writes the plan to review), applies that plan pinned by its digest, reads a
few deleted calls back through the API and verifies the audit log against the API and
the plan. No API key, no network. Everything it writes goes to one directory that
is kept afterwards (printed at the start), so the user can look at it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final

import anyio

from retention.api.client import CartesiaClient
from retention.api.models import api_timestamp
from retention.audit.command import ApiOptions, verify_command
from retention.audit.events import Event, Outcome
from retention.audit.html_report import report_command
from retention.errors import ExitCode, UserError
from retention.plan.command import DEFAULT_MAX_PLAN_AGE, check_plan, parse_age, publish_plan
from retention.plan.store import PlanError, PlanWriter, file_sha256, open_plan
from retention.policy.load import load_policies
from retention.run.belts import SurgeGuard
from retention.run.command import RunSettings, run_command
from retention.sandbox.app import SandboxApp
from retention.sandbox.data import Dataset, DatasetSpec
from retention.sandbox.server import serve_in_thread

SANDBOX_KEY: Final = "sk_car_sandbox"  # the sandbox's built-in key, not a secret
CALLS_TO_CHECK: Final = 3
POLICY_SUFFIXES: Final = (".yaml", ".yml")
DELETE_ROUTE: Final = "DELETE /agents/calls/{call_id}"  # the sandbox's counter for DELETEs
# Generous for a loopback sandbox; the real API gets the run's conservative defaults.
DEMO_RATE: Final = 2000.0
DEMO_CONCURRENCY: Final = 16

Echo = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class DemoOptions:
    workdir: Path | None = None  # None: a fresh temporary directory, kept afterwards
    seed: int = 7
    agents: int = 5
    calls: int = 600


@dataclass(frozen=True, slots=True)
class RunResult:
    exit_code: int
    totals: dict[str, Any]  # the run's JSON report


class DemoError(UserError):
    """The demo cannot start (e.g. its directory is not writable)."""


def example_policies() -> Path:
    """The shipped example policies: package data (a symlink to policies/ in a
    checkout, a copy in a wheel or the Docker image)."""
    folder = resources.files("retention") / "example_policies"
    path = Path(str(folder))
    if not path.is_dir() or not any(p.suffix in POLICY_SUFFIXES for p in path.iterdir()):
        raise DemoError("the example policies are missing from this installation")
    return path


def prepare_workdir(workdir: Path | None) -> Path:
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix="retention-demo-"))
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DemoError(f"cannot create {workdir}: {err.strerror or err}", where="--dir") from None
    if any(workdir.iterdir()):
        raise DemoError(f"{workdir} is not empty; pick a new directory", where="--dir")
    return workdir


@contextmanager
def sandbox(options: DemoOptions, now: datetime) -> Iterator[tuple[SandboxApp, str]]:
    spec = DatasetSpec(seed=options.seed, agents=options.agents, calls=options.calls, now=now)
    app = SandboxApp(Dataset(spec), api_key=SANDBOX_KEY)
    with serve_in_thread(app) as base_url:
        yield app, base_url


def run_demo(options: DemoOptions, echo: Echo) -> int:
    """The whole tour; returns the exit status (0 when every step held)."""
    policies = example_policies().resolve()  # in a checkout: the repository's policies/
    workdir = prepare_workdir(options.workdir).resolve()
    now = datetime.now(UTC).replace(microsecond=0)
    audit_log = workdir / "audit.jsonl"
    page = workdir / "run.html"  # the execute run's report, the page to open
    log_page = workdir / "audit-log.html"
    plan_file = workdir / "tonight.plan"
    echo("retention demo: a tour on a local sandbox API (no API key, no network)")
    echo(f"  files: {workdir}  (kept; delete it when done)")
    echo(f"  policies: {policies}")
    with sandbox(options, now) as (app, base_url):
        echo("")
        echo(f"[1/5] sandbox   {base_url}: {options.agents} agents, {options.calls} calls")

        echo("")
        echo("[2/5] plan      retention plan --policies ... --out tonight.plan --report plan.json")
        made = run_retention(
            base_url=base_url,
            policies=policies,
            now=now,
            execute=False,
            audit_log=audit_log,
            report=workdir / "plan.json",
            plan_out=plan_file,
            echo=echo,
        )
        deletes_sent = app.stats.count(DELETE_ROUTE)
        echo(_summary(made))
        echo(f"        DELETE requests sent by the plan: {deletes_sent}")
        if made.exit_code != ExitCode.OK or deletes_sent != 0:
            return _failed(echo, "the plan", made.exit_code)
        digest = file_sha256(plan_file)

        echo("")
        echo("        (a person reviews the plan here, then pins its digest)")
        echo(
            f"[3/5] apply     retention apply {plan_file.name} --execute "
            f"--expect-sha256 {digest[:12]}... --report run.html"
        )
        done = run_retention(
            base_url=base_url,
            policies=policies,
            now=now,
            execute=True,
            audit_log=audit_log,
            report=page,
            apply=(plan_file, digest),
        )
        deletes_sent = app.stats.count(DELETE_ROUTE)
        echo(_summary(done))
        echo(f"        DELETE requests sent: {deletes_sent}")
        echo(f"        audit log: {audit_log}")
        echo(f"        report: {page}  (open it in a browser)")
        if done.exit_code != ExitCode.OK:
            return _failed(echo, "the apply", done.exit_code)

        echo("")
        echo(f"[4/5] check     {CALLS_TO_CHECK} deleted calls, read back through the API")
        checked = anyio.run(_check_deleted, base_url, audit_log, echo)
        if not checked:
            return _failed(echo, "the read-back", ExitCode.SOME_FAILED)

        echo("")
        echo(
            f"[5/5] audit     retention audit verify {audit_log.name} --api --plan {plan_file.name}"
        )
        verified = verify_audit_log(audit_log, base_url, plan_file)
        if verified != ExitCode.OK:
            return _failed(echo, "the audit check", verified)
        report_command(audit_log, log_page)
        echo(f"        retention audit report {audit_log} --html {log_page.name}")
        echo(f"        log report: {log_page}")

    echo("")
    echo(f"Open the run's report: {page}")
    echo("")
    echo("Done. Next:")
    echo(f"  retention validate {policies}        # what each policy means")
    echo(f"  retention audit verify {audit_log} --plan {plan_file}")
    echo("  retention sandbox --port 8765          # then point --base-url at it")
    return ExitCode.OK


def run_retention(
    *,
    base_url: str,
    policies: Path,
    now: datetime,
    execute: bool,
    audit_log: Path,
    report: Path,
    plan_out: Path | None = None,
    apply: tuple[Path, str] | None = None,
    echo: Echo | None = None,
) -> RunResult:
    """One `retention run` (or `plan` with `plan_out`, `apply` with (PLAN, its pinned
    digest)) through its Python API, with the command line's safety belts. The totals
    come from the JSON report, or for any other report (the HTML page) from the run's
    own `run_finished` line."""
    settings = RunSettings(
        # The shipped policies/ holds sweeps/, not read by design: no warning in the tour.
        policies=load_policies([policies], ignored=[]),
        api_key=SANDBOX_KEY,
        base_url=base_url,
        now=now,
        execute=execute,
        audit_log=audit_log,
        report=report,
        concurrency=DEMO_CONCURRENCY,
        rate=DEMO_RATE,
        belts=SurgeGuard(),
        planner=PlanWriter(plan_out) if plan_out is not None else None,
        publish=publish_plan if plan_out is not None else None,
    )
    if apply is not None:
        code = _apply(settings, *apply)
    else:
        printed = io.StringIO()  # `plan` prints its file, digest and next step: indented
        with contextlib.redirect_stdout(printed):
            code = run_command(settings)
        for line in printed.getvalue().splitlines():
            if echo is not None:
                echo(f"        {line}")
    if report.suffix == ".json":
        return RunResult(code, json.loads(report.read_text(encoding="utf-8")))
    return RunResult(code, totals_from_counts(_last_run_counts(audit_log)))


def _apply(settings: RunSettings, plan_path: Path, digest: str) -> int:
    """`retention apply PLAN --execute --expect-sha256 DIGEST`: its checks, then the run."""
    plan = open_plan(plan_path)
    try:
        if plan.sha256 != digest:
            raise PlanError("its sha256 is not the digest approved", where=str(plan_path))
        check_plan(plan, settings, parse_age(DEFAULT_MAX_PLAN_AGE))
        return run_command(dataclasses.replace(settings, plan=plan))
    finally:
        plan.close()


def _last_run_counts(audit_log: Path) -> dict[str, Any]:
    """The `counts` of the log's last `run_finished` line: the run just made."""
    counts: dict[str, Any] = {}
    with audit_log.open(encoding="utf-8") as lines:
        for line in lines:
            if f'"{Event.RUN_FINISHED}"' in line:
                record = json.loads(line)
                if record.get("event") == Event.RUN_FINISHED:
                    counts = record["counts"]
    return counts


def totals_from_counts(counts: dict[str, Any]) -> dict[str, Any]:
    """A `run_finished` line's counts in the JSON report's shape (what `_summary` reads)."""
    outcomes: dict[str, int] = counts["outcomes"]
    held_by: dict[str, int] = {}
    for holds in counts["held_by"].values():
        for hold, n in holds.items():
            held_by[hold] = held_by.get(hold, 0) + n
    return {
        "totals": {
            "agents": counts["agents"],
            "scanned": counts["scanned"],
            "selected": sum(outcomes.values()),
            "kept": sum(counts["kept"].values()),
            "skipped": sum(counts["skipped"].values()),
            "failed": outcomes.get(Outcome.FAILED, 0),
        },
        "selected_by_policy": {
            policy: {"outcomes": {k: n for k, n in c.items() if k != "due"}}
            for policy, c in counts["by_policy"].items()
        },
        "kept": {"by_reason": counts["kept"], "by_retention_policy": dict(sorted(held_by.items()))},
        "skipped": counts["skipped"],
    }


def verify_audit_log(audit_log: Path, base_url: str, plan: Path | None = None) -> int:
    """`retention audit verify FILE --api [--plan PLAN]` through its Python API."""
    api = ApiOptions(
        base_url=base_url, api_key=SANDBOX_KEY, rate=DEMO_RATE, concurrency=DEMO_CONCURRENCY
    )
    return verify_command(audit_log, report=None, api=api, plan=plan)


def _summary(result: RunResult) -> str:
    totals = result.totals["totals"]
    lines = [
        f"        scanned {totals['scanned']} calls of {totals['agents']} agents: "
        f"{totals['selected']} selected for deletion, {totals['kept']} kept, "
        f"{totals['skipped']} skipped, {totals['failed']} failed",
    ]
    for policy, counts in result.totals["selected_by_policy"].items():
        lines.append(f"          {policy}: {_counts(counts['outcomes'])}")
    kept = result.totals["kept"]
    if kept["by_reason"]:
        lines.append(f"        kept: {_counts(kept['by_reason'])}")
    if kept["by_retention_policy"]:
        lines.append(f"        held by: {_counts(kept['by_retention_policy'])}")
    if result.totals["skipped"]:
        lines.append(f"        skipped: {_counts(result.totals['skipped'])}")
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items()) or "none"


def _failed(echo: Echo, step: str, code: int | None) -> int:
    echo(f"retention demo: {step} did not succeed (exit status {code})")
    return int(code) if code else int(ExitCode.SOME_FAILED)


def _deleted_lines(audit_log: Path, limit: int) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    with audit_log.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("event") == Event.DELETED:
                found.append(record)
                if len(found) == limit:
                    break
    return found


async def _check_deleted(base_url: str, audit_log: Path, echo: Echo) -> bool:
    logged = _deleted_lines(audit_log, CALLS_TO_CHECK)
    if not logged:
        echo("        no deletion in the audit log to check")
        return False
    agree = True
    async with CartesiaClient(base_url=base_url, api_key=SANDBOX_KEY) as client:
        for record in logged:
            call = await client.get_call(record["call_id"])
            redacted = api_timestamp(call.redacted_at)
            same = redacted == record["redacted_at"]
            gone = call.transcript is None and call.summary is None
            agree = agree and same and gone
            verdict = "matches the audit log" if same else "DIFFERS from the audit log"
            data = "transcript and summary gone" if gone else "TRANSCRIPT STILL THERE"
            echo(f"        {call.id}: redacted_at {redacted} {verdict}; {data}")
    return agree

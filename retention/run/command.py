"""`retention run`: validate everything, take the audit log, run, report, export, exit.

Order matters: every input a user can get wrong (flags, report path, policies, key,
base URL, output paths, audit log and its lock) is checked before the first request;
an output may not name the audit log, its lock or torn file, or a policy file. The
key itself is checked by the first request (GET /agents), before any deletion.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import anyio
import httpx
import structlog

from retention import __version__, defaults
from retention.api.client import (
    DEFAULT_TIMEOUT_SECONDS,
    CartesiaClient,
    request_timeout,
)
from retention.api.errors import ApiError, AuthError, NotFound, Unreachable
from retention.api.limiter import AdaptiveLimiter, AdaptiveSettings
from retention.api.models import Agent
from retention.api.retry import RetryPolicy
from retention.audit.events import Event, Outcome, RunMode
from retention.audit.paths import check_outputs
from retention.audit.rotation import rotate
from retention.audit.signing import Signer
from retention.audit.witness import Witness, WitnessWriteError
from retention.audit.writer import AuditLog, AuditWriteError
from retention.errors import ApiUnreachable, CredentialsRefused, ExitCode, FatalError, UserError
from retention.log import get_logger
from retention.plan.store import Plan, PlanWriter
from retention.policy.model import PolicySet
from retention.run.belts import SurgeGuard, belt_limit
from retention.run.context import RunContext
from retention.run.control import STOP_EXIT_CODES, RunControl, RunGate, RunStopped, StopReason
from retention.run.forecast import Forecast
from retention.run.journal import (
    CHECKPOINT_EVERY_LINES,
    CHECKPOINT_EVERY_SECONDS,
    Checkpoints,
    Journal,
)
from retention.run.pipeline import LISTERS_MIN, Pipeline, run_counts
from retention.run.progress import print_summary, show_progress, warn_dead_holds
from retention.run.recovery import RecoveryIncomplete, recover
from retention.run.report import Report
from retention.run.shard import Shard
from retention.run.sizes import largest_first, previous_sizes
from retention.run.stats import RunStats
from retention.settings import check_base_url
from retention.timestamps import rfc3339

_log = get_logger(__name__)

# No --concurrency: the adaptive limiter finds the API's limit, up to this many in flight.
MAX_CONCURRENCY: Final = AdaptiveSettings().maximum
DEFAULT_GRACE_PERIOD: Final = defaults.GRACE_PERIOD_SECONDS
DEFAULT_AUDIT_LOG: Final = defaults.AUDIT_LOG


class RunFailed(Exception):
    """The run could not go on for a reason that is not the user's input (exit 1)."""


@dataclass(frozen=True)
class RunSettings:
    """Everything a run needs, validated (see `cli.run`)."""

    policies: PolicySet
    api_key: str
    base_url: str
    now: datetime
    execute: bool = False
    audit_log: Path = DEFAULT_AUDIT_LOG
    report: Path | None = None
    concurrency: int | None = None  # a ceiling; None: adaptive up to MAX_CONCURRENCY
    rate: float | None = None  # a ceiling in requests/s; None: none
    max_deletes: int | None = None
    grace_period: float = DEFAULT_GRACE_PERIOD
    progress_interval: float = defaults.PROGRESS_INTERVAL_SECONDS
    timeout: float = DEFAULT_TIMEOUT_SECONDS  # per request: read and write; connect at most 10 s
    shard: Shard | None = None
    pushgateway: str | None = None
    metrics_file: Path | None = None
    signer: Signer | None = field(default=None, compare=False)  # --signing-key, loaded
    witness: Path | None = None
    rotate_bytes: int | None = None  # --rotate-bytes: rotate at the run's end past this size
    checkpoint_lines: int = CHECKPOINT_EVERY_LINES
    checkpoint_seconds: float = CHECKPOINT_EVERY_SECONDS
    handle_signals: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    transport: httpx.AsyncBaseTransport | None = field(default=None, compare=False)
    # Safety belts (retention/run/belts.py): None = off; the command line turns them on.
    belts: SurgeGuard | None = None
    planner: PlanWriter | None = field(default=None, compare=False)  # `plan --out`
    # After a plan run: store its header, publish the file, print its digest; returns the
    # exit code (plan/command.py's publish_plan, given by `plan`, which sits above `run`).
    publish: Callable[[RunSettings, RunStats, str, int], int] | None = field(
        default=None, compare=False
    )
    plan: Plan | None = field(default=None, compare=False)  # `apply PLAN`
    horizon_days: int = defaults.HORIZON_DAYS  # --horizon: the forecast's window

    def __post_init__(self) -> None:
        # A plan written but never published would be discarded in silence.
        if (self.planner is None) != (self.publish is None):
            raise ValueError("RunSettings: planner and publish go together")

    @property
    def effective_rate(self) -> float | None:
        if self.rate is None or self.shard is None:
            return self.rate
        return self.shard.share_rate(self.rate)

    @property
    def effective_concurrency(self) -> int | None:
        if self.concurrency is None or self.shard is None:
            return self.concurrency
        return self.shard.share_concurrency(self.concurrency)

    @property
    def concurrency_ceiling(self) -> int:
        """The most requests ever in flight: --concurrency (this shard's share), else
        the adaptive limiter's own maximum."""
        chosen = self.effective_concurrency
        return chosen if chosen is not None else MAX_CONCURRENCY

    def options(self) -> dict[str, Any]:
        """Recorded in `run_started`: the options, never a secret."""
        url = httpx.URL(self.base_url)
        return {
            "execute": self.execute,
            "base_url": str(url.copy_with(username=None, password=None, query=None)),
            "audit_log": str(self.audit_log),
            "report": str(self.report) if self.report else None,
            "concurrency": self.effective_concurrency,
            "rate": self.effective_rate,
            "max_deletes": self.max_deletes,
            "grace_period": self.grace_period,
            "now": rfc3339(self.now),
            "shard": str(self.shard) if self.shard else None,
            **self._evidence_options(),
        }

    def _evidence_options(self) -> dict[str, Any]:
        # Only when signing: logs written without it keep their exact `options`.
        if self.signer is None:
            return {}
        return {
            "signing_key": self.signer.key_id,  # the fingerprint, never the key
            "witness": str(self.witness) if self.witness else None,
        }

    def checkpoints(self) -> Checkpoints | None:
        if self.signer is None:
            return None
        return Checkpoints(
            self.signer,
            Witness(self.witness) if self.witness else None,
            every_lines=self.checkpoint_lines,
            every_seconds=self.checkpoint_seconds,
        )


def run_command(settings: RunSettings) -> int:
    """Run once and return the exit code. Raises UserError for bad input (exit 2 or 6)."""
    check_outputs(
        settings.audit_log,
        {
            "--report": settings.report,
            "--metrics-file": settings.metrics_file,
            "--out": settings.planner.target if settings.planner else None,
        },
        policies=[Path(source.path) for source in settings.policies.sources],
        keep=[(f"the signing key {settings.signer.path}", settings.signer.path)]
        if settings.signer
        else (),
    )
    check_base_url(settings.base_url)
    report = Report(settings.report) if settings.report else None
    stats = RunStats(dry_run=not settings.execute, upcoming=Forecast(settings.horizon_days))
    run_id = uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(run_id=run_id)
    context = RunContext(
        run_id=run_id,
        dry_run=not settings.execute,
        now=settings.now,
        shard=str(settings.shard) if settings.shard else None,
        policy_sources=tuple((s.path, s.sha256) for s in settings.policies.sources),
        policies=settings.policies.policies,
        mode=RunMode.PLAN
        if settings.planner is not None
        else RunMode.APPLY
        if settings.plan is not None
        else None,
        plan_sha256=settings.plan.sha256 if settings.plan is not None else None,
    )
    try:
        with AuditLog(settings.audit_log) as audit:
            limit = _belts(settings, audit)
            if report is not None:
                report.open()
            if settings.planner is not None:
                settings.planner.open()
            try:
                code = anyio.run(_run, settings, audit, run_id, stats, report, limit)
            except BaseException as err:
                code = _failure_code(_unwrap(err))
            audit.note_agent_calls(stats.listed_by_agent)  # kept in the resume sidecar
            code = _rotate_if_due(settings, audit, run_id, code)
    except (FatalError, KeyboardInterrupt) as err:
        # Exits 2, 5 and 6 end here: their metrics are pushed too, with this run_id.
        stats.exit_code = err.exit_code if isinstance(err, FatalError) else ExitCode.INTERRUPTED
        if isinstance(err, FatalError):
            err.run_id = run_id
        if stats.finished_unix is None:
            stats.finished_unix = time.time()
        _export_metrics(settings, stats)
        raise
    finally:
        if report is not None:
            report.close()
        if settings.planner is not None and stats.exit_code != ExitCode.OK:
            settings.planner.discard()
        structlog.contextvars.unbind_contextvars("run_id")
    stats.exit_code = code
    if settings.publish is not None:
        code = settings.publish(settings, stats, run_id, code)
    return _finish(settings, stats, report, context, code, run_id)


def _belts(settings: RunSettings, audit: AuditLog) -> int | None:
    """The surge guard's line for this run, or exit 2 for an uncapped first run."""
    if not settings.execute or settings.belts is None:
        return None
    limit = belt_limit(
        audit,
        max_deletes=settings.max_deletes,
        applying=settings.plan is not None,
        guard=settings.belts,
    )
    if limit is not None:
        _log.info("run.surge_guard", limit=limit)
    return limit


def _finish(
    settings: RunSettings,
    stats: RunStats,
    report: Report | None,
    context: RunContext,
    code: int,
    run_id: str,
) -> int:
    structlog.contextvars.bind_contextvars(run_id=run_id)
    try:
        if report is not None:
            try:
                report.finish(stats, context)
            except UserError as err:
                _log.error("run.report_failed", error=str(err))
                code = code or ExitCode.SOME_FAILED
                stats.exit_code = code
        _export_metrics(settings, stats)
        warn_dead_holds(stats)
        print_summary(stats)
    finally:
        structlog.contextvars.unbind_contextvars("run_id")
    return code


def _rotate_if_due(settings: RunSettings, audit: AuditLog, run_id: str, code: int) -> int:
    """At the run's end, every line written and the lock still held: rotate past the size."""
    limit = settings.rotate_bytes
    if limit is None or audit.fd is None or os.fstat(audit.fd).st_size < limit:
        return code
    witness = Witness(settings.witness) if settings.witness else None
    try:
        rotate(audit, run_id=run_id, signer=settings.signer, witness=witness)
    except (OSError, FatalError, WitnessWriteError) as err:
        # Every line is still in the log (a rotation never loses one); the next run retries.
        _log.error("run.rotation_failed", error=str(err))
        return code or ExitCode.SOME_FAILED
    return code


def _unwrap(err: BaseException) -> BaseException:
    """A task group's single error, out of its exception group."""
    while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
        err = err.exceptions[0]
    if isinstance(err, BaseExceptionGroup):
        # One failed audit batch fails every worker waiting on it: report the cause once.
        failed, rest = err.split(AuditWriteError)
        if failed is not None and rest is None:
            return _unwrap(failed.exceptions[0])
    return err


def _failure_code(err: BaseException) -> int:
    if isinstance(err, FatalError):
        raise err
    if isinstance(err, AuditWriteError | RunFailed):
        _log.error("run.failed", error=str(err))
        return ExitCode.SOME_FAILED
    raise err


def _export_metrics(settings: RunSettings, stats: RunStats) -> None:
    if settings.pushgateway is None and settings.metrics_file is None:
        return
    from retention.run.metrics import export_metrics

    try:
        export_metrics(
            stats,
            pushgateway=settings.pushgateway,
            metrics_file=settings.metrics_file,
            shard=str(settings.shard) if settings.shard else None,
            policies=[policy.name for policy in settings.policies.policies],
            audit_log=settings.audit_log,
        )
    except Exception as err:  # metrics are never worth a lost run
        _log.warning("run.metrics_failed", error=str(err))


async def _run(
    settings: RunSettings,
    audit: AuditLog,
    run_id: str,
    stats: RunStats,
    report: Report | None,
    surge_limit: int | None = None,
) -> int:
    control = RunControl(grace_period=settings.grace_period)
    limiter = AdaptiveLimiter(settings.effective_concurrency, settings.effective_rate)
    concurrency = settings.concurrency_ceiling
    client = CartesiaClient(
        base_url=settings.base_url,
        api_key=settings.api_key,
        gate=RunGate(limiter, control),
        retry=settings.retry,
        timeout=request_timeout(settings.timeout),
        transport=settings.transport,
        # Above the ceiling: a connection goes back to the pool only once its task runs
        # again, while the gate lets the next request in as soon as an answer is whole.
        max_connections=concurrency + concurrency // 2 + LISTERS_MIN,
    )

    def refresh() -> None:
        stats.requests = client.stats.requests
        stats.retries = client.stats.retries
        stats.throttled = client.stats.throttled
        stats.transport_errors = client.stats.transport_errors
        stats.deletes_resent = client.stats.deletes_resent
        stats.limit_cuts = limiter.counters.decreases

    async with client:
        try:
            agents = await _list_agents(client, settings.shard)
        finally:
            refresh()  # a listing that failed still sent requests: count them
        stats.agents = len(agents)
        stats.agent_names.update((a.id, a.name) for a in agents)
        stats.deleted_agents.update(a.id for a in agents if a.deleted_at is not None)
        journal = Journal(
            audit, run_id, buffer=2 * concurrency + 16, checkpoints=settings.checkpoints()
        )

        pipeline = Pipeline(
            client=client,
            policies=settings.policies,
            now=settings.now,
            execute=settings.execute,
            concurrency=concurrency,
            max_deletes=settings.max_deletes,
            journal=journal,
            report=report,
            stats=stats,
            control=control,
            planner=settings.planner,
            plan=settings.plan,
            surge_limit=surge_limit,
        )
        async with anyio.create_task_group() as group:
            group.start_soon(journal.run)
            code = await _supervised(settings, audit, journal, pipeline, control, refresh, agents)
            await journal.close()
        return code


async def _supervised(
    settings: RunSettings,
    audit: AuditLog,
    journal: Journal,
    pipeline: Pipeline,
    control: RunControl,
    refresh: Callable[[], None],
    agents: list[Agent],
) -> int:
    """run_started, recovery, the pipeline, run_finished; signals and progress alongside."""
    stats = pipeline.stats
    incomplete = False
    listed = False  # the pipeline ran to its end
    async with anyio.create_task_group() as side:
        if settings.handle_signals:
            side.start_soon(control.watch_signals)
        side.start_soon(lambda: show_progress(stats, refresh, interval=settings.progress_interval))
        try:
            await journal.write(
                Event.RUN_STARTED,
                {
                    "dry_run": not settings.execute,
                    "version": __version__,
                    "shard": str(settings.shard) if settings.shard else None,
                    "policies": [
                        {"path": s.path, "sha256": s.sha256, "names": _names(settings, s.path)}
                        for s in settings.policies.sources
                    ],
                    "options": settings.options(),
                    **_belt_fields(settings, pipeline.surge_limit),
                },
            )
            try:
                with control.recovery:
                    await recover(
                        audit.scan.open_intents,
                        pipeline.client,
                        journal,
                        stats,
                        settle=settings.timeout,
                    )
            except (AuthError, RunStopped):
                control.stop(StopReason.CREDENTIALS)
            except RecoveryIncomplete as err:
                incomplete = True
                _log.error("run.recovery_incomplete", error=str(err))
            if not control.stopping and not incomplete:
                sizes = previous_sizes(audit.fd)
                await pipeline.run(largest_first(agents, sizes), sizes)
                listed = True
        finally:
            refresh()
            pipeline.settle_plan(
                complete=listed and not control.stopping and not stats.agents_failed
            )
            code = _exit_code(stats, control, incomplete)
            stats.exit_code = code
            stats.stop_reason = str(control.reason) if control.reason else None
            stats.finished_unix = time.time()
            with anyio.CancelScope(shield=True):
                await journal.write(
                    Event.RUN_FINISHED,
                    {
                        "dry_run": not settings.execute,
                        "exit_code": int(code),
                        "stopped_by": stats.stop_reason,
                        "counts": run_counts(stats),
                    },
                )
            side.cancel_scope.cancel()
    return code


def _belt_fields(settings: RunSettings, surge_limit: int | None) -> dict[str, Any]:
    """run_started's record of the plan applied and the surge guard's line (when set)."""
    fields: dict[str, Any] = {}
    if settings.plan is not None:
        fields["plan"] = {
            "sha256": settings.plan.sha256,
            "plan_id": settings.plan.plan_id,
            "calls": settings.plan.total,
        }
    if surge_limit is not None:
        fields["surge_limit"] = surge_limit
    return fields


def _names(settings: RunSettings, path: str) -> list[str]:
    """The policies a file holds, so a certificate can name the file of its sweep."""
    return sorted(policy.name for policy in settings.policies.policies if policy.file == path)


def _exit_code(stats: RunStats, control: RunControl, incomplete: bool) -> int:
    if control.reason is not None:
        return STOP_EXIT_CODES[control.reason]
    unsettled = stats.outcomes[Outcome.FAILED] or stats.outcomes[Outcome.UNCONFIRMED]
    if incomplete or unsettled or stats.agents_failed:
        return ExitCode.SOME_FAILED
    return ExitCode.OK


async def _list_agents(client: CartesiaClient, shard: Shard | None) -> list[Agent]:
    """The first request: it also proves the key, before anything is written or deleted."""
    try:
        agents = await client.first_contact()
    except Unreachable as err:
        raise ApiUnreachable(f"cannot reach the API at {client.base_url}: {err.reason}") from None
    except NotFound:
        raise ApiUnreachable(
            f"cannot reach the API at {client.base_url}: HTTP 404 at /agents "
            "(is the base URL the API's root, e.g. https://api.cartesia.ai?)"
        ) from None
    except AuthError as err:
        raise CredentialsRefused(
            f"credentials refused by the API (HTTP {err.status}) at {client.base_url}; "
            "check CARTESIA_API_KEY or --api-key-file"
        ) from None
    except ApiError as err:
        raise RunFailed(f"cannot list the agents at {client.base_url}: {err}") from None
    if shard is not None:
        agents = [agent for agent in agents if shard.owns(agent.id)]
    return agents

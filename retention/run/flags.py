"""From `retention run`'s parsed flags to validated RunSettings (every check before I/O)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retention.audit.paths import check_outputs
from retention.audit.witness import signer_and_witness
from retention.errors import FatalError, UserError
from retention.log import get_logger
from retention.policy.load import load_policies
from retention.run.belts import DEFAULT_SURGE_FACTOR, DEFAULT_SURGE_FLOOR, SurgeGuard
from retention.run.command import RunSettings, run_command
from retention.run.forecast import DEFAULT_HORIZON, parse_horizon
from retention.run.metrics import (
    MetricsExportError,
    check_metrics_file,
    check_pushgateway,
    export_metrics,
)
from retention.run.report import report_format
from retention.run.shard import Shard, ShardError, parse_shard, read_sizes, shard_from_index
from retention.run.stats import RunStats
from retention.settings import check_base_url, parse_now, resolve_api_key, resolve_base_url

_log = get_logger(__name__)

JOB_INDEX_ENV = "JOB_COMPLETION_INDEX"  # set by a Kubernetes Indexed Job


def resolve_shard(
    shard: str | None, shard_count: int | None, shard_sizes: Path | None = None
) -> Shard | None:
    """`--shard I/N`, else `--shard-count N` with the pod's JOB_COMPLETION_INDEX; with
    `--shard-sizes`, the agents it names are dealt out by size."""
    chosen = _chosen_shard(shard, shard_count)
    if shard_sizes is None:
        return chosen
    if chosen is None:
        raise ShardError("--shard-sizes needs --shard or --shard-count", where="--shard-sizes")
    return chosen.with_sizes(read_sizes(shard_sizes))


def _chosen_shard(shard: str | None, shard_count: int | None) -> Shard | None:
    if shard is not None and shard_count is not None:
        raise ShardError("give --shard I/N or --shard-count N, not both", where="--shard")
    if shard is not None:
        return parse_shard(shard)
    if shard_count is not None:
        index = os.environ.get(JOB_INDEX_ENV)
        if index is None:
            raise ShardError(
                f"--shard-count needs {JOB_INDEX_ENV} (set by a Kubernetes Indexed Job)",
                where="--shard-count",
            )
        return shard_from_index(index, shard_count)
    return None


def settings_from_flags(
    *,
    policy_paths: Sequence[Path],
    execute: bool,
    audit_log: Path,
    report: Path | None,
    base_url: str | None,
    api_key_file: Path | None,
    concurrency: int | None,
    rate: float | None,
    max_deletes: int | None,
    now: str | None,
    grace_period: float,
    progress_interval: float,
    timeout: float,
    shard: str | None,
    shard_count: int | None,
    pushgateway: str | None,
    metrics_file: Path | None,
    signing_key: Path | None = None,
    witness: Path | None = None,
    rotate_bytes: int | None = None,
    shard_sizes: Path | None = None,
    surge_guard: bool = True,
    surge_floor: int = DEFAULT_SURGE_FLOOR,
    surge_factor: float = DEFAULT_SURGE_FACTOR,
    horizon: str = DEFAULT_HORIZON,
) -> RunSettings:
    """Cheap checks first (flags), then policies, then the key and base URL."""
    horizon_days = parse_horizon(horizon)
    if report is not None:
        report_format(report)
    moment = parse_now(now)
    chosen_shard = resolve_shard(shard, shard_count, shard_sizes)
    if pushgateway is not None:
        check_pushgateway(pushgateway)
    if metrics_file is not None:
        check_metrics_file(metrics_file)
    signer = signer_and_witness(signing_key, witness)
    policies = load_policies(list(policy_paths))
    url = resolve_base_url(base_url)
    check_base_url(url)
    key = resolve_api_key(api_key_file)
    return RunSettings(
        policies=policies,
        api_key=key,
        base_url=url,
        now=moment,
        execute=execute,
        audit_log=audit_log,
        report=report,
        concurrency=concurrency,
        rate=rate,
        max_deletes=max_deletes,
        grace_period=grace_period,
        progress_interval=progress_interval,
        timeout=timeout,
        shard=chosen_shard,
        pushgateway=pushgateway,
        metrics_file=metrics_file,
        signer=signer,
        witness=witness,
        rotate_bytes=rotate_bytes,
        # The command line's safety belts: on for every execute run (retention/run/belts.py).
        belts=SurgeGuard(surge_guard, surge_floor, surge_factor),
        horizon_days=horizon_days,
    )


def run_from_flags(flags: dict[str, Any]) -> int:
    """`retention run`: settings, then the run. An input refused before the run starts
    (exit 2) still exports its metrics to every target that is itself valid."""
    try:
        settings = settings_from_flags(**flags)
    except FatalError as err:
        _export_refused(flags, err)
        raise
    return run_command(settings)


def _export_refused(flags: dict[str, Any], err: FatalError) -> None:
    """The metrics of a run refused before it started: its exit code, nothing else."""
    pushgateway: str | None = flags.get("pushgateway")
    metrics_file: Path | None = flags.get("metrics_file")
    audit_log: Path = flags["audit_log"]
    try:
        if pushgateway is not None:
            check_pushgateway(pushgateway)
    except UserError:
        pushgateway = None
    try:
        if metrics_file is not None:
            check_metrics_file(metrics_file)
            # Never write over the audit log, its sidecars or a policy file named so far.
            named = [p for p in flags.get("policy_paths", ()) if Path(p).is_file()]
            check_outputs(audit_log, {"--metrics-file": metrics_file}, policies=named)
    except UserError:
        metrics_file = None
    if pushgateway is None and metrics_file is None:
        return
    try:
        shard = resolve_shard(flags.get("shard"), flags.get("shard_count"))
    except UserError:
        shard = None
    stats = RunStats(dry_run=not flags.get("execute", False))
    stats.exit_code = err.exit_code
    stats.finished_unix = time.time()
    try:
        export_metrics(
            stats,
            pushgateway=pushgateway,
            metrics_file=metrics_file,
            shard=str(shard) if shard else None,
            audit_log=audit_log,
        )
    except MetricsExportError as problem:
        _log.warning("run.metrics_failed", error=str(problem))

"""Prometheus metrics for one run: pushed to a Pushgateway and/or written for
node_exporter's textfile collector, once, when the run ends, whatever its exit code.

Every value describes the run that just ended, so all metrics are gauges (a
batch job has no process that lives long enough to own a counter).

Groups. Each run belongs to one group: `job`, `mode` (`execute` or `dry_run`) and,
when sharded, `shard`. A run replaces its own group's metrics and never touches
another group's, so a dry run cannot overwrite a failed execute run's exit code.
- Pushgateway: the group is the grouping key (`/metrics/job/retention/mode/execute`).
- textfile: the group's labels are on every sample; the file is rewritten whole,
  keeping the other groups' samples it held.

`retention_last_success_timestamp_seconds` is written only by an execute run that
exits 0, and must survive failed runs, or an alert on its age would fire only after
the next success. So it is otherwise carried over:
- Pushgateway: every push is a POST (`pushadd`), which replaces only the metric
  names it carries; a failed run does not carry last-success, so the value from
  the last good run stays in the group.
- textfile: a failed run copies its group's previous last-success value.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import Metric
from prometheus_client.exposition import (
    basic_auth_handler,
    default_handler,
    pushadd_to_gateway,
    write_to_textfile,
)
from prometheus_client.parser import text_string_to_metric_families

from retention.audit.events import Outcome, RunMode
from retention.errors import UserError
from retention.policy.decision import KEEP_REASONS, SKIP_REASONS
from retention.run.stats import RunStats

PREFIX: Final = "retention"
LAST_SUCCESS: Final = f"{PREFIX}_last_success_timestamp_seconds"
PUSH_TIMEOUT_SECONDS: Final = 10.0
METRICS_FILE_SUFFIX: Final = ".prom"  # node_exporter's textfile collector reads only these
EXECUTE: Final = RunMode.EXECUTE.label
DRY_RUN: Final = RunMode.DRY_RUN.label

Handler = Callable[[str, str, float | None, list[tuple[str, str]], bytes], Callable[[], None]]

# Closed sets from RunStats (the enums), always exported (as 0 when absent) so that
# alert expressions never meet a missing series.
OUTCOMES: Final = tuple(Outcome)


class MetricsExportError(Exception):
    """Metrics could not be pushed or written. The run logs it as a warning and
    keeps its exit code: losing a metric must never turn a good run into a failure."""


def export_metrics(
    stats: RunStats,
    *,
    pushgateway: str | None,
    metrics_file: Path | None,
    shard: str | None = None,
    job: str = "retention",
    policies: Iterable[str] = (),
    audit_log: Path | None = None,
) -> None:
    """Export the run's metrics to each configured target; raise MetricsExportError
    (after trying every target) if any of them failed. `policies` names every policy
    loaded (exported as 0 when nothing matched); `audit_log` is measured."""
    if pushgateway is None and metrics_file is None:
        return
    extra = RunExtras(policies=tuple(policies), audit_bytes=_size(audit_log))
    problems: list[str] = []
    if metrics_file is not None:
        try:
            _write_textfile(stats, metrics_file, shard=shard, extra=extra)
        except OSError as err:
            problems.append(f"cannot write metrics file {metrics_file}: {err.strerror or err}")
    if pushgateway is not None:
        grouping = {"mode": mode_of(stats)}
        if shard:
            grouping["shard"] = shard
        gateway, handler = _gateway_and_handler(pushgateway)
        try:
            pushadd_to_gateway(
                gateway,
                job=job,
                registry=build_registry(stats, extra=extra),
                grouping_key=grouping,
                timeout=PUSH_TIMEOUT_SECONDS,
                handler=handler,
            )
        except Exception as err:  # urllib raises URLError, HTTPError, OSError, ValueError...
            problems.append(f"cannot push metrics to {_safe_url(pushgateway)}: {_describe(err)}")
    if problems:
        raise MetricsExportError("; ".join(problems))


@dataclass(frozen=True)
class RunExtras:
    """What the stats do not hold: the policies loaded and the audit log's size."""

    policies: tuple[str, ...] = ()
    audit_bytes: int | None = None


def _size(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        return path.stat().st_size
    except OSError:
        return None


def mode_of(stats: RunStats) -> str:
    """The run's `mode` label: `dry_run` or `execute`."""
    return DRY_RUN if stats.dry_run else EXECUTE


def check_metrics_file(path: Path, *, where: str = "--metrics-file") -> Path:
    """node_exporter's textfile collector reads only `*.prom`: any other name would be
    written and never read, so it is refused before the run (exit 2)."""
    if path.suffix != METRICS_FILE_SUFFIX or path.name == METRICS_FILE_SUFFIX:
        raise UserError(
            f"{path}: must end in {METRICS_FILE_SUFFIX} (node_exporter's textfile "
            "collector reads only *.prom files)",
            where=where,
        )
    return path


def succeeded(stats: RunStats) -> bool:
    """An execute run that exited 0: the only kind that sets last-success."""
    return stats.exit_code == 0 and not stats.dry_run


def build_registry(
    stats: RunStats,
    *,
    last_success: float | None = None,
    group_labels: Mapping[str, str] | None = None,
    extra: RunExtras | None = None,
) -> CollectorRegistry:
    """A fresh registry holding the run's metrics. `last_success` is exported as
    given when the run did not succeed (carried over from an earlier run).
    `group_labels` go on every sample (the textfile has no grouping key)."""
    registry = CollectorRegistry(auto_describe=True)
    extra = extra or RunExtras()
    base_names = tuple(group_labels or {})
    base_values = tuple((group_labels or {}).values())

    def gauge(name: str, doc: str, value: float) -> None:
        metric = Gauge(
            name if name == LAST_SUCCESS else f"{PREFIX}_{name}", doc, base_names, registry=registry
        )
        (metric.labels(*base_values) if base_names else metric).set(value)

    def labelled(
        name: str, doc: str, label: str, values: Mapping[str, int], keys: Iterable[str]
    ) -> None:
        metric = Gauge(f"{PREFIX}_{name}", doc, (*base_names, label), registry=registry)
        for key in sorted(set(keys) | set(values)):
            metric.labels(*base_values, key).set(values.get(key, 0))

    gauge("run_agents", "Agents listed by the last run.", stats.agents)
    gauge("run_calls_scanned", "Calls listed by the last run.", stats.scanned)
    gauge("run_calls_due", "Calls the policies selected for deletion in the last run.", stats.due)
    labelled(
        "run_calls_acted",
        "Calls selected for deletion in the last run, by outcome (would_delete in a dry run).",
        "outcome",
        stats.outcomes,
        OUTCOMES,
    )
    gauge(
        "run_calls_failed",
        "Deletions that failed after retries in the last run.",
        stats.outcomes.get(Outcome.FAILED, 0),
    )
    labelled(
        "run_calls_skipped",
        "Calls skipped by the last run, by reason.",
        "reason",
        stats.skipped,
        SKIP_REASONS,
    )
    labelled(
        "run_calls_kept",
        "Calls kept by the last run, by reason.",
        "reason",
        stats.kept,
        KEEP_REASONS,
    )
    gauge("run_requests", "HTTP requests sent to the API by the last run.", stats.requests)
    gauge("run_retries", "Requests retried by the last run.", stats.retries)
    gauge("run_throttled", "429 Too Many Requests answers seen by the last run.", stats.throttled)
    gauge(
        "run_transport_errors",
        "Timeouts, refused and dropped connections met by the last run.",
        stats.transport_errors,
    )
    gauge(
        "run_deletes_resent",
        "DELETEs the last run sent again after an attempt that may have taken effect.",
        stats.deletes_resent,
    )
    gauge("run_limit_cuts", "Times the last run cut its in-flight limit or rate.", stats.limit_cuts)
    gauge("run_duration_seconds", "Wall-clock duration of the last run.", _duration(stats))
    gauge("run_dry_run", "1 if the last run was a dry run, else 0.", 1 if stats.dry_run else 0)
    gauge("run_finished_timestamp_seconds", "Unix time the last run finished.", _finished(stats))
    if stats.exit_code is not None:
        gauge("run_exit_code", "Exit status of the last run (see the README).", stats.exit_code)
    names = set(extra.policies) | set(stats.by_policy)
    per_policy = {name: stats.by_policy.get(name, Counter[str]()) for name in names}
    matched = {name: sum(counts.values()) for name, counts in per_policy.items()}
    deleted = {name: counts[Outcome.DELETED] for name, counts in per_policy.items()}
    labelled(
        "run_policy_calls_matched",
        "Calls the last run selected for deletion, by the policy credited.",
        "policy",
        matched,
        names,
    )
    labelled(
        "run_policy_calls_deleted",
        "Calls the last run deleted (API confirmed), by the policy credited.",
        "policy",
        deleted,
        names,
    )
    true_matches = stats.matched_by_policy()
    metric = Gauge(
        f"{PREFIX}_policy_matched",
        "Calls the last run found matching the policy (all its conditions held), "
        "whatever the decision.",
        (*base_names, "policy"),
        registry=registry,
    )
    for name in sorted(set(extra.policies) | set(true_matches)):
        metric.labels(*base_values, name).set(true_matches.get(name, 0))
    if extra.audit_bytes is not None:
        gauge(
            "audit_log_bytes", "Size of the audit log when the last run ended.", extra.audit_bytes
        )
    stamp = _finished(stats) if succeeded(stats) else last_success
    if stamp is not None and not stats.dry_run:
        gauge(LAST_SUCCESS, "Unix time the last execute run that exited 0 finished.", stamp)
    return registry


def _group_of(labels: Mapping[str, str]) -> tuple[str | None, str | None]:
    return labels.get("mode"), labels.get("shard")


def _previous(path: Path) -> list[Metric]:
    """The families of an earlier textfile; none if absent or unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    try:
        return list(text_string_to_metric_families(text))
    except ValueError:
        return []


def read_last_success(path: Path, *, mode: str = EXECUTE, shard: str | None = None) -> float | None:
    """The group's last-success value in an earlier textfile, or None."""
    for family in _previous(path):
        if family.name == LAST_SUCCESS:
            for sample in family.samples:
                if (
                    sample.name == LAST_SUCCESS
                    and _group_of(sample.labels) == (mode, shard)
                    and math.isfinite(sample.value)
                ):
                    return float(sample.value)
    return None


class _Merged:
    """A collector: this run's families, plus the other groups' samples of an earlier file."""

    def __init__(self, ours: CollectorRegistry, kept: list[Metric]) -> None:
        self._ours = ours
        self._kept = kept

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for family in self._ours.collect():
            families[family.name] = family
        for family in self._kept:
            target = families.get(family.name)
            if target is None:
                target = Metric(family.name, family.documentation, family.type)
                families[family.name] = target
            target.samples.extend(family.samples)
        return list(families.values())


def _write_textfile(stats: RunStats, path: Path, *, shard: str | None, extra: RunExtras) -> None:
    group = (mode_of(stats), shard)
    previous = _previous(path)
    carried = None if succeeded(stats) else read_last_success(path, mode=group[0], shard=shard)
    labels = {"mode": group[0], **({"shard": shard} if shard else {})}
    registry = build_registry(stats, last_success=carried, group_labels=labels, extra=extra)
    # Samples of other groups stay; samples without a `mode` (older versions) go.
    kept: list[Metric] = []
    for family in previous:
        if not family.name.startswith(f"{PREFIX}_"):
            continue
        others = [
            s
            for s in family.samples
            if "mode" in s.labels and _group_of(s.labels) != group and math.isfinite(s.value)
        ]
        if others:
            copy = Metric(family.name, family.documentation, family.type)
            copy.samples.extend(others)
            kept.append(copy)
    merged = CollectorRegistry(auto_describe=False)
    merged.register(_Merged(registry, kept))
    # write_to_textfile writes a sibling temp file and renames it over `path`.
    write_to_textfile(os.fspath(path), merged)


def check_pushgateway(url: str) -> str:
    """Refuse a Pushgateway address that cannot work, before the run deletes anything.

    Accepts `http(s)://host[:port][/path]` or prometheus-client's bare `host[:port]`.
    """
    problem = None
    if not url.strip() or any(ch.isspace() for ch in url):
        problem = "must be a URL such as http://pushgateway:9091 (no spaces)"
    else:
        parts = urllib.parse.urlsplit(url if "//" in url else f"http://{url}")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError:
            problem = "has a port that is not a number from 0 to 65535"
        else:
            if parts.scheme not in ("http", "https"):
                problem = f"must use http or https, not {parts.scheme}"
            elif not parts.hostname:
                problem = "has no host"
    if problem is not None:
        raise UserError(f"the Pushgateway address {problem}", where="--pushgateway")
    return url


def _gateway_and_handler(url: str) -> tuple[str, Handler]:
    """Split `https://user:password@host` into a bare URL and a basic-auth handler,
    so credentials travel in a header, not in the URL urllib would try to resolve."""
    parts = urllib.parse.urlsplit(url if "//" in url else f"http://{url}")
    if parts.username is None:
        return url, default_handler
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    netloc = parts.netloc.rpartition("@")[2]
    bare = urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, user, password)

    return bare, handler


def _duration(stats: RunStats) -> float:
    if stats.finished_unix is not None:
        return max(0.0, stats.finished_unix - stats.started_unix)
    return stats.elapsed


def _finished(stats: RunStats) -> float:
    if stats.finished_unix is not None:
        return stats.finished_unix
    return stats.started_unix + stats.elapsed


def _safe_url(url: str) -> str:
    """The URL without user info, query or fragment, for messages."""
    parts = urllib.parse.urlsplit(url if "//" in url else f"http://{url}")
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _describe(err: Exception) -> str:
    reason = getattr(err, "reason", None)
    code = getattr(err, "code", None)
    if code is not None:
        return f"HTTP {code}"
    if reason is not None:
        return str(reason)
    return type(err).__name__

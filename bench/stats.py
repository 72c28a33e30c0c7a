"""The sandbox's counters (`GET /_sandbox/stats`), reduced to what the
benchmarks and the fault tests compare."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class SandboxCounts:
    api_requests: int  # every request to the API routes (not /_sandbox/*)
    throttled: int  # of those, answered 429
    deletes_sent: int  # DELETE requests, whatever the answer
    deletions: int  # calls the sandbox redacted
    peak_in_flight: int


def _by_route(stats: dict[str, Any]) -> dict[str, dict[str, int]]:
    """route -> status -> count, from `requests` in the sandbox's stats."""
    requests = stats.get("requests", {})
    table: dict[str, dict[str, int]] = {}
    for route, statuses in requests.items():
        if isinstance(statuses, dict):
            table[route] = {str(status): int(n) for status, n in statuses.items()}
        else:
            table[route] = {"?": int(statuses)}
    return table


def counts(stats: dict[str, Any]) -> SandboxCounts:
    api = {route: s for route, s in _by_route(stats).items() if "_sandbox" not in route}
    # A dropped connection has no status; it counts as a request all the same.
    for route, n in stats.get("dropped", {}).items():
        api.setdefault(route, {})["dropped"] = int(n)
    deletes = sum(sum(s.values()) for route, s in api.items() if route.startswith("DELETE"))
    deletions = stats.get("deletions", 0)
    return SandboxCounts(
        api_requests=sum(sum(s.values()) for s in api.values()),
        throttled=sum(s.get("429", 0) for s in api.values()),
        deletes_sent=deletes,
        deletions=int(deletions if isinstance(deletions, int) else len(deletions)),
        peak_in_flight=int(stats.get("peak_in_flight", 0)),
    )


def read_counts(base_url: str) -> SandboxCounts:
    response = httpx.get(f"{base_url}/_sandbox/stats", timeout=30)
    response.raise_for_status()
    return counts(response.json())

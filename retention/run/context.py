"""What a report says about the run itself, shared by every report format."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from retention import __version__
from retention.audit.events import RunMode
from retention.policy.model import Policy


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a report says about the run itself."""

    run_id: str
    dry_run: bool
    now: datetime
    shard: str | None
    policy_sources: tuple[tuple[str, str], ...]  # (path, sha256)
    # The policies, for their annotations and the sweeps' override lines (not per call).
    policies: tuple[Policy, ...] = ()
    mode: RunMode | None = None  # None: "dry run" or "execute", from dry_run
    plan_sha256: str | None = None  # `apply`: the digest of the plan applied
    version: str = __version__

    @property
    def mode_name(self) -> RunMode:
        return self.mode if self.mode is not None else RunMode.of(self.dry_run)

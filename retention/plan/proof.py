"""`retention audit verify LOG --plan PLAN`: every deletion of the apply runs of PLAN
was a call in it.

An `apply` run records the plan's sha256 (of the file's bytes) in its `run_started`
line (`plan.sha256`). This check streams the log once, after `verify` found the chain
intact: it notes the runs that recorded PLAN's digest (a few ids, bounded by runs), and
for every deletion line of those runs (`delete_requested` intents and the outcomes
`deleted`, `already_redacted`, `not_found`, `failed`) looks its call id up in the
plan's index. Memory stays flat: one line and one indexed lookup at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from retention.audit.events import OUTCOME_EVENTS, Event
from retention.audit.reader import LineFormatError, parse_line
from retention.audit.segments import iter_log_lines
from retention.plan.store import Plan

DELETION_EVENTS: Final = frozenset({Event.DELETE_REQUESTED, *OUTCOME_EVENTS})


@dataclass(frozen=True, slots=True)
class Outside:
    """The first deletion line whose call the plan does not hold."""

    line: int
    event: str
    call_id: str
    run_id: str


@dataclass(slots=True)
class PlanProof:
    plan: Path
    sha256: str
    runs: list[str] = field(default_factory=list)  # the runs that applied the plan
    checked: int = 0  # deletion lines of those runs
    outside: int = 0  # of them, lines whose call is not in the plan
    first: Outside | None = None

    @property
    def holds(self) -> bool:
        return bool(self.runs) and self.outside == 0

    def text(self) -> str:
        """The line `audit verify` prints."""
        if not self.runs:
            return f"plan check  no run in the log applied {self.plan} (sha256 {self.sha256})"
        runs = f"{len(self.runs)} apply run{'s' if len(self.runs) != 1 else ''}"
        if self.first is None:
            return (
                f"plan check  {self.checked} deletion lines of {runs}, "
                f"every call in {self.plan} (sha256 {self.sha256})"
            )
        return (
            f"plan check  {self.outside} of {self.checked} deletion lines of {runs} name a "
            f"call not in {self.plan}; first: line {self.first.line}, {self.first.event} "
            f"call {self.first.call_id} (run {self.first.run_id})"
        )


def prove_plan(paths: Sequence[Path], plan: Plan) -> PlanProof:
    """Stream the log (segments, then the live file) and check each deletion line."""
    proof = PlanProof(plan.path, plan.sha256)
    applying: set[str] = set()
    for raw in iter_log_lines(paths):
        if raw.too_long or not raw.complete:
            continue  # verify has reported it; a torn last line never acted
        try:
            record = parse_line(raw.data)
        except LineFormatError:
            continue
        event, run_id = record.get("event"), record.get("run_id")
        if not isinstance(run_id, str):
            continue
        if event == Event.RUN_STARTED:
            recorded = record.get("plan")
            if isinstance(recorded, dict) and recorded.get("sha256") == plan.sha256:
                applying.add(run_id)
                proof.runs.append(run_id)
            continue
        if event not in DELETION_EVENTS or run_id not in applying:
            continue
        proof.checked += 1
        call_id = record.get("call_id")
        if isinstance(call_id, str) and plan.lookup(call_id) is not None:
            continue
        proof.outside += 1
        if proof.first is None:
            proof.first = Outside(raw.number, str(event), str(call_id), run_id)
    return proof

"""The safety belts' history: how many calls the latest execute runs deleted.

The surge guard compares a run with the median of these counts. They come from the
start-up scan of the live file (or its resume point), from the rotation state (which
records the history up to the last rotation) and, for a state written before it did,
from the newest segments. The rotation needs them too, to carry them into its state,
which is why they live here in `audit` and not with the belts in `run`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from retention.audit.events import Event, Outcome
from retention.audit.reader import iter_lines
from retention.audit.segments import GZIP_ERRORS, open_lines, segments_beside

if TYPE_CHECKING:
    from retention.audit.writer import AuditLog

HISTORY_RUNS: Final = 10  # execute runs the surge guard's median looks back over
_FINISHED: Final = f'"{Event.RUN_FINISHED}"'.encode("ascii")  # a fast pre-filter on raw lines


def deleted_count(record: Mapping[str, Any]) -> int:
    """The calls a run_finished line says its run deleted (0 when it does not say)."""
    counts = record.get("counts")
    outcomes = counts.get("outcomes") if isinstance(counts, dict) else None
    deleted = outcomes.get(Outcome.DELETED) if isinstance(outcomes, dict) else None
    return deleted if type(deleted) is int and deleted >= 0 else 0


def log_history(audit: AuditLog) -> tuple[int, ...]:
    """The latest execute runs' counts over the whole log, oldest first (at most the window)."""
    counts = list(audit.scan.history)
    state = audit.state
    if state.segment > 0 and len(counts) < HISTORY_RUNS:
        if state.history is not None:
            counts = list(state.history) + counts
        else:
            counts = _segment_history(audit.resolved, HISTORY_RUNS - len(counts)) + counts
    return tuple(counts[-HISTORY_RUNS:])


def _segment_history(live: Path, wanted: int) -> list[int]:
    """Up to `wanted` execute runs' counts from the newest segments, oldest first."""
    found: list[int] = []
    for item in reversed(segments_beside(live)):
        here: list[int] = []
        try:
            with open_lines(item) as opened:
                for raw in iter_lines(opened.lines):
                    if _FINISHED not in raw.data or not raw.complete:
                        continue
                    try:
                        record = json.loads(raw.data)
                    except ValueError:
                        continue
                    if record.get("event") == Event.RUN_FINISHED and record.get("dry_run") is False:
                        here.append(deleted_count(record))
        except (OSError, *GZIP_ERRORS):
            break  # an unreadable segment: the history read so far is what there is
        found = here + found
        if len(found) >= wanted:
            break
    return found[-wanted:] if wanted else []

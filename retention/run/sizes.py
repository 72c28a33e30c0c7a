"""How many calls each agent had at the previous run: an ordering hint for the listing.

An agent's calls can only be listed one page after another (the cursor is the last
page's last id), so the largest agent bounds a run's listing. Starting the largest
first keeps that chain from being the last to begin. The sizes come from the
`listed_by_agent` of the last `run_finished` line (dry runs and execute runs alike),
read backwards from the live file's end and at most `TAIL_BYTES` of it, so start-up
stays independent of the log's length. A log without one (new, rotated, older
versions, a run killed after a long listing) gives no hint: agents are listed in
the API's order. The hint only orders the work; it never decides anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Final

import msgspec

from retention.api.models import Agent

TAIL_BYTES: Final = 8 << 20  # how far back from the end the last run_finished is sought
# run_finished records the largest this many agents only (a line stays far below the
# audit reader's 1 MiB): an agent missing from a full record is smaller than all in it.
RECORDED_MAX: Final = 1000
# No agent has more calls than this: a larger count in the log is not a size, and is
# dropped (JSON integers are unbounded; the hand-over's priority is a float).
MAX_SIZE: Final = 10**12
_CHUNK: Final = 1 << 16
_MARK: Final = b'"run_finished"'


def previous_sizes(fd: int | None) -> dict[str, int]:
    """agent id -> calls listed, from the last `run_finished` within the file's tail."""
    if fd is None:
        return {}
    try:
        end = os.fstat(fd).st_size
        for line in _lines_backwards(fd, end, max(0, end - TAIL_BYTES)):
            if _MARK in line:
                return _sizes(line)
    except OSError:
        return {}
    return {}


def _lines_backwards(fd: int, end: int, stop: int) -> Iterator[bytes]:
    """Complete lines ending at or before `end`, last first, none starting before `stop`."""
    rest = b""
    position = end
    while position > stop:
        start = max(stop, position - _CHUNK)
        block = os.pread(fd, position - start, start) + rest
        position = start
        lines = block.split(b"\n")
        rest = lines[0]  # may continue in the block before
        yield from (line for line in reversed(lines[1:]) if line)
    if rest and stop == 0:
        yield rest


def _sizes(line: bytes) -> dict[str, int]:
    try:
        record = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return {}
    counts = record.get("counts") if isinstance(record, dict) else None
    listed = counts.get("listed_by_agent") if isinstance(counts, dict) else None
    if not isinstance(listed, dict):
        return {}
    return {
        k: v
        for k, v in listed.items()
        if isinstance(k, str) and type(v) is int and 0 <= v <= MAX_SIZE
    }


def recorded(listed: Mapping[str, int]) -> dict[str, int]:
    """`listed_by_agent` for run_finished: the largest RECORDED_MAX agents, by id."""
    largest = sorted(listed.items(), key=lambda item: (-item[1], item[0]))[:RECORDED_MAX]
    return dict(sorted(largest))


def largest_first(agents: Sequence[Agent], sizes: Mapping[str, int]) -> list[Agent]:
    """The known agents by size, largest first. An agent missing from a full record is
    smaller than every one in it; from a record that is not full, it is new and may be
    large, so it goes first. Ties keep the API's order."""
    missing = min(sizes.values()) - 1 if len(sizes) >= RECORDED_MAX else 1 << 62
    return sorted(agents, key=lambda agent: -sizes.get(agent.id, missing))

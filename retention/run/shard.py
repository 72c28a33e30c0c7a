"""`--shard I/N`: split the agents among N runs side by side (a Kubernetes Indexed Job).

An agent belongs to shard `sha256(agent_id) mod N`: stable across processes, machines
and Python versions (Python's own `hash()` is salted per process). Each shard gets
1/N of the configured rate and concurrency, so N pods together stay within the limits.

With `--shard-sizes FILE` (calls per agent, e.g. a copy of a previous run's resume
sidecar), the agents the file names are dealt out by size instead: largest first,
each to the shard with the fewest calls so far (ties: the lower index; equal sizes:
by id). That is a pure function of the file, so every pod given the same file
computes the same split on its own; an agent the file does not name (a new one) is
placed by its hash, so pods never need to agree on the agent list either.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from retention.durable import SmallFileError, read_small_file
from retention.errors import UserError

MAX_SIZES_FILE_BYTES: Final = 16 << 20  # --shard-sizes: a JSON map of agent id -> calls
_SHARD: Final = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
MAX_SHARDS: Final = 10_000


class ShardError(UserError):
    """A malformed `--shard` (exit 2)."""


@dataclass(frozen=True, slots=True)
class Shard:
    index: int  # 0-based
    count: int
    # agent id -> shard, from known sizes (`balanced_shards`); other agents by hash
    assigned: Mapping[str, int] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ShardError(f"the shard count must be 1..{MAX_SHARDS}", where="--shard")
        if not 0 <= self.index < self.count:
            raise ShardError(
                f"shard index {self.index} is out of range for {self.count} shards "
                f"(0-based: 0..{self.count - 1})",
                where="--shard",
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, agent_id: str) -> bool:
        owner = self.assigned.get(agent_id)
        return (shard_of(agent_id, self.count) if owner is None else owner) == self.index

    def with_sizes(self, sizes: Mapping[str, int]) -> Shard:
        """The same shard, its agents dealt out by `sizes` (see `balanced_shards`)."""
        return Shard(self.index, self.count, balanced_shards(sizes, self.count))

    def share_rate(self, rate: float) -> float:
        return rate / self.count

    def share_concurrency(self, concurrency: int) -> int:
        return max(1, concurrency // self.count)


def shard_of(agent_id: str, count: int) -> int:
    digest = hashlib.sha256(agent_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def balanced_shards(sizes: Mapping[str, int], count: int) -> dict[str, int]:
    """Agent -> shard: largest first, each to the lightest shard (ties: lower index).

    Deterministic in `sizes` alone (not in its order): agents sorted by size
    descending, then by id.
    """
    lightest = [(0, index) for index in range(count)]  # (calls so far, shard): a heap
    assigned: dict[str, int] = {}
    for agent, size in sorted(sizes.items(), key=lambda item: (-item[1], item[0])):
        load, index = heapq.heappop(lightest)
        assigned[agent] = index
        heapq.heappush(lightest, (load + size, index))
    return assigned


def read_sizes(path: Path, *, where: str = "--shard-sizes") -> dict[str, int]:
    """Calls per agent: a JSON object {agent id: calls}, or a resume sidecar (its
    `agent_calls`). Anything else is exit 2, before any request."""
    try:
        body: Any = json.loads(read_small_file(path, MAX_SIZES_FILE_BYTES))
    except SmallFileError as err:
        raise ShardError(f"cannot read {path} ({err})", where=where) from None
    except (ValueError, RecursionError):
        raise ShardError(f"{path} is not JSON", where=where) from None
    if isinstance(body, dict) and isinstance(body.get("agent_calls"), dict):
        body = body["agent_calls"]
    if not isinstance(body, dict) or any(
        not isinstance(agent, str) or type(n) is not int or n < 0 for agent, n in body.items()
    ):
        raise ShardError(f"{path} is not a JSON object of agent id -> number of calls", where=where)
    return dict(body)


def parse_shard(text: str, *, where: str = "--shard") -> Shard:
    """`I/N` with 0 <= I < N, e.g. `0/3`."""
    match = _SHARD.fullmatch(text)
    if match is None:
        raise ShardError(f"{text!r} is not I/N (e.g. 0/3, 0-based)", where=where)
    return Shard(int(match.group(1)), int(match.group(2)))


def shard_from_index(index: str, count: int, *, where: str = "JOB_COMPLETION_INDEX") -> Shard:
    """A Kubernetes Indexed Job's completion index with `--shard-count N`."""
    if not index.strip().isdigit():
        raise ShardError(f"{index!r} is not a non-negative integer", where=where)
    return Shard(int(index.strip()), count)

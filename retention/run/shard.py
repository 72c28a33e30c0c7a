"""`--shard I/N`: split the agents among N runs side by side (a Kubernetes Indexed Job).

An agent belongs to shard `sha256(agent_id) mod N`: stable across processes, machines
and Python versions (Python's own `hash()` is salted per process). Each shard gets
1/N of the configured rate and concurrency, so N pods together stay within the limits.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

from retention.errors import UserError

_SHARD: Final = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
MAX_SHARDS: Final = 10_000


class ShardError(UserError):
    """A malformed `--shard` (exit 2)."""


@dataclass(frozen=True, slots=True)
class Shard:
    index: int  # 0-based
    count: int

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
        return shard_of(agent_id, self.count) == self.index

    def share_rate(self, rate: float) -> float:
        return rate / self.count

    def share_concurrency(self, concurrency: int) -> int:
        return max(1, concurrency // self.count)


def shard_of(agent_id: str, count: int) -> int:
    digest = hashlib.sha256(agent_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


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

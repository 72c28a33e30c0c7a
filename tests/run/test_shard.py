"""`--shard I/N`: parsing, stable assignment, and the shares of rate and concurrency."""

from __future__ import annotations

import hashlib

import pytest

from retention.run.flags import resolve_shard
from retention.run.shard import Shard, ShardError, parse_shard


@pytest.mark.parametrize("text", ["3/3", "a/b", "1", "-1/3", "0/0", "1/2/3", ""])
def test_malformed_shards_are_refused(text: str) -> None:
    with pytest.raises(ShardError) as refused:
        parse_shard(text)
    assert "--shard" in str(refused.value)


def test_every_agent_belongs_to_exactly_one_shard_by_sha256() -> None:
    agents = [f"agent_{n:04x}" for n in range(200)]
    shards = [parse_shard(f"{i}/4") for i in range(4)]
    for agent in agents:
        owners = [s.index for s in shards if s.owns(agent)]
        expected = int.from_bytes(hashlib.sha256(agent.encode()).digest()[:8], "big") % 4
        assert owners == [expected]


def test_a_shard_gets_its_share_of_rate_and_concurrency() -> None:
    shard = Shard(1, 4)
    assert shard.share_rate(400) == 100
    assert shard.share_concurrency(32) == 8
    assert Shard(0, 64).share_concurrency(32) == 1


def test_an_indexed_job_gives_the_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")
    assert resolve_shard(None, 3) == Shard(2, 3)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "3")
    with pytest.raises(ShardError):
        resolve_shard(None, 3)
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    with pytest.raises(ShardError):
        resolve_shard(None, 3)
    with pytest.raises(ShardError):
        resolve_shard("0/3", 3)

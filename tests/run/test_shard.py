"""`--shard I/N`: parsing, stable assignment, and the shares of rate and concurrency."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retention.run.flags import resolve_shard
from retention.run.shard import (
    MAX_SIZES_FILE_BYTES,
    Shard,
    ShardError,
    balanced_shards,
    parse_shard,
    read_sizes,
)


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


# -- even shards by known sizes ---------------------------------------------------------

agent_ids = st.text(alphabet="abcdef0123456789_", min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.dictionaries(agent_ids, st.integers(0, 10**6), max_size=80),
    listed=st.lists(agent_ids, max_size=80),
    count=st.integers(1, 12),
    seed=st.randoms(use_true_random=False),
)
def test_every_agent_lands_in_exactly_one_shard_and_every_pod_agrees(
    sizes: dict[str, int], listed: list[str], count: int, seed: random.Random
) -> None:
    # Each pod reads the same sizes, in whatever order its JSON parser gives them.
    pods = []
    for index in range(count):
        items = list(sizes.items())
        seed.shuffle(items)
        pods.append(Shard(index, count).with_sizes(dict(items)))
    for agent in {*listed, *sizes}:
        owners = [pod.index for pod in pods if pod.owns(agent)]
        assert len(owners) == 1
        if agent not in sizes:  # unknown size: placed by its hash, as without sizes
            assert owners == [_hash_shard(agent, count)]


def _hash_shard(agent: str, count: int) -> int:
    return int.from_bytes(hashlib.sha256(agent.encode()).digest()[:8], "big") % count


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.dictionaries(agent_ids, st.integers(0, 10**6), max_size=80),
    count=st.integers(1, 12),
)
def test_the_heaviest_shard_is_within_one_agent_of_an_even_split(
    sizes: dict[str, int], count: int
) -> None:
    assigned = balanced_shards(sizes, count)
    loads = [0] * count
    for agent, shard in assigned.items():
        loads[shard] += sizes[agent]
    # Greedy largest-first: the heaviest shard exceeds the mean by less than the
    # largest agent (when it took its last agent it was the lightest).
    biggest = max(sizes.values(), default=0)
    assert max(loads) <= sum(loads) / count + biggest


def test_sizes_come_from_a_json_map_or_a_resume_file(tmp_path: Path) -> None:
    plain = tmp_path / "sizes.json"
    plain.write_text(json.dumps({"a": 5, "b": 1}))
    resume = tmp_path / "audit.jsonl.resume"
    resume.write_text(json.dumps({"version": 1, "agent_calls": {"a": 5, "b": 1}}))
    assert read_sizes(plain) == read_sizes(resume) == {"a": 5, "b": 1}
    for bad in ("[1]", '{"a": -1}', '{"a": 1.5}', "not json"):
        plain.write_text(bad)
        with pytest.raises(ShardError) as refused:
            read_sizes(plain)
        assert refused.value.exit_code == 2
    with pytest.raises(ShardError):
        resolve_shard(None, None, resume)  # sizes without a shard
    assert resolve_shard("1/2", None, resume) == Shard(1, 2)


def test_a_sizes_path_that_is_no_small_regular_file_is_refused_at_once(tmp_path: Path) -> None:
    """A FIFO would block a plain read forever, and a huge file would be held whole."""
    fifo = tmp_path / "sizes.fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.json"
    with huge.open("wb") as handle:
        handle.truncate(MAX_SIZES_FILE_BYTES + 1)  # sparse: no disk used
    for path, words in [
        (fifo, "not a regular file"),
        (huge, "larger than 16 MiB"),
        (tmp_path, "a directory"),
        (tmp_path / "missing.json", "no such file"),
    ]:
        with pytest.raises(ShardError, match=words) as caught:
            read_sizes(path)
        assert caught.value.exit_code == 2

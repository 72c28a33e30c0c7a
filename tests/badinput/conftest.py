"""One sandbox for every bad-input test: each test proves it received no DELETE."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from retention.sandbox.data import DatasetSpec
from tests.faults.support import NOW, Sandbox, running_sandbox, write_policies

SPEC = DatasetSpec(seed=5, agents=2, calls=40, now=NOW)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(SPEC) as running:
        yield running


@pytest.fixture
def no_delete(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The sandbox, checked after the test: not one DELETE reached it."""
    before = sandbox.count("DELETE"), sandbox.dataset.redacted_ids()
    yield sandbox
    assert (sandbox.count("DELETE"), sandbox.dataset.redacted_ids()) == before, "a DELETE was sent"


@pytest.fixture
def good_policies(tmp_path: Path) -> Path:
    return write_policies(tmp_path / "good")

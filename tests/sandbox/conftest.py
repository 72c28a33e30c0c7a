"""Sandbox tests: a small fixed dataset, driven in-process through httpx.ASGITransport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from retention.api.models import Call
from retention.sandbox import Dataset, DatasetSpec, SandboxApp

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
KEY = "sk_car_sandbox"
HEADERS = {"Authorization": f"Bearer {KEY}", "Cartesia-Version": "2026-03-01"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def spec() -> DatasetSpec:
    return DatasetSpec(seed=7, agents=5, calls=400, now=NOW)


@pytest.fixture
def dataset(spec: DatasetSpec) -> Dataset:
    return Dataset(spec)


@pytest.fixture
def app(dataset: Dataset) -> SandboxApp:
    return SandboxApp(dataset, rng_seed=3)


@pytest.fixture
async def client(app: SandboxApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://sandbox", headers=HEADERS
    ) as client:
        yield client


def current(dataset: Dataset, call_id: str) -> Call:
    """The call as the dataset now shows it; it must exist."""
    call = dataset.get_call(call_id)
    assert call is not None
    return call

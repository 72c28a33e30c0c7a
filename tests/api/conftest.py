"""Fixtures of the API client tests: a small sandbox, in process or over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from retention.api.client import CartesiaClient
from retention.api.retry import RetryPolicy
from retention.sandbox import Dataset, DatasetSpec, SandboxApp

SANDBOX_KEY = "sk_car_sandbox"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Retries in tests wait milliseconds, not seconds.
FAST_RETRY = RetryPolicy(max_attempts=8, base_delay=0.001, max_delay=0.01)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def dataset() -> Dataset:
    return Dataset(DatasetSpec(seed=11, agents=4, calls=260, now=NOW))


@pytest.fixture
def app(dataset: Dataset) -> SandboxApp:
    return SandboxApp(dataset, api_key=SANDBOX_KEY)


def in_process(app: SandboxApp, **kwargs: object) -> CartesiaClient:
    """A client talking to `app` through httpx.ASGITransport (no sockets)."""
    options: dict[str, object] = {"retry": FAST_RETRY, "api_key": SANDBOX_KEY, **kwargs}
    return CartesiaClient(
        base_url="http://127.0.0.1",
        transport=httpx.ASGITransport(app=app),
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
async def client(app: SandboxApp) -> AsyncIterator[CartesiaClient]:
    async with in_process(app) as client:
        yield client


def status_count(app: SandboxApp, status: int) -> int:
    """Answers the sandbox gave with `status`, over every API route."""
    return sum(n for (_route, code), n in app.stats.requests.items() if code == status)


def server_errors(app: SandboxApp) -> int:
    return sum(n for (_route, code), n in app.stats.requests.items() if code >= 500)

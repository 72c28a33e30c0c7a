"""`latency_ms` is a response time: the answer leaves that long after the request
arrived, the sandbox's own work done within it, whatever the answer is.

No test here asserts how fast anything is: the bounds are the configured latency
itself (an answer never leaves before it) or half of a long latency (the work of
one request, a few milliseconds, is done long before then)."""

from __future__ import annotations

import threading
import time

import anyio
import httpx
import pytest
from anyio import wait_all_tasks_blocked

from retention.sandbox import Dataset, DatasetSpec, Faults, SandboxApp, serve_in_thread

from .conftest import HEADERS, NOW

LONG_LATENCY_MS = 2000.0
LATENCY_MS = 120.0


def _due_call(dataset: Dataset) -> str:
    return next(c.id for c in dataset.iter_all_calls() if c.terminal and c.redacted_at is None)


def test_the_work_is_done_on_arrival_and_the_answer_held_until_the_latency() -> None:
    """Over loopback: a DELETE's effect shows while its answer is still held back.

    Were the latency slept before the work, the call would stay unredacted for the
    whole latency; here it is redacted well within half of it, and the answer still
    comes no sooner than the latency after the request went out."""
    dataset = Dataset(DatasetSpec(seed=5, agents=2, calls=40, now=NOW))
    app = SandboxApp(dataset, Faults(latency_ms=LONG_LATENCY_MS))
    call_id = _due_call(dataset)
    answers: list[tuple[int, float]] = []
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=HEADERS) as client:

        def delete() -> None:
            started = time.monotonic()
            status = client.delete(f"/agents/calls/{call_id}").status_code
            answers.append((status, time.monotonic() - started))

        sent = time.monotonic()
        worker = threading.Thread(target=delete)
        worker.start()
        half = sent + LONG_LATENCY_MS / 2000
        while call_id not in dataset.redacted_ids() and time.monotonic() < half:
            time.sleep(0.005)
        redacted_early = call_id in dataset.redacted_ids()
        held = not answers and app.stats.in_flight == 1
        worker.join(30)
    assert redacted_early, "the DELETE's work waited for the latency"
    assert held, "the answer left before the latency"
    [(status, elapsed)] = answers
    assert status == 200 and elapsed >= LONG_LATENCY_MS / 1000


def _slow(faults: Faults) -> Faults:
    return Faults(**{**faults.__dict__, "latency_ms": LATENCY_MS})


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("faults", "path", "method", "headers"),
    [
        (Faults(), "/agents/calls?limit=100&agent_id=", "GET", HEADERS),
        (Faults(error_rate=1.0), "/agents", "GET", HEADERS),
        (Faults(malformed_rate=1.0), "/agents", "GET", HEADERS),
        (Faults(drop_rate=1.0), "/agents", "GET", HEADERS),
        (Faults(drop_rate=1.0, after_effect=True), "/agents/calls/", "DELETE", HEADERS),
        (Faults(), "/agents", "GET", {"Cartesia-Version": "2026-03-01"}),  # 401
        (Faults(), "/agents/calls/call_unknown", "GET", HEADERS),  # 404
    ],
    ids=["page", "5xx", "malformed", "drop", "drop-after-effect", "401", "404"],
)
async def test_every_admitted_answer_leaves_no_sooner_than_the_latency(
    faults: Faults, path: str, method: str, headers: dict[str, str]
) -> None:
    dataset = Dataset(DatasetSpec(seed=5, agents=2, calls=300, now=NOW))
    app = SandboxApp(dataset, _slow(faults))
    if path.endswith("agent_id="):
        path += dataset.agents()[0].id
    elif path.endswith("/calls/"):
        path += _due_call(dataset)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        started = anyio.current_time()
        try:
            await client.request(method, path, headers=headers)
        except httpx.RemoteProtocolError:
            assert faults.drop_rate == 1.0
        elapsed = anyio.current_time() - started
    assert elapsed >= LATENCY_MS / 1000


@pytest.mark.anyio
async def test_a_refusal_by_the_limits_answers_at_once(app: SandboxApp) -> None:
    """A 429 from max_in_flight is not held: it comes back while the admitted
    request it was refused for is still waiting out its latency."""
    app.faults = Faults(max_in_flight=1, latency_ms=LATENCY_MS)
    order: list[int] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://sandbox", headers=HEADERS
    ) as client:

        async def get() -> None:
            order.append((await client.get("/agents")).status_code)

        async with anyio.create_task_group() as group:
            group.start_soon(get)
            await wait_all_tasks_blocked()  # the first one is waiting out its latency
            assert app.stats.in_flight == 1
            group.start_soon(get)
    assert order == [429, 200]

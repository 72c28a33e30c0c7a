"""A competent async baseline for CPU per deletion: asyncio, one httpx.AsyncClient and
Semaphore(32) bounding the requests in flight; agents listed concurrently, due calls
deleted as they are listed. No audit log, no decisions beyond the age rule.

(Written for `python -m bench --only cpu-delete`; helper "startup" adds bench/competent.py
as the main baseline: the two can be merged.)

    python bench/async_semaphore_baseline.py --base-url http://127.0.0.1:8765 --now ...
"""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import datetime, timedelta
from typing import Any

import httpx

IN_FLIGHT = 32
TERMINAL = ("completed", "failed")


def parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def due(call: dict[str, Any], now: datetime, min_age: timedelta) -> bool:
    if call["status"] not in TERMINAL or call.get("redacted_at") or call.get("zdr_enabled"):
        return False
    started = parse_time(call.get("start_time") or call.get("end_time"))
    return started is not None and now - started >= min_age


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--now", required=True)
    parser.add_argument("--min-age-days", type=float, default=0.0)
    args = parser.parse_args()
    now = parse_time(args.now)
    assert now is not None
    min_age = timedelta(days=args.min_age_days)
    headers = {
        "Authorization": f"Bearer {os.environ['CARTESIA_API_KEY']}",
        "Cartesia-Version": "2026-03-01",
    }
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    gate = asyncio.Semaphore(IN_FLIGHT)
    deleted = 0
    async with httpx.AsyncClient(
        base_url=args.base_url, headers=headers, timeout=30, limits=limits
    ) as client:

        async def delete(call_id: str) -> None:
            nonlocal deleted
            async with gate:
                response = await client.delete(f"/agents/calls/{call_id}")
            response.raise_for_status()
            deleted += 1

        async def agent(agent_id: str) -> None:
            starting_after: str | None = None
            async with asyncio.TaskGroup() as deletions:
                while True:
                    params: dict[str, str | int] = {"agent_id": agent_id, "limit": 100}
                    if starting_after:
                        params["starting_after"] = starting_after
                    async with gate:
                        response = await client.get("/agents/calls", params=params)
                    page = response.raise_for_status().json()
                    for call in page["data"]:
                        if due(call, now, min_age):
                            deletions.create_task(delete(call["id"]))
                    if not page["data"] or not page.get("next_page"):
                        break
                    starting_after = page["data"][-1]["id"]

        agents = (await client.get("/agents")).raise_for_status().json()["summaries"]
        async with asyncio.TaskGroup() as listing:
            for summary in agents:
                listing.create_task(agent(summary["id"]))
    print(f"deleted {deleted}")


if __name__ == "__main__":
    asyncio.run(main())

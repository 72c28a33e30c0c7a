"""The main baseline: the script a competent engineer writes in an afternoon.

asyncio + one shared httpx.AsyncClient, at most 32 requests in flight
(`asyncio.Semaphore(32)`, the tool's own default), every agent listed at once, each
due call's DELETE started as soon as its page is read. The rule is the naive
script's (bench/naive.py): terminal, not yet redacted, not ZDR, old enough. No
audit log, no retries beyond what a 429 needs, no policies: only what the job
strictly asks, done concurrently.

    python bench/competent.py --base-url http://127.0.0.1:8765 --now 2026-06-01T00:00:00Z
"""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import datetime, timedelta
from typing import Any

import httpx

IN_FLIGHT = 32
TERMINAL = frozenset({"completed", "failed"})


def parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Cleaner:
    def __init__(self, client: httpx.AsyncClient, now: datetime, min_age: timedelta) -> None:
        self.client = client
        self.now = now
        self.min_age = min_age
        self.slots = asyncio.Semaphore(IN_FLIGHT)
        # DELETE tasks waiting or running: bounded, so memory stays flat on any account.
        self.queued = asyncio.Semaphore(4 * IN_FLIGHT)
        self.deleted = 0

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request inside the in-flight bound; a 429 waits as told, then tries again."""
        while True:
            async with self.slots:
                response = await self.client.request(method, url, **kwargs)
            if response.status_code != 429:
                response.raise_for_status()
                return response
            await asyncio.sleep(float(response.headers.get("retry-after", "0.5")))

    def due(self, call: dict[str, Any]) -> bool:
        if call["status"] not in TERMINAL or call.get("redacted_at") or call.get("zdr_enabled"):
            return False
        started = parse_time(call.get("start_time") or call.get("end_time"))
        return started is not None and self.now - started >= self.min_age

    async def delete(self, call_id: str) -> None:
        try:
            await self.request("DELETE", f"/agents/calls/{call_id}")
            self.deleted += 1
        finally:
            self.queued.release()

    async def agent(self, agent_id: str, group: asyncio.TaskGroup) -> None:
        """Page through one agent's calls; each due call's DELETE runs alongside."""
        params: dict[str, Any] = {"agent_id": agent_id, "limit": 100}
        while True:
            page = (await self.request("GET", "/agents/calls", params=params)).json()
            calls = page["data"]
            for call in calls:
                if self.due(call):
                    await self.queued.acquire()
                    group.create_task(self.delete(call["id"]))
            if not calls or not page.get("next_page"):
                return
            params["starting_after"] = calls[-1]["id"]


async def main_async(base_url: str, now: datetime, min_age: timedelta) -> int:
    headers = {
        "Authorization": f"Bearer {os.environ['CARTESIA_API_KEY']}",
        "Cartesia-Version": "2026-03-01",
    }
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=30, limits=limits
    ) as client:
        cleaner = Cleaner(client, now, min_age)
        agents = (await cleaner.request("GET", "/agents")).json()["summaries"]
        async with asyncio.TaskGroup() as group:
            for agent in agents:
                group.create_task(cleaner.agent(agent["id"], group))
    return cleaner.deleted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--now", required=True)
    parser.add_argument("--min-age-days", type=float, default=0.0)
    args = parser.parse_args()
    now = parse_time(args.now)
    assert now is not None
    deleted = asyncio.run(main_async(args.base_url, now, timedelta(days=args.min_age_days)))
    print(f"deleted {deleted}")


if __name__ == "__main__":
    main()

"""The baseline: the script a user would write with httpx, one request at a time.

List the agents, page through each agent's calls, delete every call that is
terminal, not yet redacted, not ZDR and at least `--min-age-days` old.

    python -m bench.naive --base-url http://127.0.0.1:8765 --now 2026-06-01T00:00:00Z
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timedelta

import httpx


def parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def main() -> None:
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
    client = httpx.Client(base_url=args.base_url, headers=headers, timeout=30)
    deleted = 0
    agents = client.get("/agents").json()["summaries"]
    for agent in agents:
        starting_after = None
        while True:
            params = {"agent_id": agent["id"], "limit": 100}
            if starting_after:
                params["starting_after"] = starting_after
            page = client.get("/agents/calls", params=params).json()
            calls = page["data"]
            for call in calls:
                if call["status"] not in ("completed", "failed"):
                    continue
                if call.get("redacted_at") or call.get("zdr_enabled"):
                    continue
                started = parse_time(call.get("start_time") or call.get("end_time"))
                if started is None or now - started < min_age:
                    continue
                response = client.delete(f"/agents/calls/{call['id']}")
                response.raise_for_status()
                deleted += 1
            if not calls or not page.get("next_page"):
                break
            starting_after = calls[-1]["id"]
    print(f"deleted {deleted}")


if __name__ == "__main__":
    main()

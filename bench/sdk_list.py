"""The reference for CPU per call: the official `cartesia` SDK's auto-paginator
listing every call of every agent (pages of 100) and, with `--delete`, deleting
each due call through the SDK's own request machinery (it has no delete-call
method), one at a time.

    python -m bench.sdk_list --base-url http://127.0.0.1:8765
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from typing import Any

from cartesia import Cartesia


def is_due(call: Any, now: datetime) -> bool:
    """The benchmarks' catch-all `delete_after: 0d` rule, written by hand."""
    if call.status not in ("completed", "failed"):
        return False
    if getattr(call, "redacted_at", None) or getattr(call, "zdr_enabled", False):
        return False
    origin = call.start_time or call.end_time
    if origin is None:
        return False
    if isinstance(origin, str):
        origin = datetime.fromisoformat(origin.replace("Z", "+00:00"))
    return bool(origin <= now)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--delete", action="store_true")
    parser.add_argument("--now", default="2100-01-01T00:00:00Z")
    args = parser.parse_args()
    now = datetime.fromisoformat(args.now.replace("Z", "+00:00"))
    client = Cartesia(api_key=os.environ["CARTESIA_API_KEY"], base_url=args.base_url)
    listed = deleted = 0
    for agent in client.agents.list().summaries:
        for call in client.agents.calls.list(agent_id=agent.id, limit=100):
            listed += 1
            if args.delete and is_due(call, now):
                client.delete(f"/agents/calls/{call.id}", cast_to=object)
                deleted += 1
    print(f"listed {listed} deleted {deleted}")


if __name__ == "__main__":
    main()

"""The independent oracle: the test's fixed policies written out by hand from the
issue's rules (never through retention.policy), plus the audit-log and leak checks.

POLICIES deletes terminal calls of `support-*` agents in US/EU whose metadata
`env` is `prod`, 30 days after they started; a call whose metadata `hold` is
true is kept forever. Rules of issue 17 the oracle applies:
- terminal is exactly `completed` or `failed`;
- a region matches in any letter case; globs (`support-*`, `prod`) are case-sensitive;
- a boolean matches in any letter case; `"yes"` and `1` are not `true`;
- a list or object under `env` matches nothing; under `hold` (a key a retention
  rule names) it means "never delete";
- a call listed under agent A whose own `agent_id` is another is never deleted;
  a deletion rule's `agents` holds only when every present id (listed id, the
  call's `agent_id`) matches, or every present name (listed name, the call's
  `agent_name`, at least one) does;
- an id with URL characters or over 128 characters never goes into a URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from tests.hostile.server import HostileApp
from tests.hostile.world import API_KEY, NOW, CallSpec, World

POLICIES: Final = """\
policies:
  - name: prod-support-30d
    delete_after: 30d
    match:
      agents: ["support-*"]
      regions: [US, EU]
      metadata:
        env: prod
  - name: hold-forever
    retain_for: forever
    match:
      metadata:
        hold: true
"""
_PLAIN_ID: Final = re.compile(r"[A-Za-z0-9_\-.:]{1,128}")
OUTCOMES: Final = frozenset({"deleted", "already_redacted", "not_found", "failed"})


def plain_id(value: str) -> bool:
    return bool(_PLAIN_ID.fullmatch(value)) and ".." not in value and value != "."


def held(metadata: object) -> bool:
    if not isinstance(metadata, dict) or "hold" not in metadata:
        return False
    value = metadata["hold"]
    if isinstance(value, (list, dict)):
        return True
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.lower() == "true"


def deletable(call: CallSpec, world: World) -> tuple[bool, str]:
    """Whether POLICIES clearly allow deleting `call` (as first drawn), and why not."""
    body = call.body
    listed = world.agent(call.listed_under)
    if not plain_id(call.id):
        return False, "invalid id"
    if body.get("status") not in ("completed", "failed"):
        return False, f"status {body.get('status')!r} is not terminal"
    if body.get("zdr_enabled") is not False:
        return False, "zdr"
    if body.get("redacted_at") is not None:
        return False, "already redacted"
    origin = body.get("start_time") or body.get("end_time")
    if not isinstance(origin, str):
        return False, "no timestamp"
    if NOW - datetime.fromisoformat(origin) < timedelta(days=30):
        return False, "younger than 30d"
    own_agent = body.get("agent_id")
    if own_agent is not None and own_agent != listed.id:
        return False, "listed under another agent"
    ids = [i for i in (listed.id, own_agent) if isinstance(i, str) and i]
    names = [n for n in (listed.name, body.get("agent_name")) if isinstance(n, str) and n]
    by_id = all(fnmatchcase(i, "support-*") for i in ids)
    by_name = bool(names) and all(fnmatchcase(n, "support-*") for n in names)
    if not (by_id or by_name):
        return False, "neither all its ids nor all its names are support-*"
    region = body.get("deployment_region")
    if not isinstance(region, str) or region.upper() not in ("US", "EU"):
        return False, f"region {region!r}"
    metadata = body.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("env") != "prod":
        return False, "env is not prod"
    if held(metadata):
        return False, "held"
    return True, "due"


def forbidden_deletes(app: HostileApp) -> list[str]:
    """Every DELETE the server received that the policies do not clearly allow."""
    calls = app.world.by_id()
    wrong: list[str] = []
    for request in app.deletes():
        call = calls.get(request.call_id or "")
        if call is None:
            wrong.append(f"DELETE of unknown id {request.call_id!r}")
            continue
        allowed, why = deletable(call, app.world)
        if not allowed:
            wrong.append(f"DELETE {call.id!r} ({why}): {call!r}")
    return wrong


def still_due(app: HostileApp) -> list[str]:
    """After the final calm run: calls surely due (no `hold` key, or `hold: false`)
    that are still not redacted. One odd call must not stop the rest of a listing."""
    missed: list[str] = []
    for call in app.world.calls:
        metadata = call.body.get("metadata")
        hold = metadata.get("hold", False) if isinstance(metadata, dict) else False
        if deletable(call, app.world)[0] and hold is False and call.id not in app.redacted:
            missed.append(f"due but never deleted: {call!r}")
    return missed


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def audit_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record_problems(app: HostileApp, records: list[dict[str, Any]]) -> list[str]:
    """Every server redaction: exactly one outcome line with its `redacted_at`; no open intent."""
    problems: list[str] = []
    outcomes: dict[str, list[dict[str, Any]]] = {}
    still_open: set[str] = set()
    for record in records:
        event, call_id = record.get("event"), record.get("call_id")
        if event == "delete_requested":
            still_open.add(str(call_id))
        elif event in OUTCOMES:
            still_open.discard(str(call_id))
            outcomes.setdefault(str(call_id), []).append(record)
    if still_open:
        problems.append(f"intents left open: {sorted(still_open)}")
    for call_id, stamp in sorted(app.redacted.items()):
        lines = outcomes.get(call_id, [])
        events = [line["event"] for line in lines]
        settled = [line for line in lines if line["event"] in ("deleted", "already_redacted")]
        if len(settled) != 1:
            problems.append(f"{call_id!r} redacted by the server at {stamp}: outcomes {events}")
            continue
        logged = settled[0].get("redacted_at")
        if not isinstance(logged, str) or _instant(logged) != _instant(stamp):
            problems.append(f"{call_id!r} redacted at {stamp}, logged {logged!r}")
        for line in lines:  # `failed`/`not_found` written once the server had redacted
            if line["event"] in ("failed", "not_found") and _instant(line["ts"]) >= _instant(stamp):
                problems.append(f"{call_id!r} redacted at {stamp}, then logged {line['event']}")
    return problems


def secrets(world: World) -> set[str]:
    """Strings that must never appear in any output: the key in any encoding, personal data."""
    tail = API_KEY.rsplit("_", 1)[1]
    escaped = "".join(f"\\u{ord(c):04x}" for c in API_KEY)
    percent = "".join(f"%{b:02X}" for b in API_KEY.encode())
    return {API_KEY, tail, escaped, percent, quote(API_KEY), *world.personal_values()}


def leaks(world: World, outputs: Iterable[tuple[str, str]]) -> list[str]:
    """(where, text) pairs in which a secret appears."""
    found: list[str] = []
    lowered = {s.lower() for s in secrets(world)}
    for where, text in outputs:
        low = text.lower()
        for secret in sorted(lowered):
            if secret in low:
                at = low.index(secret)
                found.append(f"{where}: {secret!r} in ...{text[max(0, at - 80) : at + 40]!r}")
    return found

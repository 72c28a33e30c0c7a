"""Test hooks under `/_sandbox/`: no auth, no faults, sandbox only.

They let tests and benchmarks steer a sandbox running in another process:
read counters, swap fault knobs, force fields of a call, revoke the key, make an
agent vanish. Each one calls the matching Python method of `SandboxApp`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import msgspec

from retention.sandbox.data import UnknownCall
from retention.sandbox.faults import Behaviour, Faults
from retention.sandbox.wire import Reply, call_body, error_reply, json_reply

if TYPE_CHECKING:
    from retention.sandbox.app import SandboxApp

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_MAX_BODY = 64 * 1024


async def handle(app: SandboxApp, method: str, path: str, receive: Receive) -> Reply:
    route = path.removeprefix("/_sandbox")
    if route == "/stats" and method == "GET":
        return json_reply(200, app.stats.to_json())
    if route == "/stats/reset" and method == "POST":
        app.reset_stats()
        return json_reply(200, app.stats.to_json())
    if route == "/faults":
        return await _knobs(app, method, receive, "faults", Faults)
    if route == "/behaviour":
        return await _knobs(app, method, receive, "behaviour", Behaviour)
    if route == "/revoke-key" and method == "POST":
        app.revoke_key()
        return json_reply(200, {"revoked": True})
    if route == "/restore-key" and method == "POST":
        app.restore_key()
        return json_reply(200, {"revoked": False})
    if route.startswith("/agents/") and method == "DELETE":
        agent_id = route.removeprefix("/agents/")
        if not app.remove_agent(agent_id):
            return error_reply(404, "not_found", "Agent not found.")
        return json_reply(200, {"removed": agent_id})
    if route.startswith("/calls/") and method == "PATCH":
        return await _override(app, route.removeprefix("/calls/"), receive)
    return error_reply(404, "not_found", "No such sandbox hook.")


async def _knobs(
    app: SandboxApp, method: str, receive: Receive, name: str, kind: type[Faults] | type[Behaviour]
) -> Reply:
    if method == "POST":
        body = await _json_object(receive)
        if isinstance(body, Reply):
            return body
        try:
            setattr(app, name, kind.from_json(body))
        except ValueError as err:
            return error_reply(400, "invalid_knobs", str(err))
    elif method != "GET":
        return error_reply(405, "method_not_allowed", "Use GET or POST.")
    return json_reply(200, dataclasses.asdict(getattr(app, name)))


async def _override(app: SandboxApp, call_id: str, receive: Receive) -> Reply:
    body = await _json_object(receive)
    if isinstance(body, Reply):
        return body
    try:
        call = app.override_call(call_id, body)
    except UnknownCall:
        return error_reply(404, "not_found", "Call not found.")
    except msgspec.ValidationError as err:
        return error_reply(400, "invalid_fields", str(err))
    return json_reply(200, call_body(call))


async def _json_object(receive: Receive) -> dict[str, Any] | Reply:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            return error_reply(413, "too_large", "Hook bodies are small JSON objects.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        body = msgspec.json.decode(b"".join(chunks) or b"{}")
    except msgspec.DecodeError:
        return error_reply(400, "invalid_json", "Body is not valid JSON.")
    if not isinstance(body, dict):
        return error_reply(400, "invalid_json", "Body must be a JSON object.")
    return body

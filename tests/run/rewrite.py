"""An ASGI wrapper that rewrites the sandbox's JSON answers on their way out, so a
test can serve exactly the odd listing it needs (bad ids, foreign calls, odd values)
while everything else stays the sandbox's own behaviour."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from retention.sandbox.app import Message, Receive, SandboxApp, Scope, Send

Rewrite = Callable[[str, dict[str, Any]], dict[str, Any]]


class Rewriting(SandboxApp):
    """The sandbox, with `rewrite(path, body)` applied to every JSON object it answers
    to a GET while `active` (the path is the request's, without its query)."""

    def __init__(self, inner: SandboxApp, rewrite: Rewrite) -> None:
        # Share the inner sandbox's state: the dataset, knobs and counters are its own.
        self.__dict__.update(inner.__dict__)
        self.rewrite = rewrite
        self.active = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("method") != "GET" or not self.active:
            await super().__call__(scope, receive, send)
            return
        path = str(scope["path"])
        start: list[Message] = []

        async def rewriting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.append(message)
                return
            body = message.get("body", b"")
            status = start[0]["status"]
            if status == 200 and body and not message.get("more_body", False):
                body = json.dumps(self.rewrite(path, json.loads(body))).encode()
            headers = [(k, v) for k, v in start[0]["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start[0], "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await super().__call__(scope, receive, rewriting_send)

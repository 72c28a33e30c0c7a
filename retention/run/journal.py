"""The run's single audit writer task, with group commit.

Workers hand records over a bounded stream. The writer takes whatever is waiting
(up to a batch), chains it, writes it and fsyncs once in a worker thread, then
releases every waiter of that batch: one fsync per batch rather than per request,
so durable intents do not throttle the run. Lines are written in the order they were
handed over, so `run_finished`, sent last, is the last line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from retention.run.audit import AuditLog, AuditWriteError, utc_timestamp

MAX_BATCH: Final = 512


@dataclass(slots=True)
class _Pending:
    record: dict[str, Any]
    written: anyio.Event = field(default_factory=anyio.Event)
    error: AuditWriteError | None = None


class Journal:
    """The async face of the audit log for one run. `run()` is the writer task."""

    def __init__(self, log: AuditLog, run_id: str, *, buffer: int = 256) -> None:
        self.log = log
        self.run_id = run_id
        self.lines_written = 0
        self.batches = 0
        self._send: MemoryObjectSendStream[_Pending]
        self._receive: MemoryObjectReceiveStream[_Pending]
        self._send, self._receive = anyio.create_memory_object_stream[_Pending](buffer)
        self._failure: AuditWriteError | None = None

    def record(self, event: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        return {"ts": utc_timestamp(), "run_id": self.run_id, "event": event, **fields}

    async def write(self, event: str, fields: Mapping[str, Any], *, durable: bool = True) -> None:
        """Hand a record to the writer; with `durable`, return once it is fsync'd."""
        if self._failure is not None:
            raise self._failure
        pending = _Pending(self.record(event, fields))
        await self._send.send(pending)
        if durable:
            await pending.written.wait()
            if pending.error is not None:
                raise pending.error

    async def close(self) -> None:
        """No more records: the writer drains what is queued and returns."""
        await self._send.aclose()

    async def run(self) -> None:
        """The writer task: batch, seal, write, fsync, release; until closed and drained."""
        async with self._receive:
            async for first in self._receive:
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            if self._failure is not None:
                raise self._failure
            lines = self.log.seal_records(p.record for p in batch)
            # Not cancellable: a started write always finishes, so no line is ever torn.
            await anyio.to_thread.run_sync(self.log.write_lines, lines)
        except AuditWriteError as err:
            self._failure = err
            for pending in batch:
                pending.error = err
                pending.written.set()
            raise
        self.lines_written += len(batch)
        self.batches += 1
        for pending in batch:
            pending.written.set()

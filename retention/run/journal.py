"""The run's single audit writer task, with group commit.

Workers hand records over a bounded stream. The writer takes whatever is waiting
(up to a batch), chains it, writes it and fsyncs once in a worker thread, then
releases every waiter of that batch: one fsync per batch rather than per request,
so durable intents do not throttle the run. Lines are written in the order they were
handed over, so `run_finished`, sent last, is the last record line.

With a signing key, the writer also appends a signed `checkpoint` line after a batch
once `every_lines` lines or `every_seconds` have passed since the last one, and one
after the run's last line; each goes in the same write and fsync as its batch. With
a witness, each checkpoint is then also written to its own file there.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from retention.audit.events import Event
from retention.audit.signing import Signer
from retention.audit.witness import Witness, WitnessWriteError
from retention.audit.writer import AuditLog, AuditWriteError
from retention.timestamps import utc_timestamp

MAX_BATCH: Final = 512
CHECKPOINT_EVERY_LINES: Final = 10_000
CHECKPOINT_EVERY_SECONDS: Final = 300.0


@dataclass(frozen=True)
class Checkpoints:
    """When and how the run signs its chain (`--signing-key`, `--witness`)."""

    signer: Signer
    witness: Witness | None = None
    every_lines: int = CHECKPOINT_EVERY_LINES
    every_seconds: float = CHECKPOINT_EVERY_SECONDS


@dataclass(slots=True)
class _Pending:
    record: dict[str, Any]
    written: anyio.Event = field(default_factory=anyio.Event)
    error: AuditWriteError | None = None


class Journal:
    """The async face of the audit log for one run. `run()` is the writer task."""

    def __init__(
        self,
        log: AuditLog,
        run_id: str,
        *,
        buffer: int = 256,
        checkpoints: Checkpoints | None = None,
    ) -> None:
        self.log = log
        self.run_id = run_id
        self.checkpoints = checkpoints
        self._uncovered = 0  # lines of this run since its last checkpoint
        self._checkpointed_at = time.monotonic() if checkpoints else 0.0
        self._send: MemoryObjectSendStream[_Pending]
        self._receive: MemoryObjectReceiveStream[_Pending]
        self._send, self._receive = anyio.create_memory_object_stream[_Pending](buffer)
        self._failure: AuditWriteError | None = None

    def record(self, event: Event, fields: Mapping[str, Any]) -> dict[str, Any]:
        return {"ts": utc_timestamp(), "run_id": self.run_id, "event": str(event), **fields}

    async def write(self, event: Event, fields: Mapping[str, Any], *, durable: bool = True) -> None:
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
        if self.checkpoints is not None and self._uncovered and self._failure is None:
            # The run's last checkpoint, after its last line; shielded like every write.
            with anyio.CancelScope(shield=True):
                lines: list[bytes] = []
                witnessed = [self._seal_checkpoint(lines)]
                await anyio.to_thread.run_sync(self._write, lines, witnessed)

    def _checkpoint_due(self) -> bool:
        policy = self.checkpoints
        if policy is None or not self._uncovered:
            return False
        elapsed = time.monotonic() - self._checkpointed_at
        return self._uncovered >= policy.every_lines or elapsed >= policy.every_seconds

    def _seal_checkpoint(self, lines: list[bytes]) -> tuple[int, bytes]:
        """Seal a checkpoint over the chain so far onto `lines`; its (seq, line) to witness."""
        assert self.checkpoints is not None
        scan = self.log.scan
        record = self.checkpoints.signer.checkpoint(
            ts=utc_timestamp(),
            run_id=self.run_id,
            covers_seq=scan.last_seq,
            covers_hash=scan.last_hash,
        )
        [line] = self.log.seal_records([record])
        lines.append(line)
        self._uncovered = 0
        self._checkpointed_at = time.monotonic()
        return scan.last_seq, line

    def _write(self, lines: list[bytes], witnessed: list[tuple[int, bytes]]) -> None:
        """Write and fsync the lines, then witness their checkpoints. Blocking: in a thread."""
        self.log.write_lines(lines)
        witness = self.checkpoints.witness if self.checkpoints else None
        if witness is None:
            return
        try:
            for seq, line in witnessed:
                witness.record(seq, line)
        except WitnessWriteError as err:
            # The line is in the log; the evidence owed outside it is not: stop the run.
            raise AuditWriteError(f"witness: {err}") from None

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            if self._failure is not None:
                raise self._failure
            lines = self.log.seal_records(p.record for p in batch)
            self._uncovered += len(batch)
            witnessed = [self._seal_checkpoint(lines)] if self._checkpoint_due() else []
            # Not cancellable: a started write always finishes, so no line is ever torn.
            await anyio.to_thread.run_sync(self._write, lines, witnessed)
        except AuditWriteError as err:
            self._failure = err
            for pending in batch:
                pending.error = err
                pending.written.set()
            raise
        for pending in batch:
            pending.written.set()

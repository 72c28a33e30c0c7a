"""Stopping a run: why it stops, what may still be sent, and how long in-flight work gets.

Three causes stop a run early: `--max-deletes` reached, a signal, or the API refusing
the credentials. Each stops the listing and new deletions at once; in-flight requests
finish (within the grace period for a signal or refused credentials). Refused
credentials also close the gate: no request at all goes out after that, retries included.
"""

from __future__ import annotations

import contextvars
import enum
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from retention.api.client import Answered, Gate
from retention.errors import ExitCode
from retention.log import get_logger

_log = get_logger(__name__)


class StopReason(enum.StrEnum):
    MAX_DELETES = "max_deletes"
    SIGNAL = "signal"
    CREDENTIALS = "credentials"
    SURGE = "surge_guard"  # the safety belt: more deletions than the log's history allows


STOP_EXIT_CODES = {
    StopReason.MAX_DELETES: ExitCode.MAX_DELETES,
    StopReason.SIGNAL: ExitCode.INTERRUPTED,
    StopReason.CREDENTIALS: ExitCode.CREDENTIALS_REFUSED,
    StopReason.SURGE: ExitCode.MAX_DELETES,
}


class RunStopped(Exception):
    """Raised by the gate instead of sending a request once the credentials were refused."""


@dataclass(slots=True)
class SendTracker:
    """Set by the gate when an attempt of the current request is actually let through."""

    sent: bool = False


# Per task: the worker sets a fresh tracker around each DELETE it makes.
current_send: contextvars.ContextVar[SendTracker | None] = contextvars.ContextVar(
    "current_send", default=None
)


class RunControl:
    """Shared by the pipeline, the gate and the signal watcher of one run."""

    def __init__(self, *, grace_period: float) -> None:
        self.grace_period = grace_period
        self.reason: StopReason | None = None
        self.gate_closed = False
        self.listing = anyio.CancelScope()  # the agents' listing: cancelled on any stop
        self.work = anyio.CancelScope()  # listing and workers: given a deadline on a stop
        # Settling a killed run's intents: same deadline; what is left stays open, safely.
        self.recovery = anyio.CancelScope()
        self.signals = 0

    @property
    def stopping(self) -> bool:
        return self.reason is not None

    def stop(self, reason: StopReason) -> None:
        """Stop taking new work. The first reason is the one the exit code reports."""
        if self.reason is None:
            self.reason = reason
            _log.warning("run.stopping", reason=str(reason))
        self.listing.cancel()
        if reason is StopReason.CREDENTIALS:
            self.gate_closed = True
        if reason in (StopReason.SIGNAL, StopReason.CREDENTIALS):
            deadline = anyio.current_time() + self.grace_period
            self.work.deadline = min(self.work.deadline, deadline)
            self.recovery.deadline = min(self.recovery.deadline, deadline)

    async def watch_signals(self) -> None:
        """First SIGTERM/SIGINT: graceful stop. Second: exit at once (the intents keep
        the audit log consistent: the next run resolves them)."""
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            async for signum in received:
                self.signals += 1
                if self.signals > 1:
                    _log.warning("run.killed", signal=signal.Signals(signum).name)
                    os._exit(ExitCode.INTERRUPTED)
                _log.warning(
                    "run.signal",
                    signal=signal.Signals(signum).name,
                    grace_period=self.grace_period,
                    hint="finishing in-flight requests; a second signal exits at once",
                )
                self.stop(StopReason.SIGNAL)


class RunGate:
    """The client's gate: the shared rate limiter, closed for good once credentials fail."""

    def __init__(self, limiter: Gate, control: RunControl) -> None:
        self.limiter = limiter
        self.control = control

    @asynccontextmanager
    async def slot(self, *, ahead: bool = False) -> AsyncIterator[Answered | None]:
        if self.control.gate_closed:
            raise RunStopped("the API refused the credentials; nothing more is sent")
        async with self.limiter.slot(ahead=ahead) as answered:
            if self.control.gate_closed:  # closed while this request waited its turn
                raise RunStopped("the API refused the credentials; nothing more is sent")
            tracker = current_send.get()
            if tracker is not None:
                tracker.sent = True
            yield answered

    def throttled(self, retry_after: float | None) -> None:
        self.limiter.throttled(retry_after)

    def succeeded(self) -> None:
        self.limiter.succeeded()

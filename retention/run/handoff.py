"""The bounded hand-over from the listers' deciders to the delete workers.

Like a memory object stream of `capacity` items (FIFO, backpressure, end of stream once
every sender is closed and the items are taken), with one difference: when it is full,
the waiting sender with the highest priority gets the next free place, not the one that
has waited longest. The pipeline gives each lister the calls its agent probably still
has to list, so the longest chain of pages is fed first. With first-come places, every
lister advances at the same pace in calls, the small agents finish first, and the
largest one is left alone at the end, one page per round trip, too slow to keep the
workers busy (figure 12 in docs/BENCHMARKS.md).

Memory: at most `capacity` items, plus one waiting entry per blocked sender or receiver.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


class Handoff(Generic[T]):
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._reserved = 0  # places handed to woken senders that have not filled them yet
        self._senders: list[tuple[float, int, anyio.Event]] = []  # heap: (-priority, order)
        self._receivers: deque[anyio.Event] = deque()
        self._order = itertools.count()
        self._open = 0  # senders not yet closed
        self._opened = False

    # -- senders -----------------------------------------------------------------------

    def open_sender(self) -> Sender[T]:
        self._open += 1
        self._opened = True
        return Sender(self)

    def _close_sender(self) -> None:
        self._open -= 1
        if self._open == 0:
            for event in self._receivers:  # nothing more will come: let them see the end
                event.set()
            self._receivers.clear()

    def _room(self) -> bool:
        return len(self._items) + self._reserved < self.capacity

    async def _send(self, item: T, priority: float) -> None:
        if self._senders or not self._room():
            entry = (-priority, next(self._order), anyio.Event())
            heapq.heappush(self._senders, entry)
            try:
                await entry[2].wait()
            except BaseException:
                if entry[2].is_set():  # a place was handed over just now: hand it on
                    self._reserved -= 1
                    self._hand_place()
                else:
                    self._senders.remove(entry)
                    heapq.heapify(self._senders)
                raise
            self._reserved -= 1
        self._items.append(item)
        if self._receivers:
            self._receivers.popleft().set()

    def _hand_place(self) -> None:
        """Free places go to the waiting senders with the highest priority."""
        while self._senders and self._room():
            _, _, event = heapq.heappop(self._senders)
            self._reserved += 1
            event.set()

    # -- receivers -----------------------------------------------------------------------

    async def receive(self) -> T:
        """The oldest item; `anyio.EndOfStream` once every sender is closed and none is left."""
        while not self._items:
            if self._opened and self._open == 0:
                raise anyio.EndOfStream
            event = anyio.Event()
            self._receivers.append(event)
            try:
                await event.wait()
            except BaseException:
                if event.is_set():  # woken for an item it will not take: wake another
                    if self._items and self._receivers:
                        self._receivers.popleft().set()
                else:
                    self._receivers.remove(event)
                raise
        item = self._items.popleft()
        self._hand_place()
        return item

    def __aiter__(self) -> Handoff[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


class Sender(Generic[T]):
    """One sender's handle: `send` while open; closing the last one ends the stream."""

    def __init__(self, handoff: Handoff[T]) -> None:
        self._handoff = handoff
        self._closed = False

    async def send(self, item: T, priority: float = 0.0) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        await self._handoff._send(item, priority)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._handoff._close_sender()

    async def __aenter__(self) -> Sender[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

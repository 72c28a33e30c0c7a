"""The bounded hand-over from the listers' deciders to the delete workers.

Like a memory object stream of `capacity` items (FIFO, backpressure, end of stream once
every sender is closed and the items are taken), with one difference: when it is full,
each free place goes to the waiting sender with the highest priority, not to the one
that has waited longest. The pipeline gives each lister the calls its agent probably
still has to list, so the longest chain of pages is fed first. With first-come places,
every lister advances at the same pace in calls, the small agents finish first, and
the largest one is left alone at the end, one page per round trip, too slow to keep the
workers busy (figure 12 in docs/BENCHMARKS.md).

A sender hands over a batch (a page's due calls). What does not fit waits in the
sender's entry, and a receiver that frees a place moves the next item of the top
entry into the buffer itself: a sender is woken once its whole batch is in, not once
per item, so its priority holds however long its task takes to be scheduled.

Memory: at most `capacity` items in the buffer, plus each blocked sender's own batch.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


@dataclass(order=True)
class _Waiting(Generic[T]):
    rank: tuple[float, int]  # (-priority, arrival): the heap's order
    items: deque[T] = field(compare=False)
    done: anyio.Event = field(compare=False, default_factory=anyio.Event)


class Handoff(Generic[T]):
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._senders: list[_Waiting[T]] = []  # a heap: the highest priority first
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

    async def _send(self, batch: Iterable[T], priority: float) -> None:
        rest = deque(batch)
        if not self._senders:  # nobody waits before us: take the room there is
            while rest and len(self._items) < self.capacity:
                self._put(rest.popleft())
        if not rest:
            return
        entry = _Waiting((-priority, next(self._order)), rest)
        heapq.heappush(self._senders, entry)
        try:
            await entry.done.wait()
        except BaseException:
            if not entry.done.is_set():  # what is left of the batch is not handed over
                self._senders.remove(entry)
                heapq.heapify(self._senders)
            raise

    def _put(self, item: T) -> None:
        self._items.append(item)
        if self._receivers:
            self._receivers.popleft().set()

    def _move_waiting(self) -> None:
        """Free places take the next items of the highest-priority waiting batch."""
        while self._senders and len(self._items) < self.capacity:
            top = self._senders[0]
            self._put(top.items.popleft())
            if not top.items:
                heapq.heappop(self._senders)
                top.done.set()

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
        self._move_waiting()
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
        await self.send_batch((item,), priority)

    async def send_batch(self, items: Iterable[T], priority: float = 0.0) -> None:
        """Hand the items over in order; return once the last one is in the buffer. If
        cancelled while waiting, the items not yet handed over are not."""
        if self._closed:
            raise anyio.ClosedResourceError
        await self._handoff._send(items, priority)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._handoff._close_sender()

    async def __aenter__(self) -> Sender[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

"""The hand-over from deciders to delete workers (run/handoff.py): bounded, FIFO for
the items it holds, the highest-priority waiting sender first when it is full, an end
once every sender is closed, and no place lost when a waiting task is cancelled."""

from __future__ import annotations

import anyio
import pytest
from anyio.lowlevel import checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st

from retention.run.handoff import Handoff, Sender


async def settle() -> None:
    """Let every runnable task run until it waits (a few passes of the loop)."""
    for _ in range(20):
        await checkpoint()


@pytest.mark.anyio
async def test_items_come_out_in_the_order_they_went_in_and_then_the_end() -> None:
    handoff = Handoff[int](4)
    async with handoff.open_sender() as sender:
        for item in (3, 1, 2):
            await sender.send(item, priority=item)  # room for all: priorities do not matter
    assert [item async for item in handoff] == [3, 1, 2]


@pytest.mark.anyio
async def test_when_full_the_waiting_sender_with_the_highest_priority_goes_first() -> None:
    handoff = Handoff[str](1)
    first = handoff.open_sender()
    await first.send("first")  # full now
    async with anyio.create_task_group() as group:
        for name, priority in (("low", 1.0), ("high", 9.0), ("middle", 5.0), ("high2", 9.0)):
            sender = handoff.open_sender()

            async def send(
                sender: Sender[str] = sender, name: str = name, p: float = priority
            ) -> None:
                async with sender:
                    await sender.send(name, p)

            group.start_soon(send)
            await settle()  # each is waiting before the next one comes
        first.close()
        got = [item async for item in handoff]
    # Equal priorities keep their arrival order.
    assert got == ["first", "high", "high2", "middle", "low"]


@pytest.mark.anyio
async def test_waiting_batches_are_moved_in_item_by_item_the_highest_priority_first() -> None:
    """Free places are filled from the waiting batches by whoever frees them: the
    higher-priority batch empties first, whatever the order its task gets to run in."""
    handoff = Handoff[str](1)
    main = handoff.open_sender()
    await main.send("first")
    done: list[str] = []
    async with anyio.create_task_group() as group:
        for name, batch, priority in (
            ("low", ["a1", "a2", "a3"], 1.0),
            ("high", ["b1", "b2"], 5.0),
        ):
            sender = handoff.open_sender()

            async def send(
                sender: Sender[str] = sender,
                name: str = name,
                batch: list[str] = batch,
                p: float = priority,
            ) -> None:
                async with sender:
                    await sender.send_batch(batch, p)
                done.append(name)

            group.start_soon(send)
            await settle()
        main.close()
        got = [item async for item in handoff]
    assert got == ["first", "b1", "b2", "a1", "a2", "a3"]
    assert sorted(done) == ["high", "low"]


@pytest.mark.anyio
async def test_a_new_sender_does_not_overtake_those_already_waiting() -> None:
    handoff = Handoff[str](1)
    async with anyio.create_task_group() as group:
        main = handoff.open_sender()
        await main.send("a")
        waiting = handoff.open_sender()

        async def wait_then_send() -> None:
            async with waiting:
                await waiting.send("waited", 1.0)

        group.start_soon(wait_then_send)
        await settle()
        assert await handoff.receive() == "a"  # the place goes to the waiting sender
        with anyio.fail_after(5):
            late = handoff.open_sender()
            async with late:
                # There is no room until "waited" is taken: this one waits too.
                group.start_soon(late.send, "late", 0.0)
                await settle()
                assert await handoff.receive() == "waited"
                assert await handoff.receive() == "late"
        main.close()


@pytest.mark.anyio
async def test_receivers_waiting_when_the_last_sender_closes_see_the_end() -> None:
    handoff = Handoff[int](2)
    sender = handoff.open_sender()
    ended: list[bool] = []

    async def receiver() -> None:
        with pytest.raises(anyio.EndOfStream):
            await handoff.receive()
        ended.append(True)

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(receiver)
        await settle()
        sender.close()
    assert ended == [True] * 3
    with pytest.raises(anyio.ClosedResourceError):
        await sender.send(1)


@pytest.mark.anyio
async def test_before_any_sender_opens_a_receiver_waits_rather_than_ending() -> None:
    handoff = Handoff[int](1)
    got: list[int] = []

    async def receiver() -> None:
        got.append(await handoff.receive())

    async with anyio.create_task_group() as group:
        group.start_soon(receiver)
        await settle()
        assert got == []
        async with handoff.open_sender() as sender:
            await sender.send(7)
    assert got == [7]


@pytest.mark.anyio
@pytest.mark.parametrize("handed_first", [False, True])
async def test_a_cancelled_waiting_sender_never_keeps_a_place(handed_first: bool) -> None:
    """Cancelled while waiting, the sender leaves the queue and its item is not handed
    over; once its item was moved into a free place, a cancellation comes too late to
    take it back. Either way the other sender gets in and the stream ends: a lost place
    would hang here."""
    handoff = Handoff[str](1)
    main = handoff.open_sender()
    await main.send("a")
    async with anyio.create_task_group() as group:
        scope = anyio.CancelScope()
        cancelled_sender = handoff.open_sender()
        other_sender = handoff.open_sender()

        async def doomed() -> None:
            with scope:
                await cancelled_sender.send("cancelled", 9.0)
            cancelled_sender.close()

        async def other() -> None:
            async with other_sender:
                await other_sender.send("b", 1.0)

        group.start_soon(doomed)
        group.start_soon(other)
        await settle()
        if handed_first:
            assert await handoff.receive() == "a"  # "cancelled" (higher) moves in at once
            scope.cancel()
        else:
            scope.cancel()
            await settle()
            assert await handoff.receive() == "a"
        main.close()
        with anyio.fail_after(5):
            rest = [item async for item in handoff]
    assert rest == (["cancelled", "b"] if handed_first else ["b"])


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 5),
    senders=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 12)), min_size=1, max_size=6
    ),  # (priority, items)
    receivers=st.integers(1, 4),
)
def test_every_item_is_delivered_once_in_its_senders_order_and_never_more_than_capacity(
    capacity: int, senders: list[tuple[int, int]], receivers: int
) -> None:
    delivered: list[tuple[int, int]] = []
    most_held = 0

    async def main() -> None:
        nonlocal most_held
        handoff = Handoff[tuple[int, int]](capacity)

        async def send(
            index: int, priority: int, count: int, sender: Sender[tuple[int, int]]
        ) -> None:
            async with sender:
                for n in range(count):
                    await sender.send((index, n), priority)
                    await checkpoint()

        async def receive() -> None:
            nonlocal most_held
            async for item in handoff:
                most_held = max(most_held, len(handoff._items))
                delivered.append(item)
                await checkpoint()

        async with anyio.create_task_group() as group:
            for _ in range(receivers):
                group.start_soon(receive)
            for index, (priority, count) in enumerate(senders):
                group.start_soon(send, index, priority, count, handoff.open_sender())

    anyio.run(main)
    expected = {(index, n) for index, (_, count) in enumerate(senders) for n in range(count)}
    assert sorted(delivered) == sorted(expected) and len(delivered) == len(expected)
    for index, (_, count) in enumerate(senders):
        assert [n for i, n in delivered if i == index] == list(range(count))
    assert most_held <= capacity

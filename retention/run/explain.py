"""`retention explain --ids FILE`: one row per call, read through the run's rate limiter.

A reader thread takes a few lines of FILE at a time and sends the ids through a
bounded stream to `concurrency` workers; each reads its call with the run's client
(and the run's `RateLimiter` as its gate) and decides it as a run would, listed under
the agent its `agent_id` names. Rows are written in input order: at most `window` ids
are between being read and being written, so memory stays flat for any number of ids.
An unusable id gets a row saying so and no request; a 404 a `not_found` row; a call
that could not be read (5xx, retries spent) an `error` row and exit status 1.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Final, Literal

import anyio
import click
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from retention.api.client import CartesiaClient
from retention.api.errors import ApiError, AuthError, NotFound
from retention.api.limiter import RateLimiter
from retention.errors import ExitCode, UserError
from retention.policy.load import ignored_message, load_policies
from retention.policy.match import Listed
from retention.policy.model import PolicySet
from retention.policy.rows import ROW_DECISIONS, ExplainRow, call_row
from retention.run.idfile import IdFile, IdLine
from retention.settings import check_base_url, parse_now, resolve_api_key, resolve_base_url

OutputFormat = Literal["table", "csv"]
CSV_HEADER: Final = (
    "call_id",
    "decision",
    "reason",
    "policy",
    "held_by",
    "failed_condition",
    "annotations",
)
READ_BATCH: Final = 64  # lines the reader thread takes at a time
ID_WIDTH: Final = 26  # a Cartesia call id and a little; longer ones push the row right


def window_for(concurrency: int) -> int:
    """Ids at most between being read and their row being written."""
    return max(64, 4 * concurrency)


async def explain_calls(
    ids: Iterator[IdLine],
    client: CartesiaClient,
    policy_set: PolicySet,
    now: datetime,
    emit: Callable[[ExplainRow], None],
    *,
    workers: int,
    window: int,
) -> Counter[str]:
    """Emit one row per id, in input order; returns the count of rows per decision.
    Raises UserError when the API refuses the credentials."""
    try:
        agents = {agent.id: agent.name or None for agent in await client.list_agents()}
    except AuthError as err:
        raise UserError(f"the API refused the credentials ({err})", where="explain") from None
    except ApiError as err:
        raise UserError(f"could not list the agents: {err}", where="explain") from None
    counts: Counter[str] = Counter()
    places = anyio.Semaphore(window)
    send_ids, receive_ids = anyio.create_memory_object_stream[tuple[int, IdLine]](workers)
    send_rows, receive_rows = anyio.create_memory_object_stream[tuple[int, ExplainRow]](workers)

    async def work(
        receive: ObjectReceiveStream[tuple[int, IdLine]],
        send: ObjectSendStream[tuple[int, ExplainRow]],
    ) -> None:
        async with receive, send:
            async for seq, item in receive:
                await send.send((seq, await _row(client, policy_set, now, agents, item)))

    async with anyio.create_task_group() as group:
        group.start_soon(_read, ids, send_ids, places)
        async with receive_ids, send_rows:
            for _ in range(workers):
                group.start_soon(work, receive_ids.clone(), send_rows.clone())
        group.start_soon(_write, receive_rows, emit, places, counts)
    return counts


async def _read(
    ids: Iterator[IdLine], send: ObjectSendStream[tuple[int, IdLine]], places: anyio.Semaphore
) -> None:
    async with send:
        seq = 0
        while True:
            # File reads block: a thread takes them, so a slow stdin never stalls requests.
            batch = await anyio.to_thread.run_sync(_take, ids, abandon_on_cancel=True)
            if not batch:
                return
            for item in batch:
                await places.acquire()  # released when this id's row is written
                await send.send((seq, item))
                seq += 1


def _take(ids: Iterator[IdLine]) -> list[IdLine]:
    return list(islice(ids, READ_BATCH))


async def _write(
    receive: ObjectReceiveStream[tuple[int, ExplainRow]],
    emit: Callable[[ExplainRow], None],
    places: anyio.Semaphore,
    counts: Counter[str],
) -> None:
    pending: dict[int, ExplainRow] = {}  # rows done ahead of an earlier one: < window
    upcoming = 0
    async with receive:
        async for seq, row in receive:
            pending[seq] = row
            while upcoming in pending:
                done = pending.pop(upcoming)
                emit(done)
                counts[done.decision] += 1
                upcoming += 1
                places.release()


async def _row(
    client: CartesiaClient,
    policy_set: PolicySet,
    now: datetime,
    agents: dict[str, str | None],
    item: IdLine,
) -> ExplainRow:
    call_id = item.call_id
    if call_id is None:
        return ExplainRow(item.shown, "unusable_id", f"not a usable call id: {item.problem}")
    try:
        call = await client.get_call(call_id)
    except NotFound:
        return ExplainRow(call_id, "not_found", "no call with this id")
    except AuthError as err:
        raise UserError(f"the API refused the credentials ({err})", where="explain") from None
    except ApiError as err:
        return ExplainRow(call_id, "error", f"could not read the call: {err}")
    # As a run lists it: under the agent its agent_id names, with that agent's name.
    agent_id = call.agent_id or ""
    listed = Listed(agent_id, agents.get(agent_id)) if agent_id else Listed("")
    return call_row(policy_set, call_id, call, now, listed)


# -- output --------------------------------------------------------------------------


def _printable(text: str) -> str:
    """A cell on one line: an API value may hold control characters."""
    return "".join(c if c.isprintable() else "?" for c in text)


class TableOut:
    """Aligned columns, streamed: widths fixed up front from the policy names."""

    def __init__(self, policy_set: PolicySet, echo: Callable[[str], None]) -> None:
        name = max([len("held_by"), *(len(p.name) for p in policy_set.policies)])
        self.widths = (ID_WIDTH, len("unusable_id"), len("unclear_metadata"), name, name)
        self.echo = echo
        self.annotated: dict[str, None] = {}  # policies named that carry annotations

    def header(self) -> None:
        self._line(("call_id", "decision", "reason", "policy", "held_by", "first failed condition"))

    def row(self, row: ExplainRow) -> None:
        cells = (row.call_id, row.decision, row.reason, row.policy, " ".join(row.held_by))
        self._line((*cells, row.failed))
        if row.annotations:
            for name in (row.policy, *row.held_by):
                self.annotated.setdefault(name, None)

    def _line(self, cells: Sequence[str]) -> None:
        shown = [_printable(c).ljust(w) for c, w in zip(cells, self.widths, strict=False)]
        self.echo(("  ".join(shown) + "  " + _printable(cells[-1])).rstrip())

    def footer(self, policy_set: PolicySet) -> None:
        """The annotations of the policies the rows named, once each."""
        from retention.policy.describe import annotation_text

        notes = [(n, annotation_text(policy_set.by_name(n))) for n in self.annotated if n]
        notes = [(n, text) for n, text in notes if text]
        if notes:
            self.echo("")
            for name, text in notes:
                self.echo(f"{name}: {_printable(text)}")


class CsvOut:
    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self._buffer: list[str] = []
        self._writer = csv.writer(self, lineterminator="")

    def write(self, text: str) -> int:  # the csv writer's file: one row at a time
        self._buffer.append(text)
        return len(text)

    def _emit(self, cells: Sequence[str]) -> None:
        self._writer.writerow(cells)
        text, self._buffer = "".join(self._buffer), []
        self.echo(text)

    def header(self) -> None:
        self._emit(CSV_HEADER)

    def row(self, row: ExplainRow) -> None:
        held = " ".join(row.held_by)
        cells = (row.call_id, row.decision, row.reason, row.policy, held, row.failed)
        self._emit((*cells, row.annotations))


def explain_ids_command(
    ids_path: Path,
    policy_paths: Sequence[Path],
    *,
    output: OutputFormat,
    now: str | None,
    base_url: str | None,
    api_key_file: Path | None,
    rate: float,
    concurrency: int,
) -> int:
    """Everything a user can get wrong is exit 2 before the first request."""
    instant = parse_now(now)
    ignored: list[Path] = []
    policy_set = load_policies(policy_paths, ignored)
    for path in ignored:
        click.echo(f"warning: {ignored_message(path)}", err=True)
    key = resolve_api_key(api_key_file)
    url = resolve_base_url(base_url)
    check_base_url(url)
    source = IdFile(ids_path)
    try:
        out = TableOut(policy_set, click.echo) if output == "table" else CsvOut(click.echo)
        out.header()
        gate = RateLimiter(rate, concurrency)

        async def explain_all() -> Counter[str]:
            async with CartesiaClient(base_url=url, api_key=key, gate=gate) as client:
                return await explain_calls(
                    iter(source),
                    client,
                    policy_set,
                    instant,
                    out.row,
                    workers=concurrency,
                    window=window_for(concurrency),
                )

        counts = anyio.run(explain_all)
    finally:
        source.close()
    if isinstance(out, TableOut):
        out.footer(policy_set)
    total = sum(counts.values())
    summary = ", ".join(f"{counts[d]} {d}" for d in ROW_DECISIONS if counts[d])
    click.echo(f"explained {total} id{'s' if total != 1 else ''}: {summary}", err=True)
    if counts["error"]:
        click.echo(
            f"retention: {counts['error']} call{'s' if counts['error'] != 1 else ''} "
            "could not be read (see the `error` rows)",
            err=True,
        )
        return ExitCode.SOME_FAILED
    return ExitCode.OK

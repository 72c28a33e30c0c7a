"""The run's task tree: agents listed concurrently, calls decided as they arrive, due
calls flowing through a bounded hand-over to a pool of delete workers.

    feed agents -> [agent stream] -> N listers -> decide -> [hand-over] -> M workers
                                                                  \\-> audit writer

Memory stays flat: streams are bounded, and only counters outlive a call. Listing and
deleting overlap; backpressure from the workers slows the listing down. When the
workers are the bottleneck, the hand-over (run/handoff.py) takes calls first from the
lister whose agent probably has the most calls still to list, so the longest chain of
pages does not end up alone at the end of an execute run, too slow to feed the workers.

Listing is bound by each agent's chain of pages (a page's cursor comes from the page
before), so: the largest agents start first (their sizes from the previous run, see
run/sizes.py); listers scale with the agents and the in-flight ceiling (`listers_for`);
and each lister fetches an agent's next page while the current one is decided (one
page ahead, no more: at most two pages per lister are held; the decider yields every
`DECIDE_STRIDE` calls, so that next request goes out before the page is decided).
A page's due calls go to the hand-over as one batch, once the page is decided.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import anyio
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from retention.api.client import MAX_PAGE_SIZE, CartesiaClient
from retention.api.errors import (
    ApiError,
    AuthError,
    NotFound,
    RetriesExhausted,
)
from retention.api.ids import id_problem, is_valid_id
from retention.api.models import Agent, Call, UnreadableCall, api_timestamp
from retention.audit.events import Event, Outcome
from retention.log import get_logger
from retention.plan.store import Plan, PlannedCall, PlanWriter
from retention.policy.decision import Action, Decision, ListingSkip, Reason
from retention.policy.engine import Listed, age_of, decide
from retention.policy.model import Kind, PolicySet
from retention.run.control import RunControl, RunStopped, SendTracker, StopReason, current_send
from retention.run.handoff import Handoff, Sender
from retention.run.journal import Journal
from retention.run.report import Report
from retention.run.sizes import recorded
from retention.run.stats import MATCH_MASKS, RunStats
from retention.run.sweeps import is_sweep
from retention.timestamps import as_utc

_log = get_logger(__name__)

LISTERS_MIN: Final = 4
LISTERS_MAX: Final = 32  # each holds up to two pages: memory is bounded by this, not calls
PAGE: Final = MAX_PAGE_SIZE  # calls handed from a lister's fetching task to its decider at once
# Calls decided between yields to the event loop. A page is handed to its decider
# before the lister's next request is written (the request path has checkpoints of its
# own), so a decider that ran a whole page at once would delay every page of the chain
# by the time it takes to decide one (~6 ms of 50 here): figure 13.
DECIDE_STRIDE: Final = 4
NO_LONGER_TERMINAL: Final = "not deleted: the call is no longer terminal"
GONE: Final = "gone"  # dropped: planned, and no longer listed by the API
NOT_LISTED: Final = "not_listed"  # dropped: planned, its agent's listing did not finish


@dataclass(frozen=True, slots=True)
class Work:
    """A call selected for deletion, on its way to a worker."""

    call: Call
    agent: Agent
    policy: str


@dataclass(frozen=True, slots=True)
class Settled:
    """What the audit log records for one deletion; `event=None`: unknown, left open
    (counted as unconfirmed, not written)."""

    event: Event | None
    extra: dict[str, str]

    @staticmethod
    def failed(error: str) -> Settled:
        return Settled(Event.FAILED, {"error": error})

    @staticmethod
    def redacted(event: Event, call: Call) -> Settled:
        return Settled(event, {"redacted_at": api_timestamp(call.redacted_at)})


UNKNOWN: Final = Settled(None, {})


def describe_failure(err: ApiError) -> str:
    """A short cause for the audit log: the kind and status, never a response body."""
    cause = err.cause if isinstance(err, RetriesExhausted) else err
    what = f"HTTP {cause.status}" if cause.status is not None else type(cause).__name__
    if isinstance(err, RetriesExhausted):
        return f"gave up after {err.attempts} attempts: {what}"
    return f"{type(err).__name__}: {what}"


def reached_server(err: ApiError) -> bool:
    """Whether a DELETE of ours may have reached the server: any HTTP answer did (a 429
    or a 404 included), and so did a failure after the request may have been written."""
    return err.may_have_taken_effect or err.status is not None


def listers_for(agents: int, ceiling: int, *, execute: bool) -> int:
    """Agents listed at once: a dry run gives the whole in-flight ceiling to listing, an
    execute run a quarter (the rest deletes); within [LISTERS_MIN, LISTERS_MAX] and
    never more than there are agents."""
    share = ceiling // 4 if execute else ceiling
    return max(1, min(agents, LISTERS_MAX, max(LISTERS_MIN, share)))


def workers_for(ceiling: int) -> int:
    """Delete workers: the in-flight ceiling and a quarter more. A worker spends part of
    each deletion outside the gate (the outcome written, the next intent made durable);
    the spare ones wait at the gate meanwhile, so no place sits idle. The gate, not the
    number of workers, holds the requests in flight to the ceiling."""
    return ceiling + max(1, ceiling // 4)


Batch = list[Call | UnreadableCall]


class Pipeline:
    def __init__(
        self,
        *,
        client: CartesiaClient,
        policies: PolicySet,
        now: datetime,
        execute: bool,
        concurrency: int,
        max_deletes: int | None,
        journal: Journal,
        report: Report | None,
        stats: RunStats,
        control: RunControl,
        planner: PlanWriter | None = None,
        plan: Plan | None = None,
        surge_limit: int | None = None,
    ) -> None:
        self.client = client
        self.policies = policies
        self.now = now
        self.execute = execute
        self.concurrency = concurrency
        self.max_deletes = max_deletes
        self.journal = journal
        self.report = report
        self.stats = stats
        self.control = control
        self.requested = 0  # DELETEs this run decided to send (the --max-deletes budget)
        self._durations = {p.name: p.duration for p in policies.policies}  # for the forecast
        self._holds = any(p.kind == Kind.RETAIN for p in policies.policies)
        # Sweeps (`delete_after: 0d`) by mask bit: their accounts count skipped matches.
        self._sweeps = tuple(
            (1 << i, p.name) for i, p in enumerate(policies.policies) if is_sweep(p)
        )
        self.planner = planner  # `plan`: every due call is written to the plan file
        self.plan = plan  # `apply`: only planned calls that are still due are deleted
        self.surge_limit = surge_limit  # the surge guard's line (None: off)
        self._sizes: Mapping[str, int] = {}  # calls per agent at the previous run (run())
        stats.set_policies(
            [p.name for p in policies.policies],
            [p.name for p in policies.policies if p.kind == Kind.RETAIN],
        )

    async def run(self, agents: Sequence[Agent], sizes: Mapping[str, int] | None = None) -> None:
        """List, decide and (with --execute) delete. `sizes`: calls each agent had at the
        previous run, if known (run/sizes.py), for the hand-over's priorities."""
        self._sizes = sizes or {}
        agent_send, agent_recv = anyio.create_memory_object_stream[Agent](0)
        calls = Handoff[Work](self.concurrency)
        call_send = calls.open_sender()  # opened now: no worker sees an end before it
        with self.control.work:
            async with anyio.create_task_group() as group:
                group.start_soon(self._listing, agents, agent_send, agent_recv, calls, call_send)
                if self.execute:
                    for _ in range(workers_for(self.concurrency)):
                        group.start_soon(self._worker, calls)

    # -- listing -------------------------------------------------------------------

    async def _listing(
        self,
        agents: Sequence[Agent],
        agent_send: MemoryObjectSendStream[Agent],
        agent_recv: MemoryObjectReceiveStream[Agent],
        calls: Handoff[Work],
        call_send: Sender[Work],
    ) -> None:
        listers = listers_for(len(agents), self.concurrency, execute=self.execute)
        async with call_send:
            with self.control.listing:
                async with anyio.create_task_group() as group:
                    for _ in range(listers):
                        group.start_soon(self._lister, agent_recv.clone(), calls.open_sender())
                    agent_recv.close()
                    async with agent_send:
                        for agent in agents:
                            await agent_send.send(agent)

    async def _lister(
        self,
        agents: MemoryObjectReceiveStream[Agent],
        calls: Sender[Work],
    ) -> None:
        async with agents, calls:
            async for agent in agents:
                if not is_valid_id(agent.id):
                    # Its id cannot go into a URL: its calls stay unlisted, and the run says so.
                    self.stats.agents_failed += 1
                    _log.error("run.agent_skipped", reason=f"agent id {id_problem(agent.id)}")
                    continue
                try:
                    await self._list_agent(agent, calls)
                except NotFound:
                    # The agent vanished between GET /agents and its listing: nothing to do.
                    _log.warning("run.agent_gone", agent_id=agent.id)
                except (AuthError, RunStopped):
                    self.control.stop(StopReason.CREDENTIALS)
                    return
                except ApiError as err:
                    self.stats.agents_failed += 1
                    self.stats.record_failure(f"listing: {describe_failure(err)}")
                    _log.error("run.listing_failed", agent_id=agent.id, error=describe_failure(err))

    async def _list_agent(self, agent: Agent, calls: Sender[Work]) -> None:
        """Decide one agent's calls, a batch (a page) at a time, while a task of its own
        fetches the next page. A listing error is raised here after the calls listed
        before it were decided, as if the listing had been read in line."""
        send, receive = anyio.create_memory_object_stream[Batch | ApiError | RunStopped](0)
        listed = 0
        failure: ApiError | RunStopped | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(self._fetch, agent.id, send)
            async with receive:
                async for batch in receive:
                    if not isinstance(batch, list):
                        failure = batch
                        break
                    listed += len(batch)
                    due: list[Work] = []  # at most a page
                    for index, call in enumerate(batch, 1):
                        if isinstance(call, UnreadableCall):
                            self._unreadable(agent, call)
                        elif (work := self._consider(agent, call)) is not None:
                            due.append(work)
                        if not index % DECIDE_STRIDE:
                            await checkpoint()
                    if due:
                        await calls.send_batch(due, self._still_to_list(agent.id, listed))
        self.stats.listed_by_agent[agent.id] = listed
        if failure is not None:
            raise failure

    def _still_to_list(self, agent_id: str, listed: int) -> float:
        """The agent's calls probably not listed yet: the hand-over's priority, so the
        longest chain of pages is fed first. From the previous run's size when known;
        else as many as listed so far (a chain that has run long probably runs on)."""
        known = self._sizes.get(agent_id)
        return float(listed if known is None else max(known - listed, 0))

    async def _fetch(
        self, agent_id: str, batches: MemoryObjectSendStream[Batch | ApiError | RunStopped]
    ) -> None:
        """Read an agent's listing, handing it on a page at a time; the next page is
        asked for as soon as the current one is handed on (the stream holds none)."""
        batch: Batch = []
        async with batches:
            try:
                async for call in self.client.iter_calls(agent_id):
                    batch.append(call)
                    if len(batch) >= PAGE:
                        await batches.send(batch)
                        batch = []
            except (ApiError, RunStopped) as err:
                if batch:
                    await batches.send(batch)
                await batches.send(err)
                return
            if batch:
                await batches.send(batch)

    def _unreadable(self, agent: Agent, call: UnreadableCall) -> None:
        """A listed call the models cannot decode: never deleted, counted and named."""
        self.stats.scanned += 1
        self.stats.skipped[ListingSkip.UNREADABLE.value] += 1
        shown = call.id if is_valid_id(call.id) else None  # an odd id may hold anything
        _log.warning("run.call_unreadable", call_id=shown, agent_id=agent.id, problem=call.problem)

    def _consider(self, agent: Agent, call: Call) -> Work | None:
        """Decide one call and count it; the work to hand to the workers, if any."""
        stats = self.stats
        stats.scanned += 1
        if not is_valid_id(call.id):
            # Never put it into a URL: kept, counted and named (by agent, not by its id).
            stats.skipped[ListingSkip.INVALID_ID.value] += 1
            _log.warning("run.invalid_call_id", agent_id=agent.id, problem=id_problem(call.id))
            return None
        masks = stats.match_masks
        decision = decide(self.policies, call, self.now, agent.id, agent.name or None, masks)
        if len(masks) >= MATCH_MASKS:
            stats.fold_matches()
        planned: tuple[int, str] | None = None
        if self.plan is not None:
            planned = self.plan.lookup(call.id)
            if planned is not None and not self.plan.mark(planned[0]):
                return None  # listed twice: a planned call is considered once
            if planned is not None and decision.action is not Action.DELETE:
                self._dropped(agent, call, planned[1], decision)
        if decision.action is Action.SKIP:
            stats.skipped[decision.reason.value] += 1
            if self._sweeps:
                self._sweep_skipped(agent, call, decision.reason)
            if decision.reason is Reason.INCONSISTENT:
                _log.warning(
                    "run.inconsistent_call",
                    call_id=call.id,
                    agent_id=agent.id,
                    call_agent_id=call.agent_id,
                    hint="the call names another agent than the one it was listed under; kept",
                )
        elif decision.action is Action.KEEP:
            stats.kept[decision.reason.value] += 1
            self._histograms(call, agent, decision)
            if decision.held_by:
                stats.record_held(decision)
        else:
            stats.due += 1
            self._histograms(call, agent, decision)
            policy = decision.credited_policy or ""
            stats.due_by_policy[policy] += 1
            if self.plan is not None and planned is None:
                # Due now, but nobody approved it: never deleted by `apply`.
                self._record(Work(call, agent, policy), Outcome.NOT_IN_PLAN)
                return None
            if self.planner is not None:
                self.planner.add(_planned(call, agent, policy, self.now))
            if self.execute:
                return Work(call, agent, policy)
            self._record(Work(call, agent, policy), Outcome.WOULD_DELETE)
        return None

    def _sweep_skipped(self, agent: Agent, call: Call, reason: Reason) -> None:
        """A skipped call each sweep matched: counted by reason for its account."""
        mask = self.policies.index.mask(call, Listed(agent.id, agent.name or None))
        for bit, name in self._sweeps:
            if mask & bit:
                self.stats.sweep_skipped.setdefault(name, Counter())[reason.value] += 1

    def _histograms(self, call: Call, agent: Agent, decision: Decision) -> None:
        """The report's bounded histograms: ages, the forecast, the rules cited."""
        self.stats.record_age(decision.action is Action.DELETE, age_of(call, self.now))
        self.stats.record_cited(decision)
        if decision.action is Action.KEEP:
            due_at = self._due_at(call, agent, decision)
            if due_at is not None:
                self.stats.record_forecast(
                    decision.credited_policy or "", (due_at - self.now).total_seconds()
                )

    def _due_at(self, call: Call, agent: Agent, decision: Decision) -> datetime | None:
        """When a kept call becomes due if nothing about it changes (forecast.py): its
        deletion rule's time, or the end of the hold that would still keep it then."""
        origin = call.age_origin
        if origin is None:
            return None
        origin = as_utc(origin)
        if decision.reason is Reason.NOT_YET_DUE:
            delete_after = self._durations.get(decision.credited_policy or "")
            if delete_after is None:
                return None
            due_at = origin + delete_after
            if not self._holds:
                return due_at
            then = decide(self.policies, call, due_at, agent.id, agent.name or None)
            if then.reason is not Reason.HELD:
                return due_at
            decision = then
        if decision.reason is not Reason.HELD:
            return None
        retain_for = self._durations.get(decision.held_by or "")
        return None if retain_for is None else origin + retain_for  # forever: never due

    def _dropped(self, agent: Agent, call: Call, policy: str, decision: Decision) -> None:
        """A planned call that is no longer due: not deleted, counted with its reason."""
        reason = decision.reason.value
        if decision.action is Action.KEEP and decision.reason is Reason.HELD:
            reason = f"held by {decision.held_by}"
        self.stats.dropped[reason] += 1
        _log.info("apply.dropped", call_id=call.id, agent_id=agent.id, reason=reason)
        self._record(Work(call, agent, policy), Outcome.DROPPED)

    def settle_plan(self, *, complete: bool) -> None:
        """After the listing: planned calls never listed are dropped, as `gone` when every
        agent was listed in full, else as `not_listed` (this run may have missed them)."""
        if self.plan is None:
            return
        unseen = self.plan.unseen
        if unseen:
            reason = GONE if complete else NOT_LISTED
            self.stats.dropped[reason] += unseen
            self.stats.outcomes[Outcome.DROPPED.value] += unseen

    def _record(self, work: Work, outcome: Outcome) -> None:
        call = work.call
        self.stats.record_selected(
            work.policy, work.agent.id, call.deployment_region or "unknown", outcome
        )
        if self.report is not None:
            name = work.agent.name or call.agent_name or ""
            self.report.row(call, name, work.policy, outcome, self.now)

    # -- deleting ------------------------------------------------------------------

    async def _worker(self, calls: Handoff[Work]) -> None:
        async for work in calls:
            if self.control.stopping:
                continue  # drain without acting: the listing is being cancelled
            if self.max_deletes is not None and self.requested >= self.max_deletes:
                self.control.stop(StopReason.MAX_DELETES)
                continue
            if self.surge_limit is not None and self.requested >= self.surge_limit:
                self._surge()
                continue
            self.requested += 1
            await self._delete(work)

    def _surge(self) -> None:
        if not self.control.stopping:
            _log.error(
                "run.surge_guard_stopped",
                limit=self.surge_limit,
                error=f"this run would delete more than {self.surge_limit} calls, the surge "
                "guard's line from the audit log's earlier runs; stopped before crossing it",
                hint="review a plan (`retention plan --out PLAN`, then `retention apply PLAN "
                "--execute --expect-sha256 DIGEST`), or run again with --no-surge-guard",
            )
        self.control.stop(StopReason.SURGE)

    async def _delete(self, work: Work) -> None:
        keys = {"call_id": work.call.id, "agent_id": work.agent.id, "policy": work.policy}
        # Durable before the request goes out: a crash after this line is recoverable.
        await self.journal.write(Event.DELETE_REQUESTED, keys)
        tracker = SendTracker()
        token = current_send.set(tracker)
        try:
            settled = await self._send_delete(work.call)
        except RunStopped:
            settled = Settled.failed("not sent: the run stopped") if not tracker.sent else UNKNOWN
        finally:
            current_send.reset(token)
        if settled.event is None:
            _log.warning(
                "run.outcome_unknown",
                call_id=work.call.id,
                hint="left open in the audit log; the next run asks the API and records it",
            )
            self._record(work, Outcome.UNCONFIRMED)
            return
        await self.journal.write(settled.event, {**keys, **settled.extra}, durable=False)
        if settled.event == Event.FAILED:
            self.stats.record_failure(settled.extra.get("error", "unknown"))
        self._record(work, Outcome(settled.event))

    async def _send_delete(self, call: Call) -> Settled:
        """The outcome table (README, "What a DELETE's answer means"): only a 2xx carrying
        this call with `redacted_at` settles a DELETE; any other answer, or no answer, is
        settled by reading the call. A 404 is read again too: a 404 that hid a redaction
        would lose its record, and one GET per vanished call is cheap."""
        try:
            answer = await self.client.delete_call(call.id)
        except NotFound as err:
            return await self._confirm(call, describe_failure(err), reached=True)
        except AuthError as err:
            self.control.stop(StopReason.CREDENTIALS)
            return await self._confirm(call, describe_failure(err), reached_server(err))
        except ApiError as err:
            return await self._confirm(call, describe_failure(err), reached_server(err))
        if answer.redacted_at is not None and answer.id == call.id:
            return Settled.redacted(Event.DELETED, answer)
        cause = "answered without redacted_at" if answer.id == call.id else "answered another call"
        return await self._confirm(call, cause, reached=True)

    async def _confirm(self, call: Call, cause: str, reached: bool) -> Settled:
        """Read the call to learn what the API did. `reached`: a DELETE of ours may have
        reached the server, so a redaction seen now is ours. A call that cannot be read
        leaves the intent open: the next run's recovery asks again."""
        try:
            fresh = await self.client.get_call(call.id)
        except NotFound:
            return Settled(Event.NOT_FOUND, {})
        except AuthError:
            self.control.stop(StopReason.CREDENTIALS)
            return UNKNOWN
        except (RunStopped, ApiError):
            return UNKNOWN
        if fresh.id != call.id:
            return UNKNOWN  # an answer about another call says nothing about this one
        if fresh.redacted_at is not None:
            return Settled.redacted(Event.DELETED if reached else Event.ALREADY_REDACTED, fresh)
        if not fresh.terminal:
            return Settled.failed(NO_LONGER_TERMINAL)
        return Settled.failed(cause)


def _planned(call: Call, agent: Agent, policy: str, now: datetime) -> PlannedCall:
    origin = call.age_origin
    age = int((now - origin).total_seconds()) if origin is not None else None
    start = api_timestamp(call.start_time) if call.start_time is not None else None
    return PlannedCall(call.id, agent.id, policy, start, age)


def run_counts(stats: RunStats) -> dict[str, Any]:
    """The `counts` of the `run_finished` line."""
    return {
        "agents": stats.agents,
        "agents_failed": stats.agents_failed,
        "scanned": stats.scanned,
        "due": stats.due,
        "outcomes": dict(sorted(stats.outcomes.items())),
        "skipped": dict(sorted(stats.skipped.items())),
        "kept": dict(sorted(stats.kept.items())),
        "recovered": dict(sorted(stats.recovered.items())),
        # Per deletion policy: calls due and their outcomes; and the calls a retention
        # rule held against it (the log has no line for a kept call, so only counts).
        "by_policy": {
            policy: {"due": stats.due_by_policy[policy], **dict(sorted(outcomes.items()))}
            for policy, outcomes in sorted(_policies_due(stats).items())
        },
        "held_by": {
            policy: dict(sorted(holders.items()))
            for policy, holders in sorted(stats.held_from.items())
        },
        **({"dropped": dict(sorted(stats.dropped.items()))} if stats.dropped else {}),
        # Calls listed per agent: the next run lists the largest first (run/sizes.py).
        **({"listed_by_agent": recorded(stats.listed_by_agent)} if stats.listed_by_agent else {}),
    }


def _policies_due(stats: RunStats) -> dict[str, Counter[str]]:
    """Every deletion policy with a call due or an outcome, and its outcomes."""
    policies = {policy: Counter(outcomes) for policy, outcomes in stats.by_policy.items()}
    for policy in stats.due_by_policy:
        policies.setdefault(policy, Counter())
    return policies

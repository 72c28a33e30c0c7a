"""`retention validate` and `retention explain`: the command logic behind the CLI flags.

The only module of this package that does I/O or talks to the API; the loader,
the matchers and the engine stay pure.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import click

from retention.api.ids import id_problem
from retention.api.models import Call
from retention.errors import ExitCode, FetchFailed, UserError
from retention.policy.describe import describe_policy, explain_lines, warnings
from retention.policy.load import PolicyError, ignored_message, load_policies
from retention.policy.match import Listed
from retention.settings import parse_now, resolve_api_key, resolve_base_url


def validate_command(paths: Sequence[Path]) -> int:
    """Print every policy in plain words and any warnings; exit 2 listing all problems.
    Directory entries that are not read are warned about either way."""
    ignored: list[Path] = []
    try:
        policy_set = load_policies(paths, ignored)
    except PolicyError as err:
        for path in ignored:
            click.echo(f"warning: {ignored_message(path)}", err=True)
        for problem in err.problems:
            click.echo(str(problem), err=True)
        count = len(err.problems)
        click.echo(f"{count} problem{'s' if count != 1 else ''} in the policy files", err=True)
        return ExitCode.BAD_INPUT
    for source in policy_set.sources:
        values = "" if source.values is None else f"  (value list: {source.values} values)"
        click.echo(f"{source.path}  sha256:{source.sha256[:16]}{values}")
    click.echo("")
    for policy in policy_set.policies:
        click.echo("\n".join(describe_policy(policy)))
    found = [ignored_message(path) for path in ignored] + warnings(policy_set)
    if found:
        click.echo("")
        for warning in found:
            click.echo(f"warning: {warning}")
    deletions = sum(1 for p in policy_set.policies if p.kind == "delete_after")
    files = sum(1 for s in policy_set.sources if s.values is None)
    lists = len(policy_set.sources) - files
    click.echo(
        f"\nvalid: {len(policy_set.policies)} policies ({deletions} deletion, "
        f"{len(policy_set.policies) - deletions} retention) from {files} "
        f"file{'s' if files != 1 else ''}"
        + (f" and {lists} value list{'s' if lists != 1 else ''}" if lists else "")
        + (f", {len(found)} warning{'s' if len(found) != 1 else ''}" if found else "")
    )
    return ExitCode.OK


def explain_command(
    call_id: str,
    policy_paths: Sequence[Path],
    *,
    now: str | None,
    base_url: str | None,
    api_key_file: Path | None,
) -> int:
    """Fetch one call and show how every policy sees it, and the final decision."""
    problem = id_problem(call_id)
    if problem is not None:  # refused before anything is read or sent
        raise UserError(f"not a usable call id: {problem}", where="CALL_ID")
    instant = parse_now(now)
    ignored: list[Path] = []
    policy_set = load_policies(policy_paths, ignored)  # bad policies: exit 2 before any request
    for path in ignored:
        click.echo(f"warning: {ignored_message(path)}", err=True)
    key = resolve_api_key(api_key_file)
    url = resolve_base_url(base_url)
    call, listed, note = anyio.run(_fetch, url, key, call_id)
    lines = explain_lines(policy_set, call, instant, listed)
    click.echo("\n".join([*lines[:2], f"            {note}", *lines[2:]]))
    return ExitCode.OK


async def _fetch(base_url: str, api_key: str, call_id: str) -> tuple[Call, Listed, str]:
    """The call; the agent a run lists it under (the one its `agent_id` names, with
    the agent's current name from GET /agents); and a note saying how it was found."""
    from retention.api.client import CartesiaClient
    from retention.api.errors import ApiError, AuthError, NotFound

    try:
        async with CartesiaClient(base_url=base_url, api_key=api_key) as client:
            call = await client.get_call(call_id)
            if not call.agent_id:
                # A run decides the call under the agent it lists it for, which the call
                # does not name: judge it as a call of no known agent (never by agent rules).
                note = "(the call names no agent_id: judged as listed under no known agent)"
                return call, Listed(""), note
            agents = await client.list_agents()
            agent = next((a for a in agents if a.id == call.agent_id), None)
            if agent is None:
                note = "(the agent the call's agent_id names is not in GET /agents: no name)"
                return call, Listed(call.agent_id), note
            note = "(the agent the call's agent_id names, with its name from GET /agents)"
            return call, Listed(agent.id, agent.name or None), note
    except NotFound:
        raise UserError(f"no call with id {call_id}", where="explain") from None
    except AuthError as err:
        raise UserError(f"the API refused the credentials ({err})", where="explain") from None
    except ApiError as err:
        raise FetchFailed(f"could not read the call: {err}", where="explain") from None


def hash_phone_command(numbers: Sequence[str]) -> int:
    """Print the `sha256:` digest of each phone number, one per line, in order. `-` (or
    no argument) reads one number per line from stdin, keeping them out of shell history.
    A number that does not normalise is named by its position, never repeated."""
    from retention.policy.phones import RULES, digest, normalise

    given = list(numbers)
    if not given or given == ["-"]:
        text = sys.stdin.read()
        given = [line for line in text.splitlines() if line.strip() and line.strip()[0] != "#"]
        where = "stdin line"
    else:
        where = "NUMBER"
    if not given:
        raise UserError("no phone numbers given (as arguments, or one per line on stdin)")
    digests = []
    for position, text in enumerate(given, start=1):
        e164 = normalise(text)
        if e164 is None:
            raise UserError(f"{where} {position} is not an E.164 phone number: write it as {RULES}")
        digests.append(digest(e164))
    click.echo("\n".join(digests))
    return ExitCode.OK

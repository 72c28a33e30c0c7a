"""`retention validate` and `retention explain`: the command logic behind the CLI flags.

The only module of this package that does I/O or talks to the API; the loader,
the matchers and the engine stay pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import click

from retention.api.models import Call
from retention.errors import ExitCode, UserError
from retention.policy.describe import describe_policy, explain_lines, warnings
from retention.policy.load import PolicyError, load_policies
from retention.settings import parse_now, resolve_api_key, resolve_base_url


def validate_command(paths: Sequence[Path]) -> int:
    """Print every policy in plain words and any warnings; exit 2 listing all problems."""
    try:
        policy_set = load_policies(paths)
    except PolicyError as err:
        for problem in err.problems:
            click.echo(str(problem), err=True)
        count = len(err.problems)
        click.echo(f"{count} problem{'s' if count != 1 else ''} in the policy files", err=True)
        return ExitCode.BAD_INPUT
    for source in policy_set.sources:
        click.echo(f"{source.path}  sha256:{source.sha256[:16]}")
    click.echo("")
    for policy in policy_set.policies:
        click.echo("\n".join(describe_policy(policy)))
    found = warnings(policy_set)
    if found:
        click.echo("")
        for warning in found:
            click.echo(f"warning: {warning}")
    deletions = sum(1 for p in policy_set.policies if p.kind == "delete_after")
    click.echo(
        f"\nvalid: {len(policy_set.policies)} policies ({deletions} deletion, "
        f"{len(policy_set.policies) - deletions} retention) from {len(policy_set.sources)} "
        f"file{'s' if len(policy_set.sources) != 1 else ''}"
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
    instant = parse_now(now)
    policy_set = load_policies(policy_paths)  # bad policies: exit 2 before any request
    key = resolve_api_key(api_key_file)
    url = resolve_base_url(base_url)
    call, agent_name = anyio.run(_fetch, url, key, call_id)
    click.echo("\n".join(explain_lines(policy_set, call, instant, agent_name)))
    return ExitCode.OK


async def _fetch(base_url: str, api_key: str, call_id: str) -> tuple[Call, str | None]:
    """The call, and its agent's name from GET /agents when the call has none."""
    from retention.api.client import CartesiaClient
    from retention.api.errors import ApiError, AuthError, NotFound

    try:
        async with CartesiaClient(base_url=base_url, api_key=api_key) as client:
            call = await client.get_call(call_id)
            if call.agent_name is not None:
                return call, None
            agents = await client.list_agents()
            return call, next((a.name for a in agents if a.id == call.agent_id and a.name), None)
    except NotFound:
        raise UserError(f"no call with id {call_id}", where="explain") from None
    except AuthError as err:
        raise UserError(f"the API refused the credentials ({err})", where="explain") from None
    except ApiError as err:
        raise FetchFailed(f"could not read the call: {err}", where="explain") from None


class FetchFailed(UserError):
    """The API could not answer (5xx, retries exhausted): not bad input, so exit 1."""

    exit_code = ExitCode.SOME_FAILED

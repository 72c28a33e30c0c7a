"""Turn the `retention sandbox` flags into SandboxOptions (kept out of cli.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from retention.errors import UserError
from retention.sandbox.command import SandboxOptions, parse_now
from retention.sandbox.data import DatasetSpec
from retention.sandbox.faults import Behaviour, Faults


def options_from_flags(flags: Mapping[str, Any]) -> SandboxOptions:
    spec = DatasetSpec(
        seed=flags["seed"],
        agents=flags["agents"],
        calls=flags["calls"],
        now=parse_now(flags["now"]),
    )
    faults = Faults(
        rate=flags["rate"],
        max_in_flight=flags["max_in_flight"],
        latency_ms=flags["latency_ms"],
        jitter_ms=flags["jitter_ms"],
        error_rate=flags["error_rate"],
        drop_rate=flags["drop_rate"],
        malformed_rate=flags["malformed_rate"],
        duplicate_rate=flags["duplicate_rate"],
        stuck_cursor=flags["stuck_cursor"],
    )
    try:
        behaviour = Behaviour(
            nonterminal_delete_status=int(flags["nonterminal_delete_status"]),
            redelete_status=flags["redelete_status"],
        )
    except ValueError as err:
        raise UserError(str(err), where="--redelete-status") from None
    return SandboxOptions(
        host=flags["host"],
        port=flags["port"],
        spec=spec,
        faults=faults,
        behaviour=behaviour,
        api_key=flags["api_key"],
        allow_non_loopback=flags["allow_non_loopback"],
    )

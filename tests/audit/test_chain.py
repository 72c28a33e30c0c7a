"""The hash chain follows DESIGN.md's recipe, recomputed here with hashlib directly."""

from __future__ import annotations

import hashlib
import json

from retention.audit.chain import GENESIS_HASH, encode_line, seal


def _recipe(previous: str, line: dict[str, object]) -> str:
    body = {k: v for k, v in line.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((previous + text).encode("ascii")).hexdigest()


def test_chain_matches_the_design_recipe() -> None:
    first = seal(GENESIS_HASH, 1, {"ts": "2026-11-24T00:00:00Z", "run_id": "r", "event": "x"})
    second = seal(first["hash"], 2, {"ts": "2026-11-24T00:00:01Z", "run_id": "r", "event": "é"})
    assert first["hash"] == _recipe("0" * 64, first)
    assert second["hash"] == _recipe(first["hash"], second)
    assert second["seq"] == 2


def test_encoded_line_is_one_ascii_json_line_that_round_trips() -> None:
    sealed = seal(GENESIS_HASH, 1, {"event": "café", "run_id": "r", "ts": "t"})
    raw = encode_line(sealed)
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    raw.decode("ascii")
    assert json.loads(raw) == sealed

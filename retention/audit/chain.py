"""The audit log's hash chain, exactly as DESIGN.md defines it.

Each line's `hash` is SHA-256 (hex) over the previous line's `hash` (64 zeros for
the first line) followed by the line's canonical JSON without `hash`, i.e. the
bytes of ``json.dumps(line, sort_keys=True, separators=(",", ":"))``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

import msgspec

GENESIS_HASH: Final = "0" * 64


_SORTED: Final = msgspec.json.Encoder(order="sorted")


def canonical_json(record: Mapping[str, Any]) -> bytes:
    """``json.dumps(record, sort_keys=True, separators=(",", ":"))`` as ASCII bytes.

    msgspec writes the same bytes, several times faster, for a flat record of text and
    whole numbers (enum members and booleans included) in which nothing needed
    escaping; everything else (a float, a nested value, a quote, a control or
    non-ASCII character) goes through json.dumps itself.
    """
    if all(type(k) is str and isinstance(v, str | int) for k, v in record.items()):
        try:
            fast = _SORTED.encode(record)
        except (OverflowError, TypeError):  # an int past 64 bits; a mapping not a dict
            fast = b"\\"
        if b"\\" not in fast and b"\x7f" not in fast and fast.isascii():
            return fast
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode("ascii")


def canonical_bytes(line: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a line without its `hash` key (ASCII, sorted keys)."""
    return canonical_json({k: v for k, v in line.items() if k != "hash"})


def chain_hash(previous_hash: str, line: Mapping[str, Any]) -> str:
    """The `hash` a line must carry, given the previous line's `hash`."""
    digest = hashlib.sha256(previous_hash.encode("ascii"))
    digest.update(canonical_bytes(line))
    return digest.hexdigest()


def seal(previous_hash: str, seq: int, line: Mapping[str, Any]) -> dict[str, Any]:
    """Return the line with `seq` and `hash` added, ready to be written."""
    sealed = dict(line)
    sealed["seq"] = seq
    sealed.pop("hash", None)
    sealed["hash"] = chain_hash(previous_hash, sealed)
    return sealed


def encode_line(sealed: Mapping[str, Any]) -> bytes:
    """One JSONL line (with trailing newline) for a sealed record."""
    return canonical_json(sealed) + b"\n"

"""Signed audit logs built for the tests: keys from `audit keygen`, checkpoints sealed
onto the chain the way a run seals them, and the tampering done to them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retention.audit.chain import GENESIS_HASH, encode_line, seal
from retention.audit.signing import Signer, keygen, load_signer

CHECKPOINT_TS = "2026-11-05T00:00:00.000Z"


def make_key(directory: Path, name: str) -> tuple[Signer, Path]:
    """A fresh key pair on disk; the signer and the public key file."""
    private = directory / name
    public, _ = keygen(private)
    return load_signer(private), public


def signed_log(records: list[dict[str, Any]], checkpoints: dict[int, Signer]) -> list[bytes]:
    """Seal `records`, and a checkpoint by `checkpoints[i]` right after record i (0-based)."""
    lines: list[bytes] = []
    previous, seq = GENESIS_HASH, 0
    for index, record in enumerate(records):
        todo = [record]
        signer = checkpoints.get(index)
        for item in todo:
            seq += 1
            sealed = seal(previous, seq, item)
            previous = sealed["hash"]
            lines.append(encode_line(sealed))
        if signer is not None:
            point = signer.checkpoint(
                ts=CHECKPOINT_TS, run_id=record["run_id"], covers_seq=seq, covers_hash=previous
            )
            seq += 1
            sealed = seal(previous, seq, point)
            previous = sealed["hash"]
            lines.append(encode_line(sealed))
    return lines


def rechain(lines: list[bytes]) -> list[bytes]:
    """What an attacker who can write the file does after an edit: recompute every
    `seq` and `hash` and every checkpoint's `covers_hash`, keeping the signatures."""
    out: list[bytes] = []
    previous = GENESIS_HASH
    for seq, raw in enumerate(lines, 1):
        record = json.loads(raw)
        if record["event"] == "checkpoint":
            record["covers_hash"] = previous
        sealed = seal(previous, seq, record)
        previous = sealed["hash"]
        out.append(encode_line(sealed))
    return out

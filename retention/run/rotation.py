"""Rotating the audit log into numbered gzip segments, crash-safely, under the run's lock.

A rotation happens only where no line can be in flight: at the end of a run (after
its last line and last checkpoint) and in `retention audit rotate`, both holding the
log's lock. Its steps, each durable before the next:

1. with a signing key, a checkpoint is appended (a segment always ends on one);
2. the live file is compressed to `NAME.NNNNNN.gz.tmp`, fsync'd, renamed to
   `NAME.NNNNNN.gz`, and the directory fsync'd;
3. `NAME.state` is written (tmp, fsync, rename, directory fsync): the segment's
   number, digest and size, the chain's last `seq` and `hash`, the intents still open;
4. the live file is truncated and fsync'd; the next line chains on from the state.

Whatever step a crash interrupts, the next opening of the log (`settle` then
`finish_pending`, under the lock) completes or clears it without losing or repeating
a line: stray `.tmp` files are removed (the live file still holds their lines); a
segment renamed but with no state yet is checked byte for byte against the live file,
then its state is written and the live file truncated; a live file still holding the
lines of the last segment (crash before the truncate) is checked the same way, then
truncated. Anything else that does not match is refused (exit 2), never repaired.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from retention.audit.segments import (
    GZIP_ERRORS,
    RotationState,
    parse_segment_name,
    segment_path,
    state_path,
)
from retention.durable import fsync_dir, write_all
from retention.errors import UserError
from retention.log import get_logger

if TYPE_CHECKING:
    from retention.audit.signing import Signer
    from retention.audit.witness import Witness
    from retention.audit.writer import AuditLog

_log = get_logger(__name__)

FILE_MODE: Final = 0o600
_CHUNK: Final = 1 << 20
# Test hook: SIGKILL this process at the named step of a rotation (tests/run/test_rotation.py).
CRASH_ENV: Final = "RETENTION_TEST_CRASH_AT"
STEPS: Final = (
    "checkpoint",
    "segment_partial",
    "segment_written",
    "segment_renamed",
    "state_written",
    "state_renamed",
    "truncated",
)


class RotationError(UserError):
    """A rotation cannot be done, or an interrupted one cannot be completed safely (exit 2)."""


@dataclass(frozen=True, slots=True)
class Rotated:
    """What a rotation did."""

    segment: Path
    first_seq: int
    last_seq: int
    bytes_in: int  # the live file's size
    bytes_out: int  # the segment's size


def crash_point(step: str) -> None:
    """Die here, as a SIGKILL would, when a test asks for this step."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _write_file(path: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, FILE_MODE)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _same_content(segment: Path, fd: int) -> bool:
    """Whether the segment decompresses to exactly the bytes of the file `fd`."""
    offset = 0
    try:
        with gzip.open(segment, "rb") as unzipped:
            while chunk := unzipped.read(_CHUNK):
                if os.pread(fd, len(chunk), offset) != chunk:
                    return False
                offset += len(chunk)
    except GZIP_ERRORS:
        return False
    return offset == os.fstat(fd).st_size


def _first_seq(fd: int) -> int | None:
    """The `seq` of the file's first line (None: empty, or not a readable line)."""
    head = os.pread(fd, 4096, 0)
    line = head.split(b"\n", 1)[0]
    if not head:
        return None
    try:
        seq = json.loads(line).get("seq")
    except (ValueError, AttributeError):
        return None
    return seq if type(seq) is int else None


def _remove_strays(live: Path) -> None:
    """`.tmp` files a crash left: the live file still holds every line they held."""
    for name in os.listdir(live.parent):
        if not name.endswith(".tmp"):
            continue
        stem = name[: -len(".tmp")]
        parsed = parse_segment_name(stem)
        if stem == state_path(live).name or (parsed is not None and parsed[0] == live.name):
            os.unlink(live.parent / name)
            _log.warning("audit.rotation_tmp_removed", path=str(live.parent / name))


def settle(live: Path, fd: int, state: RotationState) -> int | None:
    """Before the start-up scan: clear or complete an interrupted rotation.

    Returns the number of a segment renamed before its state was written (crash
    after step 2): the caller scans the live file, then `finish_pending` completes it.
    """
    _remove_strays(live)
    size = os.fstat(fd).st_size
    pending = segment_path(live, state.segment + 1)
    if pending.exists():
        if size == 0 or not _same_content(pending, fd):
            raise RotationError(
                f"{pending.name} exists but its rotation state was never written, and it does "
                "not hold exactly the live file's lines; nothing was changed: compare them "
                "(zcat) and keep the one with every line",
                where=str(live),
            )
        return state.segment + 1
    if state.segment == 0:
        return None
    last = segment_path(live, state.segment)
    if last.exists() and _digest(last) != (state.segment_sha256, state.segment_bytes):
        raise RotationError(
            f"{last.name} is not the segment the rotation state records (its SHA-256 "
            "differs); check the log with `retention audit verify`",
            where=str(live),
        )
    first = _first_seq(fd) if size else None
    if first is not None and first <= state.last_seq:
        # Crash after the state, before the truncate: the live file is the last segment.
        if not last.exists() or not _same_content(last, fd):
            raise RotationError(
                f"the live file repeats seq {first} of {last.name} but does not match it; "
                "nothing was changed: check both with `retention audit verify`",
                where=str(live),
            )
        _truncate(fd)
        _log.warning("audit.rotation_completed", segment=str(last), step="truncate")
    return None


def _truncate(fd: int) -> None:
    os.ftruncate(fd, 0)
    crash_point("truncated")
    os.fsync(fd)


def _write_segment(live: Path, fd: int, number: int) -> tuple[Path, int]:
    """Step 2: the live file, compressed, as segment `number`; its final path and size."""
    final = segment_path(live, number)
    temporary = final.with_name(final.name + ".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    out = os.fdopen(os.open(temporary, flags, FILE_MODE), "wb")
    offset = 0
    with out:
        # No name and no time in the header: the same lines always make the same segment.
        with gzip.GzipFile(filename="", fileobj=out, mode="wb", compresslevel=6, mtime=0) as z:
            while chunk := os.pread(fd, _CHUNK, offset):
                z.write(chunk)
                offset += len(chunk)
                crash_point("segment_partial")
        out.flush()
        os.fsync(out.fileno())
    crash_point("segment_written")
    os.rename(temporary, final)
    fsync_dir(live.parent, strict=True)
    crash_point("segment_renamed")
    return final, offset


def _write_state(live: Path, state: RotationState) -> None:
    """Step 3: the state sidecar, atomically."""
    final = state_path(live)
    temporary = final.with_name(final.name + ".tmp")
    _write_file(temporary, state.to_json())
    crash_point("state_written")
    os.rename(temporary, final)
    fsync_dir(live.parent, strict=True)
    crash_point("state_renamed")


def _close_segment(log: AuditLog, number: int, segment: Path, first_seq: int) -> RotationState:
    """Steps 3 and 4, once segment `number` is on disk: state, then truncate."""
    assert log.fd is not None
    sha256, size = _digest(segment)
    scan = log.scan
    state = RotationState(
        segment=number,
        first_seq=first_seq,
        last_seq=scan.last_seq,
        last_hash=scan.last_hash,
        segment_sha256=sha256,
        segment_bytes=size,
        signed=scan.signed,
        open_intents=log.carried_intents(),
    )
    _write_state(log.resolved, state)
    _truncate(log.fd)
    log.rotated(state)
    return state


def finish_pending(log: AuditLog, number: int) -> None:
    """Complete a rotation whose segment was renamed before the crash (after the scan)."""
    first = log.state.last_seq + 1
    _close_segment(log, number, segment_path(log.resolved, number), first)
    _log.warning("audit.rotation_completed", segment=str(segment_path(log.resolved, number)))


def rotate(
    log: AuditLog, *, run_id: str, signer: Signer | None = None, witness: Witness | None = None
) -> Rotated | None:
    """Close the live file as the next segment (None when it holds no line)."""
    from retention.audit.signing import CHECKPOINT_EVENT
    from retention.audit.writer import utc_timestamp

    if log.fd is None or os.fstat(log.fd).st_size == 0:
        return None
    # This run's own lines are not in the start-up scan: read the file for what is open.
    scan = log.rescan()
    if scan.last_event != CHECKPOINT_EVENT:
        if signer is None and scan.signed:
            raise RotationError(
                "the log is signed and does not end on a checkpoint; give --signing-key "
                "so that the segment ends on one",
                where=str(log.path),
            )
        if signer is not None:
            record = signer.checkpoint(
                ts=utc_timestamp(),
                run_id=run_id,
                covers_seq=scan.last_seq,
                covers_hash=scan.last_hash,
            )
            lines = log.seal_records([record])
            log.write_lines(lines)
            if witness is not None:
                witness.record(scan.last_seq, lines[0])
    crash_point("checkpoint")
    first_seq = log.state.last_seq + 1
    number = log.state.segment + 1
    segment, bytes_in = _write_segment(log.resolved, log.fd, number)
    _close_segment(log, number, segment, first_seq)
    rotated = Rotated(segment, first_seq, scan.last_seq, bytes_in, segment.stat().st_size)
    _log.info(
        "audit.rotated",
        segment=str(segment),
        first_seq=rotated.first_seq,
        last_seq=rotated.last_seq,
        bytes=rotated.bytes_in,
        compressed=rotated.bytes_out,
    )
    return rotated


def rotate_command(path: Path, *, signing_key: Path | None, witness_dir: Path | None) -> int:
    """`retention audit rotate LOG`: under the log's lock, close it as the next segment."""
    import uuid

    from retention.audit.reader import AuditFileError
    from retention.audit.signing import load_signer
    from retention.audit.witness import Witness, WitnessError, WitnessWriteError, check_witness_dir
    from retention.audit.writer import AuditLog

    if witness_dir is not None and signing_key is None:
        raise WitnessError(
            "a witness keeps signed checkpoints: give --signing-key", where="--witness"
        )
    if witness_dir is not None:
        check_witness_dir(witness_dir)
    signer = load_signer(signing_key) if signing_key is not None else None
    if not path.is_file():
        raise AuditFileError("no such audit log", where=str(path))
    witness = Witness(witness_dir) if witness_dir is not None else None
    with AuditLog(path) as log:
        try:
            rotated = rotate(log, run_id=uuid.uuid4().hex, signer=signer, witness=witness)
        except WitnessWriteError as err:
            raise RotationError(f"witness: {err}", where="--witness") from None
    if rotated is None:
        print(f"nothing to rotate: {path} holds no line since the last rotation")
        return 0
    print(
        f"rotated {path} into {rotated.segment.name}: seq {rotated.first_seq}..{rotated.last_seq}, "
        f"{rotated.bytes_in} bytes, {rotated.bytes_out} compressed"
    )
    return 0

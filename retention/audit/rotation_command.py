"""`retention audit rotate LOG`: close the live audit log as its next segment, by hand."""

from __future__ import annotations

import uuid
from pathlib import Path

from retention.audit.reader import AuditFileError
from retention.audit.rotation import RotationError, rotate
from retention.audit.witness import Witness, WitnessWriteError, signer_and_witness
from retention.audit.writer import AuditLog


def rotate_command(path: Path, *, signing_key: Path | None, witness_dir: Path | None) -> int:
    """`retention audit rotate LOG`: under the log's lock, close it as the next segment."""
    signer = signer_and_witness(signing_key, witness_dir)
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

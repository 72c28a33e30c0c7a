"""The witness: each checkpoint also kept as its own small file, out of the log's reach.

`run --witness DIR` writes every checkpoint line it appends to
`DIR/checkpoint-<seq, 12 digits>.json` (the line's exact bytes), created exclusively:
a file is never overwritten, so a second checkpoint claiming the same `seq` fails
loudly. DIR is meant to be a place the job can add to but not rewrite (an S3 bucket
with Object Lock, another volume, another host). `audit verify --witness DIR` then
proves the log still holds every witnessed `seq` with its `hash`: a log cut short,
or rebuilt after an edit, fails naming the first missing checkpoint.

A witness file carries what its checkpoint line carries: `seq`, `hash`, the run id,
the time, the key fingerprint and the signature; never a call id.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from retention.audit.events import Event
from retention.audit.signing import Signer, load_signer
from retention.durable import fsync_dir
from retention.errors import UserError

WITNESS_MODE: Final = 0o644
_NAME: Final = re.compile(r"checkpoint-(\d{12})\.json")
_HEX64: Final = re.compile(r"[0-9a-f]{64}")


class WitnessError(UserError):
    """The witness directory cannot be used, or holds a file that is not a checkpoint."""


class WitnessWriteError(Exception):
    """A checkpoint could not be witnessed mid-run (the run stops: evidence is owed)."""


def witness_name(seq: int) -> str:
    return f"checkpoint-{seq:012d}.json"


def _reason(err: OSError) -> str:
    return os.strerror(err.errno) if err.errno else type(err).__name__


def signer_and_witness(signing_key: Path | None, witness: Path | None) -> Signer | None:
    """`--signing-key` and `--witness` checked together, before any work: a witness needs
    a key, and its directory must take files (exit 2). The loaded signer, if any."""
    if witness is not None and signing_key is None:
        raise WitnessError(
            "a witness keeps signed checkpoints: give --signing-key", where="--witness"
        )
    if witness is not None:
        check_witness_dir(witness)
    return load_signer(signing_key) if signing_key is not None else None


def check_witness_dir(directory: Path, flag: str = "--witness") -> None:
    """Fail before any work when the witness directory cannot take files (exit 2)."""
    where = f"{flag} {directory}"
    if not directory.is_dir():
        raise WitnessError("no such directory (create it first)", where=where)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise WitnessError("the directory is not writable by this user", where=where)


@dataclass(frozen=True)
class Witness:
    directory: Path

    def record(self, seq: int, line: bytes) -> Path:
        """Write one checkpoint line as its own file, exclusively, durably."""
        path = self.directory / witness_name(seq)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, WITNESS_MODE)
        except FileExistsError:
            raise WitnessWriteError(
                f"the witness already holds {path}: another log (or a rebuilt one) "
                f"claimed seq {seq}; give each log its own witness directory"
            ) from None
        except OSError as err:
            raise WitnessWriteError(f"cannot write {path} ({_reason(err)})") from None
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as err:
            raise WitnessWriteError(f"cannot write {path} ({_reason(err)})") from None
        finally:
            os.close(fd)
        fsync_dir(self.directory)
        return path


@dataclass(frozen=True, slots=True)
class Witnessed:
    seq: int
    hash: str
    path: Path


def read_witness(directory: Path) -> list[Witnessed]:
    """Every witnessed checkpoint, by `seq`. One small record per checkpoint."""
    where = f"--witness {directory}"
    if not directory.is_dir():
        raise WitnessError("no such directory", where=where)
    found: list[Witnessed] = []
    try:
        names = os.listdir(directory)
    except OSError as err:
        raise WitnessError(f"cannot list it ({_reason(err)})", where=where) from None
    for name in names:
        match = _NAME.fullmatch(name)
        if match is None:
            continue  # other files (an S3 sync's own markers) are not ours to judge
        path = directory / name
        try:
            record = json.loads(path.read_bytes())
        except (OSError, ValueError):
            raise WitnessError("cannot be read as a checkpoint line", where=str(path)) from None
        seq, digest = (
            (record.get("seq"), record.get("hash")) if isinstance(record, dict) else (0, 0)
        )
        if (
            not isinstance(record, dict)
            or record.get("event") != Event.CHECKPOINT
            or type(seq) is not int
            or seq != int(match.group(1))
            or not isinstance(digest, str)
            or not _HEX64.fullmatch(digest)
        ):
            raise WitnessError(
                "is not a checkpoint line whose seq matches its name", where=str(path)
            )
        found.append(Witnessed(seq, digest, path))
    found.sort(key=lambda item: item.seq)
    return found

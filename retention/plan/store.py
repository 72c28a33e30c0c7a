"""The plan file: one SQLite database, written once, then only read.

Layout (format 1):

    header(key TEXT PRIMARY KEY, value TEXT)        -- JSON values
    calls(call_id TEXT UNIQUE, agent_id, policy, start_time, age_seconds)

`calls` keeps SQLite's rowid (1..n, dense) next to the unique index on `call_id`: a
lookup by id is one index probe, and the rowid lets `apply` remember which planned
calls it saw in a bitmap of n bits (flat memory, where a set of ids would grow).

Integrity. The header's `content_sha256` is the SHA-256 of every header entry but
itself and every call row, in key and call-id order (`content_digest`). `open_plan`
recomputes it, streaming, and refuses a plan whose bytes no longer say what was
written. That catches an edit, not a forger who recomputes the digest: the pin
against that is the digest of the whole file (`file_sha256`), printed by `plan` and
checked by `apply --expect-sha256`.

Writing. Rows are inserted in batches into a temporary file beside the target, the
digest is stored, the file is synced, made read-only (0444) and renamed into place,
and the directory synced: a plan is complete or absent, never half-written. An
existing file is never replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from retention.durable import fsync_dir
from retention.errors import UserError
from retention.timestamps import as_utc

FORMAT: Final = 1
BATCH: Final = 5000  # rows per executemany: memory stays bounded by this
_CHUNK: Final = 1 << 20
_SCHEMA: Final = (
    "CREATE TABLE header (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE calls (call_id TEXT NOT NULL UNIQUE, agent_id TEXT NOT NULL,"
    " policy TEXT NOT NULL, start_time TEXT, age_seconds INTEGER)",
)
DIGEST_KEY: Final = "content_sha256"


class PlanError(UserError):
    """A plan cannot be written, read or trusted (exit 2)."""


@dataclass(frozen=True, slots=True)
class PlannedCall:
    call_id: str
    agent_id: str
    policy: str
    start_time: str | None  # RFC 3339, as the API gave it
    age_seconds: int | None


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of the file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_digest(db: sqlite3.Connection) -> str:
    """What `content_sha256` must be: the header (but itself) and every row, streamed."""
    digest = hashlib.sha256(b"retention-plan/1\n")
    for key, value in db.execute("SELECT key, value FROM header ORDER BY key"):
        if key != DIGEST_KEY:
            digest.update(_frame([key, value]))
    rows = db.execute(
        "SELECT call_id, agent_id, policy, start_time, age_seconds FROM calls ORDER BY call_id"
    )
    for row in rows:
        digest.update(_frame(list(row)))
    return digest.hexdigest()


def _frame(values: list[Any]) -> bytes:
    return json.dumps(values, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


class PlanWriter:
    """Collects the due calls of a `plan` run; `commit` publishes the file atomically."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.temp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        self._db: sqlite3.Connection | None = None
        self._batch: list[tuple[Any, ...]] = []
        self.rows = 0

    def open(self) -> None:
        """Before the run: a target that exists, or a directory we cannot write, is refused."""
        if self.target.exists() or self.target.is_symlink():
            raise PlanError(
                "already exists; a plan is never overwritten: choose a new file",
                where=f"--out {self.target}",
            )
        try:
            db = sqlite3.connect(self.temp, isolation_level=None)
        except sqlite3.Error as err:
            raise PlanError(f"cannot create a plan here ({err})", where="--out") from None
        self._db = db
        db.execute("PRAGMA journal_mode=OFF")  # a temp file: atomicity comes from the rename
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN")
        for statement in _SCHEMA:
            db.execute(statement)

    def add(self, call: PlannedCall) -> None:
        self._batch.append(
            (call.call_id, call.agent_id, call.policy, call.start_time, call.age_seconds)
        )
        if len(self._batch) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        assert self._db is not None
        if self._batch:
            # OR IGNORE: a call listed twice (a list shifting under the run) is planned once.
            self._db.executemany("INSERT OR IGNORE INTO calls VALUES (?, ?, ?, ?, ?)", self._batch)
            self._batch.clear()

    def commit(self, header: Mapping[str, Any]) -> str:
        """Store the header and digest, sync, make read-only, rename. Returns the file's sha256."""
        db = self._db
        assert db is not None
        self._flush()
        (self.rows,) = db.execute("SELECT count(*) FROM calls").fetchone()
        entries = {**header, "calls": self.rows}
        db.executemany(
            "INSERT INTO header VALUES (?, ?)",
            [(key, json.dumps(value, sort_keys=True)) for key, value in entries.items()],
        )
        db.execute("INSERT INTO header VALUES (?, ?)", (DIGEST_KEY, json.dumps(content_digest(db))))
        db.execute("COMMIT")
        db.close()
        self._db = None
        fd = os.open(self.temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(self.temp, 0o444)
        try:
            os.link(self.temp, self.target)  # never replaces: fails if the target exists now
        except FileExistsError:
            self.discard()
            raise PlanError(
                "appeared during the run; not replaced", where=str(self.target)
            ) from None
        self.temp.unlink()
        fsync_dir(self.target.parent)
        return file_sha256(self.target)

    def discard(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        with contextlib.suppress(OSError):
            self.temp.unlink()


@dataclass
class Plan:
    """An opened, verified plan. Membership is one indexed lookup; `seen` is a bitmap."""

    path: Path
    sha256: str
    header: dict[str, Any]
    total: int
    db: sqlite3.Connection
    seen: bytearray = field(default_factory=bytearray)

    @property
    def plan_id(self) -> str:
        return str(self.header.get("plan_id", ""))

    @property
    def created(self) -> datetime:
        return _instant(self.header.get("created"), self.path)

    def lookup(self, call_id: str) -> tuple[int, str] | None:
        """The planned call's rowid (1..n) and policy; None when the plan does not hold it."""
        row = self.db.execute(
            "SELECT rowid, policy FROM calls WHERE call_id = ?", (call_id,)
        ).fetchone()
        return (int(row[0]), str(row[1])) if row is not None else None

    def mark(self, rowid: int) -> bool:
        """Note that the planned call `rowid` was listed; False if it already was."""
        index, bit = divmod(rowid - 1, 8)
        if not 0 <= index < len(self.seen):
            return False
        if self.seen[index] & (1 << bit):
            return False
        self.seen[index] |= 1 << bit
        return True

    @property
    def unseen(self) -> int:
        """Planned calls not listed by this run (gone since the plan)."""
        return self.total - sum(byte.bit_count() for byte in self.seen)

    def calls(self) -> Iterator[PlannedCall]:
        query = "SELECT call_id, agent_id, policy, start_time, age_seconds FROM calls"
        for row in self.db.execute(query + " ORDER BY call_id"):
            yield PlannedCall(*row)

    def close(self) -> None:
        self.db.close()


def _instant(value: Any, path: Path) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise PlanError("its header has no valid `created` time", where=str(path)) from None
    return as_utc(moment)


def open_plan(path: Path) -> Plan:
    """Open a plan read-only and check it: format, schema, and its content digest."""
    where = str(path)
    if not path.is_file():
        raise PlanError("no such plan file", where=where)
    sha = file_sha256(path)
    uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as err:
        raise PlanError(f"cannot open the plan ({err})", where=where) from None
    try:
        header = {
            key: json.loads(value) for key, value in db.execute("SELECT key, value FROM header")
        }
        if header.get("format") != FORMAT:
            raise PlanError(f"not a plan of format {FORMAT}", where=where)
        stored = header.get(DIGEST_KEY)
        if stored != content_digest(db):
            raise PlanError(
                "the plan's content does not match its digest: it was changed after it was "
                "written; make a new plan",
                where=where,
            )
        (total,) = db.execute("SELECT count(*) FROM calls").fetchone()
        (top,) = db.execute("SELECT coalesce(max(rowid), 0) FROM calls").fetchone()
        if top != total:  # the writer numbers calls 1..n; the seen-bitmap is sized by it
            raise PlanError(
                "its calls are not numbered 1..n: not a plan this tool wrote", where=where
            )
    except PlanError:
        db.close()
        raise
    except (sqlite3.Error, ValueError, TypeError) as err:
        db.close()
        raise PlanError(
            f"not a readable plan ({type(err).__name__}): damaged or not a plan file",
            where=where,
        ) from None
    return Plan(path, sha, header, int(total), db, bytearray((int(total) + 7) // 8))

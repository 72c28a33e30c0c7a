"""Files: writing them so that they survive a crash (whole writes, durable directory
entries), and reading a small input file whatever the path turns out to be."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Final

# A FIFO never blocks the open, a terminal never becomes ours.
_READ_FLAGS: Final = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class SmallFileError(Exception):
    """Why an input file was not read, in words that show none of its content."""


class MissingFile(SmallFileError):
    """No such file, or a symlink to none."""


def _limit_words(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"


def read_small_file(path: Path, limit: int, *, directory: str = "a directory") -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them. Anything else
    (missing, a broken symlink or a loop, a directory, a FIFO, socket or device, too
    large, unreadable) raises SmallFileError, at once: nothing blocks, nothing larger
    than `limit` is held. `directory`: the words for a directory found there."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        if path.is_symlink():
            raise MissingFile("a broken symlink (its target does not exist)") from None
        raise MissingFile("no such file") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise SmallFileError("a symlink loop") from None
        raise SmallFileError(f"cannot read: {err.strerror or err}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise SmallFileError(directory)
        if not stat.S_ISREG(mode):
            raise SmallFileError("not a regular file (a FIFO, socket or device?)")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise SmallFileError(f"cannot read: {err.strerror or err}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise SmallFileError(f"larger than {_limit_words(limit)}")
    return data


def write_all(fd: int, data: bytes) -> None:
    """Write every byte: a regular file takes it in one write; loop only for a short one."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(directory: Path, *, strict: bool = False) -> None:
    """Make a new or renamed file's directory entry durable. Best effort unless `strict`,
    where a step's safety depends on it (rotation), and a failure is raised."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        if strict:
            raise
        return
    try:
        os.fsync(fd)
    except OSError:
        if strict:
            raise
    finally:
        os.close(fd)


def replace_text(path: Path, text: str) -> None:
    """Write `path` whole or not at all: a sibling temporary file renamed over it.
    Raises OSError; the caller names the flag or file in its own error."""
    temp = temp_path(path)
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def temp_path(path: Path) -> Path:
    """The sibling `replace_text` writes before its rename (a hidden `.NAME.tmp`)."""
    return path.with_name(f".{path.name}.tmp")

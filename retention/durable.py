"""Writing files so that they survive a crash: whole writes, and durable directory entries."""

from __future__ import annotations

import os
from pathlib import Path


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

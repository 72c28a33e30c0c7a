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

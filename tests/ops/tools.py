"""Real operator tools the ops tests run: found on PATH, or skipped locally.

Under CI (`CI=1` or `RETENTION_CI=1`, set by .ci/run, which installs them) a missing
tool is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return any(os.environ.get(name, "") not in ("", "0") for name in ("CI", "RETENTION_CI"))


def need_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} not found (Debian package {package})"
    if in_ci():
        pytest.fail(f"{message}: .ci/run should have installed it")
    pytest.skip(message)

"""Shared by the plan tests: the sandbox serving a module's `app` over loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from retention.sandbox import SandboxApp
from tests.e2e.support import sandbox


@pytest.fixture(scope="module")
def url(app: SandboxApp) -> Iterator[str]:
    with sandbox(app) as base_url:
        yield base_url

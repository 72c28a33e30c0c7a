"""The HTML report in a real browser: Debian's headless Chromium, offline, parses the
page (its DOM shows the tables and charts, and no element an agent's name carried),
prints it to PDF and screenshots it; the screenshot is the expected size and not
blank. With RETENTION_CI=1 a missing browser fails the test instead of skipping it."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import Workspace, run_cli, sandbox
from tests.run.htmlpage import Page
from tests.run.rewrite import Rewriting
from tests.run.test_html_report import HOSTILE, POLICIES, app  # noqa: F401 (a fixture)

WIDTH, HEIGHT = 1200, 3000
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    # Nothing may be fetched: every host name resolves to nowhere.
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("RETENTION_CI") == "1":
            pytest.fail("chromium is missing (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def browse(page: Path, tmp: Path, *actions: str) -> str:
    result = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp / 'profile'}",
            *actions,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and the rows of an 8-bit RGB(A) PNG, still filtered: enough to tell
    a blank page (every row filters to one repeated byte) from one with content."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6)
    raw = zlib.decompress(idat)
    stride = 1 + width * (3 if colour == 2 else 4)
    return width, height, [raw[i * stride : (i + 1) * stride] for i in range(height)]


@pytest.fixture(scope="module")
def report(app: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    tmp = tmp_path_factory.mktemp("browser")
    space = Workspace(tmp)
    space.policies.write_text(POLICIES)
    victim = app.dataset.agents()[0].id

    def rename(path: str, body: dict[str, Any]) -> dict[str, Any]:
        for agent in body.get("summaries", []) if path == "/agents" else []:
            agent["name"] = HOSTILE if agent["id"] == victim else agent["name"]
        return body

    with pytest.MonkeyPatch.context() as patch, sandbox(Rewriting(app, rename)) as url:
        capture = _Capture()
        outcome = run_cli(capture, patch, space, url, "--report", str(space.report("html")))  # type: ignore[arg-type]
    assert outcome.code == 0, outcome.err
    return space.report("html")


class _Capture:
    """What run_cli reads of pytest's capsys, for a module-scoped fixture."""

    def readouterr(self) -> Any:
        return type("Captured", (), {"out": "", "err": ""})()


def test_chromium_parses_the_page_offline_with_its_tables_and_charts(
    report: Path, tmp_path: Path
) -> None:
    dom = browse(report, tmp_path, "--dump-dom")
    ours, theirs = Page(report.read_text()), Page(dom)
    assert theirs.tables.keys() == ours.tables.keys()
    assert {"policy", "region", "agent", "ages", "policies", "forecast"} <= theirs.tables.keys()
    for name, table in ours.tables.items():
        assert theirs.tables[name].rows == table.rows, name
    assert {n: theirs.chart(n) for n in theirs.charts} == {n: ours.chart(n) for n in ours.charts}
    assert theirs.tags["img"] == 0 and theirs.tags["script"] == 0
    assert HOSTILE in theirs.text


def test_the_screenshot_has_the_expected_size_and_is_not_blank(
    report: Path, tmp_path: Path
) -> None:
    shot = tmp_path / "report.png"
    browse(report, tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}")
    width, height, rows = png_pixels(shot)
    assert (width, height) == (WIDTH, HEIGHT)
    inked = sum(1 for row in rows[::10] if len(set(row[1:])) > 2)
    assert inked > HEIGHT // 10 // 3  # content all down the page, not one line


def test_the_page_prints_to_pdf(report: Path, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    browse(report, tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    text = pdf.read_bytes()
    assert text.startswith(b"%PDF") and text.count(b"/Type /Page") >= 2

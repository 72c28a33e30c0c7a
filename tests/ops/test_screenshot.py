"""`docs/screenshot.sh` remakes the README's picture of the demo's HTML report: it
runs the demo, renders `run.html` in headless Chromium and writes a PNG of the
expected size, with content all down the page, under the README's size budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.run.test_html_browser import chromium, png_pixels

ROOT = Path(__file__).resolve().parents[2]
SIZE = (1000, 2600)  # the script's --window-size


@pytest.mark.slow
def test_the_script_makes_the_readme_s_screenshot(tmp_path: Path) -> None:
    chromium()  # skipped (failed under RETENTION_CI=1) without the browser
    out = tmp_path / "shot.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARTESIA_", "RETENTION_"))}
    env.update(PYTHON=sys.executable, TMPDIR=str(tmp_path))
    done = subprocess.run(
        [str(ROOT / "docs" / "screenshot.sh"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"wrote {out}"
    width, height, rows = png_pixels(out)
    assert (width, height) == SIZE
    inked = sum(1 for row in rows[::10] if len(set(row[1:])) > 2)
    assert inked > height // 10 // 3
    assert out.stat().st_size < 300_000
    committed = ROOT / "docs" / "run-report.png"
    assert png_pixels(committed)[:2] == SIZE and committed.stat().st_size < 300_000
    assert "](docs/run-report.png)" in (ROOT / "README.md").read_text()

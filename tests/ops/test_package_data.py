"""The wheel (what `pip install .` and the Docker image install) carries the files the
package reads at run time: the HTML reports' templates and the example policies."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def build_wheel(tmp_path: Path) -> zipfile.ZipFile:
    """The wheel as the Dockerfile builds it (no deps, the installed setuptools), from a
    copy of the sources so the checkout gets no build/ or egg-info."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "policies", source / "policies", ignore=ignore)
    shutil.copytree(ROOT / "retention", source / "retention", symlinks=True, ignore=ignore)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet"]
    subprocess.run(
        [*pip, "--wheel-dir", str(wheels), str(source)],
        check=True,
        capture_output=True,
    )
    [wheel] = wheels.glob("cartesia_retention-*.whl")
    return zipfile.ZipFile(wheel)


@pytest.mark.slow
def test_the_wheel_carries_every_template_and_example_policy(tmp_path: Path) -> None:
    templates = sorted(p.name for p in (ROOT / "retention" / "templates").iterdir())
    assert {"page.html", "macros.html", "run_report.html"} <= set(templates)
    policies = sorted(
        p.relative_to(ROOT / "policies").as_posix()
        for p in (ROOT / "policies").rglob("*")
        if p.suffix in (".yaml", ".yml")
    )
    assert policies
    with build_wheel(tmp_path) as wheel:
        names = set(wheel.namelist())
    missing = [t for t in templates if f"retention/templates/{t}" not in names]
    missing += [p for p in policies if f"retention/example_policies/{p}" not in names]
    assert not missing

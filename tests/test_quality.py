"""The code stays strictly typed and lint-clean: mypy --strict and ruff, as configured in pyproject."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("tool, args", [("mypy", []), ("ruff", ["check", "auditor", "tests", "migrations", "bench"])])
def test_static_checks_pass(tool: str, args: list[str]) -> None:
    command = shutil.which(tool, path=str(Path(sys.executable).parent))
    assert command, f"{tool} is part of the [test] extra"
    done = subprocess.run([command, *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

"""The audit's progress bar: files checked per second, and bytes verified per second for deep checks."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from auditor import clikit


def test_the_progress_bar_shows_files_and_bytes_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(clikit, "err", Console(file=screen, force_terminal=True, width=160))
    with clikit.progress_bar() as update:
        assert update is not None
        for step in range(1, 6):
            update("validate", step * 10, 50)
            update("bytes", step * 20_000_000, 100_000_000)
            time.sleep(0.05)
    shown = screen.getvalue()
    assert "files/s" in shown and "MB/s" in shown and "100.0 MB" in shown

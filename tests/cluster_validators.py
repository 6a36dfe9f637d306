"""Validators for the cluster tests, imported inside the validation processes of Dask workers."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from auditor.validate import FileVerdict, validate_data_file
from tests.sandbox_validators import allocate, segfault

MARKS = "AUDITOR_TEST_MARKS"  # a folder: each check leaves a file named after its Dask worker's pid


def misbehave(source: Any, name: str, *, deep: bool) -> FileVerdict:
    """Segfaults on bytes that contain `crash`, exhausts memory on `hoard`, else validates."""
    if b"hoard" in source.read_range(0, source.size):
        return allocate(source, name, deep=deep)
    return segfault(source, name, deep=deep)


def slow(source: Any, name: str, *, deep: bool) -> FileVerdict:
    """Validates after leaving a mark and taking a while, so a test can kill a process mid-audit."""
    marks = os.environ.get(MARKS)
    if marks:
        (Path(marks) / f"{os.getppid()}-{uuid.uuid4().hex[:8]}").touch()
    time.sleep(0.25)
    return validate_data_file(source, name, deep=deep)

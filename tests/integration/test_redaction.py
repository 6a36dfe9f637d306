"""URLs are redacted wherever they are printed, including where a library echoes part of one."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.storage.base import scrub
from tests.conftest import Tree
from tests.integration.test_audit_tree import WEB, build_defect_tree

PASSWORD = "hunter2-restore-target-pw"


@pytest.mark.parametrize(
    "target",
    [
        f"s3://AKIAEXAMPLE:{PASSWORD}@bucket/restore/",  # s3fs takes "KEY:SECRET@bucket" for the bucket and says so
        f"sftp://alice:{PASSWORD}@127.0.0.1:1/restore/",
        f"ftp://bob:{PASSWORD}@127.0.0.1:1/restore/",
    ],
    ids=["s3", "sftp", "ftp"],
)
def test_restore_download_never_prints_the_targets_password(tree: Tree, tmp_path: Path, target: str) -> None:
    if target.startswith("s3") and importlib.util.find_spec("s3fs") is None:
        pytest.skip("s3fs is not installed")
    config = build_defect_tree(tree, tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    runner = CliRunner()
    assert runner.invoke(main, ["audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z", "--format", "json"]).exit_code == 1

    result = runner.invoke(main, ["restore", WEB, "--at", "2026-11-27T05:00:00Z", "--config", str(config), "--download", target])

    assert result.exit_code == 2, result.output  # the copy fails: nothing listens there
    assert PASSWORD not in result.output and "REDACTED" in result.output, result.output


@pytest.mark.parametrize(
    "text",
    [
        f"cannot open sftp://alice:{PASSWORD}@host:22/x",
        f"Bucket create failed 'AKIAEXAMPLE:{PASSWORD}@bucket': Parameter validation failed",
        f"connect to (bob:{PASSWORD}@db.example.com) failed",
        f"https://acct.blob.core.windows.net/c?sv=2024&sig={PASSWORD}",
    ],
)
def test_scrub_removes_passwords_in_any_url_shape(text: str) -> None:
    assert PASSWORD not in scrub(text)

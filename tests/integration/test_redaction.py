"""URLs are redacted wherever they are printed, including where a library echoes part of one."""

from __future__ import annotations

import gzip
import importlib.util
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.config import settings_from_mapping
from auditor.storage.base import remember_secret_options, scrub
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


GOOGLE_TOKEN = "ya29.a0Af-raw-oauth-token-zzLEAK789"


def test_scrub_removes_credentials_after_their_names_and_passwords_with_slashes() -> None:
    """gcsfs quotes the token-info URL it called, raw token and all, when that call fails; botocore quotes a custom
    endpoint whole; an AWS secret key holds slashes, where the user-info pattern stopped."""
    gcsfs_error = f"ConnectionError: HTTPSConnectionPool(host='oauth2.googleapis.com', port=443): Max retries exceeded with url: /tokeninfo?access_token={GOOGLE_TOKEN} (Caused by NameResolutionError)"
    assert GOOGLE_TOKEN not in scrub(gcsfs_error) and "access_token=REDACTED" in scrub(gcsfs_error)
    botocore_error = "ValueError: Invalid endpoint: Custom endpoint `http://u:wJalr/K7MDENG+bPx@127.0.0.1:1` was not a valid URI"
    assert "wJalr/K7MDENG+bPx" not in scrub(botocore_error) and "http://u:REDACTED@127.0.0.1:1" in scrub(botocore_error)
    assert scrub("retry at 10:30 from alice@example.com") == "retry at 10:30 from alice@example.com"  # no credential: left as it is


def test_a_credential_a_library_echoes_in_its_own_words_is_replaced_wherever_it_appears() -> None:
    """Patterns miss a token quoted bare. Every value a reference gave, and every credential option of a store, is
    replaced in any text scrubbed after it is known."""
    bare = "the-bare-credential-zzLEAK-4411"
    assert bare in scrub(f"refused: {bare}")
    remember_secret_options({"account_key": bare, "key_filename": "/home/u/.ssh/id_ed25519", "region": "eu-west-1"})
    assert scrub(f"refused: {bare} with /home/u/.ssh/id_ed25519 in eu-west-1") == "refused: REDACTED with /home/u/.ssh/id_ed25519 in eu-west-1"
    remember_secret_options({"password": "postgres"})  # a word: replaced as a whole token only
    assert scrub("postgresql+psycopg://svc-reader-5512:postgres@db-7731/postgres_catalog") == "postgresql+psycopg://svc-reader-5512:REDACTED@db-7731/postgres_catalog"
    referenced = "another-referenced-value-zzLEAK-8812"
    settings_from_mapping(
        {"destinations": [{"name": "b", "url": "file:///tmp/x", "options": {"anything": "${env:REF}"}}],
         "exports": [{"name": "web", "destination": "b", "datasets": ["ds1"], "format": "json", "schedule": {"timeUnit": "day", "interval": 1, "startTime": 0}}]},
        {"REF": referenced},
    )
    assert scrub(f"… {referenced} …") == "… REDACTED …"


def test_a_referenced_endpoint_with_a_password_stays_out_of_report_catalog_and_evidence(tmp_path: Path) -> None:
    """An endpoint URL given by reference, its password holding a slash, was quoted whole by botocore: into the
    report's errors, the catalog's audit summary and the evidence page."""
    if importlib.util.find_spec("s3fs") is None:
        pytest.skip("s3fs is not installed")
    password, secret_key = "EP-pass/word+zzLEAK-5150", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzLEAK"
    config = tmp_path / "auditor.toml"
    config.write_text(
        f"""[catalog]
url = "sqlite:///{tmp_path / 'c.db'}"
[validation]
isolate = false
[[destinations]]
name = "s3"
url = "s3://aep-backups/aep"
options = {{ endpoint_url = "${{env:EP}}", key = "AKIAEXAMPLE", secret = "${{env:S3_SECRET}}", retries = 0, connect_timeout = 1, read_timeout = 1 }}
[[exports]]
name = "web"
destination = "s3"
datasets = ["5ef3e3259ad2a1191ab7dd7d"]
format = "json"
schedule = {{ timeUnit = "day", interval = 1, startTime = "2026-11-25T00:00:00Z" }}
"""
    )
    env = {"EP": f"http://u:{password}@127.0.0.1:1", "S3_SECRET": secret_key}
    runner = CliRunner(env=env)
    result = runner.invoke(main, ["audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z", "--format", "json"])
    assert result.exit_code == 3 and "REDACTED" in result.output, result.output  # the store cannot be opened: unknown, and said so
    page = runner.invoke(main, ["audit", "--config", str(config), "--as-of", "2026-11-28T12:00:00Z", "--format", "html", "--output", str(tmp_path / "e.html")])
    assert page.exit_code == 3, page.output
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("c.db*"))
    with sqlite3.connect(tmp_path / "c.db") as db:  # reports are kept gzip-compressed
        bodies = [gzip.decompress(body) for (body,) in db.execute("select report from audits where report is not null")]
    assert len(bodies) == 2 and b"REDACTED" in bodies[0]
    for where in (result.output, (tmp_path / "e.html").read_text(), stored.decode("latin-1"), b"".join(bodies).decode("utf-8", "replace")):
        assert password not in where and "EP-pass" not in where and secret_key not in where

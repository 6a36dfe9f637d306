"""The wheel ships the top-level migrations/ as auditor.migrations, so `pip install .` users can run `auditor db upgrade`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# what the build does not read; copied elsewhere, the build leaves the work tree alone and sees no stale build/
NOT_BUILT = {".git", ".venv", "node_modules", "build", "dist", "tests", "bench", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    at_root = Path(folder) == ROOT
    return {n for n in names if n == "__pycache__" or n.endswith(".egg-info") or (at_root and n in NOT_BUILT)}


def _wheel_names(tmp_path: Path) -> set[str]:
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=_ignore)
    # built the way `pip install .` builds it: in an isolated environment with the build-system requirements
    # (the project's venv has setuptools without bdist_wheel, so --no-build-isolation cannot build a wheel there)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path / "wheel"), str(source)],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = (tmp_path / "wheel").glob("export_auditor-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_wheel_ships_migrations_as_auditor_migrations(tmp_path: Path) -> None:
    names = _wheel_names(tmp_path)

    migrations = {n for n in names if n.startswith("auditor/migrations/")}
    assert {"auditor/migrations/__init__.py", "auditor/migrations/env.py", "auditor/migrations/script.py.mako"} <= migrations
    assert "auditor/migrations/versions/0001_initial_catalog.py" in migrations
    # every revision in the source folder is in the wheel
    revisions = {f"auditor/migrations/versions/{p.name}" for p in (ROOT / "migrations" / "versions").glob("*.py")}
    assert revisions <= migrations

    # no top-level `migrations` package (it would land in site-packages as a package of that generic name)
    assert not any(n.startswith("migrations/") for n in names)

    # packages are listed by hand in pyproject.toml (package-dir and packages.find do not mix): nothing under auditor/ is left out
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "auditor").rglob("*") if p.suffix in {".py", ".html"} and "__pycache__" not in p.parts}
    assert sources - names == set(), "list the new subpackage in [tool.setuptools] packages of pyproject.toml"

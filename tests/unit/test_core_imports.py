from __future__ import annotations

import subprocess
import sys


def test_the_pure_core_imports_no_adapter_library() -> None:
    code = (
        "import sys, auditor.findings, auditor.layout, auditor.schedule, auditor.reconcile, auditor.runs, auditor.validate.manifest, auditor.validate.schema;"
        "print(sorted(m for m in ('fsspec', 'sqlalchemy', 'httpx', 'fastapi', 'alembic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "[]"

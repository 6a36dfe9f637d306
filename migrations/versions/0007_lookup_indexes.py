"""indexes for the lookups the product makes at estate scale (issue 10)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

- windows (export_id, dataset_id, status): each dataset's window counts by status (the API's
  /api/datasets, the dashboard, metrics) read from the index alone, not from every window row;
- audits (report_sha256): `auditor evidence verify` finds the audit that produced a report;
- window_status_history (window_id) goes: (window_id, at) serves every lookup it served, and
  each audit that changes a status writes one index less.

Dataset + time -> windows (uq_windows_export_id), window -> files (ix_files_folder) and window ->
findings (ix_findings_window_id) were indexed before; tests/integration/test_catalog_scale.py
proves the plans of all of them with EXPLAIN on PostgreSQL.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_windows_status", "windows", ["export_id", "dataset_id", "status"])
    op.create_index("ix_audits_report_sha256", "audits", ["report_sha256"])
    op.drop_index("ix_window_status_history_window_id", table_name="window_status_history")


def downgrade() -> None:
    op.create_index("ix_window_status_history_window_id", "window_status_history", ["window_id"])
    op.drop_index("ix_audits_report_sha256", table_name="audits")
    op.drop_index("ix_windows_status", table_name="windows")

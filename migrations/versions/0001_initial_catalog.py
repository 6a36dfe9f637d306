"""initial catalog

Revision ID: 0001
Revises: 
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('as_of', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=True),
    sa.Column('deep', sa.Boolean(), nullable=False),
    sa.Column('bytes_read', sa.BigInteger(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audits'))
    )
    op.create_table('destinations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_destinations')),
    sa.UniqueConstraint('name', name=op.f('uq_destinations_name'))
    )
    op.create_table('export_folders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('destination_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('dataset_id', sa.String(length=200), nullable=False),
    sa.Column('export_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['destination_id'], ['destinations.id'], name=op.f('fk_export_folders_destination_id_destinations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_export_folders')),
    sa.UniqueConstraint('destination_id', 'key', name=op.f('uq_export_folders_destination_id'))
    )
    op.create_table('exports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('destination_id', sa.Integer(), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('compression', sa.String(length=16), nullable=False),
    sa.Column('manifest', sa.Boolean(), nullable=False),
    sa.Column('grace_seconds', sa.Integer(), nullable=False),
    sa.Column('flow_id', sa.String(length=64), nullable=True),
    sa.Column('schedule', sa.JSON(), nullable=False),
    sa.Column('folder_template', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['destination_id'], ['destinations.id'], name=op.f('fk_exports_destination_id_destinations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exports')),
    sa.UniqueConstraint('name', name=op.f('uq_exports_name'))
    )
    op.create_table('files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('destination_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('folder_key', sa.Text(), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('etag', sa.String(length=200), nullable=True),
    sa.Column('modified', sa.DateTime(timezone=True), nullable=True),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('validated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deep_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('records', sa.BigInteger(), nullable=True),
    sa.Column('findings', sa.JSON(), nullable=False),
    sa.Column('content', sa.JSON(), nullable=True),
    sa.Column('schema', sa.Text(), nullable=True),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('gone_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['destination_id'], ['destinations.id'], name=op.f('fk_files_destination_id_destinations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_files')),
    sa.UniqueConstraint('destination_id', 'key', name=op.f('uq_files_destination_id'))
    )
    op.create_table('datasets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('export_id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.String(length=200), nullable=False),
    sa.Column('restorable_until', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['export_id'], ['exports.id'], name=op.f('fk_datasets_export_id_exports')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
    sa.UniqueConstraint('export_id', 'dataset_id', name=op.f('uq_datasets_export_id'))
    )
    op.create_table('windows',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('export_id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.String(length=200), nullable=False),
    sa.Column('scheduled', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('folder_key', sa.Text(), nullable=True),
    sa.Column('files', sa.Integer(), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('records', sa.BigInteger(), nullable=True),
    sa.Column('status_since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_audit_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['export_id'], ['exports.id'], name=op.f('fk_windows_export_id_exports')),
    sa.ForeignKeyConstraint(['last_audit_id'], ['audits.id'], name=op.f('fk_windows_last_audit_id_audits')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_windows')),
    sa.UniqueConstraint('export_id', 'dataset_id', 'scheduled', name=op.f('uq_windows_export_id'))
    )
    op.create_table('findings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('window_id', sa.Integer(), nullable=False),
    sa.Column('audit_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['audit_id'], ['audits.id'], name=op.f('fk_findings_audit_id_audits')),
    sa.ForeignKeyConstraint(['window_id'], ['windows.id'], name=op.f('fk_findings_window_id_windows')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_findings'))
    )
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.create_index('ix_findings_window_id', ['window_id'], unique=False)

    op.create_table('window_status_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('window_id', sa.Integer(), nullable=False),
    sa.Column('audit_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['audit_id'], ['audits.id'], name=op.f('fk_window_status_history_audit_id_audits')),
    sa.ForeignKeyConstraint(['window_id'], ['windows.id'], name=op.f('fk_window_status_history_window_id_windows')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_window_status_history'))
    )
    with op.batch_alter_table('window_status_history', schema=None) as batch_op:
        batch_op.create_index('ix_window_status_history_window_id', ['window_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('window_status_history', schema=None) as batch_op:
        batch_op.drop_index('ix_window_status_history_window_id')

    op.drop_table('window_status_history')
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.drop_index('ix_findings_window_id')

    op.drop_table('findings')
    op.drop_table('windows')
    op.drop_table('datasets')
    op.drop_table('files')
    op.drop_table('exports')
    op.drop_table('export_folders')
    op.drop_table('destinations')
    op.drop_table('audits')

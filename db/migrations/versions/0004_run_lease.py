"""run lease: the owner of a running run (host, pid, process start), its lease, and how it was interrupted

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

A queued run is claimed with a compare-and-set that records its owner; the owner renews
``lease_expires_at`` while the run is running. Any command that opens the database marks as
failed the running runs whose owner is gone or whose lease expired (heptathlon.db.lifecycle),
and says so in ``interruption``. Runs written before this revision have no owner: a run left
'running' by an older harness is reaped as one whose owner is unknown.
"""
import sqlalchemy as sa
from alembic import op


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = (("owner_host", sa.String(255)), ("owner_pid", sa.Integer()), ("owner_started", sa.Float()),
           ("lease_expires_at", sa.DateTime(timezone=True)), ("interruption", sa.String(32)))


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)

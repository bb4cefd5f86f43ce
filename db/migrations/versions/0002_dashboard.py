"""dashboard: a covering index for the leaderboard's filters and latest-run query

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

The web leaderboard groups succeeded runs by (task, profile, scenario, machine, submission) to
build its filters, and picks the newest run of each series inside one such group. With this index
both read the index alone, in order: at 100,000 runs the filter query drops from ~150 ms to ~25 ms
(benchmarks/dashboard_scale.py, docs/performance.md).
"""
from alembic import op


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = ["status", "task_name", "profile_name", "scenario", "machine_id", "submission_id", "finished_at"]


def upgrade() -> None:
    op.create_index("ix_run_dashboard", "run", COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_run_dashboard", table_name="run")

"""series key: run.series_key, indexed, backfilled for every run with a submission and a machine

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Nightly regression, the dashboard's history and ``heptathlon results`` group runs into series
(submission, task, profile, scenario, parameters, fingerprint class). Each rebuilt that key from
the run's columns, its submission and its machine; now it is computed once when a run is written
(heptathlon.db.series) and read from this column. Existing rows get the same key here.
"""
import sqlalchemy as sa
from alembic import op

from heptathlon.bench.series import SERIES_KEY_LENGTH, TrialSlot, run_series_key, trial_counts


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The columns this migration reads, as they stand at revision 0002 (not the current models).
RUN = sa.table("run", sa.column("id", sa.String), sa.column("submission_id", sa.Integer),
               sa.column("machine_id", sa.Integer), sa.column("profile_name", sa.String),
               sa.column("scenario", sa.String), sa.column("params", sa.JSON), sa.column("trial", sa.Integer),
               sa.column("group_id", sa.String), sa.column("series_key", sa.String))
SUBMISSION = sa.table("submission", sa.column("id", sa.Integer), sa.column("name", sa.String),
                      sa.column("task", sa.String))
MACHINE = sa.table("machine", sa.column("id", sa.Integer), sa.column("specs", sa.JSON))


def backfill(conn: sa.Connection) -> int:
    """Write the series key of every run that has a submission and a machine; returns how many."""
    subs = {i: (name, task) for i, name, task in conn.execute(sa.select(SUBMISSION.c.id, SUBMISSION.c.name,
                                                                        SUBMISSION.c.task))}
    specs = {i: sp or {} for i, sp in conn.execute(sa.select(MACHINE.c.id, MACHINE.c.specs))}
    rows = conn.execute(sa.select(RUN.c.id, RUN.c.group_id, RUN.c.submission_id, RUN.c.profile_name,
                                  RUN.c.scenario, RUN.c.params, RUN.c.trial, RUN.c.machine_id)).all()
    trials = trial_counts(TrialSlot(r.id, r.group_id, r.submission_id, r.profile_name, r.scenario, r.params or {},
                                    r.trial or 0) for r in rows)
    keys = []
    for r in rows:
        if r.submission_id in subs and r.machine_id in specs:
            name, task = subs[r.submission_id]
            keys.append({"rid": r.id, "key": run_series_key(
                submission=name, task=task, profile=r.profile_name, scenario=r.scenario, run_params=r.params or {},
                trials=trials[r.id], fingerprint=specs[r.machine_id]).id})
    if keys:
        conn.execute(RUN.update().where(RUN.c.id == sa.bindparam("rid")).values(series_key=sa.bindparam("key")),
                     keys)
    return len(keys)


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("series_key", sa.String(SERIES_KEY_LENGTH), nullable=True))
    op.create_index("ix_run_series_key", "run", ["series_key", "finished_at"])
    backfill(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_run_series_key", table_name="run")
    with op.batch_alter_table("run") as batch:
        batch.drop_column("series_key")

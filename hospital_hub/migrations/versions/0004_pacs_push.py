"""PACS push queue and hospital PACS

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 05:30:35.100343
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('pacspush',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('hospital_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('what', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('sop_class_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('sop_instance_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('data', sa.LargeBinary(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospital.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_id', 'hospital_id', 'what')
    )
    with op.batch_alter_table('pacspush', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pacspush_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f("ix_pacspush_next_attempt_at"), ["next_attempt_at"],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_pacspush_status'), ['status'], unique=False)

    with op.batch_alter_table('hospital', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pacs_ae_title', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column('pacs_host', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column('pacs_port', sa.Integer(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('hospital', schema=None) as batch_op:
        batch_op.drop_column('pacs_port')
        batch_op.drop_column('pacs_host')
        batch_op.drop_column('pacs_ae_title')

    with op.batch_alter_table('pacspush', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pacspush_status'))
        batch_op.drop_index(batch_op.f('ix_pacspush_next_attempt_at'))
        batch_op.drop_index(batch_op.f('ix_pacspush_case_id'))

    op.drop_table('pacspush')

"""ER verdicts on AI diagnoses and model-drift alerts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('verdict',
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('diagnosis_id', sa.Integer(), nullable=False),
    sa.Column('hospital_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('ambulance_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('model_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('model_version', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
    sa.Column('model_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('suspected', sa.JSON(), nullable=False),
    sa.Column('judgements', sa.JSON(), nullable=False),
    sa.Column('added', sa.JSON(), nullable=False),
    sa.Column('judged_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ),
    sa.ForeignKeyConstraint(['diagnosis_id'], ['casediagnosis.id'], ),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospital.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('diagnosis_id', 'hospital_id')
    )
    with op.batch_alter_table('verdict', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_verdict_ambulance_id'), ['ambulance_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_verdict_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_verdict_diagnosis_id'), ['diagnosis_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_verdict_updated_at'), ['updated_at'], unique=False)

    op.create_table('driftalert',
    sa.Column('ambulance_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('model_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('model_version', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
    sa.Column('finding', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('psi', sa.Float(), nullable=False),
    sa.Column('cases', sa.Integer(), nullable=False),
    sa.Column('window_first_id', sa.Integer(), nullable=False),
    sa.Column('window_last_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ambulance_id', 'model_name', 'model_version', 'window_first_id')
    )
    with op.batch_alter_table('driftalert', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_driftalert_ambulance_id'), ['ambulance_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('driftalert', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_driftalert_ambulance_id'))
    op.drop_table('driftalert')

    with op.batch_alter_table('verdict', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_verdict_updated_at'))
        batch_op.drop_index(batch_op.f('ix_verdict_diagnosis_id'))
        batch_op.drop_index(batch_op.f('ix_verdict_case_id'))
        batch_op.drop_index(batch_op.f('ix_verdict_ambulance_id'))
    op.drop_table('verdict')

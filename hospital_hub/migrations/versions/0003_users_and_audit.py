"""users, service tokens and the access log

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 00:23:26.805368
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('accesslog',
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('what', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('hospital_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('client', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('accesslog', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_accesslog_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_accesslog_case_id'), ['case_id'], unique=False)

    op.create_table('useraccount',
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('role', sa.Enum('ADMIN', 'DISPATCHER', 'ER_DOCTOR', 'SERVICE', name='role'), nullable=False),
    sa.Column('hospital_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('ambulance_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('token_created_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('useraccount', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_useraccount_token_hash'), ['token_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_useraccount_username'), ['username'], unique=True)



def downgrade() -> None:
    with op.batch_alter_table('useraccount', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_useraccount_username'))
        batch_op.drop_index(batch_op.f('ix_useraccount_token_hash'))

    op.drop_table('useraccount')
    with op.batch_alter_table('accesslog', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accesslog_case_id'))
        batch_op.drop_index(batch_op.f('ix_accesslog_at'))

    op.drop_table('accesslog')
    sa.Enum(name='role').drop(op.get_bind(), checkfirst=True)

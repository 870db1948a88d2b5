"""Each ambulance's image intake per model (diagnosed, refused as not a chest
radiograph, refused as an unusable file), from its status messages

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('edgeintake',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ambulance_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('model_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('model_version', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
    sa.Column('diagnosed', sa.Integer(), nullable=False),
    sa.Column('refused_not_chest', sa.Integer(), nullable=False),
    sa.Column('refused_unreadable', sa.Integer(), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ambulance_id', 'model_name', 'model_version')
    )
    with op.batch_alter_table('edgeintake', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_edgeintake_ambulance_id'), ['ambulance_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('edgeintake', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_edgeintake_ambulance_id'))
    op.drop_table('edgeintake')

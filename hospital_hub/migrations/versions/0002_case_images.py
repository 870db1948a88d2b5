"""case images

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 00:19:03.176075
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('caseimage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('image_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('media_type', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('total_bytes', sa.Integer(), nullable=False),
    sa.Column('chunk_count', sa.Integer(), nullable=False),
    sa.Column('received_chunks', sa.Integer(), nullable=False),
    sa.Column('complete', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('data', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_id', 'image_sha256')
    )
    with op.batch_alter_table('caseimage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_caseimage_case_id'), ['case_id'], unique=False)

    op.create_table('imagechunk',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['caseimage.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('image_id', 'index')
    )
    with op.batch_alter_table('imagechunk', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_imagechunk_image_id'), ['image_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('imagechunk', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_imagechunk_image_id'))

    op.drop_table('imagechunk')
    with op.batch_alter_table('caseimage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_caseimage_case_id'))

    op.drop_table('caseimage')


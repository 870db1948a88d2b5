"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 00:03:43.942207
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('ambulance',
    sa.Column('online', sa.Boolean(), nullable=False),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('position_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('deadletter',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('hospital',
    sa.Column('er_beds_free', sa.Integer(), nullable=True),
    sa.Column('icu_beds_free', sa.Integer(), nullable=True),
    sa.Column('accepting', sa.Boolean(), nullable=False),
    sa.Column('capacity_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('capacity_source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('er_beds', sa.Integer(), nullable=False),
    sa.Column('icu_beds', sa.Integer(), nullable=False),
    sa.Column('ct', sa.Boolean(), nullable=False),
    sa.Column('thoracic_surgery', sa.Boolean(), nullable=False),
    sa.Column('chest_tube', sa.Boolean(), nullable=False),
    sa.Column('isolation_rooms', sa.Integer(), nullable=False),
    sa.Column('paediatrics', sa.Boolean(), nullable=False),
    sa.Column('contact', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('outboxmessage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('qos', sa.Integer(), nullable=False),
    sa.Column('retain', sa.Boolean(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outboxmessage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outboxmessage_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outboxmessage_sent_at'), ['sent_at'], unique=False)

    op.create_table('processedmessage',
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('schema_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    op.create_table('case',
    sa.Column('ambulance_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('triage_level', sa.Integer(), nullable=False),
    sa.Column('triage_label', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('top3', sa.JSON(), nullable=False),
    sa.Column('positive_findings', sa.JSON(), nullable=False),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('model_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('placeholder_model', sa.Boolean(), nullable=False),
    sa.Column('patient_name', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('patient_age', sa.Integer(), nullable=True),
    sa.Column('patient_sex', sqlmodel.sql.sqltypes.AutoString(length=1), nullable=True),
    sa.Column('chief_complaint', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.Column('handover', sa.JSON(), nullable=True),
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status', sa.Enum('OFFERED', 'ACCEPTED', 'NO_ER_AVAILABLE', 'CANCELLED', name='casestatus'), nullable=False),
    sa.Column('accepted_hospital_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('captured_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['accepted_hospital_id'], ['hospital.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('case', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_ambulance_id'), ['ambulance_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_triage_level'), ['triage_level'], unique=False)

    op.create_table('casediagnosis',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('model_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('model_version', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
    sa.Column('model_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('placeholder_model', sa.Boolean(), nullable=False),
    sa.Column('triage_level', sa.Integer(), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('thumbnail_jpeg', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('casediagnosis', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_casediagnosis_case_id'), ['case_id'], unique=False)

    op.create_table('caseevent',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('caseevent', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_caseevent_case_id'), ['case_id'], unique=False)

    op.create_table('casevitals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('taken_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('spo2_pct', sa.Integer(), nullable=True),
    sa.Column('resp_rate', sa.Integer(), nullable=True),
    sa.Column('heart_rate', sa.Integer(), nullable=True),
    sa.Column('systolic_bp', sa.Integer(), nullable=True),
    sa.Column('temperature_c', sa.Float(), nullable=True),
    sa.Column('avpu', sqlmodel.sql.sqltypes.AutoString(length=1), nullable=True),
    sa.Column('supplemental_o2', sa.Boolean(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('casevitals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_casevitals_case_id'), ['case_id'], unique=False)

    op.create_table('offer',
    sa.Column('case_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('hospital_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('distance_km', sa.Float(), nullable=False),
    sa.Column('eta_min', sa.Float(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('OPEN', 'ACCEPTED', 'DECLINED', 'EXPIRED', 'WITHDRAWN', name='offerstate'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['case.id'], ),
    sa.ForeignKeyConstraint(['hospital_id'], ['hospital.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_id', 'hospital_id')
    )
    with op.batch_alter_table('offer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_offer_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_offer_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_offer_hospital_id'), ['hospital_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_offer_state'), ['state'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('offer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_offer_state'))
        batch_op.drop_index(batch_op.f('ix_offer_hospital_id'))
        batch_op.drop_index(batch_op.f('ix_offer_expires_at'))
        batch_op.drop_index(batch_op.f('ix_offer_case_id'))

    op.drop_table('offer')
    with op.batch_alter_table('casevitals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_casevitals_case_id'))

    op.drop_table('casevitals')
    with op.batch_alter_table('caseevent', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_caseevent_case_id'))

    op.drop_table('caseevent')
    with op.batch_alter_table('casediagnosis', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_casediagnosis_case_id'))

    op.drop_table('casediagnosis')
    with op.batch_alter_table('case', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_triage_level'))
        batch_op.drop_index(batch_op.f('ix_case_status'))
        batch_op.drop_index(batch_op.f('ix_case_ambulance_id'))

    op.drop_table('case')
    op.drop_table('processedmessage')
    with op.batch_alter_table('outboxmessage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outboxmessage_sent_at'))
        batch_op.drop_index(batch_op.f('ix_outboxmessage_case_id'))

    op.drop_table('outboxmessage')
    op.drop_table('hospital')
    op.drop_table('deadletter')
    op.drop_table('ambulance')


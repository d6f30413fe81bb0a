"""the schema of tongban 0.1: federation, cases, sign-on, local calls

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 12:56:30.207160
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('adapter_state',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('cursor', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('applicant_accounts',
    sa.Column('applicant_key', sa.String(length=64), nullable=False),
    sa.Column('id_number', sa.String(length=18), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('loa', sa.String(length=4), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('applicant_key')
    )
    op.create_table('case_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('case_id', sa.String(length=128), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=64), nullable=False),
    sa.Column('from_state', sa.String(length=32), nullable=True),
    sa.Column('to_state', sa.String(length=32), nullable=True),
    sa.Column('actor', sa.String(length=16), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('jti', sa.String(length=64), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_id', 'n', name='uq_case_events_n')
    )
    op.create_table('case_held',
    sa.Column('case_id', sa.String(length=128), nullable=False),
    sa.Column('iss', sa.String(length=16), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('held_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('case_id', 'iss', 'seq')
    )
    op.create_table('case_inbound',
    sa.Column('case_id', sa.String(length=128), nullable=False),
    sa.Column('iss', sa.String(length=16), nullable=False),
    sa.Column('last_applied', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('case_id', 'iss')
    )
    op.create_table('case_sequences',
    sa.Column('case_id', sa.String(length=128), nullable=False),
    sa.Column('dest', sa.String(length=16), nullable=False),
    sa.Column('last_seq', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('case_id', 'dest')
    )
    op.create_table('cases',
    sa.Column('case_id', sa.String(length=128), nullable=False),
    sa.Column('side', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('parent_id', sa.String(length=128), nullable=True),
    sa.Column('step', sa.Integer(), nullable=True),
    sa.Column('item_code', sa.String(length=64), nullable=True),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('receiver', sa.String(length=16), nullable=False),
    sa.Column('handler', sa.String(length=16), nullable=True),
    sa.Column('state', sa.String(length=32), nullable=True),
    sa.Column('applicant_key', sa.String(length=64), nullable=False),
    sa.Column('applicant', sa.Text(), nullable=False),
    sa.Column('portal_client', sa.String(length=64), nullable=True),
    sa.Column('query_password_hash', sa.Text(), nullable=True),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('clock', sa.Text(), nullable=False),
    sa.Column('decision_due', sa.String(length=10), nullable=True),
    sa.Column('supplement_due', sa.String(length=10), nullable=True),
    sa.Column('overdue', sa.Integer(), nullable=False),
    sa.Column('supplement_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('case_id')
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index('ix_cases_applicant', ['applicant_key'], unique=False)
        batch_op.create_index('ix_cases_parent', ['parent_id'], unique=False)
        batch_op.create_index('ix_cases_state', ['state'], unique=False)

    op.create_table('cert_checks',
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('case_id', sa.String(length=128), nullable=False),
    sa.Column('material', sa.String(length=64), nullable=False),
    sa.Column('cert_id', sa.String(length=128), nullable=False),
    sa.Column('issuer', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('requested_at', sa.Float(), nullable=False),
    sa.Column('answered_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('request_id')
    )
    op.create_table('certificates',
    sa.Column('cert_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('holder_key', sa.String(length=64), nullable=False),
    sa.Column('case_id', sa.String(length=128), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('issued_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('cert_id')
    )
    op.create_table('clerks',
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=False),
    sa.Column('disabled', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('username')
    )
    op.create_table('destinations',
    sa.Column('dest', sa.String(length=16), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('retry_at', sa.Float(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_success_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('dest')
    )
    op.create_table('gateway_secrets',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('inbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('jti', sa.String(length=64), nullable=False),
    sa.Column('iss', sa.String(length=16), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('case_id', sa.String(length=128), nullable=True),
    sa.Column('seq', sa.Integer(), nullable=True),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('content_digest', sa.String(length=64), nullable=False),
    sa.Column('token', sa.Text(), nullable=False),
    sa.Column('received_at', sa.Float(), nullable=False),
    sa.Column('receipt', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('iss', 'case_id', 'seq', name='uq_inbox_case_seq'),
    sa.UniqueConstraint('jti')
    )
    op.create_table('local_calls',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('case_id', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_at', sa.Float(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('local_calls', schema=None) as batch_op:
        batch_op.create_index('ix_local_calls_state', ['state', 'next_at'], unique=False)

    op.create_table('local_events',
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('case_id', sa.String(length=128), nullable=False),
    sa.Column('outcome', sa.Text(), nullable=False),
    sa.Column('applied_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('event_id')
    )
    op.create_table('local_refs',
    sa.Column('case_id', sa.String(length=128), nullable=False),
    sa.Column('ref', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('case_id')
    )
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('jti', sa.String(length=64), nullable=False),
    sa.Column('dest', sa.String(length=16), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('case_id', sa.String(length=128), nullable=True),
    sa.Column('seq', sa.Integer(), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('token', sa.Text(), nullable=True),
    sa.Column('token_exp', sa.BigInteger(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('last_attempt_at', sa.Float(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('delivered_at', sa.Float(), nullable=True),
    sa.Column('receipt', sa.Text(), nullable=True),
    sa.Column('receipt_status', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('jti')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_dest_state_id', ['dest', 'state', 'id'], unique=False)

    op.create_table('registry_versions',
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('jws', sa.Text(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('iat', sa.BigInteger(), nullable=False),
    sa.Column('exp', sa.BigInteger(), nullable=False),
    sa.Column('stored_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('version')
    )
    op.create_table('request_jtis',
    sa.Column('jti', sa.String(length=128), nullable=False),
    sa.Column('iss', sa.String(length=16), nullable=False),
    sa.Column('exp', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('jti')
    )
    with op.batch_alter_table('request_jtis', schema=None) as batch_op:
        batch_op.create_index('ix_request_jtis_exp', ['exp'], unique=False)

    op.create_table('sessions',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('loa', sa.String(length=4), nullable=True),
    sa.Column('sid', sa.String(length=128), nullable=True),
    sa.Column('client_id', sa.String(length=64), nullable=True),
    sa.Column('idn', sa.Text(), nullable=True),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index('ix_sessions_sid', ['sid'], unique=False)

    op.create_table('sso_handoffs',
    sa.Column('sid', sa.String(length=128), nullable=False),
    sa.Column('target', sa.String(length=16), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('sid', 'target')
    )
    op.create_table('sso_jtis',
    sa.Column('iss', sa.String(length=16), nullable=False),
    sa.Column('jti', sa.String(length=128), nullable=False),
    sa.Column('exp', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('iss', 'jti')
    )
    with op.batch_alter_table('sso_jtis', schema=None) as batch_op:
        batch_op.create_index('ix_sso_jtis_exp', ['exp'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('sso_jtis', schema=None) as batch_op:
        batch_op.drop_index('ix_sso_jtis_exp')

    op.drop_table('sso_jtis')
    op.drop_table('sso_handoffs')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_sessions_sid')

    op.drop_table('sessions')
    with op.batch_alter_table('request_jtis', schema=None) as batch_op:
        batch_op.drop_index('ix_request_jtis_exp')

    op.drop_table('request_jtis')
    op.drop_table('registry_versions')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_dest_state_id')

    op.drop_table('outbox')
    op.drop_table('local_refs')
    op.drop_table('local_events')
    with op.batch_alter_table('local_calls', schema=None) as batch_op:
        batch_op.drop_index('ix_local_calls_state')

    op.drop_table('local_calls')
    op.drop_table('inbox')
    op.drop_table('gateway_secrets')
    op.drop_table('destinations')
    op.drop_table('clerks')
    op.drop_table('certificates')
    op.drop_table('cert_checks')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_state')
        batch_op.drop_index('ix_cases_parent')
        batch_op.drop_index('ix_cases_applicant')

    op.drop_table('cases')
    op.drop_table('case_sequences')
    op.drop_table('case_inbound')
    op.drop_table('case_held')
    op.drop_table('case_events')
    op.drop_table('applicant_accounts')
    op.drop_table('adapter_state')


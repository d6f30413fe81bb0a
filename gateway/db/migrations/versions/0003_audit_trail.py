"""the hash-chained audit trail

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 13:14:00.450243
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('audit_log',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('direction', sa.String(length=3), nullable=False),
    sa.Column('peer', sa.String(length=16), nullable=False),
    sa.Column('jti', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('case_id', sa.String(length=128), nullable=True),
    sa.Column('token', sa.Text(), nullable=False),
    sa.Column('receipt', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )



def downgrade() -> None:

    op.drop_table('audit_log')


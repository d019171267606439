"""Initial registry schema: nodes, macs, node_tags, events, images, deploy_tokens (hashed).

Revision ID: 0001
Revises: (none)
"""

from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():

    op.create_table(
        "images",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("maintenance", sa.Boolean(), nullable=False),
        sa.Column("maintenance_reason", sa.Text(), nullable=True),
        sa.Column("pool", sa.String(length=63), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("cpus", sa.Integer(), nullable=True),
        sa.Column("memory_mib", sa.Integer(), nullable=True),
        sa.Column("disk_gib", sa.Integer(), nullable=True),
        sa.Column("bmc", sa.JSON(), nullable=True),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("allocation_name", sa.String(length=63), nullable=True),
        sa.Column("image", sa.String(length=128), nullable=True),
        sa.Column("hostname", sa.String(length=253), nullable=True),
        sa.Column("ssh_authorized_keys", sa.JSON(), nullable=True),
        sa.Column("user_data", sa.Text(), nullable=True),
        sa.Column("ssh_host_keys", sa.JSON(), nullable=True),
        sa.Column("ssh_host_keys_private", sa.JSON(), nullable=True),
        sa.Column("deploy_generation", sa.Integer(), nullable=False),
        sa.Column("deadline", sa.DateTime(), nullable=True),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.Column("docker_url", sa.String(length=255), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("state_changed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("owner", "allocation_name", name="uq_nodes_owner_allocation"),
    )
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nodes_owner"), ["owner"], unique=False)
        batch_op.create_index(batch_op.f("ix_nodes_state"), ["state"], unique=False)
        batch_op.create_index("ix_nodes_state_pool", ["state", "pool"], unique=False)

    op.create_table(
        "deploy_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revoke_reason", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("deploy_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deploy_tokens_node_id"), ["node_id"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_node_id"), ["node_id"], unique=False)

    op.create_table(
        "macs",
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("mac"),
    )
    with op.batch_alter_table("macs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_macs_node_id"), ["node_id"], unique=False)

    op.create_table(
        "node_tags",
        sa.Column("node_id", sa.String(length=36), nullable=False),
        sa.Column("tag", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("node_id", "tag"),
    )
    with op.batch_alter_table("node_tags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_node_tags_tag"), ["tag"], unique=False)


def downgrade():

    with op.batch_alter_table("node_tags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_node_tags_tag"))

    op.drop_table("node_tags")
    with op.batch_alter_table("macs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_macs_node_id"))

    op.drop_table("macs")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_node_id"))

    op.drop_table("events")
    with op.batch_alter_table("deploy_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deploy_tokens_node_id"))

    op.drop_table("deploy_tokens")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_index("ix_nodes_state_pool")
        batch_op.drop_index(batch_op.f("ix_nodes_state"))
        batch_op.drop_index(batch_op.f("ix_nodes_owner"))

    op.drop_table("nodes")
    op.drop_table("images")

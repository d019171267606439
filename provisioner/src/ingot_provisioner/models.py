"""The registry schema (SQLAlchemy 2). Alembic migrations in ``migrations/`` create it."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Optional

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, TypeDecorator,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on SQLite (naive storage) and PostgreSQL alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    pass


class Node(Base):
    __tablename__ = "nodes"
    __table_args__ = (
        UniqueConstraint("owner", "allocation_name", name="uq_nodes_owner_allocation"),
        Index("ix_nodes_state_pool", "state", "pool"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True, nullable=False)
    state: Mapped[str] = mapped_column(String(20), nullable=False, index=True)
    maintenance: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    maintenance_reason: Mapped[Optional[str]] = mapped_column(Text)
    pool: Mapped[str] = mapped_column(String(63), nullable=False, default="default")
    facts: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    # denormalised from facts, for allocation constraints in SQL
    cpus: Mapped[Optional[int]] = mapped_column(Integer)
    memory_mib: Mapped[Optional[int]] = mapped_column(Integer)
    disk_gib: Mapped[Optional[int]] = mapped_column(Integer)
    bmc: Mapped[Optional[dict]] = mapped_column(JSON)
    owner: Mapped[Optional[str]] = mapped_column(String(128), index=True)
    allocation_name: Mapped[Optional[str]] = mapped_column(String(63))
    image: Mapped[Optional[str]] = mapped_column(String(128))
    hostname: Mapped[Optional[str]] = mapped_column(String(253))
    ssh_authorized_keys: Mapped[Optional[list]] = mapped_column(JSON)
    user_data: Mapped[Optional[str]] = mapped_column(Text)
    ssh_host_keys: Mapped[Optional[dict]] = mapped_column(JSON)          # public halves
    ssh_host_keys_private: Mapped[Optional[dict]] = mapped_column(JSON)  # private halves (seed only)
    deploy_generation: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    deadline: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    ip_address: Mapped[Optional[str]] = mapped_column(String(64))
    docker_url: Mapped[Optional[str]] = mapped_column(String(255))
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    state_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    macs: Mapped[list["Mac"]] = relationship(back_populates="node", cascade="all, delete-orphan",
                                             order_by="Mac.mac", lazy="selectin")
    tag_rows: Mapped[list["NodeTag"]] = relationship(back_populates="node", cascade="all, delete-orphan",
                                                     order_by="NodeTag.tag", lazy="selectin")

    @property
    def tags(self) -> list[str]:
        return sorted(t.tag for t in self.tag_rows)

    @property
    def mac_list(self) -> list[str]:
        return sorted(m.mac for m in self.macs)


class Mac(Base):
    __tablename__ = "macs"

    mac: Mapped[str] = mapped_column(String(17), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False, index=True)
    node: Mapped[Node] = relationship(back_populates="macs")


class NodeTag(Base):
    __tablename__ = "node_tags"

    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(63), primary_key=True, index=True)
    node: Mapped[Node] = relationship(back_populates="tag_rows")


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False, index=True)
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[Optional[dict]] = mapped_column(JSON)


class Image(Base):
    __tablename__ = "images"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    format: Mapped[str] = mapped_column(String(16), nullable=False)
    size: Mapped[Optional[int]] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class DeployToken(Base):
    """One-time deploy/release tokens, stored as SHA-256 hashes only."""

    __tablename__ = "deploy_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False, index=True)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    mode: Mapped[str] = mapped_column(String(16), nullable=False)
    generation: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    revoked_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    revoke_reason: Mapped[Optional[str]] = mapped_column(String(255))

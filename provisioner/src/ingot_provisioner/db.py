"""Engine and transactions: SQLite (WAL, busy_timeout, foreign keys, BEGIN IMMEDIATE for writes)
or PostgreSQL (psycopg 3), and the Alembic migrations."""

from __future__ import annotations

import contextlib
import os
import threading

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")


def normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 (psycopg2 is not a dependency)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def redact_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a display helper never fails
        return "<unparsable database URL>"


class Database:
    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL", busy_timeout_ms: int = 30000,
                 pool_size: int = 20):
        self.url = normalise_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        self.is_postgres = self.dialect == "postgresql"
        if not (self.is_sqlite or self.is_postgres):
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite:///PATH or postgresql://")
        # One writer at a time inside this process on SQLite: BEGIN IMMEDIATE still serialises
        # writers of other processes, this only saves them from spinning in the busy handler.
        self._write_lock = threading.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            path = make_url(self.url).database
            if path and path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            engine = create_engine(self.url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=60,
                                   connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000})

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_conn, _record):
                dbapi_conn.isolation_level = None  # the "begin" hook below emits BEGIN itself
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
                cur.close()

            @event.listens_for(engine, "begin")
            def _sqlite_begin(conn):
                mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
                conn.exec_driver_sql(f"BEGIN {mode}")
        else:
            engine = create_engine(self.url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=60,
                                   pool_pre_ping=True)
        self.engine = engine
        self._write_engine = engine.execution_options(sqlite_begin="IMMEDIATE") if self.is_sqlite else engine
        self._read = sessionmaker(bind=engine, expire_on_commit=False)
        self._write = sessionmaker(bind=self._write_engine, expire_on_commit=False)

    @contextlib.contextmanager
    def read(self):
        """A read-only transaction (rolled back at the end)."""
        session: Session = self._read()
        try:
            with session.begin():
                yield session
                session.rollback()
        finally:
            session.close()

    @contextlib.contextmanager
    def write(self):
        """A write transaction: BEGIN IMMEDIATE on SQLite; committed when the block ends without error."""
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            session: Session = self._write()
            try:
                with session.begin():
                    yield session
            finally:
                session.close()
        finally:
            if lock is not None:
                lock.release()

    def dispose(self):
        self.engine.dispose()

    # migrations ----------------------------------------------------------------------------
    def migrate(self, revision: str = "head") -> None:
        """Apply the Alembic migrations (serialised: advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", MIGRATIONS_DIR)
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self._write_engine.begin() as conn:
            if self.is_postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(7166104)"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def integrity_check(self) -> str:
        if not self.is_sqlite:
            return "ok"
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql("PRAGMA integrity_check").fetchall()
            conn.rollback()
        return "; ".join(r[0] for r in rows)

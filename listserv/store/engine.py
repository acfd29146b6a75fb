"""The engine, the one sessionmaker, units of work and migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from listserv.errors import ListservError
from listserv.files import private_empty_file, private_folder

#: Alembic's package-resource form: it finds the scripts with importlib.resources, so a wheel
#: and an editable install migrate alike.
MIGRATIONS = "listserv.store:migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: SQLite's `PRAGMA auto_vacuum` value for INCREMENTAL.
INCREMENTAL = 2
#: The execution option of reading sessions: their SQLite transactions begin deferred.
_READ_ONLY = "listserv_read_only"


def _sqlite_engine(url: str) -> Engine:
    path = make_url(url).database
    if path and path != ":memory:":
        # SQLite would create the file 0644; its WAL and shared-memory files take its mode.
        private_folder(Path(path).parent)
        private_empty_file(Path(path))
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The "begin" event below issues BEGIN itself (pysqlite's own would be deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # Takes effect only before the first table is created, so it is set on a new (empty)
        # file only: on a file in use it would wait for the write lock that a reader must
        # never wait for. Pruning then gives pages back (retention.give_back_space); an older
        # file is converted once by Store.migrate.
        if cursor.execute("PRAGMA page_count").fetchone()[0] == 0:
            cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A unit of work that may write takes the write lock at once (BEGIN IMMEDIATE): a
        # deferred transaction that later writes can fail at once with "database is locked"
        # instead of waiting. Reads begin deferred: in WAL mode they never wait for a writer.
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def make_engine(url: str) -> Engine:
    """An engine for `url`, with SQLite tuned for durability (WAL, synchronous=FULL)."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_pragma(connection: Connection, pragma: str) -> None:
    """Set a pragma outside any transaction (foreign_keys is ignored inside one)."""
    connection.connection.driver_connection.execute(f"PRAGMA {pragma}")  # type: ignore[union-attr]


def _refuse_dangling_keys(connection: Connection) -> None:
    """Fail the migration (it rolls back) when a row points at a row that is not there."""
    dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if dangling:
        table, rowid, parent, _ = dangling[0]
        raise ListservError(f"the migration left {len(dangling)} rows pointing at missing rows "
                            f"(the first: {table} row {rowid} -> {parent})")


def _refuse_writes(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a reading unit of work tried to write; use unit_of_work()")


def alembic_config() -> Config:
    """Alembic's configuration for this package's migrations."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


class Store:
    """The database: an engine, its sessionmaker and the schema's migrations."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(self.engine.execution_options(**{_READ_ONLY: True}),
                                     expire_on_commit=False)
        event.listen(self._readers, "before_flush", _refuse_writes)

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises.

        On SQLite it holds the write lock from its start: use `reading()` for reads.
        """
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """One transaction that only reads (a write in it is an error).

        On SQLite it begins deferred, so it answers while another connection holds the
        write lock (the RCPT lookups of intake, the chair's listings).
        """
        with self._readers() as session, session.begin():
            yield session

    def schema_revision(self) -> str | None:
        """The schema revision the database is at; None for a database never migrated."""
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    @staticmethod
    def code_revision() -> str:
        """The newest schema revision this code knows (what `migrate` upgrades to)."""
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert head is not None  # the package always ships its migrations
        return head

    def migrate(self, revision: str = "heads") -> None:
        """Create or upgrade the schema to the newest revision, or to `revision` (safe to
        repeat)."""
        config = alembic_config()
        try:
            with self.engine.connect() as connection:
                sqlite = connection.dialect.name == "sqlite"
                # SQLite rebuilds a table to alter it (copy, drop the old, rename): with foreign
                # keys on, dropping the old table deletes or nulls every row pointing at it
                # (held posts, requests, bounce scores). So, as SQLite's documented procedure
                # for schema changes says: keys off outside the transaction, a check of them
                # before it commits, keys on again.
                if sqlite:
                    _sqlite_pragma(connection, "foreign_keys=OFF")
                try:
                    with connection.begin():
                        config.attributes["connection"] = connection
                        command.upgrade(config, revision)
                        if sqlite:
                            _refuse_dangling_keys(connection)
                finally:
                    if sqlite:
                        _sqlite_pragma(connection, "foreign_keys=ON")
        except Exception as exc:
            raise ListservError(f"cannot prepare the database at {self.safe_url}: {exc}") from exc
        self._make_vacuum_incremental()

    def _make_vacuum_incremental(self) -> None:
        """Convert an SQLite file made before auto-vacuum was set: one full VACUUM, once.

        It rewrites the whole file and needs that much free disk for a moment; afterwards
        `auto_vacuum` is INCREMENTAL and this does nothing.
        """
        if self.engine.dialect.name != "sqlite":
            return
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            if cursor.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL:
                # Outside any transaction (the connection runs in autocommit): VACUUM must.
                cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
                cursor.execute("VACUUM")
            cursor.close()
        finally:
            connection.close()

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()

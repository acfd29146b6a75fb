"""`listserv backup FILE`: a consistent copy of the store and the data folder's files, taken
while the daemon runs (SPEC §4, §7; docs/operations.md).

The database is copied first (SQLite's online backup API, or `pg_dump` in one snapshot),
then the files: a file the copy names was written before its row was committed, so it is
there. Left out: the live database and its WAL, `run/` (the running daemon's files),
`outbox/` (mail already handed over by the Maildir transport; mail still queued is in the
database) and the `.staging` folders (files of a unit of work not yet committed).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Final

from sqlalchemy import text

from listserv.config import Settings
from listserv.errors import ListservError
from listserv.files import FILE_MODE
from listserv.operations import postgres
from listserv.operations.archive import FILES, PG_MEMBER, SQLITE_MEMBER, ArchiveWriter, Manifest
from listserv.store.engine import Store
from listserv.store.models.archive import FTS_TABLE

#: Folders of the data folder that a backup leaves out (see the module's docstring).
SKIPPED_FOLDERS: Final = frozenset({"run", "outbox", ".staging"})
#: Alembic's table: its one row is the schema revision, recorded in the manifest.
VERSION_TABLE: Final = "alembic_version"


def take_backup(settings: Settings, store: Store, target: Path) -> Manifest:
    """Write the backup to `target` (0600, replacing it only once it is complete)."""
    target = target.absolute()
    with tempfile.TemporaryDirectory(prefix="listserv-backup.") as scratch:
        work = Path(scratch)
        if target.is_dir():
            raise ListservError(f"{target} is a folder; give the backup's file name")
        fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.fchmod(fd, FILE_MODE)  # private whatever the umask (SPEC §7)
        try:
            with os.fdopen(fd, "wb") as out, open(work / "body.tar", "w+b") as body:
                writer = ArchiveWriter(out, body)
                manifest = _database(settings, store, work, writer)
                _data_files(settings, writer, {target, Path(partial)})
                writer.finish(manifest)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    return manifest


def _database(settings: Settings, store: Store, work: Path, writer: ArchiveWriter) -> Manifest:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if store.engine.dialect.name == "sqlite":
        copy = work / "listserv.db"
        _sqlite_copy(store, copy)
        revision, counts = _sqlite_facts(copy)
        writer.add_file(SQLITE_MEMBER, copy)
        return Manifest(version("listserv"), revision, "sqlite", counts, now)
    dump_file = work / "listserv.pgdump"
    with store.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            schema = connection.execute(text("SELECT current_schema()")).scalar_one()
            tables = connection.execute(text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = :s "
                "AND table_type = 'BASE TABLE' ORDER BY table_name"), {"s": schema}).scalars()
            counts = {name: connection.execute(
                text(f'SELECT count(*) FROM "{name}"')).scalar_one() for name in tables}
            revision = _revision(connection.execute(
                text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all())
            extra = postgres.dump(connection, store.url, schema, dump_file)
    counts.pop(VERSION_TABLE, None)
    writer.add_file(PG_MEMBER, dump_file)
    return Manifest(version("listserv"), revision, "postgresql", counts, now, extra)


def _sqlite_copy(store: Store, copy: Path) -> None:
    """A consistent copy with SQLite's online backup API: it reads one snapshot, while the
    daemon goes on writing."""
    source = store.engine.raw_connection()
    try:
        destination = sqlite3.connect(copy)
        try:
            source.driver_connection.backup(destination)  # type: ignore[union-attr]
            destination.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            destination.close()
    finally:
        source.close()


def _sqlite_facts(copy: Path) -> tuple[str | None, dict[str, int]]:
    connection = sqlite3.connect(copy)
    try:
        names = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name")]
        # The archive's full-text tables are an index of `archived_posts`, not rows of their own.
        counts = {name: connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                  for name in names if name != VERSION_TABLE and not name.startswith(FTS_TABLE)}
        revisions = [row[0] for row in connection.execute(
            f"SELECT version_num FROM {VERSION_TABLE}")] if VERSION_TABLE in names else []
    finally:
        connection.close()
    return _revision(revisions), counts


def _revision(revisions: list[str]) -> str | None:
    if len(revisions) > 1:
        raise ListservError(f"the store has several schema heads ({', '.join(revisions)})")
    return revisions[0] if revisions else None


def _data_files(settings: Settings, writer: ArchiveWriter, written: set[Path]) -> None:
    """Every regular file of the data folder except those left out (module docstring) and
    the backup being `written` (a backup into the data folder must not hold itself)."""
    data_dir = settings.data_dir
    database = settings.sqlite_path
    live = {database.with_name(database.name + s) for s in ("", "-wal", "-shm", "-journal")} \
        if database is not None else set()
    for top, folders, files in os.walk(data_dir):
        folder = Path(top)
        folders[:] = sorted(f for f in folders if not (
            f in SKIPPED_FOLDERS and (folder == data_dir or f == ".staging")))
        for name in sorted(files):
            path = folder / name
            if path in live or path in written or path.is_symlink():
                continue
            try:
                writer.add_file(FILES + path.relative_to(data_dir).as_posix(), path)
            except FileNotFoundError:
                continue  # removed meanwhile (a submission forgotten): so is its row


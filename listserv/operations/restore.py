"""`listserv restore FILE`: a backup into an empty data folder and database (SPEC §4, §7).

The archive is unpacked into a scratch folder beside the data folder and checked against
its manifest (every file, every sha256) before anything is written where it counts: a
damaged or truncated backup is refused in one line, leaving no trace. The store is then
brought forward to the code's schema by the migrations `listserv init` runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import MetaData, inspect, text

from listserv.config import Settings
from listserv.errors import ListservError
from listserv.files import private_folder
from listserv.operations import postgres
from listserv.operations.archive import FILES, PG_MEMBER, SQLITE_MEMBER, Manifest, extract_verified
from listserv.operations.backup import VERSION_TABLE
from listserv.operations.upgrade import known_revision, upgrade
from listserv.store.engine import Store


def restore_backup(settings: Settings, archive: Path) -> Manifest:
    """Restore `archive` for `settings`; a ListservError (one line) when it cannot."""
    if not archive.is_file():
        raise ListservError(f"{archive}: no such backup file")
    _refuse_unless_empty(settings)
    parent = private_folder(settings.data_dir.parent)
    scratch = Path(tempfile.mkdtemp(prefix=".listserv-restore.", dir=parent))
    try:
        try:
            manifest = extract_verified(archive, scratch)
        except ListservError as exc:
            raise ListservError(f"{archive} is not a usable backup: {exc}") from None
        _check_backend(settings, manifest)
        if manifest.schema_revision and not known_revision(manifest.schema_revision):
            raise ListservError(f"the backup's schema {manifest.schema_revision} is newer than "
                                f"this listserv's; restore it with listserv "
                                f"{manifest.version} or newer")
        data_dir_existed = settings.data_dir.exists()
        try:
            _put_in_place(settings, scratch, manifest)
        except BaseException:
            _undo(settings, data_dir_existed)
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest


def _put_in_place(settings: Settings, scratch: Path, manifest: Manifest) -> None:
    """The checked database and files into the empty store and data folder, then the schema
    brought forward to the code's."""
    if manifest.backend == "sqlite":
        _restore_sqlite(settings, scratch / SQLITE_MEMBER)
    else:
        _restore_postgresql(settings, scratch / PG_MEMBER, manifest)
    _move_files(scratch / FILES, settings.data_dir)
    private_folder(settings.outbox_dir)
    store = Store(settings.database.url)
    try:
        upgrade(store)  # as `listserv init` does: forward to this code's schema
    finally:
        store.dispose()


def _undo(settings: Settings, data_dir_existed: bool) -> None:
    """Leave the store and the data folder empty again after a restore that failed midway
    (they were empty before: _refuse_unless_empty)."""
    if settings.data_dir.exists():
        for entry in settings.data_dir.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        if not data_dir_existed:
            settings.data_dir.rmdir()
    database = settings.sqlite_path
    if database is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            database.with_name(database.name + suffix).unlink(missing_ok=True)
        return
    store = Store(settings.database.url)
    try:
        tables = MetaData()
        tables.reflect(store.engine)
        tables.drop_all(store.engine)
    finally:
        store.dispose()


def _refuse_unless_empty(settings: Settings) -> None:
    data_dir = settings.data_dir
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ListservError(f"{data_dir} is not empty; restore only into an empty data folder")
    database = settings.sqlite_path
    if database is not None:
        if database.exists() and database.stat().st_size > 0:
            raise ListservError(f"{database} exists; restore only into a new database")
        return
    store = Store(settings.database.url)
    try:
        if inspect(store.engine).get_table_names():
            raise ListservError(f"the database at {store.safe_url} is not empty; restore only "
                                "into an empty database (schema)")
    finally:
        store.dispose()


def _check_backend(settings: Settings, manifest: Manifest) -> None:
    backend = "sqlite" if settings.sqlite_path is not None else "postgresql"
    if manifest.backend != backend:
        raise ListservError(f"the backup is of a {manifest.backend} store and this config's "
                            f"is {backend}; use `members export`/`import` to move between them")


def _restore_sqlite(settings: Settings, copy: Path) -> None:
    database = settings.sqlite_path
    assert database is not None  # _check_backend
    private_folder(database.parent)
    database.unlink(missing_ok=True)  # an empty file left by an earlier command
    shutil.move(copy, database)  # a rename on one file system; its mode is already 0600


def _restore_postgresql(settings: Settings, dump_file: Path, manifest: Manifest) -> None:
    postgres.tool("pg_restore", int(manifest.extra.get("pg_dump_version", 0)))
    postgres.tool("psql")
    store = Store(settings.database.url)
    try:
        # The tables as they were at the backup's revision; migrate() then goes forward.
        store.migrate(manifest.schema_revision or "base")
        with store.engine.connect() as connection:
            target = connection.execute(text("SELECT current_schema()")).scalar_one()
        tables = MetaData()
        tables.reflect(store.engine)
        order = [table.name for table in tables.sorted_tables]
    finally:
        store.dispose()
    postgres.load_data(settings.database.url, dump_file, str(manifest.extra["pg_schema"]),
                       target, skip_tables=(VERSION_TABLE,), table_order=order,
                       dump_version=int(manifest.extra.get("pg_dump_version", 0)))


def _move_files(source: Path, data_dir: Path) -> None:
    private_folder(data_dir)
    if not source.is_dir():
        return
    for top, _folders, files in os.walk(source):
        folder = data_dir / Path(top).relative_to(source)
        private_folder(folder)
        for name in files:
            shutil.move(Path(top) / name, folder / name)

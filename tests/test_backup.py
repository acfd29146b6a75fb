"""`listserv backup` and `listserv restore` (issue 19, acceptance 1 and 2; SPEC §4, §7).

A list of 1,000 members with a held post, a request, a column submission with its file, a
bounce score and a log is backed up while posts arrive over LMTP at the running daemon, then
restored into an empty data folder and database named by another config; a daemon on the
restored config distributes a new post. A truncated and a bit-flipped backup are refused in
one line, and nothing is written.
"""

from __future__ import annotations

import json
import tarfile
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import inspect, select, text

from cli import main
from listserv.config import load_settings
from listserv.daemon import Daemon
from listserv.store.engine import Store
from listserv.store.models.base import Base

from .conftest import pg_schema
from .helpers import LIST, lmtp_send, make_message, wait_settled, write_config
from .test_privacy import seed

MEMBERS = 1000
POSTERS = 5
#: What acceptance 1 names: members, held posts, submissions, requests, bounce scores.
KEPT = ("lists", "owners", "members", "held", "requests", "column_submissions",
        "column_revisions", "bounce_scores", "bounce_events")


@pytest.fixture
def other_db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database for the restore: a SQLite file, or a PostgreSQL schema."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored' / 'listserv.db'}"
        return
    with pg_schema("r") as url:
        yield url


@pytest.fixture
def other_config(tmp_path: Path, other_db_url: str, sink) -> Path:
    return write_config(tmp_path / "restored.toml", tmp_path / "restored", other_db_url,
                        sink.port)


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def rows(store: Store, table: str) -> list[tuple]:
    with store.reading() as session:
        found = session.execute(select(Base.metadata.tables[table])).all()
    return sorted((tuple(row) for row in found), key=repr)


def log(store: Store) -> list[tuple]:
    table = Base.metadata.tables["audit_log"]
    with store.reading() as session:
        return [tuple(row) for row in session.execute(select(table).order_by(table.c.id))]


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*") if p.is_file()}


def add_members(cli, tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text("email,name\n" + "".join(
        f"member{i:04d}@example.net,Member {i}\n" for i in range(MEMBERS)))
    cli("members", "import", LIST, str(roster))


@pytest.mark.slow
@pytest.mark.both_backends
def test_a_backup_taken_while_posts_arrive_restores_into_an_empty_folder(
        cli, shma, daemon, sink, store, settings, tmp_path, other_config):
    seed(cli, daemon, sink, store)
    add_members(cli, tmp_path)
    before = {table: rows(store, table) for table in KEPT}
    logged_before = log(store)
    assert before["held"] and before["requests"] and before["bounce_scores"]
    assert len(before["members"]) > MEMBERS

    # Posts arrive over LMTP while the backup is taken.
    def post() -> None:
        for i in range(POSTERS):
            data = make_message(sender="member0001@example.net", subject=f"During {i}")
            assert lmtp_send(daemon.ports["lmtp"], "member0001@example.net", [LIST], data) == {}

    poster = threading.Thread(target=post)
    poster.start()
    backup = tmp_path / "nightly.tar.gz"
    result = cli("backup", str(backup))
    poster.join()
    assert "wrote" in result.output
    assert backup.stat().st_mode & 0o777 == 0o600
    with tarfile.open(backup) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        names = tar.getnames()
    assert names[0] == "manifest.json" and set(names[1:]) == set(manifest["files"])
    assert manifest["backend"] == store.engine.dialect.name
    assert manifest["schema_revision"] and manifest["listserv_version"]
    assert manifest["counts"]["members"] == len(before["members"])
    submitted = files(settings.data_dir / "submissions")
    assert submitted, "the seed stored a submission's file"
    wait_settled(store, timeout=60)

    restored = invoke(other_config, "restore", str(backup))
    assert restored.exit_code == 0, restored.output
    other = load_settings(other_config)
    again = Store(other.database.url)
    try:
        for table in KEPT:
            assert rows(again, table) == before[table], table
        # Every table as the snapshot counted it: one consistent moment.
        for table, count in manifest["counts"].items():
            assert len(rows(again, table)) == count, table
        restored_log = log(again)
        assert restored_log[:len(logged_before)] == logged_before
        assert restored_log == log(store)[:len(restored_log)]
        assert files(other.data_dir / "submissions") == submitted
        assert other.data_dir.stat().st_mode & 0o777 == 0o700

        # A daemon on the restored config distributes a new post to the 1,000.
        seen = len(sink.deliveries)
        restarted = Daemon(other).start()
        try:
            data = make_message(sender="member0002@example.net", subject="After the restore")
            assert lmtp_send(restarted.ports["lmtp"], "member0002@example.net", [LIST],
                             data) == {}
            sink.wait_for(lambda s: len({r for m in s.deliveries[seen:]
                                         if b"After the restore" in m.data
                                         for r in m.rcpt_tos}) >= MEMBERS,
                          timeout=60, description="the post to the restored list distributed")
        finally:
            restarted.stop()
    finally:
        again.dispose()


@pytest.mark.both_backends
@pytest.mark.parametrize("damage", ["truncated", "bit-flipped", "trailer-flipped"])
def test_a_damaged_backup_is_refused_in_one_line_and_nothing_is_written(
        cli, shma, store, tmp_path, other_config, damage):
    cli("members", "add", LIST, "someone@example.net", "--no-welcome")
    backup = tmp_path / "b.tar.gz"
    cli("backup", str(backup))
    data = bytearray(backup.read_bytes())
    if damage == "truncated":
        data = data[:len(data) * 2 // 3]
    elif damage == "bit-flipped":
        data[len(data) // 2] ^= 0x10
    else:  # the gzip trailer's length: past tar's end marker, seen only by reading to the end
        data[-1] ^= 0x01
    backup.write_bytes(bytes(data))
    before = sorted(p.name for p in tmp_path.iterdir())

    result = invoke(other_config, "restore", str(backup))

    assert result.exit_code != 0
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "is not a usable backup" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no folder, no scratch left
    other = load_settings(other_config)
    if other.sqlite_path is None:
        check = Store(other.database.url)
        try:
            assert inspect(check.engine).get_table_names() == []
        finally:
            check.dispose()


@pytest.mark.both_backends
def test_restore_refuses_a_folder_that_is_not_empty(cli, shma, tmp_path, other_config):
    backup = tmp_path / "b.tar.gz"
    cli("backup", str(backup))
    (tmp_path / "restored").mkdir()
    (tmp_path / "restored" / "notes.txt").write_text("mine")
    result = invoke(other_config, "restore", str(backup))
    assert result.exit_code != 0
    assert "not empty" in result.output
    assert (tmp_path / "restored" / "notes.txt").read_text() == "mine"


@pytest.mark.both_backends
def test_a_backup_of_an_older_schema_is_migrated_forward(config_path, settings, tmp_path,
                                                         other_config):
    older = Store(settings.database.url)
    older.migrate("0013_raw_once")
    older.dispose()
    backup = tmp_path / "old.tar.gz"
    assert invoke(config_path, "backup", str(backup)).exit_code == 0
    with tarfile.open(backup) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest["schema_revision"] == "0013_raw_once"

    result = invoke(other_config, "restore", str(backup))

    assert result.exit_code == 0, result.output
    restored = Store(load_settings(other_config).database.url)
    try:
        with restored.reading() as session:
            revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert revision == Store.code_revision()
        assert "chair_tokens" in inspect(restored.engine).get_table_names()
    finally:
        restored.dispose()


@pytest.mark.both_backends
def test_only_postgresql_needs_pg_dump_and_says_so_in_one_line(cli, tmp_path, monkeypatch,
                                                               backend):
    monkeypatch.setenv("PATH", str(tmp_path))  # no PostgreSQL client tools there
    result = cli("backup", str(tmp_path / "b.tar.gz"), ok=False)
    if backend == "sqlite":
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code != 0
    assert len(result.output.strip().splitlines()) == 1
    assert "pg_dump is not on PATH" in result.output
    assert not (tmp_path / "b.tar.gz").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b.tar.gz")]


@pytest.mark.both_backends
def test_a_backup_into_the_data_folder_does_not_hold_itself(cli, shma, settings):
    cli("init")  # the data folder (on PostgreSQL the database does not make it)
    backup = settings.data_dir / "backup.tar.gz"
    cli("backup", str(backup))
    cli("backup", str(backup))  # the second one replaces the first, which it leaves out
    with tarfile.open(backup) as tar:
        names = tar.getnames()
    assert "files/backup.tar.gz" not in names
    assert not [n for n in names if "backup.tar.gz" in n]
    assert [p.name for p in settings.data_dir.iterdir() if "backup" in p.name] == ["backup.tar.gz"]


@pytest.mark.both_backends
def test_the_daemon_takes_a_backup_every_hours_and_keeps_the_newest(
        config_path, store, clock, shma, tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a backup")
    with config_path.open("a") as config:
        config.write(f'[backup]\nevery_hours = 6\nkeep = 2\nfolder = "{folder}"\n')
    clock.store = store
    running = Daemon(load_settings(config_path), clock=clock).start()
    try:
        taken, elapsed = [], 0
        for hours in (0, 1, 6, 12):  # due at once, not an hour later, then every 6 hours
            if hours > elapsed:
                clock.advance(timedelta(hours=hours - elapsed))
                elapsed = hours
            running.run_scheduler()
            taken.append(sorted(p.name for p in folder.glob("listserv-*.tar.gz")))
    finally:
        running.stop()
    assert [len(names) for names in taken] == [1, 1, 2, 2]
    assert taken[3][0] == taken[2][1]  # the oldest went, the newer stayed
    assert (folder / "notes.txt").read_text() == "not a backup"  # other files are left alone
    for name in taken[3]:
        assert (folder / name).stat().st_mode & 0o777 == 0o600
        with tarfile.open(folder / name) as tar:
            assert json.loads(tar.extractfile("manifest.json").read())["counts"]["lists"] == 1

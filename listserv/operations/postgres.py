"""`pg_dump` and `pg_restore` for backups of a PostgreSQL store (docs/operations.md).

The dump is taken in the snapshot of a transaction that also counts the rows, so the
manifest's counts are those of the dump. A restore loads the data only, into tables that
the migrations create at the backup's revision, renaming the dump's schema to the target's
on the statement lines (never inside data).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from listserv.errors import ListservError


def tool(name: str, server_major: int | None = None) -> tuple[str, int]:
    """The path and major version of `name` on PATH; a ListservError when it is absent or
    older than `server_major` (`pg_dump` cannot dump a newer server, `pg_restore` cannot
    read the archive of a newer `pg_dump`)."""
    path = shutil.which(name)
    if path is None:
        raise ListservError(f"{name} is not on PATH; install the PostgreSQL client tools "
                            f"(version {server_major or 'of the server'} or newer)")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    if match is None:
        raise ListservError(f"{path} --version said nothing readable: {out.stdout.strip()}")
    major = int(match.group(1))
    if server_major is not None and major < server_major:
        raise ListservError(f"{path} is version {major}, older than needed ({server_major}); "
                            f"install the PostgreSQL client tools {server_major} or newer")
    return path, major


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI for `url` without its password, and the environment that carries it."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    uri = parsed.set(drivername="postgresql", password=None)
    return uri.render_as_string(hide_password=False), env


def server_major(connection: Connection) -> int:
    """The major version of the server `connection` talks to (15 for 15.4)."""
    return int(connection.execute(text("SHOW server_version_num")).scalar_one()) // 10000


def dump(connection: Connection, url: str, schema: str, into: Path) -> dict[str, object]:
    """`pg_dump --format=custom` of `schema` in the snapshot of `connection`'s transaction
    (REPEATABLE READ), into `into`; returns what the manifest records about it."""
    major = server_major(connection)
    path, tool_major = tool("pg_dump", major)
    snapshot = connection.execute(text("SELECT pg_export_snapshot()")).scalar_one()
    uri, env = libpq(url)
    done = subprocess.run(
        [path, "--format=custom", "--no-owner", "--no-privileges", f"--schema={schema}",
         f"--snapshot={snapshot}", f"--file={into}", f"--dbname={uri}"],
        capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise ListservError(f"pg_dump failed: {_first_line(done.stderr)}")
    return {"pg_schema": schema, "pg_dump_version": tool_major, "pg_server_version": major}


def load_data(url: str, dump_file: Path, source_schema: str, target_schema: str,
              skip_tables: tuple[str, ...], table_order: list[str], dump_version: int) -> None:
    """Load the rows of `dump_file` into the existing tables of `target_schema`, in one
    transaction (`pg_restore --data-only` piped into `psql`), table by table in
    `table_order` (the foreign keys' order)."""
    restore_path, _ = tool("pg_restore", dump_version)
    psql_path, _ = tool("psql")
    listed = subprocess.run(
        [restore_path, "--data-only", "--no-owner", "--no-privileges", "--file=-",
         str(dump_file)], capture_output=True, env=dict(os.environ), check=False)
    if listed.returncode != 0:
        raise ListservError(f"pg_restore failed: {_first_line(listed.stderr.decode())}")
    script = _retarget(listed.stdout, source_schema, target_schema, skip_tables, table_order)
    uri, env = libpq(url)
    done = subprocess.run(
        [psql_path, "--no-psqlrc", "--quiet", "--single-transaction", "--set=ON_ERROR_STOP=1",
         f"--dbname={uri}"], input=script, capture_output=True, env=env, check=False)
    if done.returncode != 0:
        raise ListservError(f"loading the rows failed: {_first_line(done.stderr.decode())}")


def _retarget(script: bytes, source: str, target: str, skip: tuple[str, ...],
              order: list[str]) -> bytes:
    """The SQL of a data-only restore with `source.` names changed to `target.` on the
    statement lines (COPY headers, setval), and the COPY blocks put in `order` (parents
    before the rows that refer to them); COPY data passes through untouched, and the blocks
    of the `skip` tables are left out."""
    names = rb"(?:\"%s\"|%s)\." % (re.escape(source.encode()), re.escape(source.encode()))
    quoted = b'"' + target.replace('"', '""').encode() + b'".'
    before: list[bytes] = []
    after: list[bytes] = []
    blocks: dict[str, list[bytes]] = {}
    block: list[bytes] | None = None
    for line in script.splitlines(keepends=True):
        if block is not None:
            block.append(line)
            if line in (b"\\.\n", b"\\."):
                block = None
            continue
        if line.startswith(b"COPY "):
            table = re.match(rb"COPY " + names + rb"\"?(\w+)", line)
            name = table.group(1).decode() if table else line.decode(errors="replace")
            block = blocks.setdefault(name, [])
        line = re.sub(names, lambda _: quoted, line)
        if block is not None:
            block.append(line)  # the COPY line itself
        else:
            (after if blocks else before).append(line)
    ranked = {name: i for i, name in enumerate(order)}
    ordered = sorted((n for n in blocks if n not in skip), key=lambda n: ranked.get(n, len(order)))
    return b"".join(before + [line for n in ordered for line in blocks[n]] + after)


def _first_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[0] if lines else "no message"

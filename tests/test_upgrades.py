"""Upgrades: `init` says from which schema revision to which it migrated; a daemon refuses a
schema older or newer than its code, naming the command to run."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from listserv.store.engine import alembic_config

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
PREVIOUS = ScriptDirectory.from_config(alembic_config()).get_revision(HEAD).down_revision


def downgrade(store, revision):
    """Take the schema back to `revision`, as a store made by the previous release has it."""
    config = alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def serve(config_path):
    """`listserv serve` in a subprocess: it must stop by itself (refuse), not serve."""
    return subprocess.run([sys.executable, "-m", "cli", "--config", str(config_path), "serve"],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.both_backends
def test_init_says_from_which_schema_revision_to_which_it_migrated(cli, store, shma):
    assert f"schema is current (revision {HEAD})" in cli("init").output
    downgrade(store, PREVIOUS)
    output = cli("init").output
    assert f"migrated the database from schema revision {PREVIOUS} to {HEAD}" in output
    assert store.schema_revision() == HEAD
    assert shma in cli("lists", "list").output  # the data came through


def test_init_on_a_new_database_says_it_created_it(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("LISTSERV_CONFIG", raising=False)
    result = CliRunner().invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    assert f"created the database at schema revision {HEAD}" in result.output


@pytest.mark.both_backends
def test_a_daemon_refuses_a_schema_older_than_its_code_and_names_the_command(cli, store,
                                                                            config_path):
    downgrade(store, PREVIOUS)
    refused = serve(config_path)
    assert refused.returncode != 0
    [line] = refused.stderr.strip().splitlines()
    assert f"schema is at revision {PREVIOUS}, older than this listserv's ({HEAD})" in line
    assert "run `listserv init`" in line
    assert store.schema_revision() == PREVIOUS  # nothing migrated behind the operator's back
    cli("init")
    code = subprocess.run([sys.executable, "-m", "cli", "--config", str(config_path),
                           "status", "--json"], capture_output=True, text=True, timeout=60)
    assert '"revision": "' + HEAD in code.stdout


@pytest.mark.both_backends
def test_a_daemon_and_init_refuse_a_schema_newer_than_their_code(cli, store, config_path):
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    refused = serve(config_path)
    assert refused.returncode != 0
    [line] = refused.stderr.strip().splitlines()
    assert "revision 9999_future, newer than this listserv" in line
    result = cli("init", ok=False)
    assert result.exit_code != 0 and "newer than this listserv" in result.output
    assert store.schema_revision() == "9999_future"

"""Where the data is (SPEC §4, issue 16 acceptance 4): every command finds the same config.

`listserv` runs from the folders a chair would be in: the one `init` set up, a
folder below it, another folder with `$LISTSERV_CONFIG`, anywhere with a config in
`~/.config/listserv`; and nowhere, where the error names every place it looked. HOME is a
folder of the test's own, so the person running the tests has no say. `serve` runs in a
subprocess; the other commands in this process (CliRunner), in the folder and environment given.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from contextlib import chdir
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from listserv.config.discovery import (
    ConfigNotFound,
    FoundConfig,
    config_for_init,
    find_config,
    user_config_path,
)
from listserv.errors import ListservError

from .helpers import LIST, wait_until
from .test_quickstart import LISTSERV

JANE = "jane@example.org"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


def environ(home: Path, **extra: str) -> dict[str, str | None]:
    """The environment of a chair whose home is `home`: no config named, no XDG folder."""
    return {"LISTSERV_CONFIG": None, "XDG_CONFIG_HOME": None, "HOME": str(home), **extra}


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def listserv(cwd: Path, env: dict[str, str | None], *args: str, ok: bool = True) -> Ran:
    """`listserv ARGS` run in `cwd` with `env` (None: unset); in this process (CliRunner),
    which is quick, except where a subprocess is the point (serve)."""
    with chdir(cwd):
        result = CliRunner().invoke(main, list(args), env=env)
    done = Ran(result.exit_code, result.stdout, result.stderr)
    assert (done.returncode == 0) == ok, (done.stdout, done.stderr, result.exception)
    if not ok:
        assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    return done


def subprocess_environ(env: dict[str, str | None]) -> dict[str, str]:
    merged = {**os.environ, **env}
    return {k: v for k, v in merged.items() if v is not None}


def data_seen(cwd: Path, env: dict[str, str], *args: str) -> tuple[list[str], list[str]]:
    """The lists and the members of shma, as the commands run in `cwd` see them."""
    lists = json.loads(listserv(cwd, env, *args, "lists", "list", "--json").stdout)
    members = json.loads(listserv(cwd, env, *args, "members", "list", LIST, "--json").stdout)
    return [row["list"] for row in lists], [row["email"] for row in members]


@pytest.fixture
def site(tmp_path: Path, home: Path) -> Path:
    """A folder set up by `listserv init`, with a list of one member; the daemon on free ports."""
    folder = tmp_path / "site"
    folder.mkdir()
    env = environ(home)
    said = listserv(folder, env, "init").stdout
    assert f"wrote {folder / 'listserv.toml'}" in said
    assert f"listserv is ready in {folder / 'listserv-data'}" in said
    with (folder / "listserv.toml").open("a") as config:
        config.write("[intake.lmtp]\nport = 0\n[intake.smtp]\nport = 0\n")
    listserv(folder, env, "lists", "create", LIST, "--owner", "chair@example.org")
    listserv(folder, env, "members", "add", LIST, JANE, "--no-welcome")
    return folder


def test_from_a_subfolder_every_command_finds_the_data_and_init_refuses_a_second(site, home):
    env = environ(home)
    below = site / "minutes" / "2027"
    below.mkdir(parents=True)
    assert data_seen(below, env) == ([LIST], [JANE])
    listserv(below, env, "members", "add", LIST, "ann@example.net", "--no-welcome")
    assert data_seen(site, env) == ([LIST], ["ann@example.net", JANE])

    refused = listserv(below, env, "init", ok=False)
    assert refused.stderr == (
        f"Error: listserv is already set up with {site / 'listserv.toml'}; to upgrade that one "
        f"run `listserv --config {site / 'listserv.toml'} init`, or to set up a separate one in "
        "this folder `listserv init --force`\n")
    assert list(below.iterdir()) == []  # no second config, no second data folder

    # serve from the subfolder: the daemon runs on the data of the folder above.
    run_dir = site / "listserv-data" / "run"
    daemon = subprocess.Popen([LISTSERV, "serve"], cwd=below, stderr=subprocess.PIPE,
                              env=subprocess_environ(env), text=True)
    try:
        wait_until((run_dir / "ports.json").exists, 20, "the daemon to listen")
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, log = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, log
    assert list(below.iterdir()) == []

    # Asked explicitly, a separate setup below: commands there see it, the others the first.
    listserv(below, env, "init", "--force")
    assert {p.name for p in below.iterdir()} == {"listserv.toml", "listserv-data"}
    assert json.loads(listserv(below, env, "lists", "list", "--json").stdout) == []
    assert data_seen(site, env) == ([LIST], ["ann@example.net", JANE])


def test_from_another_folder_with_listserv_config_or_the_user_config(site, home, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = site / "listserv.toml"
    assert data_seen(elsewhere, environ(home, LISTSERV_CONFIG=str(config))) == ([LIST], [JANE])
    # --config wins over $LISTSERV_CONFIG; a relative --config is from the current folder.
    wrong = environ(home, LISTSERV_CONFIG=str(tmp_path / "nowhere.toml"))
    assert data_seen(tmp_path, wrong, "--config", "site/listserv.toml") == ([LIST], [JANE])
    refused = listserv(elsewhere, wrong, "lists", "list", ok=False)
    assert str(tmp_path / "nowhere.toml") in refused.stderr

    # ~/.config/listserv/listserv.toml, its data_dir relative to the file.
    user = home / ".config" / "listserv" / "listserv.toml"
    user.parent.mkdir(parents=True)
    user.write_text('data_dir = "../../../site/listserv-data"\n')
    assert data_seen(elsewhere, environ(home)) == ([LIST], [JANE])
    # ... or in $XDG_CONFIG_HOME/listserv, which then replaces ~/.config.
    xdg = tmp_path / "xdg"
    (xdg / "listserv").mkdir(parents=True)
    (xdg / "listserv" / "listserv.toml").write_text(f'data_dir = "{site / "listserv-data"}"\n')
    user.unlink()
    assert data_seen(elsewhere, environ(home, XDG_CONFIG_HOME=str(xdg))) == ([LIST], [JANE])
    # A listserv.toml in the current folder comes before the user's.
    assert listserv(site, environ(home, XDG_CONFIG_HOME=str(xdg)), "init").stdout.startswith(
        f"listserv is ready in {site / 'listserv-data'}")
    # init does not set up a second data folder beside the user's config without --force.
    refused = listserv(elsewhere, environ(home, XDG_CONFIG_HOME=str(xdg)), "init", ok=False)
    assert f"already set up with {xdg / 'listserv' / 'listserv.toml'}" in refused.stderr
    assert list(elsewhere.iterdir()) == []


def test_with_nothing_to_find_the_error_names_every_place_looked(tmp_path, home):
    empty = tmp_path / "empty" / "folder"
    empty.mkdir(parents=True)
    serve = subprocess.run([LISTSERV, "serve"], cwd=empty, capture_output=True, text=True,
                           env=subprocess_environ(environ(home)), timeout=60)
    for refused in (listserv(empty, environ(home), "lists", "list", ok=False),
                    listserv(empty, environ(home), "members", "list", LIST, ok=False), serve):
        assert refused.returncode == 1
        folders = ", ".join(str(f) for f in (empty, *empty.parents))
        assert refused.stderr == (
            "Error: no config file found: no --config, $LISTSERV_CONFIG not set, no "
            f"listserv.toml in {folders}; none at {home}/.config/listserv/listserv.toml. Run "
            "`listserv init` to set up in this folder\n")
    assert list(empty.iterdir()) == []


def test_init_with_listserv_config_naming_a_new_file_writes_it_there(tmp_path, home):
    config = tmp_path / "srv" / "shma.toml"
    config.parent.mkdir()
    said = listserv(tmp_path, environ(home, LISTSERV_CONFIG=str(config)), "init").stdout
    assert said.startswith(f"wrote {config}\nlistserv is ready in {tmp_path / 'srv'}")
    assert (config.stat().st_mode & 0o777) == 0o600
    assert not (tmp_path / "listserv.toml").exists()


# -- the order, in-process ---------------------------------------------------------------------


def test_the_order_of_the_places(tmp_path):
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    user = tmp_path / "home" / ".config" / "listserv" / "listserv.toml"
    env = {"HOME": str(tmp_path / "home")}
    with pytest.raises(ConfigNotFound):
        find_config(None, here, env)
    user.parent.mkdir(parents=True)
    user.write_text("")
    assert find_config(None, here, env) == FoundConfig(user, "user")
    (tmp_path / "listserv.toml").write_text("")
    assert find_config(None, here, env) == FoundConfig(tmp_path / "listserv.toml", "above")
    (here / "listserv.toml").write_text("")
    assert find_config(None, here, env) == FoundConfig(here / "listserv.toml", "here")
    given = tmp_path / "given.toml"
    assert find_config(None, here, {**env, "LISTSERV_CONFIG": str(given)}) == \
        FoundConfig(given, "given")
    assert find_config(str(user), here, {**env, "LISTSERV_CONFIG": str(given)}) == \
        FoundConfig(user, "given")
    # An empty $LISTSERV_CONFIG is unset; a relative $XDG_CONFIG_HOME is ignored (XDG spec).
    assert find_config(None, here, {**env, "LISTSERV_CONFIG": ""}).how == "here"
    assert user_config_path({**env, "XDG_CONFIG_HOME": "relative"}) == user


def test_init_keeps_an_existing_config_and_needs_force_below_another(tmp_path):
    here = tmp_path / "sub"
    here.mkdir()
    env = {"HOME": str(tmp_path / "home")}
    assert config_for_init(None, tmp_path, env) == (tmp_path / "listserv.toml", True)
    written = (tmp_path / "listserv.toml").read_text()
    assert config_for_init(None, tmp_path, env) == (tmp_path / "listserv.toml", False)
    with pytest.raises(ListservError, match="already set up"):
        config_for_init(None, here, env)
    assert config_for_init(None, here, env, force=True) == (here / "listserv.toml", True)
    assert (here / "listserv.toml").read_text() == written

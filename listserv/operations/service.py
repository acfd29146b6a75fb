"""`listserv service systemd`: a hardened systemd unit for the daemon, from `listserv.service`.

The unit is a file shipped in this package (a `string.Template`), filled in with the user, the
absolute path of the `listserv` executable, the config in use and the data folder.
"""

from __future__ import annotations

import shutil
import sys
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path
from string import Template

from listserv.config import Settings
from listserv.errors import ListservError

#: The first port that needs no privilege to listen on.
UNPRIVILEGED_PORT = 1024


def listserv_executable() -> Path:
    """The absolute path of the `listserv` command: beside this Python (a virtualenv's bin/),
    else the first on PATH."""
    beside = Path(sys.executable).parent / "listserv"
    if beside.is_file():
        return beside.absolute()
    found = shutil.which("listserv")
    if found is None:
        raise ListservError("cannot find the `listserv` executable beside "
                            f"{sys.executable} or on PATH; install listserv first")
    return Path(found).absolute()


def systemd_unit(settings: Settings, config: Path, user: str, executable: Path) -> str:
    """The unit's text: `ExecStart` runs `executable --config CONFIG serve` as `user`, which
    may write only the data folder (and a SQLite database's folder kept elsewhere)."""
    writable = [settings.data_dir]
    database = settings.sqlite_path
    if database is not None and not database.parent.is_relative_to(settings.data_dir):
        writable.append(database.parent)
    paths = [str(p) for p in (config.absolute(), executable, *writable)]
    for path in paths:
        # systemd splits these settings at spaces and expands `%` specifiers.
        if any(c.isspace() for c in path) or "%" in path:
            raise ListservError(f"{path}: a path in a systemd unit cannot hold spaces or '%'; "
                                "move it or link it from a path without them")
    intake = settings.intake
    privileged = any(s.enabled and 0 < s.port < UNPRIVILEGED_PORT
                     for s in (intake.lmtp, intake.smtp))
    template = Template(files("listserv.operations").joinpath("listserv.service")
                        .read_text(encoding="utf-8"))
    return template.substitute(
        version=version("listserv"),
        user=user,
        config=config.absolute(),
        exec_start=f"{executable} --config {config.absolute()} serve",
        read_write_paths=" ".join(str(p) for p in writable),
        # Only the right to listen on a port below 1024, and only when the config asks for one.
        capabilities="CAP_NET_BIND_SERVICE" if privileged else "",
    )

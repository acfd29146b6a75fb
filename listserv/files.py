"""Private files and folders (SPEC §7 "Files"): folders 0700, files 0600, whatever the umask.

The command line sets the umask to 077, but every place that creates a file or folder asks
for the private mode itself, so nothing depends on the process it runs in (a daemon started
from Python, a test). `tighten` takes away the group and world bits of what an older version,
or an operator's copy, left behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Final, Literal

FOLDER_MODE: Final = 0o700
FILE_MODE: Final = 0o600
UMASK: Final = 0o077
"""The umask of the daemon and the command line: nothing they create is readable by others."""


def private_folder(path: Path) -> Path:
    """`path` and every missing folder above it, each created 0700 (`mkdir -p` would give the
    parents the umask's mode); an existing folder is left as it is."""
    missing: list[Path] = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            pass  # another process made it first
    return path


def private_empty_file(path: Path) -> None:
    """Create `path` as an empty 0600 file unless it exists (SQLite then keeps its mode, and
    gives its WAL and shared-memory files the same one). An existing file is not opened: a
    reader may have no right to write it."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass


def open_private(path: Path, mode: Literal["w", "wb", "xb"]) -> IO:
    """`path` opened for writing as a 0600 file: "w"/"wb" truncate an existing file (and
    make it 0600), "xb" refuses one."""
    flags = os.O_WRONLY | os.O_CREAT
    flags |= os.O_EXCL if mode == "xb" else os.O_TRUNC
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        if mode == "w":
            return os.fdopen(fd, "w", encoding="utf-8", newline="")
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def write_new_private(path: Path, data: bytes) -> Path:
    """Write a new 0600 file (never overwriting one), on disk before this returns."""
    with open_private(path, "xb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    return path


def replace_private(path: Path, data: bytes) -> None:
    """Replace `path` at once with a 0600 file holding `data` (readers never see half)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_paths(paths: Iterable[Path]) -> None:
    """Remove each file or folder (with what it holds); one already gone is no error.

    Called after the commit that dropped the rows naming them, so that a rollback never leaves
    a row pointing at nothing."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def tighten(*paths: Path) -> int:
    """Take the group and world bits off each path and, for a folder, everything in it
    (symbolic links are not followed); returns how many files and folders changed."""
    changed = 0
    for given in paths:
        if not given.exists():
            continue
        path = given.resolve()  # a data folder may be a link to the real one
        changed += _tighten_one(path)
        if path.is_dir():
            for top, folders, files in os.walk(path):
                for name in folders + files:
                    changed += _tighten_one(Path(top) / name)
    return changed


def _tighten_one(path: Path) -> int:
    try:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode) or not mode & 0o077:
            return 0
        os.chmod(path, stat.S_IMODE(mode) & ~0o077)
    except FileNotFoundError:
        return 0  # removed meanwhile (a staged folder, a delivered message)
    return 1

"""Folders written inside a unit of work that appear only if it commits.

A handler that stores files beside its rows (a column submission's mail and attachments)
writes them into a private folder under a staging area of the data folder. The folder is
renamed to its final path after the transaction commits, and removed if the transaction, or
the savepoint it was staged in, rolls back: a failed or retried message leaves no orphan
files, and a committed row never points at a folder that is not there. Staging and final
paths are on one file system, so the rename is atomic.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from listserv.files import private_folder

log = logging.getLogger(__name__)

#: Folders in a staging area older than this were left by a crash between write and commit.
STALE_SECONDS = 24 * 3600
_INFO_KEY = "listserv_staged_folders"


@dataclass(frozen=True, slots=True)
class _Staged:
    transaction: SessionTransaction
    path: Path
    final: Path


def staged_folder(session: Session, final: Path, staging: Path) -> Path:
    """A new, empty, private folder under `staging` that becomes `final` when `session`'s
    transaction commits; it is removed if that transaction (or the savepoint open now)
    rolls back. `staging` must be on the same file system as `final`."""
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:
        raise RuntimeError("staged_folder() needs an open transaction")
    private_folder(staging)
    _remove_stale(staging)
    path = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=staging))  # mode 0700
    if not event.contains(session, "after_commit", _finish):
        event.listen(session, "after_commit", _finish)
        event.listen(session, "after_soft_rollback", _discard_rolled_back)
        event.listen(session, "after_transaction_end", _discard_at_end)
    session.info.setdefault(_INFO_KEY, []).append(_Staged(transaction, path, final))
    return path


def _finish(session: Session) -> None:
    """After the commit: every folder still staged is final now."""
    for staged in session.info.pop(_INFO_KEY, []):
        try:
            private_folder(staged.final.parent)
            if staged.final.exists():  # an orphan of a run before staging: nothing points at it
                shutil.rmtree(staged.final)
            os.rename(staged.path, staged.final)
            _sync_folder(staged.final.parent)
        except OSError:
            # The rows are committed; the files stay in the staging folder for the operator.
            log.exception("could not move %s to %s", staged.path, staged.final)


def _discard_rolled_back(session: Session, rolled_back: SessionTransaction) -> None:
    """After a rollback (of a savepoint or of everything): its folders go."""
    staged = session.info.get(_INFO_KEY, [])
    session.info[_INFO_KEY] = [s for s in staged if not _within(s.transaction, rolled_back)]
    for s in staged:
        if _within(s.transaction, rolled_back):
            shutil.rmtree(s.path, ignore_errors=True)


def _discard_at_end(session: Session, transaction: SessionTransaction) -> None:
    """When the outermost transaction ends without a commit (a rollback, a close)."""
    if transaction.parent is None:
        for s in session.info.pop(_INFO_KEY, []):
            shutil.rmtree(s.path, ignore_errors=True)


def _within(transaction: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


def _remove_stale(staging: Path) -> None:
    cutoff = time.time() - STALE_SECONDS
    for entry in staging.iterdir():
        try:
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass  # another process removed it first


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX: fsync the directory)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
